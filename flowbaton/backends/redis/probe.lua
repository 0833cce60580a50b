-- probe: what find_runnable needs to trust an index entry, without
-- shipping the whole flow record back.
-- KEYS[1] flow record, KEYS[2] claim
-- Returns {OK, flow state ('' missing, '?' unreadable), claim PTTL ms (-2
--          none or unreadable, which a claim replaces; -1 no expiry)}
local pttl = -2
if readable_claim(KEYS[2]) then pttl = redis.call('PTTL', KEYS[2]) end
return {OK, flow_state(KEYS[1]), pttl}
