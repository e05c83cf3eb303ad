"""Spec Part 2, group H: transactions, collisions and floods (cases 67-72; R-TX-1 to R-TX-7)."""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path

import pytest
import redis
from specharness import (
    DISCOVER,
    REQUEST,
    S1,
    A,
    B,
    Case,
    ack,
    assert_lease,
    assert_only,
    client_msg,
    lease_ips,
    o_cid,
    o_host,
    o_req,
    o_server,
    offer,
    record,
)

IP, IP2 = "192.0.2.100", "192.0.2.101"


def test_case_67_xid_reused_later_by_another_client(
        redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """Another client reusing an xid a minute later is another transaction (key includes hw)."""
    c = Case(redis_url, tmp_path)
    c.dora(0x3001, IP, discover_opts=[o_host("alpha")], request_opts=[o_host("alpha")])
    c.dora(0x3001, IP2, chaddr=B, ack_at=60.3, discover_opts=[o_host("bravo")],
           request_opts=[o_host("bravo")])
    c.feed()
    assert_lease(rclient, c.rec(IP, A, S1, 0x3001, 0.3, 3600, hostname="alpha",
                                hostname_src="req12"))
    assert_lease(rclient, c.rec(IP2, B, S1, 0x3001, 60.3, 3600, hostname="bravo",
                                hostname_src="req12"))
    assert_only(rclient, IP, IP2)


def test_case_68_two_clients_share_one_xid_at_once(
        redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """Two clients using one xid at the same time keep separate transactions."""
    c = Case(redis_url, tmp_path)
    xid = 0x3002
    c.add(0.00, client_msg(DISCOVER, xid, A, o_host("alpha")))
    c.add(0.01, client_msg(DISCOVER, xid, B, o_host("bravo")))
    c.add(0.10, offer(xid, IP, A), src=S1)
    c.add(0.11, offer(xid, IP2, B), src=S1)
    c.add(0.20, client_msg(REQUEST, xid, A, o_req(IP), o_server(S1)))
    c.add(0.21, client_msg(REQUEST, xid, B, o_req(IP2), o_server(S1)))
    c.add(0.30, ack(xid, IP2, B), src=S1)
    c.add(0.31, ack(xid, IP, A), src=S1)
    c.feed()
    assert_lease(rclient, c.rec(IP, A, S1, xid, 0.31, 3600, hostname="alpha",
                                hostname_src="req12"))
    assert_lease(rclient, c.rec(IP2, B, S1, xid, 0.30, 3600, hostname="bravo",
                                hostname_src="req12"))
    assert_only(rclient, IP, IP2)


def test_case_69_ack_matching_two_client_identifiers_is_uncorrelated(
        redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """An ACK without 61 matching two transactions (two client-ids) is uncorrelated."""
    c = Case(redis_url, tmp_path)
    for delta, cid, name in ((0.0, b"\x01\xaa", "one"), (0.05, b"\x01\xbb", "two")):
        c.add(delta, client_msg(REQUEST, 0x3003, A, o_req(IP), o_server(S1), o_cid(cid),
                                o_host(name)))
    c.add(0.1, ack(0x3003, IP, A), src=S1)
    c.feed()
    assert_lease(rclient, c.rec(IP, A, S1, 0x3003, 0.1, 3600))
    assert_only(rclient, IP)


@pytest.mark.parametrize(
    ("retransmit", "ack_at", "hostname"),
    [(None, 130, None), (None, 100, "alpha"), (64, 130, "alpha")],
    ids=["ack-at-130", "ack-at-100", "retransmission-at-64"],
)
def test_case_70_transactions_expire_after_txn_ttl(
        redis_url: str, rclient: redis.Redis, tmp_path: Path, retransmit: int | None, ack_at: int,
        hostname: str | None) -> None:
    """A transaction is forgotten txn_ttl (120 s) after its last packet."""
    c = Case(redis_url, tmp_path)
    request = client_msg(REQUEST, 0x3004, A, o_req(IP), o_server(S1), o_host("alpha"))
    c.add(0, request)
    if retransmit is not None:
        c.add(retransmit, request)
    c.add(ack_at, ack(0x3004, IP, A), src=S1)
    c.feed()
    assert_lease(rclient, c.rec(IP, A, S1, 0x3004, ack_at, 3600, hostname=hostname,
                                hostname_src=hostname and "req12"))
    assert_only(rclient, IP)


def random_discovers(c: Case, rng: random.Random, count: int, start: float,
                     span: float) -> None:
    """`count` DISCOVERs with random chaddr and xid, spread over `span` seconds (Yersinia);
    S1 answers every tenth with an OFFER while its pool lasts."""
    for i in range(count):
        chaddr = bytes([0x06]) + rng.randbytes(5)  # locally administered, never A
        xid = rng.getrandbits(32)
        delta = start + span * i / count
        c.add(delta, client_msg(DISCOVER, xid, chaddr))
        if i % 10 == 0:
            offered = f"10.71.{i // 2500}.{i // 10 % 250 + 1}"
            c.add(delta, offer(xid, offered, chaddr), src=S1)


TXN_MAX = 4096


def case_71_flood(redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """A DISCOVER flood (scaled: 20 000 + 5 000, txn_max 4096) cannot evict A's REQUEST;
    neither DISCOVERs nor OFFERs write anything."""
    c = Case(redis_url, tmp_path, txn_max=TXN_MAX)
    rng = random.Random(71)
    random_discovers(c, rng, 20_000, 0, 10)
    c.add(10.000, client_msg(REQUEST, 0x3005, A, o_req(IP), o_server(S1), o_host("alpha")))
    random_discovers(c, rng, 5_000, 10.0001, 0.49)
    c.add(10.500, ack(0x3005, IP, A), src=S1)
    assert c.feed() <= TXN_MAX
    assert c.session.tracker.pending_transactions <= TXN_MAX
    assert_lease(rclient, c.rec(IP, A, S1, 0x3005, 10.5, 3600, hostname="alpha",
                                hostname_src="req12"))
    assert_only(rclient, IP)


def case_71_completed(redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """Variant: a completed starvation attack of 250 granted MACs yields 250 records."""
    c = Case(redis_url, tmp_path)
    hosts = list(ipaddress.ip_network("10.71.0.0/16").hosts())[:250]
    for i, ip in enumerate(hosts):
        c.dora(0x71000 + i, str(ip), chaddr=bytes([6, 0, 0, 0, i // 256, i % 256]),
               ack_at=i * 0.01 + 0.3)
    c.feed()
    assert lease_ips(rclient) == {str(ip) for ip in hosts}
    for i, ip in enumerate(hosts):
        got = record(rclient, str(ip))
        assert got is not None
        assert got.seed == {"mac": f"06:00:00:00:{i // 256:02x}:{i % 256:02x}"}


CASE_71 = {"flood": case_71_flood, "completed": case_71_completed}


@pytest.mark.parametrize("variant", CASE_71)
def test_case_71_discover_flood_leaves_real_exchanges_intact(
        redis_url: str, rclient: redis.Redis, tmp_path: Path, variant: str) -> None:
    """DHCP starvation: a flood leaves the real exchange intact; completed grants are mirrored."""
    CASE_71[variant](redis_url, rclient, tmp_path)


def test_case_72_per_client_cap_on_transactions(
        redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """One hw opening 100 transactions keeps at most 8, and the newest still correlates."""
    c = Case(redis_url, tmp_path)
    for i in range(100):
        c.add(i * 0.01, client_msg(DISCOVER, 0x7200 + i, A))
    c.add(1.0, client_msg(REQUEST, 0x7200 + 99, A, o_req(IP), o_server(S1), o_host("alpha")))
    c.add(1.1, ack(0x7200 + 99, IP, A), src=S1)
    # Only A opens transactions here, so the total is A's own count.
    assert c.feed() <= 8
    assert_lease(rclient, c.rec(IP, A, S1, 0x7200 + 99, 1.1, 3600, hostname="alpha",
                                hostname_src="req12"))
    assert_only(rclient, IP)
