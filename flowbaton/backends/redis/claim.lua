-- claim: take a flow for one replica, or report who holds it.
-- KEYS[1] flow record, KEYS[2] claim, KEYS[3] epoch counter
-- ARGV[1] claim id, ARGV[2] lease in ms, ARGV[3] '1' to force,
-- ARGV[4] claimed_at (client wall clock in seconds, for operators)
-- Returns {NO_FLOW}
--         {HELD, holder claim JSON, holder PTTL}   someone else holds it
--         {OK, epoch, PTTL ms, flow state}         claimed (or already ours)
if redis.call('EXISTS', KEYS[1]) == 0 then return {NO_FLOW} end
-- An unreadable claim key (garbage, perhaps without expiry) counts as none:
-- no token can be current for it, so replacing it fences nobody's writes.
local held = readable_claim(KEYS[2])
if held then
  -- Our own claim id: a retried call whose first reply was lost. Answer with
  -- the claim that call made instead of claiming (and fencing) a second time.
  if held.claim_id == ARGV[1] then
    return {OK, held.epoch, redis.call('PTTL', KEYS[2]), flow_state(KEYS[1])}
  end
  if ARGV[3] ~= '1' then
    return {HELD, redis.call('GET', KEYS[2]), redis.call('PTTL', KEYS[2])}
  end
end
-- The epoch key is never deleted on release, so epochs only grow.
local epoch = redis.call('INCR', KEYS[3])
local claim = cjson.encode({claim_id = ARGV[1], epoch = epoch, claimed_at = tonumber(ARGV[4])})
redis.call('SET', KEYS[2], claim, 'PX', ARGV[2])
return {OK, epoch, tonumber(ARGV[2]), flow_state(KEYS[1])}
