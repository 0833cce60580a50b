-- probe: what find_runnable needs to trust an index entry, without
-- shipping the whole flow record back.
-- KEYS[1] flow record, KEYS[2] claim
-- Returns {flow state ('' missing, '?' unreadable), claim PTTL ms (-2 none, -1 no expiry)}
return {flow_state(KEYS[1]), redis.call('PTTL', KEYS[2])}
