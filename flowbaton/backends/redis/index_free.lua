-- index_free: mark a flow unclaimed in the runnable index. Unclaimed
-- entries are scored by creation sequence (small numbers), claimed ones by
-- lease expiry in ms (huge numbers), so one range query finds both and the
-- new ones come out oldest first. create_flow runs this BEFORE writing the
-- record: a crash in between leaves a stale entry (dropped later by
-- find_runnable), never a stored flow that no replica can find.
-- KEYS[1] runnable zset, KEYS[2] created zset, KEYS[3] creation counter
-- ARGV[1] flow id
-- ARGV[2] 'set': score := creation seq; 'nx': only if absent; 'none': only
--         make sure the flow has a creation entry (a non-runnable new flow)
-- ARGV[3] the creation sequence to give a flow that has none yet, drawn by
--         the caller from the namespace's counter (a sharded layout: the
--         counter is in another slot), or '' to draw it from KEYS[3]
-- Returns {OK, the flow's creation sequence number}
local seq = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not seq then
  seq = ARGV[3]
  if seq == nil or seq == '' then seq = redis.call('INCR', KEYS[3]) end
  redis.call('ZADD', KEYS[2], seq, ARGV[1])
end
if ARGV[2] == 'set' then
  redis.call('ZADD', KEYS[1], seq, ARGV[1])
elseif ARGV[2] == 'nx' then
  redis.call('ZADD', KEYS[1], 'NX', seq, ARGV[1])
end
return {OK, tonumber(seq)}
