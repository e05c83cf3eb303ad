"""Lease changes written to Redis in order, patient with it, so that a slow, hung or absent Redis
never holds up the capture.

Two parts, the tracker's pattern: `WriteQueue` decides (what to write next, what a failure or an
overflow does, when to retry, what a late write means, which writes to re-assert) and reads no
clock, all times passed in; `RedisWriter` carries it out in a thread of its own: the Redis calls,
the clocks, logs and metrics, and the checks of sniffer/durability.py that tell when Redis may have
lost writes it took (hive.md R-HV-8).
"""

from __future__ import annotations

import collections
import contextlib
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass

from sniffer.commands import Command, Grant, Rejected, Revoke
from sniffer.connection import SOCKET_TIMEOUT, StoreError
from sniffer.durability import REASSERT_SECONDS, Loss, StoreWatch
from sniffer.logs import log
from sniffer.metrics import Metrics
from sniffer.registry import StoreProbe
from sniffer.store import LeaseStore

REDIS_BACKOFF_MIN, REDIS_BACKOFF_MAX = 0.5, 10.0  # seconds between retries of a failed write
CHECK = "check"  # the writer thread's work when the store is due for a check, not a batch

Entry = tuple[Command, float]  # a write and the capture time of the packet that caused it
REASSERTED = 0.0  # an Entry's capture time when it is a re-assertion: no latency to measure


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
    kept: int  # writes waiting now, the re-asserted ones included
    reasserted: int  # writes Redis had taken, put back in front with the batch
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

    Durability (hive.md R-HV-8): the grants and deletions Redis took in the last `keep` seconds
    (at most max_pending of them) are kept, since a Redis that fails or restarts may lose writes
    it acknowledged. When a batch fails, they go back in front of it, so that they are written
    again, in their order, to whichever Redis takes the retry; reassert_recent() does the same
    when Redis was found restarted or failed over between writes. They keep their capture
    times (the versions), and the store makes a write it already holds harmless.

    `now` is a monotonic clock in seconds (the caller's; this reads none); `wall`, in written(),
    the wall clock that lease expiries are on.
    """

    def __init__(self, batch_size: int, max_pending: int, keep: float = 0.0) -> None:
        self.batch_size = batch_size
        self.max_pending = max_pending
        self.keep = keep
        self._recent: collections.deque[tuple[float, Command]] = collections.deque()
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

    @property
    def closing(self) -> bool:
        return self._closing

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
        reasserted = self._requeue_recent(now)
        overflow = self._trim()
        first = self._failing_since is None
        if first:
            self._failing_since = started
        self._backoff = min(max(self._backoff * 2, REDIS_BACKOFF_MIN), REDIS_BACKOFF_MAX)
        self._retry_at = now + (REDIS_BACKOFF_MIN if self._closing else self._backoff)
        return Failure(first, len(self._pending), reasserted, overflow)

    def reassert_recent(self, now: float) -> tuple[int, Overflow | None]:
        """Put the writes Redis took in the last `keep` seconds back in front of the queue (no
        batch may be out): how many, and what that overflow dropped."""
        assert not self._in_flight, "between batches only"
        count = self._requeue_recent(now)
        return count, self._trim()

    def _requeue_recent(self, now: float) -> int:
        self._forget(now)
        recent = self._recent
        self._pending.extendleft((command, REASSERTED) for _at, command in reversed(recent))
        count = len(recent)
        recent.clear()  # back once Redis takes them again
        return count

    def _forget(self, now: float) -> None:
        """Drop the kept writes older than `keep` seconds, or beyond max_pending."""
        recent, horizon = self._recent, now - self.keep
        while recent and (recent[0][0] < horizon or len(recent) > self.max_pending):
            recent.popleft()

    def written(self, now: float, wall: float) -> Written:
        """The batch out went in at wall-clock time `wall`."""
        batch, self._in_flight = self._in_flight, []
        expired = late = late_expired = 0  # re-assertions are not late: written before
        keep = self.keep > 0
        for command, ts in batch:
            ended = False
            if isinstance(command, Grant):
                expires = command.lease.expires
                ended = expires is not None and expires <= wall
                expired += ended
            if ts != REASSERTED:
                late += 1
                late_expired += ended
            if keep and not isinstance(command, Rejected):
                self._recent.append((now, command))
        if keep:
            self._forget(now)
        failing_since = self._failing_since
        if failing_since is not None:
            self._late += late
            self._expired += late_expired
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
    once each; drops are an error once per backlog, summed up when it has drained.

    With a `probe`, it marks the store at start and checks it every few seconds between
    batches (sniffer/durability.py): a failed check or a master's changed run id re-asserts the
    writes of the last `keep` seconds; a lost marker asks the sniffer, through cache_wanted(),
    for every current lease, which reassert_cache() queues."""

    def __init__(self, store: LeaseStore, metrics: Metrics, batch_size: int,
                 max_pending: int, *, keep: float = REASSERT_SECONDS,
                 probe: StoreProbe | None = None) -> None:
        self.store = store
        self.metrics = metrics
        self.queue = WriteQueue(batch_size, max_pending, keep)
        self.probe = probe
        self.watch = StoreWatch()
        self.last_error: str | None = None
        self._cache_wanted = False
        self._cond = threading.Condition()  # guards the queue; notified on put and close
        self._thread = threading.Thread(target=self._run, name="redis-writer", daemon=True)

    @property
    def backlog(self) -> int:
        """Writes not yet in Redis: waiting, and being written."""
        return self.queue.backlog

    def start(self) -> None:
        """Mark the store and take the masters' run ids (StoreError if Redis fails), then start
        writing."""
        if self.probe is not None:
            self.probe.mark()
            self.watch.checked(self.probe.check(), time.monotonic())
        self._thread.start()

    def put(self, entries: list[Entry]) -> None:
        if not entries:
            return
        with self._cond:
            overflow = self.queue.put(entries)
            self._cond.notify()
        if overflow is not None:
            self._dropped(overflow)

    def cache_wanted(self) -> bool:
        """Whether Redis lost everything this writer wrote, so that every current lease must be
        written again (reassert_cache); True once per loss."""
        with self._cond:
            wanted, self._cache_wanted = self._cache_wanted, False
        return wanted

    def reassert_cache(self, grants: list[Grant]) -> None:
        """Queue every current lease (the tracker's, with their versions) after what waits."""
        log.warning("Redis lost writes (%s): re-asserting %d leases", Loss.EMPTIED.why,
                    len(grants))
        self.metrics.reasserted.labels(Loss.EMPTIED).inc(len(grants))
        self.put([(grant, REASSERTED) for grant in grants])

    def close(self, timeout: float) -> int:
        """Write what is pending, retrying for at most `timeout` seconds; the number of writes
        that are not in Redis when the thread ends (or gives up waiting for a hung Redis). The
        marker goes once everything is written."""
        with self._cond:
            self.queue.close(time.monotonic(), timeout)
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout + SOCKET_TIMEOUT + 1)
        if self.probe is not None and not self.backlog and not self._thread.is_alive():
            with contextlib.suppress(StoreError):
                self.probe.unmark()
        return self.backlog

    # -- the writer thread --

    def _run(self) -> None:
        while (work := self._next_work()) is not None:
            if isinstance(work, str):  # CHECK
                self._check()
                continue
            batch = work
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

    def _next_work(self) -> list[Entry] | str | None:
        """The next batch once the queue hands one out, or CHECK when the store is due for a
        check; None once the queue is done."""
        with self._cond:
            while True:
                now = time.monotonic()
                if self.queue.done(now):
                    return None
                checking = self.probe is not None and not self.queue.closing  # time is short
                if checking and self.watch.due(now):
                    return CHECK
                batch = self.queue.next_batch(now)
                if batch is not None:
                    return batch
                wait = self.queue.wake_in(now)
                if checking:
                    wait = min(wait if wait is not None else math.inf, self.watch.wake_in(now))
                self._cond.wait(wait)

    def _check(self) -> None:
        """Check the store (between batches) and act on what it lost."""
        assert self.probe is not None
        try:
            probe = self.probe.check()
        except StoreError as error:
            with self._cond:
                now = time.monotonic()
                first = self.watch.failed(now)
                count, overflow = self.queue.reassert_recent(now)
            if first:
                log.warning("Redis check failed: %s", error)
            self._reasserted_after_failure(count, overflow)
            return
        count, overflow = 0, None
        with self._cond:
            now = time.monotonic()
            loss = self.watch.checked(probe, now)
            if loss is Loss.RESTARTED:
                count, overflow = self.queue.reassert_recent(now)
        if loss is None:
            return
        self.metrics.store_resets.labels(loss).inc()
        if loss is Loss.RESTARTED:
            log.warning("Redis lost writes (%s: a restart or a failover): re-asserting the %d "
                        "writes of the last %g s", loss.why, count, self.queue.keep)
            self.metrics.reasserted.labels(loss).inc(count)
            if overflow is not None:
                self._dropped(overflow)
            return
        with contextlib.suppress(StoreError):  # if not, the next check finds it lost again
            self.probe.mark()
        with self._cond:
            self._cache_wanted = True

    def _failed(self, error: StoreError, started: float) -> None:
        with self._cond:
            failure = self.queue.failed(started, time.monotonic())
        self.metrics.redis_write_errors.inc()
        self.metrics.redis_up.set(0)
        self.last_error = str(error)
        if failure.first:
            log.warning("%s; keeping %d writes and retrying", error,
                        failure.kept - failure.reasserted)
        self._reasserted_after_failure(failure.reasserted, failure.overflow)

    def _reasserted_after_failure(self, count: int, overflow: Overflow | None) -> None:
        if count:
            log.warning("re-asserting the %d writes Redis took in the last %g s: it may have "
                        "lost them", count, self.queue.keep)
            self.metrics.reasserted.labels("failure").inc(count)
        if overflow is not None:
            self._dropped(overflow)

    def _written(self, batch: list[Entry]) -> None:
        wall = time.time()
        for command, ts in batch:
            if not isinstance(command, Rejected) and ts != REASSERTED:
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
