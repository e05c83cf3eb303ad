"""Spec Part 2, section A: normal exchanges (cases 1-16), end to end through tshark and Redis."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from specharness import (
    BCAST,
    DISCOVER,
    INFINITE,
    N1_LEASE,
    R1,
    REQUEST,
    S1,
    S2,
    ZERO,
    A,
    Case,
    X,
    ack,
    assert_absent,
    assert_lease,
    assert_only,
    assert_unchanged,
    case2_record,
    client_msg,
    o,
    o_host,
    o_lease,
    o_mask,
    o_rapid,
    o_req,
    o_server,
    offer,
    payload,
    snapshot,
)

Redis = redis.Redis


@pytest.mark.parametrize("variant", ["main", "unicast_ack", "broadcast_flag", "replay_clock"])
def test_case_1_dora_on_the_server_segment_writes_the_lease(
        redis_url: str, rclient: Redis, tmp_path: Path, variant: str) -> None:
    """Case 1: no record after the OFFER; after the ACK L(.100) = REC(.., 0.3, 3600) +
    hostname=alpha, hostname_src=req12 (replay clock: TTL = lease_time, R-T-3)."""
    replay = variant == "replay_clock"
    c = Case(redis_url, tmp_path, capture_clock=not replay)
    flags = 0x8000 if variant == "broadcast_flag" else 0
    reply_dst = "192.0.2.100" if variant == "unicast_ack" else BCAST
    c.add(0.0, client_msg(DISCOVER, 0x1001, A, o_host("alpha"), o(55, bytes([1, 3, 6, 12, 15])),
                          flags=flags))
    c.add(0.1, offer(0x1001, "192.0.2.100", flags=flags), src=S1, dst=reply_dst)
    c.feed()
    assert_only(rclient)
    c.add(0.2, client_msg(REQUEST, 0x1001, A, o_req("192.0.2.100"), o_server(S1),
                          o_host("alpha"), flags=flags))
    c.add(0.3, ack(0x1001, "192.0.2.100", flags=flags), src=S1, dst=reply_dst)
    c.feed()
    expected = c.rec("192.0.2.100", A, S1, 0x1001, 0.3, 3600, hostname="alpha",
                     hostname_src="req12")
    assert expected["expires"] == str(c.t0 + 3600)
    assert_lease(rclient, expected, capture_clock=not replay)
    assert_only(rclient, "192.0.2.100")


@pytest.mark.parametrize("variant", ["main", "reversed_7_8"])
def test_case_2_relayed_dora_seen_on_both_legs(
        redis_url: str, rclient: Redis, tmp_path: Path, variant: str) -> None:
    """Case 2: relayed DORA seen on both sides; after #7 REC + alpha/req12, giaddr=R1, circuit_id,
    remote_id; #8 is a duplicate (reversed #7/#8: the same record)."""
    c = Case(redis_url, tmp_path)
    exchange = dict(xid=0x1002, yi=N1_LEASE, relay=R1)
    if variant == "main":
        c.relayed_exchange(range(1, 8), **exchange).feed()
        expected = case2_record(c)
        assert_lease(rclient, expected)
        before = snapshot(rclient)
        c.relayed_exchange([8], **exchange).feed()
        assert_unchanged(before, rclient)
    else:
        c.relayed_exchange([1, 2, 3, 4, 5, 6, 8, 7], **exchange).feed()
        expected = case2_record(c, 0.111)
    assert_lease(rclient, expected)
    assert_only(rclient, N1_LEASE)


def test_case_3_relayed_dora_client_leg_only(
        redis_url: str, rclient: Redis, tmp_path: Path) -> None:
    """Case 3: only the client side (#1, #4, #5, #8): REC(.., 0.111) + alpha/req12, giaddr=R1,
    and no circuit_id or remote_id."""
    c = Case(redis_url, tmp_path)
    c.relayed_exchange([1, 4, 5, 8], xid=0x1002, yi=N1_LEASE, relay=R1).feed()
    assert_lease(rclient, case2_record(c, 0.111, circuit_id=None, remote_id=None))
    assert_only(rclient, N1_LEASE)


def test_case_4_relayed_dora_server_leg_only(
        redis_url: str, rclient: Redis, tmp_path: Path) -> None:
    """Case 4: only the server side (#2, #3, #6, #7): the same record as case 2 after #7."""
    c = Case(redis_url, tmp_path)
    c.relayed_exchange([2, 3, 6, 7], xid=0x1002, yi=N1_LEASE, relay=R1).feed()
    assert_lease(rclient, case2_record(c))
    assert_only(rclient, N1_LEASE)


def _case_5(c: Case, *, s1_ack_first: bool = False) -> None:
    """Case 5's packets; with s1_ack_first, case 6b's S1 ACK is captured before S2's ACK."""
    c.add(0.0, client_msg(DISCOVER, 0x1005, A, o_host("alpha")))
    c.add(0.1, offer(0x1005, "192.0.2.100"), src=S1)
    c.add(0.1, offer(0x1005, "192.0.2.150", lease=7200, server=S2), src=S2)
    c.add(1.0, client_msg(REQUEST, 0x1005, A, o_req("192.0.2.150"), o_server(S2),
                          o_host("alpha")))
    if s1_ack_first:
        c.add(1.05, ack(0x1005, "192.0.2.100"), src=S1)
    c.add(1.1, ack(0x1005, "192.0.2.150", lease=7200, server=S2), src=S2)


def test_case_5_client_selects_one_of_two_offers(
        redis_url: str, rclient: Redis, tmp_path: Path) -> None:
    """Case 5: the client selects S2 by option 54: L(.150) = REC(.., S2, 1.1, 7200) + alpha/req12,
    L(.100) absent."""
    c = Case(redis_url, tmp_path)
    _case_5(c)
    c.feed()
    assert_lease(rclient, c.rec("192.0.2.150", A, S2, 0x1005, 1.1, 7200, hostname="alpha",
                                hostname_src="req12"))
    assert_absent(rclient, "192.0.2.100")
    assert_only(rclient, "192.0.2.150")


@pytest.mark.parametrize("variant", ["main", "6b"])
def test_case_6_ack_from_the_server_not_selected(
        redis_url: str, rclient: Redis, tmp_path: Path, variant: str) -> None:
    """Case 6: an ACK from the server not selected, after S2's ACK, is late_other_server;
    6b: captured first it is applied (REC(.., S1, 1.2, 3600)) and S2's ACK is rejected."""
    c = Case(redis_url, tmp_path)
    if variant == "main":
        _case_5(c)
        c.feed()
        before = snapshot(rclient)
        c.add(1.2, ack(0x1005, "192.0.2.100"), src=S1)
        c.feed()
        assert_unchanged(before, rclient)
        assert_lease(rclient, c.rec("192.0.2.150", A, S2, 0x1005, 1.1, 7200, hostname="alpha",
                                    hostname_src="req12"))
        assert_only(rclient, "192.0.2.150")
    else:
        _case_5(c, s1_ack_first=True)
        c.feed()
        assert_lease(rclient, c.rec("192.0.2.100", A, S1, 0x1005, 1.2, 3600, hostname="alpha",
                                    hostname_src="req12"))
        assert_only(rclient, "192.0.2.100")
        assert c.counter("ack_not_selected") == 1
    assert c.counter("late_other_server") == 1


@pytest.mark.parametrize("variant", ["main", "replaces_existing"])
def test_case_7_init_reboot_confirmed(
        redis_url: str, rclient: Redis, tmp_path: Path, variant: str) -> None:
    """Case 7: INIT-REBOOT confirmed: L(.100) = REC(.., 00001007, 0.1, 3600) + alpha/req12,
    replacing any earlier record the same way."""
    c = Case(redis_url, tmp_path)
    if variant == "replaces_existing":
        c.setup_lease("192.0.2.100", server=S2, hostname="old-name", lease=7200)
    c.add(0.0, client_msg(REQUEST, 0x1007, A, o_req("192.0.2.100"), o_host("alpha")))
    c.add(0.1, ack(0x1007, "192.0.2.100"), src=S1)
    c.feed()
    assert_lease(rclient, c.rec("192.0.2.100", A, S1, 0x1007, 0.1, 3600, hostname="alpha",
                                hostname_src="req12"))
    assert_only(rclient, "192.0.2.100")


@pytest.mark.parametrize("variant", ["main", "other_address", "same_server"])
def test_case_8_init_reboot_acked_by_two_servers_first_wins(
        redis_url: str, rclient: Redis, tmp_path: Path, variant: str) -> None:
    """Case 8: INIT-REBOOT ACKed by S1 then S2: S1's REC(.., 0.1, 3600) stays (late_other_server);
    #3 for .101 leaves .101 absent; #3 from S1 with 51=1800 is applied."""
    c = Case(redis_url, tmp_path)
    c.add(0.0, client_msg(REQUEST, 0x1008, A, o_req("192.0.2.100")))
    c.add(0.1, ack(0x1008, "192.0.2.100"), src=S1)
    if variant == "same_server":
        c.add(0.12, ack(0x1008, "192.0.2.100", lease=1800), src=S1)
    else:
        yi = "192.0.2.101" if variant == "other_address" else "192.0.2.100"
        c.add(0.12, ack(0x1008, yi, lease=1800, server=S2), src=S2)
    c.feed()
    if variant == "same_server":
        assert_lease(rclient, c.rec("192.0.2.100", A, S1, 0x1008, 0.12, 1800))
    else:
        assert_lease(rclient, c.rec("192.0.2.100", A, S1, 0x1008, 0.1, 3600))
        assert c.counter("late_other_server") == 1
    assert_only(rclient, "192.0.2.100")


def test_case_9_unanswered_init_reboot_changes_nothing(
        redis_url: str, rclient: Redis, tmp_path: Path) -> None:
    """Case 9: unanswered INIT-REBOOT REQUESTs leave L(.100) unchanged, and no other key."""
    c = Case(redis_url, tmp_path)
    expected = c.setup_lease("192.0.2.100")
    before = snapshot(rclient)
    for delta in (0, 4, 12):
        c.add(delta, client_msg(REQUEST, 0x1009, A, o_req("192.0.2.100")))
    c.feed()
    assert_unchanged(before, rclient)
    assert_lease(rclient, expected)
    assert_only(rclient, "192.0.2.100")


@pytest.mark.parametrize("variant", ["main", "routed_twice"])
def test_case_10_unicast_renewal_carries_fields_over(
        redis_url: str, rclient: Redis, tmp_path: Path, variant: str) -> None:
    """Case 10: unicast renewal: REC(.., 0000100a, 1800, 3600) + alpha/prev and the relay fields
    carried over (expires t0+5400); on a routing relay host the second ACK copy is a duplicate."""
    c = Case(redis_url, tmp_path)
    c.relayed_exchange(range(1, 9), xid=0x1002, yi=N1_LEASE, relay=R1).feed()
    copies = (0.0, 0.001) if variant == "routed_twice" else (0.0,)
    for extra in copies:
        c.add(1800.00 + extra, client_msg(REQUEST, 0x100A, A, ci=N1_LEASE), src=N1_LEASE, dst=S1)
    for extra in copies:
        c.add(1800.01 + extra, ack(0x100A, N1_LEASE, ci=N1_LEASE), src=S1, dst=N1_LEASE)
    c.feed()
    expected = case2_record(c, 1800, xid=0x100A, hostname_src="prev")
    assert expected["expires"] == str(c.t0 + 5400)
    assert_lease(rclient, expected)
    assert_only(rclient, N1_LEASE)


@pytest.mark.parametrize(("lease", "expires"), [(3000, 3600), (100, 700)],
                         ids=["main", "shorter"])
def test_case_11_renewal_with_the_remaining_lifetime(
        redis_url: str, rclient: Redis, tmp_path: Path, lease: int, expires: int) -> None:
    """Case 11: a renewal ACK with the remaining lifetime sets lease_time=51, expires=t0+600+51
    (also when earlier than before), updated=t0+600, xid=0000100b."""
    c = Case(redis_url, tmp_path)
    c.setup_lease("192.0.2.100", xid=0x1001, at=0)
    c.renew(0x100B, "192.0.2.100", at=600, lease=lease).feed()
    expected = c.rec("192.0.2.100", A, S1, 0x100B, 600.1, lease)
    assert expected["expires"] == str(c.t0 + expires)
    assert expected["updated"] == str(c.t0 + 600)
    assert_lease(rclient, expected)
    assert_only(rclient, "192.0.2.100")


def test_case_12_rebinding_answered_by_another_server(
        redis_url: str, rclient: Redis, tmp_path: Path) -> None:
    """Case 12: REBINDING answered by S2: server=S2, expires=t0+3150+3600, xid=0000100c,
    hostname_src=prev, giaddr/circuit_id/remote_id as before."""
    c = Case(redis_url, tmp_path)
    c.relayed_exchange(range(1, 9), xid=0x1002, yi=N1_LEASE, relay=R1).feed()
    c.relayed_rebind(0x100C, N1_LEASE, server=S2).feed()
    expected = case2_record(c, 3150.05, xid=0x100C, server=S2, hostname_src="prev")
    assert expected["expires"] == str(c.t0 + 3150 + 3600)
    assert_lease(rclient, expected)
    assert_only(rclient, N1_LEASE)


def test_case_13_rapid_commit_two_message_exchange(
        redis_url: str, rclient: Redis, tmp_path: Path) -> None:
    """Case 13: rapid commit DISCOVER + ACK: L(.120) = REC(.., 0000100d, 0.1, 600) + cam1/req12."""
    c = Case(redis_url, tmp_path)
    c.add(0.0, client_msg(DISCOVER, 0x100D, A, o_rapid(), o_host("cam1")))
    c.add(0.1, ack(0x100D, "192.0.2.120", A, o_rapid(), lease=600), src=S1)
    c.feed()
    assert_lease(rclient, c.rec("192.0.2.120", A, S1, 0x100D, 0.1, 600, hostname="cam1",
                                hostname_src="req12"))
    assert_only(rclient, "192.0.2.120")


def _case_14(c: Case) -> None:
    c.add(0.0, client_msg(DISCOVER, 0x100E, A, o_rapid()))
    c.add(0.1, offer(0x100E, "192.0.2.150", server=S2), src=S2)
    c.add(0.1, ack(0x100E, "192.0.2.120", A, o_rapid(), lease=600), src=S1)
    c.feed()


def test_case_14_rapid_commit_beside_a_competing_offer(
        redis_url: str, rclient: Redis, tmp_path: Path) -> None:
    """Case 14: rapid commit ACK beside a competing OFFER: L(.120) as in case 13 without a
    hostname; L(.150) absent."""
    c = Case(redis_url, tmp_path)
    _case_14(c)
    assert_lease(rclient, c.rec("192.0.2.120", A, S1, 0x100E, 0.1, 600))
    assert_absent(rclient, "192.0.2.150")
    assert_only(rclient, "192.0.2.120")


def test_case_15_rapid_commit_then_the_other_offer_supersedes(
        redis_url: str, rclient: Redis, tmp_path: Path) -> None:
    """Case 15: after the rapid-commit ACK the client takes S2's OFFER: L(.150) =
    REC(.., S2, 0000100e, 1.1, 3600) and L(.120) is deleted (G14)."""
    c = Case(redis_url, tmp_path)
    _case_14(c)
    assert_only(rclient, "192.0.2.120")
    c.add(1.0, client_msg(REQUEST, 0x100E, A, o_req("192.0.2.150"), o_server(S2)))
    c.add(1.1, ack(0x100E, "192.0.2.150", server=S2), src=S2)
    c.feed()
    assert_lease(rclient, c.rec("192.0.2.150", A, S2, 0x100E, 1.1, 3600))
    assert_only(rclient, "192.0.2.150")


@pytest.mark.parametrize("variant", [
    "main", "track_bootp_off", "source_x", "lease_86400", "yiaddr_zero",
    "relay_copy_not_allowed", "relay_copy_allowed",
])
def test_case_16_bootp_reply_gives_an_infinite_lease(
        redis_url: str, rclient: Redis, tmp_path: Path, variant: str) -> None:
    """Case 16: BOOTREQUEST + BOOTREPLY (no 53): an infinite kind=bootp record with server = IP
    source; absent with track_bootp=false, from X, or with yi=0; finite with 51=86400; a
    relay->client copy only counts when the relay is in allowed_servers."""
    relayed = variant.startswith("relay_copy")
    allowed = (S1, S2, R1) if variant == "relay_copy_allowed" else (S1, S2)
    c = Case(redis_url, tmp_path, allowed=allowed, track_bootp=variant != "track_bootp_off")
    yi = {"yiaddr_zero": "0.0.0.0"}.get(variant, "198.51.100.130" if relayed else "192.0.2.130")
    reply_opts = [o_mask(24)]
    if variant == "lease_86400":
        reply_opts.append(o_lease(86400))
    source = {"source_x": X}.get(variant, R1 if relayed else S1)
    c.add(0.0, payload(1, 0x1010, A, opts=[o_host("lab-pc")]))
    c.add(0.1, payload(2, 0x1010, A, opts=reply_opts, yi=yi, si=S1, gi=R1 if relayed else ZERO),
          src=source)
    c.feed()
    if variant in ("main", "relay_copy_allowed"):
        expected = {
            "ip": yi, "mac": "02:00:00:00:00:0a", "htype": "1", "hostname": "lab-pc",
            "hostname_src": "req12", "expires": "infinite", "lease_time": str(INFINITE),
            "server": source, "giaddr": R1 if relayed else "0.0.0.0", "xid": "00001010",
            "updated": str(c.t0), "kind": "bootp",
        }
        assert_lease(rclient, expected)
        assert rclient.ttl(yi) == -1
        assert_only(rclient, yi)
    elif variant == "lease_86400":
        expected = c.rec(yi, A, S1, 0x1010, 0.1, 86400, hostname="lab-pc",
                         hostname_src="req12", kind="bootp")
        assert expected["expires"] == str(c.t0 + 86400)
        assert_lease(rclient, expected)
        assert_only(rclient, yi)
    else:
        assert_only(rclient)
