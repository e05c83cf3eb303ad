-- A writer's heartbeat removed at a clean stop, only if it is still this process's (ARGV[1]):
-- after an outage longer than its TTL another process may have taken the id.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
