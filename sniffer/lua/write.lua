-- One batch of tracker commands, applied in order (spec R-RD-7: writes for one address reach
-- Redis in processing order) with the same commands, keys and arguments as a MULTI/EXEC of them
-- would send. Field names travel once per batch, in "schemas" (the names of a record's fields,
-- in order), so that a record is mostly its values.
-- ARGV: the expiry set, event and rogue streams, rogue-server hash, stream cap, rogue-server
-- cap; the seed, detail, MAC-index and client-id-index key prefixes (keys are prefix .. value,
-- as Keys builds them); the number of schemas, each as n-detail n-names <names>; then one record
-- per command:
--   G ip expire seconds score schema <values>  (a Grant: n-detail detail fields, then the
--                                               event's extra fields: event, ts, writer, previous_*)
--   R ip schema <values>                       (a Revoke: its event's fields)
--   X server schema <values>                   (a rogue reply: its event's fields)
-- A Grant DELs first (R-RD-2: a write replaces the whole record): fields never merge, and an
-- infinite rewrite drops the old TTL.
-- Like EXEC, every command runs even after one fails; the first error is returned at the end.
local A = ARGV
local expiry, events, rogue, rogue_servers = A[1], A[2], A[3], A[4]
local maxlen, rogue_servers_max = A[5], tonumber(A[6])
local seed_of, lease_of, by_mac, by_cid = A[7], A[8], A[9], A[10]
local failure
local function call(...)
  local reply = redis.pcall(...)
  if type(reply) == 'table' and reply.err and not failure then failure = reply.err end
end
local schemas, i = {}, 12
for s = 0, tonumber(A[11]) - 1 do
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
while i <= #A do
  local op, ip = A[i], A[i + 1]
  if op == 'G' then
    local expire, seconds, score = A[i + 2], A[i + 3], A[i + 4]
    schema, first = schemas[tonumber(A[i + 5])], i + 6
    local old_mac, old_cid = value('previous_mac'), value('previous_client_id')
    if old_mac then call('SREM', by_mac .. old_mac, ip) end
    if old_cid then call('SREM', by_cid .. old_cid, ip) end
    call('DEL', seed_of .. ip, lease_of .. ip)
    local mac, hostname, cid = value('mac'), value('hostname'), value('client_id')
    local seed = {}
    if mac then seed[#seed + 1] = 'mac'; seed[#seed + 1] = mac end
    if hostname then seed[#seed + 1] = 'hostname'; seed[#seed + 1] = hostname end
    if #seed > 0 then call('HSET', seed_of .. ip, unpack(seed)) end
    local event = fields(schema.n)
    call('HSET', lease_of .. ip, unpack(event, 1, 2 * schema.n_detail))
    if expire ~= '' then
      if #seed > 0 then call(expire, seed_of .. ip, seconds) end
      call(expire, lease_of .. ip, seconds)
    end
    if mac then call('SADD', by_mac .. mac, ip) end
    if cid then call('SADD', by_cid .. cid, ip) end
    call('ZADD', expiry, score, ip)
    call('XADD', events, 'MAXLEN', '~', maxlen, '*', unpack(event))
  else
    schema, first = schemas[tonumber(A[i + 2])], i + 3
    if op == 'R' then
      call('DEL', seed_of .. ip, lease_of .. ip)
      call('ZREM', expiry, ip)
      local mac, cid = value('mac'), value('client_id')
      if mac then call('SREM', by_mac .. mac, ip) end
      if cid then call('SREM', by_cid .. cid, ip) end
      call('XADD', events, 'MAXLEN', '~', maxlen, '*', unpack(fields(schema.n)))
    else
      -- Forged server identifiers must not grow the hash without end: past the cap, only
      -- servers already listed are counted (the stream still records every reply).
      if redis.call('HEXISTS', rogue_servers, ip) == 1
          or redis.call('HLEN', rogue_servers) < rogue_servers_max then
        call('HINCRBY', rogue_servers, ip, 1)
      end
      call('XADD', rogue, 'MAXLEN', '~', maxlen, '*', unpack(fields(schema.n)))
    end
  end
  i = first + schema.n
end
if failure then return redis.error_reply(failure) end
return 0
