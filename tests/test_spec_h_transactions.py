"""Spec Part 2, group H: transactions, collisions and floods (cases 67-72; R-TX-1 to R-TX-7)."""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path

import pytest
import redis
from spec_helpers_b import ack, dora, feed_all, feed_watching, write_fast
from specharness import (
    A_MAC,
    B_MAC,
    DISCOVER,
    OFFER,
    REQUEST,
    S1,
    A,
    B,
    Capture,
    Session,
    assert_lease,
    assert_only,
    client_msg,
    lease_ips,
    o_cid,
    o_host,
    o_lease,
    o_req,
    o_server,
    rec,
    record,
    server_msg,
)

IP, IP2 = "192.0.2.100", "192.0.2.101"


def test_case_67(redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """Another client reusing an xid a minute later is another transaction (key includes hw)."""
    s = Session(redis_url, tmp_path)
    cap = dora(Capture(), 0x3001, IP, disc=[o_host("alpha")], req=[o_host("alpha")])
    dora(cap, 0x3001, IP2, chaddr=B, start=60, disc=[o_host("bravo")], req=[o_host("bravo")])
    feed_all(s, cap)
    assert_lease(rclient, rec(IP, A_MAC, S1, 0x3001, cap.t0, 0.3, 3600, hostname="alpha",
                              hostname_src="req12"))
    assert_lease(rclient, rec(IP2, B_MAC, S1, 0x3001, cap.t0, 60.3, 3600, hostname="bravo",
                              hostname_src="req12"))
    assert_only(rclient, IP, IP2)


def test_case_68(redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """Two clients using one xid at the same time keep separate transactions."""
    s = Session(redis_url, tmp_path)
    xid = 0x3002
    cap = Capture()
    cap.add(0.00, client_msg(DISCOVER, xid, A, o_host("alpha")))
    cap.add(0.01, client_msg(DISCOVER, xid, B, o_host("bravo")))
    cap.add(0.10, server_msg(OFFER, xid, A, o_lease(3600), yi=IP), src=S1)
    cap.add(0.11, server_msg(OFFER, xid, B, o_lease(3600), yi=IP2), src=S1)
    cap.add(0.20, client_msg(REQUEST, xid, A, o_req(IP), o_server(S1)))
    cap.add(0.21, client_msg(REQUEST, xid, B, o_req(IP2), o_server(S1)))
    cap.add(0.30, ack(xid, IP2, B), src=S1)
    cap.add(0.31, ack(xid, IP, A), src=S1)
    feed_all(s, cap)
    assert_lease(rclient, rec(IP, A_MAC, S1, xid, cap.t0, 0.31, 3600, hostname="alpha",
                              hostname_src="req12"))
    assert_lease(rclient, rec(IP2, B_MAC, S1, xid, cap.t0, 0.30, 3600, hostname="bravo",
                              hostname_src="req12"))
    assert_only(rclient, IP, IP2)


def test_case_69(redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """An ACK without 61 matching two transactions (two client-ids) is uncorrelated."""
    s = Session(redis_url, tmp_path)
    cap = Capture()
    for delta, cid, name in ((0.0, b"\x01\xaa", "one"), (0.05, b"\x01\xbb", "two")):
        cap.add(delta, client_msg(REQUEST, 0x3003, A, o_req(IP), o_server(S1), o_cid(cid),
                                  o_host(name)))
    cap.add(0.1, ack(0x3003, IP, A), src=S1)
    feed_all(s, cap)
    assert_lease(rclient, rec(IP, A_MAC, S1, 0x3003, cap.t0, 0.1, 3600))
    assert_only(rclient, IP)


@pytest.mark.parametrize(
    ("retransmit", "ack_at", "hostname"),
    [(None, 130, None), (None, 100, "alpha"), (64, 130, "alpha")],
    ids=["ack-at-130", "ack-at-100", "retransmission-at-64"],
)
def test_case_70(redis_url: str, rclient: redis.Redis, tmp_path: Path, retransmit: int | None,
                 ack_at: int, hostname: str | None) -> None:
    """A transaction is forgotten txn_ttl (120 s) after its last packet."""
    s = Session(redis_url, tmp_path)
    cap = Capture()
    request = client_msg(REQUEST, 0x3004, A, o_req(IP), o_server(S1), o_host("alpha"))
    cap.add(0, request)
    if retransmit is not None:
        cap.add(retransmit, request)
    cap.add(ack_at, ack(0x3004, IP, A), src=S1)
    feed_all(s, cap)
    assert_lease(rclient, rec(IP, A_MAC, S1, 0x3004, cap.t0, ack_at, 3600, hostname=hostname,
                              hostname_src=hostname and "req12"))
    assert_only(rclient, IP)


def random_discovers(cap: Capture, rng: random.Random, count: int, start: float,
                     span: float) -> None:
    """`count` DISCOVERs with random chaddr and xid, spread over `span` seconds (Yersinia);
    S1 answers every tenth with an OFFER while its pool lasts."""
    for i in range(count):
        chaddr = bytes([0x06]) + rng.randbytes(5)  # locally administered, never A
        xid = rng.getrandbits(32)
        delta = start + span * i / count
        cap.add(delta, client_msg(DISCOVER, xid, chaddr))
        if i % 10 == 0:
            offered = f"10.71.{i // 2500}.{i // 10 % 250 + 1}"
            cap.add(delta, server_msg(OFFER, xid, chaddr, o_lease(3600), yi=offered), src=S1)


TXN_MAX = 4096


def case_71_flood(redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """A DISCOVER flood (scaled: 20 000 + 5 000, txn_max 4096) cannot evict A's REQUEST;
    neither DISCOVERs nor OFFERs write anything."""
    s = Session(redis_url, tmp_path, txn_max=TXN_MAX)
    rng = random.Random(71)
    cap = Capture()
    random_discovers(cap, rng, 20_000, 0, 10)
    cap.add(10.000, client_msg(REQUEST, 0x3005, A, o_req(IP), o_server(S1), o_host("alpha")))
    random_discovers(cap, rng, 5_000, 10.0001, 0.49)
    cap.add(10.500, ack(0x3005, IP, A), src=S1)
    most = feed_watching(s, write_fast(cap, tmp_path / "flood.pcap"))
    assert most <= TXN_MAX
    assert s.tracker.pending_transactions <= TXN_MAX
    assert_lease(rclient, rec(IP, A_MAC, S1, 0x3005, cap.t0, 10.5, 3600, hostname="alpha",
                              hostname_src="req12"))
    assert_only(rclient, IP)


def case_71_completed(redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """Variant: a completed starvation attack of 250 granted MACs yields 250 records."""
    s = Session(redis_url, tmp_path)
    cap = Capture()
    hosts = list(ipaddress.ip_network("10.71.0.0/16").hosts())[:250]
    for i, ip in enumerate(hosts):
        dora(cap, 0x71000 + i, str(ip), chaddr=bytes([6, 0, 0, 0, i // 256, i % 256]),
             start=i * 0.01)
    feed_watching(s, write_fast(cap, tmp_path / "starved.pcap"))
    assert lease_ips(rclient) == {str(ip) for ip in hosts}
    for i, ip in enumerate(hosts):
        got = record(rclient, str(ip))
        assert got is not None
        assert got.seed == {"mac": f"06:00:00:00:{i // 256:02x}:{i % 256:02x}"}


CASE_71 = {"flood": case_71_flood, "completed": case_71_completed}


@pytest.mark.parametrize("variant", CASE_71)
def test_case_71(redis_url: str, rclient: redis.Redis, tmp_path: Path, variant: str) -> None:
    """DHCP starvation: a flood leaves the real exchange intact; completed grants are mirrored."""
    CASE_71[variant](redis_url, rclient, tmp_path)


def test_case_72(redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """One hw opening 100 transactions keeps at most 8, and the newest still correlates."""
    s = Session(redis_url, tmp_path)
    cap = Capture()
    for i in range(100):
        cap.add(i * 0.01, client_msg(DISCOVER, 0x7200 + i, A))
    cap.add(1.0, client_msg(REQUEST, 0x7200 + 99, A, o_req(IP), o_server(S1), o_host("alpha")))
    cap.add(1.1, ack(0x7200 + 99, IP, A), src=S1)
    # Only A opens transactions here, so the total is A's own count.
    assert feed_watching(s, write_fast(cap, tmp_path / "cap.pcap")) <= 8
    assert_lease(rclient, rec(IP, A_MAC, S1, 0x7200 + 99, cap.t0, 1.1, 3600, hostname="alpha",
                              hostname_src="req12"))
    assert_only(rclient, IP)
