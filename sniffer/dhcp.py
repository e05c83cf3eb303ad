"""Pure DHCPv4/BOOTP decoding (spec R-IN, R-CL, R-ID, R-HN): payload bytes -> DhcpMessage.

No I/O here. `decode()` either returns a frozen DhcpMessage or raises Dropped naming the counter
that the drop increments (spec section 1.12).
"""

from __future__ import annotations

from dataclasses import dataclass

# Message types (option 53), RFC 2132 section 9.6.
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)

TYPE_NAMES = {
    DISCOVER: "DHCPDISCOVER",
    OFFER: "DHCPOFFER",
    REQUEST: "DHCPREQUEST",
    DECLINE: "DHCPDECLINE",
    ACK: "DHCPACK",
    NAK: "DHCPNAK",
    RELEASE: "DHCPRELEASE",
    INFORM: "DHCPINFORM",
}


class Dropped(Exception):
    """A packet that is not a usable DHCP message. `reason` is the counter name it increments."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Datagram:
    """One captured UDP datagram as a capture engine delivers it (R-IN-1, R-IN-2)."""

    ts: float  # capture timestamp, Unix seconds
    src: str  # IPv4 source address
    dst: str  # IPv4 destination address
    sport: int
    dport: int
    payload: bytes  # the UDP payload as captured, bounded by the UDP length field
    truncated: bool  # the IP or UDP length says more than was captured (capture-truncated)
    frame: int = 0  # frame number in the capture file, 1-based; 0 when unknown


@dataclass(frozen=True, slots=True)
class DhcpMessage:
    """A decoded DHCP or BOOTP message. Every option field holds only a value that passed R-IN-10."""

    ts: float
    src: str
    dst: str
    sport: int
    dport: int
    frame: int
    op: int
    htype: int
    hlen: int
    hops: int
    xid: int
    secs: int
    flags: int
    ciaddr: str
    yiaddr: str
    siaddr: str
    giaddr: str
    chaddr: bytes  # chaddr[0:hlen] only (R-ID-1)
    msg_type: int | None  # option 53; None for BOOTP (R-IN-12)
    server_id: str | None  # option 54
    requested_ip: str | None  # option 50
    lease_time: int | None  # option 51, unsigned; 0xffffffff kept as is
    subnet_mask: str | None  # option 1, contiguous only
    routers: tuple[str, ...]  # option 3
    hostname: str | None  # option 12 after R-HN-2; None when empty or absent
    fqdn: str | None  # option 81 after R-HN-2/R-HN-3; None when unusable or empty
    client_id: str | None  # option 61 as lowercase hex, type octet included
    rapid_commit: bool  # option 80 present with length 0
    relay_info: bool  # a valid option 82 was present
    circuit_id: str | None  # option 82 sub-option 1, lowercase hex
    remote_id: str | None  # option 82 sub-option 2, lowercase hex
    vendor_class: str | None  # option 60, printable ASCII only
    param_request_list: tuple[int, ...]  # option 55
    option_codes: tuple[int, ...]  # every option code seen, in order of first appearance
    framing_error: bool  # R-IN-6
    capture_truncated: bool  # R-IN-2

    @property
    def mac(self) -> str | None:
        """chaddr as lowercase colon-separated hex; None when hlen is 0 (R-ID-1)."""
        return ":".join(f"{b:02x}" for b in self.chaddr) if self.chaddr else None

    @property
    def hw(self) -> tuple[int, bytes]:
        """The typed hardware address (R-ID-1): the same octets with another htype differ."""
        return (self.htype, self.chaddr)

    @property
    def type_name(self) -> str:
        if self.msg_type is None:
            return "BOOTREQUEST" if self.op == 1 else "BOOTREPLY"
        return TYPE_NAMES[self.msg_type]

    @property
    def is_reply(self) -> bool:
        return self.op == 2

    def to_json(self) -> dict[str, object]:
        """The seed's message format plus further keys (used by `decode --json`)."""
        raise NotImplementedError


def sanitize_hostname(raw: bytes) -> str | None:
    """R-HN-2 steps S1-S6; None when nothing is left."""
    raise NotImplementedError


def decode(datagram: Datagram) -> DhcpMessage:
    """Decode one datagram per R-IN; raise Dropped(reason) for anything R-IN says to drop."""
    raise NotImplementedError
