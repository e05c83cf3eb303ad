-- For each pair KEYS[i] (detail hash), KEYS[i+1] (seed hash): the detail hash and its TTL, or
-- failing that the seed hash and its TTL if it is a hash. As JSON objects, so that 1000 records
-- are parsed in one C call instead of field by field (a live view loads 100k leases at start).
local function object(flat)
  local fields = {}
  for j = 1, #flat, 2 do fields[flat[j]] = flat[j + 1] end
  return fields
end
local out = {}
for i = 1, #KEYS, 2 do
  local detail, seed, ttl = redis.call('HGETALL', KEYS[i]), {}, -2
  if #detail > 0 then
    ttl = redis.call('TTL', KEYS[i])
  elseif redis.call('TYPE', KEYS[i + 1]).ok == 'hash' then
    seed = redis.call('HGETALL', KEYS[i + 1])
    ttl = redis.call('TTL', KEYS[i + 1])
  end
  out[#out + 1] = {object(detail), object(seed), ttl}
end
return cjson.encode(out)
