-- For each detail hash KEYS[i]: the values of the fields ARGV (null where absent) then its TTL
-- (-2 once it has gone), or false if KEYS[i] is not a hash. As one JSON array, so that a
-- thousand records are parsed in one C call instead of string by string (`leases` at 100k).
local out = {}
for i = 1, #KEYS do
  local values = redis.pcall('HMGET', KEYS[i], unpack(ARGV))
  if values.err then
    out[i] = false
  else
    for j = 1, #ARGV do
      if not values[j] then values[j] = cjson.null end
    end
    values[#ARGV + 1] = redis.call('TTL', KEYS[i])
    out[i] = values
  end
end
return cjson.encode(out)
