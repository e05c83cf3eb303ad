"""Helpers for the spec cases 46-93 (groups E-J): common exchanges, a raw pcap writer for link-level
variety (truncated frames, bulk floods, other encapsulations), and the R-RD-1 format check."""

from __future__ import annotations

import ipaddress
import re
import struct
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import redis
from specharness import (
    ACK,
    DISCOVER,
    NS,
    OFFER,
    REQUEST,
    S1,
    A,
    Capture,
    Packet,
    Session,
    client_msg,
    ip4,
    lease_ips,
    o_lease,
    o_req,
    o_server,
    server_msg,
)

from sniffer.capture import read_file

ETH_SRC = bytes.fromhex("02000000ff01")
ETH_BCAST = b"\xff" * 6
LINKTYPE_ETHERNET = 1


# ---- common exchanges -------------------------------------------------------------------------

def ack(xid: int, yi: str, chaddr: bytes = A, *opts: tuple[int, bytes], lease: int | None = 3600,
        **kw: Any) -> bytes:
    """An ACK granting yi, with 51=lease (None leaves 51 out) after the spec's default 54 and 1."""
    lead = [o_lease(lease)] if lease is not None else []
    return server_msg(ACK, xid, chaddr, *lead, *opts, yi=yi, **kw)


def dora(cap: Capture, xid: int, yi: str, *, chaddr: bytes = A, start: float = 0.0,
         server: str = S1, disc: Iterable[tuple[int, bytes]] = (),
         req: Iterable[tuple[int, bytes]] = (), ack_opts: Iterable[tuple[int, bytes]] = (),
         lease: int = 3600) -> Capture:
    """DISCOVER, OFFER, REQUEST (SELECTING) and ACK at start + 0, 0.1, 0.2, 0.3."""
    cap.add(start, client_msg(DISCOVER, xid, chaddr, *disc))
    cap.add(start + 0.1, server_msg(OFFER, xid, chaddr, o_lease(lease), server=server, yi=yi),
            src=server)
    cap.add(start + 0.2, client_msg(REQUEST, xid, chaddr, o_req(yi), o_server(server), *req))
    cap.add(start + 0.3, ack(xid, yi, chaddr, *ack_opts, lease=lease, server=server), src=server)
    return cap


def request_ack(cap: Capture, xid: int, yi: str, *, chaddr: bytes = A, start: float = 0.0,
                req: Iterable[tuple[int, bytes]] = (),
                ack_opts: Iterable[tuple[int, bytes]] = (), lease: int | None = 3600,
                req_kw: dict[str, Any] | None = None,
                ack_kw: dict[str, Any] | None = None) -> Capture:
    """A SELECTING REQUEST {50=yi, 54=S1, ...} at start and S1's ACK at start + 0.1."""
    cap.add(start, client_msg(REQUEST, xid, chaddr, o_req(yi), o_server(S1), *req,
                              **(req_kw or {})))
    cap.add(start + 0.1, ack(xid, yi, chaddr, *ack_opts, lease=lease, **(ack_kw or {})), src=S1)
    return cap


def renew(cap: Capture, xid: int, ip: str, *, chaddr: bytes = A, start: float = 0.0,
          req: Iterable[tuple[int, bytes]] = (), ack_opts: Iterable[tuple[int, bytes]] = (),
          lease: int = 3600) -> Capture:
    """RENEWING: unicast REQUEST ci=ip {no 50/54} at start, unicast ACK at start + 0.1."""
    cap.add(start, client_msg(REQUEST, xid, chaddr, *req, ci=ip), src=ip, dst=S1)
    cap.add(start + 0.1, ack(xid, ip, chaddr, *ack_opts, lease=lease, ci=ip), src=S1, dst=ip)
    return cap


# ---- raw pcap writing --------------------------------------------------------------------------

def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ip_udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """An IPv4 (IHL 5) + UDP datagram with correct lengths and checksums."""
    udp_len = 8 + len(payload)
    pseudo = ip4(src) + ip4(dst) + struct.pack("!BBH", 0, 17, udp_len)
    udp_csum = _checksum(pseudo + struct.pack("!HHHH", sport, dport, udp_len, 0) + payload)
    udp = struct.pack("!HHHH", sport, dport, udp_len, udp_csum or 0xFFFF) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                         ip4(src), ip4(dst))
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + udp


def eth_frame(p: Packet) -> bytes:
    return ETH_BCAST + ETH_SRC + b"\x08\x00" + ip_udp(p.src, p.dst, p.sport, p.dport, p.data)


def write_pcap(path: Path, records: Iterable[tuple[float, bytes, int]],
               linktype: int = LINKTYPE_ETHERNET) -> Path:
    """A classic pcap (microsecond stamps); each record is (ts, captured octets, wire length),
    so a frame can be written shorter than it was on the wire (snaplen truncation)."""
    with path.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype))
        for ts, data, wirelen in records:
            sec = int(ts)
            usec = round((ts - sec) * 1_000_000)
            out.write(struct.pack("<IIII", sec, usec, len(data), wirelen))
            out.write(data)
    return path


def write_fast(cap: Capture, path: Path) -> Path:
    """Capture.write without scapy, for captures of many thousand packets."""
    return write_pcap(path, ((cap.t0 + p.delta, f, len(f))
                             for p in cap.packets for f in [eth_frame(p)]))


def feed_all(session: Session, cap: Capture) -> None:
    """Session.feed, checking that every packet reached the pipeline: a case whose expectation
    is "nothing written" must not pass because its packets were never read."""
    before = session.pipeline.stats["packets"]
    session.feed(cap)
    assert session.pipeline.stats["packets"] - before == len(cap.packets)


def feed_path(session: Session, path: Path, packets: int | None = None) -> None:
    """Feed a pcap written by hand; `packets`: how many datagrams must reach the pipeline."""
    before = session.pipeline.stats["packets"]
    session.pipeline.process(read_file(path, engine=session.engine))
    session.pipeline.flush()
    if packets is not None:
        assert session.pipeline.stats["packets"] - before == packets


def feed_watching(session: Session, path: Path) -> int:
    """Feed a pcap datagram by datagram; the most pending transactions seen after any of them."""
    most = 0
    for datagram in read_file(path, engine=session.engine):
        session.pipeline.feed(datagram)
        most = max(most, session.tracker.pending_transactions)
    session.pipeline.flush()
    return most


# ---- R-RD-1 formats ---------------------------------------------------------------------------

DETAIL_FIELDS = {"ip", "mac", "htype", "client_id", "hostname", "hostname_src", "expires",
                 "lease_time", "server", "giaddr", "circuit_id", "remote_id", "xid", "updated",
                 "kind"}
REQUIRED_FIELDS = {"ip", "htype", "expires", "lease_time", "server", "giaddr", "xid", "updated",
                   "kind"}
HEX = re.compile(r"(?:[0-9a-f]{2})+")
MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){0,15}")
HOSTNAME = re.compile(r"[A-Za-z0-9_-](?:[A-Za-z0-9._-]{0,251}[A-Za-z0-9_-])?")
DECIMAL = re.compile(r"0|[1-9][0-9]*")
BAD_NETS = [ipaddress.ip_network(n) for n in
            ("0.0.0.0/8", "127.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4")]


def _dotted_quad(text: str) -> bool:
    try:
        return str(ipaddress.IPv4Address(text)) == text
    except ValueError:
        return False


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def check_formats(client: redis.Redis, ip: str) -> None:
    """Every field of the record at ip has its R-RD-1 format; the seed mirrors the detail; the
    TTLs match `expires` under the capture clock (2 s tolerance) or are -1 when infinite.
    Read in one transaction, so a record that expires meanwhile is seen whole or not at all."""
    pipe = client.pipeline(transaction=True)
    pipe.hgetall(ip).hgetall(f"{NS}:lease:{ip}").ttl(ip).ttl(f"{NS}:lease:{ip}")
    seed_raw, detail_raw, seed_ttl, detail_ttl = pipe.execute()
    seed = {_text(k): _text(v) for k, v in seed_raw.items()}
    d = {_text(k): _text(v) for k, v in detail_raw.items()}
    if not seed and not d:
        return  # expired since it was listed
    assert d, f"seed hash without detail hash at {ip}: {seed}"
    assert set(d) <= DETAIL_FIELDS and set(d) >= REQUIRED_FIELDS, d
    assert d["ip"] == ip and _dotted_quad(ip)
    assert not any(ipaddress.IPv4Address(ip) in net for net in BAD_NETS), ip  # R-IN-15
    assert seed == {k: d[k] for k in ("mac", "hostname") if k in d}, (seed, d)
    if "mac" in d:
        assert MAC.fullmatch(d["mac"]), d["mac"]
    assert DECIMAL.fullmatch(d["htype"]) and int(d["htype"]) <= 255
    if "client_id" in d:
        assert HEX.fullmatch(d["client_id"]) and 2 <= len(d["client_id"]) // 2 <= 255
    assert ("hostname" in d) == ("hostname_src" in d)
    if "hostname" in d:
        assert HOSTNAME.fullmatch(d["hostname"]) and ".." not in d["hostname"], d["hostname"]
        assert d["hostname_src"] in {"ack81", "ack12", "req81", "req12", "prev"}
    for key in ("circuit_id", "remote_id"):
        if key in d:
            assert HEX.fullmatch(d[key]), d[key]
    assert _dotted_quad(d["server"]) and _dotted_quad(d["giaddr"])
    assert re.fullmatch(r"[0-9a-f]{8}", d["xid"]) and DECIMAL.fullmatch(d["updated"])
    assert d["kind"] in {"dhcp", "bootp"}
    assert DECIMAL.fullmatch(d["lease_time"]) and 1 <= int(d["lease_time"]) <= 0xFFFFFFFF
    if d["expires"] == "infinite":
        assert d["lease_time"] == str(0xFFFFFFFF)
        assert detail_ttl == -1 and (not seed or seed_ttl == -1), (detail_ttl, seed_ttl)
        return
    assert DECIMAL.fullmatch(d["expires"])
    assert int(d["expires"]) == int(d["updated"]) + int(d["lease_time"])
    want = int(d["expires"]) - time.time()
    assert abs(detail_ttl - want) <= 2, (detail_ttl, want)
    if seed:
        assert abs(seed_ttl - want) <= 2, (seed_ttl, want)


def check_all_formats(client: redis.Redis) -> set[str]:
    """Check every lease record (R-RD-1); returns the addresses that have one."""
    ips = lease_ips(client)
    for ip in ips:
        check_formats(client, ip)
    return ips
