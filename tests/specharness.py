"""Harness for the spec cases (Part 2 of the spec): build packets, write pcaps, run them through
the real pipeline (tshark -> decoder -> tracker -> redis-server), and read the records back.

Fixtures of the spec, section 0.4: clients A and B, servers S1 and S2, rogue X, relays R1, R1b, R2.
"""

from __future__ import annotations

import math
import socket
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from sniffer.capture import read_file
from sniffer.pipeline import Pipeline
from sniffer.store import Keys, LeaseStore
from sniffer.tracker import Tracker, TrackerConfig

A = bytes.fromhex("02000000000a")
B = bytes.fromhex("02000000000b")
A_MAC = "02:00:00:00:00:0a"
B_MAC = "02:00:00:00:00:0b"
ID_A = bytes.fromhex("0102000000000a")
ID_B = bytes.fromhex("0102000000000b")
S1, S2, X = "192.0.2.1", "192.0.2.2", "192.0.2.66"
R1, R1B, R2 = "198.51.100.1", "198.51.100.2", "203.0.113.1"
BCAST = "255.255.255.255"
ZERO = "0.0.0.0"
MAGIC = b"\x63\x82\x53\x63"
NS = "dhcp-hive-mind"

DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)


def ip4(ip: str) -> bytes:
    return socket.inet_aton(ip)


# ---- options, as (code, value) pairs; `options()` encodes them in order ----------------------

def o(code: int, value: bytes) -> tuple[int, bytes]:
    return (code, value)


def o_type(t: int) -> tuple[int, bytes]:
    return (53, bytes([t]))


def o_server(ip: str) -> tuple[int, bytes]:
    return (54, ip4(ip))


def o_lease(seconds: int) -> tuple[int, bytes]:
    return (51, struct.pack("!I", seconds))


def o_mask(prefix: int) -> tuple[int, bytes]:
    return (1, struct.pack("!I", (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF))


def o_req(ip: str) -> tuple[int, bytes]:
    return (50, ip4(ip))


def o_host(name: str | bytes) -> tuple[int, bytes]:
    return (12, name.encode() if isinstance(name, str) else name)


def o_cid(value: bytes) -> tuple[int, bytes]:
    return (61, value)


def o_rapid() -> tuple[int, bytes]:
    return (80, b"")


def o_fqdn(name: str, flags: int = 0x05, rcodes: bytes = b"\x00\x00") -> tuple[int, bytes]:
    """Option 81; with the E bit (0x04) the name is encoded in DNS wire format."""
    if flags & 0x04:
        wire = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".") if label)
        if name.endswith("."):
            wire += b"\x00"
        return (81, bytes([flags]) + rcodes + wire)
    return (81, bytes([flags]) + rcodes + name.encode())


def o_82(circuit: bytes | None = None, remote: bytes | None = None) -> tuple[int, bytes]:
    value = b""
    if circuit is not None:
        value += bytes([1, len(circuit)]) + circuit
    if remote is not None:
        value += bytes([2, len(remote)]) + remote
    return (82, value)


def options(opts: Iterable[tuple[int, bytes]], end: bool = True) -> bytes:
    out = b"".join(bytes([code, len(value)]) + value for code, value in opts)
    return out + (b"\xff" if end else b"")


# ---- the BOOTP/DHCP payload -------------------------------------------------------------------

def payload(
    op: int,
    xid: int,
    chaddr: bytes = A,
    *,
    opts: Iterable[tuple[int, bytes]] = (),
    raw_options: bytes | None = None,
    htype: int = 1,
    hlen: int | None = None,
    hops: int = 0,
    secs: int = 0,
    flags: int = 0,
    ci: str = ZERO,
    yi: str = ZERO,
    si: str = ZERO,
    gi: str = ZERO,
    sname: bytes = b"",
    file: bytes = b"",
    cookie: bytes = MAGIC,
) -> bytes:
    """A DHCP message, laid out byte by byte so that malformed ones can be built too."""
    header = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        op, htype, len(chaddr) if hlen is None else hlen, hops, xid, secs, flags,
        ip4(ci), ip4(yi), ip4(si), ip4(gi), chaddr.ljust(16, b"\x00")[:16],
        sname.ljust(64, b"\x00")[:64], file.ljust(128, b"\x00")[:128],
    )
    body = raw_options if raw_options is not None else options(opts)
    return header + cookie + body


def client_msg(t: int, xid: int, chaddr: bytes = A, *opts: tuple[int, bytes], **kw: Any) -> bytes:
    """A client message of type t (DISCOVER, REQUEST, ...) with extra options after 53."""
    return payload(1, xid, chaddr, opts=[o_type(t), *opts], **kw)


def server_msg(
    t: int, xid: int, chaddr: bytes = A, *opts: tuple[int, bytes], server: str | None = S1,
    mask: int | None = 24, **kw: Any,
) -> bytes:
    """A server reply of type t; by default carries 54=server and 1=/24 (spec 0.3 defaults)."""
    lead = [o_type(t)]
    if server is not None:
        lead.append(o_server(server))
    if mask is not None:
        lead.append(o_mask(mask))
    return payload(2, xid, chaddr, opts=[*lead, *opts], **kw)


# ---- captures --------------------------------------------------------------------------------

@dataclass
class Packet:
    delta: float
    data: bytes
    src: str
    dst: str
    sport: int
    dport: int


@dataclass
class Capture:
    """Packets of one case at t0 + delta, written as an Ethernet pcap."""

    t0: int = field(default_factory=lambda: int(time.time()))
    packets: list[Packet] = field(default_factory=list)

    def add(self, delta: float, data: bytes, src: str = ZERO, dst: str = BCAST,
            sport: int | None = None, dport: int | None = None) -> Capture:
        """Ports default to 68->67 for op=1 and 67->68 for op=2 (2131 section 4.1)."""
        client = data[:1] == b"\x01"
        self.packets.append(Packet(
            delta, data, src, dst,
            sport if sport is not None else (68 if client else 67),
            dport if dport is not None else (67 if client else 68),
        ))
        return self

    def write(self, path: Path) -> Path:
        frames = []
        for p in self.packets:
            frame = (Ether(src="02:00:00:00:ff:01", dst="ff:ff:ff:ff:ff:ff")
                     / IP(src=p.src, dst=p.dst) / UDP(sport=p.sport, dport=p.dport) / Raw(p.data))
            frame.time = self.t0 + p.delta
            frames.append(frame)
        wrpcap(str(path), frames)
        return path


def E(t0: int, delta: float, lease: int) -> int:
    """The expected `expires` value E(delta, T) of the spec."""
    return t0 + math.floor(delta) + lease


# ---- running the real pipeline ---------------------------------------------------------------

class Session:
    """One tracker process: keeps its transactions across `feed` calls, like a running sniffer.
    A new Session on the same Redis is a restart (state comes back from Redis, R-RD-6)."""

    def __init__(self, redis_url: str, tmp_path: Path, *, allowed: Sequence[str] = (S1, S2),
                 capture_clock: bool = True, engine: str = "tshark", **config: Any) -> None:
        self.tmp_path = tmp_path
        self.engine = engine
        self.client = redis.Redis.from_url(redis_url)
        cfg = TrackerConfig(allowed_servers=frozenset(allowed), capture_clock=capture_clock,
                            **config)
        self.store = LeaseStore(self.client, Keys(), capture_clock=capture_clock)
        self.tracker = Tracker(cfg)
        self.tracker.restore(self.store.load())
        self.pipeline = Pipeline(self.tracker, self.store)
        self._n = 0

    def feed(self, capture: Capture) -> None:
        self._n += 1
        path = capture.write(self.tmp_path / f"feed{self._n}.pcap")
        self.pipeline.process(read_file(path, engine=self.engine))
        self.pipeline.flush()

    def close(self) -> None:
        self.client.close()


# ---- reading records back --------------------------------------------------------------------

@dataclass
class Record:
    seed: dict[str, str]
    detail: dict[str, str]
    seed_ttl: int
    detail_ttl: int


def lease_ips(client: redis.Redis) -> set[str]:
    """Every address with a seed hash (dotted-quad key) or a detail hash."""
    ips = set()
    for key in client.scan_iter(count=1000):
        text = key.decode() if isinstance(key, bytes) else key
        if text.startswith(f"{NS}:lease:"):
            ips.add(text.rsplit(":", 1)[1])
        elif text.count(".") == 3 and all(part.isdigit() for part in text.split(".")):
            ips.add(text)
    return ips


def record(client: redis.Redis, ip: str) -> Record | None:
    def decoded(h: dict[Any, Any]) -> dict[str, str]:
        return {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes)
                else v) for k, v in h.items()}

    seed = decoded(client.hgetall(ip))
    detail = decoded(client.hgetall(f"{NS}:lease:{ip}"))
    if not seed and not detail:
        return None
    return Record(seed, detail, int(client.ttl(ip)), int(client.ttl(f"{NS}:lease:{ip}")))


def rec(ip: str, mac: str | None, server: str, xid: int, t0: int, delta: float, lease: int,
        **extra: Any) -> dict[str, str]:
    """REC(a, client, server, xid, delta, T) of the spec, plus extra fields (None drops one)."""
    fields: dict[str, Any] = {
        "ip": ip, "mac": mac, "htype": "1", "expires": str(E(t0, delta, lease)),
        "lease_time": str(lease), "server": server, "giaddr": ZERO, "xid": f"{xid:08x}",
        "updated": str(t0 + math.floor(delta)), "kind": "dhcp",
    }
    fields.update(extra)
    return {k: str(v) for k, v in fields.items() if v is not None}


def assert_lease(client: redis.Redis, expected: dict[str, str], *,
                 capture_clock: bool = True) -> None:
    """The record at expected['ip'] is exactly `expected` (detail), its seed hash holds exactly
    mac and hostname, and both TTLs match (R-RD-1, R-RD-3; 2 s tolerance)."""
    ip = expected["ip"]
    got = record(client, ip)
    assert got is not None, f"no record at {ip}"
    assert got.detail == expected
    seed = {k: expected[k] for k in ("mac", "hostname") if k in expected}
    assert got.seed == seed
    if expected["expires"] == "infinite":
        assert got.detail_ttl == -1
        if seed:
            assert got.seed_ttl == -1
        return
    want = (int(expected["expires"]) - time.time() if capture_clock
            else int(expected["lease_time"]))
    assert abs(got.detail_ttl - want) <= 2, (got.detail_ttl, want)
    if seed:
        assert abs(got.seed_ttl - want) <= 2, (got.seed_ttl, want)


def assert_absent(client: redis.Redis, ip: str) -> None:
    assert record(client, ip) is None, f"unexpected record at {ip}: {record(client, ip)}"


def assert_only(client: redis.Redis, *ips: str) -> None:
    """Every lease key is accounted for (spec appendix: an extra key is a failure)."""
    assert lease_ips(client) == set(ips)


def snapshot(client: redis.Redis) -> dict[str, Record | None]:
    """For `unchanged` expectations: every lease record (TTLs compared within tolerance)."""
    return {ip: record(client, ip) for ip in sorted(lease_ips(client))}


def assert_unchanged(before: dict[str, Record | None], client: redis.Redis) -> None:
    after = snapshot(client)
    assert after.keys() == before.keys()
    for ip, old in before.items():
        new = after[ip]
        assert old is not None and new is not None
        assert (new.seed, new.detail) == (old.seed, old.detail)
        assert abs(new.detail_ttl - old.detail_ttl) <= 2
