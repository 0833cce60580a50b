-- claim: take a flow for one replica, or report who holds it.
-- The claim names the claimer's lease key (leases.py) and lives as long as
-- that key does; a claim whose lease ran out is nobody's. Claims stored by
-- older versions name no lease but carry a PX expiry of their own.
-- KEYS[1] flow record, KEYS[2] claim, KEYS[3] epoch counter
-- ARGV[1] claim id, ARGV[2] lease in ms, ARGV[3] '1' to force,
-- ARGV[4] claimed_at (client wall clock in seconds, for operators),
-- ARGV[5] the claimer's lease key, ARGV[6] the channel announcing claims
-- taken by force (their holders stop at once)
-- Returns {NO_FLOW}
--         {HELD, holder claim JSON}                            someone else holds it
--         {OK, epoch, lease ms, flow state, lease key}         claimed (or already ours)
if redis.call('EXISTS', KEYS[1]) == 0 then return {NO_FLOW} end
-- An unreadable claim key (garbage, perhaps without expiry) counts as none:
-- no token can be current for it, so replacing it fences nobody's writes.
local held = readable_claim(KEYS[2])
if held then
  -- Our own claim id: a retried call whose first reply was lost. Answer with
  -- the claim that call made instead of claiming (and fencing) a second time.
  if held.claim_id == ARGV[1] then
    local lease_key = held.lease_key
    if type(lease_key) ~= 'string' then lease_key = '' end
    return {OK, held.epoch, tonumber(ARGV[2]), flow_state(KEYS[1]), lease_key}
  end
  if lease_runs(held) then
    if ARGV[3] ~= '1' then return {HELD, redis.call('GET', KEYS[2])} end
    redis.call('PUBLISH', ARGV[6], held.claim_id)
  end
end
-- The epoch key is never deleted on release, so epochs only grow.
local epoch = redis.call('INCR', KEYS[3])
local claim = cjson.encode({claim_id = ARGV[1], epoch = epoch, claimed_at = tonumber(ARGV[4]),
                            lease_key = ARGV[5]})
redis.call('SET', KEYS[2], claim)
return {OK, epoch, tonumber(ARGV[2]), flow_state(KEYS[1]), ARGV[5]}
