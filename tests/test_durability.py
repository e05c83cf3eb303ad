"""StoreWatch, the durability checks' policy (hive.md R-HV-8), without Redis or clocks: when a
check is due, and what the marker and the masters' run ids found tell; and the tracker's current
leases as the grants that re-assert them."""

from __future__ import annotations

from helpers import build_lease

from sniffer.commands import Grant, GrantEvent
from sniffer.durability import Loss, Probe, StoreWatch
from sniffer.tracker import Tracker

A, B, C = frozenset({"a"}), frozenset({"b"}), frozenset({"a", "c"})


def test_checks_come_every_few_seconds_after_the_last_one() -> None:
    watch = StoreWatch(every=5.0)
    assert watch.due(0.0)  # the first, at start
    assert watch.checked(Probe(A, marked=True), 0.0) is None
    assert not watch.due(4.9)
    assert watch.wake_in(1.0) == 4.0
    assert watch.due(5.0)
    assert watch.failed(5.0)  # the first failure of a series
    assert not watch.failed(10.0)
    assert watch.wake_in(10.0) == 5.0
    assert watch.checked(Probe(A, marked=True), 15.0) is None
    assert watch.failed(20.0)  # a new series


def test_a_master_gone_from_the_run_ids_is_a_restart_or_failover() -> None:
    watch = StoreWatch()
    assert watch.checked(Probe(A, marked=True), 0.0) is None  # the run ids at start
    assert watch.checked(Probe(C, marked=True), 5.0) is None  # a master added: nothing lost
    assert watch.checked(Probe(B, marked=True), 10.0) is Loss.RESTARTED
    assert watch.checked(Probe(B, marked=True), 15.0) is None  # told once
    assert watch.checked(Probe(None, marked=True), 20.0) is None  # INFO refused: unknown
    assert watch.checked(Probe(A, marked=True), 25.0) is Loss.RESTARTED


def test_a_lost_marker_means_the_store_lost_everything() -> None:
    watch = StoreWatch()
    watch.checked(Probe(A, marked=True), 0.0)
    # A Redis restarted empty: a new run id too, but the marker says more.
    assert watch.checked(Probe(B, marked=False), 5.0) is Loss.EMPTIED
    assert watch.checked(Probe(B, marked=True), 10.0) is None  # marked again meanwhile
    assert watch.checked(Probe(None, marked=False), 15.0) is Loss.EMPTIED
    assert Loss.EMPTIED.why == "store emptied" and Loss.RESTARTED.why == "run id changed"


def test_the_tracker_hands_out_its_current_leases_with_their_versions() -> None:
    tracker = Tracker()
    kept = build_lease("192.0.2.1", expires=2000)
    ended = build_lease("192.0.2.2", expires=1000)
    forever = build_lease("192.0.2.3", expires=None)
    tracker.restore([kept, ended, forever])
    grants = tracker.current_grants(1000.0)
    # Restored records have no capture time (0.0: their `updated` second is the version);
    # the one that ended by `now` is not written again.
    assert grants == [Grant(kept, GrantEvent.GRANTED, None, 0.0),
                      Grant(forever, GrantEvent.GRANTED, None, 0.0)]
