"""Unit tests of the sans-IO tracker against the spec's cases (Part 2), with messages built
directly as DhcpMessage objects (no decoder, no Redis).

Times are t0 + delta; `rec()` builds the spec's REC(...) standard record.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace
from typing import Any

import pytest
from helpers import build_lease

from sniffer.commands import Command, Grant, GrantEvent, Rejected, Revoke
from sniffer.dhcp import (
    ACK,
    DECLINE,
    DISCOVER,
    INFORM,
    NAK,
    OFFER,
    RELEASE,
    REQUEST,
    ZERO,
    DhcpMessage,
)
from sniffer.lease import INFINITE, Lease
from sniffer.tracker import Tracker, TrackerConfig

T0 = 1_700_000_000
A = bytes.fromhex("02000000000a")
B = bytes.fromhex("02000000000b")
ID_A = "0102000000000a"
ID_B = "0102000000000b"
S1, S2, X = "192.0.2.1", "192.0.2.2", "192.0.2.66"
R1, R1B, R2 = "198.51.100.1", "198.51.100.2", "203.0.113.1"
CIRCUIT, REMOTE = "67652d302f302f31", "737731"  # "ge-0/0/1", "sw1"
BOOTREQUEST, BOOTREPLY = 101, 102  # test-only names for messages without option 53
SENDER = "sender"  # default marker: the spec's defaults for option 54 and option 1 (section 0.3)
SERVER_TYPES = (OFFER, ACK, NAK, BOOTREPLY)


def msg(kind: int, t: float = 0.0, *, xid: int = 0x1001, ch: bytes = A, htype: int = 1,
        src: str | None = None, yi: str = ZERO, ci: str = ZERO, gi: str = ZERO,
        sid: str | None = SENDER, lease: int | None = None, req: str | None = None,
        host: str | None = None, fqdn: str | None = None, cid: str | None = None,
        mask: str | None = SENDER, relay: tuple[str | None, str | None] | None = None,
        framing: bool = False) -> DhcpMessage:
    """A decoded message with the spec's defaults: replies come from S1 with their sender's 54,
    and OFFERs and ACKs carry 1=/24; clients send from 0.0.0.0 (or ciaddr)."""
    reply = kind in SERVER_TYPES
    if src is None:
        src = S1 if reply else ci
    if sid == SENDER:
        sid = src if kind in (OFFER, ACK, NAK) else None
    if mask == SENDER:
        mask = "255.255.255.0" if kind in (OFFER, ACK) else None
    return DhcpMessage(
        ts=T0 + t, src=src, dst="255.255.255.255", sport=67 if reply else 68,
        dport=68 if reply else 67, frame=0, op=2 if reply else 1, htype=htype, hlen=len(ch),
        hops=1 if gi != ZERO else 0, xid=xid, secs=0, flags=0, ciaddr=ci, yiaddr=yi,
        siaddr=ZERO, giaddr=gi, chaddr=ch,
        msg_type=None if kind in (BOOTREQUEST, BOOTREPLY) else kind,
        server_id=sid, requested_ip=req, lease_time=lease, subnet_mask=mask, routers=(),
        hostname=host, fqdn=fqdn, client_id=cid, rapid_commit=False,
        relay_info=relay is not None, circuit_id=relay[0] if relay else None,
        remote_id=relay[1] if relay else None, vendor_class=None, param_request_list=(),
        option_codes=(), framing_error=framing, capture_truncated=False)


def mac(ch: bytes) -> str:
    return ":".join(f"{b:02x}" for b in ch)


def rec(ip: str, ch: bytes = A, server: str = S1, xid: int = 0x1001, t: float = 0.0,
        T: int = 3600, **extra: Any) -> Lease:
    """REC(a, client, server, xid, delta, T) of the spec, plus the extra fields named."""
    return build_lease(ip, lease_time=T, updated=T0 + math.floor(t), mac=mac(ch) if ch else None,
                       server=server, xid=xid, **extra)


def tracker(*leases: Lease, **config: Any) -> Tracker:
    config.setdefault("allowed_servers", frozenset({S1, S2}))
    tr = Tracker(TrackerConfig(**config))
    tr.restore(leases)
    return tr


def run(tr: Tracker, *msgs: DhcpMessage, now: float = T0) -> list[Command]:
    """The commands of these messages. A grant carries its reply's capture time (checked here),
    left out (0) of what is returned so that the tests compare records and events."""
    commands: list[Command] = []
    for m in msgs:
        for command in tr.handle(m, now):
            if isinstance(command, Grant):
                assert command.ts == m.ts
                command = replace(command, ts=0.0)
            commands.append(command)
    return commands


def view(tr: Tracker) -> dict[str, Lease]:
    return dict(tr.leases)


def dora(ip: str, t: float = 0.0, *, xid: int = 0x1001, ch: bytes = A, server: str = S1,
         lease: int = 3600, host: str | None = None, **ack: Any) -> list[DhcpMessage]:
    """DISCOVER, OFFER, REQUEST (SELECTING) and ACK, 0.1 s apart, the ACK at t + 0.3."""
    return [
        msg(DISCOVER, t, xid=xid, ch=ch, host=host),
        msg(OFFER, t + 0.1, xid=xid, ch=ch, src=server, yi=ip, lease=lease),
        msg(REQUEST, t + 0.2, xid=xid, ch=ch, req=ip, sid=server, host=host),
        msg(ACK, t + 0.3, xid=xid, ch=ch, src=server, yi=ip, lease=lease, **ack),
    ]


# ---- A. Normal exchanges ---------------------------------------------------------------------

def test_case_1_four_way_exchange() -> None:
    tr = tracker()
    assert run(tr, msg(DISCOVER, 0.0, host="alpha"),
               msg(OFFER, 0.1, yi="192.0.2.100", lease=3600)) == []
    assert view(tr) == {}
    commands = run(tr, msg(REQUEST, 0.2, req="192.0.2.100", sid=S1, host="alpha"),
                   msg(ACK, 0.3, yi="192.0.2.100", lease=3600))
    expected = rec("192.0.2.100", t=0.3, hostname="alpha", hostname_src="req12")
    assert commands == [Grant(expected, "granted")]
    assert view(tr) == {"192.0.2.100": expected}
    assert tr.counters["granted"] == 1


C2_IP = "198.51.100.50"
C2_82 = (CIRCUIT, REMOTE)
C2 = {
    1: msg(DISCOVER, 0.000, xid=0x1002, host="alpha"),
    2: msg(DISCOVER, 0.001, xid=0x1002, src=R1, gi=R1, host="alpha", relay=C2_82),
    3: msg(OFFER, 0.010, xid=0x1002, yi=C2_IP, gi=R1, lease=3600, relay=C2_82),
    4: msg(OFFER, 0.011, xid=0x1002, src=R1, sid=S1, yi=C2_IP, gi=R1, lease=3600),
    5: msg(REQUEST, 0.100, xid=0x1002, req=C2_IP, sid=S1, host="alpha"),
    6: msg(REQUEST, 0.101, xid=0x1002, src=R1, gi=R1, req=C2_IP, sid=S1, host="alpha",
           relay=C2_82),
    7: msg(ACK, 0.110, xid=0x1002, yi=C2_IP, gi=R1, lease=3600, relay=C2_82),
    8: msg(ACK, 0.111, xid=0x1002, src=R1, sid=S1, yi=C2_IP, gi=R1, lease=3600),
}
C2_REC = rec(C2_IP, xid=0x1002, hostname="alpha", hostname_src="req12", giaddr=R1,
             circuit_id=CIRCUIT, remote_id=REMOTE)


def after_case_2() -> Tracker:
    tr = tracker()
    run(tr, *C2.values())
    assert view(tr) == {C2_IP: C2_REC}
    return tr


@pytest.mark.parametrize("order", [[7, 8], [8, 7]], ids=["in-order", "reversed-7-8"])
def test_case_2_relayed_both_interfaces(order: list[int]) -> None:
    tr = tracker()
    assert run(tr, *(C2[n] for n in range(1, 7))) == []
    first, second = (C2[n] for n in order)
    assert run(tr, first) == [Grant(C2_REC, "granted")]
    assert run(tr, second) == []  # a duplicate (R-TX-7)
    assert view(tr) == {C2_IP: C2_REC}
    assert tr.counters["duplicates"] == 1


def test_case_3_client_side_only() -> None:
    tr = tracker()
    commands = run(tr, C2[1], C2[4], C2[5], C2[8])
    expected = rec(C2_IP, xid=0x1002, hostname="alpha", hostname_src="req12", giaddr=R1)
    assert commands == [Grant(expected, "granted")]
    assert view(tr) == {C2_IP: expected}


def test_case_4_server_side_only() -> None:
    tr = tracker()
    assert run(tr, C2[2], C2[3], C2[6], C2[7]) == [Grant(C2_REC, "granted")]
    assert view(tr) == {C2_IP: C2_REC}


C5 = [
    msg(DISCOVER, 0.0, xid=0x1005, host="alpha"),
    msg(OFFER, 0.1, xid=0x1005, yi="192.0.2.100", lease=3600),
    msg(OFFER, 0.1, xid=0x1005, src=S2, yi="192.0.2.150", lease=7200),
    msg(REQUEST, 1.0, xid=0x1005, req="192.0.2.150", sid=S2, host="alpha"),
]
C5_ACK_S2 = msg(ACK, 1.1, xid=0x1005, src=S2, yi="192.0.2.150", lease=7200)
C6_ACK_S1 = msg(ACK, 1.2, xid=0x1005, yi="192.0.2.100", lease=3600)


def test_case_5_client_selects_one_offer() -> None:
    tr = tracker()
    commands = run(tr, *C5, C5_ACK_S2)
    expected = rec("192.0.2.150", server=S2, xid=0x1005, t=1.1, T=7200, hostname="alpha",
                   hostname_src="req12")
    assert commands == [Grant(expected, "granted")]
    assert view(tr) == {"192.0.2.150": expected}


def test_case_6_ack_from_server_not_selected_after_decision() -> None:
    tr = tracker()
    run(tr, *C5, C5_ACK_S2)
    before = view(tr)
    assert run(tr, C6_ACK_S1) == [Rejected("late_other_server", C6_ACK_S1)]
    assert view(tr) == before


def test_case_6b_ack_from_server_not_selected_first() -> None:
    tr = tracker()
    commands = run(tr, *C5, C6_ACK_S1, C5_ACK_S2)
    expected = rec("192.0.2.100", xid=0x1005, t=1.2, hostname="alpha", hostname_src="req12")
    assert commands == [Grant(expected, "granted"), Rejected("late_other_server", C5_ACK_S2)]
    assert view(tr) == {"192.0.2.100": expected}
    assert tr.counters["ack_not_selected"] == 1


def test_case_7_init_reboot_confirmed() -> None:
    old = rec("192.0.2.100", xid=0xABCD, t=-100)
    tr = tracker(old)
    commands = run(tr, msg(REQUEST, 0.0, xid=0x1007, req="192.0.2.100", host="alpha"),
                   msg(ACK, 0.1, xid=0x1007, yi="192.0.2.100", lease=3600))
    expected = rec("192.0.2.100", xid=0x1007, t=0.1, hostname="alpha", hostname_src="req12")
    assert commands == [Grant(expected, "renewed", old)]
    assert view(tr) == {"192.0.2.100": expected}


def test_case_8_init_reboot_answered_by_two_servers() -> None:
    tr = tracker()
    late = msg(ACK, 0.12, xid=0x1008, src=S2, yi="192.0.2.100", lease=1800)
    commands = run(tr, msg(REQUEST, 0.0, xid=0x1008, req="192.0.2.100"),
                   msg(ACK, 0.1, xid=0x1008, yi="192.0.2.100", lease=3600), late)
    expected = rec("192.0.2.100", xid=0x1008, t=0.1)
    assert commands == [Grant(expected, "granted"), Rejected("late_other_server", late)]
    assert view(tr) == {"192.0.2.100": expected}


def test_case_8_variant_other_address() -> None:
    tr = tracker()
    late = msg(ACK, 0.12, xid=0x1008, src=S2, yi="192.0.2.101", lease=1800)
    run(tr, msg(REQUEST, 0.0, xid=0x1008, req="192.0.2.100"),
        msg(ACK, 0.1, xid=0x1008, yi="192.0.2.100", lease=3600))
    assert run(tr, late) == [Rejected("late_other_server", late)]
    assert list(view(tr)) == ["192.0.2.100"]


def test_case_8_variant_same_server_other_lease_time() -> None:
    tr = tracker()
    first = rec("192.0.2.100", xid=0x1008, t=0.1)
    second = rec("192.0.2.100", xid=0x1008, t=0.12, T=1800)
    commands = run(tr, msg(REQUEST, 0.0, xid=0x1008, req="192.0.2.100"),
                   msg(ACK, 0.1, xid=0x1008, yi="192.0.2.100", lease=3600),
                   msg(ACK, 0.12, xid=0x1008, yi="192.0.2.100", lease=1800))
    assert commands == [Grant(first, "granted"), Grant(second, "renewed", first)]
    assert view(tr) == {"192.0.2.100": second}


def test_case_9_init_reboot_unanswered() -> None:
    old = rec("192.0.2.100", xid=0xABCD, t=-100)
    tr = tracker(old)
    requests = [msg(REQUEST, t, xid=0x1009, req="192.0.2.100") for t in (0, 4, 12)]
    assert run(tr, *requests) == []
    assert view(tr) == {"192.0.2.100": old}
    assert tr.pending_transactions == 1


def test_case_10_renewing_keeps_relay_fields_and_hostname() -> None:
    tr = after_case_2()
    commands = run(tr,
                   msg(REQUEST, 1800.0, xid=0x100A, src=C2_IP, ci=C2_IP),
                   msg(ACK, 1800.01, xid=0x100A, ci=C2_IP, yi=C2_IP, lease=3600))
    expected = rec(C2_IP, xid=0x100A, t=1800, hostname="alpha", hostname_src="prev",
                   giaddr=R1, circuit_id=CIRCUIT, remote_id=REMOTE)
    assert expected.expires == T0 + 5400
    assert commands == [Grant(expected, "renewed", C2_REC)]
    assert view(tr) == {C2_IP: expected}


@pytest.mark.parametrize(("lease_time", "expires"), [(3000, T0 + 3600), (100, T0 + 700)])
def test_case_11_renewal_with_remaining_lifetime(lease_time: int, expires: int) -> None:
    old = rec("192.0.2.100")
    tr = tracker(old)
    commands = run(tr, msg(REQUEST, 600, xid=0x100B, ci="192.0.2.100"),
                   msg(ACK, 600.1, xid=0x100B, ci="192.0.2.100", yi="192.0.2.100",
                       lease=lease_time))
    expected = rec("192.0.2.100", xid=0x100B, t=600, T=lease_time)
    assert expected.expires == expires
    assert commands == [Grant(expected, "renewed", old)]
    assert view(tr) == {"192.0.2.100": expected}


def test_case_12_rebinding_answered_by_other_server() -> None:
    tr = after_case_2()
    ack = msg(ACK, 3150.05, xid=0x100C, src=S2, ci=C2_IP, yi=C2_IP, gi=R1, lease=3600,
              relay=C2_82)
    commands = run(tr,
                   msg(REQUEST, 3150.0, xid=0x100C, ci=C2_IP),
                   msg(REQUEST, 3150.0, xid=0x100C, src=R1, ci=C2_IP, gi=R1, relay=C2_82),
                   msg(REQUEST, 3150.0, xid=0x100C, src=R1, ci=C2_IP, gi=R1, relay=C2_82),
                   ack,
                   msg(ACK, 3150.05, xid=0x100C, src=R1, sid=S2, ci=C2_IP, yi=C2_IP, gi=R1,
                       lease=3600))
    expected = rec(C2_IP, server=S2, xid=0x100C, t=3150, hostname="alpha", hostname_src="prev",
                   giaddr=R1, circuit_id=CIRCUIT, remote_id=REMOTE)
    assert commands == [Grant(expected, "renewed", C2_REC)]
    assert view(tr) == {C2_IP: expected}


C13_REC = rec("192.0.2.120", xid=0x100D, t=0.1, T=600, hostname="cam1", hostname_src="req12")


def test_case_13_rapid_commit() -> None:
    tr = tracker()
    commands = run(tr, msg(DISCOVER, 0.0, xid=0x100D, host="cam1"),
                   msg(ACK, 0.1, xid=0x100D, yi="192.0.2.120", lease=600))
    assert commands == [Grant(C13_REC, "granted")]
    assert view(tr) == {"192.0.2.120": C13_REC}


C14 = [
    msg(DISCOVER, 0.0, xid=0x100E),
    msg(OFFER, 0.1, xid=0x100E, src=S2, yi="192.0.2.150", lease=3600),
    msg(ACK, 0.1, xid=0x100E, yi="192.0.2.120", lease=600),
]
C14_REC = rec("192.0.2.120", xid=0x100E, t=0.1, T=600)


def test_case_14_rapid_commit_with_competing_offer() -> None:
    tr = tracker()
    assert run(tr, *C14) == [Grant(C14_REC, "granted")]
    assert view(tr) == {"192.0.2.120": C14_REC}


def test_case_15_rapid_commit_then_other_offer_taken() -> None:
    tr = tracker()
    run(tr, *C14)
    ack = msg(ACK, 1.1, xid=0x100E, src=S2, yi="192.0.2.150", lease=3600)
    commands = run(tr, msg(REQUEST, 1.0, xid=0x100E, req="192.0.2.150", sid=S2), ack)
    expected = rec("192.0.2.150", server=S2, xid=0x100E, t=1.1)
    assert commands == [Grant(expected, "granted"), Revoke(C14_REC, "superseded", ack.ts)]
    assert view(tr) == {"192.0.2.150": expected}


C16_REQUEST = msg(BOOTREQUEST, 0.0, xid=0x1010, host="lab-pc")
C16_REC = rec("192.0.2.130", xid=0x1010, T=INFINITE, expires=None, hostname="lab-pc",
              hostname_src="req12", kind="bootp")


def bootreply(**changes: Any) -> DhcpMessage:
    fields: dict[str, Any] = {"xid": 0x1010, "yi": "192.0.2.130", "mask": "255.255.255.0"}
    fields.update(changes)
    return msg(BOOTREPLY, 0.1, **fields)


def test_case_16_bootp() -> None:
    tr = tracker()
    assert run(tr, C16_REQUEST, bootreply()) == [Grant(C16_REC, "granted")]
    assert view(tr) == {"192.0.2.130": C16_REC}
    assert C16_REC.infinite


def test_case_16_bootp_not_tracked() -> None:
    tr = tracker(track_bootp=False)
    assert run(tr, C16_REQUEST, bootreply()) == []
    assert view(tr) == {}
    assert tr.counters["ignored_bootp"] == 2
    assert tr.pending_transactions == 0


def test_case_16_bootp_from_rogue_source() -> None:
    tr = tracker()
    reply = bootreply(src=X)
    assert run(tr, C16_REQUEST, reply) == [Rejected("rogue_reply", reply)]
    assert view(tr) == {}


def test_case_16_bootp_with_lease_time() -> None:
    tr = tracker()
    expected = rec("192.0.2.130", xid=0x1010, T=86400, hostname="lab-pc",
                   hostname_src="req12", kind="bootp")
    assert run(tr, C16_REQUEST, bootreply(lease=86400)) == [Grant(expected, "granted")]
    assert view(tr) == {"192.0.2.130": expected}


def test_case_16_bootp_without_address() -> None:
    tr = tracker()
    reply = bootreply(yi=ZERO)
    assert run(tr, C16_REQUEST, reply) == [Rejected("bad_yiaddr", reply)]
    assert view(tr) == {}


# ---- B. Bindings that end, or never existed -------------------------------------------------

def test_case_17_nak_to_init_reboot_after_move() -> None:
    tr = after_case_2()
    nak = msg(NAK, 100.01, xid=0x1011, gi=R2)
    commands = run(tr, msg(REQUEST, 100.0, xid=0x1011, req=C2_IP),
                   msg(REQUEST, 100.0, xid=0x1011, src=R2, gi=R2, req=C2_IP),
                   nak, msg(NAK, 100.01, xid=0x1011, src=R2, sid=S1, gi=R2))
    assert commands == [Revoke(C2_REC, "nak", nak.ts)]
    assert view(tr) == {}
    n2 = "203.0.113.50"
    commands = run(tr, *dora(n2, 102, xid=0x1012, gi=R2))
    expected = rec(n2, xid=0x1012, t=102.3, giaddr=R2)
    assert commands == [Grant(expected, "granted")]
    assert view(tr) == {n2: expected}
    assert tr.counters["nak_deleted"] == 1


def test_case_18_nak_when_record_is_another_clients() -> None:
    held = rec("192.0.2.100", ch=B, xid=0x55, t=-10)
    tr = tracker(held)
    assert run(tr, msg(REQUEST, 0, xid=0x1012, req="192.0.2.100"),
               msg(NAK, 0.1, xid=0x1012)) == []
    assert view(tr) == {"192.0.2.100": held}


def test_case_19_nak_to_renewing() -> None:
    held = rec("192.0.2.100", t=-10)
    tr = tracker(held)
    nak = msg(NAK, 0.1, xid=0x1013)
    commands = run(tr, msg(REQUEST, 0, xid=0x1013, src="192.0.2.100", ci="192.0.2.100"), nak)
    assert commands == [Revoke(held, "nak", nak.ts)]
    assert view(tr) == {}


@pytest.mark.parametrize("stale", [False, True], ids=["no-record", "stale-record"])
def test_case_20_nak_to_selecting(stale: bool) -> None:
    held = rec("192.0.2.101", t=-10)
    tr = tracker(*([held] if stale else []))
    nak = msg(NAK, 0.3, xid=0x1014)
    commands = run(tr, msg(DISCOVER, 0, xid=0x1014),
                   msg(OFFER, 0.1, xid=0x1014, yi="192.0.2.101", lease=3600),
                   msg(REQUEST, 0.2, xid=0x1014, req="192.0.2.101", sid=S1), nak)
    assert commands == ([Revoke(held, "nak", nak.ts)] if stale else [])
    assert view(tr) == {}


def test_case_21_nak_without_request() -> None:
    held = rec("192.0.2.100", t=-10)
    tr = tracker(held)
    assert run(tr, msg(NAK, 0, xid=0x1015)) == []
    assert view(tr) == {"192.0.2.100": held}
    assert tr.counters["nak_uncorrelated"] == 1


def test_case_22a_ack_then_nak_from_other_server() -> None:
    tr = tracker()
    nak = msg(NAK, 0.2, xid=0x1016, src=S2)
    commands = run(tr, msg(REQUEST, 0, xid=0x1016, req="192.0.2.100"),
                   msg(ACK, 0.1, xid=0x1016, yi="192.0.2.100", lease=3600), nak)
    expected = rec("192.0.2.100", xid=0x1016, t=0.1)
    assert commands == [Grant(expected, "granted"), Rejected("late_other_server", nak)]
    assert view(tr) == {"192.0.2.100": expected}


def test_case_22b_nak_then_ack_from_other_server() -> None:
    held = rec("192.0.2.100", t=-10)
    tr = tracker(held)
    nak = msg(NAK, 0.1, xid=0x1017, src=S2)
    ack = msg(ACK, 0.2, xid=0x1017, yi="192.0.2.100", lease=3600)
    commands = run(tr, msg(REQUEST, 0, xid=0x1017, req="192.0.2.100"), nak, ack)
    assert commands == [Revoke(held, "nak", nak.ts), Rejected("late_other_server", ack)]
    assert view(tr) == {}


@pytest.mark.parametrize(("req", "ci"), [("192.0.2.100", ZERO), (None, "192.0.2.100")],
                         ids=["option-50", "ciaddr-fallback"])
def test_case_23_decline_after_ack(req: str | None, ci: str) -> None:
    tr = tracker()
    run(tr, *dora("192.0.2.100", xid=0x1018))
    granted = rec("192.0.2.100", xid=0x1018, t=0.3)
    assert view(tr) == {"192.0.2.100": granted}
    decline = msg(DECLINE, 1.5, xid=0x1019, req=req, ci=ci, src=ZERO, sid=S1)
    assert run(tr, decline) == [Revoke(granted, "declined", decline.ts)]
    assert view(tr) == {}
    assert tr.counters["decline_deleted"] == 1


def test_case_24_decline_of_another_clients_address() -> None:
    held = rec("192.0.2.100", ch=B, t=-10)
    tr = tracker(held)
    assert run(tr, msg(DECLINE, 0, req="192.0.2.100", sid=S1)) == []
    assert view(tr) == {"192.0.2.100": held}


@pytest.mark.parametrize(("release", "record_cid"), [
    ({"ci": "192.0.2.100", "sid": S1}, None),
    ({"ci": "192.0.2.100", "sid": S1, "cid": ID_A}, ID_A),
    ({"ci": "192.0.2.100"}, None),
    ({"req": "192.0.2.100", "sid": S1}, None),
], ids=["plain", "client-id", "no-54", "ciaddr-0-option-50"])
def test_case_25_release(release: dict[str, Any], record_cid: str | None) -> None:
    held = rec("192.0.2.100", t=-10, client_id=record_cid)
    tr = tracker(held)
    first = msg(RELEASE, 0, xid=0x101A, **release)
    assert run(tr, first) == [Revoke(held, "released", first.ts)]
    assert view(tr) == {}
    assert run(tr, msg(RELEASE, 0.001, xid=0x101A, **release)) == []  # a second copy
    assert tr.counters["release_deleted"] == 1


@pytest.mark.parametrize("release", [
    msg(RELEASE, 0, ch=B, ci="192.0.2.100", sid=S1),
    msg(RELEASE, 0, ci="192.0.2.100", sid=S1, cid="01020000000099"),
    msg(RELEASE, 0, ci="192.0.2.101"),
], ids=["26a-other-chaddr", "26b-other-client-id", "26c-other-address"])
def test_case_26_release_not_matching(release: DhcpMessage) -> None:
    held = rec("192.0.2.100", t=-10, client_id=ID_A)
    tr = tracker(held)
    assert run(tr, release) == []
    assert view(tr) == {"192.0.2.100": held}


def test_a_grant_names_its_subnet_for_the_stores_supersede() -> None:
    """Option 1 when the server sent it, else the configured prefix; None without supersede."""
    (grant,) = run(tracker(), *dora("192.0.2.100", mask="255.255.0.0"))
    assert isinstance(grant, Grant) and grant.subnet_prefix == 16
    (grant,) = run(tracker(default_prefix_len=20), *dora("192.0.2.100", mask=None))
    assert isinstance(grant, Grant) and grant.subnet_prefix == 20
    (grant,) = run(tracker(supersede_same_subnet=False), *dora("192.0.2.100"))
    assert isinstance(grant, Grant) and grant.subnet_prefix is None


@pytest.mark.parametrize(("kind", "reason"), [(RELEASE, "released"), (DECLINE, "declined")])
def test_a_binding_it_does_not_hold_is_left_to_the_store(kind: int, reason: str) -> None:
    """hive.md R-HV-6: another writer may have seen the grant this RELEASE or DECLINE ends; with
    end_unknown_bindings the tracker names the binding for the store to end, if the store's
    record is that client's. The tracker's own records are untouched."""
    held = rec("192.0.2.100", ch=B, t=-10)
    ended = msg(kind, 0, ci="192.0.2.101", req="192.0.2.101", sid=S1, cid=ID_A)
    assert run(tracker(held), ended) == []  # by default: what it does not hold, it leaves
    tr = tracker(held, end_unknown_bindings=True)
    (revoke,) = run(tr, ended)
    assert isinstance(revoke, Revoke) and not revoke.held
    assert (revoke.reason, revoke.ts, revoke.lease.ip, revoke.lease.mac,
            revoke.lease.client_id) == (reason, ended.ts, "192.0.2.101", mac(A), ID_A)
    (other,) = run(tr, msg(kind, 1, ci="192.0.2.100", req="192.0.2.100", sid=S1))
    assert isinstance(other, Revoke) and not other.held  # another client's record: the same
    assert view(tr) == {"192.0.2.100": held}
    assert tr.counters["release_deleted"] == tr.counters["decline_deleted"] == 0


@pytest.mark.parametrize("kind", [RELEASE, DECLINE])
def test_case_27_release_naming_rogue_server(kind: int) -> None:
    held = rec("192.0.2.100", t=-10)
    tr = tracker(held)
    assert run(tr, msg(kind, 0, ci="192.0.2.100", req="192.0.2.100", sid=X)) == []
    assert view(tr) == {"192.0.2.100": held}


@pytest.mark.parametrize("gi", [ZERO, R1], ids=["direct", "relayed"])
def test_case_28_inform_never_touches_a_lease(gi: str) -> None:
    held = rec("192.0.2.100", t=-10, hostname="alpha", hostname_src="req12")
    tr = tracker(held)
    ack_b = msg(ACK, 0.1, xid=0x101C, ch=B, ci="192.0.2.10", gi=gi, mask=None)
    ack_a = msg(ACK, 0.3, xid=0x101D, ci="192.0.2.100", gi=gi, mask=None)
    commands = run(tr, msg(INFORM, 0, xid=0x101C, ch=B, ci="192.0.2.10", gi=gi, host="bravo"),
                   ack_b,
                   msg(INFORM, 0.2, xid=0x101D, ci="192.0.2.100", gi=gi, host="renamed"),
                   ack_a)
    assert commands == [Rejected("ack_to_inform", ack_b), Rejected("ack_to_inform", ack_a)]
    assert view(tr) == {"192.0.2.100": held}


def test_case_29_inform_reply_with_lease_time() -> None:
    tr = tracker()
    ack = msg(ACK, 0.1, xid=0x101E, ci="192.0.2.100", lease=1234, mask=None)
    commands = run(tr, msg(INFORM, 0, xid=0x101E, ci="192.0.2.100"), ack)
    assert commands == [Rejected("ack_to_inform", ack)]
    assert view(tr) == {}


def test_case_30_expiry_needs_no_traffic_and_no_deletion() -> None:
    tr = tracker()
    commands = run(tr, *dora("192.0.2.100", -0.3, xid=0x101F, lease=5))
    granted = rec("192.0.2.100", xid=0x101F, T=5)
    assert granted.expires == T0 + 5
    assert commands == [Grant(granted, "granted")]
    # At t0+7 the record has expired (R-EX): a RELEASE finds nothing, and the tracker never
    # issues a deletion of its own; a new grant of the address is not a reassignment.
    assert run(tr, msg(RELEASE, 7, ci="192.0.2.100", sid=S1)) == []
    assert view(tr) == {}
    commands = run(tr, msg(ACK, 8, xid=0x2000, ch=B, yi="192.0.2.100", lease=3600))
    assert commands == [Grant(rec("192.0.2.100", ch=B, xid=0x2000, t=8), "granted")]


# ---- C. Artefacts of passive capture ----------------------------------------------------------

@pytest.mark.parametrize(("changes", "extra"), [
    ({"host": "alpha-srv"}, {"hostname": "alpha-srv", "hostname_src": "ack12"}),
    ({}, {}),
    ({"cid": ID_A}, {"client_id": ID_A}),
    ({"host": "alpha-srv", "ci": "192.0.2.100"}, {"hostname": "alpha-srv",
                                                   "hostname_src": "ack12"}),
], ids=["31", "31b", "31c", "31d"])
def test_case_31_ack_without_earlier_message(changes: dict[str, Any],
                                             extra: dict[str, Any]) -> None:
    tr = tracker()
    commands = run(tr, msg(ACK, 0, xid=0x2001, yi="192.0.2.100", lease=3600, **changes))
    expected = rec("192.0.2.100", xid=0x2001, **extra)
    assert commands == [Grant(expected, "granted")]
    assert view(tr) == {"192.0.2.100": expected}


def test_case_32_midstream_renewal_after_restart() -> None:
    held = rec("192.0.2.100", xid=0xAAAA, t=-1000, client_id=ID_A, hostname="alpha",
               hostname_src="req12")
    tr = tracker(held)
    commands = run(tr, msg(ACK, 0, xid=0x2002, src=S1, ci="192.0.2.100", yi="192.0.2.100",
                           lease=3600))
    expected = rec("192.0.2.100", xid=0x2002, client_id=ID_A, hostname="alpha",
                   hostname_src="prev")
    assert commands == [Grant(expected, "renewed", held)]
    assert view(tr) == {"192.0.2.100": expected}


def test_case_33_request_seen_ack_missed() -> None:
    tr = tracker()
    assert run(tr, *dora("192.0.2.100", xid=0x2003)[:3]) == []
    assert run(tr, msg(DISCOVER, 200, xid=0x9999, ch=B)) == []  # after txn_ttl
    assert view(tr) == {}
    assert tr.pending_transactions == 1


C34_IP = "198.51.100.50"


def c34(lease_10: int) -> list[DhcpMessage]:
    x = 0x2004
    return [
        msg(DISCOVER, 0.000, xid=x),
        msg(DISCOVER, 0.001, xid=x, src=R1, gi=R1),
        msg(DISCOVER, 0.001, xid=x, src=R1B, gi=R1B),
        msg(OFFER, 0.010, xid=x, yi=C34_IP, gi=R1, lease=3600),
        msg(OFFER, 0.011, xid=x, yi=C34_IP, gi=R1B, lease=3600),
        msg(REQUEST, 0.100, xid=x, req=C34_IP, sid=S1),
        msg(REQUEST, 0.101, xid=x, src=R1, gi=R1, req=C34_IP, sid=S1),
        msg(REQUEST, 0.101, xid=x, src=R1B, gi=R1B, req=C34_IP, sid=S1),
        msg(ACK, 0.300, xid=x, yi=C34_IP, gi=R1, lease=3600),
        msg(ACK, 0.302, xid=x, yi=C34_IP, gi=R1B, lease=lease_10),
        msg(ACK, 0.303, xid=x, src=R1, sid=S1, yi=C34_IP, gi=R1, lease=3600),
        msg(ACK, 0.304, xid=x, src=R1B, sid=S1, yi=C34_IP, gi=R1B, lease=lease_10),
    ]


def test_case_34_duplicate_acks_through_two_relays() -> None:
    tr = tracker()
    expected = rec(C34_IP, xid=0x2004, t=0.3, giaddr=R1)
    assert run(tr, *c34(3600)) == [Grant(expected, "granted")]
    assert view(tr) == {C34_IP: expected}
    assert tr.counters["duplicates"] == 3


def test_case_34_variant_second_reply_computed_separately() -> None:
    tr = tracker()
    first = rec(C34_IP, xid=0x2004, t=0.3, giaddr=R1)
    second = rec(C34_IP, xid=0x2004, t=0.3, T=3599, giaddr=R1B)
    assert run(tr, *c34(3599)) == [Grant(first, "granted"), Grant(second, "renewed", first)]
    assert view(tr) == {C34_IP: second}


def test_case_35_retransmitted_request_answered_again() -> None:
    tr = tracker()
    request = msg(REQUEST, 0.0, xid=0x2005, req="192.0.2.100", sid=S1)
    first = rec("192.0.2.100", xid=0x2005, t=0.1)
    assert run(tr, request, msg(ACK, 0.1, xid=0x2005, yi="192.0.2.100", lease=3600)) == [
        Grant(first, "granted")]
    second = rec("192.0.2.100", xid=0x2005, t=4.1)
    assert run(tr, msg(REQUEST, 4.0, xid=0x2005, req="192.0.2.100", sid=S1),
               msg(ACK, 4.1, xid=0x2005, yi="192.0.2.100", lease=3600)) == [
        Grant(second, "renewed", first)]
    assert second.expires == T0 + 4 + 3600
    assert view(tr) == {"192.0.2.100": second}


def test_case_36_reassignment_keeps_nothing_of_the_old_owner() -> None:
    held = rec("192.0.2.100", xid=0x77, t=-100, client_id=ID_A, hostname="alpha",
               hostname_src="req12", giaddr=R1, circuit_id=CIRCUIT)
    tr = tracker(held)
    expected = rec("192.0.2.100", ch=B, xid=0x2006, t=0.3)
    assert run(tr, *dora("192.0.2.100", xid=0x2006, ch=B)) == [
        Grant(expected, "reassigned", held)]
    assert view(tr) == {"192.0.2.100": expected}
    assert tr.counters["reassigned"] == 1


@pytest.mark.parametrize(("new_ip", "mask", "supersede", "kept"), [
    ("192.0.2.101", "255.255.255.0", True, False),
    ("192.0.2.101", None, True, False),
    ("192.0.2.200", "255.255.255.128", True, True),
    ("192.0.2.101", "255.255.255.0", False, True),
], ids=["37", "37b-default-prefix", "37c-other-/25", "37d-supersede-off"])
def test_case_37_client_moves_on_same_subnet(new_ip: str, mask: str | None, supersede: bool,
                                             kept: bool) -> None:
    held = rec("192.0.2.100", t=-100)
    tr = tracker(held, supersede_same_subnet=supersede)
    ack = dora(new_ip, xid=0x2007, mask=mask)
    expected = rec(new_ip, xid=0x2007, t=0.3)
    commands = run(tr, *ack)
    assert commands == [Grant(expected, "granted")] + (
        [] if kept else [Revoke(held, "superseded", ack[-1].ts)])
    assert view(tr) == ({"192.0.2.100": held} if kept else {}) | {new_ip: expected}


def test_case_38_other_subnet_is_not_superseded() -> None:
    tr = after_case_2()
    n2 = "203.0.113.50"
    expected = rec(n2, xid=0x2008, t=0.3, giaddr=R2)
    assert run(tr, *dora(n2, xid=0x2008, gi=R2)) == [Grant(expected, "granted")]
    assert view(tr) == {C2_IP: C2_REC, n2: expected}


def test_case_39_two_servers_hand_out_the_same_address() -> None:
    tr = tracker()
    first = rec("192.0.2.100", xid=0x2008, t=0.3)
    second = rec("192.0.2.100", ch=B, server=S2, xid=0x2009, t=30.3)
    commands = run(tr, *dora("192.0.2.100", xid=0x2008),
                   *dora("192.0.2.100", 30, xid=0x2009, ch=B, server=S2))
    assert commands == [Grant(first, "granted"), Grant(second, "reassigned", first)]
    assert view(tr) == {"192.0.2.100": second}


# ---- D. Lease time ----------------------------------------------------------------------------

def test_case_40_infinite_lease_then_finite() -> None:
    tr = tracker()
    infinite = rec("192.0.2.100", xid=0x3001, t=0.3, T=INFINITE, expires=None)
    assert run(tr, *dora("192.0.2.100", xid=0x3001, lease=INFINITE)) == [
        Grant(infinite, "granted")]
    finite = rec("192.0.2.100", xid=0x3002, t=1000)
    assert run(tr, msg(REQUEST, 1000, xid=0x3002, ci="192.0.2.100"),
               msg(ACK, 1000, xid=0x3002, yi="192.0.2.100", lease=3600)) == [
        Grant(finite, "renewed", infinite)]
    assert view(tr) == {"192.0.2.100": finite}


def test_case_40_variant_finite_then_infinite() -> None:
    held = rec("192.0.2.100", t=-10)
    tr = tracker(held)
    infinite = rec("192.0.2.100", xid=0x3003, T=INFINITE, expires=None)
    assert run(tr, msg(ACK, 0, xid=0x3003, yi="192.0.2.100", lease=INFINITE)) == [
        Grant(infinite, "renewed", held)]
    assert view(tr) == {"192.0.2.100": infinite}


@pytest.mark.parametrize("setup", [False, True], ids=["no-record", "record-unchanged"])
def test_case_41_ack_without_lease_time(setup: bool) -> None:
    held = rec("192.0.2.100", t=-10)
    tr = tracker(*([held] if setup else []))
    ack = msg(ACK, 0.3, xid=0x3002, yi="192.0.2.100")
    assert run(tr, *dora("192.0.2.100", xid=0x3002)[:3], ack) == [
        Rejected("no_lease_time", ack)]
    assert view(tr) == ({"192.0.2.100": held} if setup else {})


@pytest.mark.parametrize("setup", [False, True], ids=["no-record", "record-unchanged"])
def test_case_42_lease_time_zero(setup: bool) -> None:
    held = rec("192.0.2.100", t=-2600)  # expires t0+1000
    tr = tracker(*([held] if setup else []))
    ack = msg(ACK, 0.1, xid=0x3003, ci="192.0.2.100", yi="192.0.2.100", lease=0)
    assert run(tr, msg(REQUEST, 0, xid=0x3003, ci="192.0.2.100"), ack) == [
        Rejected("zero_lease", ack)]
    assert view(tr) == ({"192.0.2.100": held} if setup else {})


@pytest.mark.parametrize("lease_time", [4294967294, 2147483648])
def test_case_44_very_long_finite_leases(lease_time: int) -> None:
    tr = tracker()
    expected = rec("192.0.2.100", xid=0x3004, T=lease_time)
    assert expected.expires == T0 + lease_time
    assert run(tr, msg(ACK, 0, xid=0x3004, yi="192.0.2.100", lease=lease_time)) == [
        Grant(expected, "granted")]


def test_case_45_offer_and_ack_lease_times_differ() -> None:
    tr = tracker()
    run(tr, msg(DISCOVER, 0, xid=0x3005),
        msg(OFFER, 0.1, xid=0x3005, yi="192.0.2.100", lease=7200),
        msg(REQUEST, 0.2, xid=0x3005, req="192.0.2.100", sid=S1),
        msg(ACK, 0.3, xid=0x3005, yi="192.0.2.100", lease=3600))
    assert view(tr)["192.0.2.100"].lease_time == 3600


# ---- E. Option 82 -----------------------------------------------------------------------------

def test_case_50c_new_relayed_value_replaces_old() -> None:
    tr = after_case_2()
    commands = run(tr, msg(REQUEST, 100, xid=0x5000, src=R1, ci=C2_IP, gi=R1,
                           relay=("706f727437", None)),
                   msg(ACK, 100.1, xid=0x5000, yi=C2_IP, gi=R1, lease=3600,
                       relay=("706f727437", None)))
    expected = rec(C2_IP, xid=0x5000, t=100, hostname="alpha", hostname_src="prev",
                   giaddr=R1, circuit_id="706f727437")
    assert commands == [Grant(expected, "renewed", C2_REC)]


def test_case_50d_invalid_option_82_keeps_earlier_values() -> None:
    tr = after_case_2()
    # The decoder treats a bad 82 as absent (R-IN-10): relay_info false, no sub-options.
    commands = run(tr, msg(ACK, 100.1, xid=0x5001, yi=C2_IP, gi=R1, lease=3600))
    expected = rec(C2_IP, xid=0x5001, t=100, hostname="alpha", hostname_src="prev",
                   giaddr=R1, circuit_id=CIRCUIT, remote_id=REMOTE)
    assert commands == [Grant(expected, "renewed", C2_REC)]


def test_case_51_option_82_from_a_client_is_ignored() -> None:
    tr = tracker()
    spoof = ("73706f6f66", None)
    expected = rec("192.0.2.100", t=0.1)
    assert run(tr, msg(REQUEST, 0, req="192.0.2.100", sid=S1, relay=spoof),
               msg(ACK, 0.1, yi="192.0.2.100", lease=3600, relay=spoof)) == [
        Grant(expected, "granted")]


# ---- F. Hostnames -----------------------------------------------------------------------------

@pytest.mark.parametrize(("request_name", "ack_names", "hostname", "source"), [
    ({"host": "alpha"}, {"host": "alpha.example.org"}, "alpha.example.org", "ack12"),  # 52
    ({"host": "alpha"}, {}, "alpha", "req12"),  # 53
    ({"host": "android-3f2a"}, {"host": "kitchen-tablet"}, "kitchen-tablet", "ack12"),  # 54
    ({"fqdn": "alpha.example.org"}, {"fqdn": "alpha.example.org"}, "alpha.example.org",
     "ack81"),  # 56
    ({"fqdn": "alpha.example.org"}, {}, "alpha.example.org", "req81"),  # 56 variant
    ({"fqdn": "alpha.example.org", "host": "other"}, {}, "alpha.example.org", "req81"),
    ({}, {"fqdn": "alpha.example.org", "host": "x"}, "alpha.example.org", "ack81"),
], ids=["52", "53", "54", "56", "56-req81", "56-both-in-request", "56-ack81-wins"])
def test_hostname_precedence(request_name: dict[str, Any], ack_names: dict[str, Any],
                             hostname: str, source: str) -> None:
    tr = tracker()
    run(tr, msg(REQUEST, 0, xid=0x4000, req="192.0.2.100", sid=S1, **request_name),
        msg(ACK, 0.1, xid=0x4000, yi="192.0.2.100", lease=3600, **ack_names))
    lease = view(tr)["192.0.2.100"]
    assert (lease.hostname, lease.hostname_src) == (hostname, source)


def test_case_55_hostname_only_in_the_discover() -> None:
    tr = tracker()
    run(tr, msg(DISCOVER, 0, xid=0x4001, host="alpha"),
        msg(OFFER, 0.1, xid=0x4001, yi="192.0.2.100", lease=3600),
        msg(REQUEST, 0.2, xid=0x4001, req="192.0.2.100", sid=S1),
        msg(ACK, 0.3, xid=0x4001, yi="192.0.2.100", lease=3600))
    lease = view(tr)["192.0.2.100"]
    assert (lease.hostname, lease.hostname_src) == ("alpha", "req12")


@pytest.mark.parametrize(("ch", "request_name", "expected"), [
    (A, None, ("alpha", "prev")),
    (A, "alpha2", ("alpha2", "req12")),
    (B, None, (None, None)),
], ids=["58a", "58b", "58c"])
def test_case_58_hostnames_on_renewal(ch: bytes, request_name: str | None,
                                      expected: tuple[str | None, str | None]) -> None:
    tr = tracker(rec("192.0.2.100", t=-100, hostname="alpha", hostname_src="req12"))
    run(tr, msg(REQUEST, 0, xid=0x4002, ch=ch, ci="192.0.2.100", host=request_name),
        msg(ACK, 0.1, xid=0x4002, ch=ch, ci="192.0.2.100", yi="192.0.2.100", lease=3600))
    lease = view(tr)["192.0.2.100"]
    assert (lease.hostname, lease.hostname_src) == expected
    assert lease.mac == mac(ch)


# ---- G. Client identity and hardware types ---------------------------------------------------

C60_ID = "ff1234567800020000ab1101020304"


def after_case_60() -> tuple[Tracker, Lease]:
    tr = tracker()
    run(tr, msg(REQUEST, 0, xid=0x6000, req="192.0.2.100", sid=S1, cid=C60_ID),
        msg(ACK, 0.1, xid=0x6000, yi="192.0.2.100", lease=3600))
    expected = rec("192.0.2.100", xid=0x6000, client_id=C60_ID)
    assert view(tr) == {"192.0.2.100": expected}
    return tr, expected


@pytest.mark.parametrize(("ch", "cid"), [(A, C60_ID), (A, None), (B, C60_ID)],
                         ids=["same-61", "no-61-hw-fallback", "other-chaddr-same-61"])
def test_case_60_client_id_differs_from_chaddr(ch: bytes, cid: str | None) -> None:
    tr, held = after_case_60()
    release = msg(RELEASE, 10, ch=ch, ci="192.0.2.100", sid=S1, cid=cid)
    assert run(tr, release) == [Revoke(held, "released", release.ts)]
    assert view(tr) == {}


@pytest.mark.parametrize(("request_cid", "ack_cid", "client_id", "hostname"), [
    (ID_A, ID_A, ID_A, "alpha"),
    (ID_A, None, ID_A, "alpha"),
    (ID_A, "01020000000099", "01020000000099", None),
], ids=["61a-echo", "61b-from-transaction", "61c-uncorrelated"])
def test_case_61_client_id_echo(request_cid: str, ack_cid: str | None, client_id: str,
                                hostname: str | None) -> None:
    tr = tracker()
    run(tr, msg(REQUEST, 0, xid=0x5001, req="192.0.2.100", sid=S1, cid=request_cid,
                host="alpha"),
        msg(ACK, 0.1, xid=0x5001, yi="192.0.2.100", lease=3600, cid=ack_cid))
    lease = view(tr)["192.0.2.100"]
    assert (lease.client_id, lease.hostname) == (client_id, hostname)


def test_case_62_one_chaddr_two_client_ids() -> None:
    tr = tracker()
    first = rec("192.0.2.100", xid=0x5002, client_id="01aa")
    second = rec("192.0.2.101", xid=0x5003, client_id="01bb")
    assert run(tr, msg(ACK, 0, xid=0x5002, cid="01aa", yi="192.0.2.100", lease=3600),
               msg(ACK, 0, xid=0x5003, cid="01bb", yi="192.0.2.101", lease=3600)) == [
        Grant(first, "granted"), Grant(second, "granted")]
    release = msg(RELEASE, 1, ci="192.0.2.100", cid="01aa", sid=S1)
    assert run(tr, release) == [Revoke(first, "released", release.ts)]
    assert view(tr) == {"192.0.2.101": second}


def test_case_63_pxe_then_operating_system() -> None:
    tr = tracker()
    pxe = rec("192.0.2.100", xid=0x5004)
    os_lease = rec("192.0.2.101", xid=0x5005, t=1, client_id=ID_A)
    second = msg(ACK, 1, xid=0x5005, cid=ID_A, yi="192.0.2.101", lease=3600)
    assert run(tr, msg(ACK, 0, xid=0x5004, yi="192.0.2.100", lease=3600), second) == [
        Grant(pxe, "granted"), Grant(os_lease, "granted"),
        Revoke(pxe, "superseded", second.ts)]
    assert view(tr) == {"192.0.2.101": os_lease}


IB_ID = "ff0000000100020000ab11aabbccddeeff"


@pytest.mark.parametrize(("release_cid", "deleted"), [(IB_ID, True), ("ff00", False)])
def test_case_64_infiniband(release_cid: str, deleted: bool) -> None:
    tr = tracker()
    run(tr, msg(REQUEST, 0, xid=0x5006, ch=b"", htype=32, cid=IB_ID, req="192.0.2.110"),
        msg(ACK, 0.1, xid=0x5006, ch=b"", htype=32, cid=IB_ID, yi="192.0.2.110", lease=3600))
    expected = rec("192.0.2.110", ch=b"", htype=32, xid=0x5006, client_id=IB_ID)
    assert expected.mac is None
    assert view(tr) == {"192.0.2.110": expected}
    release = msg(RELEASE, 1, ch=b"", htype=32, cid=release_cid, ci="192.0.2.110", sid=S1)
    assert run(tr, release) == ([Revoke(expected, "released", release.ts)] if deleted else [])


def test_case_65_no_hardware_address_and_no_client_id() -> None:
    tr = tracker()
    expected = rec("192.0.2.111", ch=b"", htype=32, xid=0x5007)
    assert run(tr, msg(ACK, 0, xid=0x5007, ch=b"", htype=32, yi="192.0.2.111", lease=3600)) == [
        Grant(expected, "granted")]
    # Nothing can match it: not a RELEASE, a DECLINE, or another such client's ACK.
    assert run(tr, msg(RELEASE, 1, ch=b"", htype=32, ci="192.0.2.111"),
               msg(DECLINE, 1, ch=b"", htype=32, req="192.0.2.111")) == []
    other = rec("192.0.2.112", ch=b"", htype=32, xid=0x5008, t=2)
    assert run(tr, msg(ACK, 2, xid=0x5008, ch=b"", htype=32, yi="192.0.2.112", lease=3600)) == [
        Grant(other, "granted")]
    assert view(tr) == {"192.0.2.111": expected, "192.0.2.112": other}
    again = rec("192.0.2.111", ch=b"", htype=32, xid=0x5009, t=3)
    assert run(tr, msg(ACK, 3, xid=0x5009, ch=b"", htype=32, yi="192.0.2.111", lease=3600)) == [
        Grant(again, "reassigned", expected)]


@pytest.mark.parametrize(("htype", "ch"), [(24, bytes.fromhex("aabbccddeeff0011")),
                                           (1, bytes(range(16)))], ids=["66b", "66c"])
def test_case_66_other_hardware_lengths(htype: int, ch: bytes) -> None:
    tr = tracker()
    run(tr, msg(ACK, 0, xid=0x5010, ch=ch, htype=htype, yi="192.0.2.100", lease=3600))
    lease = view(tr)["192.0.2.100"]
    assert (lease.mac, lease.htype) == (mac(ch), htype)
    assert lease.mac is not None and len(lease.mac.split(":")) == len(ch)


def test_case_66e_hardware_types_differ() -> None:
    tr = tracker()
    first = rec("192.0.2.100", xid=0x5011)
    second = rec("192.0.2.101", htype=6, xid=0x5012)
    assert run(tr, msg(ACK, 0, xid=0x5011, yi="192.0.2.100", lease=3600),
               msg(ACK, 0, xid=0x5012, htype=6, yi="192.0.2.101", lease=3600),
               msg(RELEASE, 1, htype=6, ci="192.0.2.100", sid=S1)) == [
        Grant(first, "granted"), Grant(second, "granted")]
    assert view(tr) == {"192.0.2.100": first, "192.0.2.101": second}


# ---- H. Transactions, collisions and floods ---------------------------------------------------

def test_case_67_other_client_reuses_xid_later() -> None:
    tr = tracker()
    run(tr, *dora("192.0.2.100", xid=0x3001, host="alpha"),
        *dora("192.0.2.101", 60, xid=0x3001, ch=B, host="bravo"))
    assert view(tr) == {
        "192.0.2.100": rec("192.0.2.100", xid=0x3001, t=0.3, hostname="alpha",
                           hostname_src="req12"),
        "192.0.2.101": rec("192.0.2.101", ch=B, xid=0x3001, t=60.3, hostname="bravo",
                           hostname_src="req12"),
    }


def test_case_68_two_clients_same_xid_same_time() -> None:
    tr = tracker()
    x = 0x3002
    run(tr, msg(DISCOVER, 0.00, xid=x, host="alpha"),
        msg(DISCOVER, 0.01, xid=x, ch=B, host="bravo"),
        msg(OFFER, 0.10, xid=x, yi="192.0.2.100", lease=3600),
        msg(OFFER, 0.11, xid=x, ch=B, yi="192.0.2.101", lease=3600),
        msg(REQUEST, 0.20, xid=x, req="192.0.2.100", sid=S1),
        msg(REQUEST, 0.21, xid=x, ch=B, req="192.0.2.101", sid=S1),
        msg(ACK, 0.30, xid=x, ch=B, yi="192.0.2.101", lease=3600),
        msg(ACK, 0.31, xid=x, yi="192.0.2.100", lease=3600))
    assert view(tr) == {
        "192.0.2.100": rec("192.0.2.100", xid=x, hostname="alpha", hostname_src="req12"),
        "192.0.2.101": rec("192.0.2.101", ch=B, xid=x, hostname="bravo", hostname_src="req12"),
    }


def test_case_69_ambiguous_reply_is_uncorrelated() -> None:
    tr = tracker()
    run(tr, msg(REQUEST, 0, xid=0x3003, cid="01aa", host="one", req="192.0.2.100"),
        msg(REQUEST, 0, xid=0x3003, cid="01bb", host="two", req="192.0.2.100"))
    assert run(tr, msg(ACK, 0.1, xid=0x3003, yi="192.0.2.100", lease=3600)) == [
        Grant(rec("192.0.2.100", xid=0x3003), "granted")]


@pytest.mark.parametrize(("retransmit", "ack_at", "hostname"), [
    (None, 130, None), (None, 100, "alpha"), (64, 130, "alpha")],
    ids=["expired", "within-ttl", "retransmission-restarts-ttl"])
def test_case_70_transactions_expire(retransmit: float | None, ack_at: float,
                                     hostname: str | None) -> None:
    tr = tracker()
    request: dict[str, Any] = {"xid": 0x3004, "req": "192.0.2.100", "sid": S1, "host": "alpha"}
    run(tr, msg(REQUEST, 0, **request))
    if retransmit is not None:
        run(tr, msg(REQUEST, retransmit, **request))
    run(tr, msg(ACK, ack_at, xid=0x3004, yi="192.0.2.100", lease=3600))
    assert view(tr)["192.0.2.100"].hostname == hostname


def test_transactions_are_swept_after_ttl() -> None:
    tr = tracker()
    run(tr, *(msg(DISCOVER, i * 0.01, xid=i, ch=bytes([2, 0, 0, 0, i // 256, i % 256]))
              for i in range(1000)))
    assert tr.pending_transactions == 1000
    run(tr, msg(DISCOVER, 200, xid=0xFFFF))
    assert tr.pending_transactions == 1


def random_discovers(rnd: random.Random, count: int, start: float,
                     end: float) -> list[DhcpMessage]:
    """A starvation flood: random chaddr and xid, evenly spread over [start, end)."""
    step = (end - start) / count
    return [msg(DISCOVER, start + i * step, xid=rnd.getrandbits(32), ch=rnd.randbytes(6))
            for i in range(count)]


def test_case_71_discover_flood() -> None:
    tr = tracker()
    rnd = random.Random(71)
    request = msg(REQUEST, 10.0, xid=0x3005, req="192.0.2.100", sid=S1, host="alpha")
    peak = 0
    for batch in ([*random_discovers(rnd, 200_000, 0.0, 10.0), request],
                  random_discovers(rnd, 50_000, 10.0, 10.5)):
        for m in batch:
            assert tr.handle(m, T0) == []
            peak = max(peak, tr.pending_transactions)
    assert peak == tr.config.txn_max
    commands = run(tr, msg(ACK, 10.5, xid=0x3005, yi="192.0.2.100", lease=3600))
    expected = rec("192.0.2.100", xid=0x3005, t=10.5, hostname="alpha", hostname_src="req12")
    assert commands == [Grant(expected, "granted")]
    assert view(tr) == {"192.0.2.100": expected}
    assert tr.counters["txn_evicted"] == 250_001 - tr.config.txn_max


def test_case_72_per_client_cap() -> None:
    tr = tracker()
    for i in range(1, 101):
        run(tr, msg(DISCOVER, i * 0.01, xid=0x7000 + i))
        assert tr.pending_transactions == min(i, 8)
    run(tr, msg(REQUEST, 1.1, xid=0x7000 + 100, req="192.0.2.100", sid=S1, host="alpha"))
    assert tr.pending_transactions == 8
    run(tr, msg(ACK, 1.2, xid=0x7000 + 100, yi="192.0.2.100", lease=3600))
    assert view(tr)["192.0.2.100"].hostname == "alpha"


def test_per_client_cap_evicts_fresh_entries_first() -> None:
    tr = tracker()
    run(tr, msg(REQUEST, 0, xid=0x7100, req="192.0.2.100", sid=S1, host="alpha"),
        *(msg(DISCOVER, 0.1 * i, xid=0x7100 + i) for i in range(1, 20)))
    assert tr.pending_transactions == 8
    assert tr.counters["txn_evicted"] == 12
    run(tr, msg(ACK, 3, xid=0x7100, yi="192.0.2.100", lease=3600))
    assert view(tr)["192.0.2.100"].hostname == "alpha"


def test_relay_copy_after_decision_is_not_a_new_generation() -> None:
    tr = tracker()
    late = msg(ACK, 0.3, xid=0x7200, src=S2, yi="192.0.2.100", lease=1800)
    commands = run(tr, msg(REQUEST, 0.0, xid=0x7200, req="192.0.2.100", host="alpha"),
                   msg(ACK, 0.1, xid=0x7200, yi="192.0.2.100", lease=3600),
                   msg(REQUEST, 0.001, xid=0x7200, src=R1, gi=R1, req="192.0.2.100"),
                   late)
    expected = rec("192.0.2.100", xid=0x7200, hostname="alpha", hostname_src="req12")
    assert commands == [Grant(expected, "granted"), Rejected("late_other_server", late)]


def test_eviction_order_fresh_first_then_oldest_activity() -> None:
    tr = tracker(txn_max=3)
    host: dict[str, Any] = {"req": "192.0.2.100", "sid": S1}
    run(tr, msg(REQUEST, 0, xid=1, host="one", **host),  # the oldest, but saw a REQUEST
        msg(DISCOVER, 1, xid=2, ch=B, host="two"),
        msg(DISCOVER, 2, xid=3, ch=B, host="three"),
        msg(DISCOVER, 3, xid=4, ch=B, host="four"))  # evicts xid 2: fresh before settled
    assert tr.counters["txn_evicted"] == 1
    run(tr, msg(REQUEST, 4, xid=3, ch=B, **host),  # xid 3 settles; fresh xid 4 goes next
        msg(DISCOVER, 5, xid=5, ch=B))
    run(tr, msg(REQUEST, 6, xid=5, ch=B, **host),
        msg(DISCOVER, 7, xid=6, ch=B))  # no fresh entry left: the oldest by activity (xid 1)
    assert tr.counters["txn_evicted"] == 3
    acks = {x: msg(ACK, 8, xid=x, ch=A if x == 1 else B, yi=f"192.0.2.{100 + x}", lease=3600)
            for x in (1, 3)}
    run(tr, *acks.values())
    names = {ip: lease.hostname for ip, lease in view(tr).items()}
    assert names == {"192.0.2.101": None, "192.0.2.103": "three"}


# ---- I. Rogue servers and spoofing -----------------------------------------------------------

def test_case_73_rogue_ack_answers_first() -> None:
    tr = tracker()
    rogue_offer = msg(OFFER, 0.05, xid=0x6001, src=X, yi="192.0.2.200", lease=86400)
    rogue = msg(ACK, 0.25, xid=0x6001, src=X, yi="192.0.2.200", lease=86400)
    commands = run(tr, msg(DISCOVER, 0, xid=0x6001), rogue_offer,
                   msg(OFFER, 0.1, xid=0x6001, yi="192.0.2.100", lease=3600),
                   msg(REQUEST, 0.2, xid=0x6001, req="192.0.2.100", sid=S1),
                   rogue, msg(ACK, 0.3, xid=0x6001, yi="192.0.2.100", lease=3600))
    expected = rec("192.0.2.100", xid=0x6001, t=0.3)
    assert commands == [Rejected("rogue_reply", rogue_offer), Rejected("rogue_reply", rogue),
                        Grant(expected, "granted")]
    assert view(tr) == {"192.0.2.100": expected}


@pytest.mark.parametrize(("held", "rogue_ip"), [
    (rec("192.0.2.150", ch=B, t=-10), "192.0.2.150"),
    (rec("192.0.2.100", t=-10), "192.0.2.101"),
], ids=["73b-other-clients-address", "73c-no-supersession"])
def test_case_73_rogue_ack_changes_nothing(held: Lease, rogue_ip: str) -> None:
    tr = tracker(held)
    rogue = msg(ACK, 0, xid=0x6003, src=X, yi=rogue_ip, lease=3600)
    assert run(tr, rogue) == [Rejected("rogue_reply", rogue)]
    assert view(tr) == {held.ip: held}


def test_case_74_rogue_nak() -> None:
    held = rec("192.0.2.100", t=-10)
    tr = tracker(held)
    nak = msg(NAK, 0.1, xid=0x6002, src=X)
    commands = run(tr, msg(REQUEST, 0, xid=0x6002, ci="192.0.2.100"), nak)
    assert commands == [Rejected("rogue_nak", nak)]
    assert view(tr) == {"192.0.2.100": held}
    refreshed = rec("192.0.2.100", xid=0x6002, t=0.2)
    assert run(tr, msg(ACK, 0.2, xid=0x6002, yi="192.0.2.100", lease=3600)) == [
        Grant(refreshed, "renewed", held)]


def test_case_75_client_selects_rogue_offer() -> None:
    tr = tracker()
    run(tr, msg(DISCOVER, 0, xid=0x6004),
        msg(OFFER, 0.1, xid=0x6004, src=X, yi="192.0.2.200", lease=3600),
        msg(REQUEST, 0.2, xid=0x6004, req="192.0.2.200", sid=X),
        msg(ACK, 0.3, xid=0x6004, src=X, yi="192.0.2.200", lease=3600))
    assert view(tr) == {}
    assert tr.counters["rogue_reply"] == 2


@pytest.mark.parametrize(("src", "gi", "config", "applied"), [
    (X, ZERO, {}, True),
    (X, ZERO, {"strict_source": True}, False),
    (R1, R1, {"strict_source": True, "trusted_relays": frozenset({R1})}, True),
    (R1, R1, {"strict_source": True}, False),
    (R1, R2, {"strict_source": True, "trusted_relays": frozenset({R1})}, False),
    (S1, R1, {"strict_source": True}, True),
], ids=["default", "strict", "strict-trusted-relay", "strict-untrusted-relay",
        "strict-relay-giaddr-differs", "strict-server-to-relay"])
def test_case_76_rogue_writes_allowed_server_id(src: str, gi: str, config: dict[str, Any],
                                                applied: bool) -> None:
    tr = tracker(**config)
    ack = msg(ACK, 0, xid=0x6005, src=src, sid=S1, gi=gi, yi="192.0.2.201", lease=3600)
    expected = rec("192.0.2.201", xid=0x6005, giaddr=gi)
    assert run(tr, ack) == ([Grant(expected, "granted")] if applied
                            else [Rejected("rogue_reply", ack)])


@pytest.mark.parametrize("allowed", [{S1, S2}, {S1, S2, R1}])
def test_case_77_server_identifier_override(allowed: set[str]) -> None:
    tr = tracker(allowed_servers=frozenset(allowed))
    ack = msg(ACK, 0, xid=0x6006, sid=R1, gi=R1, yi="198.51.100.60", lease=3600)
    expected = rec("198.51.100.60", server=R1, xid=0x6006, giaddr=R1)
    assert run(tr, ack) == ([Grant(expected, "granted")] if R1 in allowed
                            else [Rejected("rogue_reply", ack)])


def test_case_78_empty_allow_list() -> None:
    tr = tracker(allowed_servers=frozenset())
    expected = rec("192.0.2.100", server=X, xid=0x6007)
    assert run(tr, msg(ACK, 0, xid=0x6007, src=X, yi="192.0.2.100", lease=3600)) == [
        Grant(expected, "granted")]


@pytest.mark.parametrize("yi", ["0.0.0.0", "255.255.255.255", "224.0.0.5", "127.0.0.1",
                                "0.1.2.3", "240.0.0.1"])
def test_case_86_invalid_yiaddr(yi: str) -> None:
    tr = tracker()
    ack = msg(ACK, 0.3, xid=0x8600, yi=yi, lease=3600)
    assert run(tr, *dora("192.0.2.100", xid=0x8600)[:3], ack) == [Rejected("bad_yiaddr", ack)]
    assert view(tr) == {}


# ---- K. Ordering, restart and time ------------------------------------------------------------

def test_case_94_reordered_older_ack_is_stale() -> None:
    held = rec("192.0.2.100", xid=0x7001, t=100)
    tr = tracker(held)
    old = msg(ACK, 50, xid=0x7000, yi="192.0.2.100", lease=3600)
    assert run(tr, old) == [Rejected("stale", old)]
    assert view(tr) == {"192.0.2.100": held}


def test_case_95_restart_then_release() -> None:
    first = tracker()
    run(first, *dora("192.0.2.100", xid=0x9500))
    held = view(first)["192.0.2.100"]
    tr = tracker(*first.leases.values())
    release = msg(RELEASE, 10, ci="192.0.2.100", sid=S1)
    assert run(tr, release) == [Revoke(held, "released", release.ts)]
    assert view(tr) == {}


def test_case_95_restart_then_new_address_supersedes() -> None:
    first = tracker()
    run(first, *dora("192.0.2.100", xid=0x9500))
    held = view(first)["192.0.2.100"]
    tr = tracker(*first.leases.values())
    acks = dora("192.0.2.101", 10, xid=0x9501)
    expected = rec("192.0.2.101", xid=0x9501, t=10.3)
    assert run(tr, *acks) == [Grant(expected, "granted"),
                              Revoke(held, "superseded", acks[-1].ts)]
    assert view(tr) == {"192.0.2.101": expected}


@pytest.mark.parametrize(("age", "applied"), [(10, True), (7200, False)])
def test_case_96_capture_clock(age: int, applied: bool) -> None:
    tr = tracker(capture_clock=True)
    ack = msg(ACK, 0, xid=0x9600, yi="192.0.2.100", lease=3600)
    expected = rec("192.0.2.100", xid=0x9600)
    assert run(tr, ack, now=T0 + age) == ([Grant(expected, "granted")] if applied
                                          else [Rejected("already_expired", ack)])


def test_replay_clock_ignores_wall_clock() -> None:
    tr = tracker()
    ack = msg(ACK, 0, xid=0x9601, yi="192.0.2.100", lease=3600)
    assert run(tr, ack, now=T0 + 7200) == [Grant(rec("192.0.2.100", xid=0x9601), "granted")]


# ---- re-assertion (hive.md R-HV-8) -----------------------------------------------------------

def test_current_grants_carry_each_grants_capture_time_and_skip_ended_leases() -> None:
    tr = tracker()
    run(tr, *dora("192.0.2.10", 0.0), *dora("192.0.2.11", 5.0, xid=0x2002, ch=B, lease=60))
    run(tr, *dora("192.0.2.10", 30.0, xid=0x3003))  # A renews: the renewal's time counts
    grants = sorted(tr.current_grants(T0 + 30.5), key=lambda g: g.lease.ip)
    assert [(g.lease.ip, g.ts, g.event, g.previous) for g in grants] == [
        ("192.0.2.10", T0 + 30.3, GrantEvent.GRANTED, None),
        ("192.0.2.11", T0 + 5.3, GrantEvent.GRANTED, None)]
    assert [g.lease for g in grants] == [view(tr)["192.0.2.10"], view(tr)["192.0.2.11"]]
    assert [g.lease.ip for g in tr.current_grants(T0 + 65.0)] == ["192.0.2.10"]  # B's ended
    run(tr, msg(RELEASE, 40.0, xid=0x4004, ci="192.0.2.10"))
    assert [g.lease.ip for g in tr.current_grants(T0 + 41.0)] == ["192.0.2.11"]  # A released
