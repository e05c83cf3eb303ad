-- Remove ARGV[1] from the set or sorted set KEYS[1] unless the detail hash KEYS[2] still has
-- field ARGV[2] = ARGV[3]; atomic, so a concurrent rewrite of that lease is never undone.
if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[3] then return 0 end
if redis.call('TYPE', KEYS[1]).ok == 'zset' then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return redis.call('SREM', KEYS[1], ARGV[1])
