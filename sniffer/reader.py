"""LeaseReader: records read back from Redis, for restore, the CLI and the view (spec R-RD, the
Redis data model): the expiry set, records a batch at a time, addresses' histories, the streams,
seed hashes other programs wrote. Every key comes from `Keys` (sniffer/keys.py); LeaseStore
(sniffer/store.py) adds the writes.

Values read back are decoded here, so the store works with clients made with or without
`decode_responses`; bytes that are not UTF-8 (foreign seed hashes) are replaced, never trusted.
"""

from __future__ import annotations

import ipaddress
import json
import math
import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar, cast

import redis
from redis.commands.core import Script
from redis.exceptions import NoPermissionError
from redis.typing import EncodableT

from sniffer.connection import redis_errors
from sniffer.dhcp import ZERO
from sniffer.history import LogEvent, parse_member
from sniffer.keys import Keys, ipv4_number
from sniffer.lease import DETAIL_FIELDS, INFINITE, Lease, LeaseRow, parse_detail
from sniffer.scripts import ScriptRunner, key_slot, lua, text

T = TypeVar("T")
BATCH = 1000  # keys per read pipeline: 100k leases load in about 100 round trips
SCAN_BATCH = 10_000  # members of the expiry set per ZSCAN step
READERS = 2  # batches of records read at once
RECORDS_LUA, DETAILS_LUA = lua("records"), lua("details")
# A lease's place in the expiry set: its expiry (Redis's clock, inf when infinite), its address
# as a number, the address.
IndexEntry = tuple[float, int, str]


def _fields(raw: Any) -> dict[str, str]:
    return {text(k): text(v) for k, v in raw.items()}


def _entries(raw: Any) -> list[tuple[str, dict[str, str]]]:
    """Stream entries as (id, fields); entries without fields (deleted) are left out."""
    return [(text(entry_id), _fields(fields)) for entry_id, fields in raw or () if fields]


def _batches(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), BATCH):
        yield items[start:start + BATCH]

def _number(entry: IndexEntry) -> int:
    return entry[1]


def _ip_order(row: tuple[Lease, int]) -> int:
    return int(ipaddress.IPv4Address(row[0].ip))


class LeaseReader(ScriptRunner):
    """Reads records back from Redis for restore, the CLI and the view."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        super().__init__(client)
        self.keys = keys
        # skipped: detail hashes that Lease.from_fields refused and history members that
        # parse_member refused; pruned: stale set members.
        self.counters: Counter[str] = Counter()
        self._records_script = client.register_script(RECORDS_LUA)
        self._details_script = client.register_script(DETAILS_LUA)
        self._may_prune = True  # until Redis refuses: a reader's user may not write

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
                    ip = text(member)
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
                    events = [parse_member(text(member)) for member in members]
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
        return [text(ip) for ip in found]

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
                    for ip, (detail, seed, ttl) in zip(group, json.loads(text(reply)),
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
        return [ip for key in keys if ipv4_number(ip := text(key)[skip:]) is not None]

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
        return [text(m) for m in self.client.smembers(key)]

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
            for n, item in zip(group, json.loads(text(reply)), strict=True):
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
            now = [text(value) if value is not None else None for value in pipe.execute()]
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
            seed_keys = [text(k) for k in self.client.scan_iter(
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
