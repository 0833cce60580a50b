-- candidates: flows the runnable index says nobody holds, oldest first.
-- Scores below ARGV[3] are creation sequence numbers (unclaimed flows);
-- scores from ARGV[3] up are lease expiry times in ms (claimed flows), of
-- which those up to now are orphans. Both kinds are merged by creation.
-- KEYS[1] runnable zset, KEYS[2] created zset
-- ARGV[1] now in ms, ARGV[2] how many, ARGV[3] first score that is a time
-- Returns {OK, next, member, score, order, member, score, order, ...}, at
-- most ARGV[2] triples; order is the creation sequence (what the caller
-- merges several shards' answers by); next is the earliest lease end after
-- now in ms (when the next orphan may appear, so an idle replica sleeps
-- until then), or 0 if none
local n = tonumber(ARGV[2])
local free = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3],
  'WITHSCORES', 'LIMIT', 0, n)
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[3], ARGV[1],
  'WITHSCORES', 'LIMIT', 0, n)
local found = {}
for i = 1, #free, 2 do
  found[#found + 1] = {free[i], free[i + 1], tonumber(free[i + 1])}
end
for i = 1, #lapsed, 2 do
  local seq = redis.call('ZSCORE', KEYS[2], lapsed[i])
  found[#found + 1] = {lapsed[i], lapsed[i + 1], tonumber(seq) or math.huge}
end
table.sort(found, function(a, b) return a[3] < b[3] end)
local upcoming = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
local reply = {OK, upcoming[2] or 0}
for i = 1, math.min(n, #found) do
  reply[#reply + 1] = found[i][1]
  reply[#reply + 1] = found[i][2]
  reply[#reply + 1] = tostring(found[i][3])
end
return reply
