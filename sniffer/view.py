"""Rendering for terminals, and the live view of current leases.

Everything shown here came from the wire or from Redis, so it is untrusted: strings become
rich Text (never markup) and control characters are shown escaped.

The live view has three layers: `ViewModel` (the leases in memory, kept in display order, with
recent changes and counters), `Feed` (keeps the model current from the store, a bounded amount
of work per call) and `run_view` (terminal, keys and the refresh loop). `render` is a pure
function of the model, the UI state and the time.
"""

from __future__ import annotations

import codecs
import gc
import math
import os
import re
import select
import signal
import sys
import termios
import threading
import time
import tty
from bisect import bisect_left, insort
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import takewhile
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from sniffer.errors import HiveError
from sniffer.escape import printable
from sniffer.lease import Lease
from sniffer.store import BATCH, LeaseStore, StoreError, ipv4_number


def safe(value: object, style: str = "") -> Text:
    """A Text that prints `value` literally: no markup, no escape sequences."""
    return Text(printable(value), style=style)


def duration(seconds: int | None) -> str:
    """Compact time left: 59s, 12m05s, 3h07m, 2d04h; 'infinite' for None or negative TTL."""
    if seconds is None or seconds < 0:
        return "infinite"
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def lease_table(rows: list[tuple[Lease, int]], title: str | None = None) -> Table:
    """The `leases` table: one row per (lease, TTL in seconds, -1 for infinite)."""
    table = Table(title=title, header_style="bold", expand=False)
    for column, justify in (("IP", "left"), ("MAC", "left"), ("Hostname", "left"),
                            ("Expires in", "right"), ("Server", "left"), ("Relay", "left"),
                            ("Kind", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for lease, ttl in rows:
        table.add_row(
            safe(lease.ip),
            safe(lease.mac),
            safe(lease.hostname),
            safe(duration(ttl if ttl >= 0 else None)),
            safe(lease.server),
            safe(relay(lease)),
            safe(lease.kind),
        )
    return table


def relay(lease: Lease) -> str:
    return "" if lease.giaddr == "0.0.0.0" else lease.giaddr


def event_label(fields: dict[str, str]) -> str:
    """What an event did: granted, renewed, reassigned, or the reason of a deletion."""
    event = fields.get("event", "")
    return fields.get("reason", event) if event == "deleted" else event


def stream_seconds(entry_id: str) -> float:
    """A stream id's time: Redis milliseconds, then a sequence number."""
    return int(entry_id.partition("-")[0]) / 1000


def history_table(events: list[dict[str, str]]) -> Table:
    """The `history` table, one row per event as `LeaseStore.history` returns them."""
    table = Table(header_style="bold")
    for column in ("Time", "Event", "IP", "MAC", "Hostname", "Server", "Relay", "Previous MAC"):
        table.add_column(column, no_wrap=column in ("Time", "IP", "MAC"))
    for event in events:
        previous = event.get("previous_mac")
        giaddr = event.get("giaddr", "0.0.0.0")
        table.add_row(
            safe(_event_time(event)), safe(event_label(event)), safe(event.get("ip")),
            safe(event.get("mac")), safe(event.get("hostname")), safe(event.get("server")),
            safe("" if giaddr == "0.0.0.0" else giaddr),
            safe(previous if previous != event.get("mac") else None))
    return table


def _event_time(event: dict[str, str]) -> str:
    """The capture time the event carries, else the time it was written."""
    try:
        seconds = float(event["ts"]) if "ts" in event else stream_seconds(event["id"])
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))
    except (KeyError, ValueError, OverflowError, OSError):
        return "?"


# ---- the live view: model ------------------------------------------------------------------

class Sort(StrEnum):
    ip = "ip"
    left = "time left"
    recency = "recency"


GRANTS = frozenset({"granted", "renewed", "reassigned"})
# Labels counted in the header; anything else a foreign writer puts in the stream is "other",
# so that the counters stay bounded.
COUNTED = GRANTS | {"released", "declined", "nak", "superseded", "expired", "vanished", "rogue"}
HIGHLIGHT = 5.0  # seconds a change stays highlighted
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


def _entry(sort: Sort, row: Row) -> Entry:
    if sort is Sort.left:
        return (row.deadline, row.number, row.ip)
    if sort is Sort.recency:
        return (-row.when, row.number, row.ip)
    return (row.number, row.ip)


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
        self.rows: dict[str, Row] = {}
        self.recent: deque[Change] = deque(maxlen=recent)
        self.writers: dict[str, int] = {}  # sniffer name -> Unix seconds of its last write
        self.last_rogue: str | None = None  # the server of the latest rogue reply
        self.status = ""  # loading progress, or the Redis problem being retried
        self.changes = 0  # rows put or dropped so far
        self._indexes = {sort: SortedIndex() for sort in Sort}
        self._buckets: dict[int, Counter[str]] = {}
        self._filter: _Filter | None = None

    def put(self, ip: str, lease: Lease, ttl: int, now: float, change: str | None = None,
            when: float | None = None) -> None:
        """Show `lease` at `ip` with `ttl` seconds left (-1: infinite) as of `now`. Without a
        change, the row keeps the change last seen for it."""
        old = self.rows.get(ip)
        number = old.number if old is not None else ipv4_number(ip)
        if number is None:
            return
        if change is None:
            change, when = (old.change, old.when) if old is not None and old.change else ("", None)
        when = float(lease.updated) if when is None else when
        deadline = now + ttl if ttl >= 0 else math.inf
        hay = f"{ip}\t{lease.mac or ''}\t{lease.hostname or ''}".lower()
        self._replace(old, Row(ip, number, lease, deadline, change, when, hay))

    def label(self, ip: str, change: str, when: float) -> None:
        """Record the last change of a row whose contents are already current."""
        old = self.rows.get(ip)
        if old is not None:
            self._replace(old, Row(old.ip, old.number, old.lease, old.deadline, change, when,
                                   old.hay))

    def drop(self, ip: str) -> Row | None:
        old = self.rows.pop(ip, None)
        if old is not None:
            self._replace(old, None)
        return old

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
            wanted = self._filter = _Filter(sort, text, self.rows, self._indexes[sort],
                                            wanted.index if wanted and narrower else None)
        elif not wanted.catch_up():
            wanted = self._filter = _Filter(sort, text, self.rows, self._indexes[sort])
        return wanted.index

    def window(self, sort: Sort, text: str, offset: int, count: int) -> tuple[list[Row], int]:
        """Up to `count` matching rows from position `offset` on, and how many match."""
        entries = self.matching(sort, text)
        return [self.rows[entry[-1]] for entry in entries.window(offset, count)], len(entries)

    def _replace(self, old: Row | None, new: Row | None) -> None:
        for sort, index in self._indexes.items():
            if old is not None:
                index.discard(_entry(sort, old))
            if new is not None:
                index.add(_entry(sort, new))
        if new is not None:
            self.rows[new.ip] = new
        if self._filter is not None:
            self._filter.changed(old, new)
        self.changes += 1


class _Filter:
    """The rows matching a filter text, in one sort order, kept up to date change by change:
    with 100k rows and a sniffer writing, a rescan per refresh would not fit in one."""

    def __init__(self, sort: Sort, text: str, rows: dict[str, Row], order: SortedIndex,
                 among: SortedIndex | None = None) -> None:
        self.sort, self.text, self.needle = sort, text, text.lower()
        needle = self.needle
        if among is not None:
            entries = [e for e in among if needle in rows[e[-1]].hay]
        else:
            # The rows dict is scanned fastest (its values lie in insertion order); a few
            # matches are then sorted, many are picked out of the index in order.
            found = [row for row in rows.values() if needle in row.hay]
            if len(found) * 4 < len(rows):
                entries = sorted(_entry(sort, row) for row in found)
            else:
                ips = {row.ip for row in found}
                entries = [e for e in order if e[-1] in ips]
        self.index = SortedIndex.from_sorted(entries)
        self._pending: list[tuple[Row | None, Row | None]] = []
        self._limit = max(1000, len(rows))

    def changed(self, old: Row | None, new: Row | None) -> None:
        if len(self._pending) <= self._limit:  # past that, a new scan costs less
            self._pending.append((old, new))

    def catch_up(self) -> bool:
        """Apply the changes since; False if there were too many to follow."""
        if len(self._pending) > self._limit:
            return False
        for old, new in self._pending:
            if old is not None and self.needle in old.hay:
                self.index.discard(_entry(self.sort, old))
            if new is not None and self.needle in new.hay:
                self.index.add(_entry(self.sort, new))
        self._pending.clear()
        return True


# ---- the live view: feeding the model from the store -----------------------------------------

RECONCILE = 10.0  # seconds between the starts of two sweeps over the seed hashes
FETCH_CHUNK = 500  # addresses per records() call
SCAN_COUNT = 2000  # keys per SCAN step
SWEEP_BUDGET = 0.01  # seconds of a step the sweep may take: it must not crowd out the refresh
WRITERS_EVERY = 2.0
SETTLE_EVERY = 10_000  # row changes between two exemptions from the collector


def _stream_order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class Feed:
    """Keeps a ViewModel current from the store, a bounded amount of work per `step`:

    * at start, our leases (the expiry set) are loaded a chunk at a time, and the last hour of
      events sets the counters and each row's last change;
    * then each step reads the new events and re-reads the records they name (one script call),
      so a row always shows what Redis holds, not what an event said;
    * every `reconcile` seconds a SCAN sweep, a step at a time, finds seed hashes other
      programs wrote, and re-reads rows it did not meet (deleted behind our back, or a foreign
      lease gone). Expiry needs no Redis call: each row has its deadline from the TTL it was read
      with.
    """

    def __init__(self, store: LeaseStore, model: ViewModel, *, reconcile: float = RECONCILE,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.model = model
        self.reconcile = reconcile
        self.clock = clock
        self.started = False
        self.offset = 0.0  # local clock minus Redis clock
        self.event_id = self.rogue_id = "0-0"
        self.loaded_at = (0, 0)  # events up to this id happened before the load: labels only
        self.loading = 0  # addresses of the initial load still to read
        self.busy = False  # work is queued: call step again without waiting
        self._fetch: deque[str] = deque()
        self._cursor = 0
        self._sweep_started: float | None = None
        self._seen: set[str] = set()
        self._next_sweep = 0.0
        self._next_writers = 0.0
        self._settled = 0  # model.changes when the collector was last told to leave rows be

    def step(self, budget: float = 0.05) -> None:
        """Do up to about `budget` seconds of work; raises StoreError if Redis fails."""
        until = time.monotonic() + budget
        if not self.started:
            self._start()
        now = self.clock()
        while self._fetch and (self.loading or time.monotonic() < until):
            self._fetch_some(now)
            if self.loading and time.monotonic() >= until:
                self.model.status = f"loading leases: {self.loading:,} to go"
                self.busy = True
                self._settle()
                return
        self.model.status = ""
        more = self._events(now, until)
        self._rogue(until)
        self.model.expire(now)
        self._sweep(now, min(until, time.monotonic() + SWEEP_BUDGET))
        if now >= self._next_writers:
            self.model.writers = self.store.writers()
            self._next_writers = now + WRITERS_EVERY
        self.busy = more or bool(self._fetch)
        if self.model.changes - self._settled >= SETTLE_EVERY:
            self._settle()

    def _settle(self) -> None:
        """The rows are long-lived and free of cycles: once many are new, exempt what lives
        from the collector, whose full passes over 100k rows would stall a refresh ~250 ms.
        Young garbage is collected first, so that no cycle is exempted with them."""
        gc.collect(1)
        gc.freeze()
        self._settled = self.model.changes

    def _start(self) -> None:
        now = self.clock()
        self.offset = now - self.store.server_time()
        since = f"{max(0, math.floor((now - self.offset - WINDOW) * 1000))}-0"
        self.event_id = self.rogue_id = since
        self.loaded_at = _stream_order(self.store.last_event_id())
        self._fetch.extend(self.store.lease_ips())
        self.loading = len(self._fetch)
        self._next_sweep = now
        self.started = True

    def _fetch_some(self, now: float) -> None:
        """Re-read a chunk of queued addresses: show what Redis holds, drop what has gone."""
        chunk = [self._fetch.popleft() for _ in range(min(FETCH_CHUNK, len(self._fetch)))]
        self.loading = max(0, self.loading - len(chunk))
        found = self.store.records([ip for ip in chunk if ipv4_number(ip) is not None])
        for ip in chunk:
            if ip in found:
                self.model.put(ip, *found[ip], now)
            elif (row := self.model.drop(ip)) is not None:
                self.model.note(Change(now, "vanished", ip, row.lease.mac, row.lease.hostname))

    def _events(self, now: float, until: float) -> bool:
        """Apply new events; True if more are waiting."""
        while True:
            entries = self.store.events_since(self.event_id, BATCH)
            if not entries:
                return False
            self.event_id = entries[-1][0]
            touched: dict[str, Change] = {}
            for entry_id, fields in entries:
                change = Change.from_event(fields, stream_seconds(entry_id) + self.offset)
                self.model.note(change)
                if _stream_order(entry_id) > self.loaded_at:
                    touched[change.ip] = change
                elif change.change in GRANTS:
                    self.model.label(change.ip, change.change, change.when)
            self._apply(touched, now)
            if len(entries) < BATCH or time.monotonic() >= until:
                return len(entries) == BATCH

    def _apply(self, touched: dict[str, Change], now: float) -> None:
        found = self.store.records([ip for ip in touched if ipv4_number(ip) is not None])
        for ip, change in touched.items():
            if ip not in found:
                self.model.drop(ip)
            elif change.change in GRANTS:
                self.model.put(ip, *found[ip], now, change.change, change.when)
            else:  # written again since (by another program): what it holds now counts
                self.model.put(ip, *found[ip], now)

    def _rogue(self, until: float) -> None:
        while True:
            entries = self.store.rogue_since(self.rogue_id, BATCH)
            for entry_id, fields in entries:
                self.model.count("rogue", stream_seconds(entry_id) + self.offset)
                self.model.last_rogue = fields.get("server", self.model.last_rogue)
            if entries:
                self.rogue_id = entries[-1][0]
            if len(entries) < BATCH or time.monotonic() >= until:
                return

    def _sweep(self, now: float, until: float) -> None:
        if self._sweep_started is None:
            if now < self._next_sweep:
                return
            self._sweep_started = now
            self.offset = now - self.store.server_time()
        while time.monotonic() < until:
            self._cursor, ips = self.store.scan_seeds(self._cursor, SCAN_COUNT)
            self._seen.update(ips)
            self._fetch.extend(ip for ip in ips if ip not in self.model.rows)
            if self._cursor == 0:
                # A full SCAN returns every key that existed throughout it: rows it did not
                # meet may have gone (or never had a seed hash); re-read them to know.
                self._fetch.extend(ip for ip in self.model.rows if ip not in self._seen)
                self._seen = set()
                self._next_sweep = self._sweep_started + self.reconcile
                self._sweep_started = None
                return


# ---- the live view: rendering ----------------------------------------------------------------

@dataclass
class ViewState:
    """What the user chose: sort order, filter text (being typed or not), scroll position."""

    sort: Sort = Sort.ip
    filter: str = ""
    editing: bool = False
    offset: int = 0
    source: str = ""  # where the leases come from, for the title


CHANGE_STYLES = {
    "granted": "green", "renewed": "cyan", "reassigned": "magenta", "released": "yellow",
    "superseded": "yellow", "expired": "yellow", "declined": "red", "nak": "red",
    "vanished": "red",
}
HEADER_LINES = 2
FOOTER_LINES = 2  # the rule above the recent changes, and the key-help line
TABLE_HEADER_LINES = 1


def recent_lines(height: int) -> int:
    return 5 if height >= 24 else 0


def page_size(height: int) -> int:
    """How many leases a terminal `height` lines tall shows."""
    fixed = HEADER_LINES + TABLE_HEADER_LINES + FOOTER_LINES + recent_lines(height)
    return max(1, height - fixed)


def clamp(offset: int, total: int, page: int) -> int:
    return max(0, min(offset, total - page))


def ago(seconds: float) -> str:
    return duration(max(0, math.floor(seconds))) + " ago"


def circuit_text(circuit_id: str | None) -> str:
    """A circuit-id (lowercase hex) as text if it is printable ASCII, as it usually is."""
    if not circuit_id:
        return ""
    try:
        raw = bytes.fromhex(circuit_id)
    except ValueError:
        return circuit_id
    return raw.decode() if raw.isascii() and raw.decode().isprintable() else circuit_id


def render(model: ViewModel, state: ViewState, now: float, height: int,
           width: int = 160) -> RenderableType:
    """The whole screen for a terminal `height` lines tall and `width` columns wide; only the
    visible rows are built."""
    page = page_size(height)
    offset = clamp(state.offset, len(model.matching(state.sort, state.filter)), page)
    rows, matches = model.window(state.sort, state.filter, offset, page)
    parts: list[RenderableType] = [
        _title(model, state, now, matches, offset, len(rows)),
        _totals(model, now),
        _lease_rows(rows, now, width),
    ]
    blank = page - len(rows)
    if blank:
        parts.append(Text("\n" * (blank - 1)))
    lines = recent_lines(height)
    if lines:
        parts.append(Text("─ recent changes ", style="dim"))
        parts.append(_recent(model, now, lines))
    parts.append(_help(state))
    return Group(*parts)


def _line(text: Text) -> Text:
    """One line, cut with an ellipsis, whatever the terminal width."""
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text


def _title(model: ViewModel, state: ViewState, now: float, matches: int, offset: int,
           shown: int) -> Text:
    title = Text.assemble(("dhcp-hive-mind", "bold"), "  ",
                          time.strftime("%H:%M:%S", time.localtime(now)))
    if model.status:
        title.append("  ")
        title.append_text(safe(model.status, "bold yellow"))
    title.append(f"  sorted by {state.sort.value}")
    if state.filter:
        title.append("  filter ")
        title.append_text(safe(state.filter, "bold"))
        title.append(f": {matches:,} of {len(model.rows):,}")
    if shown:
        title.append(f"  rows {offset + 1:,}-{offset + shown:,} of {matches:,}")
    title.append("  ")
    title.append_text(safe(state.source, "dim"))
    return _line(title)


def _totals(model: ViewModel, now: float) -> Text:
    hour = model.totals(now)
    minute = model.totals(now, 60)
    text = Text.assemble(
        "active leases ", (f"{len(model.rows):,}", "bold"),
        "  grants/min ", (f"{sum(minute[k] for k in GRANTS):,}", "bold green"),
        "  last hour: released ", (f"{hour['released']:,}", "bold"),
        "  NAKs ", (f"{hour['nak']:,}", "bold red" if hour["nak"] else "bold"),
        "  declines ", (f"{hour['declined']:,}", "bold red" if hour["declined"] else "bold"),
        "  expired ", (f"{hour['expired']:,}", "bold"),
        "  rogue replies ", (f"{hour['rogue']:,}", "bold red" if hour["rogue"] else "bold"))
    if hour["rogue"] and model.last_rogue:
        text.append(" (last from ")
        text.append_text(safe(model.last_rogue))
        text.append(")")
    text.append(f"  writers {len(model.writers)}")
    for i, (name, seen) in enumerate(sorted(model.writers.items(), key=lambda w: -w[1])):
        text.append(": " if i == 0 else ", ")
        text.append_text(safe(name))
        text.append(f" {ago(now - seen)}", style="dim")
    return _line(text)


# The lease table's columns: name, minimum width, and the order in which a narrow terminal
# drops them (0: never).
COLUMNS = (("IP", 15, 0), ("MAC", 17, 6), ("Hostname", 12, 0), ("Left", 8, 0),
           ("Relay", 15, 2), ("Circuit-id", 10, 1), ("Server", 15, 3), ("Change", 10, 5),
           ("When", 11, 4))


def visible_columns(width: int) -> list[str]:
    """The columns that fit in `width`, one space between each."""
    shown = list(COLUMNS)
    for drop in range(1, 7):
        if sum(w for _n, w, _d in shown) + len(shown) - 1 <= width:
            break
        shown = [column for column in shown if column[2] != drop]
    return [name for name, _w, _d in shown]


def _lease_rows(rows: list[Row], now: float, width: int) -> Table:
    names = visible_columns(width)
    # No box: a space of padding after each cell, so a highlighted row is one unbroken bar.
    table = Table(box=None, header_style="bold underline", expand=True, padding=(0, 1, 0, 0),
                  pad_edge=False)
    for name, minimum, _drop in COLUMNS:
        if name in names:
            table.add_column(name, min_width=minimum, no_wrap=True, overflow="ellipsis",
                             justify="right" if name in ("Left", "When") else "left",
                             ratio=1 if name == "Hostname" else None)
    for row in rows:
        cells = _cells(row, now)
        fresh = bool(row.change) and now - row.when < HIGHLIGHT
        table.add_row(*(cells[name] for name in names),
                      style=f"bold reverse {CHANGE_STYLES.get(row.change, '')}" if fresh else None)
    return table


def _cells(row: Row, now: float) -> dict[str, Text]:
    lease = row.lease
    left = row.deadline - now
    return {
        "IP": safe(row.ip),
        "MAC": safe(lease.mac),
        "Hostname": safe(lease.hostname),
        "Left": safe(duration(None if math.isinf(left) else max(0, math.ceil(left))),
                     "bold red" if left < 60 else "yellow" if left < 300 else ""),
        "Relay": safe(relay(lease)),
        "Circuit-id": safe(circuit_text(lease.circuit_id)),
        "Server": safe(lease.server),
        "Change": safe(row.change or ("foreign" if lease.kind == "foreign" else ""),
                       CHANGE_STYLES.get(row.change, "dim")),
        "When": Text(ago(now - row.when) if row.when else "", style="dim"),
    }


def _recent(model: ViewModel, now: float, lines: int) -> Table:
    table = Table(box=None, show_header=False, padding=(0, 1, 0, 0), expand=True)
    for width in (8, 10, 15, 17):
        table.add_column(min_width=width, no_wrap=True)
    table.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
    changes = list(model.recent)[-lines:][::-1]
    for change in changes:
        style = CHANGE_STYLES.get(change.change, "")
        table.add_row(
            time.strftime("%H:%M:%S", time.localtime(change.when)),
            safe(change.change, style), safe(change.ip), safe(change.mac),
            safe(change.hostname),
            style="bold" if now - change.when < HIGHLIGHT else "dim")
    for _ in range(lines - len(changes)):
        table.add_row("")
    return table


def _help(state: ViewState) -> Text:
    if state.editing:
        return _line(Text.assemble(("filter: ", "bold"), safe(state.filter), ("█", "blink"),
                                   "   Enter keep   Esc clear   (IP, MAC or hostname text)"))
    keys = Text.assemble(("/", "bold"), " filter  ", ("s", "bold"), " sort (ip, time left, "
                         "recency)  ", ("↑↓ PgUp PgDn Home End", "bold"), " scroll  ",
                         ("Esc", "bold"), " clear filter  ", ("q", "bold"), " quit")
    return _line(keys)


# ---- the live view: keys and the terminal ----------------------------------------------------

_SEQUENCE = re.compile(r"\[[0-9;?]*[ -/]*[@-~]|O[@-~]")
_SEQUENCES = {"[A": "up", "[B": "down", "OA": "up", "OB": "down", "[5~": "pageup",
              "[6~": "pagedown", "[H": "home", "[F": "end", "OH": "home", "OF": "end",
              "[1~": "home", "[4~": "end", "[7~": "home", "[8~": "end"}


def parse_keys(text: str) -> list[str]:
    """Terminal input as key names: single printable characters, or esc, enter, backspace,
    up, down, pageup, pagedown, home, end. Other sequences and controls are dropped."""
    keys: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        i += 1
        if char == "\x1b":
            match = _SEQUENCE.match(text, i)
            if match:
                i = match.end()
                if match.group() in _SEQUENCES:
                    keys.append(_SEQUENCES[match.group()])
            else:
                keys.append("esc")
        elif char in "\r\n":
            keys.append("enter")
        elif char in "\x7f\x08":
            keys.append("backspace")
        elif char.isprintable():
            keys.append(char)
    return keys


_SORTS = list(Sort)


def handle_key(state: ViewState, key: str, page: int) -> bool:
    """Apply one key to the state; True when it asks to quit. Typing any other character
    starts the filter, except s (sort) and q (quit) outside it."""
    if key in ("up", "down", "pageup", "pagedown", "home", "end"):
        steps = {"up": -1, "down": 1, "pageup": -page, "pagedown": page,
                 "home": -sys.maxsize, "end": sys.maxsize}
        state.offset = max(0, min(state.offset + steps[key], sys.maxsize))
        return False
    if state.editing:
        if key == "esc":
            state.filter, state.editing = "", False
        elif key == "enter":
            state.editing = False
        elif key == "backspace":
            state.filter = state.filter[:-1]
        elif len(key) == 1:
            state.filter += key
        state.offset = 0
        return False
    if key == "q":
        return True
    if key == "s":
        state.sort = _SORTS[(_SORTS.index(state.sort) + 1) % len(_SORTS)]
        state.offset = 0
    elif key == "esc":
        state.filter, state.offset = "", 0
    elif key == "/":
        state.editing = True
    elif len(key) == 1:
        state.editing, state.filter, state.offset = True, state.filter + key, 0
    return False


class ViewError(HiveError):
    """The view cannot run here (no terminal): a local problem, reported in one line."""


@contextmanager
def _keys_mode(fd: int) -> Iterator[None]:
    """Keys arrive one at a time and unechoed (cbreak; Ctrl-C still interrupts); the terminal
    is restored however the view ends."""
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextmanager
def _sigterm_exits() -> Iterator[None]:
    """SIGTERM unwinds like an exception, so the terminal is restored before the exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def exit_now(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, exit_now)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class _Keyboard:
    fd: int
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))

    def read(self, timeout: float) -> list[str] | None:
        """Keys typed within `timeout` seconds; None once the terminal has gone."""
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not ready:
            return []
        data = os.read(self.fd, 1024)
        return parse_keys(self.decoder.decode(data)) if data else None


def run_view(store: LeaseStore, stop: threading.Event | None = None, *, source: str = "",
             console: Console | None = None, refresh: float = 0.25) -> None:
    """The full-screen live view of current leases, in this thread, until `q`, Ctrl-C,
    SIGTERM (exits 143) or `stop` is set. Quitting sets `stop`, so a capture running in another
    thread can wait on the same event. Raises ViewError without a terminal."""
    console = console or Console(highlight=False)
    stop = stop or threading.Event()
    if not (sys.stdin.isatty() and console.is_terminal):
        raise ViewError("the view needs an interactive terminal")
    model, state = ViewModel(), ViewState(source=source)
    feed = Feed(store, model)
    keyboard = _Keyboard(sys.stdin.fileno())
    with _sigterm_exits(), _keys_mode(keyboard.fd), \
            Live(console=console, screen=True, auto_refresh=False, redirect_stdout=False,
                 redirect_stderr=False) as live:
        try:
            _loop(feed, state, keyboard, live, stop, refresh)
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()


def _loop(feed: Feed, state: ViewState, keyboard: _Keyboard, live: Live,
          stop: threading.Event, refresh: float) -> None:
    model, console = feed.model, live.console
    next_step = 0.0
    while not stop.is_set():
        page = page_size(console.size.height)
        keys = keyboard.read(0.0 if feed.busy else next_step - time.monotonic())
        if keys is None:
            return
        for key in keys:
            if handle_key(state, key, page):
                return
        if time.monotonic() >= next_step or feed.busy:
            next_step = time.monotonic() + refresh
            try:
                feed.step()
            except StoreError as error:
                feed.busy = False
                model.status = f"{error}; retrying"
        state.offset = clamp(state.offset, len(model.matching(state.sort, state.filter)), page)
        size = console.size
        live.update(render(model, state, time.time(), size.height, size.width), refresh=True)

