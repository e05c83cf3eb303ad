"""Spec Part 2, section K: ordering, restart and time (cases 94-96), end to end."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from specharness import (
    RELEASE,
    S1,
    A,
    Case,
    ack,
    assert_lease,
    assert_only,
    assert_unchanged,
    client_msg,
    o_server,
    snapshot,
)

Redis = redis.Redis
IP = "192.0.2.100"


def test_case_94_older_ack_arriving_late_is_stale(
        redis_url: str, rclient: Redis, tmp_path: Path) -> None:
    """Case 94: an older ACK copy (ts t0+50, xid 00007000) arriving after the ACK applied at
    t0+100 leaves L(.100) unchanged (stale, G8)."""
    c = Case(redis_url, tmp_path)
    c.add(100, ack(0x7001, IP), src=S1)
    c.feed()
    expected = c.rec(IP, A, S1, 0x7001, 100, 3600)
    assert_lease(rclient, expected)
    before = snapshot(rclient)
    c.add(50, ack(0x7000, IP), src=S1)
    c.feed()
    assert_unchanged(before, rclient)
    assert_lease(rclient, expected)
    assert_only(rclient, IP)
    assert c.counter("stale") == 1


@pytest.mark.parametrize("run2", ["release", "supersede"])
def test_case_95_state_after_a_restart_comes_from_redis(
        redis_url: str, rclient: Redis, tmp_path: Path, run2: str) -> None:
    """Case 95: after a restart, A's RELEASE deletes L(.100), or A's DORA for .101 on the same /24
    supersedes it, through state kept in Redis (R-RD-6)."""
    c = Case(redis_url, tmp_path)
    c.dora(0x9501, IP).feed()
    assert_lease(rclient, c.rec(IP, A, S1, 0x9501, 0.3, 3600))
    c.restart()
    if run2 == "release":
        c.add(10, client_msg(RELEASE, 0x9502, A, o_server(S1), ci=IP), src=IP, dst=S1)
        c.feed()
        assert_only(rclient)
    else:
        c.dora(0x9502, "192.0.2.101", ack_at=10.3).feed()
        assert_lease(rclient, c.rec("192.0.2.101", A, S1, 0x9502, 10.3, 3600))
        assert_only(rclient, "192.0.2.101")


@pytest.mark.parametrize("variant", ["recent", "old", "replay_clock_old"])
def test_case_96_capture_timestamps_decide_expiry(
        redis_url: str, rclient: Redis, tmp_path: Path, variant: str) -> None:
    """Case 96: capture timestamps decide: t0=now-10 gives expires=t0+3600, TTL ~3590; t0=now-7200
    is already_expired (absent) under the capture clock, but kept with TTL = 3600 under the
    replay clock (R-T-3)."""
    age = 10 if variant == "recent" else 7200
    replay = variant == "replay_clock_old"
    c = Case(redis_url, tmp_path, t0=int(time.time()) - age, capture_clock=not replay)
    c.dora(0x9601, IP, ack_at=0.0).feed()
    expected = c.rec(IP, A, S1, 0x9601, 0.0, 3600)
    assert expected["expires"] == str(c.t0 + 3600)
    if variant == "old":
        assert_only(rclient)
        assert c.counter("already_expired") == 1
        return
    assert_lease(rclient, expected, capture_clock=not replay)
    if variant == "recent":
        assert 3585 <= rclient.ttl(IP) <= 3591
    assert_only(rclient, IP)
