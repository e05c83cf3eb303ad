"""Live sniffing: supervised captures feeding the pipeline, clean stops, and metrics.

Threads: one supervisor per interface (InterfaceWatch) relays dumpcap's pcapng blocks to a tshark
and restarts whatever stops; the tshark reader threads put Datagrams on one bounded queue; the
caller's thread (Sniffer.run) feeds the pipeline from that queue and writes to Redis whenever
the queue runs dry or a batch is full. A slow Redis thus slows the readers, then tshark, then
dumpcap, and finally fills the kernel buffer, whose drops dumpcap reports.

Scheduled restarts (tshark's memory grows with every frame it has seen) replace dumpcap and
tshark together without a gap: the new dumpcap starts while the old one still runs, the old one
stops once the new one captures, and the new one's first packets that the old one already
delivered are dropped, recognised by their bytes and kernel timestamp, which both copies share.
"""

from __future__ import annotations

import collections
import itertools
import logging
import math
import os
import queue
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType

from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from sniffer.capture import (
    DEFAULT_PORTS,
    DUMPCAP_BUFFER_MIB,
    IDB,
    PACKET_BLOCKS,
    SHB,
    Block,
    CaptureError,
    DumpcapEnd,
    DumpcapRun,
    TsharkLeg,
    permission_message,
)
from sniffer.dhcp import Datagram
from sniffer.pipeline import Pipeline
from sniffer.store import LeaseStore, StoreError
from sniffer.tracker import Tracker

log = logging.getLogger("dhcp_hive_mind")

BACKOFF_MIN, BACKOFF_MAX = 1.0, 30.0  # seconds between restarts of a capture, and of writes
# dumpcap 4.0 leaves libpcap out of immediate mode, so the kernel hands packets over in blocks
# that retire after at most 250 ms; a capture asked to stop keeps running this long first.
DRAIN = 0.4
POLL = 0.2  # how often waiting threads look up
ROTATE_FRAMES = 1_000_000  # a scheduled restart also comes after this many frames
STOP_WAIT = 10.0  # seconds the captures get to deliver their last packets at a stop
FINAL_FLUSH = 10.0  # seconds the last writes get when Redis is failing at a stop
PUBLISH_EVERY = 1.0  # seconds between counter snapshots for the metrics endpoint
METRIC_PREFIX = "dhcp_hive_mind_"
# Section 1.12's counters, published as 0 until they count (framing_error is not counted: a
# framing error alone does not drop a packet, and the pipeline does not report it).
SPEC_COUNTERS = (
    "rx_packets", "dropped_short", "dropped_no_cookie", "dropped_bad_53", "capture_truncated",
    "ignored_type", "rogue_reply", "rogue_nak", "ack_to_inform", "bad_yiaddr", "no_lease_time",
    "zero_lease", "late_other_server", "ack_not_selected", "stale", "already_expired",
    "reassigned", "superseded", "nak_deleted", "nak_uncorrelated", "decline_deleted",
    "release_deleted", "txn_evicted", "duplicates",
)
# dumpcap's names for the places where packets were dropped, as metric labels.
DROP_PLACES = {"pcap": "kernel", "ps_ifdrop": "interface", "dumpcap": "dumpcap",
               "flushed": "flushed"}
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 1.0, 2.5,
                   5.0, 10.0, 30.0)


class SniffError(Exception):
    """A local problem outside capture and Redis (such as a metrics port in use)."""


@dataclass(frozen=True)
class SniffConfig:
    interfaces: tuple[str, ...]
    ports: tuple[int, ...] = DEFAULT_PORTS
    buffer_mib: int = DUMPCAP_BUFFER_MIB  # dumpcap -B: the kernel buffer that absorbs bursts
    restart_every: float = 3600.0  # seconds between scheduled restarts; 0: never
    batch_size: int = 500  # commands per Redis round trip
    queue_size: int = 10_000  # datagrams decoded ahead of the pipeline
    max_backlog: int = 100_000  # pending writes (Redis failing) before packets wait
    start_timeout: float = 15.0  # seconds dumpcap gets to start capturing at start-up


# ---- metrics ---------------------------------------------------------------------------------

class _CounterSnapshot(Collector):
    """The pipeline's and tracker's counters as last published by the sniffing thread (a new
    dict each time, so the HTTP thread never reads one that is changing)."""

    def __init__(self) -> None:
        self.values: Mapping[str, int] = dict.fromkeys(SPEC_COUNTERS, 0)

    def collect(self) -> Iterator[CounterMetricFamily]:
        for name, value in sorted(self.values.items()):
            if name.isidentifier() and name.isascii():
                yield CounterMetricFamily(METRIC_PREFIX + name.lower(),
                                          f"Counter {name} (see the specification, 1.12)",
                                          value=value)


class Metrics:
    """Everything the metrics endpoint serves, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.counters = _CounterSnapshot()
        reg.register(self.counters)
        self.capture_drops = PromCounter(
            METRIC_PREFIX + "capture_dropped_packets", "Packets lost by the capture, as dumpcap "
            "reports them when it stops (where: kernel, interface, dumpcap, flushed)",
            ["interface", "where"], registry=reg)
        self.capture_restarts = PromCounter(
            METRIC_PREFIX + "capture_restarts", "Capture processes replaced (reason: scheduled, "
            "exited)", ["interface", "process", "reason"], registry=reg)
        self.capture_up = Gauge(METRIC_PREFIX + "capture_up", "1 while the interface is "
                                "captured", ["interface"], registry=reg)
        self.redis_write_seconds = Histogram(
            METRIC_PREFIX + "redis_write_seconds", "Duration of one batch written to Redis",
            registry=reg, buckets=LATENCY_BUCKETS)
        self.redis_write_errors = PromCounter(
            METRIC_PREFIX + "redis_write_errors", "Batches Redis did not take (retried)",
            registry=reg)
        self.capture_to_redis_seconds = Histogram(
            METRIC_PREFIX + "capture_to_redis_seconds", "From the capture time of a packet "
            "that changed a lease (ACK, RELEASE...) to its write in Redis",
            registry=reg, buckets=LATENCY_BUCKETS)
        self.queue_depth = Gauge(METRIC_PREFIX + "queue_depth", "Captured datagrams waiting "
                                 "for the pipeline", registry=reg)
        self.pending_writes = Gauge(METRIC_PREFIX + "pending_writes", "Lease writes waiting "
                                    "for Redis", registry=reg)
        self.active_leases = Gauge(METRIC_PREFIX + "active_leases", "Leases the tracker holds "
                                   "that have not expired", registry=reg)

    def serve(self, port: int, address: str) -> Callable[[], None]:
        """Serve /metrics over HTTP in a thread; returns the function that stops it."""
        try:
            server, thread = start_http_server(port, address, registry=self.registry)
        except OSError as error:
            raise SniffError(f"metrics on {address}:{port}: {error.strerror}") from None

        def close() -> None:
            server.shutdown()
            server.server_close()
            thread.join()

        return close


# ---- one interface ---------------------------------------------------------------------------

class InterfaceWatch:
    """Captures one interface while the sniffer runs: dumpcap -> blocks -> tshark -> sink.

    When dumpcap ends (killed, or the interface is gone) it is restarted with backoff, and the
    loss and the recovery are logged once each; a tshark that dies is replaced at once. At
    start-up a failure is final instead: `wait_started` reports it.
    """

    def __init__(self, interface: str, config: SniffConfig, sink: Callable[[Datagram], None],
                 metrics: Metrics) -> None:
        self.interface = interface
        self.config = config
        self.metrics = metrics
        self._sink = sink
        self._started = threading.Event()
        self._startup_error: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._runs: list[DumpcapRun] = []  # the current run, and the next one in a handover
        self._leg: TsharkLeg | None = None  # the tshark the current run writes to
        self._legs: list[TsharkLeg] = []  # every leg that may still be decoding
        self._thread = threading.Thread(target=self._supervise, name=f"watch-{interface}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait_started(self, timeout: float) -> str | None:
        """Wait for the first capture; None once it runs, else why it cannot."""
        if not self._started.wait(timeout):
            return f"dumpcap did not start capturing on {self.interface} within {timeout:g} s"
        return self._startup_error

    def stop(self) -> None:
        """Stop capturing; the thread ends once everything captured has gone to the sink."""
        self._stop.set()
        with self._lock:
            for run in self._runs:
                run.stop()

    def kill(self) -> None:
        self._stop.set()
        with self._lock:
            for run in self._runs:
                run.kill()
            for leg in self._legs:
                leg.kill()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # -- the supervisor thread --

    def _supervise(self) -> None:
        backoff = BACKOFF_MIN
        lost_at: float | None = None
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                end, captured, message = self._capture(lost_at)
                if not self._started.is_set():  # the first run never captured
                    self._startup_error = (permission_message(self.interface, end)
                                           if end is not None and end.permission else message)
                    self._started.set()
                    return
                if self._stop.is_set():
                    break
                if captured:
                    lost_at = time.monotonic()
                    log.warning("capture on %s stopped: %s; restarting it", self.interface,
                                message.rstrip("."))
                    self.metrics.capture_restarts.labels(self.interface, "dumpcap",
                                                         "exited").inc()
                    if time.monotonic() - started >= BACKOFF_MAX:
                        backoff = BACKOFF_MIN
                else:
                    log.debug("capture on %s still failing: %s", self.interface, message)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
        finally:
            self._started.set()
            for leg in self._legs:
                leg.wait()

    def _capture(self, lost_at: float | None) -> tuple[DumpcapEnd | None, bool, str]:
        """One spell of capturing (see _relay): how its last dumpcap ended, whether it ever
        captured, and what went wrong in one line. A bug is logged, not fatal: the supervisor
        tries again, as after any other failure."""
        try:
            end, captured = self._relay(lost_at)
            return end, captured, end.message or "dumpcap exited"
        except CaptureError as error:
            return None, False, str(error)
        except Exception as error:
            log.exception("capture on %s failed", self.interface)
            return None, False, f"{type(error).__name__}: {error}"

    def _start_run(self) -> DumpcapRun:
        run = DumpcapRun(self.interface, self.config.ports, self.config.buffer_mib)
        with self._lock:
            self._runs.append(run)
            if self._stop.is_set():
                run.stop()
        return run

    def _forget(self, run: DumpcapRun) -> None:
        with self._lock:
            self._runs.remove(run)

    def _relay(self, lost_at: float | None) -> tuple[DumpcapEnd, bool]:
        """Relay one dumpcap run, and the runs that replace it on schedule, until the current
        one ends: how that one ended, and whether the capture ever ran. On an error, the runs
        still going are killed."""
        try:
            return self._relay_runs(self._start_run(), lost_at)
        except BaseException:
            with self._lock:
                runs = list(self._runs)
            for run in runs:
                run.abandon()
                self._forget(run)
            self._finish_leg()
            raise

    def _relay_runs(self, run: DumpcapRun, lost_at: float | None) -> tuple[DumpcapEnd, bool]:
        next_run: DumpcapRun | None = None
        header: list[Block] = []
        overlap: set[bytes] = set()  # packets the old run delivered during a handover
        duplicates: set[bytes] = set()  # ... which the new run will deliver again
        captured = False
        frames = 0
        rotate_at = self._next_rotation()
        next_started = stop_old_at = math.inf
        while True:
            now = time.monotonic()
            if (next_run is None and captured and not self._stop.is_set()
                    and (now >= rotate_at or frames >= ROTATE_FRAMES)):
                next_run, next_started, overlap = self._start_next(), now, set()
                if next_run is None:
                    rotate_at, frames = now + BACKOFF_MAX, 0
            if next_run is not None and math.isinf(stop_old_at):
                if next_run.ready.is_set():
                    stop_old_at = now + DRAIN
                elif next_run.exited() or now - next_started > self.config.start_timeout:
                    self._give_up(next_run, "the scheduled restart")
                    next_run, rotate_at, frames = None, now + BACKOFF_MAX, 0
            if now >= stop_old_at:
                run.stop()
            try:
                block = run.blocks.get(timeout=POLL)
            except queue.Empty:
                continue
            if block is None:
                end = self._ended(run)
                if next_run is None or not next_run.ready.is_set():
                    if next_run is not None:
                        self._give_up(next_run, None)
                    self._finish_leg()
                    self.metrics.capture_up.labels(self.interface).set(0)
                    return end, captured
                self.metrics.capture_restarts.labels(self.interface, "dumpcap",
                                                     "scheduled").inc()
                log.debug("capture on %s restarted on schedule", self.interface)
                run, next_run, header = next_run, None, []
                duplicates, overlap = overlap, set()
                frames, rotate_at, stop_old_at = 0, self._next_rotation(), math.inf
                self._finish_leg()
                continue
            if block.type == SHB:
                header = [block]
            elif block.type == IDB:
                header.append(block)
                if not captured:
                    captured = True
                    self._capturing(lost_at)
            elif block.type in PACKET_BLOCKS:
                if block.data in duplicates:
                    duplicates.discard(block.data)
                    continue
                if next_run is not None:
                    overlap.add(block.data)
                frames += 1
            self._write(block, header)

    def _next_rotation(self) -> float:
        every = self.config.restart_every
        return time.monotonic() + every if every > 0 else math.inf

    def _start_next(self) -> DumpcapRun | None:
        try:
            return self._start_run()
        except CaptureError as error:
            log.warning("scheduled restart of the capture on %s failed: %s", self.interface,
                        error)
            return None

    def _give_up(self, run: DumpcapRun, what: str | None) -> None:
        """Kill a replacement run that did not start capturing; say so if `what` failed."""
        end = run.abandon()
        self._forget(run)
        if what is not None:
            log.warning("%s of the capture on %s failed: %s; keeping the running one", what,
                        self.interface, end.message or "dumpcap did not start")

    def _capturing(self, lost_at: float | None) -> None:
        self.metrics.capture_up.labels(self.interface).set(1)
        if not self._started.is_set():
            log.info("capturing on %s", self.interface)
            self._started.set()
        elif lost_at is not None:
            log.info("capture on %s resumed after %.0f s", self.interface,
                     time.monotonic() - lost_at)

    def _ended(self, run: DumpcapRun) -> DumpcapEnd:
        end = run.end()
        self._forget(run)
        if end.dropped:
            detail = ", ".join(f"{DROP_PLACES.get(name, name)} {count}"
                               for name, count in end.drops.items() if count)
            log.warning("capture on %s dropped %d packets (%s)", self.interface, end.dropped,
                        detail)
            for name, count in end.drops.items():
                if count:
                    place = DROP_PLACES.get(name, name)
                    self.metrics.capture_drops.labels(self.interface, place).inc(count)
        return end

    def _write(self, block: Block, header: list[Block]) -> None:
        """Pass a block to tshark, starting one (header first) if there is none or it died."""
        for attempt in range(2):
            fresh = self._leg is None
            leg = self._leg if self._leg is not None else self._new_leg()
            try:
                if fresh and block.type != SHB:
                    leg.write(header if block in header else [*header, block])
                else:
                    leg.write([block])
                return
            except CaptureError:
                if self._stop.is_set():  # killed while stopping: no new tshark now
                    raise
                leg.wait(STOP_WAIT)
                self._leg = None
                self.metrics.capture_restarts.labels(self.interface, "tshark", "exited").inc()
                log.warning("tshark for %s exited (%s); starting another", self.interface,
                            leg.failure or "without an error")
                if attempt:
                    raise CaptureError("tshark keeps exiting") from None

    def _new_leg(self) -> TsharkLeg:
        previous = self._legs[-1] if self._legs else None
        leg = TsharkLeg(self.config.ports, f"tshark-{self.interface}", self._sink, previous)
        with self._lock:
            self._legs = [old for old in self._legs if not old.done()] + [leg]
        self._leg = leg
        return leg

    def _finish_leg(self) -> None:
        if self._leg is not None:
            self._leg.finish()
            self._leg = None


# ---- the pipeline, patient with Redis --------------------------------------------------------

@dataclass
class LivePipeline(Pipeline):
    """A Pipeline that outlives Redis outages: writes that fail stay pending, in order, and are
    retried with backoff (1 s doubling to 30 s); the outage and the recovery are logged once."""

    metrics: Metrics = field(default_factory=Metrics)
    last_error: str | None = None
    _retry_at: float = 0.0
    _backoff: float = 0.0
    _failing_since: float | None = None

    @property
    def backlog(self) -> int:
        return len(self._pending)

    def retry_in(self) -> float:
        return max(0.0, self._retry_at - time.monotonic())

    def flush(self, *, now: bool = False) -> None:
        """Write what is pending, unless waiting out a failure (`now` ignores the wait)."""
        if not self._pending or (not now and self.retry_in() > 0):
            return
        while self._pending:
            batch = self._pending[:self.batch_size]
            started = time.perf_counter()
            try:
                self.store.apply(batch, self.clock())
            except StoreError as error:
                self._failed(error)
                return
            self.metrics.redis_write_seconds.observe(time.perf_counter() - started)
            del self._pending[:len(batch)]
        if self._failing_since is not None:
            log.info("Redis writes resumed after %.0f s", time.monotonic() - self._failing_since)
        self._failing_since, self._backoff, self.last_error = None, 0.0, None

    def _failed(self, error: StoreError) -> None:
        self.metrics.redis_write_errors.inc()
        self.last_error = str(error)
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log.warning("%s; keeping %d writes and retrying", error, len(self._pending))
        self._backoff = min(max(self._backoff * 2, BACKOFF_MIN), BACKOFF_MAX)
        self._retry_at = time.monotonic() + self._backoff


# ---- the sniffer -----------------------------------------------------------------------------

class Sniffer:
    """Every interface's capture, one queue, one pipeline: start(), then run() until stopped."""

    def __init__(self, config: SniffConfig, tracker: Tracker, store: LeaseStore,
                 metrics: Metrics | None = None) -> None:
        self.config = config
        self.tracker = tracker
        self.metrics = metrics or Metrics()
        self.queue: queue.Queue[Datagram] = queue.Queue(config.queue_size)
        self.pipeline = LivePipeline(tracker, store, batch_size=config.batch_size,
                                     metrics=self.metrics)
        self.counters: Counter[str] = Counter()  # the loop's own: capture_truncated
        self.watches = [InterfaceWatch(name, config, self.queue.put, self.metrics)
                        for name in dict.fromkeys(config.interfaces)]
        self._unwritten: list[float] = []  # capture times of changes not yet in Redis
        self.metrics.queue_depth.set_function(self.queue.qsize)
        self.metrics.pending_writes.set_function(lambda: self.pipeline.backlog)

    def start(self) -> None:
        """Start capturing on every interface; CaptureError, with everything stopped again, if
        one of them cannot (no such interface, no permission...)."""
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
        while not stop.is_set():
            self._round(POLL)
            if time.monotonic() >= publish_at:
                self.publish()
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

    def _round(self, timeout: float) -> None:
        """Process what the queue holds (waiting up to `timeout` for a first datagram), at most
        a batch, then write."""
        pipeline = self.pipeline
        if pipeline.backlog >= self.config.max_backlog:  # Redis is down: let the capture wait
            time.sleep(min(timeout, pipeline.retry_in()))
            self._flush()
            return
        try:
            first = self.queue.get(timeout=timeout)
        except queue.Empty:
            self._flush()
            return
        stats = pipeline.stats
        for datagram in itertools.chain([first], self._waiting(self.config.batch_size - 1)):
            if datagram.truncated:
                self.counters["capture_truncated"] += 1
            changes = stats["written"] + stats["deleted"]
            pipeline.feed(datagram)
            if stats["written"] + stats["deleted"] != changes:
                self._unwritten.append(datagram.ts)
        self._flush()

    def _waiting(self, limit: int) -> Iterator[Datagram]:
        for _ in range(limit):
            try:
                yield self.queue.get_nowait()
            except queue.Empty:
                return

    def _flush(self, *, now: bool = False) -> None:
        self.pipeline.flush(now=now)
        if self._unwritten and not self.pipeline.backlog:
            written = time.time()
            for ts in self._unwritten:
                self.metrics.capture_to_redis_seconds.observe(max(0.0, written - ts))
            self._unwritten.clear()

    def _shutdown(self, force: threading.Event) -> None:
        self._keep_feeding(lambda: not force.is_set(), DRAIN)
        for watch in self.watches:
            watch.stop()
        if not self._keep_feeding(self._capturing, STOP_WAIT, force):
            log.warning("the capture did not stop in time: killing dumpcap and tshark")
            for watch in self.watches:
                watch.kill()
            self._keep_feeding(self._capturing, STOP_WAIT)
        self._keep_feeding(lambda: not self.queue.empty(), STOP_WAIT)
        deadline = time.monotonic() + FINAL_FLUSH
        while self.pipeline.backlog and time.monotonic() < deadline:
            self._flush(now=True)
            if self.pipeline.backlog:
                time.sleep(min(BACKOFF_MIN, max(0.0, deadline - time.monotonic())))
        if self.pipeline.backlog:
            raise StoreError(f"{self.pipeline.backlog} lease writes were lost: "
                             f"{self.pipeline.last_error}")

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
            with _logs_held():
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


class _HeldLogs(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: collections.deque[logging.LogRecord] = collections.deque(maxlen=1000)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def _logs_held() -> Iterator[None]:
    """Keep log records (the last 1000) instead of writing them; write them afterwards."""
    handlers, held = log.handlers[:], _HeldLogs()
    log.handlers[:] = [held]
    try:
        yield
    finally:
        log.handlers[:] = handlers
        for record in held.records:
            log.handle(record)


def configure_logging(level: str) -> None:
    """Compact lines on stderr; no timestamps under systemd, whose journal adds its own."""
    handler = logging.StreamHandler(sys.stderr)
    stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
    handler.setFormatter(logging.Formatter(stamp + "%(levelname)s %(message)s",
                                           "%Y-%m-%d %H:%M:%S"))
    log.handlers[:] = [handler]
    log.setLevel(level.upper())
    log.propagate = False

