"""Spec Part 2, group I: rogue servers and spoofing (cases 73-78; R-SV-1 to R-SV-5)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from helpers import run_cli
from specharness import (
    A_MAC,
    DISCOVER,
    N1_LEASE,
    R1,
    R1B,
    REQUEST,
    S1,
    S2,
    WRITER,
    A,
    B,
    Capture,
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
    o_req,
    o_server,
    offer,
    rec,
    snapshot,
)

IP, IP2 = "192.0.2.100", "192.0.2.101"
ROGUE_IP = "192.0.2.200"


def case_73a(c: Case, rclient: redis.Redis) -> None:
    """A rogue ACK that answers first neither writes nor decides the transaction."""
    c.add(0.00, client_msg(DISCOVER, 0x6001, A))
    c.add(0.05, offer(0x6001, ROGUE_IP, A, lease=86400, server=X), src=X)
    c.add(0.10, offer(0x6001, IP, A), src=S1)
    c.add(0.20, client_msg(REQUEST, 0x6001, A, o_req(IP), o_server(S1)))
    c.add(0.25, ack(0x6001, ROGUE_IP, A, lease=86400, server=X), src=X)
    c.add(0.30, ack(0x6001, IP, A), src=S1)
    c.feed()
    assert_absent(rclient, ROGUE_IP)
    assert_lease(rclient, c.rec(IP, A, S1, 0x6001, 0.3, 3600))
    assert_only(rclient, IP)


def rogue_over(c: Case, rclient: redis.Redis, owner: bytes, held: str, rogue_yi: str) -> None:
    """S1 grants `held` to owner; X then grants rogue_yi to A: nothing changes."""
    c.add(0, ack(0x6010, held, owner), src=S1).feed()
    before = snapshot(rclient)
    c.add(1, ack(0x6011, rogue_yi, A, server=X), src=X).feed()
    assert_unchanged(before, rclient)
    assert_only(rclient, held)


CASE_73 = {
    "73a": case_73a,
    "73b": lambda s, rclient: rogue_over(s, rclient, B, "192.0.2.150", "192.0.2.150"),
    "73c": lambda s, rclient: rogue_over(s, rclient, A, IP, IP2),
}


@pytest.mark.parametrize("variant", CASE_73)
def test_case_73_rogue_ack_changes_nothing(
        redis_url: str, rclient: redis.Redis, tmp_path: Path, variant: str) -> None:
    """A rogue ACK (54 not allowed) writes, decides, overwrites and supersedes nothing."""
    CASE_73[variant](Case(redis_url, tmp_path), rclient)


def test_case_74_rogue_nak_changes_nothing(
        redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """A rogue NAK changes nothing and does not decide; S1's ACK then refreshes the record."""
    c = Case(redis_url, tmp_path)
    c.setup_lease(IP, hostname="alpha")
    before = snapshot(rclient)
    c.add(600, client_msg(REQUEST, 0x6002, A, ci=IP), src=IP, dst=S1)
    c.add(600.05, nak(0x6002, A, server=X), src=X)
    c.feed()
    assert_unchanged(before, rclient)
    c.add(600.1, ack(0x6002, IP, A, ci=IP), src=S1, dst=IP).feed()
    assert_lease(rclient, c.rec(IP, A, S1, 0x6002, 600.1, 3600, hostname="alpha",
                                hostname_src="prev"))
    assert_only(rclient, IP)


def test_case_75_client_taking_a_rogue_offer_gets_no_record(
        redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """A client that selects the rogue's offer gets no record."""
    c = Case(redis_url, tmp_path)
    c.dora(0x6003, ROGUE_IP, server=X).feed()
    assert_only(rclient)


def spoofed_ack(c: Case) -> None:
    """X, from its own address, writes S1 into option 54."""
    c.add(0, ack(0x6004, "192.0.2.201", A), src=X)


def relay_copy(giaddr: str) -> Callable[[Case], None]:
    """The relay->client copy of S1's ACK, from R1, carrying `giaddr`."""
    def add(c: Case) -> None:
        c.add(0, ack(0x6005, N1_LEASE, A, gi=giaddr), src=R1, dst=N1_LEASE)
    return add


def server_copy(c: Case) -> None:
    """The server->relay copy of S1's ACK."""
    c.add(0, ack(0x6005, N1_LEASE, A, gi=R1), src=S1, dst=R1, dport=67)


RELAYED = {"giaddr": R1}
CASE_76 = {
    # id: (packets, tracker settings, expected (ip, xid, extra fields) or None)
    "default": (spoofed_ack, {}, ("192.0.2.201", 0x6004, {})),
    "strict": (spoofed_ack, {"strict_source": True}, None),
    "strict-trusted-relay-copy": (relay_copy(R1), {"strict_source": True,
                                                   "trusted_relays": frozenset({R1})},
                                  (N1_LEASE, 0x6005, RELAYED)),
    "strict-untrusted-relay-copy": (relay_copy(R1), {"strict_source": True}, None),
    "strict-server-copy": (server_copy, {"strict_source": True}, (N1_LEASE, 0x6005, RELAYED)),
    "strict-trusted-relay-other-giaddr": (relay_copy(R1B), {"strict_source": True,
                                                            "trusted_relays": frozenset({R1})},
                                          None),
}


@pytest.mark.parametrize("variant", CASE_76)
def test_case_76_spoofed_server_identifier_and_strict_source(
        redis_url: str, rclient: redis.Redis, tmp_path: Path, variant: str) -> None:
    """A spoofed 54=S1 passes by default; strict_source checks the IP source (and giaddr)."""
    packets, config, expected = CASE_76[variant]
    c = Case(redis_url, tmp_path, **config)
    packets(c)
    c.feed()
    if expected is None:
        assert_only(rclient)
        return
    ip, xid, extra = expected
    assert_lease(rclient, c.rec(ip, A, S1, xid, 0, 3600, **extra))
    assert_only(rclient, ip)


# RFC 5107: R1 adds 82 sub-option 11 = R1, and S1 puts R1 into option 54.
OVERRIDE_AGENT = o(82, b"\x01\x08ge-0/0/1" + b"\x0b\x04" + bytes([198, 51, 100, 1]))


@pytest.mark.parametrize("allowed", [(S1, S2), (S1, S2, R1)], ids=["not-listed", "listed"])
def test_case_77_server_identifier_override_needs_the_relay_allowed(
        redis_url: str, rclient: redis.Redis, tmp_path: Path, allowed: tuple[str, ...]) -> None:
    """With server-identifier override the relay must be an allowed server (R-SV-5)."""
    c = Case(redis_url, tmp_path, allowed=allowed)
    c.relayed_exchange(range(1, 9), xid=0x7700, yi=N1_LEASE, relay=R1, hostname=None,
                       agent=OVERRIDE_AGENT, server_id=R1).feed()
    if R1 not in allowed:
        assert_only(rclient)
        return
    assert_lease(rclient, c.rec(N1_LEASE, A, R1, 0x7700, 0.11, 3600, giaddr=R1,
                                circuit_id=b"ge-0/0/1".hex()))
    assert_only(rclient, N1_LEASE)


ROGUE_GRANT = ack(0x7800, ROGUE_IP, A, server=X)


def case_78_applied(redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """With an empty allow-list every server is accepted: X's ACK is applied."""
    c = Case(redis_url, tmp_path, allowed=())
    c.add(0, ROGUE_GRANT, src=X).feed()
    assert_lease(rclient, c.rec(ROGUE_IP, A, X, 0x7800, 0, 3600))
    assert_only(rclient, ROGUE_IP)


def replay_cli(redis_url: str, rclient: redis.Redis, tmp_path: Path, allow: list[str]) -> None:
    """The replay command warns at startup exactly when the allow-list is empty (R-SV-4)."""
    cap = Capture().add(0, ROGUE_GRANT, src=X)
    path = cap.write(tmp_path / "rogue.pcap")
    done = run_cli("replay", str(path), "--redis-url", redis_url, "--as-captured",
                   "--writer-id", WRITER, *allow)
    assert done.returncode == 0, done.stderr
    assert ("warning" in done.stderr.lower()) == (not allow), done.stderr
    if allow:
        assert_only(rclient)
    else:
        assert_lease(rclient, rec(ROGUE_IP, A_MAC, X, 0x7800, cap.t0, 0, 3600))


CASE_78 = {
    "applied": case_78_applied,
    "cli-warns": lambda url, rclient, tmp: replay_cli(url, rclient, tmp, []),
    "cli-silent-when-listed": lambda url, rclient, tmp: replay_cli(url, rclient, tmp,
                                                                   ["--allow-server", S1]),
}


@pytest.mark.parametrize("variant", CASE_78)
def test_case_78_empty_allow_list_accepts_every_server(
        redis_url: str, rclient: redis.Redis, tmp_path: Path, variant: str) -> None:
    """Empty allow-list: X's ACK is applied, and a warning is given at startup (R-SV-4)."""
    CASE_78[variant](redis_url, rclient, tmp_path)
