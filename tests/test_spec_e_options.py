"""Spec Part 2, group E: option encoding (cases 46-51; R-IN-6 to R-IN-10, G12)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from specharness import (
    ACK,
    N1_LEASE,
    R1,
    REQUEST,
    S1,
    A,
    Case,
    ack,
    assert_lease,
    assert_only,
    case2_record,
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
)

IP = "192.0.2.100"


def test_case_46_overload_1_options_in_file(
        redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """Overload 1: 54, 51 and 12 decoded from `file`; `sname` stays a string."""
    c = Case(redis_url, tmp_path)
    file = bytes.fromhex("3604c0000201" "330400000e10") + b"\x0c\x07printer" + b"\xff"
    c.add(0, payload(2, 0x4601, A, yi=IP, raw_options=bytes.fromhex("350105340101ff"),
                     file=file, sname=b"boot-srv"), src=S1).feed()
    assert_lease(rclient, c.rec(IP, A, S1, 0x4601, 0, 3600, hostname="printer",
                                hostname_src="ack12"))
    assert_only(rclient, IP)


def test_case_47_overload_3_option_split_over_three_fields(
        redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """Overload 3: option 12 split over options, file, sname is joined in that order."""
    c = Case(redis_url, tmp_path)
    raw = options([o_type(ACK), o_server(S1), o(52, b"\x03"), o_host("lap")])
    file = options([o_host("top"), o_lease(3600)])
    sname = options([o_host("-01")])
    c.add(0, payload(2, 0x4701, A, yi=IP, raw_options=raw, file=file, sname=sname), src=S1)
    c.feed()
    assert_lease(rclient, c.rec(IP, A, S1, 0x4701, 0, 3600, hostname="laptop-01",
                                hostname_src="ack12"))
    assert_only(rclient, IP)


def test_case_48_no_overload_file_is_a_string(
        redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """Without option 52, option-like bytes in `file` are a file name: no lease time, no key."""
    c = Case(redis_url, tmp_path)
    c.add(0, client_msg(REQUEST, 0x4801, A, o_req(IP), o_server(S1)))
    c.add(0.1, payload(2, 0x4801, A, yi=IP, opts=[o_type(ACK), o_server(S1)],
                       file=bytes.fromhex("330400000e10ff")), src=S1)
    c.feed()
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
def test_case_49_split_long_options_concatenated(
        redis_url: str, rclient: redis.Redis, tmp_path: Path, req: list[tuple[int, bytes]],
        hostname: str, src: str) -> None:
    """Split options in the REQUEST are concatenated before they are interpreted (RFC 3396)."""
    c = Case(redis_url, tmp_path)
    c.request_ack(0x4901, IP, request_opts=req).feed()
    assert_lease(rclient, c.rec(IP, A, S1, 0x4901, 0.1, 3600, hostname=hostname,
                                hostname_src=src))


# ---- case 50: option 82, starting from case 2 ----------------------------------------------

def case_2(c: Case) -> None:
    """Case 2: A's DORA through R1, captured on both sides of the relay."""
    c.relayed_exchange(range(1, 9), xid=0x1002, yi=N1_LEASE, relay=R1).feed()


def case_50_a(c: Case, rclient: redis.Redis) -> None:
    """50a: case 2 stores circuit_id and remote_id from the relayed option 82."""
    case_2(c)
    assert_lease(rclient, case2_record(c))
    assert_only(rclient, N1_LEASE)


def case_50_b(c: Case, rclient: redis.Redis) -> None:
    """50b: a later unicast renewal without 82 (case 10) keeps giaddr, circuit_id, remote_id."""
    case_2(c)
    c.add(1800.00, client_msg(REQUEST, 0x100A, A, ci=N1_LEASE), src=N1_LEASE, dst=S1)
    c.add(1800.01, ack(0x100A, N1_LEASE, A, ci=N1_LEASE), src=S1, dst=N1_LEASE)
    c.feed()
    assert_lease(rclient, case2_record(c, 1800, xid=0x100A, hostname_src="prev"))
    assert_only(rclient, N1_LEASE)


def case_50_c(c: Case, rclient: redis.Redis) -> None:
    """50c: a relayed ACK with 82=[1:"port7"] only replaces both values: no remote_id left."""
    case_2(c)
    c.relayed_rebind(0x500C, N1_LEASE, agent=o_82(b"port7")).feed()
    assert_lease(rclient, case2_record(c, 3150.05, xid=0x500C, hostname_src="prev",
                                       circuit_id="706f727437", remote_id=None))
    assert_only(rclient, N1_LEASE)


def case_50_d(c: Case, rclient: redis.Redis) -> None:
    """50d: an 82 whose sub-option runs past the option is ignored; earlier values are kept."""
    case_2(c)
    broken = o(82, b"\x01\x08ge-0")  # sub-option 1 claims 8 octets, 4 follow
    c.relayed_rebind(0x500D, N1_LEASE, agent=broken).feed()
    assert_lease(rclient, case2_record(c, 3150.05, xid=0x500D, hostname_src="prev"))
    assert_only(rclient, N1_LEASE)


def case_50_e(c: Case, rclient: redis.Redis) -> None:
    """50e: sub-options other than 1 and 2 (5, 11, 151) are ignored."""
    agent = o(82, b"\x01\x08ge-0/0/1" + b"\x05\x04\xc6\x33\x64\x00" + b"\x0b\x04\xc6\x33\x64\x01"
              + b"\x02\x03sw1" + b"\x97\x04\x00vpn")
    c.relayed_exchange([2, 3, 6, 7], xid=0x1002, yi=N1_LEASE, relay=R1, agent=agent).feed()
    assert_lease(rclient, case2_record(c))
    assert_only(rclient, N1_LEASE)


CASE_50 = {"a": case_50_a, "b": case_50_b, "c": case_50_c, "d": case_50_d, "e": case_50_e}


@pytest.mark.parametrize("variant", CASE_50)
def test_case_50_relay_agent_information_stored(
        redis_url: str, rclient: redis.Redis, tmp_path: Path, variant: str) -> None:
    """Option 82 sub-options 1 and 2 are stored from relayed packets (G12, R-IN-10)."""
    CASE_50[variant](Case(redis_url, tmp_path), rclient)


def test_case_51_option_82_without_giaddr_not_stored(
        redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """Option 82 in packets with giaddr 0 (client's own, echoed) is not stored."""
    c = Case(redis_url, tmp_path)
    spoof = o_82(b"spoof")
    c.request_ack(0x5101, IP, request_opts=[spoof], ack_opts=[spoof]).feed()
    assert_lease(rclient, c.rec(IP, A, S1, 0x5101, 0.1, 3600))
    assert_only(rclient, IP)
