-- save_task: create or replace one task detail, fenced by the claim token.
-- KEYS[1] claim, KEYS[2] tasks hash
-- ARGV[1] claim id, ARGV[2] epoch, ARGV[3] task id (hash field), ARGV[4] task JSON
-- Returns 1 written, 0 the token is not current (nothing written)
if not is_current(KEYS[1], ARGV[1], ARGV[2]) then return 0 end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
return 1
