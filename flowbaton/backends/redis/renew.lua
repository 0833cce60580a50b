-- renew: extend the lease of the current claim; the lease clock is the server's.
-- KEYS[1] claim, KEYS[2] flow record
-- ARGV[1] claim id, ARGV[2] epoch, ARGV[3] lease in ms
-- Returns {OK, flow state}   renewed
--         {NOT_CURRENT}
if not is_current(KEYS[1], ARGV[1], ARGV[2]) then return {NOT_CURRENT} end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {OK, flow_state(KEYS[2])}
