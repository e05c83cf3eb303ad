"""Spec Part 2, section C: artefacts of passive capture (cases 31-39), end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from specharness import (
    CIRCUIT_ID,
    DISCOVER,
    ID_A,
    N1_LEASE,
    OPT82,
    R1,
    R1B,
    R2,
    REMOTE_ID,
    REQUEST,
    S1,
    S2,
    A,
    B,
    Case,
    ack,
    assert_lease,
    assert_only,
    assert_unchanged,
    case2_record,
    client_msg,
    o_cid,
    o_host,
    o_req,
    o_server,
    offer,
    snapshot,
)

Redis = redis.Redis


@pytest.mark.parametrize("variant", ["main", "31b", "31c", "31d"])
def test_case_31_lone_ack_mid_exchange_is_applied(
        redis_url: str, rclient: Redis, tmp_path: Path, variant: str) -> None:
    """Case 31: a lone ACK is applied: REC(.., 00002001, 0, 3600) + hostname=alpha-srv (ack12);
    31b no hostname/client_id; 31c client_id=0102000000000a; 31d ci=.100 the same as #1."""
    c = Case(redis_url, tmp_path)
    opts = [] if variant == "31b" else [o_host("alpha-srv")]
    extra = {} if variant == "31b" else {"hostname": "alpha-srv", "hostname_src": "ack12"}
    if variant == "31c":
        opts.append(o_cid(ID_A))
        extra["client_id"] = ID_A.hex()
    ci = "192.0.2.100" if variant == "31d" else "0.0.0.0"
    c.add(0.0, ack(0x2001, "192.0.2.100", A, *opts, ci=ci), src=S1)
    c.feed()
    assert_lease(rclient, c.rec("192.0.2.100", A, S1, 0x2001, 0, 3600, **extra))
    assert_only(rclient, "192.0.2.100")


def test_case_32_lone_renewal_ack_after_restart_keeps_identity(
        redis_url: str, rclient: Redis, tmp_path: Path) -> None:
    """Case 32: after a restart, a lone renewal ACK without 61 keeps client_id (R-ID-4 item 3) and
    hostname=alpha with hostname_src=prev: REC(.., 00002002, 0, 3600)."""
    c = Case(redis_url, tmp_path)
    c.setup_lease("192.0.2.100", xid=0xAAAA, at=-1000, hostname="alpha", client_id=ID_A)
    c.restart()
    c.add(0.0, ack(0x2002, "192.0.2.100", ci="192.0.2.100"), src=S1, dst="192.0.2.100")
    c.feed()
    assert_lease(rclient, c.rec("192.0.2.100", A, S1, 0x2002, 0, 3600, client_id=ID_A.hex(),
                                hostname="alpha", hostname_src="prev"))
    assert_only(rclient, "192.0.2.100")


def test_case_33_request_without_ack_writes_nothing(
        redis_url: str, rclient: Redis, tmp_path: Path) -> None:
    """Case 33: DISCOVER, OFFER and REQUEST without an ACK leave no key, now or after txn_ttl."""
    c = Case(redis_url, tmp_path)
    c.add(0.0, client_msg(DISCOVER, 0x2003, A))
    c.add(0.1, offer(0x2003, "192.0.2.100"), src=S1)
    c.add(0.2, client_msg(REQUEST, 0x2003, A, o_req("192.0.2.100"), o_server(S1)))
    c.feed()
    assert_only(rclient)
    # Other traffic moves the capture clock past txn_ttl (120 s).
    c.add(130.0, client_msg(DISCOVER, 0x2033, B))
    c.feed()
    assert_only(rclient)


@pytest.mark.parametrize("second_lease", [3600, 3599], ids=["main", "lease_3599"])
def test_case_34_duplicate_acks_through_two_relays(
        redis_url: str, rclient: Redis, tmp_path: Path, second_lease: int) -> None:
    """Case 34: ACK copies through R1 and R1b: #9 writes REC(.., 00002004, 0.3, 3600) +
    giaddr=R1 and #10-#12 are duplicates; with 51=3599, #10 applies (giaddr=R1b, 3599)."""
    c = Case(redis_url, tmp_path)
    yi = N1_LEASE
    up = {"dst": S1, "sport": 67, "dport": 67}
    req = (o_req(yi), o_server(S1))
    c.add(0.000, client_msg(DISCOVER, 0x2004, A))
    c.add(0.001, client_msg(DISCOVER, 0x2004, A, gi=R1, hops=1), src=R1, **up)
    c.add(0.001, client_msg(DISCOVER, 0x2004, A, gi=R1B, hops=1), src=R1B, **up)
    c.add(0.010, offer(0x2004, yi, lease=None, gi=R1), src=S1, dst=R1, sport=67, dport=67)
    c.add(0.011, offer(0x2004, yi, lease=None, gi=R1B), src=S1, dst=R1B, sport=67, dport=67)
    c.add(0.100, client_msg(REQUEST, 0x2004, A, *req))
    c.add(0.101, client_msg(REQUEST, 0x2004, A, *req, gi=R1, hops=1), src=R1, **up)
    c.add(0.101, client_msg(REQUEST, 0x2004, A, *req, gi=R1B, hops=1), src=R1B, **up)
    c.add(0.300, ack(0x2004, yi, gi=R1), src=S1, dst=R1, sport=67, dport=67)
    c.feed()
    first = c.rec(yi, A, S1, 0x2004, 0.3, 3600, giaddr=R1)
    assert_lease(rclient, first)
    before = snapshot(rclient)
    c.add(0.302, ack(0x2004, yi, lease=second_lease, gi=R1B), src=S1, dst=R1B, sport=67,
          dport=67)
    c.add(0.303, ack(0x2004, yi, gi=R1), src=R1, dst=yi)
    c.add(0.304, ack(0x2004, yi, lease=second_lease, gi=R1B), src=R1B, dst=yi)
    c.feed()
    if second_lease == 3600:
        assert_unchanged(before, rclient)
        assert first["expires"] == str(c.t0 + 3600)
        assert_lease(rclient, first)
    else:
        second = c.rec(yi, A, S1, 0x2004, 0.302, 3599, giaddr=R1B)
        assert second["expires"] == str(c.t0 + 3599)
        assert_lease(rclient, second)
    assert_only(rclient, yi)


def test_case_35_retransmitted_request_answered_again(
        redis_url: str, rclient: Redis, tmp_path: Path) -> None:
    """Case 35: a retransmitted REQUEST answered again 4 s later: expires=t0+3600 after #2, then
    expires=t0+4+3600 and updated=t0+4 after #4."""
    c = Case(redis_url, tmp_path)
    c.request_ack(0x2005, "192.0.2.100").feed()
    assert_lease(rclient, c.rec("192.0.2.100", A, S1, 0x2005, 0.1, 3600))
    c.request_ack(0x2005, "192.0.2.100", at=4.0).feed()
    expected = c.rec("192.0.2.100", A, S1, 0x2005, 4.1, 3600)
    assert (expected["expires"], expected["updated"]) == (str(c.t0 + 3604), str(c.t0 + 4))
    assert_lease(rclient, expected)
    assert_only(rclient, "192.0.2.100")


def test_case_36_ack_for_another_clients_address_reassigns(
        redis_url: str, rclient: Redis, tmp_path: Path) -> None:
    """Case 36: B's ACK for A's address: L(.100) = REC(.100, B, S1, 00002006, 0.3, 3600) with no
    client_id, hostname or circuit_id of A's; `reassigned` is incremented."""
    c = Case(redis_url, tmp_path)
    c.add(-100, ack(0xABCD, "192.0.2.100", A, o_cid(ID_A), o_host("alpha"), OPT82, gi=R1), src=S1,
          dst=R1, sport=67, dport=67)
    c.feed()
    assert_lease(rclient, c.rec("192.0.2.100", A, S1, 0xABCD, -100, 3600, client_id=ID_A.hex(),
                                hostname="alpha", hostname_src="ack12", giaddr=R1,
                                circuit_id=CIRCUIT_ID, remote_id=REMOTE_ID))
    c.dora(0x2006, "192.0.2.100", chaddr=B).feed()
    assert_lease(rclient, c.rec("192.0.2.100", B, S1, 0x2006, 0.3, 3600))
    assert_only(rclient, "192.0.2.100")
    assert c.counter("reassigned") == 1


@pytest.mark.parametrize("variant", ["main", "37b", "37c", "37d"])
def test_case_37_new_address_on_the_same_subnet_supersedes(
        redis_url: str, rclient: Redis, tmp_path: Path, variant: str) -> None:
    """Case 37: A's new address on the same subnet deletes L(.100) (G14, also with no option 1);
    37c /25 with .200 and 37d supersede_same_subnet=false keep both records."""
    c = Case(redis_url, tmp_path, supersede_same_subnet=variant != "37d")
    old = c.setup_lease("192.0.2.100")
    new_ip = "192.0.2.200" if variant == "37c" else "192.0.2.101"
    mask = {"37b": None, "37c": 25}.get(variant, 24)
    c.dora(0x2007, new_ip, mask=mask).feed()
    assert_lease(rclient, c.rec(new_ip, A, S1, 0x2007, 0.3, 3600))
    if variant in ("37c", "37d"):
        assert_lease(rclient, old)
        assert_only(rclient, "192.0.2.100", new_ip)
    else:
        assert_only(rclient, new_ip)


def test_case_38_address_on_another_subnet_keeps_both(
        redis_url: str, rclient: Redis, tmp_path: Path) -> None:
    """Case 38: A's DORA through R2 on another subnet keeps L(198.51.100.50) and adds
    L(203.0.113.50)."""
    c = Case(redis_url, tmp_path)
    c.relayed_exchange(range(1, 9), xid=0x1002, yi=N1_LEASE, relay=R1, base=-100).feed()
    old = case2_record(c, -100 + 0.11)
    assert_lease(rclient, old)
    c.relayed_exchange(range(1, 9), xid=0x2038, yi="203.0.113.50", relay=R2, hostname=None,
                       agent=None).feed()
    assert_lease(rclient, c.rec("203.0.113.50", A, S1, 0x2038, 0.11, 3600, giaddr=R2))
    assert_lease(rclient, old)
    assert_only(rclient, N1_LEASE, "203.0.113.50")


def test_case_39_overlapping_pools_last_writer_wins(
        redis_url: str, rclient: Redis, tmp_path: Path) -> None:
    """Case 39: S1 grants .100 to A, then S2 grants it to B: L(.100) holds B's record from S2
    (last writer wins, `reassigned`), nothing of A's kept."""
    c = Case(redis_url, tmp_path)
    c.dora(0x2008, "192.0.2.100", ack_at=0.0)
    c.dora(0x2009, "192.0.2.100", chaddr=B, server=S2, ack_at=30.0)
    c.feed()
    assert_lease(rclient, c.rec("192.0.2.100", B, S2, 0x2009, 30, 3600))
    assert_only(rclient, "192.0.2.100")
    assert c.counter("reassigned") == 1
