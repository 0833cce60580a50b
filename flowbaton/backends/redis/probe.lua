-- probe: what find_runnable needs to trust an index entry, without
-- shipping the whole flow record back.
-- KEYS[1] flow record, KEYS[2] claim
-- Returns {OK, flow state ('' missing, '?' unreadable), the claim's life
--          left in ms: its lease key's PTTL, or its own for a claim of an
--          older version (-2 none, unreadable or its lease ran out, which a
--          claim replaces; -1 no expiry)}
local claim = live_claim(KEYS[2])
if not claim then return {OK, flow_state(KEYS[1]), -2} end
if type(claim.lease_key) == 'string' then
  return {OK, flow_state(KEYS[1]), redis.call('PTTL', claim.lease_key)}
end
return {OK, flow_state(KEYS[1]), redis.call('PTTL', KEYS[2])}
