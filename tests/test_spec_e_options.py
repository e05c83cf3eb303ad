"""Spec Part 2, group E: option encoding (cases 46-51; R-IN-6 to R-IN-10, G12)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from spec_helpers_b import ack, feed_all, request_ack
from specharness import (
    A_MAC,
    ACK,
    DISCOVER,
    OFFER,
    R1,
    REQUEST,
    S1,
    A,
    Capture,
    Session,
    assert_lease,
    assert_only,
    client_msg,
    o,
    o_82,
    o_host,
    o_lease,
    o_req,
    o_server,
    o_type,
    options,
    payload,
    rec,
    server_msg,
)

IP = "192.0.2.100"
RIP = "198.51.100.50"
CIRCUIT, REMOTE = "67652d302f302f31", "737731"
AGENT = o_82(b"ge-0/0/1", b"sw1")


def test_case_46(redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """Overload 1: 54, 51 and 12 decoded from `file`; `sname` stays a string."""
    s = Session(redis_url, tmp_path)
    cap = Capture()
    file = bytes.fromhex("3604c0000201" "330400000e10") + b"\x0c\x07printer" + b"\xff"
    cap.add(0, payload(2, 0x4601, A, yi=IP, raw_options=bytes.fromhex("350105340101ff"),
                       file=file, sname=b"boot-srv"), src=S1)
    feed_all(s, cap)
    assert_lease(rclient, rec(IP, A_MAC, S1, 0x4601, cap.t0, 0, 3600, hostname="printer",
                              hostname_src="ack12"))
    assert_only(rclient, IP)


def test_case_47(redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """Overload 3: option 12 split over options, file, sname is joined in that order."""
    s = Session(redis_url, tmp_path)
    cap = Capture()
    raw = options([o_type(ACK), o_server(S1), o(52, b"\x03"), o_host("lap")])
    file = options([o_host("top"), o_lease(3600)])
    sname = options([o_host("-01")])
    cap.add(0, payload(2, 0x4701, A, yi=IP, raw_options=raw, file=file, sname=sname), src=S1)
    feed_all(s, cap)
    assert_lease(rclient, rec(IP, A_MAC, S1, 0x4701, cap.t0, 0, 3600, hostname="laptop-01",
                              hostname_src="ack12"))
    assert_only(rclient, IP)


def test_case_48(redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """Without option 52, option-like bytes in `file` are a file name: no lease time, no key."""
    s = Session(redis_url, tmp_path)
    cap = Capture()
    cap.add(0, client_msg(REQUEST, 0x4801, A, o_req(IP), o_server(S1)))
    cap.add(0.1, payload(2, 0x4801, A, yi=IP, opts=[o_type(ACK), o_server(S1)],
                         file=bytes.fromhex("330400000e10ff")), src=S1)
    feed_all(s, cap)
    assert_only(rclient)


def fqdn_split() -> list[tuple[int, bytes]]:
    """Option 81 (E=1) split inside the label "example" (RFC 3396)."""
    return [o(81, b"\x05\x00\x00" + b"\x05alpha\x07exa"), o(81, b"mple\x03org\x00")]


@pytest.mark.parametrize(
    ("req", "hostname", "src"),
    [
        ([o_host("alpha-"), o_host("laptop")], "alpha-laptop", "req12"),
        (fqdn_split(), "alpha.example.org", "req81"),
        ([o_host("a" * 255), o_host("a" * 45)], "a" * 253, "req12"),
    ],
    ids=["49a", "49b", "49c"],
)
def test_case_49(redis_url: str, rclient: redis.Redis, tmp_path: Path,
                 req: list[tuple[int, bytes]], hostname: str, src: str) -> None:
    """Split options in the REQUEST are concatenated before they are interpreted (RFC 3396)."""
    s = Session(redis_url, tmp_path)
    cap = request_ack(Capture(), 0x4901, IP, req=req)
    feed_all(s, cap)
    assert_lease(rclient, rec(IP, A_MAC, S1, 0x4901, cap.t0, 0.1, 3600, hostname=hostname,
                              hostname_src=src))


# ---- case 50: option 82, starting from case 2 ----------------------------------------------

def relayed_dora(cap: Capture, xid: int, agent: tuple[int, bytes] = AGENT,
                 client_side: bool = True) -> Capture:
    """Case 2: DORA of A through R1, captured on both sides of the relay (or the server side)."""
    relayed = {"gi": R1, "hops": 1}
    if client_side:
        cap.add(0.000, client_msg(DISCOVER, xid, A, o_host("alpha")))
    cap.add(0.001, client_msg(DISCOVER, xid, A, o_host("alpha"), agent, **relayed),
            src=R1, dst=S1, sport=67)
    cap.add(0.010, server_msg(OFFER, xid, A, o_lease(3600), agent, yi=RIP, gi=R1),
            src=S1, dst=R1, dport=67)
    if client_side:
        cap.add(0.011, server_msg(OFFER, xid, A, o_lease(3600), yi=RIP, gi=R1), src=R1, dst=RIP)
        cap.add(0.100, client_msg(REQUEST, xid, A, o_req(RIP), o_server(S1), o_host("alpha")))
    cap.add(0.101, client_msg(REQUEST, xid, A, o_req(RIP), o_server(S1), o_host("alpha"), agent,
                              **relayed), src=R1, dst=S1, sport=67)
    cap.add(0.110, ack(xid, RIP, A, agent, gi=R1), src=S1, dst=R1, dport=67)
    if client_side:
        cap.add(0.111, ack(xid, RIP, A, gi=R1), src=R1, dst=RIP)
    return cap


def case2_record(t0: int, **extra: str) -> dict[str, str]:
    fields = {"hostname": "alpha", "hostname_src": "req12", "giaddr": R1,
              "circuit_id": CIRCUIT, "remote_id": REMOTE, **extra}
    return rec(RIP, A_MAC, S1, 0x1002, t0, 0.11, 3600, **fields)


def case_50_a(s: Session, rclient: redis.Redis) -> None:
    """50a: case 2 stores circuit_id and remote_id from the relayed option 82."""
    cap = relayed_dora(Capture(), 0x1002)
    feed_all(s, cap)
    assert_lease(rclient, case2_record(cap.t0))
    assert_only(rclient, RIP)


def case_50_b(s: Session, rclient: redis.Redis) -> None:
    """50b: a later unicast renewal without 82 (case 10) keeps giaddr, circuit_id, remote_id."""
    first = relayed_dora(Capture(), 0x1002)
    feed_all(s, first)
    cap = Capture(t0=first.t0)
    cap.add(1800.00, client_msg(REQUEST, 0x100A, A, ci=RIP), src=RIP, dst=S1)
    cap.add(1800.01, ack(0x100A, RIP, A, ci=RIP), src=S1, dst=RIP)
    feed_all(s, cap)
    assert_lease(rclient, rec(RIP, A_MAC, S1, 0x100A, cap.t0, 1800, 3600, hostname="alpha",
                              hostname_src="prev", giaddr=R1, circuit_id=CIRCUIT,
                              remote_id=REMOTE))
    assert_only(rclient, RIP)


def relayed_rebind(cap: Capture, xid: int, agent: tuple[int, bytes]) -> Capture:
    """REBINDING through R1 at +3150, the relayed copies and the ACK carrying `agent`."""
    cap.add(3150.00, client_msg(REQUEST, xid, A, ci=RIP))
    cap.add(3150.00, client_msg(REQUEST, xid, A, agent, ci=RIP, gi=R1, hops=1),
            src=R1, dst=S1, sport=67)
    cap.add(3150.05, ack(xid, RIP, A, agent, ci=RIP, gi=R1), src=S1, dst=R1, dport=67)
    cap.add(3150.05, ack(xid, RIP, A, ci=RIP, gi=R1), src=R1, dst=RIP)
    return cap


def case_50_c(s: Session, rclient: redis.Redis) -> None:
    """50c: a relayed ACK with 82=[1:"port7"] only replaces both values: no remote_id left."""
    first = relayed_dora(Capture(), 0x1002)
    feed_all(s, first)
    cap = relayed_rebind(Capture(t0=first.t0), 0x500C, o_82(b"port7"))
    feed_all(s, cap)
    assert_lease(rclient, rec(RIP, A_MAC, S1, 0x500C, cap.t0, 3150.05, 3600, hostname="alpha",
                              hostname_src="prev", giaddr=R1, circuit_id="706f727437"))
    assert_only(rclient, RIP)


def case_50_d(s: Session, rclient: redis.Redis) -> None:
    """50d: an 82 whose sub-option runs past the option is ignored; earlier values are kept."""
    first = relayed_dora(Capture(), 0x1002)
    feed_all(s, first)
    broken = o(82, b"\x01\x08ge-0")  # sub-option 1 claims 8 octets, 4 follow
    cap = relayed_rebind(Capture(t0=first.t0), 0x500D, broken)
    feed_all(s, cap)
    assert_lease(rclient, rec(RIP, A_MAC, S1, 0x500D, cap.t0, 3150.05, 3600, hostname="alpha",
                              hostname_src="prev", giaddr=R1, circuit_id=CIRCUIT,
                              remote_id=REMOTE))
    assert_only(rclient, RIP)


def case_50_e(s: Session, rclient: redis.Redis) -> None:
    """50e: sub-options other than 1 and 2 (5, 11, 151) are ignored."""
    agent = o(82, b"\x01\x08ge-0/0/1" + b"\x05\x04\xc6\x33\x64\x00" + b"\x0b\x04\xc6\x33\x64\x01"
              + b"\x02\x03sw1" + b"\x97\x04\x00vpn")
    cap = relayed_dora(Capture(), 0x1002, agent, client_side=False)
    feed_all(s, cap)
    assert_lease(rclient, case2_record(cap.t0))
    assert_only(rclient, RIP)


CASE_50 = {"a": case_50_a, "b": case_50_b, "c": case_50_c, "d": case_50_d, "e": case_50_e}


@pytest.mark.parametrize("variant", CASE_50)
def test_case_50(redis_url: str, rclient: redis.Redis, tmp_path: Path, variant: str) -> None:
    """Option 82 sub-options 1 and 2 are stored from relayed packets (G12, R-IN-10)."""
    CASE_50[variant](Session(redis_url, tmp_path), rclient)


def test_case_51(redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """Option 82 in packets with giaddr 0 (client's own, echoed) is not stored."""
    s = Session(redis_url, tmp_path)
    spoof = o_82(b"spoof")
    cap = request_ack(Capture(), 0x5101, IP, req=[spoof], ack_opts=[spoof])
    feed_all(s, cap)
    assert_lease(rclient, rec(IP, A_MAC, S1, 0x5101, cap.t0, 0.1, 3600))
    assert_only(rclient, IP)

