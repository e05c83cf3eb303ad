"""Spec Part 2, group F: hostnames (cases 52-59; R-HN-1 to R-HN-3)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from specharness import (
    S1,
    A,
    B,
    Case,
    ack,
    assert_lease,
    assert_only,
    o,
    o_fqdn,
    o_host,
)

IP = "192.0.2.100"
FQDN = "alpha.example.org"
Opts = list[tuple[int, bytes]]


def exchange(redis_url: str, rclient: redis.Redis, tmp_path: Path, req: Opts, ack_opts: Opts,
             hostname: str | None, src: str | None) -> None:
    """REQUEST with `req` and ACK with `ack_opts`; the record carries hostname from src."""
    c = Case(redis_url, tmp_path)
    c.request_ack(0x5201, IP, request_opts=req, ack_opts=ack_opts).feed()
    assert_lease(rclient, c.rec(IP, A, S1, 0x5201, 0.1, 3600, hostname=hostname,
                                hostname_src=src))
    assert_only(rclient, IP)


def test_case_52_qualified_echo_of_the_hostname_wins(
        redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """The server's qualified echo of option 12 wins over the client's name (ack12)."""
    exchange(redis_url, rclient, tmp_path, [o_host("alpha")], [o_host(FQDN)], FQDN, "ack12")


def test_case_53_hostname_from_the_request_only(
        redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """A name in the REQUEST only is used (req12)."""
    exchange(redis_url, rclient, tmp_path, [o_host("alpha")], [], "alpha", "req12")


def test_case_54_server_overrides_the_clients_name(
        redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """The server overrides the client's name (ack12)."""
    exchange(redis_url, rclient, tmp_path, [o_host("android-3f2a")], [o_host("kitchen-tablet")],
             "kitchen-tablet", "ack12")


def test_case_55_hostname_from_the_discover_only(
        redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """A name only in the DISCOVER of the same xid is used (req12)."""
    c = Case(redis_url, tmp_path)
    c.dora(0x4001, IP, discover_opts=[o_host("alpha")]).feed()
    assert_lease(rclient, c.rec(IP, A, S1, 0x4001, 0.3, 3600, hostname="alpha",
                                hostname_src="req12"))
    assert_only(rclient, IP)


REQ81 = o_fqdn(FQDN + ".", flags=0x05)
ACK81 = o_fqdn(FQDN + ".", flags=0x05, rcodes=b"\xff\xff")


@pytest.mark.parametrize(
    ("req", "ack_opts", "src"),
    [
        ([REQ81], [ACK81], "ack81"),
        ([REQ81], [], "req81"),
        ([REQ81, o_host("other")], [], "req81"),
        ([REQ81], [o_host("x"), ACK81], "ack81"),
    ],
    ids=["ack81", "ack-without-81", "req-81-and-12", "ack-12-and-81"],
)
def test_case_56_fqdn_in_wire_format_beats_option_12(
        redis_url: str, rclient: redis.Redis, tmp_path: Path, req: Opts, ack_opts: Opts,
        src: str) -> None:
    """Option 81 in wire format gives the name without its trailing dot, and beats 12."""
    exchange(redis_url, rclient, tmp_path, req, ack_opts, FQDN, src)


def fqdn_raw(wire: bytes) -> tuple[int, bytes]:
    """Option 81 with E=1 (flags 0x05, RCODEs 0) and the given name octets."""
    return o(81, b"\x05\x00\x00" + wire)


POINTER = fqdn_raw(b"\xc0\x0c")
OVERRUN = fqdn_raw(b"\x3falpha")  # label of 63 octets, 5 present


@pytest.mark.parametrize(
    ("req", "ack_opts", "hostname", "src"),
    [
        ([o_fqdn(FQDN, flags=0x01)], [], FQDN, "req81"),
        ([fqdn_raw(b"")], [], None, None),
        ([REQ81], [fqdn_raw(b"")], FQDN, "req81"),
        ([fqdn_raw(b"\x05alpha")], [], "alpha", "req81"),
        ([POINTER, o_host("alpha")], [], "alpha", "req12"),
        ([REQ81], [POINTER], FQDN, "req81"),
        ([OVERRUN, o_host("alpha")], [], "alpha", "req12"),
        ([REQ81], [OVERRUN], FQDN, "req81"),
    ],
    ids=["57a", "57b", "57b-in-ack", "57c", "57d", "57d-in-ack", "57e", "57e-in-ack"],
)
def test_case_57_other_forms_of_option_81(
        redis_url: str, rclient: redis.Redis, tmp_path: Path, req: Opts, ack_opts: Opts, hostname:
        str | None, src: str | None) -> None:
    """Other forms of option 81: ASCII, empty, partial, compressed, overrunning (R-HN-3)."""
    exchange(redis_url, rclient, tmp_path, req, ack_opts, hostname, src)


@pytest.mark.parametrize("variant", ["58a", "58b", "58c"])
def test_case_58_hostnames_on_renewal(
        redis_url: str, rclient: redis.Redis, tmp_path: Path, variant: str) -> None:
    """On renewal the name is kept (prev), replaced by a new one, or dropped for another client."""
    c = Case(redis_url, tmp_path)
    c.setup_lease(IP, hostname="alpha")
    if variant == "58a":
        c.renew(0x5802, IP, at=600)
        expected = c.rec(IP, A, S1, 0x5802, 600.1, 3600, hostname="alpha", hostname_src="prev")
    elif variant == "58b":
        c.renew(0x5802, IP, at=600, request_opts=[o_host("alpha2")])
        expected = c.rec(IP, A, S1, 0x5802, 600.1, 3600, hostname="alpha2",
                         hostname_src="req12")
    else:
        c.add(600, ack(0x5803, IP, B), src=S1)
        expected = c.rec(IP, B, S1, 0x5803, 600, 3600)
    c.feed()
    assert_lease(rclient, expected)
    assert_only(rclient, IP)


@pytest.mark.parametrize(
    ("raw", "hostname"),
    [
        pytest.param(b"alpha\0", "alpha", id="59a"),
        pytest.param(b"alpha\0\0\0", "alpha", id="59b"),
        pytest.param(b"al\0pha", "al", id="59c"),
        pytest.param(b"\0alpha", None, id="59d"),
        pytest.param(b"al\x07pha\x1b[31m", "alpha31m", id="59e"),
        pytest.param(b"alpha\r\nINJECT", "alphaINJECT", id="59f"),
        pytest.param(b"my host", "myhost", id="59g"),
        pytest.param(b"J\xc3\xb6rg-iPhone", "Jrg-iPhone", id="59h"),
        pytest.param(b"\xff\xfe\xfd", None, id="59i"),
        pytest.param(b"x_y", "x_y", id="59j"),
        pytest.param(b"alpha.", "alpha", id="59k-trailing-dot"),
        pytest.param(b".alpha", "alpha", id="59k-leading-dot"),
        pytest.param(b"a..b", "a.b", id="59k-double-dot"),
        pytest.param(b"a" * 255, "a" * 253, id="59l"),
        pytest.param([b"a" * 255, b"a" * 45], "a" * 253, id="59m"),
        pytest.param(b"-alpha-", "-alpha-", id="59n"),
        pytest.param(b"ALPHA", "ALPHA", id="59o"),
        pytest.param(b"%s%n$(reboot)'; DROP <b>", "snrebootDROPb", id="59p"),
        pytest.param(b"a" * 252 + b".b", "a" * 252, id="59q"),
    ],
)
def test_case_59_hostnames_sanitised(
        redis_url: str, rclient: redis.Redis, tmp_path: Path, raw: bytes | list[bytes], hostname:
        str | None) -> None:
    """Raw option-12 octets in the REQUEST are sanitised by R-HN-2 (S1-S6)."""
    parts = raw if isinstance(raw, list) else [raw]
    exchange(redis_url, rclient, tmp_path, [o_host(p) for p in parts], [], hostname,
             None if hostname is None else "req12")
