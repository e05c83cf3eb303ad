"""The pure decoder (sniffer/dhcp.py) against spec sections 1.1-1.3 and 1.8 and cases 43-66, 79-89.

Payloads are laid out byte by byte with the spec harness builders, so malformed ones can be built
too; the last tests decode the real captures in ../shared/pcaps and compare with tshark's fields.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from conftest import SHARED_PCAPS, shared_pcaps
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.utils import rdpcap
from specharness import (
    ACK,
    BCAST,
    DECLINE,
    DISCOVER,
    INFORM,
    NAK,
    OFFER,
    R1,
    RELEASE,
    REQUEST,
    S1,
    ZERO,
    A,
    client_msg,
    ip4,
    o,
    o_82,
    o_cid,
    o_fqdn,
    o_host,
    o_lease,
    o_mask,
    o_rapid,
    o_req,
    o_server,
    o_type,
    options,
    payload,
    server_msg,
)

from sniffer.dhcp import (
    Datagram,
    DhcpMessage,
    Dropped,
    decode,
    sanitize_hostname,
    valid_lease_address,
)

Option = tuple[int, bytes]

TS = 1_700_000_000.25
XID = 0x00001001
ID_A = bytes.fromhex("0102000000000a")
YI = "192.0.2.100"
ACK_LEASE = [o_lease(3600)]


def datagram(data: bytes, *, truncated: bool = False, src: str = S1) -> Datagram:
    return Datagram(ts=TS, src=src, dst=BCAST, sport=67, dport=68, payload=data,
                    truncated=truncated, frame=7)


def dec(data: bytes, *, truncated: bool = False) -> DhcpMessage:
    return decode(datagram(data, truncated=truncated))


def reason(datagram: Datagram) -> str:
    with pytest.raises(Dropped) as caught:
        decode(datagram)
    return caught.value.reason


def drop_reason(data: bytes, *, truncated: bool = False) -> str:
    return reason(datagram(data, truncated=truncated))


def ack(*opts: Option, chaddr: bytes = A, **kw: object) -> bytes:
    """An ACK for `chaddr` at YI from S1 (53, 54, 1=/24, then `opts`)."""
    return server_msg(ACK, XID, chaddr, *opts, yi=YI, **kw)  # type: ignore[arg-type]


def raw_ack(raw_options: bytes, **kw: object) -> bytes:
    return payload(2, XID, A, raw_options=raw_options, yi=YI, **kw)  # type: ignore[arg-type]


def request(*opts: Option) -> bytes:
    return client_msg(REQUEST, XID, A, *opts)


# ---- whole messages -----------------------------------------------------------------------------

def test_ack_decodes_every_field() -> None:
    data = ack(o_lease(3600), o(3, ip4(S1) + ip4("192.0.2.254")), o_host("alpha"), o_cid(ID_A),
               secs=3, flags=0x8000, ci="192.0.2.99", si="192.0.2.5")
    assert dec(data) == DhcpMessage(
        ts=TS, src=S1, dst=BCAST, sport=67, dport=68, frame=7,
        op=2, htype=1, hlen=6, hops=0, xid=XID, secs=3, flags=0x8000,
        ciaddr="192.0.2.99", yiaddr=YI, siaddr="192.0.2.5", giaddr=ZERO, chaddr=A,
        msg_type=ACK, server_id=S1, requested_ip=None, lease_time=3600,
        subnet_mask="255.255.255.0", routers=(S1, "192.0.2.254"), hostname="alpha", fqdn=None,
        client_id="0102000000000a", rapid_commit=False, relay_info=False, circuit_id=None,
        remote_id=None, vendor_class=None, param_request_list=(),
        option_codes=(53, 54, 1, 51, 3, 12, 61),
        framing_error=False, capture_truncated=False,
    )


def test_decode_builds_the_message_as_its_constructor_would() -> None:
    """decode() builds the tuple of fields itself, in the class order (the tests above give
    each field a distinct value)."""
    msg = dec(ack(o_lease(3600), o_host("alpha")))
    assert type(msg) is DhcpMessage
    assert msg == DhcpMessage(**msg._asdict())


def test_relayed_request_decodes_every_field() -> None:
    data = payload(
        1, 0xDEADBEEF, A, gi=R1, hops=1,
        opts=[o_type(REQUEST), o_req("198.51.100.50"), o_server(S1), o(55, bytes([1, 3, 6, 12])),
              o(60, b"MSFT 5.0"), o_fqdn("alpha.example.org."), o_rapid(),
              o_82(b"ge-0/0/1", b"sw1")],
    )
    msg = dec(data)
    assert msg == DhcpMessage(
        ts=TS, src=S1, dst=BCAST, sport=67, dport=68, frame=7,
        op=1, htype=1, hlen=6, hops=1, xid=0xDEADBEEF, secs=0, flags=0,
        ciaddr=ZERO, yiaddr=ZERO, siaddr=ZERO, giaddr=R1, chaddr=A,
        msg_type=REQUEST, server_id=S1, requested_ip="198.51.100.50", lease_time=None,
        subnet_mask=None, routers=(), hostname=None, fqdn="alpha.example.org",
        client_id=None, rapid_commit=True, relay_info=True, circuit_id="67652d302f302f31",
        remote_id="737731", vendor_class="MSFT 5.0", param_request_list=(1, 3, 6, 12),
        option_codes=(53, 50, 54, 55, 60, 81, 80, 82), framing_error=False, capture_truncated=False,
    )
    assert msg.mac == "02:00:00:00:00:0a"
    assert msg.hw == (1, A)
    assert msg.type_name == "DHCPREQUEST"
    assert not msg.is_reply


def test_to_json_is_the_seed_format_plus_details() -> None:
    data = ack(o_lease(4294967295), o(3, ip4("192.0.2.254")), o_host("alpha"),
               o_fqdn("alpha.example.org."), o_cid(ID_A), o(55, b"\x01\x03"), gi=R1)
    document = dec(data).to_json()
    assert document == {
        "msg_type": "DHCPACK", "client_mac": "02:00:00:00:00:0a", "hostname": "alpha.example.org",
        "relay_ip": R1, "client_ip": YI, "your_ip": YI, "server_ip": S1,
        "lease_time": 4294967295, "subnet_mask": "255.255.255.0", "router": "192.0.2.254",
        "xid": "00001001", "ts": TS, "frame": 7, "src": S1, "dst": BCAST, "sport": 67,
        "dport": 68, "htype": 1, "hops": 0, "flags": 0, "ciaddr": ZERO, "yiaddr": YI,
        "siaddr": ZERO, "requested_ip": None,
        "client_id": "0102000000000a", "fqdn": "alpha.example.org", "hostname_opt12": "alpha",
        "rapid_commit": False, "circuit_id": None, "remote_id": None, "vendor_class": None,
        "param_request_list": [1, 3], "options": [53, 54, 1, 51, 3, 12, 81, 61, 55],
        "framing_error": False, "capture_truncated": False,
    }
    assert json.loads(json.dumps(document)) == document


def test_to_json_of_bootp_reply_without_options() -> None:
    document = dec(payload(2, 7, A, yi="192.0.2.130", si=S1, raw_options=b"")).to_json()
    assert document["msg_type"] == "BOOTREPLY"
    assert document["hostname"] is None
    assert document["client_ip"] == "192.0.2.130"  # the address BOOTP assigns
    assert document["server_ip"] == S1  # no option 54: siaddr
    assert document["router"] is None
    assert document["xid"] == "00000007"
    assert document["options"] == []


def test_scapy_built_messages_decode_alike() -> None:
    built = BOOTP(op=2, xid=0x1234ABCD, chaddr=A, yiaddr=YI, giaddr=R1) / DHCP(options=[
        ("message-type", "ack"), ("server_id", S1), ("lease_time", 7200),
        ("subnet_mask", "255.255.254.0"), ("router", "192.0.2.254"), ("hostname", b"printer"),
        ("client_id", ID_A), "end",
    ])
    msg = dec(bytes(built))
    assert (msg.type_name, msg.xid, msg.mac, msg.yiaddr, msg.giaddr) == (
        "DHCPACK", 0x1234ABCD, "02:00:00:00:00:0a", YI, R1)
    assert (msg.server_id, msg.lease_time, msg.subnet_mask, msg.routers) == (
        S1, 7200, "255.255.254.0", ("192.0.2.254",))
    assert (msg.hostname, msg.client_id) == ("printer", "0102000000000a")
    discover = dec(bytes(BOOTP(op=1, chaddr=A) / DHCP(options=[("message-type", "discover"),
                                                              ("rapid_commit", b""), "end"])))
    assert discover.msg_type == DISCOVER
    assert discover.rapid_commit


def test_dropped_carries_reason_and_detail() -> None:
    with pytest.raises(Dropped) as caught:
        dec(b"\x02" * 100)
    assert caught.value.reason == "dropped_short"
    assert caught.value.detail == "100 octets"
    assert str(caught.value) == "dropped_short: 100 octets"


# ---- R-IN-5, R-IN-11, R-IN-12, R-IN-14: every drop reason ---------------------------------------

def _with_53(*values: bytes) -> bytes:
    return raw_ack(b"".join(bytes([53, len(v)]) + v for v in values) + options([o_server(S1)]))


DROPS = [
    # case 79a: an ACK with its last octet cut off, and other short payloads
    ("79a", ack(o_lease(3600))[:239], False, "dropped_short"),
    ("empty", b"", False, "dropped_short"),
    ("op0", payload(0, XID, A, opts=[o_type(ACK)]), False, "dropped_bad_op"),
    ("85-op3", payload(3, XID, A, opts=[o_type(ACK)]), False, "dropped_bad_op"),
    ("66d", payload(2, XID, A, hlen=17, opts=[o_type(ACK)]), False, "dropped_bad_hlen"),
    ("hlen255", payload(2, XID, A, hlen=255, opts=[o_type(ACK)]), False, "dropped_bad_hlen"),
    # case 80a: a wrong cookie before bytes that read as 53=ACK, 54=S1, 51=3600
    ("80a", ack(o_lease(3600), cookie=b"\x63\x82\x53\x64"), False, "dropped_no_cookie"),
    # case 80b: the options begin right after the fixed header
    ("80b", ack(o_lease(3600), cookie=b""), False, "dropped_no_cookie"),
    ("84a", _with_53(b""), False, "dropped_bad_53"),
    ("84b", _with_53(b"\x05\x05"), False, "dropped_bad_53"),
    ("84c", _with_53(b"\x05", b"\x05"), False, "dropped_bad_53"),
    ("84d", _with_53(b"\x00"), False, "dropped_bad_53"),
    ("84e", _with_53(b"\x09"), False, "ignored_type"),
    ("84f", _with_53(b"\x0d"), False, "ignored_type"),
    ("84g-19", _with_53(b"\x13"), False, "ignored_type"),
    ("84g-255", _with_53(b"\xff"), False, "ignored_type"),
    ("88a-0", ack(o(52, b"\x00"), o_lease(3600)), False, "dropped_bad_overload"),
    ("88a-4", ack(o(52, b"\x04"), o_lease(3600)), False, "dropped_bad_overload"),
    ("88b", ack(o(52, b"\x01\x01"), o_lease(3600)), False, "dropped_bad_overload"),
    ("52-empty", ack(o(52, b"")), False, "dropped_bad_overload"),
    ("52-twice", ack(o(52, b"\x01"), o(52, b"\x01")), False, "dropped_bad_overload"),
    # case 81c: the first option runs past the end, so there is no 53 and no BOOTP either
    ("81c", raw_ack(b"\x0c\xc8" + b"x" * 60), False, "dropped_corrupt_bootp"),
    # case 89c: snaplen 240, so the 53 was not captured
    ("89c", ack(o_lease(3600))[:240], True, "dropped_corrupt_bootp"),
]


@pytest.mark.parametrize(("data", "truncated", "reason"), [d[1:] for d in DROPS],
                         ids=[d[0] for d in DROPS])
def test_drop_reasons(data: bytes, truncated: bool, reason: str) -> None:
    assert drop_reason(data, truncated=truncated) == reason


def test_84f_leasequery_reply_with_lease_is_ignored() -> None:
    data = payload(2, XID, A, yi=YI, opts=[o_type(13), o_server(S1), o_lease(3600)])
    assert drop_reason(data) == "ignored_type"


@pytest.mark.parametrize(("op", "msg_type"), [
    (1, ACK), (1, OFFER), (1, NAK), (2, REQUEST), (2, RELEASE), (2, DISCOVER), (2, DECLINE),
    (2, INFORM),
])
def test_85_op_must_match_type(op: int, msg_type: int) -> None:
    assert drop_reason(payload(op, XID, A, opts=[o_type(msg_type)])) == "dropped_op_mismatch"


@pytest.mark.parametrize(("op", "msg_type"), [
    (1, DISCOVER), (1, REQUEST), (1, DECLINE), (1, RELEASE), (1, INFORM), (2, OFFER), (2, ACK),
    (2, NAK),
])
def test_r_cl_op_and_type_that_match(op: int, msg_type: int) -> None:
    msg = dec(payload(op, XID, A, opts=[o_type(msg_type)]))
    assert (msg.op, msg.msg_type, msg.is_reply) == (op, msg_type, op == 2)


# ---- case 79: short and option-less packets -----------------------------------------------------

def test_79b_header_and_cookie_only_is_a_bootreply() -> None:
    data = payload(2, XID, A, yi="192.0.2.130", raw_options=b"")
    assert len(data) == 240
    msg = dec(data)
    assert (msg.msg_type, msg.type_name, msg.yiaddr) == (None, "BOOTREPLY", "192.0.2.130")
    assert (msg.option_codes, msg.framing_error, msg.capture_truncated) == ((), False, False)


def test_bootrequest_without_53() -> None:
    msg = dec(payload(1, XID, A, opts=[o_host("pxe")]))
    assert (msg.msg_type, msg.type_name, msg.hostname) == (None, "BOOTREQUEST", "pxe")


# ---- R-IN-8: overload ---------------------------------------------------------------------------

def test_46_overload_1_reads_file() -> None:
    data = raw_ack(
        bytes.fromhex("350105" "340101" "ff"),
        file=bytes.fromhex("3604c0000201" "33040000" "0e10") + b"\x0c\x07printer\xff",
        sname=b"boot-srv\0",
    )
    msg = dec(data)
    assert (msg.msg_type, msg.server_id, msg.lease_time, msg.hostname) == (
        ACK, S1, 3600, "printer")
    assert msg.option_codes == (53, 52, 54, 51, 12)
    assert not msg.framing_error


def test_47_overload_3_joins_options_file_sname_in_order() -> None:
    data = raw_ack(
        options([o_type(ACK), o_server(S1), o(52, b"\x03"), o_host("lap")]),
        file=options([o_host("top"), o_lease(3600)]),
        sname=options([o_host("-01")]),
    )
    msg = dec(data)
    assert (msg.hostname, msg.lease_time) == ("laptop-01", 3600)
    assert msg.option_codes == (53, 54, 52, 12, 51)


def test_48_without_52_file_is_a_string() -> None:
    msg = dec(raw_ack(options([o_type(ACK), o_server(S1)]),
                      file=bytes.fromhex("330400000e10ff")))
    assert msg.lease_time is None
    assert msg.option_codes == (53, 54)


def test_88c_52_only_in_sname_is_not_an_overload() -> None:
    msg = dec(raw_ack(options([o_type(ACK), o_server(S1)]),
                      sname=options([o(52, b"\x01")]), file=options([o_lease(3600)])))
    assert msg.lease_time is None
    assert msg.option_codes == (53, 54)


def test_52_inside_file_is_ignored() -> None:
    data = raw_ack(options([o_type(ACK), o_server(S1), o(52, b"\x01")]),
                   file=options([o(52, b"\x02"), o_lease(3600)]),
                   sname=options([o_host("sname")]))
    msg = dec(data)
    assert (msg.lease_time, msg.hostname) == (3600, None)
    assert msg.option_codes == (53, 54, 52, 51)


def test_83d_sname_without_end_up_to_the_field_end() -> None:
    sname = options([o_lease(3600), o_host("a" * 56)], end=False)
    assert len(sname) == 64
    msg = dec(raw_ack(options([o_type(ACK), o_server(S1), o(52, b"\x02")]), sname=sname))
    assert (msg.lease_time, msg.hostname, msg.framing_error) == (3600, "a" * 56, False)


def test_overload_file_option_must_fit_the_field() -> None:
    """An option that would continue from `file` into the cookie is a framing error (R-IN-6)."""
    file = b"\0" * 120 + b"\x0c\x08" + b"abcdef"  # 8 octets announced, 6 left in the field
    msg = dec(raw_ack(options([o_type(ACK), o_server(S1), o(52, b"\x01"), o_lease(60)]),
                      file=file))
    assert (msg.framing_error, msg.hostname, msg.lease_time) == (True, None, 60)


# ---- R-IN-9: concatenation ----------------------------------------------------------------------

def test_43b_two_lease_times_concatenate_to_an_invalid_value() -> None:
    msg = dec(ack(o_lease(3600), o_lease(3600)))
    assert msg.lease_time is None
    assert msg.option_codes == (53, 54, 1, 51)


def test_49a_split_hostname() -> None:
    assert dec(request(o_host("alpha-"), o_host("laptop"))).hostname == "alpha-laptop"


def test_49b_fqdn_split_inside_a_label() -> None:
    msg = dec(request(o(81, b"\x05\x00\x00\x05alpha\x07exa"), o(81, b"mple\x03org\x00")))
    assert msg.fqdn == "alpha.example.org"


def test_49c_hostname_split_255_plus_45() -> None:
    assert dec(request(o_host("a" * 255), o_host("a" * 45))).hostname == "a" * 253


def test_client_id_longer_than_255_after_concatenation_is_absent() -> None:
    msg = dec(request(o_cid(b"\x01" * 200), o_cid(b"\x02" * 100)))
    assert msg.client_id is None
    longest = dec(request(o_cid(b"\xff" * 200), o_cid(b"\x01" * 55)))
    assert longest.client_id == "ff" * 200 + "01" * 55


def test_many_instances_of_one_option() -> None:
    """Thousands of 1-octet instances (a reassembled 64 KiB datagram) still concatenate."""
    msg = dec(payload(1, XID, A, raw_options=options([o_type(DISCOVER)] + [o_host("a")] * 8000)))
    assert msg.hostname == "a" * 253


# ---- R-IN-6: framing errors ---------------------------------------------------------------------

def test_81a_framing_error_after_the_lease_time_keeps_what_was_decoded() -> None:
    data = raw_ack(options([o_type(ACK), o_server(S1), o_lease(3600), o_mask(24)], end=False)
                   + b"\x0c\x28" + b"h" * 10)
    assert data[-12:-10] == b"\x0c\x28"
    msg = dec(data)
    assert (msg.msg_type, msg.server_id, msg.lease_time, msg.subnet_mask) == (
        ACK, S1, 3600, "255.255.255.0")
    assert (msg.hostname, msg.framing_error) == (None, True)
    assert msg.option_codes == (53, 54, 51, 1)


def test_81b_code_without_length_octet() -> None:
    msg = dec(raw_ack(options([o_type(ACK), o_server(S1)], end=False) + b"\x33"))
    assert (msg.msg_type, msg.server_id, msg.lease_time, msg.framing_error) == (
        ACK, S1, None, True)
    assert msg.option_codes == (53, 54)


def test_81d_framing_error_in_file_skips_sname() -> None:
    data = raw_ack(options([o_type(ACK), o(52, b"\x03"), o_server(S1)]),
                   file=options([o_lease(3600)], end=False) + b"\x0c\x7fab",
                   sname=options([o_host("fromsname")]))
    msg = dec(data)
    assert (msg.lease_time, msg.hostname, msg.framing_error) == (3600, None, True)
    assert msg.option_codes == (53, 52, 54, 51)


def test_82a_release_with_framing_error() -> None:
    data = payload(1, XID, A, ci=YI, raw_options=options([o_type(RELEASE), o_server(S1)], end=False)
                   + b"\x3d\x1e" + b"\x01" * 5)
    msg = dec(data)
    assert (msg.msg_type, msg.ciaddr, msg.server_id) == (RELEASE, YI, S1)
    assert (msg.client_id, msg.framing_error) == (None, True)


def test_82b_decline_with_framing_error() -> None:
    data = payload(1, XID, A, raw_options=options([o_type(DECLINE), o_req(YI)], end=False)
                   + b"\x36\x04\xc0")
    msg = dec(data)
    assert (msg.msg_type, msg.requested_ip, msg.server_id, msg.framing_error) == (
        DECLINE, YI, None, True)


def test_82c_request_keeps_options_before_the_error() -> None:
    data = payload(1, XID, A, raw_options=options([o_type(REQUEST), o_req(YI), o_server(S1)],
                                                  end=False) + b"\x0c\x63alpha")
    msg = dec(data)
    assert (msg.msg_type, msg.requested_ip, msg.server_id) == (REQUEST, YI, S1)
    assert (msg.hostname, msg.framing_error) == (None, True)


# ---- R-IN-7: END and pads -----------------------------------------------------------------------

def test_83a_no_end_and_the_last_option_ends_the_payload() -> None:
    msg = dec(raw_ack(options([o_type(ACK), o_server(S1), o_lease(3600)], end=False)))
    assert (msg.lease_time, msg.framing_error) == (3600, False)


def test_83b_octets_after_end_are_ignored() -> None:
    msg = dec(raw_ack(options([o_type(ACK), o_server(S1), o_lease(3600)])
                      + bytes.fromhex("330400000001") + b"\x0c\x03bad"))
    assert (msg.lease_time, msg.hostname) == (3600, None)
    assert msg.option_codes == (53, 54, 51)


def test_83c_pads_between_options() -> None:
    msg = dec(raw_ack(b"\0\0" + options([o_type(ACK)], end=False) + b"\0" * 7
                      + options([o_server(S1)], end=False) + b"\0" + options([o_lease(3600)])
                      + b"\0" * 60))
    assert (msg.msg_type, msg.server_id, msg.lease_time, msg.framing_error) == (
        ACK, S1, 3600, False)
    assert msg.option_codes == (53, 54, 51)


# ---- R-IN-10: fixed lengths and other checks ----------------------------------------------------

def test_87a_server_id_with_length_3_is_absent() -> None:
    assert dec(server_msg(ACK, XID, A, o(54, b"\xc0\x00\x02"), server=None)).server_id is None


def test_87b_requested_ip_with_length_5_is_absent() -> None:
    assert dec(request(o(50, ip4(YI) + b"\0"))).requested_ip is None


def test_87c_client_id_with_length_1_is_absent() -> None:
    assert dec(request(o_cid(b"\x01"))).client_id is None
    assert dec(request(o_cid(b"\x00\x01"))).client_id == "0001"


def test_87d_non_contiguous_mask_is_absent() -> None:
    assert dec(server_msg(ACK, XID, A, o(1, ip4("255.0.255.0")), mask=None)).subnet_mask is None


@pytest.mark.parametrize("prefix", range(33))
def test_contiguous_masks(prefix: int) -> None:
    mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    expected = ".".join(str(b) for b in struct.pack("!I", mask))
    assert dec(ack(mask=prefix)).subnet_mask == expected


@pytest.mark.parametrize("value", [ip4("255.255.255.1"), ip4("0.255.255.255"), b"\xff" * 5,
                                   b"\xff\xff\xff"])
def test_invalid_masks(value: bytes) -> None:
    assert dec(server_msg(ACK, XID, A, o(1, value), mask=None)).subnet_mask is None


def test_43a_lease_time_with_length_3_is_absent() -> None:
    assert dec(ack(o(51, b"\x00\x0e\x10"))).lease_time is None


def test_lease_time_is_unsigned() -> None:
    assert dec(ack(o_lease(2147483648))).lease_time == 2147483648
    assert dec(ack(o_lease(0))).lease_time == 0


def test_rapid_commit_needs_length_0() -> None:
    assert dec(request(o_rapid())).rapid_commit
    assert not dec(request(o(80, b"\x00"))).rapid_commit
    assert not dec(request()).rapid_commit


@pytest.mark.parametrize(("value", "expected"), [
    (ip4(S1), (S1,)),
    (ip4(S1) + ip4("192.0.2.254"), (S1, "192.0.2.254")),
    (ip4(S1) + b"\x01\x02", ()),
    (b"", ()),
])
def test_routers(value: bytes, expected: tuple[str, ...]) -> None:
    assert dec(ack(o(3, value))).routers == expected


@pytest.mark.parametrize(("value", "expected"), [
    (b"MSFT 5.0", "MSFT 5.0"),
    (b"ab\x00\xffc\x7f\x1b[1m", "abc[1m"),
    (b"\x00\x80\xff", None),
    (b"", None),
])
def test_vendor_class_keeps_printable_ascii(value: bytes, expected: str | None) -> None:
    assert dec(request(o(60, value))).vendor_class == expected


def test_option_codes_in_order_of_first_appearance() -> None:
    msg = dec(request(o_host("a"), o(55, b"\x01"), o_host("b"), o(250, b""), o(60, b"x")))
    assert msg.option_codes == (53, 12, 55, 250, 60)


# ---- option 82 (cases 50, 51) -------------------------------------------------------------------

def test_50a_circuit_and_remote_id() -> None:
    msg = dec(ack(o_82(b"ge-0/0/1", b"sw1"), gi=R1))
    assert (msg.relay_info, msg.circuit_id, msg.remote_id) == (True, "67652d302f302f31", "737731")


def test_50c_circuit_id_only() -> None:
    msg = dec(ack(o_82(b"port7"), gi=R1))
    assert (msg.relay_info, msg.circuit_id, msg.remote_id) == (True, "706f727437", None)


def test_50d_sub_option_past_the_option_is_invalid() -> None:
    msg = dec(ack(o(82, b"\x01\x05port"), gi=R1))
    assert (msg.relay_info, msg.circuit_id, msg.remote_id) == (False, None, None)


def test_50e_other_sub_options_are_ignored() -> None:
    value = b"\x05\x04\x0a\x00\x00\x01" + b"\x0b\x04\xc6\x33\x64\x01" + b"\x97\x02ab" \
        + b"\x02\x03sw1" + b"\x01\x05port7"
    msg = dec(ack(o(82, value), gi=R1))
    assert (msg.relay_info, msg.circuit_id, msg.remote_id) == (True, "706f727437", "737731")


@pytest.mark.parametrize("value", [b"", b"\x01", b"\x01\x00\x02", b"\x01\x01"])
def test_malformed_82(value: bytes) -> None:
    msg = dec(ack(o(82, value), gi=R1))
    assert (msg.relay_info, msg.circuit_id, msg.remote_id) == (False, None, None)


def test_82_empty_and_repeated_sub_options() -> None:
    """An empty sub-option is absent; a repeated one keeps its first value."""
    msg = dec(ack(o(82, b"\x01\x00\x02\x01a\x02\x01b"), gi=R1))
    assert (msg.relay_info, msg.circuit_id, msg.remote_id) == (True, None, "61")


def test_51_decoder_reports_82_even_without_giaddr() -> None:
    msg = dec(ack(o_82(b"spoof")))
    assert (msg.giaddr, msg.relay_info, msg.circuit_id) == (ZERO, True, "73706f6f66")


# ---- R-HN-2 sanitising (case 59) ----------------------------------------------------------------

SANITISING = [
    ("59a", [b"alpha\0"], "alpha"),
    ("59b", [b"alpha\0\0\0"], "alpha"),
    ("59c", [b"al\0pha"], "al"),
    ("59d", [b"\0alpha"], None),
    ("59e", [b"al\x07pha\x1b[31m"], "alpha31m"),
    ("59f", [b"alpha\r\nINJECT"], "alphaINJECT"),
    ("59g", [b"my host"], "myhost"),
    ("59h", [b"J\xc3\xb6rg-iPhone"], "Jrg-iPhone"),
    ("59i", [b"\xff\xfe\xfd"], None),
    ("59j", [b"x_y"], "x_y"),
    ("59k-trailing", [b"alpha."], "alpha"),
    ("59k-leading", [b".alpha"], "alpha"),
    ("59k-double", [b"a..b"], "a.b"),
    ("59l", [b"a" * 255], "a" * 253),
    ("59m", [b"a" * 255, b"a" * 45], "a" * 253),
    ("59n", [b"-alpha-"], "-alpha-"),
    ("59o", [b"ALPHA"], "ALPHA"),
    ("59p", [b"%s%n$(reboot)'; DROP <b>"], "snrebootDROPb"),
    ("59q", [b"a" * 252 + b".b"], "a" * 252),
    ("dots-only", [b"..."], None),
    ("dots-around-junk", [b". .a. ..b. ."], "a.b"),
]


@pytest.mark.parametrize(("instances", "expected"), [s[1:] for s in SANITISING],
                         ids=[s[0] for s in SANITISING])
def test_59_sanitising(instances: list[bytes], expected: str | None) -> None:
    assert sanitize_hostname(b"".join(instances)) == expected
    msg = dec(request(*(o_host(raw) for raw in instances)))
    assert msg.hostname == expected


# ---- option 81 (cases 56, 57) -------------------------------------------------------------------

def test_56_ack_fqdn_wire_format() -> None:
    msg = dec(ack(o_lease(3600), o(81, b"\x05\xff\xff\x05alpha\x07example\x03org\x00")))
    assert msg.fqdn == "alpha.example.org"
    assert msg.to_json()["hostname"] == "alpha.example.org"


def test_56_request_with_81_and_12_reports_both() -> None:
    msg = dec(request(o_fqdn("alpha.example.org."), o_host("other")))
    assert (msg.fqdn, msg.hostname) == ("alpha.example.org", "other")
    assert msg.to_json()["hostname"] == "alpha.example.org"


FQDNS = [
    ("57a-ascii", b"\x00\x00\x00alpha.example.org", "alpha.example.org"),
    ("ascii-sanitised", b"\x01\x00\x00al\0pha", "al"),
    ("ascii-trailing-dot", b"\x00\x00\x00alpha.example.org.", "alpha.example.org"),
    ("57b-empty", b"\x05\x00\x00", None),
    ("57b-root-only", b"\x05\x00\x00\x00", None),
    ("57c-partial", b"\x05\x00\x00\x05alpha", "alpha"),
    ("57d-pointer", b"\x05\x00\x00\xc0\x0c", None),
    ("57d-pointer-after-label", b"\x05\x00\x00\x05alpha\xc0\x0c", None),
    ("57e-label-past-end", b"\x05\x00\x00\x3f" + b"a" * 20, None),
    ("label-0x40", b"\x05\x00\x00\x40" + b"a" * 64 + b"\x00", None),
    ("label-cleaned", b"\x05\x00\x00\x06al.p h\x03$$$\x03org\x00", "alph.org"),
    ("after-root-ignored", b"\x05\x00\x00\x05alpha\x00\xc0\x0cjunk", "alpha"),
    ("too-short", b"\x05\x00", None),
    ("long-name", b"\x05\x00\x00" + (b"\x3f" + b"a" * 63) * 5,
     ".".join(["a" * 63] * 3) + "." + "a" * 61),
]


@pytest.mark.parametrize(("value", "expected"), [f[1:] for f in FQDNS], ids=[f[0] for f in FQDNS])
def test_57_option_81_forms(value: bytes, expected: str | None) -> None:
    instances = [o(81, value[i : i + 255]) for i in range(0, len(value), 255)]
    assert dec(request(*instances)).fqdn == expected


# ---- R-ID-1: hardware addresses (cases 64, 66) --------------------------------------------------

def test_66a_chaddr_beyond_hlen_is_ignored() -> None:
    garbage = dec(ack(chaddr=A + bytes.fromhex("deadbeef0102030405ff"), hlen=6))
    clean = dec(ack())
    assert garbage.chaddr == A
    assert garbage.mac == "02:00:00:00:00:0a"
    assert garbage.hw == clean.hw


def test_66b_eight_octet_hardware_address() -> None:
    msg = dec(ack(chaddr=bytes.fromhex("aabbccddeeff0011"), htype=24))
    assert (msg.htype, msg.hlen, msg.mac) == (24, 8, "aa:bb:cc:dd:ee:ff:00:11")


def test_66c_sixteen_octet_hardware_address() -> None:
    msg = dec(ack(chaddr=bytes(range(16))))
    assert msg.mac == ":".join(f"{i:02x}" for i in range(16))


def test_66e_same_octets_other_htype_is_another_hw() -> None:
    assert dec(ack(htype=6)).hw != dec(ack(htype=1)).hw


def test_64_infiniband_has_no_mac() -> None:
    cid = bytes.fromhex("ff0000000100020000ab11aabbccddeeff")
    msg = dec(ack(o_cid(cid), o_lease(3600), chaddr=bytes(16), hlen=0, htype=32, flags=0x8000))
    assert (msg.htype, msg.hlen, msg.chaddr, msg.mac, msg.hw) == (32, 0, b"", None, (32, b""))
    assert (msg.client_id, msg.flags) == ("ff0000000100020000ab11aabbccddeeff", 0x8000)
    assert msg.to_json()["client_mac"] is None


def test_one_octet_hardware_address() -> None:
    assert dec(ack(chaddr=b"\x02")).mac == "02"


# ---- case 89: capture truncated by snaplen ------------------------------------------------------

def test_89a_snaplen_300_keeps_53_54_51() -> None:
    data = ack(o_lease(3600), o(43, b"v" * 57), o_host("alpha"))
    assert data[320:327] == b"\x0c\x05alpha"
    msg = dec(data[:300], truncated=True)
    assert (msg.msg_type, msg.server_id, msg.lease_time, msg.hostname) == (ACK, S1, 3600, None)
    assert (msg.capture_truncated, msg.framing_error) == (True, True)


def test_89b_snaplen_250_loses_the_lease_time() -> None:
    data = ack(o_lease(3600))
    assert data[240:243] == b"\x35\x01\x05"
    assert data.index(b"\x33\x04") > 250
    msg = dec(data[:250], truncated=True)
    assert (msg.msg_type, msg.lease_time, msg.capture_truncated) == (ACK, None, True)


def test_truncation_between_options_is_still_marked() -> None:
    data = raw_ack(options([o_type(ACK), o_server(S1), o_lease(3600)], end=False))
    msg = dec(data, truncated=True)
    assert (msg.lease_time, msg.capture_truncated, msg.framing_error) == (3600, True, False)


# ---- R-IN-15 (case 86) --------------------------------------------------------------------------

@pytest.mark.parametrize(("ip", "valid"), [
    (ZERO, False), (BCAST, False), ("224.0.0.5", False), ("127.0.0.1", False),
    ("0.1.2.3", False), ("240.0.0.1", False), ("239.255.255.255", False),
    (YI, True), ("1.0.0.0", True), ("126.255.255.255", True), ("128.0.0.0", True),
    ("223.255.255.255", True),
    ("", False), ("1.2.3", False), ("1.2.3.4.5", False), ("a.b.c.d", False), ("256.1.1.1", False),
    ("1.2.3.-4", False),
])
def test_86_valid_lease_address(ip: str, valid: bool) -> None:
    assert valid_lease_address(ip) is valid


# ---- real captures ------------------------------------------------------------------------------

# Captures whose DHCP is not reachable as plain IPv4/UDP by scapy (the capture module's concern).
NOT_PLAIN_UDP = {
    "ndpi_capwap_tunnelled_discover.pcap": "DHCP tunnelled inside CAPWAP",
    "tcpdump_80211_radiotap_discover.pcap": "802.11 radiotap frame",
}
# Frames that R-IN-5 drops although tshark shows them.
EXPECTED_DROPS = {
    "zeek_dhcp_bad_cookie_synthetic.pcap": {2: "dropped_no_cookie", 3: "dropped_no_cookie",
                                            4: "dropped_no_cookie"},
}
CAPTURES = [p for p in shared_pcaps() if p.name not in NOT_PLAIN_UDP]


def tshark_rows(capture: Path) -> list[list[str]]:
    text = capture.with_name(capture.name + ".fields.txt").read_text()
    return [line.split("\t") for line in text.splitlines() if line.strip()]


def frame_datagrams(capture: Path) -> dict[int, Datagram]:
    """The DHCP-port UDP datagrams of a capture by frame number, with their captured octets."""
    found = {}
    for number, packet in enumerate(rdpcap(str(capture)), start=1):
        if IP not in packet or UDP not in packet:
            continue
        udp = packet[UDP]
        if not {udp.sport, udp.dport} & {67, 68}:
            continue
        octets = udp.original  # as captured: re-building the packet would re-encode fields
        found[number] = Datagram(ts=float(packet.time), src=packet[IP].src, dst=packet[IP].dst,
                                 sport=udp.sport, dport=udp.dport, payload=octets[8:udp.len],
                                 truncated=len(octets) < udp.len, frame=number)
    return found


def test_shared_captures_are_present() -> None:
    assert SHARED_PCAPS.is_dir()
    assert len(CAPTURES) >= 50


@pytest.mark.parametrize("capture", CAPTURES, ids=[p.name for p in CAPTURES])
def test_real_capture_matches_tshark(capture: Path) -> None:
    datagrams = frame_datagrams(capture)
    drops = EXPECTED_DROPS.get(capture.name, {})
    rows = tshark_rows(capture)
    assert rows
    for row in rows:
        frame = int(row[0])
        if frame in drops:
            assert reason(datagrams[frame]) == drops[frame]
            continue
        msg = decode(datagrams[frame])
        xid, msg_type, mac, yi, ci, gi, hostname, lease, server = (row + [""] * 10)[1:10]
        assert f"0x{msg.xid:08x}" == xid
        assert str(msg.msg_type) == msg_type
        assert msg.mac == mac.split(",")[0]
        assert (msg.yiaddr, msg.ciaddr, msg.giaddr) == (yi, ci, gi)
        assert (msg.hostname or "") == hostname
        assert ("" if msg.lease_time is None else str(msg.lease_time)) == lease
        assert (msg.server_id or "") == server
        assert not msg.framing_error


def test_real_relayed_offer_with_option_82() -> None:
    datagrams = frame_datagrams(SHARED_PCAPS / "pcapplusplus_dhcp1_relayed_offer_option82.pcap")
    msg = decode(datagrams[1])
    assert (msg.type_name, msg.giaddr, msg.hops, msg.sport, msg.dport) == (
        "DHCPOFFER", "10.10.8.240", 1, 67, 67)
    assert (msg.relay_info, msg.remote_id) == (True, None)
    assert bytes.fromhex(msg.circuit_id or "") == b" PON 1/1/07/01:1.0.1"
    assert msg.routers == ("10.10.8.254",)


def test_real_overload_both_discover() -> None:
    datagrams = frame_datagrams(SHARED_PCAPS / "sv_dhcp_option52_overload_both_discover.pcap")
    msg = decode(datagrams[1])
    assert msg.option_codes == (53, 57, 55, 51, 52, 56, 61)
    assert (msg.param_request_list, msg.lease_time, msg.client_id) == (
        (1, 28, 3, 43), 3600, "0100006c82dc4e")
    assert not msg.framing_error


def test_real_vendor_class_and_fqdn() -> None:
    msg = decode(frame_datagrams(SHARED_PCAPS / "sv_dhcp_option60_request.pcap")[1])
    assert (msg.vendor_class, msg.fqdn, msg.hostname) == ("MSFT 5.0", "NicksMacBook",
                                                          "NicksMacBook")

