-- Tracker writes on the keys this call declares, applied in order (spec R-RD-7: writes for one
-- address reach Redis in processing order). Every key is in KEYS, so that on Redis Cluster a
-- call touches one slot (hive.md R-HV-7): the store makes one call per slot there, and one call
-- for the whole batch on a standalone Redis. Field names travel once per call, in "schemas"
-- (the names of a record's fields, in order), so that a record is mostly its values.
-- ARGV: the number of schemas, each as n-detail n-names <names>; then the operations, keys
-- given as their index in KEYS (0: none):
--   L seed lease events macs cids expiry score expire seconds log version member ttl schema
--       <values>  a grant: its event `member` (sniffer/history.py) added to the address's
--       history `log` at score `version`, the log kept `ttl` seconds at least; then the record
--       recomputed from the log (hive.md R-HV-3, below). When the grant is the address's
--       current binding, its seed hash (mac, hostname) and detail hash (the n-detail first
--       values) replace the record, their expiry set, and with `macs`, `cids`, `expiry` its
--       address (value `ip`) is added to those indexes (the expiry set with `score`). With
--       `events`, an event of every value goes to that stream unless the log held it already. Those keys share the call's
--       slot; when they do not (0 here), the store writes them after, by the result.
--   D seed lease events macs cids expiry log version member ttl schema <values>  a deletion
--       of the named client's binding: logged as for L, the record deleted if the client holds
--       it, its address then taken out of those indexes
-- Convergence (hive.md R-HV-3): the record is a function of the log, not of arrival order. The
-- newest grant (in the log's order: version, then member, as Redis sorts them) holds the
-- address unless a later deletion names its client; a deletion naming another client changes
-- nothing (H15), and an older grant never comes back (a newer grant ended it). So only the
-- event being added can become the record: a grant older than the newest, or one a logged
-- deletion ended, is only logged. An event already held (the same packet from a twin sniffer
-- or a replay: the same member but for its version, within the duplicate window, no event of
-- that client between) is not logged again and changes nothing; of the two the lower version
-- is kept, so that the log too is the same in every order.
-- The reply: for each L and D, in order, what it did (w: written, x: record deleted, s: only
-- logged, d: duplicate) and the identity of the record it replaced or deleted, if that was
-- another client's or under other names (mac, client-id; '' for none), so that the store
-- can take it out of the indexes, which it cannot name here.
--   E stream schema <values>             an event added to a capped stream
--   M log score member cut ttl           a MAC's history: ZADD GT (a score never lowered),
--       scores up to `cut` trimmed, kept `ttl` seconds at least
--   A set member | S set member          SADD | SREM
--   Z zset score member | z zset member  ZADD | ZREM
--   C hash member                        a rogue server's reply counted (capped)
--   W hash field value                   HSET; the hash's length joins the reply
-- A lease is DELeted before it is written (R-RD-2: a write replaces the whole record): fields
-- never merge, and an infinite rewrite drops the old TTL.
-- Like EXEC, every command runs even after one fails; the first error is returned at the end.
local A = ARGV
-- The store's settings, written into the text when it loads the script (sniffer/store.py), so
-- that no call carries them: the stream cap, the rogue-server cap, the history kept
-- (microseconds before an address's newest event, events an address), the duplicate window
-- (microseconds).
local maxlen, rogue_servers_max, keep_us, keep_n, window = {{settings}}
local failure, results = nil, {}
local function call(...)
  local reply = redis.pcall(...)
  if type(reply) == 'table' and reply.err and not failure then failure = reply.err end
  return reply
end
-- At least `ttl` seconds left on a key that had `left` (its TTL before it changed: -2 when it did
-- not exist, -1 without expiry), never fewer than it had (EXPIRE GT came with Redis 7).
local function keep_for(key, left, ttl)
  if type(left) == 'number' and left < ttl then call('EXPIRE', key, ttl) end
end
-- A number as Redis reads it back exactly (Lua's tostring keeps 14 digits; a version has 16).
local function exact(n) return string.format('%.0f', n) end
local function decoded(member)
  local ok, event = pcall(cjson.decode, member)
  if ok and type(event) == 'table' then return event end
end
-- R-ID-3: client-ids if both have one, else typed hardware addresses if both have one.
local function same_client(a, b)
  if a.cid and b.cid then return a.cid == b.cid end
  return a.mac ~= nil and a.mac == b.mac and (a.ht or 1) == (b.ht or 1)
end
-- Whether event (v1, m1) comes after (v2, m2) in the log's order.
local function later(v1, m1, v2, m2) return v1 > v2 or (v1 == v2 and m1 > m2) end
-- A member without its version: what two sightings of one packet have in common.
local function body(member) return (string.gsub(member, '^{"v":%d+,', '', 1)) end
-- Whether an event of `event`'s client lies strictly between versions v1 and v2 in `near`.
local function between(near, v1, v2, event)
  local low, high = math.min(v1, v2), math.max(v1, v2)
  for j = 1, #near, 2 do
    local v = tonumber(near[j + 1])
    if v > low and v < high then
      local other = decoded(near[j])
      if other and same_client(other, event) then return true end
    end
  end
  return false
end
-- Adds an event to an address's log, trimmed to the retention before it and to the newest
-- keep_n events. Returns the events logged after it ({version, event} each), or nil when
-- the log holds it already (a duplicate: see Convergence above). `event` is the member
-- decoded, or nil to decode it only if needed. A log that does not exist yet (most, in a
-- replay) has nothing to compare with or trim: 3 commands instead of 6.
local function logged(log, version, member, ttl, event)
  local left = call('TTL', log)
  if left == -2 then
    call('ZADD', log, version, member)
    call('EXPIRE', log, ttl)
    return {}
  end
  local v0, mine = tonumber(version), body(member)
  local near = redis.call('ZRANGEBYSCORE', log, exact(v0 - window), '+inf', 'WITHSCORES')
  local after = {}
  for j = 1, #near, 2 do
    local m, v = near[j], tonumber(near[j + 1])
    if v <= v0 + window and body(m) == mine then
      event = event or decoded(member) or {}
      if not between(near, v0, v, event) then
        if later(v, m, v0, member) then  -- the lower version is the one kept
          call('ZREM', log, m)
          call('ZADD', log, version, member)
        end
        return nil
      end
    end
    if later(v, m, v0, member) then after[#after + 1] = {v, decoded(m)} end
  end
  call('ZADD', log, version, member)
  call('ZREMRANGEBYSCORE', log, '-inf', exact(v0 - keep_us - 1))
  call('ZREMRANGEBYRANK', log, 0, -(keep_n + 1))
  keep_for(log, left, ttl)
  return after
end
-- The newest grant in a log ({version, member, event}), or nil.
local function newest_grant(log)
  for start = 0, keep_n, 16 do
    local page = redis.call('ZREVRANGE', log, start, start + 15, 'WITHSCORES')
    for j = 1, #page, 2 do
      local event = decoded(page[j])
      if event and event.k == 'g' then return {tonumber(page[j + 1]), page[j], event} end
    end
    if #page < 32 then return nil end
  end
end
-- The record at an address as an identity (mac, ht, cid) and its `updated` second, or nil.
local function record(lease)
  local f = redis.call('HMGET', lease, 'mac', 'htype', 'client_id', 'updated')
  if not f[4] then return nil end
  return {mac = f[1] or nil, ht = tonumber(f[2]) or 1, cid = f[3] or nil,
          updated = tonumber(f[4])}
end
-- What a lease operation did, and the record it ended if the indexes list it under other
-- names than `event`'s (a reassignment, another writer's record).
local function result(code, ended, event)
  local mac, cid = '', ''
  if ended then
    if ended.mac and ended.mac ~= event.mac then mac = ended.mac end
    if ended.cid and ended.cid ~= event.cid then cid = ended.cid end
  end
  results[#results + 1] = code
  results[#results + 1] = mac
  results[#results + 1] = cid
end
-- A schema's names are read where they lie in ARGV (from `names`), not copied into tables:
-- most calls on a cluster hold one record, which reads three of them.
local schemas, i = {}, 2
for s = 0, tonumber(A[1]) - 1 do
  local n = tonumber(A[i + 1])
  schemas[s] = {names = i + 2, n = n, n_detail = tonumber(A[i])}
  i = i + 2 + n
end
local schema, first
local function value(name)
  local names = schema.names
  for k = 0, schema.n - 1 do
    if A[names + k] == name then return A[first + k] end
  end
end
local function fields(count)
  local flat, names = {}, schema.names
  for k = 1, count do
    flat[2 * k - 1] = A[names + k - 1]
    flat[2 * k] = A[first + k - 1]
  end
  return flat
end
local function key(at) return KEYS[tonumber(at)] end
-- The event of every value to `stream`; `label` replaces the tracker's `event` field (it only
-- knew its own records: the store knows whom a grant replaced).
local function event(stream, label)
  if stream ~= '0' then
    local flat = fields(schema.n)
    if label then
      for k = 1, #flat, 2 do
        if flat[k] == 'event' then flat[k + 1] = label end
      end
    end
    call('XADD', key(stream), 'MAXLEN', '~', maxlen, '*', unpack(flat))
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
    -- The grant decoded only when there is something to compare it with (most grants have
    -- neither later events nor a record).
    local grant
    local after = logged(log, version, member, ttl, nil)
    if not after then
      result('d', nil, grant)
    else
      local newer, ended = false, false
      if #after > 0 then grant = decoded(member) or {} end
      for _, e in ipairs(after) do
        local other = e[2]
        if other then
          if other.k == 'g' then newer = true
          elseif same_client(other, grant) then ended = true end
        end
      end
      local old = record(lease)
      if old and not grant then grant = decoded(member) or {} end
      -- A record newer than the log knows (written before the logs, or its events trimmed).
      if old and old.updated > math.floor(tonumber(version) / 1000000) then newer = true end
      if newer then
        event(stream)
        result('s', nil, grant)
      elseif ended then  -- it replaced the record, then its client ended it
        if old then
          call('DEL', seed, lease)
          if expiry ~= '0' then call('ZREM', key(expiry), value('ip')) end
          result('x', old, grant)
        else
          result('s', nil, grant)
        end
        event(stream)
      else
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
        local label = 'granted'
        if old then label = same_client(old, grant) and 'renewed' or 'reassigned' end
        event(stream, label)
        local ip = value('ip')
        indexes('SADD', macs, cids, ip)
        if expiry ~= '0' then call('ZADD', key(expiry), score, ip) end
        result('w', old, grant)
      end
    end
    i = first + schema.n
  elseif op == 'D' then
    local seed, lease = key(A[i + 1]), key(A[i + 2])
    local stream, macs, cids, expiry = A[i + 3], A[i + 4], A[i + 5], A[i + 6]
    local log, version, member, ttl = key(A[i + 7]), A[i + 8], A[i + 9], tonumber(A[i + 10])
    schema, first = schemas[tonumber(A[i + 11])], i + 12
    local deletion = decoded(member) or {}
    local v = tonumber(version)
    if not logged(log, version, member, ttl, deletion) then
      result('d', nil, deletion)
    else
      local old, holder = record(lease), newest_grant(log)
      local applies
      if holder then  -- it ends the newest grant's binding, if it names that client
        applies = not later(holder[1], holder[2], v, member) and same_client(holder[3], deletion)
      else  -- no grant logged (a record from before the logs): the record's own
        applies = old ~= nil and same_client(old, deletion) and old.updated * 1000000 <= v
      end
      event(stream)
      if applies and old then
        call('DEL', seed, lease)
        local ip = value('ip')
        indexes('SREM', macs, cids, ip)
        if expiry ~= '0' then call('ZREM', key(expiry), ip) end
        result('x', old, deletion)
      else
        result('s', nil, deletion)
      end
    end
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
    local left = call('TTL', mac_log)
    call('ZADD', mac_log, 'GT', A[i + 2], A[i + 3])
    -- A new history holds only this score, later than the cut.
    if left ~= -2 then call('ZREMRANGEBYSCORE', mac_log, '-inf', A[i + 4]) end
    keep_for(mac_log, left, tonumber(A[i + 5]))
    i = i + 6
  elseif op == 'W' then
    call('HSET', key(A[i + 1]), A[i + 2], A[i + 3])
    results[#results + 1] = redis.call('HLEN', key(A[i + 1]))
    i = i + 4
  else
    return redis.error_reply('write.lua: unknown operation ' .. tostring(op))
  end
end
if failure then return redis.error_reply(failure) end
return results
