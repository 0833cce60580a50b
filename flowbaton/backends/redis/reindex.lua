-- reindex: compare-and-set clean-up of a hint index.
-- KEYS[1] a sorted set
-- ARGV triples: member, expected score, new score ('' removes the member)
-- A change applies only while the member still has the expected score, so
-- a claim, renewal or release that moved the entry meanwhile wins.
-- Returns {OK, the number of members changed}
local changed = 0
for i = 1, #ARGV, 3 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    if ARGV[i + 2] == '' then
      redis.call('ZREM', KEYS[1], ARGV[i])
    else
      redis.call('ZADD', KEYS[1], ARGV[i + 2], ARGV[i])
    end
    changed = changed + 1
  end
end
return {OK, changed}
