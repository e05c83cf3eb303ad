"""Synthetic DHCP traffic for the benchmarks, built with struct rather than scapy: a million
packets must be ready in seconds.

`exchanges(n)` yields the four payloads of n DORA exchanges with distinct clients and addresses;
`discover_flood(n)` yields DISCOVERs with random xids and MACs; `write_pcap` frames payloads as
Ethernet/IPv4/UDP records of a classic pcap file.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from socket import inet_aton
from typing import NamedTuple

SERVER = "10.0.0.1"
ROUTER = "10.0.0.254"
BROADCAST = "255.255.255.255"
ZERO = "0.0.0.0"
LEASE_TIME = 3600
MASK = "255.0.0.0"
FIRST_ADDRESS = 0x0A010001  # 10.1.0.1: clients get consecutive addresses from here

DISCOVER, OFFER, REQUEST, ACK = 1, 2, 3, 5
COOKIE = b"\x63\x82\x53\x63"
_BOOTP = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")
_PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # LINKTYPE_ETHERNET
_RECORD = struct.Struct("<IIII")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")
_ETHER_BROADCAST = b"\xff" * 6
_SERVER_MAC = bytes.fromhex("020000000001")


class Packet(NamedTuple):
    """One UDP datagram: capture time, addresses, ports, DHCP payload."""

    ts: float
    src: str
    dst: str
    sport: int
    dport: int
    payload: bytes


def _option(code: int, value: bytes) -> bytes:
    return bytes((code, len(value))) + value


def _payload(op: int, xid: int, mac: bytes, options: bytes, yiaddr: str = ZERO) -> bytes:
    header = _BOOTP.pack(op, 1, 6, 0, xid, 0, 0x8000, inet_aton(ZERO), inet_aton(yiaddr),
                         inet_aton(ZERO), inet_aton(ZERO), mac, b"", b"")
    return header + COOKIE + options + b"\xff"


def client_mac(index: int) -> bytes:
    return b"\x02\x00" + index.to_bytes(4, "big")


def lease_address(index: int) -> str:
    return ".".join(str(b) for b in (FIRST_ADDRESS + index).to_bytes(4, "big"))


def hostname(index: int) -> str:
    return f"host-{index}"


def _server_options(kind: int) -> bytes:
    return (_option(53, bytes((kind,))) + _option(54, inet_aton(SERVER))
            + _option(51, LEASE_TIME.to_bytes(4, "big")) + _option(1, inet_aton(MASK))
            + _option(3, inet_aton(ROUTER)))


_OFFER_OPTIONS = _server_options(OFFER)
_ACK_OPTIONS = _server_options(ACK)
_PARAMETERS = _option(55, bytes((1, 3, 6, 15, 51, 54)))


def exchange(index: int, ts: float) -> list[Packet]:
    """DISCOVER, OFFER, REQUEST, ACK of client `index`, a quarter of a millisecond apart; the
    hostname is sent in the client messages only, so the tracker must correlate to keep it."""
    xid = 0x10000000 + index
    mac = client_mac(index)
    address = lease_address(index)
    name = _option(12, hostname(index).encode())
    discover = _payload(1, xid, mac, _option(53, b"\x01") + name + _PARAMETERS)
    request = _payload(1, xid, mac, _option(53, b"\x03") + _option(50, inet_aton(address))
                       + _option(54, inet_aton(SERVER)) + name + _PARAMETERS)
    offer = _payload(2, xid, mac, _OFFER_OPTIONS, address)
    ack = _payload(2, xid, mac, _ACK_OPTIONS, address)
    return [
        Packet(ts, ZERO, BROADCAST, 68, 67, discover),
        Packet(ts + 0.00025, SERVER, BROADCAST, 67, 68, offer),
        Packet(ts + 0.0005, ZERO, BROADCAST, 68, 67, request),
        Packet(ts + 0.00075, SERVER, BROADCAST, 67, 68, ack),
    ]


def exchanges(count: int, start: float, rate: float = 1000.0,
              first_index: int = 0) -> Iterator[Packet]:
    """`count` exchanges at `rate` exchanges per second of capture time."""
    for n in range(count):
        yield from exchange(first_index + n, start + n / rate)


def discover_flood(count: int, start: float, rate: float = 10_000.0,
                   seed: int = 1) -> Iterator[Packet]:
    """DISCOVERs with random xids and locally administered random MACs (a starvation tool)."""
    rng = random.Random(seed)
    template = _payload(1, 0, bytes(6), _option(53, b"\x01") + _PARAMETERS)
    head, middle, tail = template[:4], template[8:28], template[34:]
    for n in range(count):
        xid = rng.getrandbits(32).to_bytes(4, "big")
        mac = (rng.getrandbits(48) | 0x020000000000).to_bytes(6, "big")
        yield Packet(start + n / rate, ZERO, BROADCAST, 68, 67, head + xid + middle + mac + tail)


def _checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _frame(packet: Packet) -> bytes:
    udp_length = 8 + len(packet.payload)
    ip = _IPV4.pack(0x45, 0, 20 + udp_length, 0, 0, 64, 17, 0, inet_aton(packet.src),
                    inet_aton(packet.dst))
    ip = ip[:10] + _checksum(ip).to_bytes(2, "big") + ip[12:]
    source_mac = _SERVER_MAC if packet.sport == 67 else packet.payload[28:34]
    ethernet = _ETHER_BROADCAST + source_mac + b"\x08\x00"
    # UDP checksum 0: "not computed", valid for IPv4 (RFC 768).
    udp = _UDP.pack(packet.sport, packet.dport, udp_length, 0)
    return ethernet + ip + udp + packet.payload


def write_pcap(path: Path, packets: Iterable[Packet]) -> int:
    """Write a pcap file; returns the number of packets."""
    count = 0
    with path.open("wb") as out:
        out.write(_PCAP_HEADER)
        for packet in packets:
            frame = _frame(packet)
            seconds, micros = divmod(round(packet.ts * 1e6), 1_000_000)
            out.write(_RECORD.pack(seconds, micros, len(frame), len(frame)) + frame)
            count += 1
    return count
