-- A writer's heartbeat (spec R-HV-1): set or refresh KEYS[1] to this process's value ARGV[1]
-- for ARGV[2] seconds, unless another process's live heartbeat holds it.
-- Returns nothing when set, else the value of the process that holds it.
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[1] then return held end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return false
