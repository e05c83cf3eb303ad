"""Pure DHCPv4/BOOTP decoding: payload bytes -> DhcpMessage.

It follows the capture and decoding rules (R-IN), classification (R-CL), client identity (R-ID)
and hostname sanitising (R-HN) of docs/tracking.md.

No I/O here. `decode()` either returns a frozen DhcpMessage or raises Dropped naming the counter
that the drop increments (the counters of docs/tracking.md).
"""

from __future__ import annotations

import struct
from socket import AF_INET, inet_ntoa, inet_pton
from typing import NamedTuple

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

# R-IN-14: the message types each op may carry.
_TYPES_FOR_OP = {
    1: frozenset({DISCOVER, REQUEST, DECLINE, RELEASE, INFORM}),
    2: frozenset({OFFER, ACK, NAK}),
}

# Fixed header (RFC 2131 Table 1): op htype hlen hops xid secs flags ciaddr yiaddr siaddr giaddr.
_HEADER = struct.Struct("!BBBBIHH4s4s4s4s")
_CHADDR, _SNAME, _FILE, _COOKIE_AT, _OPTIONS = 28, 44, 108, 236, 240
_COOKIE = b"\x63\x82\x53\x63"

# An address field left unset (ciaddr, yiaddr, giaddr of most messages): "no address".
ZERO = "0.0.0.0"

_PAD, _END, _OVERLOAD = 0, 255, 52
_ZERO_ADDRESS = bytes(4)

# bytes.translate deletion tables, built once.
_HOSTNAME_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"
_NOT_HOSTNAME = bytes(b for b in range(256) if b not in _HOSTNAME_CHARS)
_NOT_LABEL = _NOT_HOSTNAME + b"."  # R-HN-3: a "." octet inside a wire-format label is removed
_NOT_PRINTABLE = bytes(b for b in range(256) if not 0x20 <= b <= 0x7E)

# Option 1 values that are contiguous netmasks (/0 to /32), with their dotted form: any other
# value reads as absent.
_NETMASKS = {
    mask.to_bytes(4, "big"): inet_ntoa(mask.to_bytes(4, "big"))
    for mask in ((0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF for prefix in range(33))
}

_MAX_HOSTNAME = 253  # R-HN-2 S5: a name is cut to 253 octets
_FQDN_E_BIT = 0x04  # RFC 4702 section 2.1: the name is in DNS wire format


class Dropped(Exception):
    """A packet that is not a usable DHCP message. `reason` is the counter name it increments."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class Datagram(NamedTuple):
    """One captured UDP datagram as a capture engine delivers it (R-IN-1, R-IN-2). A named
    tuple, like DhcpMessage: one is built for every packet."""

    ts: float  # capture timestamp, Unix seconds
    src: str  # IPv4 source address
    dst: str  # IPv4 destination address
    sport: int
    dport: int
    payload: bytes  # the UDP payload as captured, bounded by the UDP length field
    truncated: bool  # the IP or UDP length says more than was captured (capture-truncated)
    frame: int = 0  # frame number in the capture file, 1-based; 0 when unknown


class DhcpMessage(NamedTuple):
    """A decoded DHCP or BOOTP message. Every option field holds only a value passing its check
    (R-IN-10: length and form); an option failing it reads as absent.

    A named tuple, as the leases `leases` lists (LeaseRow): decode() builds one for every
    packet, and a tuple of 36 values costs a quarter of a frozen dataclass's dict of them."""

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
    hostname: str | None  # option 12 sanitised (R-HN-2); None when empty or absent
    fqdn: str | None  # option 81 sanitised (R-HN-2; wire format R-HN-3); None when unusable
    client_id: str | None  # option 61 as lowercase hex, type octet included
    rapid_commit: bool  # option 80 present with length 0
    relay_info: bool  # a valid option 82 was present
    circuit_id: str | None  # option 82 sub-option 1, lowercase hex
    remote_id: str | None  # option 82 sub-option 2, lowercase hex
    vendor_class: str | None  # option 60, printable ASCII only
    param_request_list: tuple[int, ...]  # option 55
    option_codes: tuple[int, ...]  # every option code seen, in order of first appearance
    framing_error: bool  # R-IN-6: an option ran past its field; decoding stopped there
    capture_truncated: bool  # R-IN-2: the IP or UDP length says more than was captured

    @property
    def mac(self) -> str | None:
        """chaddr as lowercase colon-separated hex; None when hlen is 0 (R-ID-1)."""
        return self.chaddr.hex(":") if self.chaddr else None

    @property
    def hw(self) -> tuple[int, bytes]:
        """The typed hardware address (R-ID-1): the same octets with another htype differ."""
        return (self.htype, self.chaddr)

    @property
    def server(self) -> str:
        """server(P), the server a reply speaks for (R-SV-1): option 54, else the IP source."""
        return self.server_id or self.src

    @property
    def type_name(self) -> str:
        if self.msg_type is None:
            return "BOOTREQUEST" if self.op == 1 else "BOOTREPLY"
        return TYPE_NAMES[self.msg_type]

    @property
    def is_reply(self) -> bool:
        return self.op == 2

    @property
    def client_ip(self) -> str | None:
        """The address the message is about, as the seed's message format means `client_ip`.

        The offered or acknowledged address (yiaddr) in OFFER and ACK; the requested one
        (option 50) in REQUEST, or ciaddr when a renewing or rebinding client sends none, and in
        DECLINE; the client's own (ciaddr) in RELEASE and INFORM; none in DISCOVER and NAK.
        BOOTP alike: yiaddr in a BOOTREPLY, ciaddr in a BOOTREQUEST (0.0.0.0 unless the client
        knows its address).
        """
        msg_type = self.msg_type
        if msg_type is None:
            return self.yiaddr if self.op == 2 else self.ciaddr
        if msg_type in (OFFER, ACK):
            return self.yiaddr
        if msg_type == REQUEST and self.requested_ip is None:
            return self.ciaddr
        if msg_type in (REQUEST, DECLINE):
            return self.requested_ip
        if msg_type in (RELEASE, INFORM):
            return self.ciaddr
        return None  # DISCOVER, NAK

    def to_json(self) -> dict[str, object]:
        """The seed's message format plus further keys (used by `decode --json`).

        `server_ip` falls back to siaddr as the header holds it, 0.0.0.0 included, as `relay_ip`
        is giaddr as it is.
        """
        return {
            "msg_type": self.type_name,
            "client_mac": self.mac,
            "hostname": self.fqdn if self.fqdn is not None else self.hostname,
            "relay_ip": self.giaddr,
            "client_ip": self.client_ip,
            "your_ip": self.yiaddr,  # the same as yiaddr; documented before yiaddr was added
            "server_ip": self.server_id if self.server_id is not None else self.siaddr,
            "lease_time": self.lease_time,
            "subnet_mask": self.subnet_mask,
            "router": self.routers[0] if self.routers else None,
            "xid": f"{self.xid:08x}",
            "ts": self.ts,
            "frame": self.frame,
            "src": self.src,
            "dst": self.dst,
            "sport": self.sport,
            "dport": self.dport,
            "htype": self.htype,
            "hops": self.hops,
            "flags": self.flags,
            "ciaddr": self.ciaddr,
            "yiaddr": self.yiaddr,
            "siaddr": self.siaddr,
            "requested_ip": self.requested_ip,
            "client_id": self.client_id,
            "fqdn": self.fqdn,
            "hostname_opt12": self.hostname,
            "rapid_commit": self.rapid_commit,
            "circuit_id": self.circuit_id,
            "remote_id": self.remote_id,
            "vendor_class": self.vendor_class,
            "param_request_list": list(self.param_request_list),
            "options": list(self.option_codes),
            "framing_error": self.framing_error,
            "capture_truncated": self.capture_truncated,
        }


def valid_lease_address(ip: str) -> bool:
    """R-IN-15 (an address a lease can be for): False in 0.0.0.0/8, 127.0.0.0/8, 224.0.0.0/4,
    240.0.0.0/4 (255.255.255.255 included), or if not a dotted-quad address at all."""
    try:
        first = inet_pton(AF_INET, ip)[0]
    except (OSError, ValueError):  # not four decimal octets; a NUL or non-ASCII character
        return False
    return first != 0 and first != 127 and first < 224


def _finish_name(name: bytes) -> str | None:
    """R-HN-2 S5 and S6 (cut to 253 octets, strip a trailing dot; nothing left: None) on a name
    that already has no empty labels."""
    name = name[:_MAX_HOSTNAME].rstrip(b".")
    return name.decode("ascii") if name else None


def sanitize_hostname(raw: bytes) -> str | None:
    """R-HN-2 steps S1-S6: cut at the first NUL, keep only [A-Za-z0-9._-], collapse and strip
    dots, cut to 253 octets; None when nothing is left."""
    name = raw.split(b"\0", 1)[0].translate(None, _NOT_HOSTNAME)  # S1, S2
    if b".." in name or name[:1] == b"." or name[-1:] == b".":
        name = b".".join(label for label in name.split(b".") if label)  # S3, S4
    return _finish_name(name)


def _wire_name(data: bytes) -> str | None:
    """R-HN-3: a DNS wire-format name (no compression); None when unusable or empty."""
    labels = []
    pos, end = 0, len(data)
    while pos < end:
        size = data[pos]
        if size == 0:  # the root label ends a fully qualified name
            break
        start = pos + 1
        pos = start + size
        if size >= 0x40 or pos > end:  # a compression pointer, or a label past the end
            return None
        label = data[start:pos].translate(None, _NOT_LABEL)
        if label:
            labels.append(label)
    return _finish_name(b".".join(labels))


def _fqdn(value: bytes) -> str | None:
    """Option 81 (RFC 4702 section 2): flags, RCODE1, RCODE2, then the name."""
    if len(value) < 3:
        return None
    if value[0] & _FQDN_E_BIT:
        return _wire_name(value[3:])
    return sanitize_hostname(value[3:])


def _relay_agent_info(value: bytes) -> tuple[str | None, str | None] | None:
    """Option 82 (RFC 3046 section 2.0): (circuit_id, remote_id) as hex, or None when malformed.

    A sub-option that repeats keeps its first value; an empty one counts as absent.
    """
    end = len(value)
    if end < 2:
        return None
    circuit_id = remote_id = None
    pos = 0
    while pos < end:
        if pos + 2 > end:
            return None
        code, start = value[pos], pos + 2
        pos = start + value[pos + 1]
        if pos > end:
            return None
        if start < pos:
            if code == 1 and circuit_id is None:
                circuit_id = value[start:pos].hex()
            elif code == 2 and remote_id is None:
                remote_id = value[start:pos].hex()
    return circuit_id, remote_id


def _address(value: bytes) -> str | None:
    return inet_ntoa(value) if len(value) == 4 else None


def _dotted(address: bytes) -> str:
    """A header address; 0.0.0.0, the most common, without a call to inet_ntoa."""
    return ZERO if address == _ZERO_ADDRESS else inet_ntoa(address)


def _addresses(value: bytes) -> tuple[str, ...]:
    """A list of addresses (option 3): empty unless the length is a multiple of 4."""
    if len(value) == 4:  # the usual single router
        return (inet_ntoa(value),)
    if len(value) % 4:
        return ()
    return tuple([inet_ntoa(value[i : i + 4]) for i in range(0, len(value), 4)])


def _walk(
    buf: bytes, pos: int, end: int, found: dict[int, bytes], repeats: dict[int, list[bytes]]
) -> bool:
    """Walk one field (R-IN-6 option framing, R-IN-7 END); False on a framing error.

    `found` gets each code's first value in order of appearance, `repeats` every value of a code
    seen more than once.
    """
    while pos < end:
        code = buf[pos]
        if code == _PAD:
            pos += 1
            continue
        if code == _END:
            return True
        if pos + 1 >= end:
            return False
        start = pos + 2
        pos = start + buf[pos + 1]
        if pos > end:
            return False
        if code not in found:
            found[code] = buf[start:pos]
        elif code in repeats:
            repeats[code].append(buf[start:pos])
        else:
            repeats[code] = [found[code], buf[start:pos]]
    return True


def _walk_all(buf: bytes) -> tuple[dict[int, bytes], bool]:
    """Walk `options`, then `file` and `sname` as option 52 says (R-IN-6 to R-IN-9).

    Returns every option by code in order of first appearance, the instances of one code joined
    in the order options, file, sname; and whether a framing error stopped the walk.
    """
    found: dict[int, bytes] = {}
    repeats: dict[int, list[bytes]] = {}
    intact = _walk(buf, _OPTIONS, len(buf), found, repeats)
    # Only the options field's 52 counts (R-IN-8): it is read before file and sname are walked.
    overload = b"".join(repeats[_OVERLOAD]) if _OVERLOAD in repeats else found.get(_OVERLOAD)
    if overload is not None:
        if len(overload) != 1 or not 1 <= overload[0] <= 3:
            raise Dropped("dropped_bad_overload", f"option 52 = {overload.hex() or 'empty'}")
        if intact and overload[0] & 1:
            intact = _walk(buf, _FILE, _COOKIE_AT, found, repeats)
        if intact and overload[0] & 2:
            intact = _walk(buf, _SNAME, _FILE, found, repeats)
    for code, parts in repeats.items():
        found[code] = b"".join(parts)
    return found, not intact


def _message_type(op: int, value: bytes | None, corrupt: bool) -> int | None:
    """Option 53 (R-IN-11, R-IN-12, R-IN-14); None for BOOTP."""
    if value is None:
        if corrupt:
            raise Dropped("dropped_corrupt_bootp", "no option 53 in a corrupt or truncated packet")
        return None
    if len(value) != 1 or value[0] == 0:
        raise Dropped("dropped_bad_53", f"option 53 = {value.hex() or 'empty'}")
    msg_type = value[0]
    if msg_type > INFORM:
        raise Dropped("ignored_type", f"message type {msg_type}")
    if msg_type not in _TYPES_FOR_OP[op]:
        raise Dropped("dropped_op_mismatch", f"op {op} with {TYPE_NAMES[msg_type]}")
    return msg_type


_message = DhcpMessage._make  # checks that every field is there


def decode(datagram: Datagram) -> DhcpMessage:
    """Decode one datagram per R-IN; raise Dropped(reason) for anything R-IN says to drop."""
    buf = datagram.payload
    if len(buf) < _OPTIONS:
        raise Dropped("dropped_short", f"{len(buf)} octets")
    op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr = (
        _HEADER.unpack_from(buf)
    )
    if op != 1 and op != 2:
        raise Dropped("dropped_bad_op", f"op {op}")
    if hlen > 16:
        raise Dropped("dropped_bad_hlen", f"hlen {hlen}")
    if not buf.startswith(_COOKIE, _COOKIE_AT):
        raise Dropped("dropped_no_cookie", buf[_COOKIE_AT:_OPTIONS].hex())

    found, framing_error = _walk_all(buf)
    msg_type = _message_type(op, found.get(53), framing_error or datagram.truncated)

    # Absent options skip their parsers: each would return None (or ()) for no value.
    get = found.get
    relay_ids = _relay_agent_info(value) if (value := get(82)) is not None else None
    client_id = get(61)
    lease_time = get(51)
    # Every field, in the class's order (the tests compare with messages built by name).
    return _message((
        datagram.ts,  # ts
        datagram.src,  # src
        datagram.dst,  # dst
        datagram.sport,  # sport
        datagram.dport,  # dport
        datagram.frame,  # frame
        op,  # op
        htype,  # htype
        hlen,  # hlen
        hops,  # hops
        xid,  # xid
        secs,  # secs
        flags,  # flags
        _dotted(ciaddr),  # ciaddr
        _dotted(yiaddr),  # yiaddr
        _dotted(siaddr),  # siaddr
        _dotted(giaddr),  # giaddr
        buf[_CHADDR : _CHADDR + hlen],  # chaddr
        msg_type,  # msg_type
        _address(value) if (value := get(54)) is not None else None,  # server_id
        _address(value) if (value := get(50)) is not None else None,  # requested_ip
        (int.from_bytes(lease_time, "big")  # lease_time
         if lease_time is not None and len(lease_time) == 4 else None),
        _NETMASKS.get(value) if (value := get(1)) is not None else None,  # subnet_mask
        _addresses(value) if (value := get(3)) is not None else (),  # routers
        sanitize_hostname(value) if (value := get(12)) is not None else None,  # hostname
        _fqdn(value) if (value := get(81)) is not None else None,  # fqdn
        (client_id.hex()  # client_id
         if client_id is not None and 2 <= len(client_id) <= 255 else None),
        get(80) == b"",  # rapid_commit
        relay_ids is not None,  # relay_info
        relay_ids[0] if relay_ids is not None else None,  # circuit_id
        relay_ids[1] if relay_ids is not None else None,  # remote_id
        (value.translate(None, _NOT_PRINTABLE).decode("ascii") or None  # vendor_class
         if (value := get(60)) is not None else None),
        tuple(value) if (value := get(55)) is not None else (),  # param_request_list
        tuple(found),  # option_codes
        framing_error,  # framing_error
        datagram.truncated,  # capture_truncated
    ))
