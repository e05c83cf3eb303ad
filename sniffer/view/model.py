"""The live view's model: the current leases in memory, kept in every display order, with the
recent changes and counters of the last hour's events."""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from itertools import takewhile
from operator import attrgetter
from typing import Any

from sniffer.keys import ipv4_number
from sniffer.lease import DETAIL_FIELDS, Lease, LeaseRow, LeaseValues
from sniffer.view.render import event_label


class Sort(StrEnum):
    ip = "ip"
    left = "time left"
    recency = "recency"


GRANTS = frozenset({"granted", "renewed", "reassigned"})
# Labels counted in the header; anything else a foreign writer puts in the stream is "other",
# so that the counters stay bounded.
COUNTED = GRANTS | {"released", "declined", "nak", "superseded", "expired", "vanished", "rogue"}
WINDOW = 3600  # seconds of events the header counts
BUCKET = 10  # seconds per counter bucket
Entry = tuple[Any, ...]  # an index entry: sort key..., ip number, ip


@dataclass(frozen=True, slots=True)
class Row:
    """One current lease as the view shows it."""

    ip: str  # the address the record is stored at (a foreign record's own "ip" field may lie)
    number: int
    lease: Lease
    deadline: float  # local Unix seconds when its TTL runs out; inf when infinite
    change: str  # the last change seen ("" if none was seen)
    when: float  # when that change happened, else the lease's `updated`; 0.0 if unknown
    hay: str  # what the filter searches: ip, mac and hostname, lowercase


# A row as the model keeps it: a plain tuple, Row's fields in order with the lease as the tuple
# of its fields. Tuples of strings, numbers and None drop out of the garbage collector's lists
# after its first look at them: as Row and Lease objects, 100k rows made each of its full passes
# some 60 ms longer (90 ms instead of 30), a stalled refresh. Row objects are built when read.
Kept = tuple[Any, ...]
IP, NUMBER, LEASE, DEADLINE, CHANGE, WHEN, HAY = range(7)
_lease_fields = attrgetter(*DETAIL_FIELDS)


def _row(kept: Kept) -> Row:
    return Row(kept[IP], kept[NUMBER], Lease(*kept[LEASE]), kept[DEADLINE], kept[CHANGE],
               kept[WHEN], kept[HAY])


class Rows(Mapping[str, Row]):
    """The current rows by address, read-only, each Row built as it is read."""

    def __init__(self, kept: dict[str, Kept]) -> None:
        self._kept = kept

    def __getitem__(self, ip: str) -> Row:
        return _row(self._kept[ip])

    def __contains__(self, ip: object) -> bool:
        return ip in self._kept

    def __iter__(self) -> Iterator[str]:
        return iter(self._kept)

    def __len__(self) -> int:
        return len(self._kept)


@dataclass(frozen=True, slots=True)
class Change:
    """An entry of the recent-changes list."""

    when: float
    change: str
    ip: str
    mac: str | None
    hostname: str | None

    @classmethod
    def from_event(cls, fields: dict[str, str], when: float) -> Change:
        return cls(when, event_label(fields), fields.get("ip", ""), fields.get("mac"),
                   fields.get("hostname"))


def _entry(sort: Sort, row: Kept) -> Entry:
    if sort is Sort.left:
        return (row[DEADLINE], row[NUMBER], row[IP])
    if sort is Sort.recency:
        return (-row[WHEN], row[NUMBER], row[IP])
    return (row[NUMBER], row[IP])


class SortedIndex:
    """Entries in order, kept in blocks of at most 2*LOAD entries, with each block's last entry
    in a list to bisect (the layout of the sortedcontainers package). Adding or removing an
    entry moves at most one block's worth, so 100k rows update in microseconds each."""

    LOAD = 512

    def __init__(self) -> None:
        self._blocks: list[list[Entry]] = []
        self._maxes: list[Entry] = []
        self._len = 0

    @classmethod
    def from_sorted(cls, entries: list[Entry]) -> SortedIndex:
        index = cls()
        index._blocks = [entries[i:i + cls.LOAD] for i in range(0, len(entries), cls.LOAD)]
        index._maxes = [block[-1] for block in index._blocks]
        index._len = len(entries)
        return index

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Entry]:
        for block in self._blocks:
            yield from block

    def add(self, entry: Entry) -> None:
        self._len += 1
        if not self._blocks:
            self._blocks.append([entry])
            self._maxes.append(entry)
            return
        i = min(bisect_left(self._maxes, entry), len(self._maxes) - 1)
        block = self._blocks[i]
        insort(block, entry)
        self._maxes[i] = block[-1]
        if len(block) > 2 * self.LOAD:
            self._blocks[i:i + 1] = [block[:self.LOAD], block[self.LOAD:]]
            self._maxes[i:i + 1] = [block[self.LOAD - 1], block[-1]]

    def discard(self, entry: Entry) -> None:
        i = bisect_left(self._maxes, entry)
        if i == len(self._maxes):
            return
        block = self._blocks[i]
        j = bisect_left(block, entry)
        if block[j] != entry:
            return
        del block[j]
        self._len -= 1
        if len(block) < self.LOAD // 4 and len(self._blocks) > 1:
            # Fold a small block into a neighbour, so blocks stay few however rows churn.
            i = max(i, 1)
            merged = self._blocks[i - 1] + self._blocks[i]
            self._blocks[i - 1:i + 1] = [merged]
            self._maxes[i - 1:i + 1] = [merged[-1]]
            if len(merged) > 2 * self.LOAD:
                self._blocks[i - 1:i] = [merged[:self.LOAD], merged[self.LOAD:]]
                self._maxes[i - 1:i] = [merged[self.LOAD - 1], merged[-1]]
        elif not block:
            del self._blocks[i], self._maxes[i]
        else:
            self._maxes[i] = block[-1]

    def window(self, start: int, count: int) -> list[Entry]:
        """`count` entries from position `start`."""
        found: list[Entry] = []
        for block in self._blocks:
            if start >= len(block):
                start -= len(block)
                continue
            found += block[start:start + count - len(found)]
            start = 0
            if len(found) >= count:
                break
        return found


class ViewModel:
    """The current leases (ip -> Row) in every display order, the recent changes, and counters
    of the last hour's events in 10-second buckets. Memory grows with the leases only."""

    def __init__(self, recent: int = 50) -> None:
        self._kept: dict[str, Kept] = {}
        self.rows = Rows(self._kept)
        self.recent: deque[Change] = deque(maxlen=recent)
        self.writers: dict[str, int] = {}  # writer id -> Unix seconds of its last write
        self.live: set[str] = set()  # the writers whose heartbeat is live
        self.last_rogue: str | None = None  # the server of the latest rogue reply
        self.status = ""  # loading progress, or the Redis problem being retried
        self._indexes = {sort: SortedIndex() for sort in Sort}
        self._buckets: dict[int, Counter[str]] = {}
        self._filter: _Filter | None = None

    def put(self, ip: str, lease: Lease, ttl: int, now: float, change: str | None = None,
            when: float | None = None) -> None:
        """Show `lease` at `ip` with `ttl` seconds left (-1: infinite) as of `now`. Without a
        change, the row keeps the change last seen for it."""
        self._put(ip, _lease_fields(lease), lease, ttl, now, change, when)

    def put_row(self, row: LeaseRow, now: float) -> None:
        """Show a record as the store reads it in bulk (at its own address)."""
        self._put(row.ip, row[:-1], row, row.ttl, now, None, None)

    def _put(self, ip: str, values: LeaseValues, lease: Lease | LeaseRow, ttl: int, now: float,
             change: str | None, when: float | None) -> None:
        """`values`: the lease's fields, as the row keeps them; `lease` the same, by name."""
        old = self._kept.get(ip)
        number = old[NUMBER] if old is not None else ipv4_number(ip)
        if number is None:
            return
        if change is None:
            change, when = (old[CHANGE], old[WHEN]) if old is not None and old[CHANGE] \
                else ("", None)
        when = float(lease.updated) if when is None else when
        deadline = now + ttl if ttl >= 0 else math.inf
        hay = f"{ip}\t{lease.mac or ''}\t{lease.hostname or ''}".lower()
        self._replace(old, (ip, number, values, deadline, change, when, hay))

    def label(self, ip: str, change: str, when: float) -> None:
        """Record the last change of a row whose contents are already current."""
        old = self._kept.get(ip)
        if old is not None:
            self._replace(old, (*old[:CHANGE], change, when, old[HAY]))

    def drop(self, ip: str) -> Row | None:
        old = self._kept.pop(ip, None)
        if old is None:
            return None
        self._replace(old, None)
        return _row(old)

    def note(self, change: Change) -> None:
        """A change for the recent list and the counters."""
        self.recent.append(change)
        self.count(change.change, change.when)

    def count(self, kind: str, when: float) -> None:
        bucket = int(when // BUCKET)
        if bucket not in self._buckets:
            oldest = bucket - WINDOW // BUCKET
            for stale in [b for b in self._buckets if b < oldest]:
                del self._buckets[stale]
        self._buckets.setdefault(bucket, Counter())[kind if kind in COUNTED else "other"] += 1

    def totals(self, now: float, seconds: int = WINDOW) -> Counter[str]:
        """Events per kind in the last `seconds` (to a bucket's precision)."""
        first = int(now // BUCKET) - seconds // BUCKET + 1
        total: Counter[str] = Counter()
        for bucket, counts in self._buckets.items():
            if bucket >= first:
                total.update(counts)
        return total

    def expire(self, now: float) -> int:
        """Drop the rows whose TTL has run out (Redis has expired them too); how many."""
        due = list(takewhile(lambda e: e[0] <= now, self._indexes[Sort.left]))
        for deadline, _number, ip in due:
            row = self.drop(ip)
            if row is not None:
                self.note(Change(deadline, "expired", ip, row.lease.mac, row.lease.hostname))
        return len(due)

    def matching(self, sort: Sort, text: str) -> SortedIndex:
        """The entries in `sort` order whose ip, MAC or hostname contains `text` (any case)."""
        if not text:
            self._filter = None  # it would hold on to the rows changed meanwhile
            return self._indexes[sort]
        wanted = self._filter
        if wanted is None or wanted.sort is not sort or wanted.text != text:
            # Typing narrows the filter: the new matches are among the old ones.
            narrower = wanted is not None and wanted.sort is sort and \
                text.startswith(wanted.text) and wanted.catch_up()
            wanted = self._filter = _Filter(sort, text, self._kept, self._indexes[sort],
                                            wanted.index if wanted and narrower else None)
        elif not wanted.catch_up():
            wanted = self._filter = _Filter(sort, text, self._kept, self._indexes[sort])
        return wanted.index

    def window(self, sort: Sort, text: str, offset: int, count: int) -> tuple[list[Row], int]:
        """Up to `count` matching rows from position `offset` on, and how many match."""
        entries = self.matching(sort, text)
        return [_row(self._kept[entry[-1]]) for entry in entries.window(offset, count)], \
            len(entries)

    def _replace(self, old: Kept | None, new: Kept | None) -> None:
        for sort, index in self._indexes.items():
            before = _entry(sort, old) if old is not None else None
            after = _entry(sort, new) if new is not None else None
            if before == after:  # a renewal keeps its address; a label, its deadline
                continue
            if before is not None:
                index.discard(before)
            if after is not None:
                index.add(after)
        if new is not None:
            self._kept[new[IP]] = new
        if self._filter is not None:
            self._filter.changed(old, new)


class _Filter:
    """The rows matching a filter text, in one sort order, kept up to date change by change:
    with 100k rows and a sniffer writing, a rescan per refresh would not fit in one."""

    def __init__(self, sort: Sort, text: str, rows: dict[str, Kept], order: SortedIndex,
                 among: SortedIndex | None = None) -> None:
        self.sort, self.text, self.needle = sort, text, text.lower()
        needle = self.needle
        if among is not None:
            entries = [e for e in among if needle in rows[e[-1]][HAY]]
        else:
            # The rows dict is scanned fastest (its values lie in insertion order); a few
            # matches are then sorted, many are picked out of the index in order.
            found = [row for row in rows.values() if needle in row[HAY]]
            if len(found) * 4 < len(rows):
                entries = sorted(_entry(sort, row) for row in found)
            else:
                ips = {row[IP] for row in found}
                entries = [e for e in order if e[-1] in ips]
        self.index = SortedIndex.from_sorted(entries)
        self._pending: list[tuple[Kept | None, Kept | None]] = []
        self._limit = max(1000, len(rows))

    def changed(self, old: Kept | None, new: Kept | None) -> None:
        if len(self._pending) <= self._limit:  # past that, a new scan costs less
            self._pending.append((old, new))

    def catch_up(self) -> bool:
        """Apply the changes since; False if there were too many to follow."""
        if len(self._pending) > self._limit:
            return False
        for old, new in self._pending:
            if old is not None and self.needle in old[HAY]:
                self.index.discard(_entry(self.sort, old))
            if new is not None and self.needle in new[HAY]:
                self.index.add(_entry(self.sort, new))
        self._pending.clear()
        return True
