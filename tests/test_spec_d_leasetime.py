"""Spec Part 2, section D: lease time (cases 40-45), end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from specharness import (
    ACK,
    INFINITE,
    REQUEST,
    S1,
    A,
    Case,
    ack,
    assert_lease,
    assert_only,
    assert_unchanged,
    client_msg,
    o,
    o_lease,
    o_mask,
    o_req,
    o_server,
    o_type,
    options,
    payload,
    snapshot,
)

Redis = redis.Redis
IP = "192.0.2.100"


@pytest.mark.parametrize(("first", "renewed"), [(INFINITE, 3600), (3600, INFINITE)],
                         ids=["main", "finite_then_infinite"])
def test_case_40_infinite_lease_and_back(
        redis_url: str, rclient: Redis, tmp_path: Path, first: int, renewed: int) -> None:
    """Case 40: 51=0xffffffff gives expires=infinite, lease_time=4294967295, TTL -1; a renewal
    with 51=3600 sets expires=t0+1000+3600 and a TTL (and back: the TTL is removed)."""
    c = Case(redis_url, tmp_path)

    def expected(xid: int, delta: float, lease: int) -> dict[str, str]:
        infinite = {"expires": "infinite"} if lease == INFINITE else {}
        return c.rec(IP, A, S1, xid, delta, lease, **infinite)

    c.dora(0x3001, IP, lease=first).feed()
    assert_lease(rclient, expected(0x3001, 0.3, first))
    c.add(1000, client_msg(REQUEST, 0x3101, A, ci=IP), src=IP, dst=S1)
    c.add(1000, ack(0x3101, IP, lease=renewed), src=S1, dst=IP)
    c.feed()
    assert_lease(rclient, expected(0x3101, 1000, renewed))
    assert_only(rclient, IP)


@pytest.mark.parametrize("with_record", [False, True], ids=["main", "existing_record"])
def test_case_41_ack_without_lease_time_writes_nothing(
        redis_url: str, rclient: Redis, tmp_path: Path, with_record: bool) -> None:
    """Case 41: an ACK to a REQUEST without option 51 writes no key and leaves an existing record
    unchanged (no_lease_time)."""
    c = Case(redis_url, tmp_path)
    if with_record:
        c.setup_lease(IP)
    before = snapshot(rclient)
    c.dora(0x3002, IP, lease=None, offer_lease=3600).feed()
    assert_unchanged(before, rclient)
    assert_only(rclient, *([IP] if with_record else []))
    assert c.counter("no_lease_time") == 1


@pytest.mark.parametrize("with_record", [True, False], ids=["main", "no_record"])
def test_case_42_zero_lease_time_changes_nothing(
        redis_url: str, rclient: Redis, tmp_path: Path, with_record: bool) -> None:
    """Case 42: a renewal ACK with 51=0 leaves L(.100) unchanged, still expiring at t0+1000;
    without the setup the key is absent (zero_lease)."""
    c = Case(redis_url, tmp_path)
    if with_record:
        expected = c.setup_lease(IP, at=-100, lease=1100)
        assert expected["expires"] == str(c.t0 + 1000)
    before = snapshot(rclient)
    c.add(0.0, client_msg(REQUEST, 0x3003, A, ci=IP), src=IP, dst=S1)
    c.add(0.1, ack(0x3003, IP, lease=0), src=S1, dst=IP)
    c.feed()
    assert_unchanged(before, rclient)
    if with_record:
        assert_lease(rclient, expected)
        assert_only(rclient, IP)
    else:
        assert_only(rclient)
    assert c.counter("zero_lease") == 1


def _overloaded_ack(xid: int, yi: str) -> bytes:
    """ACK whose 51=3600 sits in the `file` field, announced by 52=1 in `options`."""
    return payload(
        2, xid, A, yi=yi,
        raw_options=options([o_type(ACK), o_server(S1), o_mask(24), o(52, b"\x01")]),
        file=options([o_lease(3600)]),
    )


@pytest.mark.parametrize("variant", ["43a", "43b", "43c"])
def test_case_43_lease_time_option_with_a_bad_length(
        redis_url: str, rclient: Redis, tmp_path: Path, variant: str) -> None:
    """Case 43: option 51 of length 3, or two 4-octet instances (8 after concatenation), is
    absent so the ACK is not applied; 51 inside the overloaded `file` field is valid."""
    c = Case(redis_url, tmp_path)
    reply = {
        "43a": ack(0x3004, IP, A, o(51, b"\x00\x0e\x10"), lease=None),
        "43b": ack(0x3004, IP, A, o_lease(3600), o_lease(3600), lease=None),
        "43c": _overloaded_ack(0x3004, IP),
    }[variant]
    c.add(0.0, client_msg(REQUEST, 0x3004, A, o_req(IP)))
    c.add(0.1, reply, src=S1)
    c.feed()
    if variant == "43c":
        assert_lease(rclient, c.rec(IP, A, S1, 0x3004, 0.1, 3600))
        assert_only(rclient, IP)
    else:
        assert_only(rclient)


@pytest.mark.parametrize("lease", [4294967294, 2147483648], ids=["max_finite", "2pow31"])
def test_case_44_very_long_finite_leases(
        redis_url: str, rclient: Redis, tmp_path: Path, lease: int) -> None:
    """Case 44: very long finite leases give expires = t0 + 51 (unsigned, 64-bit arithmetic) with
    a matching TTL."""
    c = Case(redis_url, tmp_path)
    c.dora(0x3005, IP, lease=lease).feed()
    expected = c.rec(IP, A, S1, 0x3005, 0.3, lease)
    assert expected["expires"] == str(c.t0 + lease)
    assert_lease(rclient, expected)
    assert_only(rclient, IP)


def test_case_45_ack_lease_time_wins_over_the_offers(
        redis_url: str, rclient: Redis, tmp_path: Path) -> None:
    """Case 45: OFFER 51=7200 and ACK 51=3600 give lease_time=3600."""
    c = Case(redis_url, tmp_path)
    c.dora(0x3006, IP, lease=3600, offer_lease=7200).feed()
    assert_lease(rclient, c.rec(IP, A, S1, 0x3006, 0.3, 3600))
    assert_only(rclient, IP)
