"""The view's feed: keeps a ViewModel current from the store, a bounded amount of work per step."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

from sniffer.keys import ipv4_number
from sniffer.store import BATCH, LeaseStore
from sniffer.view.model import GRANTS, WINDOW, Change, ViewModel
from sniffer.view.render import stream_seconds

RECONCILE = 10.0  # seconds between the starts of two sweeps over the seed hashes
FETCH_CHUNK = 500  # addresses per records() call
SCAN_COUNT = 2000  # keys per SCAN step
SWEEP_BUDGET = 0.01  # seconds of a step the sweep may take: it must not crowd out the refresh
WRITERS_EVERY = 2.0


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
