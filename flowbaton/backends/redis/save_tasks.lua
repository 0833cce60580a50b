-- save_tasks: create or replace one or more task details at once, fenced by the
-- claim token (one task's result and the next one's start, in one round trip).
-- KEYS[1] claim, KEYS[2] tasks hash
-- ARGV[1] claim id, ARGV[2] epoch, ARGV[3..] task id (hash field), task JSON, pairs
-- Returns {OK} written, {NOT_CURRENT} (nothing written).
-- Safe to run twice: the same fields get the same values.
if not is_current(KEYS[1], ARGV[1], ARGV[2]) then return {NOT_CURRENT} end
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
return {OK}
