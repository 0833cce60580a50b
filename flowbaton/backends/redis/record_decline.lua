-- record_decline: note why a replica cannot run a flow (not fenced).
-- KEYS[1] flow record, KEYS[2] declines hash
-- ARGV[1] replica id (hash field), ARGV[2] decline JSON
-- Returns {OK} recorded, {NO_FLOW} (nothing written)
if redis.call('EXISTS', KEYS[1]) == 0 then return {NO_FLOW} end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return {OK}
