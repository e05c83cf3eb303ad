"""Live sniffing: every interface's capture feeding one pipeline, its writes handed to the Redis
writer, clean stops, and the run under signals (with or without the live view).

Threads: one supervisor per interface (watch.py) forwards tcpdump's pcap records to a tshark and
restarts whatever stops; the tshark reader threads put Datagrams on one bounded Backlog, a batch
at a time; the caller's thread (Sniffer.run) feeds the pipeline from it and hands the lease
changes to the writer thread (writer.py), which writes them to Redis in order. Redis never holds
up the capture: while it is down, hung or restarting, the changes wait in a bounded queue (the
oldest dropped, loudly, when it overflows) and are written once Redis answers again.
"""

from __future__ import annotations

import collections
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType

from sniffer.capturer import BUFFER_MIB
from sniffer.collector import FullCollections
from sniffer.commands import ROGUE_REASONS, Rejected
from sniffer.connection import StoreError
from sniffer.dhcp import Datagram
from sniffer.durability import REASSERT_SECONDS
from sniffer.logs import RogueLog, log, logs_held
from sniffer.metrics import SPEC_COUNTERS, Metrics
from sniffer.pipeline import Pipeline
from sniffer.registry import StoreProbe
from sniffer.store import LeaseStore
from sniffer.tracker import Tracker
from sniffer.tshark import DEFAULT_PORTS, CaptureError, find_tshark
from sniffer.watch import DRAIN, POLL, STOP_WAIT, InterfaceWatch
from sniffer.writer import Entry, RedisWriter

FINAL_FLUSH = 10.0  # seconds the last writes get when Redis is failing at a stop
PUBLISH_EVERY = 1.0  # seconds between counter snapshots for the metrics endpoint


class Backlog:
    """Datagrams decoded ahead of the pipeline, from every interface's tshark, in arrival order.
    Batches go in and out whole, one lock each way, rather than one datagram at a time: at
    3,000 exchanges a second (24,000 datagrams) the handing over would cost more than the
    decoding. A put waits while `limit` or more wait."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._datagrams: collections.deque[Datagram] = collections.deque()
        self._cond = threading.Condition()

    def __len__(self) -> int:
        return len(self._datagrams)

    def put(self, datagrams: list[Datagram]) -> None:
        with self._cond:
            while len(self._datagrams) >= self.limit:
                self._cond.wait()
            self._datagrams.extend(datagrams)
            self._cond.notify_all()

    def take(self, most: int, timeout: float) -> list[Datagram]:
        """The oldest datagrams, at most `most`, once there are some; [] after `timeout`."""
        with self._cond:
            if not self._datagrams:
                self._cond.wait(timeout)
            waiting = self._datagrams
            taken = [waiting.popleft() for _ in range(min(most, len(waiting)))]
            if taken:
                self._cond.notify_all()
            return taken


@dataclass(frozen=True)
class SniffConfig:
    interfaces: tuple[str, ...]
    ports: tuple[int, ...] = DEFAULT_PORTS
    buffer_mib: int = BUFFER_MIB  # tcpdump -B: the kernel buffer that absorbs bursts
    restart_every: float = 3600.0  # seconds between scheduled restarts; 0: never
    batch_size: int = 500  # commands per Redis round trip
    queue_size: int = 10_000  # datagrams decoded ahead of the pipeline
    max_pending: int = 100_000  # writes held while Redis fails; beyond, the oldest are dropped
    start_timeout: float = 15.0  # seconds tcpdump gets to start capturing at start-up
    reassert_seconds: float = REASSERT_SECONDS  # writes kept to re-assert if Redis lost them


@dataclass
class LivePipeline(Pipeline):
    """A Pipeline whose writes go to a RedisWriter, with the capture time of the packet behind
    each; flush() hands them over and never waits for Redis. Rogue replies are logged.

    The capture time is the command's own (a rejected reply's message's): the tracker stamps
    each grant and deletion with the packet's (a deletion with its grant's when the capture's
    clock ran back), so that feed() is Pipeline's, with no per-packet bookkeeping here."""

    writer: RedisWriter | None = None
    rogue_log: RogueLog = field(default_factory=RogueLog)

    def __post_init__(self) -> None:
        self.batch_size = sys.maxsize  # Pipeline.feed never flushes: the writer batches

    def flush(self) -> None:
        if not self._pending:
            return
        entries: list[Entry] = []
        for command in self._pending:
            if isinstance(command, Rejected):
                if command.reason not in ROGUE_REASONS:
                    continue  # nothing to write
                self.rogue_log.note(command)
                entries.append((command, command.msg.ts))
            else:
                entries.append((command, command.ts))
        self._pending = []
        assert self.writer is not None
        self.writer.put(entries)


# ---- the sniffer -----------------------------------------------------------------------------

class Sniffer:
    """Every interface's capture, one queue, one pipeline: start(), then run() until stopped."""

    def __init__(self, config: SniffConfig, tracker: Tracker, store: LeaseStore,
                 metrics: Metrics | None = None) -> None:
        self.config = config
        self.tracker = tracker
        self.metrics = metrics or Metrics()
        self.backlog = Backlog(config.queue_size)
        self.writer = RedisWriter(store, self.metrics, config.batch_size, config.max_pending,
                                  keep=config.reassert_seconds,
                                  probe=StoreProbe(store.client, store.keys, store.writer))
        self.pipeline = LivePipeline(tracker, store, writer=self.writer)
        self.counters: Counter[str] = Counter()  # the loop's own: capture_truncated
        self.watches = [InterfaceWatch(name, self.backlog.put, self.metrics, ports=config.ports,
                                       buffer_mib=config.buffer_mib,
                                       restart_every=config.restart_every,
                                       start_timeout=config.start_timeout)
                        for name in dict.fromkeys(config.interfaces)]
        self.metrics.queue_depth.set_function(self.backlog.__len__)
        self.metrics.pending_writes.set_function(lambda: self.writer.backlog)

    def start(self) -> None:
        """Start capturing on every interface; CaptureError, with everything stopped again, if
        one of them cannot (no such interface, no permission...); StoreError if Redis fails
        before it."""
        # tshark found before any capture starts: not between a capture starting and its
        # tshark, nor in a capture's thread.
        find_tshark()
        self.writer.start()
        for watch in self.watches:
            watch.start()
        for watch in self.watches:
            problem = watch.wait_started(self.config.start_timeout)
            if problem is not None:
                self._abort()
                raise CaptureError(problem)

    def run(self, stop: threading.Event, force: threading.Event | None = None) -> None:
        """Feed the pipeline until `stop` is set; then stop the captures, process what they
        still deliver and write it. StoreError if writes remain that Redis would not take.
        `force` (a second signal) cuts the stop short: the captures are killed."""
        force = force or threading.Event()
        publish_at = 0.0
        full_collections = FullCollections(time.monotonic())
        while not stop.is_set():
            self._round(POLL)
            if self.writer.cache_wanted():  # after the writes handed over: the newest state
                self.writer.reassert_cache(self.tracker.current_grants(time.time()))
            if time.monotonic() >= publish_at:
                self.publish()
                full_collections.tick(time.monotonic())
                publish_at = time.monotonic() + PUBLISH_EVERY
        self._shutdown(force)
        self.publish()

    def totals(self) -> Counter[str]:
        """Every counter: the pipeline's, the tracker's and the loop's (rx_packets included)."""
        totals: Counter[str] = Counter(self.pipeline.stats)
        totals.update(self.tracker.counters)
        totals.update(self.counters)
        totals["rx_packets"] = totals.pop("packets", 0)
        return totals

    def publish(self) -> None:
        """Refresh what the metrics endpoint reads (called by the sniffing thread only)."""
        self.metrics.counters.values = {**dict.fromkeys(SPEC_COUNTERS, 0), **self.totals()}
        now = time.time()
        self.metrics.active_leases.set(sum(
            1 for lease in self.tracker.leases.values()
            if lease.expires is None or lease.expires > now))
        self.pipeline.rogue_log.roll()
        self.metrics.heartbeat.set_to_current_time()

    def _round(self, timeout: float) -> None:
        """Process what the backlog holds (waiting up to `timeout` for a first datagram), at
        most a batch, then hand the writes over: at once, however few, so that a lease reaches
        Redis as soon as it is made when the line is quiet, in larger batches when it is busy."""
        datagrams = self.backlog.take(self.config.batch_size, timeout)
        if not datagrams:
            return
        pipeline = self.pipeline
        for datagram in datagrams:
            if datagram.truncated:
                self.counters["capture_truncated"] += 1
            pipeline.feed(datagram)
        pipeline.flush()

    def _shutdown(self, force: threading.Event) -> None:
        self._keep_feeding(lambda: not force.is_set(), DRAIN)
        for watch in self.watches:
            watch.stop()
        if not self._keep_feeding(self._capturing, STOP_WAIT, force):
            log.warning("the capture did not stop in time: killing tcpdump and tshark")
            for watch in self.watches:
                watch.kill()
            self._keep_feeding(self._capturing, STOP_WAIT)
        self._keep_feeding(lambda: len(self.backlog) > 0, STOP_WAIT)
        self.pipeline.flush()
        self.pipeline.rogue_log.roll(final=True)
        lost = self.writer.close(FINAL_FLUSH)
        if lost:
            raise StoreError(f"{lost} lease writes were lost: {self.writer.last_error}")

    def _capturing(self) -> bool:
        return any(watch.alive() for watch in self.watches)

    def _keep_feeding(self, condition: Callable[[], bool], limit: float,
                      force: threading.Event | None = None) -> bool:
        """Process datagrams while `condition` holds, for at most `limit` seconds (or until
        `force`); True if the condition ended it."""
        deadline = time.monotonic() + limit
        while condition():
            if time.monotonic() >= deadline or (force is not None and force.is_set()):
                return False
            self._round(0.05)
        return True

    def _abort(self) -> None:
        for watch in self.watches:
            watch.kill()
        for watch in self.watches:
            watch.join(STOP_WAIT)
        self.writer.close(0)


# ---- running it ------------------------------------------------------------------------------

@contextmanager
def stop_signals() -> Iterator[tuple[threading.Event, threading.Event]]:
    """SIGINT and SIGTERM set `stop`; a second one sets `force` too. Restored on exit."""
    stop, force = threading.Event(), threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            force.set()
        else:
            log.info("%s: stopping", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop, force
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_sniffer(sniffer: Sniffer, *, metrics_port: int | None = None,
                metrics_address: str = "127.0.0.1") -> Counter[str]:
    """Run a sniffer until SIGINT or SIGTERM (main thread only); its totals."""
    with _metrics_served(sniffer, metrics_port, metrics_address), \
            stop_signals() as (stop, force):
        sniffer.start()
        sniffer.run(stop, force)
    return sniffer.totals()


def run_sniffer_with_view(sniffer: Sniffer, view: Callable[[threading.Event], None], *,
                          metrics_port: int | None = None,
                          metrics_address: str = "127.0.0.1") -> Counter[str]:
    """Run a sniffer in a thread while `view(stop)` runs in this one, until the view ends
    (it sets `stop` when the user quits) or a signal stops both. Log lines are held back
    while the view owns the screen."""
    failures: list[BaseException] = []

    def sniffing(stop: threading.Event, force: threading.Event) -> None:
        try:
            sniffer.run(stop, force)
        except BaseException as error:  # re-raised in the main thread
            failures.append(error)
            stop.set()

    with _metrics_served(sniffer, metrics_port, metrics_address), \
            stop_signals() as (stop, force):
        sniffer.start()
        thread = threading.Thread(target=sniffing, args=(stop, force), name="sniffer")
        thread.start()
        try:
            with logs_held():
                view(stop)
        except SystemExit:  # the view's SIGTERM: a stop like any other
            pass
        finally:
            stop.set()
            thread.join()
    if failures:
        raise failures[0]
    return sniffer.totals()


@contextmanager
def _metrics_served(sniffer: Sniffer, port: int | None, address: str) -> Iterator[None]:
    close = sniffer.metrics.serve(port, address) if port is not None else None
    try:
        yield
    finally:
        if close is not None:
            close()
