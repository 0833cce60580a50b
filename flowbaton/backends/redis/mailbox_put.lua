-- mailbox_put: file a handover request in a replica's mailbox (not fenced).
-- KEYS[1] the replica's mailbox hash
-- ARGV[1] field (the flow id, '' for a drain), ARGV[2] request JSON,
-- ARGV[3] how many requests the mailbox may hold
-- Returns {OK} filed (a request about the same field replaced), {FULL, held}
-- (nothing written). Safe to run twice: the second run replaces the first.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  local held = redis.call('HLEN', KEYS[1])
  if held >= tonumber(ARGV[3]) then return {FULL, held} end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return {OK}
