"""WriteQueue, the Redis writer's policy, without Redis, threads or clocks: every decision it
makes (batches, drops, retries and their backoff, late writes, the stop) with the times given."""

from __future__ import annotations

from collections import Counter

import pytest
from helpers import build_lease
from test_store import reply

from sniffer.commands import Grant, GrantEvent, Rejected, RejectReason, Revoke, RevokeReason
from sniffer.dhcp import ACK
from sniffer.writer import REASSERTED, REDIS_BACKOFF_MAX, REDIS_BACKOFF_MIN, Entry, WriteQueue

WALL = 1_700_000_000  # wall-clock time of the writes (lease expiries are on this clock)


def grant(n: int, *, expires: int | None = WALL + 3600) -> Entry:
    lease = build_lease(f"192.0.2.{n}", expires=expires)
    return Grant(lease, GrantEvent.GRANTED), float(n)


def revoke(n: int) -> Entry:
    return Revoke(build_lease(f"192.0.2.{n}"), RevokeReason.RELEASED), float(n)


def rogue(n: int) -> Entry:
    return Rejected(RejectReason.ROGUE_REPLY, reply(ACK, server_id="192.0.2.66")), float(n)


def ips(batch: list[Entry] | None) -> list[str]:
    assert batch is not None
    return [command.lease.ip if not isinstance(command, Rejected) else "rogue"
            for command, _ts in batch]


def test_batches_are_the_oldest_writes_in_order() -> None:
    queue = WriteQueue(batch_size=2, max_pending=100)
    assert queue.next_batch(0.0) is None
    assert queue.wake_in(0.0) is None  # nothing to do until a put
    assert queue.put([grant(1), revoke(2), grant(3)]) is None
    assert queue.backlog == 3
    assert ips(queue.next_batch(0.0)) == ["192.0.2.1", "192.0.2.2"]
    assert queue.backlog == 3  # the batch out still counts until it is written
    assert queue.written(0.1, WALL).drained is None  # one more waits
    assert queue.backlog == 1
    assert ips(queue.next_batch(0.1)) == ["192.0.2.3"]
    written = queue.written(0.2, WALL)
    assert written.drained is not None
    assert queue.backlog == 0
    assert queue.next_batch(0.2) is None


def test_overflow_drops_the_oldest_counted_by_kind_and_reported_once_per_backlog() -> None:
    queue = WriteQueue(batch_size=10, max_pending=3)
    assert queue.put([grant(1), revoke(2), rogue(3)]) is None
    overflow = queue.put([grant(4), grant(5)])
    assert overflow is not None
    assert overflow.dropped == Counter(grant=1, revoke=1)
    assert overflow.first
    assert queue.backlog == 3
    overflow = queue.put([grant(6)])
    assert overflow is not None
    assert overflow.dropped == Counter(rogue=1)
    assert not overflow.first  # the backlog's drops were reported already
    assert ips(queue.next_batch(0.0)) == ["192.0.2.4", "192.0.2.5", "192.0.2.6"]
    drained = queue.written(1.0, WALL).drained
    assert drained is not None
    assert drained.dropped == Counter(grant=1, revoke=1, rogue=1)  # the summary once empty
    assert drained.outage is None  # nothing failed: only Redis's pace
    overflow = queue.put([grant(n) for n in range(10, 14)])
    assert overflow is not None
    assert overflow.first  # a new backlog
    assert overflow.dropped == Counter(grant=1)


def test_a_failed_batch_goes_back_in_front_and_is_retried_after_the_backoff() -> None:
    queue = WriteQueue(batch_size=2, max_pending=100)
    queue.put([grant(1), grant(2), grant(3)])
    assert ips(queue.next_batch(10.0)) == ["192.0.2.1", "192.0.2.2"]
    queue.put([grant(4)])
    failure = queue.failed(started=10.0, now=12.0)
    assert failure.first
    assert failure.kept == 4
    assert failure.overflow is None
    assert queue.backlog == 4
    assert queue.next_batch(12.0 + REDIS_BACKOFF_MIN - 0.01) is None
    assert queue.wake_in(12.0) == pytest.approx(REDIS_BACKOFF_MIN)
    assert ips(queue.next_batch(12.0 + REDIS_BACKOFF_MIN)) == ["192.0.2.1", "192.0.2.2"]
    assert not queue.failed(started=13.0, now=13.0).first  # the same outage


def test_the_backoff_doubles_up_to_its_cap_and_resets_once_the_queue_empties() -> None:
    queue = WriteQueue(batch_size=1, max_pending=100)
    queue.put([grant(1), grant(2)])
    now, delays = 0.0, []
    for _ in range(7):
        while queue.next_batch(now) is None:
            now += 0.25
        queue.failed(now, now)
        delays.append(queue.wake_in(now))
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert REDIS_BACKOFF_MAX == 10.0
    now += 10.0
    assert ips(queue.next_batch(now)) == ["192.0.2.1"]
    assert queue.written(now, WALL).drained is None
    queue.next_batch(now)
    queue.failed(now, now)
    assert queue.wake_in(now) == 10.0  # one write still waits: the outage goes on
    now += 10.0
    queue.next_batch(now)
    assert queue.written(now, WALL).drained is not None
    queue.put([grant(3)])
    queue.next_batch(now)
    assert queue.failed(now, now).first  # a new outage ...
    assert queue.wake_in(now) == REDIS_BACKOFF_MIN  # ... starts over from the shortest wait


def test_putting_a_failed_batch_back_drops_the_oldest_beyond_max_pending() -> None:
    queue = WriteQueue(batch_size=2, max_pending=3)
    queue.put([grant(1), revoke(2)])
    queue.next_batch(0.0)
    queue.put([grant(3), grant(4)])  # 2 waiting, 2 out: within max_pending
    failure = queue.failed(0.0, 1.0)
    assert failure.overflow is not None
    assert failure.overflow.dropped == Counter(grant=1)  # the batch's oldest write
    assert failure.overflow.first
    assert failure.kept == 3
    assert ips(queue.next_batch(2.0)) == ["192.0.2.2", "192.0.2.3"]


def test_writes_made_late_by_an_outage_count_the_leases_that_ended_meanwhile() -> None:
    queue = WriteQueue(batch_size=10, max_pending=100)
    queue.put([grant(1, expires=WALL - 5), grant(2, expires=WALL), grant(3),
               grant(4, expires=None), revoke(5), rogue(6)])
    queue.next_batch(100.0)
    queue.failed(started=100.0, now=105.0)  # a hung Redis: the outage began with the attempt
    batch = queue.next_batch(200.0)
    assert batch is not None
    assert len(batch) == 6
    written = queue.written(230.0, WALL)
    assert written.expired == 2  # ended before, or at, the moment Redis took them (R-T-3)
    assert written.drained is not None
    assert written.drained.outage == 130.0
    assert written.drained.late == 6
    assert written.drained.expired == 2
    queue.put([grant(7, expires=WALL - 1)])  # not late: counted, but no outage to report
    queue.next_batch(300.0)
    written = queue.written(300.0, WALL)
    assert written.expired == 1
    assert written.drained is not None
    assert (written.drained.outage, written.drained.late, written.drained.expired) == (None, 0, 0)


def test_late_writes_are_summed_over_the_batches_until_the_queue_empties() -> None:
    queue = WriteQueue(batch_size=2, max_pending=100)
    queue.put([grant(1, expires=WALL - 1), grant(2), grant(3, expires=WALL - 1)])
    queue.next_batch(0.0)
    queue.failed(0.0, 0.0)
    queue.next_batch(1.0)
    assert queue.written(1.0, WALL).drained is None
    queue.next_batch(1.0)
    drained = queue.written(2.0, WALL).drained
    assert drained is not None
    assert (drained.outage, drained.late, drained.expired) == (2.0, 3, 2)


def test_closing_flushes_what_waits_then_is_done() -> None:
    queue = WriteQueue(batch_size=2, max_pending=100)
    queue.put([grant(1), grant(2), grant(3)])
    assert not queue.done(0.0)  # not closed: the writer waits for more
    queue.close(0.0, timeout=10.0)
    assert not queue.done(0.0)
    assert ips(queue.next_batch(0.0)) == ["192.0.2.1", "192.0.2.2"]
    queue.written(0.1, WALL)
    assert ips(queue.next_batch(0.1)) == ["192.0.2.3"]
    queue.written(0.2, WALL)
    assert queue.done(0.2)
    assert queue.backlog == 0


def test_closing_cuts_a_long_backoff_short_and_retries_quickly_until_the_deadline() -> None:
    queue = WriteQueue(batch_size=10, max_pending=100)
    queue.put([grant(1), grant(2)])
    now = 0.0
    for _ in range(6):  # the backoff has grown to its cap
        while queue.next_batch(now) is None:
            now += 0.5
        queue.failed(now, now)
    assert queue.wake_in(now) == REDIS_BACKOFF_MAX
    queue.close(now, timeout=2.0)
    assert queue.wake_in(now) == REDIS_BACKOFF_MIN
    assert queue.next_batch(now + REDIS_BACKOFF_MIN) is not None
    queue.failed(now + 0.5, now + 0.5)
    assert queue.wake_in(now + 0.5) == REDIS_BACKOFF_MIN  # closing: no longer backing off
    assert queue.next_batch(now + 1.0) is not None
    queue.failed(now + 1.7, now + 1.7)  # a slow failure: the next retry would come too late
    assert not queue.done(now + 1.7)
    assert queue.wake_in(now + 1.7) == pytest.approx(0.3)  # woken at the deadline, not after
    assert queue.done(now + 2.0)  # out of time: what waits is lost
    assert queue.backlog == 2


def test_closing_an_empty_queue_is_done_at_once_and_never_waits_forever() -> None:
    queue = WriteQueue(batch_size=10, max_pending=100)
    queue.close(5.0, timeout=0.0)
    assert queue.done(5.0)
    queue = WriteQueue(batch_size=10, max_pending=100)
    queue.close(5.0, timeout=3.0)
    assert queue.done(5.0)  # nothing to write: no need to wait out the timeout
    queue = WriteQueue(batch_size=10, max_pending=100)
    queue.put([grant(1)])
    queue.next_batch(5.0)
    queue.failed(5.0, 5.0)
    queue.close(6.0, timeout=0.0)  # no time given: what waits is lost at once
    assert queue.done(6.0)
    assert queue.backlog == 1


# ---- durability: the writes Redis took, kept to be re-asserted (hive.md R-HV-8) ---------------

def written_batches(queue: WriteQueue, now: float) -> list[list[str]]:
    """Hand out and write every batch at `now`: their addresses."""
    batches = []
    while (batch := queue.next_batch(now)) is not None:
        batches.append(ips(batch))
        queue.written(now, WALL)
    return batches


def test_a_failure_puts_the_writes_redis_took_lately_back_in_front_in_their_order() -> None:
    queue = WriteQueue(batch_size=10, max_pending=100, keep=30.0)
    queue.put([grant(9), revoke(8)])
    written_batches(queue, 100.0)  # more than 30 s before the failure: not kept
    queue.put([grant(1), revoke(2), rogue(3)])
    written_batches(queue, 115.0)
    queue.put([grant(4)])
    written_batches(queue, 120.0)
    queue.put([grant(5)])
    assert ips(queue.next_batch(140.0)) == ["192.0.2.5"]
    failure = queue.failed(140.0, 141.0)
    # 1, 2 and 4 were taken within 30 s of the failure; the rogue reply is not a lease write.
    assert (failure.reasserted, failure.kept) == (3, 4)
    retry = queue.next_batch(141.0 + REDIS_BACKOFF_MIN)
    assert ips(retry) == ["192.0.2.1", "192.0.2.2", "192.0.2.4", "192.0.2.5"]
    assert retry is not None and [ts for _command, ts in retry] == [REASSERTED] * 3 + [5.0]
    queue.failed(142.0, 142.0)  # the same writes again, not twice
    assert queue.backlog == 4
    batch = queue.next_batch(150.0)
    assert batch is not None
    drained = queue.written(150.0, WALL).drained
    assert drained is not None
    assert drained.late == 1  # the re-asserted writes are not late: they went in before


def test_only_the_writes_of_the_last_keep_seconds_are_reasserted() -> None:
    queue = WriteQueue(batch_size=10, max_pending=100, keep=30.0)
    queue.put([grant(1)])
    written_batches(queue, 100.0)
    queue.put([grant(2)])
    written_batches(queue, 110.0)
    count, overflow = queue.reassert_recent(135.0)  # 1 was taken 35 s ago: forgotten
    assert (count, overflow) == (1, None)
    assert written_batches(queue, 136.0) == [["192.0.2.2"]]
    assert queue.reassert_recent(136.0 + 31.0) == (0, None)  # taken again at 136, 31 s ago
    assert queue.backlog == 0


def test_reasserting_recent_writes_goes_before_what_waits_and_is_bounded() -> None:
    queue = WriteQueue(batch_size=10, max_pending=3, keep=30.0)
    queue.put([grant(1), grant(2), grant(3)])
    written_batches(queue, 0.0)
    queue.put([grant(4), grant(5)])
    count, overflow = queue.reassert_recent(1.0)  # run id changed between batches
    assert count == 3
    assert overflow is not None and overflow.dropped == Counter(grant=2)  # the oldest
    assert ips(queue.next_batch(1.0)) == ["192.0.2.3", "192.0.2.4", "192.0.2.5"]


def test_without_keep_nothing_is_reasserted() -> None:
    queue = WriteQueue(batch_size=10, max_pending=100)
    queue.put([grant(1)])
    written_batches(queue, 0.0)
    queue.put([grant(2)])
    queue.next_batch(1.0)
    assert queue.failed(1.0, 1.0).reasserted == 0
    assert queue.reassert_recent(1.0) == (0, None)
