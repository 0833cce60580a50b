-- save_flow: replace the flow record, fenced by the claim token.
-- KEYS[1] claim, KEYS[2] flow record
-- ARGV[1] claim id, ARGV[2] epoch, ARGV[3] flow JSON
-- Returns {OK} written, {NOT_CURRENT} (nothing written)
if not is_current(KEYS[1], ARGV[1], ARGV[2]) then return {NOT_CURRENT} end
redis.call('SET', KEYS[2], ARGV[3])
return {OK}
