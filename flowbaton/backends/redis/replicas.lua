-- replicas: list live replicas, dropping those whose heartbeat expired.
-- KEYS[1] replicas hash (id -> JSON), KEYS[2] replica expiry zset (id -> ms)
-- ARGV[1] now in ms
-- Returns {OK, id, JSON record, id, JSON record, ...} of the live replicas
-- (the id names a record that cannot be read)
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for _, id in ipairs(dead) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[1], id)
end
local live = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf')
local records = {OK}
for _, id in ipairs(live) do
  local raw = redis.call('HGET', KEYS[1], id)
  if raw then
    records[#records + 1] = id
    records[#records + 1] = raw
  end
end
return records
