"""Lease changes written to Redis in order, patient with it, so that a slow, hung or absent Redis
never holds up the capture.

Two parts, the tracker's pattern: `WriteQueue` decides (what to write next, what a failure or an
overflow does, when to retry, what a late write means) and reads no clock, all times passed in;
`RedisWriter` carries it out in a thread of its own: the Redis calls, the clocks, logs and metrics.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass

from sniffer.commands import Command, Grant, Rejected, Revoke
from sniffer.connection import SOCKET_TIMEOUT, StoreError
from sniffer.logs import log
from sniffer.metrics import Metrics
from sniffer.store import LeaseStore

REDIS_BACKOFF_MIN, REDIS_BACKOFF_MAX = 0.5, 10.0  # seconds between retries of a failed write

Entry = tuple[Command, float]  # a write and the capture time of the packet that caused it


def write_kind(command: Command) -> str:
    """How dropped writes are counted: grant, revoke or rogue (a rejected rogue reply)."""
    if isinstance(command, Grant):
        return "grant"
    return "revoke" if isinstance(command, Revoke) else "rogue"


@dataclass(frozen=True)
class Overflow:
    """Writes dropped, the oldest first, to keep at most max_pending waiting."""

    dropped: Counter[str]  # by write_kind
    first: bool  # the first drop since the queue was last empty: worth an error in the log


@dataclass(frozen=True)
class Failure:
    """What a batch Redis did not take led to: the batch is back in front of the queue."""

    first: bool  # the first failure since the queue was last empty (the outage begins)
    kept: int  # writes waiting now
    overflow: Overflow | None  # the oldest dropped, if putting the batch back overflowed


@dataclass(frozen=True)
class Drained:
    """The queue has emptied: what happened since it was last empty."""

    outage: float | None  # seconds since the first failure, None if nothing failed
    late: int  # writes that went in after a failure
    expired: int  # ... of them, grants of leases that had ended meanwhile
    dropped: Counter[str]  # by write_kind


@dataclass(frozen=True)
class Written:
    """What a batch Redis took means."""

    expired: int  # grants of leases that had already ended: Redis drops them at once
    drained: Drained | None  # set once nothing waits any more


class WriteQueue:
    """The writer's policy, sans-IO: writes wait in order, one batch at a time is out.

    A batch that fails goes back to the head of the queue and is retried after a backoff (0.5 s
    doubling to 10 s; 0.5 s once closing), reset when the queue empties. At most `max_pending`
    writes wait: past that the oldest are dropped, counted by kind. Writes that go in late keep
    their capture-clock expiry (R-T-3: a lease's Redis expiry is its own end, not the write time
    plus its length), so a lease that ended meanwhile is gone at once: written() counts those.
    Closed with a timeout, the queue hands out batches until it is empty or the time is up.

    `now` is a monotonic clock in seconds (the caller's; this reads none); `wall`, in written(),
    the wall clock that lease expiries are on.
    """

    def __init__(self, batch_size: int, max_pending: int) -> None:
        self.batch_size = batch_size
        self.max_pending = max_pending
        self._pending: collections.deque[Entry] = collections.deque()
        self._in_flight: list[Entry] = []  # the batch handed out, until written() or failed()
        self._closing = False
        self._deadline = math.inf  # after which a closing queue hands out nothing more
        self._retry_at = 0.0
        self._backoff = 0.0
        self._failing_since: float | None = None
        self._late = self._expired = 0  # written after a failure / of those, already expired
        self._dropped: Counter[str] = Counter()  # by kind, since the queue was last empty
        self._dropping = False  # a drop has been reported since the queue was last empty

    @property
    def backlog(self) -> int:
        """Writes not yet in Redis: waiting, and being written."""
        return len(self._pending) + len(self._in_flight)

    def put(self, entries: list[Entry]) -> Overflow | None:
        """Queue writes at the tail; what had to be dropped for them, if anything."""
        self._pending.extend(entries)
        return self._trim()

    def close(self, now: float, timeout: float) -> None:
        """Hand out what waits for at most `timeout` more seconds, retrying soon (a backoff
        under way is cut to the shortest)."""
        self._closing = True
        self._deadline = now + timeout
        self._retry_at = min(self._retry_at, now + REDIS_BACKOFF_MIN)

    def done(self, now: float) -> bool:
        """Closed, and empty or out of time: nothing more will be handed out."""
        return self._closing and (not self._pending or now >= self._deadline)

    def next_batch(self, now: float) -> list[Entry] | None:
        """The oldest writes, up to batch_size, if some wait and no retry is being waited out;
        they are out until written() or failed() says how it went."""
        assert not self._in_flight, "one batch at a time"
        if not self._pending or now < self._retry_at:
            return None
        size = min(self.batch_size, len(self._pending))
        self._in_flight = [self._pending.popleft() for _ in range(size)]
        return self._in_flight

    def wake_in(self, now: float) -> float | None:
        """Seconds until next_batch() or done() may answer otherwise without a put() or close();
        None: not before one of those."""
        wait = self._retry_at - now if self._pending else None
        if self._closing:
            wait = min(wait if wait is not None else math.inf, self._deadline - now)
        return wait

    def failed(self, started: float, now: float) -> Failure:
        """The batch out did not go in (`started`: when the attempt began, as a hung Redis
        fails it only after the socket timeout): it goes back in front, retried after backoff."""
        self._pending.extendleft(reversed(self._in_flight))
        self._in_flight = []
        overflow = self._trim()
        first = self._failing_since is None
        if first:
            self._failing_since = started
        self._backoff = min(max(self._backoff * 2, REDIS_BACKOFF_MIN), REDIS_BACKOFF_MAX)
        self._retry_at = now + (REDIS_BACKOFF_MIN if self._closing else self._backoff)
        return Failure(first, len(self._pending), overflow)

    def written(self, now: float, wall: float) -> Written:
        """The batch out went in at wall-clock time `wall`."""
        batch, self._in_flight = self._in_flight, []
        expired = 0
        for command, _ts in batch:
            if isinstance(command, Grant):
                expires = command.lease.expires
                expired += expires is not None and expires <= wall
        failing_since = self._failing_since
        if failing_since is not None:
            self._late += len(batch)
            self._expired += expired
        if self._pending:
            return Written(expired, None)
        drained = Drained(None if failing_since is None else now - failing_since, self._late,
                          self._expired, self._dropped)
        self._failing_since, self._backoff, self._late, self._expired = None, 0.0, 0, 0
        self._dropped, self._dropping = Counter(), False
        return Written(expired, drained)

    def _trim(self) -> Overflow | None:
        """Drop the oldest writes beyond max_pending."""
        overflow = len(self._pending) - self.max_pending
        if overflow <= 0:
            return None
        dropped = Counter(write_kind(self._pending.popleft()[0]) for _ in range(overflow))
        self._dropped.update(dropped)
        first, self._dropping = not self._dropping, True
        return Overflow(dropped, first)


class RedisWriter:
    """Carries out a WriteQueue in a thread of its own: writes its batches to Redis, with the
    clocks read here, and logs and counts what it decides. A failure and the recovery are logged
    once each; drops are an error once per backlog, summed up when it has drained."""

    def __init__(self, store: LeaseStore, metrics: Metrics, batch_size: int,
                 max_pending: int) -> None:
        self.store = store
        self.metrics = metrics
        self.queue = WriteQueue(batch_size, max_pending)
        self.last_error: str | None = None
        self._cond = threading.Condition()  # guards the queue; notified on put and close
        self._thread = threading.Thread(target=self._run, name="redis-writer", daemon=True)

    @property
    def backlog(self) -> int:
        """Writes not yet in Redis: waiting, and being written."""
        return self.queue.backlog

    def start(self) -> None:
        self._thread.start()

    def put(self, entries: list[Entry]) -> None:
        if not entries:
            return
        with self._cond:
            overflow = self.queue.put(entries)
            self._cond.notify()
        if overflow is not None:
            self._dropped(overflow)

    def close(self, timeout: float) -> int:
        """Write what is pending, retrying for at most `timeout` seconds; the number of writes
        that are not in Redis when the thread ends (or gives up waiting for a hung Redis)."""
        with self._cond:
            self.queue.close(time.monotonic(), timeout)
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
                self._failed(error, started)
            except Exception as error:  # a bug: logged, and retried like a failure
                log.exception("writing to Redis failed")
                self._failed(StoreError(f"{type(error).__name__}: {error}"), started)
            else:
                self.metrics.redis_write_seconds.observe(time.monotonic() - started)
                self._written(batch)

    def _next_batch(self) -> list[Entry] | None:
        """The next batch, once the queue hands one out; None once it is done."""
        with self._cond:
            while True:
                now = time.monotonic()
                if self.queue.done(now):
                    return None
                batch = self.queue.next_batch(now)
                if batch is not None:
                    return batch
                self._cond.wait(self.queue.wake_in(now))

    def _failed(self, error: StoreError, started: float) -> None:
        with self._cond:
            failure = self.queue.failed(started, time.monotonic())
        self.metrics.redis_write_errors.inc()
        self.metrics.redis_up.set(0)
        self.last_error = str(error)
        if failure.first:
            log.warning("%s; keeping %d writes and retrying", error, failure.kept)
        if failure.overflow is not None:
            self._dropped(failure.overflow)

    def _written(self, batch: list[Entry]) -> None:
        wall = time.time()
        for command, ts in batch:
            if not isinstance(command, Rejected):
                self.metrics.capture_to_redis_seconds.observe(max(0.0, wall - ts))
        with self._cond:
            written = self.queue.written(time.monotonic(), wall)
        if written.expired:
            self.metrics.expired_when_written.inc(written.expired)
        drained = written.drained
        if drained is None:
            return
        self.metrics.redis_up.set(1)
        self.last_error = None
        if drained.outage is not None:
            log.info("Redis writes resumed after %.0f s: %d writes made late, %d of them leases "
                     "that had expired meanwhile (so not kept)",
                     drained.outage, drained.late, drained.expired)
        if drained.dropped:
            log.error("%d writes were dropped, the oldest first, while more than %d waited for "
                      "Redis: %d grants, %d deletions, %d rogue replies are missing from Redis",
                      sum(drained.dropped.values()), self.queue.max_pending,
                      drained.dropped["grant"], drained.dropped["revoke"],
                      drained.dropped["rogue"])

    def _dropped(self, overflow: Overflow) -> None:
        for kind, count in overflow.dropped.items():
            self.metrics.pending_dropped.labels(kind).inc(count)
        if overflow.first:
            log.error("more than %d writes wait for Redis: dropping the oldest (leases "
                      "granted or deleted meanwhile will be missing); see --max-pending",
                      self.queue.max_pending)
