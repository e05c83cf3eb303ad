"""The view's feed: keeps a ViewModel current from the store, a bounded amount of work per step."""

from __future__ import annotations

import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from sniffer.keys import ipv4_number
from sniffer.lease import LeaseRow
from sniffer.reader import BATCH
from sniffer.registry import WriterRegistry
from sniffer.store import LeaseStore
from sniffer.view.model import GRANTS, WINDOW, Change, ViewModel
from sniffer.view.render import stream_seconds

RECONCILE = 10.0  # seconds between the starts of two sweeps over the seed hashes
FETCH_CHUNK = 500  # addresses per records() call
SCAN_COUNT = 2000  # keys per SCAN step
SWEEP_BUDGET = 0.01  # seconds of a step the sweep may take: it must not crowd out the refresh
WRITERS_EVERY = 2.0
# Events read at a time: a step's budget is checked between chunks, and a view catching up with
# an hour of a busy network's events must still answer keys at once.
EVENTS_CHUNK = 250
FIRST_WAIT = 2.0  # seconds the first step may wait for the first batch: the first screen


class _Loader:
    """Reads the records at `ips` in a thread of its own, a batch at a time, so that the view
    draws and answers keys while the rest loads. Batches wait in a short queue: the thread
    stays a few batches ahead of the model, never the whole load."""

    def __init__(self, store: LeaseStore, ips: Sequence[str]) -> None:
        self.total = len(ips)
        self._batches: queue.Queue[tuple[int, list[LeaseRow]] | Exception | None] = \
            queue.Queue(maxsize=4)
        self._stop = threading.Event()
        threading.Thread(target=self._run, args=(store, ips), name="view-load",
                         daemon=True).start()

    def get(self, timeout: float) -> tuple[int, list[LeaseRow]] | None:
        """The next batch, with how many addresses have been read so far; None once every one
        has been; raises queue.Empty after `timeout` seconds, or what the thread raised."""
        item = self._batches.get(timeout=max(0.0, timeout))
        if isinstance(item, Exception):
            raise item
        return item

    def stop(self) -> None:
        self._stop.set()

    def _run(self, store: LeaseStore, ips: Sequence[str]) -> None:
        try:
            for n, rows in enumerate(store.rows(ips), 1):
                if not self._put((min(self.total, n * BATCH), rows)):
                    return
            self._put(None)
        except Exception as error:  # handed to the view's thread, which reports it
            self._put(error)

    def _put(self, item: tuple[int, list[LeaseRow]] | Exception | None) -> bool:
        while not self._stop.is_set():
            try:
                self._batches.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False


def _stream_order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class Feed:
    """Keeps a ViewModel current from the store, a bounded amount of work per `step`:

    * at start, our leases (the expiry set) are loaded in address order by a thread of their
      own, so that the first screen shows as soon as the first batch is in and the rest load
      behind it; the last hour of events then sets the counters and each row's last change;
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
        self._registry = WriterRegistry(store.client, store.keys)
        self.model = model
        self.reconcile = reconcile
        self.clock = clock
        self.started = False
        self.offset = 0.0  # local clock minus Redis clock
        self.event_id = self.rogue_id = "0-0"
        self.loaded_at = (0, 0)  # events up to this id happened before the load: labels only
        self.loading = 0  # addresses of the initial load still to read
        self.busy = False  # work is queued: call step again without waiting
        self._loader: _Loader | None = None
        self._fetch: deque[str] = deque()
        self._cursor = 0
        self._sweep_started: float | None = None
        self._seen: set[str] = set()
        self._next_sweep = 0.0
        self._next_writers = 0.0

    def step(self, budget: float = 0.05) -> None:
        """Do up to about `budget` seconds of work; raises StoreError if Redis fails."""
        first = not self.started
        if first:
            self._start()
        until = time.monotonic() + budget
        now = self.clock()
        if self._loader is not None:
            # The first step waits for the first batch, and stops there: the first screen.
            self._load(now, time.monotonic() + FIRST_WAIT if first else until, first)
            if self.loading:
                self.model.status = f"loading leases: {self.loading:,} to go"
                self.busy = True
                return
        while self._fetch and time.monotonic() < until:
            self._fetch_some(now)
        self.model.status = ""
        more = self._events(now, until)
        self._rogue(until)
        self.model.expire(now)
        self._sweep(now, min(until, time.monotonic() + SWEEP_BUDGET))
        if now >= self._next_writers:
            self.model.writers = self.store.writers()
            self.model.live = {writer.writer_id for writer in self._registry.live()}
            self._next_writers = now + WRITERS_EVERY
        self.busy = more or bool(self._fetch)

    def close(self) -> None:
        """Stop a load still running."""
        if self._loader is not None:
            self._loader.stop()

    def _start(self) -> None:
        now = self.clock()
        self.offset = now - self.store.server_time()
        since = f"{max(0, math.floor((now - self.offset - WINDOW) * 1000))}-0"
        self.event_id = self.rogue_id = since
        self.loaded_at = _stream_order(self.store.last_event_id())
        # In address order, the view's first order: its first screen is the first batch.
        entries = sorted(self.store.expiry_index(), key=lambda entry: entry[1])
        self._loader = _Loader(self.store, [ip for _expiry, _number, ip in entries])
        self.loading = len(entries)
        self._next_sweep = now
        self.started = True

    def _load(self, now: float, until: float, once: bool = False) -> None:
        """Put the batches the loader has read into the model, until `until` (after the first
        batch if `once`)."""
        assert self._loader is not None
        while self.loading:
            try:
                batch = self._loader.get(until - time.monotonic())
            except queue.Empty:
                return
            except Exception:
                self._loader, self.started = None, False  # the next step starts again
                raise
            if batch is None:  # every address read
                self.loading = 0
                break
            done, rows = batch
            for row in rows:
                self.model.put_row(row, now)
            self.loading = self._loader.total - done
            if once:
                break
        if not self.loading:
            self._loader = None

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
            entries = self.store.events_since(self.event_id, EVENTS_CHUNK)
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
            if len(entries) < EVENTS_CHUNK or time.monotonic() >= until:
                return len(entries) == EVENTS_CHUNK

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
