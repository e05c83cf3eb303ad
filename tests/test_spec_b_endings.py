"""Spec Part 2, section B: bindings that end, or never existed (cases 17-30), end to end."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from specharness import (
    BCAST,
    DECLINE,
    DISCOVER,
    ID_A,
    INFORM,
    N1_LEASE,
    R1,
    R2,
    RELEASE,
    REQUEST,
    S1,
    S2,
    ZERO,
    A,
    B,
    Case,
    X,
    ack,
    assert_absent,
    assert_lease,
    assert_only,
    assert_unchanged,
    client_msg,
    nak,
    o,
    o_cid,
    o_host,
    o_req,
    o_server,
    offer,
    snapshot,
)

Redis = redis.Redis
N2_LEASE = "203.0.113.50"


def test_case_17_nak_to_init_reboot_deletes_the_clients_lease(
        redis_url: str, rclient: Redis, tmp_path: Path) -> None:
    """Case 17: a NAK to A's INIT-REBOOT on N2 deletes L(198.51.100.50) (#4 a duplicate); the
    DORA via R2 then creates L(203.0.113.50) and supersedes nothing."""
    c = Case(redis_url, tmp_path)
    c.relayed_exchange(range(1, 9), xid=0x1002, yi=N1_LEASE, relay=R1, base=-100).feed()
    assert_only(rclient, N1_LEASE)
    c.add(0.00, client_msg(REQUEST, 0x1011, A, o_req(N1_LEASE)))
    c.add(0.00, client_msg(REQUEST, 0x1011, A, o_req(N1_LEASE), gi=R2), src=R2, dst=S1,
          sport=67, dport=67)
    wrong_network = nak(0x1011, A, o(56, b"wrong network"), gi=R2, flags=0x8000)
    c.add(0.01, wrong_network, src=S1, dst=R2, sport=67, dport=67)
    c.feed()
    assert_only(rclient)
    c.add(0.01, wrong_network, src=R2, dst=BCAST)
    c.relayed_exchange([2, 3, 6, 7], xid=0x1811, yi=N2_LEASE, relay=R2, base=2.0, hostname=None,
                       agent=None)
    c.feed()
    assert_lease(rclient, c.rec(N2_LEASE, A, S1, 0x1811, 2.11, 3600, giaddr=R2))
    assert_only(rclient, N2_LEASE)


def test_case_18_nak_leaves_another_clients_record(
        redis_url: str, rclient: Redis, tmp_path: Path) -> None:
    """Case 18: a NAK to A for an address whose record belongs to B leaves L(.100) unchanged."""
    c = Case(redis_url, tmp_path)
    expected = c.setup_lease("192.0.2.100", chaddr=B)
    before = snapshot(rclient)
    c.add(0.0, client_msg(REQUEST, 0x1012, A, o_req("192.0.2.100")))
    c.add(0.1, nak(0x1012), src=S1)
    c.feed()
    assert_unchanged(before, rclient)
    assert_lease(rclient, expected)
    assert_only(rclient, "192.0.2.100")


def test_case_19_nak_to_renewing_deletes_the_lease(
        redis_url: str, rclient: Redis, tmp_path: Path) -> None:
    """Case 19: a NAK to a RENEWING REQUEST deletes L(.100) (requested_ip = ciaddr)."""
    c = Case(redis_url, tmp_path)
    c.setup_lease("192.0.2.100")
    c.add(0.0, client_msg(REQUEST, 0x1013, A, ci="192.0.2.100"), src="192.0.2.100", dst=S1)
    c.add(0.1, nak(0x1013), src=S1)
    c.feed()
    assert_only(rclient)


@pytest.mark.parametrize("variant", ["main", "existing_record"])
def test_case_20_nak_to_selecting_request(
        redis_url: str, rclient: Redis, tmp_path: Path, variant: str) -> None:
    """Case 20: a NAK to a SELECTING REQUEST leaves no key; an earlier L(.101) for A is deleted."""
    c = Case(redis_url, tmp_path)
    if variant == "existing_record":
        c.setup_lease("192.0.2.101")
    c.add(0.0, client_msg(DISCOVER, 0x1014, A))
    c.add(0.1, offer(0x1014, "192.0.2.101", lease=None), src=S1)
    c.add(0.2, client_msg(REQUEST, 0x1014, A, o_req("192.0.2.101"), o_server(S1)))
    c.add(0.3, nak(0x1014), src=S1)
    c.feed()
    assert_only(rclient)


def test_case_21_nak_without_its_request_changes_nothing(
        redis_url: str, rclient: Redis, tmp_path: Path) -> None:
    """Case 21: a NAK whose REQUEST was not captured leaves L(.100) unchanged (nak_uncorrelated)."""
    c = Case(redis_url, tmp_path)
    expected = c.setup_lease("192.0.2.100")
    before = snapshot(rclient)
    c.add(0.0, nak(0x1015), src=S1)
    c.feed()
    assert_unchanged(before, rclient)
    assert_lease(rclient, expected)
    assert_only(rclient, "192.0.2.100")
    assert c.counter("nak_uncorrelated") == 1


@pytest.mark.parametrize("variant", ["22a", "22b"])
def test_case_22_ack_and_nak_from_two_servers_first_decides(
        redis_url: str, rclient: Redis, tmp_path: Path, variant: str) -> None:
    """Case 22: 22a S1's ACK decides, S2's later NAK is ignored: REC(.., S1, 00001016, 0.1, 3600);
    22b S2's NAK deletes L(.100), S1's later ACK is late_other_server and the key stays absent."""
    c = Case(redis_url, tmp_path)
    if variant == "22a":
        c.add(0.0, client_msg(REQUEST, 0x1016, A, o_req("192.0.2.100")))
        c.add(0.1, ack(0x1016, "192.0.2.100"), src=S1)
        c.add(0.2, nak(0x1016, server=S2), src=S2)
        c.feed()
        assert_lease(rclient, c.rec("192.0.2.100", A, S1, 0x1016, 0.1, 3600))
        assert_only(rclient, "192.0.2.100")
        return
    c.setup_lease("192.0.2.100")
    c.add(0.0, client_msg(REQUEST, 0x1017, A, o_req("192.0.2.100")))
    c.add(0.1, nak(0x1017, server=S2), src=S2)
    c.feed()
    assert_only(rclient)
    c.add(0.2, ack(0x1017, "192.0.2.100"), src=S1)
    c.feed()
    assert_only(rclient)
    assert c.counter("late_other_server") == 1


@pytest.mark.parametrize("variant", ["main", "ciaddr_fallback"])
def test_case_23_decline_deletes_the_lease(
        redis_url: str, rclient: Redis, tmp_path: Path, variant: str) -> None:
    """Case 23: after the DORA L(.100) exists; A's DECLINE {50=.100, 54=S1} deletes it (also with
    ciaddr=.100 and no 50, R-DC step 2)."""
    c = Case(redis_url, tmp_path)
    c.dora(0x1018, "192.0.2.100").feed()
    assert_lease(rclient, c.rec("192.0.2.100", A, S1, 0x1018, 0.3, 3600))
    in_use = o(56, b"address in use")
    if variant == "main":
        decline = client_msg(DECLINE, 0x1019, A, o_req("192.0.2.100"), o_server(S1), in_use)
    else:
        decline = client_msg(DECLINE, 0x1019, A, o_server(S1), in_use, ci="192.0.2.100")
    c.add(1.5, decline)
    c.feed()
    assert_only(rclient)


def test_case_24_decline_leaves_another_clients_record(
        redis_url: str, rclient: Redis, tmp_path: Path) -> None:
    """Case 24: A's DECLINE of an address whose record is B's leaves L(.100) unchanged."""
    c = Case(redis_url, tmp_path)
    expected = c.setup_lease("192.0.2.100", chaddr=B)
    before = snapshot(rclient)
    c.add(0.0, client_msg(DECLINE, 0x1024, A, o_req("192.0.2.100"), o_server(S1)))
    c.feed()
    assert_unchanged(before, rclient)
    assert_lease(rclient, expected)
    assert_only(rclient, "192.0.2.100")


@pytest.mark.parametrize("variant", ["main", "client_id", "no_54", "ciaddr0_opt50", "twice"])
def test_case_25_release_deletes_the_lease(
        redis_url: str, rclient: Redis, tmp_path: Path, variant: str) -> None:
    """Case 25: A's RELEASE ci=.100 deletes L(.100); also with 61=idA on both, without 54, with
    ci=0 and 50=.100, and when captured twice."""
    c = Case(redis_url, tmp_path)
    c.setup_lease("192.0.2.100", client_id=ID_A if variant == "client_id" else None)
    opts = [] if variant == "no_54" else [o_server(S1)]
    ci = "192.0.2.100"
    if variant == "client_id":
        opts.append(o_cid(ID_A))
    elif variant == "ciaddr0_opt50":
        opts.append(o_req("192.0.2.100"))
        ci = ZERO
    release = client_msg(RELEASE, 0x101A, A, *opts, ci=ci)
    for delta in (0.0, 0.001) if variant == "twice" else (0.0,):
        c.add(delta, release, src="192.0.2.100", dst=S1)
    c.feed()
    assert_only(rclient)


@pytest.mark.parametrize("variant", ["26a", "26b", "26c"])
def test_case_26_release_that_does_not_match_changes_nothing(
        redis_url: str, rclient: Redis, tmp_path: Path, variant: str) -> None:
    """Case 26: a RELEASE that does not match (chaddr B; another client id; another ciaddr) leaves
    L(.100) for A with client_id=0102000000000a unchanged."""
    c = Case(redis_url, tmp_path)
    expected = c.setup_lease("192.0.2.100", client_id=ID_A)
    before = snapshot(rclient)
    release = {
        "26a": client_msg(RELEASE, 0x1026, B, o_server(S1), ci="192.0.2.100"),
        "26b": client_msg(RELEASE, 0x1026, A, o_server(S1),
                          o_cid(bytes.fromhex("01020000000099")), ci="192.0.2.100"),
        "26c": client_msg(RELEASE, 0x1026, A, ci="192.0.2.101"),
    }[variant]
    c.add(0.0, release, src="192.0.2.101" if variant == "26c" else "192.0.2.100", dst=S1)
    c.feed()
    assert_unchanged(before, rclient)
    assert_lease(rclient, expected)
    assert_only(rclient, "192.0.2.100")


@pytest.mark.parametrize("variant", ["release", "decline"])
def test_case_27_release_naming_a_rogue_server_is_ignored(
        redis_url: str, rclient: Redis, tmp_path: Path, variant: str) -> None:
    """Case 27: a RELEASE (or DECLINE) naming the rogue X in option 54 leaves L(.100) unchanged."""
    c = Case(redis_url, tmp_path)
    expected = c.setup_lease("192.0.2.100")
    before = snapshot(rclient)
    if variant == "release":
        c.add(0.0, client_msg(RELEASE, 0x1027, A, o_server(X), ci="192.0.2.100"),
              src="192.0.2.100", dst=X)
    else:
        c.add(0.0, client_msg(DECLINE, 0x1027, A, o_req("192.0.2.100"), o_server(X)))
    c.feed()
    assert_unchanged(before, rclient)
    assert_lease(rclient, expected)
    assert_only(rclient, "192.0.2.100")


@pytest.mark.parametrize("relayed", [False, True], ids=["main", "relayed"])
def test_case_28_inform_and_its_ack_never_touch_a_lease(
        redis_url: str, rclient: Redis, tmp_path: Path, relayed: bool) -> None:
    """Case 28: INFORMs and their ACKs (yi=0, no 51) create nothing for B and leave A's record
    unchanged: not refreshed, hostname not changed (also relayed)."""
    c = Case(redis_url, tmp_path)
    net = "198.51.100." if relayed else "192.0.2."
    b_ip, a_ip = net + "10", net + "100"
    expected = c.setup_lease(a_ip, hostname="alpha")
    before = snapshot(rclient)
    exchanges = [(0.0, B, b_ip, 0x101C, "bravo"), (1.0, A, a_ip, 0x101D, "renamed")]
    for delta, ch, ip, xid, name in exchanges:
        inform = client_msg(INFORM, xid, ch, o_host(name), ci=ip)
        if relayed:
            c.add(delta, inform, src=ip, dst=BCAST)
            c.add(delta + 0.001, client_msg(INFORM, xid, ch, o_host(name), ci=ip, gi=R1),
                  src=R1, dst=S1, sport=67, dport=67)
            c.add(delta + 0.1, ack(xid, ZERO, ch, lease=None, ci=ip, gi=R1), src=S1, dst=R1,
                  sport=67, dport=67)
        else:
            c.add(delta, inform, src=ip, dst=BCAST if ch == B else S1)
            c.add(delta + 0.1, ack(xid, ZERO, ch, lease=None, ci=ip), src=S1, dst=ip)
    c.feed()
    assert_absent(rclient, b_ip)
    assert_unchanged(before, rclient)
    assert_lease(rclient, expected)
    assert_only(rclient, a_ip)


@pytest.mark.parametrize("with_record", [False, True], ids=["main", "existing_record"])
def test_case_29_inform_reply_with_a_lease_time_grants_nothing(
        redis_url: str, rclient: Redis, tmp_path: Path, with_record: bool) -> None:
    """Case 29: an INFORM reply carrying 51=1234 (dnsmasq) changes neither L(.100) nor any other
    key (G4, G5)."""
    c = Case(redis_url, tmp_path)
    if with_record:
        c.setup_lease("192.0.2.100")
    before = snapshot(rclient)
    c.add(0.0, client_msg(INFORM, 0x101E, A, o(55, bytes([1, 3, 51])), ci="192.0.2.100"),
          src="192.0.2.100", dst=S1)
    c.add(0.1, ack(0x101E, ZERO, lease=1234, ci="192.0.2.100"), src=S1, dst="192.0.2.100")
    c.feed()
    assert_unchanged(before, rclient)
    assert_only(rclient, *(["192.0.2.100"] if with_record else []))


def test_case_30_lease_expires_by_redis_ttl(redis_url: str, rclient: Redis, tmp_path: Path) -> None:
    """Case 30: a 5 s lease exists right after its ACK (expires=t0+5, TTL <= 5) and is gone by
    wall-clock t0+7 with no further traffic (R-EX)."""
    c = Case(redis_url, tmp_path)
    c.dora(0x101F, "192.0.2.100", ack_at=0.0, lease=5).feed()
    expected = c.rec("192.0.2.100", A, S1, 0x101F, 0.0, 5)
    assert expected["expires"] == str(c.t0 + 5)
    assert_lease(rclient, expected)
    assert 0 < rclient.ttl("192.0.2.100") <= 5
    assert 0 < rclient.ttl("dhcp-hive-mind:lease:{192.0.2.100}") <= 5
    time.sleep(max(0.0, c.t0 + 7.2 - time.time()))
    assert_only(rclient)
