"""Spec Part 2, group J: malformed input (cases 79-93; R-IN-1 to R-IN-16).

Every case here also checks that nothing else was written (R-IN-16: no effect other than the one
stated). Link-level variations (snaplen, fragments, checksums, encapsulations) are written with
their own pcap writers and fed straight into the session's pipeline.
"""

from __future__ import annotations

import random
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import require_tool
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, UDP, IPOption_Router_Alert, fragment
from scapy.layers.l2 import CookedLinuxV2, Dot1AD, Dot1Q, Ether
from scapy.packet import Packet as ScapyPacket
from scapy.packet import Raw
from specharness import (
    ACK,
    BCAST,
    DECLINE,
    ETH_BCAST,
    ETH_SRC,
    ID_A,
    INFINITE,
    LINKTYPE_ETHERNET,
    MAGIC,
    R1,
    RELEASE,
    REQUEST,
    S1,
    A,
    Capture,
    Case,
    Frame,
    Packet,
    Session,
    ack,
    assert_lease,
    assert_only,
    assert_unchanged,
    check_all_formats,
    client_msg,
    eth_frame,
    nak,
    o,
    o_cid,
    o_host,
    o_lease,
    o_mask,
    o_req,
    o_server,
    o_type,
    options,
    payload,
    snapshot,
    write_pcap,
)

IP100, IP101, IP130 = "192.0.2.100", "192.0.2.101", "192.0.2.130"
Opts = list[tuple[int, bytes]]
ACK_OPTS: Opts = [o_type(ACK), o_server(S1), o_lease(3600), o_mask(24)]


def feed_one(c: Case, data: bytes, src: str = S1) -> None:
    """One packet from `src`, 67->68 whatever its op, at +0."""
    c.add(0, data, src=src, sport=67, dport=68).feed()


def bootreply(xid: int, raw_options: bytes = b"") -> bytes:
    """A BOOTREPLY: op 2, the cookie, then `raw_options` (240 octets when empty)."""
    return payload(2, xid, A, yi=IP130, raw_options=raw_options)


# ---- 79, 80: short packets, cookie -----------------------------------------------------------

@pytest.mark.parametrize("variant", ["79a", "79b", "79c"])
def test_case_79_short_packets_dropped(
        redis_url: str, rclient: redis.Redis, tmp_path: Path, variant: str) -> None:
    """239 octets are dropped; 240 octets with op 2 are a BOOTREPLY (infinite unless disabled)."""
    c = Case(redis_url, tmp_path, track_bootp=variant != "79c")
    data = bootreply(0x7901)
    assert len(data) == 240
    feed_one(c, data[:239] if variant == "79a" else data)
    if variant != "79b":
        assert_only(rclient)
        return
    assert_lease(rclient, c.rec(IP130, A, S1, 0x7901, 0, INFINITE, expires="infinite",
                                kind="bootp"))
    assert_only(rclient, IP130)


@pytest.mark.parametrize("cookie", [b"\x63\x82\x53\x64", b""], ids=["80a", "80b"])
def test_case_80_bad_magic_cookie_dropped(
        redis_url: str, rclient: redis.Redis, tmp_path: Path, cookie: bytes) -> None:
    """A wrong or missing magic cookie drops the packet (R-IN-5), though the options look fine."""
    c = Case(redis_url, tmp_path)
    feed_one(c, payload(2, 0x8001, A, yi=IP100, opts=ACK_OPTS, cookie=cookie))
    assert_only(rclient)


# ---- 81, 82: framing errors --------------------------------------------------------------------

def case_81a(c: Case, rclient: redis.Redis, correlated: bool) -> None:
    raw = options(ACK_OPTS, end=False) + b"\x0c\x28" + b"truncated!"  # 12: 40 claimed, 10 left
    if correlated:
        c.add(0, client_msg(REQUEST, 0x8101, A, o_req(IP100), o_server(S1), o_host("alpha")))
    c.add(0.1, payload(2, 0x8101, A, yi=IP100, raw_options=raw), src=S1)
    c.feed()
    name = {"hostname": "alpha", "hostname_src": "req12"} if correlated else {}
    assert_lease(rclient, c.rec(IP100, A, S1, 0x8101, 0.1, 3600, **name))
    assert_only(rclient, IP100)


def case_81b(c: Case, rclient: redis.Redis) -> None:
    feed_one(c, payload(2, 0x8102, A, yi=IP100,
                        raw_options=options([o_type(ACK), o_server(S1)], end=False) + b"\x33"))
    assert_only(rclient)


def case_81c(c: Case, rclient: redis.Redis) -> None:
    feed_one(c, payload(2, 0x8103, A, yi=IP130, raw_options=b"\x0c\xc8" + b"x" * 60))
    assert_only(rclient)


def case_81d(c: Case, rclient: redis.Redis) -> None:
    raw = options([o_type(ACK), o(52, b"\x03"), o_server(S1)])
    file = options([o_lease(3600)], end=False) + b"\x0c\x7fab"  # 12 runs past the field
    feed_one(c, payload(2, 0x8104, A, yi=IP100, raw_options=raw, file=file,
                        sname=options([o_host("from-sname")])))
    assert_lease(rclient, c.rec(IP100, A, S1, 0x8104, 0, 3600))
    assert_only(rclient, IP100)


CASE_81: dict[str, Callable[[Case, redis.Redis], None]] = {
    "81a": lambda c, r: case_81a(c, r, correlated=True),
    "81a-uncorrelated": lambda c, r: case_81a(c, r, correlated=False),
    "81b": case_81b, "81c": case_81c, "81d": case_81d,
}


@pytest.mark.parametrize("variant", CASE_81)
def test_case_81_reply_framing_error_keeps_earlier_options(
        redis_url: str, rclient: redis.Redis, tmp_path: Path, variant: str) -> None:
    """Server replies are decoded up to the first framing error, keeping what came before."""
    CASE_81[variant](Case(redis_url, tmp_path), rclient)


def broken_client(t: int, xid: int, *opts: tuple[int, bytes], **kw: Any) -> bytes:
    """A client message whose last option, 61, claims 30 octets with 5 left."""
    raw = options([o_type(t), *opts], end=False) + b"\x3d\x1e" + b"\x01\x02\x00\x00\x00"
    return payload(1, xid, A, raw_options=raw, **kw)


def case_82_deletion(c: Case, rclient: redis.Redis, msg_type: int) -> None:
    """82a/82b: a RELEASE or DECLINE with a framing error is ignored (R-IN-13)."""
    c.setup_lease(IP100)
    before = snapshot(rclient)
    if msg_type == RELEASE:
        c.add(5, broken_client(RELEASE, 0x8201, o_server(S1), ci=IP100), src=IP100, dst=S1)
    else:
        c.add(5, broken_client(DECLINE, 0x8202, o_req(IP100), o_server(S1)))
    c.feed()
    assert_unchanged(before, rclient)


def case_82c(c: Case, rclient: redis.Redis, prev: bool) -> None:
    """82c: the REQUEST still opens its transaction (61 kept), without a hostname."""
    if prev:
        c.setup_lease(IP100, hostname="alpha")
    start = 600 if prev else 0
    raw = (options([o_type(REQUEST), o_req(IP100), o_server(S1), o_cid(ID_A)], end=False)
           + b"\x0c\x63" + b"alpha")  # 12 claims 99 octets
    c.add(start, payload(1, 0x8203, A, raw_options=raw))
    c.add(start + 0.1, ack(0x8203, IP100, A), src=S1)
    c.feed()
    name = {"hostname": "alpha", "hostname_src": "prev"} if prev else {}
    assert_lease(rclient, c.rec(IP100, A, S1, 0x8203, start + 0.1, 3600, client_id=ID_A.hex(),
                                **name))
    assert_only(rclient, IP100)


CASE_82: dict[str, Callable[[Case, redis.Redis], None]] = {
    "82a": lambda c, r: case_82_deletion(c, r, RELEASE),
    "82b": lambda c, r: case_82_deletion(c, r, DECLINE),
    "82c": lambda c, r: case_82c(c, r, prev=False),
    "82c-prev": lambda c, r: case_82c(c, r, prev=True),
}


@pytest.mark.parametrize("variant", CASE_82)
def test_case_82_client_framing_errors_delete_nothing(
        redis_url: str, rclient: redis.Redis, tmp_path: Path, variant: str) -> None:
    """Framing errors in client messages: deletions ignored, REQUESTs still tracked."""
    CASE_82[variant](Case(redis_url, tmp_path), rclient)


# ---- 83: END handling --------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("raw", "sname", "hostname"),
    [
        (options(ACK_OPTS, end=False), b"", None),
        (options(ACK_OPTS) + bytes.fromhex("330400000001"), b"", None),
        (b"\x35\x01\x05\x00\x00" + options([o_server(S1)], end=False) + b"\x00"
         + options([o_lease(3600)], end=False) + b"\x00\x00\x00" + options([o_mask(24)]),
         b"", None),
        (options([o_type(ACK), o_server(S1), o(52, b"\x02")]),
         options([o_lease(3600), o_host("h" * 56)], end=False), "h" * 56),
    ],
    ids=["83a", "83b", "83c", "83d"],
)
def test_case_83_end_option_handling(
        redis_url: str, rclient: redis.Redis, tmp_path: Path, raw: bytes, sname: bytes, hostname:
        str | None) -> None:
    """END may be missing; octets after it are ignored; pads may appear anywhere (R-IN-7)."""
    assert len(sname) in (0, 64)
    c = Case(redis_url, tmp_path)
    feed_one(c, payload(2, 0x8300, A, yi=IP100, raw_options=raw, sname=sname))
    assert_lease(rclient, c.rec(IP100, A, S1, 0x8300, 0, 3600, hostname=hostname,
                                hostname_src=hostname and "ack12"))
    assert_only(rclient, IP100)


# ---- 84, 85: option 53 and op ------------------------------------------------------------------

REST: Opts = [o_server(S1), o_lease(3600), o_mask(24)]


BAD_TYPES: dict[str, Opts] = {
    "84a": [o(53, b"")], "84b": [o(53, b"\x05\x05")], "84c": [o_type(ACK), o_type(ACK)],
    "84d": [o(53, b"\x00")], "84e": [o_type(9)], "84f": [o_type(13)],
}


@pytest.mark.parametrize("variant", [*BAD_TYPES, "84g"])
def test_case_84_unusual_option_53(
        redis_url: str, rclient: redis.Redis, tmp_path: Path, variant: str) -> None:
    """A bad option 53 drops the packet; types 9 and up are ignored: no record either way."""
    c = Case(redis_url, tmp_path)
    c.add(0, client_msg(REQUEST, 0x8400, A, o_req(IP100), o_server(S1)))
    if variant == "84g":  # every value from 19 to 255, each with its own yiaddr
        for value in range(19, 256):
            c.add(value / 1000, payload(2, 0x8400 + value, A, yi=f"10.84.0.{value}",
                                        opts=[o_type(value), *REST]), src=S1)
    else:
        c.add(0.1, payload(2, 0x8400, A, yi=IP100, opts=[*BAD_TYPES[variant], *REST]), src=S1)
    c.feed()
    assert_only(rclient)


def case_85_simple(op: int, msg_type: int) -> Callable[[Case, redis.Redis], None]:
    def run(c: Case, rclient: redis.Redis) -> None:
        feed_one(c, payload(op, 0x8500, A, yi=IP100, opts=[o_type(msg_type), *REST]))
        assert_only(rclient)
    return run


def case_85_op2_request(c: Case, rclient: redis.Redis) -> None:
    """The op=2 REQUEST is dropped, so it opens no transaction and gives no hostname."""
    c.add(0, payload(2, 0x8501, A, opts=[o_type(REQUEST), o_req(IP100), o_server(S1),
                                         o_host("evil")]), sport=68, dport=67)
    c.add(0.1, ack(0x8501, IP100, A), src=S1)
    c.feed()
    assert_lease(rclient, c.rec(IP100, A, S1, 0x8501, 0.1, 3600))
    assert_only(rclient, IP100)


def case_85_op2_release(c: Case, rclient: redis.Redis) -> None:
    """The op=2 RELEASE is dropped, so A's record stays."""
    c.setup_lease(IP100)
    before = snapshot(rclient)
    c.add(5, payload(2, 0x8502, A, opts=[o_type(RELEASE), o_server(S1)], ci=IP100),
          src=IP100, dst=S1, sport=68, dport=67).feed()
    assert_unchanged(before, rclient)


CASE_85 = {
    "op1-ack": case_85_simple(1, ACK), "op2-request": case_85_op2_request,
    "op3": case_85_simple(3, ACK), "op2-release": case_85_op2_release,
}


@pytest.mark.parametrize("variant", CASE_85)
def test_case_85_op_not_matching_the_type_dropped(
        redis_url: str, rclient: redis.Redis, tmp_path: Path, variant: str) -> None:
    """An op that does not match the message type drops the packet (R-IN-14)."""
    CASE_85[variant](Case(redis_url, tmp_path), rclient)


@pytest.mark.parametrize("yi", ["0.0.0.0", BCAST, "224.0.0.5", "127.0.0.1", "0.1.2.3",
                                "240.0.0.1"])
def test_case_86_invalid_yiaddr_not_applied(
        redis_url: str, rclient: redis.Redis, tmp_path: Path, yi: str) -> None:
    """An ACK with an invalid yiaddr is not applied (bad_yiaddr, R-IN-15)."""
    c = Case(redis_url, tmp_path)
    c.add(0, client_msg(REQUEST, 0x8600, A, o_req(IP100), o_server(S1)))
    c.add(0.1, ack(0x8600, yi, A), src=S1)
    c.feed()
    assert_only(rclient)


# ---- 87, 88: fixed lengths, overload ---------------------------------------------------------

SHORT_54 = o(54, bytes([192, 0, 2]))


def case_87a(c: Case, rclient: redis.Redis, src: str) -> None:
    """54 of length 3 is absent, so server(P) is the IP source."""
    relayed = {"gi": R1} if src == R1 else {}
    feed_one(c, ack(0x8701, IP100, A, SHORT_54, server=None, **relayed), src=src)
    if src == R1:
        assert_only(rclient)
        return
    assert_lease(rclient, c.rec(IP100, A, S1, 0x8701, 0, 3600))
    assert_only(rclient, IP100)


def case_87b(c: Case, rclient: redis.Redis) -> None:
    """50 of length 5 is absent; with ciaddr 0 the NAK has no address to delete."""
    c.setup_lease(IP100)
    before = snapshot(rclient)
    c.add(5, client_msg(REQUEST, 0x8702, A, o(50, bytes([192, 0, 2, 100, 0]))))
    c.add(5.1, nak(0x8702, A), src=S1)
    c.feed()
    assert_unchanged(before, rclient)


def case_87c(c: Case, rclient: redis.Redis) -> None:
    """61 of length 1 is absent: no client_id."""
    c.request_ack(0x8703, IP100, request_opts=[o(61, b"\x01")], ack_opts=[o(61, b"\x01")]).feed()
    assert_lease(rclient, c.rec(IP100, A, S1, 0x8703, 0.1, 3600))
    assert_only(rclient, IP100)


def case_87d(c: Case, rclient: redis.Redis, new_ip: str) -> None:
    """A non-contiguous mask is absent: supersession uses /24, not 255.0.255.0."""
    c.setup_lease(IP100)
    c.request_ack(0x8704, new_ip, at=5, ack_opts=[o(1, bytes([255, 0, 255, 0]))], mask=None)
    c.feed()
    assert_lease(rclient, c.rec(new_ip, A, S1, 0x8704, 5.1, 3600))
    kept = [] if new_ip.startswith("192.0.2.") else [IP100]
    assert_only(rclient, new_ip, *kept)


CASE_87: dict[str, Callable[[Case, redis.Redis], None]] = {
    "87a-from-S1": lambda c, r: case_87a(c, r, S1),
    "87a-from-R1": lambda c, r: case_87a(c, r, R1),
    "87b": case_87b,
    "87c": case_87c,
    "87d-other-24": lambda c, r: case_87d(c, r, "192.1.2.100"),
    "87d-same-24": lambda c, r: case_87d(c, r, IP101),
}


@pytest.mark.parametrize("variant", CASE_87)
def test_case_87_fixed_length_options_with_a_wrong_length_absent(
        redis_url: str, rclient: redis.Redis, tmp_path: Path, variant: str) -> None:
    """Fixed-length options with the wrong length are treated as absent (R-IN-10)."""
    CASE_87[variant](Case(redis_url, tmp_path), rclient)


@pytest.mark.parametrize(
    ("raw", "sname", "file"),
    [
        (options([*ACK_OPTS, o(52, b"\x00")]), b"", b""),
        (options([*ACK_OPTS, o(52, b"\x04")]), b"", b""),
        (options([*ACK_OPTS, o(52, b"\x01\x01")]), b"", b""),
        (options([o_type(ACK), o_server(S1)]), options([o(52, b"\x01")]),
         options([o_lease(3600)])),
    ],
    ids=["88a-0", "88a-4", "88b", "88c"],
)
def test_case_88_unusual_overload_option(
        redis_url: str, rclient: redis.Redis, tmp_path: Path, raw: bytes, sname: bytes,
        file: bytes) -> None:
    """A bad 52 drops the packet; a 52 inside sname is no overload, so file stays a string."""
    c = Case(redis_url, tmp_path)
    feed_one(c, payload(2, 0x8800, A, yi=IP100, raw_options=raw, sname=sname, file=file))
    assert_only(rclient)


# ---- 89: snaplen -------------------------------------------------------------------------------

HEADERS = 14 + 20 + 8  # Ethernet, IPv4 without options, UDP: always captured whole here


def tshark_lengths(path: Path) -> list[tuple[int, int]]:
    """(frame.cap_len, frame.len) of every frame, as tshark reads them."""
    out = subprocess.run(
        [require_tool("tshark"), "-r", str(path), "-T", "fields", "-e", "frame.cap_len",
         "-e", "frame.len"], capture_output=True, text=True, check=True,
    ).stdout
    return [(int(a), int(b)) for a, b in (line.split("\t") for line in out.splitlines())]


def snapped_ack(snaplen: int, body: bytes) -> tuple[bytes, int]:
    """The frame of an ACK with options `body`, captured to its first `snaplen` DHCP octets."""
    frame = eth_frame(Packet(0, payload(2, 0x8900, A, yi=IP100, raw_options=body), S1, BCAST,
                             67, 68))
    return frame[:HEADERS + snaplen], len(frame)


@pytest.mark.parametrize("variant", ["89a", "89b", "89c"])
def test_case_89_snaplen_truncated_acks(
        redis_url: str, rclient: redis.Redis, tmp_path: Path, variant: str) -> None:
    """Snaplen-truncated ACKs: options inside the snap count, beyond it nothing; never BOOTP."""
    c = Case(redis_url, tmp_path)
    body = options(ACK_OPTS, end=False)
    snaplen = {"89a": 300, "89b": 250, "89c": 240}[variant]
    if variant == "89a":
        body = body.ljust(320 - 240, b"\x00") + options([o_host("from-ack")])
    request = eth_frame(Packet(0, client_msg(REQUEST, 0x8900, A, o_req(IP100), o_server(S1),
                                             o_host("alpha")), "0.0.0.0", BCAST, 68, 67))
    cut, wirelen = snapped_ack(snaplen, body)
    path = write_pcap(tmp_path / "snap.pcap", [Frame(c.t0, request),
                                               Frame(c.t0 + 0.1, cut, wirelen)])
    assert tshark_lengths(path)[1] == (HEADERS + snaplen, wirelen)
    c.session.feed_pcap(path, packets=2)
    if variant != "89a":
        assert_only(rclient)
        return
    assert_lease(rclient, c.rec(IP100, A, S1, 0x8900, 0.1, 3600, hostname="alpha",
                                hostname_src="req12"))
    assert_only(rclient, IP100)


# ---- 90-92: fragments, checksums, encapsulations ---------------------------------------------

def eth(p: Packet, **udp: Any) -> ScapyPacket:
    return (Ether(src=ETH_SRC, dst=ETH_BCAST) / IP(src=p.src, dst=p.dst)
            / UDP(sport=p.sport, dport=p.dport, **udp) / Raw(p.data))


def write_frames(path: Path, t0: int, frames: list[tuple[float, ScapyPacket]],
                 linktype: int = LINKTYPE_ETHERNET) -> Path:
    """Frames built with scapy, at t0 + delta."""
    return write_pcap(path, (Frame(t0 + delta, bytes(frame)) for delta, frame in frames), linktype)


@pytest.mark.parametrize("both", [False, True], ids=["first-fragment-alone", "both-fragments"])
def test_case_90_ip_fragments(
        redis_url: str, rclient: redis.Redis, tmp_path: Path, both: bool) -> None:
    """A lone first fragment creates nothing; a reassembled 1800-octet ACK is a normal ACK."""
    c = Case(redis_url, tmp_path)
    body = options(ACK_OPTS, end=False) + b"\x00" * 1400 + options([o_host("fragmented")])
    data = payload(2, 0x9000, A, yi=IP100, raw_options=body).ljust(1800, b"\x00")
    datagram = IP(src=S1, dst=BCAST) / UDP(sport=67, dport=68) / Raw(data)
    pieces = fragment(datagram, fragsize=1200)
    assert len(pieces) == 2
    frames = [(i * 0.001, Ether(src=ETH_SRC, dst=ETH_BCAST) / f)
              for i, f in enumerate(pieces if both else pieces[:1])]
    # The lone fragment may or may not be delivered; the reassembled pair is one datagram.
    c.session.feed_pcap(write_frames(tmp_path / "frag.pcap", c.t0, frames),
                        packets=1 if both else None)
    if not both:
        assert_only(rclient)
        return
    assert_lease(rclient, c.rec(IP100, A, S1, 0x9000, 0.001, 3600, hostname="fragmented",
                                hostname_src="ack12"))
    assert_only(rclient, IP100)


def case1(c: Case) -> list[Packet]:
    """The case-1 exchange, left unfed, to be written in other ways."""
    c.dora(0x1001, IP100, discover_opts=[o_host("alpha"), o(55, bytes([1, 3, 6, 12, 15]))],
           request_opts=[o_host("alpha")])
    return c.capture.packets


def case1_record(c: Case) -> dict[str, str]:
    return c.rec(IP100, A, S1, 0x1001, 0.3, 3600, hostname="alpha", hostname_src="req12")


def correct_udp_checksum(p: Packet) -> int:
    return int(IP(bytes(eth(p)[IP]))[UDP].chksum)


@pytest.mark.parametrize("variant", ["wrong", "zero"])
def test_case_91_checksums_not_verified(
        redis_url: str, rclient: redis.Redis, tmp_path: Path, variant: str) -> None:
    """UDP checksums are not verified: wrong (offload) and zero checksums are processed."""
    c = Case(redis_url, tmp_path)
    frames = []
    for p in case1(c):
        good = correct_udp_checksum(p)
        frames.append((p.delta, eth(p, chksum=(good ^ 0x5A5A) if variant == "wrong" else 0)))
    c.session.feed_pcap(write_frames(tmp_path / "csum.pcap", c.t0, frames), packets=4)
    assert_lease(rclient, case1_record(c))
    assert_only(rclient, IP100)


def link_ethernet(p: Packet) -> ScapyPacket:
    return eth(p)


def link_dot1q(p: Packet) -> ScapyPacket:
    return Ether(src=ETH_SRC, dst=ETH_BCAST) / Dot1Q(vlan=10) / eth(p)[IP]


def link_qinq(p: Packet) -> ScapyPacket:
    return Ether(src=ETH_SRC, dst=ETH_BCAST) / Dot1AD(vlan=100) / Dot1Q(vlan=10) / eth(p)[IP]


def link_sll2(p: Packet) -> ScapyPacket:
    return (CookedLinuxV2(proto=0x0800, ifindex=3, lladdrtype=1, pkttype=0, lladdrlen=6,
                          src=ETH_SRC + b"\x00\x00") / eth(p)[IP])


def link_ip_options(p: Packet) -> ScapyPacket:
    return (Ether(src=ETH_SRC, dst=ETH_BCAST)
            / IP(src=p.src, dst=p.dst, options=[IPOption_Router_Alert()])
            / UDP(sport=p.sport, dport=p.dport) / Raw(p.data))


def link_trailer(p: Packet) -> ScapyPacket:
    # The trailer looks like more options; it lies past the IP total length.
    return Ether(bytes(eth(p)) + b"\x0c\x07trailer" + b"\xee" * 11)


ENCAPSULATIONS: dict[str, tuple[Callable[[Packet], ScapyPacket], int, str]] = {
    # id: (frame builder, pcap linktype, what tshark must see in the first frame)
    "ethernet": (link_ethernet, LINKTYPE_ETHERNET, "eth:ethertype:ip:udp:dhcp"),
    "802.1q": (link_dot1q, LINKTYPE_ETHERNET, "eth:ethertype:vlan:ethertype:ip:udp:dhcp"),
    "qinq": (link_qinq, LINKTYPE_ETHERNET,
             "eth:ethertype:ieee8021ad:ethertype:vlan:ethertype:ip:udp:dhcp"),
    "sll2": (link_sll2, 276, "sll:ethertype:ip:udp:dhcp"),
    "ip-options": (link_ip_options, LINKTYPE_ETHERNET, "ip.hdr_len=24"),
    "trailer": (link_trailer, LINKTYPE_ETHERNET, "eth.trailer"),
}


def tshark_describe(path: Path) -> str:
    """The first frame's protocol stack, IP header length and trailer, as tshark decodes it."""
    out = subprocess.run(
        [require_tool("tshark"), "-r", str(path), "-c", "1", "-T", "fields",
         "-e", "frame.protocols", "-e", "ip.hdr_len", "-e", "eth.trailer"],
        capture_output=True, text=True, check=True,
    ).stdout.strip().split("\t")
    protocols, hdr_len, trailer = [*out, "", ""][:3]
    return f"{protocols} ip.hdr_len={hdr_len}" + (" eth.trailer" if trailer else "")


@pytest.mark.parametrize("variant", ENCAPSULATIONS)
def test_case_92_every_encapsulation_gives_the_same_record(
        redis_url: str, rclient: redis.Redis, tmp_path: Path, variant: str) -> None:
    """The case-1 exchange in every accepted encapsulation gives the case-1 record (R-IN-1/2)."""
    build, linktype, marker = ENCAPSULATIONS[variant]
    c = Case(redis_url, tmp_path)
    path = write_frames(tmp_path / f"{variant}.pcap", c.t0,
                        [(p.delta, build(p)) for p in case1(c)], linktype=linktype)
    assert marker in tshark_describe(path)
    c.session.feed_pcap(path, packets=4)
    assert_lease(rclient, case1_record(c))
    assert_only(rclient, IP100)


# ---- 93: not DHCP, fuzz --------------------------------------------------------------------------

def random_payloads(c: Case, rng: random.Random, count: int) -> None:
    for i in range(count):
        data = rng.randbytes(rng.randint(0, 1500))
        # A random payload that carries the cookie would be a (valid) BOOTP candidate.
        assert data[236:240] != MAGIC
        sport, dport = (68, 67) if i % 2 else (67, 68)
        c.add(i * 0.001, data, src=f"10.93.{i // 250}.{i % 250 + 1}", sport=sport, dport=dport)


def dns_messages(c: Case) -> None:
    query = DNS(id=0x9300, rd=1, qd=DNSQR(qname="example.org"))
    answers = [DNSRR(rrname=f"host{i}.example.org", type="A", rdata=f"192.0.2.{i}")
               for i in range(1, 20)]
    response = DNS(id=0x9300, qr=1, qd=DNSQR(qname="example.org"), an=answers)
    assert len(bytes(response)) > 240  # long enough to pass the length check
    c.add(0, bytes(query), src="192.0.2.53", dst=S1, sport=53000, dport=67)
    c.add(0.1, bytes(response), src="192.0.2.53", dst=S1, sport=53, dport=67)
    c.add(0.2, bytes(response), src=S1, dst="192.0.2.53", sport=67, dport=68)


def fuzzed_options(c: Case, rng: random.Random, count: int) -> None:
    """Valid headers and cookie, random option octets; each with its own xid, chaddr, yiaddr."""
    for i in range(count):
        raw = rng.randbytes(rng.randint(0, 300))
        op = 2 if i % 3 else 1
        data = payload(op, 0x93000000 + i, bytes([6, 0x93, 0, 0, i // 256, i % 256]),
                       yi=f"10.93.{i // 250}.{i % 250 + 1}", raw_options=raw)
        c.add(i * 0.001, data, src=S1 if op == 2 else "0.0.0.0")


def case_93_random(redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """Seeded random payloads of 0-1500 octets to ports 67 and 68 write nothing."""
    c = Case(redis_url, tmp_path)
    random_payloads(c, random.Random(93), 300)
    c.feed()
    assert_only(rclient)


def case_93_dns(redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """DNS messages sent to port 67 write nothing."""
    c = Case(redis_url, tmp_path)
    dns_messages(c)
    c.feed()
    assert_only(rclient)


def case_93_fuzzed_options(redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """Valid headers with seeded random option octets write only R-RD-1-valid records."""
    c = Case(redis_url, tmp_path)
    fuzzed_options(c, random.Random(9393), 400)
    c.feed()
    check_all_formats(rclient)


def case1_ack(i: int) -> bytes:
    """The case-1 ACK with its own xid, chaddr and yiaddr, so that mutants never interact."""
    return ack(0x93100000 + i, f"10.94.{i // 250}.{i % 250 + 1}",
               bytes([6, 0x94, 0, 0, i // 256, i % 256]))


def case_93_baseline(redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """The unmutated ACKs of the property test are valid grants (so mutants test something)."""
    c = Case(redis_url, tmp_path)
    for i in range(60):
        c.add(i * 0.001, case1_ack(i), src=S1)
    c.feed()
    assert len(check_all_formats(rclient)) == 60


FLIP = st.tuples(st.just("flip"), st.integers(0, 1 << 16), st.integers(0, 7))
TRUNCATE = st.tuples(st.just("truncate"), st.integers(0, 1 << 16), st.just(0))
EXTEND = st.tuples(st.just("extend"), st.binary(min_size=1, max_size=64), st.just(0))
MUTANT = st.lists(st.one_of(FLIP, TRUNCATE, EXTEND), min_size=1, max_size=4)


def mutate(data: bytes, ops: list[tuple[str, Any, int]]) -> bytes:
    for kind, arg, bit in ops:
        if kind == "flip" and data:
            pos = arg % len(data)
            data = data[:pos] + bytes([data[pos] ^ (1 << bit)]) + data[pos + 1:]
        elif kind == "truncate":
            data = data[:arg % (len(data) + 1)]
        elif kind == "extend":
            data = data + arg
    return data


# Each example is one pcap through tshark, so the mutants are batched (up to 60 per example).
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutants=st.lists(MUTANT, min_size=1, max_size=60))
def case_93_property(redis_url: str, rclient: redis.Redis, tmp_path: Path,
                     mutants: list[list[tuple[str, Any, int]]]) -> None:
    """Mutated case-1 ACKs (flip, truncate, extend) give no record or an R-RD-1-valid one."""
    rclient.flushall()
    cap = Capture()
    for i, ops in enumerate(mutants):
        cap.add(i * 0.001, mutate(case1_ack(i), ops), src=S1, sport=67, dport=68)
    # One session per example: tmp_path is shared by all of them, so not a Case.
    session = Session(redis_url, tmp_path)
    session.feed(cap)
    session.close()
    check_all_formats(rclient)


CASE_93: dict[str, Callable[[str, redis.Redis, Path], None]] = {
    "random-payloads": case_93_random, "dns": case_93_dns,
    "fuzzed-options": case_93_fuzzed_options, "mutants-baseline": case_93_baseline,
    "mutants-property": case_93_property,
}


@pytest.mark.parametrize("variant", CASE_93)
def test_case_93_non_dhcp_traffic_on_dhcp_ports(
        redis_url: str, rclient: redis.Redis, tmp_path: Path, variant: str) -> None:
    """Non-DHCP traffic on ports 67/68 writes nothing; fuzzed input writes only valid records."""
    CASE_93[variant](redis_url, rclient, tmp_path)
