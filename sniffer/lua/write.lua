-- Tracker writes on the keys this call declares, applied in order (spec R-RD-7: writes for one
-- address reach Redis in processing order). Every key is in KEYS, so that on Redis Cluster a
-- call touches one slot (hive.md R-HV-7): the store makes one call per slot there, and one call
-- for the whole batch on a standalone Redis. Field names travel once per call, in "schemas"
-- (the names of a record's fields, in order), so that a record is mostly its values.
-- ARGV: stream cap, rogue-server cap, history kept (microseconds before an address's newest
-- event, events an address); the number of schemas, each as n-detail n-names <names>; then the
-- operations, keys given as their index in KEYS (0: none):
--   L seed lease events macs cids expiry score expire seconds log version member ttl schema
--       <values>  a lease written whole: its seed hash (mac, hostname) and detail hash (the
--       n-detail first values) replaced, their expiry set; its event `member` added to the
--       address's history `log` (sniffer/history.py) at score `version`, the log kept `ttl`
--       seconds at least; with `events`, and if the history did not hold the event yet, an
--       event of every value added to that stream; with `macs`, `cids`, `expiry`, its address
--       (value `ip`) added to those indexes (the expiry set with `score`). Those keys share the
--       call's slot; when they do not, the store sends them their own A and Z operations
--       instead (0 here).
--   D seed lease events macs cids expiry log version member ttl schema <values>  a lease
--       deleted, its event logged as for L, its address taken out of those indexes
--   E stream schema <values>             an event added to a capped stream
--   M log score member cut ttl           a MAC's history: ZADD GT (a score never lowered),
--       scores up to `cut` trimmed, kept `ttl` seconds at least
--   A set member | S set member          SADD | SREM
--   Z zset score member | z zset member  ZADD | ZREM
--   C hash member                        a rogue server's reply counted (capped)
--   W hash field value                   HSET
-- A lease is DELeted before it is written (R-RD-2: a write replaces the whole record): fields
-- never merge, and an infinite rewrite drops the old TTL.
-- Like EXEC, every command runs even after one fails; the first error is returned at the end.
local A = ARGV
local maxlen, rogue_servers_max = A[1], tonumber(A[2])
local keep_us, keep_n = tonumber(A[3]), tonumber(A[4])
local failure
local function call(...)
  local reply = redis.pcall(...)
  if type(reply) == 'table' and reply.err and not failure then failure = reply.err end
  return reply
end
-- At least `ttl` seconds left on `key`, never fewer than it had (EXPIRE GT came with Redis 7).
local function keep_for(key, ttl)
  local left = call('TTL', key)
  if type(left) == 'number' and left < ttl then call('EXPIRE', key, ttl) end
end
-- Adds an event to an address's history, trimmed to the retention before it and to the newest
-- keep_n events. False when the history held it already (the same packet again: a replay, a
-- twin sniffer). Scores are integers, so "< cut" is "<= cut - 1".
local function logged(log, version, member, ttl)
  if call('ZADD', log, version, member) ~= 1 then return false end
  call('ZREMRANGEBYSCORE', log, '-inf', tonumber(version) - keep_us - 1)
  call('ZREMRANGEBYRANK', log, 0, -(keep_n + 1))
  keep_for(log, ttl)
  return true
end
local schemas, i = {}, 6
for s = 0, tonumber(A[5]) - 1 do
  local n_detail, n = tonumber(A[i]), tonumber(A[i + 1])
  local names, at = {}, {}
  for k = 1, n do
    names[k] = A[i + 1 + k]
    at[names[k]] = k
  end
  schemas[s] = {names = names, at = at, n = n, n_detail = n_detail}
  i = i + 2 + n
end
local schema, first
local function value(name)
  local k = schema.at[name]
  if k then return A[first + k - 1] end
end
local function fields(count)
  local flat = {}
  for k = 1, count do
    flat[2 * k - 1] = schema.names[k]
    flat[2 * k] = A[first + k - 1]
  end
  return flat
end
local function key(at) return KEYS[tonumber(at)] end
local function event(stream)
  if stream ~= '0' then
    call('XADD', key(stream), 'MAXLEN', '~', maxlen, '*', unpack(fields(schema.n)))
  end
end
local function indexes(op, macs, cids, ip)
  if macs ~= '0' then call(op, key(macs), ip) end
  if cids ~= '0' then call(op, key(cids), ip) end
end
while i <= #A do
  local op = A[i]
  if op == 'L' then
    local seed, lease, stream, macs, cids = key(A[i + 1]), key(A[i + 2]), A[i + 3], A[i + 4],
      A[i + 5]
    local expiry, score, expire, seconds = A[i + 6], A[i + 7], A[i + 8], A[i + 9]
    local log, version, member, ttl = key(A[i + 10]), A[i + 11], A[i + 12], tonumber(A[i + 13])
    schema, first = schemas[tonumber(A[i + 14])], i + 15
    call('DEL', seed, lease)
    local mac, hostname = value('mac'), value('hostname')
    local flat = {}
    if mac then flat[#flat + 1] = 'mac'; flat[#flat + 1] = mac end
    if hostname then flat[#flat + 1] = 'hostname'; flat[#flat + 1] = hostname end
    if #flat > 0 then call('HSET', seed, unpack(flat)) end
    call('HSET', lease, unpack(fields(schema.n_detail)))
    if expire ~= '' then
      if #flat > 0 then call(expire, seed, seconds) end
      call(expire, lease, seconds)
    end
    if logged(log, version, member, ttl) then event(stream) end
    local ip = value('ip')
    indexes('SADD', macs, cids, ip)
    if expiry ~= '0' then call('ZADD', key(expiry), score, ip) end
    i = first + schema.n
  elseif op == 'D' then
    call('DEL', key(A[i + 1]), key(A[i + 2]))
    local stream, macs, cids, expiry = A[i + 3], A[i + 4], A[i + 5], A[i + 6]
    local log, version, member, ttl = key(A[i + 7]), A[i + 8], A[i + 9], tonumber(A[i + 10])
    schema, first = schemas[tonumber(A[i + 11])], i + 12
    if logged(log, version, member, ttl) then event(stream) end
    local ip = value('ip')
    indexes('SREM', macs, cids, ip)
    if expiry ~= '0' then call('ZREM', key(expiry), ip) end
    i = first + schema.n
  elseif op == 'E' then
    local stream = A[i + 1]
    schema, first = schemas[tonumber(A[i + 2])], i + 3
    event(stream)
    i = first + schema.n
  elseif op == 'A' then
    call('SADD', key(A[i + 1]), A[i + 2]); i = i + 3
  elseif op == 'S' then
    call('SREM', key(A[i + 1]), A[i + 2]); i = i + 3
  elseif op == 'Z' then
    call('ZADD', key(A[i + 1]), A[i + 2], A[i + 3]); i = i + 4
  elseif op == 'z' then
    call('ZREM', key(A[i + 1]), A[i + 2]); i = i + 3
  elseif op == 'C' then
    -- Forged server identifiers must not grow the hash without end: past the cap, only
    -- servers already listed are counted (the stream still records every reply).
    local servers, server = key(A[i + 1]), A[i + 2]
    if redis.call('HEXISTS', servers, server) == 1
        or redis.call('HLEN', servers) < rogue_servers_max then
      call('HINCRBY', servers, server, 1)
    end
    i = i + 3
  elseif op == 'M' then
    local mac_log = key(A[i + 1])
    call('ZADD', mac_log, 'GT', A[i + 2], A[i + 3])
    call('ZREMRANGEBYSCORE', mac_log, '-inf', A[i + 4])
    keep_for(mac_log, tonumber(A[i + 5]))
    i = i + 6
  elseif op == 'W' then
    call('HSET', key(A[i + 1]), A[i + 2], A[i + 3]); i = i + 4
  else
    return redis.error_reply('write.lua: unknown operation ' .. tostring(op))
  end
end
if failure then return redis.error_reply(failure) end
return 0
