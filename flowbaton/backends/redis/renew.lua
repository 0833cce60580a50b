-- renew: extend the lease of the current claim; the lease clock is the
-- server's. A claim names its replica's lease key, extended here (the
-- replica's other claims with it: they share it); a claim stored by an
-- older version has an expiry of its own, extended instead. Safe to run twice.
-- KEYS[1] claim, KEYS[2] flow record
-- ARGV[1] claim id, ARGV[2] epoch, ARGV[3] lease in ms
-- Returns {OK, flow state, lease key ('' for a claim with its own expiry)}
--         {NOT_CURRENT}
if not is_current(KEYS[1], ARGV[1], ARGV[2]) then return {NOT_CURRENT} end
local claim = readable_claim(KEYS[1])
if type(claim.lease_key) ~= 'string' then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {OK, flow_state(KEYS[2]), ''}
end
redis.call('PEXPIRE', claim.lease_key, ARGV[3])
return {OK, flow_state(KEYS[2]), claim.lease_key}
