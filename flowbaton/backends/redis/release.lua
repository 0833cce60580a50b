-- release: drop the current claim at once (graceful stop).
-- KEYS[1] claim, KEYS[2] flow record
-- ARGV[1] claim id, ARGV[2] epoch
-- Returns {OK, flow state}                                released
--         {NOT_CURRENT, claim key exists (0/1), flow state}
if not is_current(KEYS[1], ARGV[1], ARGV[2]) then
  return {NOT_CURRENT, redis.call('EXISTS', KEYS[1]), flow_state(KEYS[2])}
end
redis.call('DEL', KEYS[1])
return {OK, flow_state(KEYS[2])}
