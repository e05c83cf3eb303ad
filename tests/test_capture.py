"""File capture (sniffer.capture_file, sniffer.tshark) against real tshark: link types, bounds,
fragments, ports, errors, cleanup.

Captures are built with scapy in tmp_path; the shared public captures are read in place.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, require_tool, shared_pcaps
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import ICMP, IP, UDP, IPOption_Router_Alert, fragment
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap, wrpcapng

from sniffer.capture_file import FileCapture, read_file
from sniffer.dhcp import Datagram
from sniffer.tshark import (
    MIN_TSHARK_VERSION,
    TSHARK_DIRECTORIES,
    CaptureError,
    display_filter,
    find_tshark,
    tshark_version,
)

TS = 1700000000.123456
SERVER, CLIENT = "192.0.2.1", "192.0.2.100"
ENGINES = ["tshark", "pyshark"]
FLOOD = "sv_dhcp_request_flood_10000_discover.pcap"


@pytest.fixture(autouse=True)
def _tshark() -> None:
    require_tool("tshark")


def eth() -> Packet:
    """An Ethernet header with both addresses set (scapy would otherwise ARP for the MAC)."""
    return Ether(src="02:00:00:00:00:53", dst="ff:ff:ff:ff:ff:ff")


def dhcp_ack(padding: int = 0) -> Packet:
    """The BOOTP/DHCP part of an ACK for CLIENT, optionally padded to a larger message."""
    options = [("message-type", "ack"), ("server_id", SERVER), ("lease_time", 3600), "end"]
    ack = BOOTP(op=2, xid=0x7001, yiaddr=CLIENT, chaddr=bytes.fromhex("020000000001")) / DHCP(
        options=options
    )
    return ack / Raw(b"\x00" * padding) if padding else ack


def udp_ack(sport: int = 67, dport: int = 68, **udp: Any) -> Packet:
    return IP(src=SERVER, dst=CLIENT) / UDP(sport=sport, dport=dport, **udp) / dhcp_ack()


def stamped(packet: Packet) -> Packet:
    packet.time = TS
    return packet


def write(path: Path, packets: list[Packet], **options: Any) -> Path:
    wrpcap(str(path), [stamped(p) for p in packets], **options)
    return path


def write_pcapng(path: Path, packets: list[Packet]) -> Path:
    wrpcapng(str(path), [stamped(p) for p in packets])
    return path


def expected(
    payload: bytes,
    *,
    src: str = SERVER,
    dst: str = CLIENT,
    frame: int = 1,
    sport: int = 67,
    dport: int = 68,
    truncated: bool = False,
) -> Datagram:
    return Datagram(
        ts=TS,
        src=src,
        dst=dst,
        sport=sport,
        dport=dport,
        payload=payload,
        truncated=truncated,
        frame=frame,
    )


def tshark_children() -> list[str]:
    """tshark processes (running or zombie) whose parent is this test process."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # exited while we looked
        comm = text[text.index("(") + 1 : text.rindex(")")]
        ppid = int(text[text.rindex(")") + 2 :].split()[1])
        if ppid == os.getpid() and comm in ("tshark", "dumpcap"):
            found.append(f"{stat.parent.name} {comm}")
    return found


PAYLOAD = bytes(dhcp_ack())
TRAILER = b"\xee" * 20

# Case 92 and R-IN-1: the same ACK under every encapsulation the tracker must accept, with the
# link type to write it under (None: the one scapy derives from the outermost layer).
ENCAPSULATIONS: dict[str, tuple[Callable[[], Packet], int | None]] = {
    "ethernet": (lambda: eth() / udp_ack(), None),
    "802.1q": (lambda: eth() / Dot1Q(vlan=10) / udp_ack(), None),
    "qinq": (lambda: eth() / Dot1AD(vlan=100) / Dot1Q(vlan=10) / udp_ack(), None),
    "ip-options": (
        lambda: (
            eth()
            / IP(src=SERVER, dst=CLIENT, options=[IPOption_Router_Alert()])
            / UDP(sport=67, dport=68)
            / dhcp_ack()
        ),
        None,
    ),
    "ethernet-trailer": (lambda: Ether(bytes(eth() / udp_ack()) + TRAILER), None),
    "udp-checksum-zero": (lambda: eth() / udp_ack(chksum=0), None),
    "udp-checksum-wrong": (lambda: eth() / udp_ack(chksum=0xBAD1), None),
    "linux-sll": (lambda: CookedLinux(proto=0x0800) / udp_ack(), None),
    "linux-sll2": (lambda: CookedLinuxV2(proto=0x0800) / udp_ack(), None),
    "raw-ip-101": (udp_ack, 101),
    "raw-ipv4-228": (udp_ack, 228),
}


@pytest.mark.parametrize("name", list(ENCAPSULATIONS))
def test_every_encapsulation_gives_the_same_datagram(tmp_path: Path, name: str) -> None:
    build, linktype = ENCAPSULATIONS[name]
    datagrams = list(read_file(write(tmp_path / "case.pcap", [build()], linktype=linktype)))
    assert datagrams == [expected(PAYLOAD)]
    assert datagrams[0].ts == pytest.approx(TS, abs=1e-6)


def test_a_datagram_is_built_as_its_constructor_would(tmp_path: Path) -> None:
    """to_datagram builds the tuple of fields itself, in the class order."""
    (datagram,) = read_file(write(tmp_path / "case.pcap", [eth() / udp_ack()]))
    assert type(datagram) is Datagram
    assert datagram == Datagram(**datagram._asdict()) == expected(PAYLOAD)


def test_pcapng_gives_the_same_datagram(tmp_path: Path) -> None:
    assert list(read_file(write_pcapng(tmp_path / "case.pcapng", [eth() / udp_ack()]))) == [
        expected(PAYLOAD)
    ]


def test_router_alert_header_really_has_ihl_6() -> None:
    """Guards the ip-options case above."""
    header = bytes(IP(src=SERVER, dst=CLIENT, options=[IPOption_Router_Alert()]) / UDP())
    assert header[0] & 0x0F == 6


def test_trailer_after_ip_total_length_is_not_payload(tmp_path: Path) -> None:
    build, _ = ENCAPSULATIONS["ethernet-trailer"]
    (datagram,) = read_file(write(tmp_path / "trailer.pcap", [build()]))
    assert not datagram.payload.endswith(TRAILER)
    assert len(datagram.payload) == len(PAYLOAD)


def test_payload_is_bounded_by_udp_length(tmp_path: Path) -> None:
    """R-IN-2: a UDP length shorter than the IP payload bounds the message."""
    path = write(tmp_path / "short-udp.pcap", [eth() / udp_ack(len=8 + 240)])
    assert list(read_file(path)) == [expected(PAYLOAD[:240])]


def test_snaplen_cut_marks_truncated(tmp_path: Path) -> None:
    """Case 89: the capture keeps the headers and 250 octets of the DHCP message."""
    headers = 14 + 20 + 8
    frame = bytes(eth() / udp_ack())[: headers + 250]
    path = write(tmp_path / "snap.pcap", [Ether(frame)], snaplen=headers + 250)
    assert list(read_file(path)) == [expected(PAYLOAD[:250], truncated=True)]


def test_capture_cut_inside_udp_header_is_truncated_and_empty(tmp_path: Path) -> None:
    frame = bytes(eth() / udp_ack())[: 14 + 20 + 4]
    path = write(tmp_path / "cut.pcap", [Ether(frame)], snaplen=14 + 20 + 4)
    assert list(read_file(path)) == [expected(b"", truncated=True)]


def test_ip_total_length_beyond_capture_marks_truncated(tmp_path: Path) -> None:
    """R-IN-2: the IP total length claims more than was captured, even if UDP's does not."""
    packet = (
        eth()
        / IP(src=SERVER, dst=CLIENT, len=20 + 8 + len(PAYLOAD) + 50)
        / UDP(sport=67, dport=68)
        / dhcp_ack()
    )
    path = write(tmp_path / "iplen.pcap", [packet])
    assert list(read_file(path)) == [expected(PAYLOAD, truncated=True)]


def ack_fragments() -> list[Packet]:
    """Case 90: an 1800-octet ACK in two IPv4 fragments."""
    big = (
        IP(src=SERVER, dst=CLIENT, id=0x4242)
        / UDP(sport=67, dport=68)
        / dhcp_ack(1800 - len(PAYLOAD))
    )
    return [eth() / piece for piece in fragment(big, fragsize=1000)]


class TestFragments:
    """Case 90 and R-IN-4: reassembly, and no effect from a lone fragment."""

    @pytest.fixture
    def fragments(self) -> list[Packet]:
        pieces = ack_fragments()
        assert len(pieces) == 2
        return pieces

    def test_both_fragments_are_reassembled_into_one_datagram(
        self, tmp_path: Path, fragments: list[Packet]
    ) -> None:
        (datagram,) = read_file(write(tmp_path / "frags.pcap", fragments))
        assert datagram == expected(PAYLOAD + b"\x00" * (1800 - len(PAYLOAD)), frame=2)
        assert len(datagram.payload) == 1800

    @pytest.mark.parametrize("which", [0, 1])
    def test_a_lone_fragment_yields_nothing(
        self, tmp_path: Path, fragments: list[Packet], which: int
    ) -> None:
        assert list(read_file(write(tmp_path / "one.pcap", [fragments[which]]))) == []


def not_ours() -> list[Packet]:
    """Frames the display filter matches or nearly matches, none of them ours (R-IN-1)."""
    return [
        eth() / IP(src=SERVER, dst=CLIENT) / UDP(sport=53, dport=5353) / Raw(b"dns"),
        eth() / IPv6() / UDP(sport=67, dport=68) / dhcp_ack(),  # DHCP-shaped, but IPv6
        # 6in4: the innermost UDP is not over IPv4
        eth() / IP(src="10.0.0.1", dst="10.0.0.2") / IPv6() / UDP(sport=67, dport=68) / dhcp_ack(),
        # the copy of a datagram that an ICMP error quotes
        eth() / IP(src=CLIENT, dst=SERVER) / ICMP(type=3, code=3) / udp_ack(),
    ]


def vxlan_ack() -> Packet:
    return (
        eth()
        / IP(src="203.0.113.1", dst="203.0.113.2")
        / UDP(sport=4789, dport=4789)
        / VXLAN(vni=5)
        / eth()
        / udp_ack()
    )


def test_only_ipv4_udp_on_dhcp_ports_is_delivered(tmp_path: Path) -> None:
    datagrams = list(read_file(write(tmp_path / "mixed.pcap", [*not_ours(), eth() / udp_ack()])))
    assert datagrams == [expected(PAYLOAD, frame=5)]


def test_tunnelled_datagram_uses_the_innermost_layers(tmp_path: Path) -> None:
    assert list(read_file(write(tmp_path / "vxlan.pcap", [vxlan_ack()]))) == [expected(PAYLOAD)]


def test_alternate_ports(tmp_path: Path) -> None:
    path = write(tmp_path / "ports.pcap", [eth() / udp_ack(), eth() / udp_ack(1067, 1068)])
    assert list(read_file(path)) == [expected(PAYLOAD)]
    assert list(read_file(path, ports=(1067, 1068))) == [
        expected(PAYLOAD, frame=2, sport=1067, dport=1068)
    ]


def test_relay_to_server_traffic_on_67_both_ways(tmp_path: Path) -> None:
    path = write(tmp_path / "relay.pcap", [eth() / udp_ack(67, 67)])
    assert list(read_file(path)) == [expected(PAYLOAD, dport=67)]


def repo_pcaps() -> list[Path]:
    return sorted(p for p in (REPO / "pcaps").iterdir() if p.suffix in (".pcap", ".pcapng"))


REAL_CAPTURES = shared_pcaps() + repo_pcaps()


@pytest.mark.parametrize("path", REAL_CAPTURES, ids=lambda p: p.name)
def test_real_capture_reads_without_error(path: Path) -> None:
    datagrams = list(read_file(path))
    fields = path.with_name(path.name + ".fields.txt")
    if fields.exists():  # a shared capture: the frames tshark's own DHCP dissector matches
        reference = [int(line.split("\t")[0]) for line in fields.read_text().splitlines() if line]
        assert [d.frame for d in datagrams] == reference
    else:
        assert datagrams, "the project's own captures all hold DHCP"


def test_engines_agree_on_real_captures(tmp_path: Path) -> None:
    """All real captures concatenated into one pcapng, so pyshark (slow to start) runs once."""
    if not REAL_CAPTURES:
        pytest.skip("no captures in ../shared/pcaps or pcaps/")
    merged = tmp_path / "all.pcapng"
    mergecap = require_tool("mergecap")
    subprocess.run([mergecap, "-a", "-w", str(merged), *map(str, REAL_CAPTURES)], check=True)
    by_tshark = list(read_file(merged))
    assert len(by_tshark) >= len(REAL_CAPTURES)
    assert list(read_file(merged, engine="pyshark")) == by_tshark


def test_engines_agree_on_synthetic_captures(tmp_path: Path) -> None:
    """Every synthetic case above, grouped into one file per link type (pyshark is slow)."""
    by_linktype: dict[object, list[Packet]] = {}
    for build, linktype in ENCAPSULATIONS.values():
        frame = build()
        by_linktype.setdefault(linktype or type(frame), []).append(frame)
    cut = bytes(eth() / udp_ack())[:300]
    by_linktype[Ether] += [Ether(cut), *ack_fragments(), *not_ours(), vxlan_ack()]
    by_linktype[Ether] += [eth() / udp_ack(67, 67), eth() / udp_ack(len=248)]
    paths = [write_pcapng(tmp_path / "ethernet.pcapng", by_linktype[Ether])]
    for number, (key, frames) in enumerate(by_linktype.items()):
        linktype = key if isinstance(key, int) else None
        paths.append(write(tmp_path / f"{number}.pcap", frames, linktype=linktype))
    for path in paths:
        by_tshark = list(read_file(path))
        assert by_tshark, path.name
        assert list(read_file(path, engine="pyshark")) == by_tshark, path.name


@pytest.fixture
def flood() -> Path:
    path = REPO.parent / "shared" / "pcaps" / FLOOD
    if not path.exists():
        pytest.skip(f"{FLOOD} is not in ../shared/pcaps")
    return path


@pytest.mark.parametrize("engine", ENGINES)
def test_early_close_reaps_tshark(flood: Path, engine: str) -> None:
    datagrams = read_file(flood, engine=engine)
    next(datagrams)
    assert tshark_children()  # the check below can see a running tshark
    datagrams.close()
    assert tshark_children() == []


@pytest.mark.parametrize("engine", ENGINES)
def test_consumer_exception_reaps_tshark(flood: Path, engine: str) -> None:
    with pytest.raises(KeyError), FileCapture(flood, engine=engine) as capture:
        for _ in capture:
            raise KeyError("consumer failed")
    assert tshark_children() == []


def test_close_ends_the_iteration(flood: Path) -> None:
    with FileCapture(flood) as capture:
        datagrams = iter(capture)
        next(datagrams)
        capture.close()
        assert tshark_children() == []
        assert list(datagrams) == []


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match=r"Is a directory$"):
        FileCapture(tmp_path)


def test_progress_reaches_the_file_size(flood: Path) -> None:
    with FileCapture(flood) as capture:
        assert capture.bytes_read() == 0
        seen = [capture.bytes_read() for _ in capture]
        assert capture.bytes_read() == capture.size == flood.stat().st_size
    assert seen == sorted(seen)
    assert 0 < max(seen) <= capture.size


@pytest.fixture
def truncated(tmp_path: Path) -> Path:
    """Three ACKs, the last one cut off in the middle."""
    path = write(tmp_path / "cut.pcap", [eth() / udp_ack()] * 3)
    path.write_bytes(path.read_bytes()[:-100])
    return path


@pytest.mark.parametrize("engine", ENGINES)
def test_truncated_file_delivers_datagrams_then_fails(truncated: Path, engine: str) -> None:
    received = []
    with pytest.raises(CaptureError) as error:
        for datagram in read_file(truncated, engine=engine):
            received.append(datagram)
    assert [d.frame for d in received] == [1, 2]
    message = str(error.value)
    assert message.startswith(f"{truncated}: tshark: ")
    assert "cut short in the middle of a packet" in message
    assert "\n" not in message and "Running as user" not in message
    assert tshark_children() == []


@pytest.mark.parametrize("engine", ENGINES)
def test_missing_file(tmp_path: Path, engine: str) -> None:
    missing = tmp_path / "missing.pcap"
    with pytest.raises(
        CaptureError, match=f"^{re.escape(str(missing))}: No such file or directory$"
    ):
        list(read_file(missing, engine=engine))


@pytest.mark.parametrize("engine", ENGINES)
def test_not_a_capture_file(tmp_path: Path, engine: str) -> None:
    junk = tmp_path / "notes.pcap"
    junk.write_text("these are not packets\n" * 10)
    with pytest.raises(
        CaptureError, match=f"^{re.escape(str(junk))}: tshark: .*isn't a capture file"
    ):
        list(read_file(junk, engine=engine))
    assert tshark_children() == []


def test_empty_capture_yields_nothing(tmp_path: Path) -> None:
    assert list(read_file(write(tmp_path / "empty.pcap", []))) == []


def test_tshark_helpers() -> None:
    assert os.access(find_tshark(), os.X_OK)
    version = tuple(int(part) for part in tshark_version().split("."))
    assert version >= MIN_TSHARK_VERSION


def test_find_tshark_follows_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        monkeypatch.setenv("PATH", str(tmp_path))
        find_tshark.cache_clear()
        with pytest.raises(CaptureError, match=r"^tshark not found: install it with apt-get"):
            find_tshark()
        # Without PATH, the usual directories (Debian puts tshark in /usr/bin).
        monkeypatch.delenv("PATH")
        find_tshark.cache_clear()
        path = find_tshark()
        assert os.path.dirname(path) in TSHARK_DIRECTORIES.split(":")
        assert os.access(path, os.X_OK)
    finally:
        find_tshark.cache_clear()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"engine": "scapy"}, "unknown capture engine"),
        ({"ports": ()}, "DHCP ports"),
        ({"ports": (67, 70000)}, "DHCP ports"),
    ],
)
def test_bad_arguments(tmp_path: Path, options: dict[str, Any], message: str) -> None:
    path = write(tmp_path / "eth.pcap", [eth() / udp_ack()])
    with pytest.raises(CaptureError, match=message):
        FileCapture(path, **options)


def test_display_filter_covers_each_port_once() -> None:
    assert display_filter([68, 67, 68]) == "udp.port == 67 || udp.port == 68"
