"""Harness for the spec cases (Part 2 of the spec): build packets, write pcaps, run them through
the real pipeline (tshark -> decoder -> tracker -> redis-server), and read the records back.

Fixtures of the spec, section 0.4: clients A and B, servers S1 and S2, rogue X, relays R1, R1B, R2.
The message builders follow the spec's notation (section 0.3): every OFFER and ACK carries 54 and
1=/24 unless told otherwise. A `Case` is one spec case: its t0, a tracker `Session`, the packets
being added, and the common exchanges (DORA, setup lease, case 2's relayed exchange, ...).
"""

from __future__ import annotations

import ipaddress
import math
import re
import socket
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import redis

from sniffer.capture_file import read_file
from sniffer.dhcp import ZERO
from sniffer.keys import Keys
from sniffer.pipeline import Pipeline
from sniffer.store import LeaseStore
from sniffer.tracker import Tracker, TrackerConfig

A = bytes.fromhex("02000000000a")
B = bytes.fromhex("02000000000b")
A_MAC = "02:00:00:00:00:0a"
ID_A = bytes.fromhex("0102000000000a")
S1, S2, X = "192.0.2.1", "192.0.2.2", "192.0.2.66"
R1, R1B, R2 = "198.51.100.1", "198.51.100.2", "203.0.113.1"
BCAST = "255.255.255.255"
MAGIC = b"\x63\x82\x53\x63"
NS = "dhcp-hive-mind"
INFINITE = 0xFFFFFFFF

DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)

Option = tuple[int, bytes]


def ip4(ip: str) -> bytes:
    return socket.inet_aton(ip)


# ---- options, as (code, value) pairs; `options()` encodes them in order ----------------------

def o(code: int, value: bytes) -> Option:
    return (code, value)


def o_type(t: int) -> Option:
    return (53, bytes([t]))


def o_server(ip: str) -> Option:
    return (54, ip4(ip))


def o_lease(seconds: int) -> Option:
    return (51, struct.pack("!I", seconds))


def o_mask(prefix: int) -> Option:
    return (1, struct.pack("!I", (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF))


def o_req(ip: str) -> Option:
    return (50, ip4(ip))


def o_host(name: str | bytes) -> Option:
    return (12, name.encode() if isinstance(name, str) else name)


def o_cid(value: bytes) -> Option:
    return (61, value)


def o_rapid() -> Option:
    return (80, b"")


def o_fqdn(name: str, flags: int = 0x05, rcodes: bytes = b"\x00\x00") -> Option:
    """Option 81; with the E bit (0x04) the name is encoded in DNS wire format."""
    if flags & 0x04:
        wire = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".") if label)
        if name.endswith("."):
            wire += b"\x00"
        return (81, bytes([flags]) + rcodes + wire)
    return (81, bytes([flags]) + rcodes + name.encode())


def o_82(circuit: bytes | None = None, remote: bytes | None = None) -> Option:
    value = b""
    if circuit is not None:
        value += bytes([1, len(circuit)]) + circuit
    if remote is not None:
        value += bytes([2, len(remote)]) + remote
    return (82, value)


def options(opts: Iterable[Option], end: bool = True) -> bytes:
    out = b"".join(bytes([code, len(value)]) + value for code, value in opts)
    return out + (b"\xff" if end else b"")


# Case 2's relay agent information: 82=[1:"ge-0/0/1", 2:"sw1"], stored as hex.
OPT82 = o_82(b"ge-0/0/1", b"sw1")
CIRCUIT_ID, REMOTE_ID = "67652d302f302f31", "737731"
N1_LEASE = "198.51.100.50"  # the address of case 2


# ---- the BOOTP/DHCP payload -------------------------------------------------------------------

def payload(
    op: int,
    xid: int,
    chaddr: bytes = A,
    *,
    opts: Iterable[Option] = (),
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


def client_msg(t: int, xid: int, chaddr: bytes = A, *opts: Option, **kw: Any) -> bytes:
    """A client message of type t (DISCOVER, REQUEST, ...) with extra options after 53."""
    return payload(1, xid, chaddr, opts=[o_type(t), *opts], **kw)


def server_msg(
    t: int, xid: int, chaddr: bytes = A, *opts: Option, server: str | None = S1,
    mask: int | None = 24, **kw: Any,
) -> bytes:
    """A server reply of type t; by default carries 54=server and 1=/24 (spec 0.3 defaults)."""
    lead = [o_type(t)]
    if server is not None:
        lead.append(o_server(server))
    if mask is not None:
        lead.append(o_mask(mask))
    return payload(2, xid, chaddr, opts=[*lead, *opts], **kw)


def offer(xid: int, yi: str, chaddr: bytes = A, *opts: Option, lease: int | None = 3600,
          **kw: Any) -> bytes:
    """OFFER of yi {54, 1=/24, 51=lease, opts...}; lease=None leaves option 51 out."""
    return server_msg(OFFER, xid, chaddr, *_lease(lease), *opts, yi=yi, **kw)


def ack(xid: int, yi: str, chaddr: bytes = A, *opts: Option, lease: int | None = 3600,
        **kw: Any) -> bytes:
    """ACK granting yi {54, 1=/24, 51=lease, opts...}; lease=None leaves option 51 out."""
    return server_msg(ACK, xid, chaddr, *_lease(lease), *opts, yi=yi, **kw)


def nak(xid: int, chaddr: bytes = A, *opts: Option, **kw: Any) -> bytes:
    """NAK {54, opts...}: a NAK carries no subnet mask."""
    return server_msg(NAK, xid, chaddr, *opts, mask=None, **kw)


def _lease(lease: int | None) -> tuple[Option, ...]:
    return () if lease is None else (o_lease(lease),)


# ---- pcap files --------------------------------------------------------------------------------

ETH_SRC = bytes.fromhex("02000000ff01")
ETH_BCAST = b"\xff" * 6
LINKTYPE_ETHERNET = 1


class Frame(NamedTuple):
    """One pcap record; a wire_length beyond len(data) is a frame cut short by the snaplen."""

    ts: float
    data: bytes
    wire_length: int | None = None


def write_pcap(path: Path, frames: Iterable[Frame], linktype: int = LINKTYPE_ETHERNET) -> Path:
    """A classic pcap with microsecond stamps."""
    with path.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype))
        for frame in frames:
            sec, usec = divmod(round(frame.ts * 1_000_000), 1_000_000)
            wire = len(frame.data) if frame.wire_length is None else frame.wire_length
            out.write(struct.pack("<IIII", sec, usec, len(frame.data), wire))
            out.write(frame.data)
    return path


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ip_udp(src: str, dst: str, sport: int, dport: int, data: bytes) -> bytes:
    """An IPv4 (IHL 5) + UDP datagram with correct lengths and checksums."""
    udp_len = 8 + len(data)
    pseudo = ip4(src) + ip4(dst) + struct.pack("!BBH", 0, 17, udp_len)
    udp_csum = _checksum(pseudo + struct.pack("!HHHH", sport, dport, udp_len, 0) + data)
    udp = struct.pack("!HHHH", sport, dport, udp_len, udp_csum or 0xFFFF) + data
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                         ip4(src), ip4(dst))
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + udp


@dataclass
class Packet:
    delta: float
    data: bytes
    src: str
    dst: str
    sport: int
    dport: int


def eth_frame(p: Packet) -> bytes:
    """The packet as a broadcast Ethernet frame."""
    return ETH_BCAST + ETH_SRC + b"\x08\x00" + _ip_udp(p.src, p.dst, p.sport, p.dport, p.data)


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
        return write_pcap(path, (Frame(self.t0 + p.delta, eth_frame(p)) for p in self.packets))


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
        self.store = LeaseStore(self.client, Keys(), capture_clock=capture_clock, writer=WRITER)
        self.tracker = Tracker(cfg)
        self.tracker.restore(self.store.load())
        self.pipeline = Pipeline(self.tracker, self.store)
        self._n = 0

    def feed(self, capture: Capture) -> int:
        """Write the capture to a pcap and run it through; see feed_pcap."""
        self._n += 1
        path = capture.write(self.tmp_path / f"feed{self._n}.pcap")
        return self.feed_pcap(path, packets=len(capture.packets))

    def feed_pcap(self, path: Path, packets: int | None = None) -> int:
        """Run a pcap through, datagram by datagram; `packets`: how many datagrams must reach the
        pipeline (a case that expects nothing written must not pass because nothing was read).
        Returns the most transactions pending after any one datagram."""
        before = self.pipeline.stats["packets"]
        most = 0
        for datagram in read_file(path, engine=self.engine):
            self.pipeline.feed(datagram)
            most = max(most, self.tracker.pending_transactions)
        self.pipeline.flush()
        if packets is not None:
            assert self.pipeline.stats["packets"] - before == packets
        return most

    def close(self) -> None:
        self.client.close()


WRITER = "spec-harness"  # the writer id the harness's store stamps on every record


def E(t0: int, delta: float, lease: int) -> int:
    """The expected `expires` value E(delta, T) of the spec."""
    return t0 + math.floor(delta) + lease


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


class Case:
    """One spec case: its t0, a tracker session on the scratch Redis (kept across feeds, so that
    "after #2 ... after #4" can be checked), and the packets added since the last feed."""

    def __init__(self, redis_url: str, tmp_path: Path, *, t0: int | None = None,
                 **config: Any) -> None:
        self.redis_url = redis_url
        self.tmp_path = tmp_path
        self.config = config
        self.t0 = int(time.time()) if t0 is None else t0
        self._runs = 0
        self.session = self._start()
        self.capture = Capture(t0=self.t0)

    def _start(self) -> Session:
        self._runs += 1
        workdir = self.tmp_path / f"run{self._runs}"
        workdir.mkdir()
        return Session(self.redis_url, workdir, **self.config)

    def add(self, delta: float, data: bytes, src: str = ZERO, dst: str = BCAST,
            sport: int | None = None, dport: int | None = None) -> Case:
        self.capture.add(delta, data, src, dst, sport, dport)
        return self

    def feed(self) -> int:
        """Run the packets added since the last feed through the tracker, checking that each one
        reached the pipeline; returns the most transactions pending at any point."""
        capture, self.capture = self.capture, Capture(t0=self.t0)
        return self.session.feed(capture)

    def restart(self) -> None:
        """Stop the tracker and start a new one on the same Redis (pending transactions lost)."""
        self.session.close()
        self.session = self._start()

    def counter(self, name: str) -> int:
        return self.session.tracker.counters[name]

    def rec(self, ip: str, chaddr: bytes | None, server: str, xid: int, delta: float,
            lease: int, **extra: Any) -> dict[str, str]:
        """REC(ip, client, server, xid, delta, T) + extra fields, for this case's t0."""
        return rec(ip, None if chaddr is None else chaddr.hex(":"), server, xid, self.t0, delta,
                   lease, **extra)

    # ---- common exchanges ----

    def dora(self, xid: int, yi: str, *, chaddr: bytes = A, server: str = S1,
             ack_at: float = 0.3, lease: int | None = 3600, offer_lease: int | None = None,
             mask: int | None = 24, discover_opts: Iterable[Option] = (),
             request_opts: Iterable[Option] = (), ack_opts: Iterable[Option] = ()) -> Case:
        """DISCOVER, OFFER (51=offer_lease, by default lease), REQUEST {50, 54} and ACK on the
        servers' segment, 0.1 s apart, ending with the ACK at +ack_at."""
        start = ack_at - 0.3
        self.add(start, client_msg(DISCOVER, xid, chaddr, *discover_opts))
        self.add(start + 0.1, offer(xid, yi, chaddr, lease=offer_lease or lease, server=server,
                                    mask=mask), src=server)
        self.add(start + 0.2, client_msg(REQUEST, xid, chaddr, o_req(yi), o_server(server),
                                         *request_opts))
        self.add(ack_at, ack(xid, yi, chaddr, *ack_opts, lease=lease, server=server, mask=mask),
                 src=server)
        return self

    def request_ack(self, xid: int, yi: str, *, at: float = 0.0,
                    request_opts: Iterable[Option] = (), ack_opts: Iterable[Option] = (),
                    mask: int | None = 24) -> Case:
        """A's SELECTING REQUEST {50=yi, 54=S1, ...} at +at and S1's ACK 0.1 s later."""
        self.add(at, client_msg(REQUEST, xid, A, o_req(yi), o_server(S1), *request_opts))
        self.add(at + 0.1, ack(xid, yi, A, *ack_opts, mask=mask), src=S1)
        return self

    def renew(self, xid: int, ip: str, *, at: float = 0.0, request_opts: Iterable[Option] = (),
              lease: int = 3600) -> Case:
        """RENEWING: A's unicast REQUEST ci=ip {no 50/54} at +at, S1's unicast ACK 0.1 s later."""
        self.add(at, client_msg(REQUEST, xid, A, *request_opts, ci=ip), src=ip, dst=S1)
        self.add(at + 0.1, ack(xid, ip, A, lease=lease, ci=ip), src=S1, dst=ip)
        return self

    def setup_lease(self, ip: str, *, chaddr: bytes = A, server: str = S1, xid: int = 0xABCD,
                    at: float = -100, lease: int = 3600, hostname: str | None = None,
                    client_id: bytes | None = None) -> dict[str, str]:
        """A Setup state `L(ip) = REC(ip, chaddr, server, xid, at, lease)` (+hostname,
        +client_id), written through the tracker by a four-way exchange; checked, and returned."""
        opts: list[Option] = []
        extra: dict[str, str] = {}
        if hostname is not None:
            opts.append(o_host(hostname))
            extra.update(hostname=hostname, hostname_src="req12")
        if client_id is not None:
            opts.append(o_cid(client_id))
            extra["client_id"] = client_id.hex()
        self.dora(xid, ip, chaddr=chaddr, server=server, ack_at=at, lease=lease,
                  discover_opts=opts, request_opts=opts)
        self.feed()
        expected = self.rec(ip, chaddr, server, xid, at, lease, **extra)
        assert_lease(self.session.client, expected,
                     capture_clock=self.config.get("capture_clock", True))
        return expected

    def relayed_exchange(self, numbers: Iterable[int], *, xid: int, yi: str, relay: str,
                         base: float = 0.0, hostname: str | None = "alpha",
                         agent: Option | None = OPT82, server: str = S1,
                         server_id: str | None = None) -> Case:
        """The packets `numbers` (in that order) of case 2: A's four-way exchange through
        `relay`, captured on both interfaces of the relay host, at base + case 2's offsets.
        server_id: what the server puts in 54 (RFC 5107 override), by default its address."""
        sid = server_id or server
        host = () if hostname is None else (o_host(hostname),)
        a82 = () if agent is None else (agent,)
        req = (o_req(yi), o_server(sid), *host)
        up = {"src": relay, "dst": server, "sport": 67, "dport": 67}
        back = {"src": server, "dst": relay, "sport": 67, "dport": 67}
        down = {"src": relay, "dst": yi, "sport": 67, "dport": 68}
        packets: dict[int, tuple[float, bytes, dict[str, Any]]] = {
            1: (0.000, client_msg(DISCOVER, xid, A, *host), {}),
            2: (0.001, client_msg(DISCOVER, xid, A, *host, *a82, gi=relay, hops=1), up),
            3: (0.010, offer(xid, yi, A, *a82, server=sid, gi=relay), back),
            4: (0.011, offer(xid, yi, A, server=sid, gi=relay), down),
            5: (0.100, client_msg(REQUEST, xid, A, *req), {}),
            6: (0.101, client_msg(REQUEST, xid, A, *req, *a82, gi=relay, hops=1), up),
            7: (0.110, ack(xid, yi, A, *a82, server=sid, gi=relay), back),
            8: (0.111, ack(xid, yi, A, server=sid, gi=relay), down),
        }
        for n in numbers:
            delta, data, addresses = packets[n]
            self.add(base + delta, data, **addresses)
        return self

    def relayed_rebind(self, xid: int, ip: str, *, agent: Option = OPT82, server: str = S1,
                       at: float = 3150.0) -> Case:
        """Case 12's REBINDING: A's broadcast REQUEST ci=ip, relayed by R1 with `agent` to S1
        and S2; `server`'s ACK (echoing `agent`) and R1's copy to A 0.05 s later."""
        self.add(at, client_msg(REQUEST, xid, A, ci=ip), src=ip, dst=BCAST)
        relayed = client_msg(REQUEST, xid, A, agent, ci=ip, gi=R1)
        for helper in (S1, S2):
            self.add(at, relayed, src=R1, dst=helper, sport=67, dport=67)
        self.add(at + 0.05, ack(xid, ip, A, agent, server=server, ci=ip, gi=R1), src=server,
                 dst=R1, sport=67, dport=67)
        self.add(at + 0.05, ack(xid, ip, A, server=server, ci=ip, gi=R1), src=R1, dst=ip)
        return self


def case2_record(c: Case, delta: float = 0.11, **changes: Any) -> dict[str, str]:
    """L(198.51.100.50) as case 2 expects it after #7 (its ACK at +delta), with changes."""
    fields: dict[str, Any] = {
        "hostname": "alpha", "hostname_src": "req12", "giaddr": R1,
        "circuit_id": CIRCUIT_ID, "remote_id": REMOTE_ID,
    }
    fields.update(changes)
    xid = fields.pop("xid", 0x1002)
    server = fields.pop("server", S1)
    return c.rec(N1_LEASE, A, server, xid, delta, 3600, **fields)


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
            ips.add(text.rsplit(":", 1)[1].strip("{}"))
        elif text.count(".") == 3 and all(part.isdigit() for part in text.split(".")):
            ips.add(text)
    return ips


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decoded(h: dict[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in h.items()}


def record(client: redis.Redis, ip: str) -> Record | None:
    seed = _decoded(client.hgetall(ip))
    detail = _decoded(client.hgetall(f"{NS}:lease:{{{ip}}}"))
    if not seed and not detail:
        return None
    return Record(seed, detail, int(client.ttl(ip)), int(client.ttl(f"{NS}:lease:{{{ip}}}")))


def assert_lease(client: redis.Redis, expected: dict[str, str], *,
                 capture_clock: bool = True) -> None:
    """The record at expected['ip'] is exactly `expected` (detail), its seed hash holds exactly
    mac and hostname, and both TTLs match (R-RD-1, R-RD-3; 2 s tolerance)."""
    ip = expected["ip"]
    got = record(client, ip)
    assert got is not None, f"no record at {ip}"
    assert got.detail == {**expected, "writer": WRITER}
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


# ---- R-RD-1 formats, for records the test did not predict field by field --------------------

DETAIL_FIELDS = {"ip", "mac", "htype", "client_id", "hostname", "hostname_src", "expires",
                 "lease_time", "server", "giaddr", "circuit_id", "remote_id", "xid", "updated",
                 "kind", "writer"}
REQUIRED_FIELDS = {"ip", "htype", "expires", "lease_time", "server", "giaddr", "xid", "updated",
                   "kind", "writer"}
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


def check_formats(client: redis.Redis, ip: str) -> None:
    """Every field of the record at ip has its R-RD-1 format; the seed mirrors the detail; the
    TTLs match `expires` under the capture clock (2 s tolerance) or are -1 when infinite.
    Read in one transaction, so a record that expires meanwhile is seen whole or not at all."""
    detail_key = f"{NS}:lease:{{{ip}}}"
    pipe = client.pipeline(transaction=True)
    pipe.hgetall(ip)
    pipe.hgetall(detail_key)
    pipe.ttl(ip)
    pipe.ttl(detail_key)
    seed_raw, detail_raw, seed_ttl, detail_ttl = pipe.execute()
    seed = _decoded(seed_raw)
    d = _decoded(detail_raw)
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
    assert DECIMAL.fullmatch(d["lease_time"]) and 1 <= int(d["lease_time"]) <= INFINITE
    if d["expires"] == "infinite":
        assert d["lease_time"] == str(INFINITE)
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
