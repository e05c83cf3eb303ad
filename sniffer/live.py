"""Live sniffing: supervised captures feeding the pipeline, clean stops, and metrics.

Threads: one supervisor per interface (InterfaceWatch) relays dumpcap's pcapng blocks to a tshark
and restarts whatever stops; the tshark reader threads put Datagrams on one bounded queue; the
caller's thread (Sniffer.run) feeds the pipeline from that queue and hands the lease changes to
a writer thread (RedisWriter), which writes them to Redis in order. Redis never holds up the
capture: while it is down, hung or restarting, the changes wait in a bounded queue (the oldest
dropped, loudly, when it overflows) and are written once Redis answers again.

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

from sniffer.commands import ROGUE_REASONS, Command, Grant, Rejected, Revoke
from sniffer.connection import SOCKET_TIMEOUT, StoreError, redact
from sniffer.dhcp import Datagram
from sniffer.dumpcap import (
    DUMPCAP_BUFFER_MIB,
    IDB,
    PACKET_BLOCKS,
    SHB,
    Block,
    DumpcapEnd,
    DumpcapRun,
    TsharkLeg,
    permission_message,
)
from sniffer.errors import HiveError
from sniffer.escape import printable
from sniffer.pipeline import Pipeline, count_rogue
from sniffer.store import LeaseStore
from sniffer.tracker import Tracker
from sniffer.tshark import DEFAULT_PORTS, CaptureError

log = logging.getLogger("dhcp_hive_mind")

# Seconds between restarts of a capture that keeps failing; the first restart after a capture
# that ran is immediate, and a run this long resets the backoff.
BACKOFF_MIN, BACKOFF_MAX = 0.5, 30.0
REDIS_BACKOFF_MIN, REDIS_BACKOFF_MAX = 0.5, 10.0  # seconds between retries of a failed write
# Rejected rogue replies are logged one by one up to this many per window; the rest are summed
# up per server at the end of the window, so that a rogue flood cannot flood the log.
ROGUE_LOG_LINES, ROGUE_LOG_WINDOW = 10, 60.0
# dumpcap 4.0 leaves libpcap out of immediate mode, so the kernel hands packets over in blocks
# that retire after at most 250 ms; a capture asked to stop keeps running this long first.
DRAIN = 0.4
POLL = 0.2  # how often waiting threads look up
ROTATE_FRAMES = 1_000_000  # a scheduled restart also comes after this many frames
STOP_WAIT = 10.0  # seconds the captures get to deliver their last packets at a stop
LEG_MIN_LIFE = 5.0  # seconds: a replaced tshark that exits sooner is failing, not killed
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


class SniffError(HiveError):
    """A local problem outside capture and Redis (such as a metrics port in use)."""


@dataclass(frozen=True)
class SniffConfig:
    interfaces: tuple[str, ...]
    ports: tuple[int, ...] = DEFAULT_PORTS
    buffer_mib: int = DUMPCAP_BUFFER_MIB  # dumpcap -B: the kernel buffer that absorbs bursts
    restart_every: float = 3600.0  # seconds between scheduled restarts; 0: never
    batch_size: int = 500  # commands per Redis round trip
    queue_size: int = 10_000  # datagrams decoded ahead of the pipeline
    max_pending: int = 100_000  # writes held while Redis fails; beyond, the oldest are dropped
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
        self.redis_up = Gauge(METRIC_PREFIX + "redis_up", "1 while Redis takes the writes, 0 "
                              "while they fail and wait", registry=reg)
        self.pending_dropped = PromCounter(
            METRIC_PREFIX + "pending_dropped", "Writes dropped, the oldest first, because more "
            "than --max-pending waited for Redis (kind: grant, revoke, rogue)", ["kind"],
            registry=reg)
        self.expired_when_written = PromCounter(
            METRIC_PREFIX + "expired_when_written", "Leases that had already expired when "
            "Redis took them, late (after an outage): their expiry removes them at once",
            registry=reg)
        self.redis_up.set(1)
        for kind in ("grant", "revoke", "rogue"):
            self.pending_dropped.labels(kind)
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
        self._replaced_at = -math.inf  # when a dead tshark was last replaced between packets
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
        backoff = 0.0  # a capture that was running is restarted at once
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
                        backoff = 0.0
                else:
                    log.debug("capture on %s still failing: %s", self.interface, message)
                self._stop.wait(backoff)
                backoff = min(max(backoff * 2, BACKOFF_MIN), BACKOFF_MAX)
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
                self._replace_dead_leg(header)
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
                self._lost(leg)
                if attempt:
                    raise CaptureError("tshark keeps exiting") from None

    def _replace_dead_leg(self, header: list[Block]) -> None:
        """Replace a tshark that died between packets now, not when the next one comes. If the
        last one replaced so also died within LEG_MIN_LIFE, tshark is failing: CaptureError,
        and the supervisor restarts the capture with backoff."""
        leg = self._leg
        if leg is None or not leg.done() or self._stop.is_set() or not header:
            return
        self._lost(leg)
        if time.monotonic() - self._replaced_at < LEG_MIN_LIFE:
            raise CaptureError("tshark keeps exiting")
        self._new_leg().write(header)
        self._replaced_at = time.monotonic()

    def _lost(self, leg: TsharkLeg) -> None:
        leg.wait(STOP_WAIT)
        self._leg = None
        self.metrics.capture_restarts.labels(self.interface, "tshark", "exited").inc()
        log.warning("tshark for %s exited (%s); starting another", self.interface,
                    leg.failure or "without an error")

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


# ---- writing to Redis, patient with it -------------------------------------------------------

Entry = tuple[Command, float]  # a write and the capture time of the packet that caused it


def _kind(command: Command) -> str:
    if isinstance(command, Grant):
        return "grant"
    return "revoke" if isinstance(command, Revoke) else "rogue"


class RedisWriter:
    """Writes lease changes to Redis in a thread of its own, in the order they were put, so that
    a slow, hung or absent Redis never holds up the capture.

    A batch Redis does not take goes back to the head of the queue and is retried with backoff
    (0.5 s doubling to 10 s); the failure and the recovery are logged once each. The queue holds
    at most `max_pending` writes: past that the oldest are dropped, counted by kind, and logged
    as an error once per backlog (and summed up when it has drained). Writes that Redis takes
    late keep their capture-clock expiry (R-T-3): a lease that ended meanwhile is gone at once.
    """

    def __init__(self, store: LeaseStore, metrics: Metrics, batch_size: int,
                 max_pending: int) -> None:
        self.store = store
        self.metrics = metrics
        self.batch_size = batch_size
        self.max_pending = max_pending
        self.last_error: str | None = None
        self._pending: collections.deque[Entry] = collections.deque()
        self._in_flight = 0
        self._cond = threading.Condition()
        self._closing = False
        self._deadline = math.inf  # monotonic time after which a closing writer gives up
        self._retry_at = 0.0
        self._backoff = 0.0
        self._failing_since: float | None = None
        self._late = self._expired = 0  # written after a failure / of those, already expired
        self._dropped: Counter[str] = Counter()  # by kind, since the queue was last empty
        self._dropping = False  # dropping has been logged since the queue was last empty
        self._thread = threading.Thread(target=self._run, name="redis-writer", daemon=True)

    @property
    def backlog(self) -> int:
        """Writes not yet in Redis: waiting, and being written."""
        return len(self._pending) + self._in_flight

    def start(self) -> None:
        self._thread.start()

    def put(self, entries: list[Entry]) -> None:
        if not entries:
            return
        with self._cond:
            self._pending.extend(entries)
            dropped = self._trim()
            self._cond.notify()
        if dropped:
            self._say_dropping()

    def close(self, timeout: float) -> int:
        """Write what is pending, retrying for at most `timeout` seconds; the number of writes
        that are not in Redis when the thread ends (or gives up waiting for a hung Redis)."""
        with self._cond:
            self._closing = True
            self._deadline = time.monotonic() + timeout
            self._retry_at = min(self._retry_at, time.monotonic() + REDIS_BACKOFF_MIN)
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout + SOCKET_TIMEOUT + 1)
        return self.backlog

    # -- the writer thread --

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            started = time.monotonic()
            try:
                self.store.apply([command for command, _ts in batch], time.time())
            except StoreError as error:
                self._failed(batch, error, started)
            except Exception as error:  # a bug: logged, and retried like a failure
                log.exception("writing to Redis failed")
                self._failed(batch, StoreError(f"{type(error).__name__}: {error}"), started)
            else:
                self.metrics.redis_write_seconds.observe(time.monotonic() - started)
                self._written(batch)

    def _next_batch(self) -> list[Entry] | None:
        """The oldest writes, once there are some and no retry is being waited out; None once
        closed and everything is written, or the closing deadline has passed."""
        with self._cond:
            while True:
                now = time.monotonic()
                if self._closing and (not self._pending or now >= self._deadline):
                    return None
                if self._pending and now >= self._retry_at:
                    size = min(self.batch_size, len(self._pending))
                    batch = [self._pending.popleft() for _ in range(size)]
                    self._in_flight = size
                    return batch
                wait = self._retry_at - now if self._pending else None
                if self._closing:
                    wait = min(wait if wait is not None else math.inf, self._deadline - now)
                self._cond.wait(wait)

    def _failed(self, batch: list[Entry], error: StoreError, started: float) -> None:
        """Put the batch back in front; `started`: when the attempt began (a hung Redis fails
        it only after the socket timeout)."""
        with self._cond:
            self._pending.extendleft(reversed(batch))
            self._in_flight = 0
            dropped = self._trim()
            first = self._failing_since is None
            if first:
                self._failing_since = started
            self._backoff = min(max(self._backoff * 2, REDIS_BACKOFF_MIN), REDIS_BACKOFF_MAX)
            delay = REDIS_BACKOFF_MIN if self._closing else self._backoff
            self._retry_at = time.monotonic() + delay
            pending = len(self._pending)
        self.metrics.redis_write_errors.inc()
        self.metrics.redis_up.set(0)
        self.last_error = str(error)
        if first:
            log.warning("%s; keeping %d writes and retrying", error, pending)
        if dropped:
            self._say_dropping()

    def _written(self, batch: list[Entry]) -> None:
        now = time.time()
        expired = 0
        for command, ts in batch:
            if isinstance(command, Grant):
                expires = command.lease.expires
                expired += expires is not None and expires <= now
            if not isinstance(command, Rejected):
                self.metrics.capture_to_redis_seconds.observe(max(0.0, now - ts))
        if expired:
            self.metrics.expired_when_written.inc(expired)
        with self._cond:
            self._in_flight = 0
            failing_since = self._failing_since
            if failing_since is not None:
                self._late += len(batch)
                self._expired += expired
            if self._pending:
                return
            late, expired_late, dropped = self._late, self._expired, self._dropped
            self._failing_since, self._backoff, self._late, self._expired = None, 0.0, 0, 0
            self._dropped, self._dropping = Counter(), False
        self.metrics.redis_up.set(1)
        self.last_error = None
        if failing_since is not None:
            log.info("Redis writes resumed after %.0f s: %d writes made late, %d of them leases "
                     "that had expired meanwhile (so not kept)",
                     time.monotonic() - failing_since, late, expired_late)
        if dropped:
            log.error("%d writes were dropped, the oldest first, while more than %d waited for "
                      "Redis: %d grants, %d deletions, %d rogue replies are missing from Redis",
                      sum(dropped.values()), self.max_pending, dropped["grant"],
                      dropped["revoke"], dropped["rogue"])

    def _trim(self) -> int:
        """Drop the oldest writes beyond max_pending (the lock held); how many."""
        overflow = len(self._pending) - self.max_pending
        for _ in range(overflow):
            kind = _kind(self._pending.popleft()[0])
            self._dropped[kind] += 1
            self.metrics.pending_dropped.labels(kind).inc()
        return max(overflow, 0)

    def _say_dropping(self) -> None:
        """The first drop of a backlog is an error in the log; the rest are counted."""
        with self._cond:
            first = not self._dropping
            self._dropping = True
        if first:
            log.error("more than %d writes wait for Redis: dropping the oldest (leases "
                      "granted or deleted meanwhile will be missing); see --max-pending",
                      self.max_pending)


class RogueLog:
    """Logs rejected replies of rogue servers with the server and the client: one by one up to
    ROGUE_LOG_LINES per ROGUE_LOG_WINDOW seconds, then a count per server for the rest."""

    def __init__(self) -> None:
        self._window_end = -math.inf
        self._logged = 0
        self._unlogged: Counter[str] = Counter()

    def note(self, rejected: Rejected) -> None:
        self.roll()
        if self._logged >= ROGUE_LOG_LINES:
            count_rogue(self._unlogged, rejected)
            return
        self._logged += 1
        msg = rejected.msg
        server = msg.server_id or msg.src  # server(P), R-SV-1
        address = "" if msg.yiaddr == "0.0.0.0" else f" of {msg.yiaddr}"
        source = "" if msg.src == server else f" sent from {msg.src}"
        log.warning("rogue reply rejected, not written: %s%s to client %s from server %s%s",
                    msg.type_name, address, msg.mac or "-", server, source)

    def roll(self, *, final: bool = False) -> None:
        """Start a new window once the current one is over (or at the end: `final`), summing
        up the replies it did not log."""
        now = time.monotonic()
        if now < self._window_end and not final:
            return
        if self._unlogged:
            servers = ", ".join(f"{server} ({count})" for server, count
                                in self._unlogged.most_common())
            log.warning("%d more rogue replies rejected, not logged one by one: %s",
                        sum(self._unlogged.values()), servers)
        self._window_end, self._logged = now + ROGUE_LOG_WINDOW, 0
        self._unlogged.clear()


@dataclass
class LivePipeline(Pipeline):
    """A Pipeline whose writes go to a RedisWriter, with the capture time of the packet behind
    each; flush() hands them over and never waits for Redis. Rogue replies are logged."""

    writer: RedisWriter | None = None
    rogue_log: RogueLog = field(default_factory=RogueLog)
    _stamps: list[float] = field(default_factory=list)  # capture time of each pending command

    def __post_init__(self) -> None:
        self.batch_size = sys.maxsize  # Pipeline.feed never flushes: the writer batches

    def feed(self, datagram: Datagram) -> None:
        before = len(self._pending)
        super().feed(datagram)
        if len(self._pending) > before:
            self._stamps.extend(itertools.repeat(datagram.ts, len(self._pending) - before))

    def flush(self) -> None:
        if not self._pending:
            return
        entries: list[Entry] = []
        for command, ts in zip(self._pending, self._stamps, strict=True):
            if isinstance(command, Rejected):
                if command.reason not in ROGUE_REASONS:
                    continue  # nothing to write
                self.rogue_log.note(command)
            entries.append((command, ts))
        self._pending, self._stamps = [], []
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
        self.queue: queue.Queue[Datagram] = queue.Queue(config.queue_size)
        self.writer = RedisWriter(store, self.metrics, config.batch_size, config.max_pending)
        self.pipeline = LivePipeline(tracker, store, writer=self.writer)
        self.counters: Counter[str] = Counter()  # the loop's own: capture_truncated
        self.watches = [InterfaceWatch(name, config, self.queue.put, self.metrics)
                        for name in dict.fromkeys(config.interfaces)]
        self.metrics.queue_depth.set_function(self.queue.qsize)
        self.metrics.pending_writes.set_function(lambda: self.writer.backlog)

    def start(self) -> None:
        """Start capturing on every interface; CaptureError, with everything stopped again, if
        one of them cannot (no such interface, no permission...)."""
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
        self.pipeline.rogue_log.roll()

    def _round(self, timeout: float) -> None:
        """Process what the queue holds (waiting up to `timeout` for a first datagram), at most
        a batch, then hand the writes over."""
        try:
            first = self.queue.get(timeout=timeout)
        except queue.Empty:
            return
        pipeline = self.pipeline
        for datagram in itertools.chain([first], self._waiting(self.config.batch_size - 1)):
            if datagram.truncated:
                self.counters["capture_truncated"] += 1
            pipeline.feed(datagram)
        pipeline.flush()

    def _waiting(self, limit: int) -> Iterator[Datagram]:
        for _ in range(limit):
            try:
                yield self.queue.get_nowait()
            except queue.Empty:
                return

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


class _SafeFormatter(logging.Formatter):
    """Every message one line of printable text (control characters from the wire, Redis or a
    tool's output escaped), with Redis passwords replaced by ***. The record is left as it was:
    held records (see _logs_held) are formatted later."""

    def format(self, record: logging.LogRecord) -> str:
        original = record.msg, record.args
        record.msg, record.args = printable(redact(record.getMessage())), None
        try:
            return super().format(record)
        finally:
            record.msg, record.args = original


def configure_logging(level: str) -> None:
    """Compact lines on stderr, stamped to the millisecond (restarts are timed by them); no
    timestamps under systemd, whose journal adds its own."""
    handler = logging.StreamHandler(sys.stderr)
    stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s.%(msecs)03d "
    handler.setFormatter(_SafeFormatter(stamp + "%(levelname)s %(message)s",
                                        "%Y-%m-%d %H:%M:%S"))
    log.handlers[:] = [handler]
    log.setLevel(level.upper())
    log.propagate = False

