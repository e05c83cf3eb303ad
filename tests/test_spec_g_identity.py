"""Spec Part 2, group G: client identity and hardware types (cases 60-66; R-ID-1 to R-ID-4)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from specharness import (
    DECLINE,
    ID_A,
    RELEASE,
    REQUEST,
    S1,
    A,
    B,
    Case,
    Option,
    ack,
    assert_absent,
    assert_lease,
    assert_only,
    assert_unchanged,
    client_msg,
    nak,
    o_cid,
    o_host,
    o_req,
    o_server,
    rec,
    snapshot,
)

IP, IP2 = "192.0.2.100", "192.0.2.101"
CID60 = bytes.fromhex("ff1234567800020000ab1101020304")
IB_CID = bytes.fromhex("ff0000000100020000ab11aabbccddeeff")
IB = {"htype": 32, "hlen": 0}  # InfiniBand: no hardware address in chaddr (RFC 4390)


def release(c: Case, delta: float, ip: str, chaddr: bytes = A, *opts: Option,
            **kw: Any) -> Case:
    """A→S1 RELEASE ci=ip {54=S1, ...}."""
    return c.add(delta, client_msg(RELEASE, 0x0000AAAA, chaddr, o_server(S1), *opts, ci=ip,
                                   **kw), src=ip, dst=S1)


@pytest.mark.parametrize(
    ("chaddr", "opts"),
    [(None, ()), (A, (o_cid(CID60),)), (A, ()), (B, (o_cid(CID60),))],
    ids=["grant", "release-with-61", "release-without-61", "release-chB-with-61"],
)
def test_case_60_client_identifier_unlike_chaddr(
        redis_url: str, rclient: redis.Redis, tmp_path: Path, chaddr: bytes | None, opts:
        tuple[tuple[int, bytes], ...]) -> None:
    """A client identifier unlike chaddr is stored; RELEASEs matching by 61 or hw delete it."""
    c = Case(redis_url, tmp_path)
    c.request_ack(0x6001, IP, request_opts=[o_cid(CID60)], ack_opts=[o_cid(CID60)]).feed()
    assert_lease(rclient, c.rec(IP, A, S1, 0x6001, 0.1, 3600, client_id=CID60.hex()))
    if chaddr is not None:
        release(c, 5, IP, chaddr, *opts).feed()
        assert_absent(rclient, IP)
    assert_only(rclient, *([] if chaddr else [IP]))


@pytest.mark.parametrize(
    ("ack_cid", "client_id", "hostname"),
    [(ID_A, ID_A, "alpha"), (None, ID_A, "alpha"),
     (bytes.fromhex("01020000000099"), bytes.fromhex("01020000000099"), None)],
    ids=["61a", "61b", "61c"],
)
def test_case_61_client_identifier_echoed_in_replies(
        redis_url: str, rclient: redis.Redis, tmp_path: Path, ack_cid: bytes | None, client_id:
        bytes, hostname: str | None) -> None:
    """client_id comes from the echoed 61, else the transaction; another 61 does not correlate."""
    c = Case(redis_url, tmp_path)
    c.request_ack(0x5001, IP, request_opts=[o_cid(ID_A), o_host("alpha")],
                  ack_opts=[o_cid(ack_cid)] if ack_cid else []).feed()
    assert_lease(rclient, c.rec(IP, A, S1, 0x5001, 0.1, 3600, client_id=client_id.hex(),
                                hostname=hostname, hostname_src=hostname and "req12"))
    assert_only(rclient, IP)


def test_case_62_one_chaddr_two_client_identifiers(
        redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """One chaddr with two client identifiers holds two records; a RELEASE ends only one."""
    c = Case(redis_url, tmp_path)
    c.add(0, ack(0x5002, IP, A, o_cid(b"\x01\xaa")), src=S1)
    c.add(1, ack(0x5003, IP2, A, o_cid(b"\x01\xbb")), src=S1)
    c.feed()
    assert_lease(rclient, c.rec(IP, A, S1, 0x5002, 0, 3600, client_id="01aa"))
    assert_lease(rclient, c.rec(IP2, A, S1, 0x5003, 1, 3600, client_id="01bb"))
    before = snapshot(rclient)
    del before[IP]
    release(c, 2, IP, A, o_cid(b"\x01\xaa")).feed()
    assert_absent(rclient, IP)
    assert_unchanged(before, rclient)


def test_case_63_pxe_then_os_with_a_client_identifier_supersedes(
        redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """A record without client_id is superseded by the same hw that now sends a client-id."""
    c = Case(redis_url, tmp_path)
    c.add(0, ack(0x5004, IP, A), src=S1)
    c.add(1, ack(0x5005, IP2, A, o_cid(ID_A)), src=S1)
    c.feed()
    assert_absent(rclient, IP)
    assert_lease(rclient, c.rec(IP2, A, S1, 0x5005, 1, 3600, client_id=ID_A.hex()))
    assert_only(rclient, IP2)


IB_IP = "192.0.2.110"


@pytest.mark.parametrize("release_cid", [None, IB_CID, bytes.fromhex("ff0000000100020000ab11"
                                                                     "000000000001")],
                         ids=["grant", "release-same-61", "release-other-61"])
def test_case_64_infiniband_identity_by_client_identifier(
        redis_url: str, rclient: redis.Redis, tmp_path: Path, release_cid: bytes | None) -> None:
    """InfiniBand (htype 32, hlen 0): no mac, identity by client-id only."""
    c = Case(redis_url, tmp_path)
    c.add(0, client_msg(REQUEST, 0x5006, b"", o_req(IB_IP), o_cid(IB_CID), flags=0x8000, **IB))
    c.add(0.1, ack(0x5006, IB_IP, b"", o_cid(IB_CID), **IB), src=S1)
    c.feed()
    granted = c.rec(IB_IP, None, S1, 0x5006, 0.1, 3600, htype=32,
                    client_id=IB_CID.hex())
    assert_lease(rclient, granted)
    if release_cid is not None:
        release(c, 5, IB_IP, b"", o_cid(release_cid), **IB).feed()
    if release_cid == IB_CID:
        assert_absent(rclient, IB_IP)
        assert_only(rclient)
    else:
        assert_lease(rclient, granted)
        assert_only(rclient, IB_IP)


def case_65_release(c: Case) -> None:
    release(c, 5, IP65, b"", **IB)


def case_65_decline(c: Case) -> None:
    c.add(5, client_msg(DECLINE, 0x6502, b"", o_req(IP65), o_server(S1), **IB))


def case_65_nak(c: Case) -> None:
    c.add(5, client_msg(REQUEST, 0x6503, b"", o_req(IP65), **IB))
    c.add(5.1, nak(0x6503, b"", **IB), src=S1)


def case_65_later_ack(c: Case) -> None:
    c.add(5, ack(0x6504, "192.0.2.112", b"", **IB), src=S1)


IP65 = "192.0.2.111"
CASE_65: dict[str, Callable[[Case], None] | None] = {
    "grant": None, "release": case_65_release, "decline": case_65_decline, "nak": case_65_nak,
    "later-ack": case_65_later_ack, "reassigned": None,
}


@pytest.mark.parametrize("variant", CASE_65)
def test_case_65_hlen_0_without_client_identifier_matches_nothing(
        redis_url: str, rclient: redis.Redis, tmp_path: Path, variant: str) -> None:
    """hlen 0 and no client-id: recorded, but nothing can match (or supersede) the record."""
    c = Case(redis_url, tmp_path)
    c.add(0, ack(0x6501, IP65, b"", **IB), src=S1)
    c.feed()
    granted = c.rec(IP65, None, S1, 0x6501, 0, 3600, htype=32)
    assert_lease(rclient, granted)
    if variant == "reassigned":
        c.add(5, ack(0x6505, IP65, A), src=S1).feed()
        assert_lease(rclient, c.rec(IP65, A, S1, 0x6505, 5, 3600))
        assert_only(rclient, IP65)
        return
    scenario = CASE_65[variant]
    if scenario is not None:
        scenario(c)
        c.feed()
    assert_lease(rclient, granted)
    if variant == "later-ack":
        assert_lease(rclient, c.rec("192.0.2.112", None, S1, 0x6504, 5, 3600, htype=32))
        assert_only(rclient, IP65, "192.0.2.112")
    else:
        assert_only(rclient, IP65)


GARBAGE = A + bytes.fromhex("deadbeef0102030405ff")


def case_66a_correlates(c: Case, rclient: redis.Redis) -> None:
    """66a: chaddr[hlen:] is ignored, so a garbage-padded ACK matches the zero-padded REQUEST."""
    c.add(0, client_msg(REQUEST, 0x6601, A, o_req(IP), o_server(S1), o_host("alpha")))
    c.add(0.1, ack(0x6601, IP, GARBAGE, hlen=6), src=S1)
    c.feed()
    assert_lease(rclient, c.rec(IP, A, S1, 0x6601, 0.1, 3600, hostname="alpha",
                                hostname_src="req12"))
    assert_only(rclient, IP)


def case_66a_release(c: Case, rclient: redis.Redis) -> None:
    """66a: the garbage-padded grant is released by the zero-padded form of the same chaddr."""
    c.add(0, ack(0x6602, IP, GARBAGE, hlen=6), src=S1)
    c.feed()
    assert_lease(rclient, c.rec(IP, A, S1, 0x6602, 0, 3600))
    release(c, 5, IP, A).feed()
    assert_only(rclient)


def case_66b(c: Case, rclient: redis.Redis) -> None:
    """66b: htype 24, hlen 8: an 8-octet mac and htype=24."""
    c.add(0, ack(0x6603, IP, bytes.fromhex("aabbccddeeff0011"), htype=24), src=S1)
    c.feed()
    assert_lease(rclient, rec(IP, "aa:bb:cc:dd:ee:ff:00:11", S1, 0x6603, c.t0, 0, 3600,
                              htype=24))
    assert_only(rclient, IP)


def case_66c(c: Case, rclient: redis.Redis) -> None:
    """66c: hlen 16: the mac string has 16 octets."""
    chaddr = bytes(range(0xA1, 0xB1))
    c.add(0, ack(0x6604, IP, chaddr), src=S1)
    c.feed()
    assert_lease(rclient, rec(IP, ":".join(f"{b:02x}" for b in chaddr), S1, 0x6604, c.t0, 0,
                              3600))
    assert_only(rclient, IP)


def case_66d(c: Case, rclient: redis.Redis) -> None:
    """66d: hlen 17 is dropped (R-IN-5)."""
    c.add(0, ack(0x6605, IP, A, hlen=17), src=S1)
    c.feed()
    assert_only(rclient)


def case_66e_no_supersede(c: Case, rclient: redis.Redis) -> None:
    """66e: the same octets with htype 6 are another client: no supersession on the /24."""
    c.add(0, ack(0x6606, IP, A), src=S1)
    c.add(1, ack(0x6607, IP2, A, htype=6), src=S1)
    c.feed()
    assert_lease(rclient, c.rec(IP, A, S1, 0x6606, 0, 3600))
    assert_lease(rclient, c.rec(IP2, A, S1, 0x6607, 1, 3600, htype=6))
    assert_only(rclient, IP, IP2)


def case_66e_no_release(c: Case, rclient: redis.Redis) -> None:
    """66e: a RELEASE with htype 6 does not end the htype 1 record."""
    c.add(0, ack(0x6608, IP, A), src=S1)
    c.feed()
    release(c, 5, IP, A, htype=6).feed()
    assert_lease(rclient, c.rec(IP, A, S1, 0x6608, 0, 3600))
    assert_only(rclient, IP)


CASE_66 = {
    "66a-correlates": case_66a_correlates, "66a-release": case_66a_release, "66b": case_66b,
    "66c": case_66c, "66d": case_66d, "66e-no-supersede": case_66e_no_supersede,
    "66e-no-release": case_66e_no_release,
}


@pytest.mark.parametrize("variant", CASE_66)
def test_case_66_hardware_addresses_typed_and_bounded(
        redis_url: str, rclient: redis.Redis, tmp_path: Path, variant: str) -> None:
    """Hardware addresses are typed, hlen octets long, padding ignored, hlen > 16 dropped."""
    CASE_66[variant](Case(redis_url, tmp_path), rclient)

