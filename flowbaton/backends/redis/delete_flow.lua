-- delete_flow: remove every key of the flow, fenced by the claim token.
-- KEYS[1] claim, KEYS[2] flow record, KEYS[3] tasks, KEYS[4] epoch, KEYS[5] declines
-- ARGV[1] claim id, ARGV[2] epoch
-- Returns {OK} deleted
--         {NOT_CURRENT, flow exists (0/1)}  (nothing deleted)
if not is_current(KEYS[1], ARGV[1], ARGV[2]) then
  return {NOT_CURRENT, redis.call('EXISTS', KEYS[2])}
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
return {OK}
