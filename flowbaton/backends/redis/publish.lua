-- publish: PUBLISH from inside a pipeline. A Redis Cluster client refuses
-- PUBLISH in a pipeline (it has no key to route by); a script names the
-- channel as its key, so it routes like any other command. A message
-- published on any node of a cluster reaches subscribers on every node.
-- KEYS[1] the channel, ARGV[1] the message
-- Returns {OK, the number of subscribers reached on this node}
return {OK, redis.call('PUBLISH', KEYS[1], ARGV[1])}
