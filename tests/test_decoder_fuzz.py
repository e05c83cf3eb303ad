"""Property tests of the decoder (spec R-IN-16, case 93): whatever the octets, decode() either
raises Dropped or returns a message whose every field has the format the store writes (R-RD-1)."""

from __future__ import annotations

import json
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from specharness import (
    ACK,
    DISCOVER,
    OFFER,
    REQUEST,
    S1,
    A,
    o_cid,
    o_fqdn,
    o_host,
    o_lease,
    payload,
    server_msg,
)

from sniffer.dhcp import Datagram, DhcpMessage, Dropped, decode

FUZZ = settings(max_examples=700, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# The valid ACK of case 1, with a hostname, an FQDN and a client-id so that mutations reach them.
CASE1_ACK = server_msg(ACK, 0x00001001, A, o_lease(3600), o_host("alpha"),
                       o_fqdn("alpha.example.org."), o_cid(bytes.fromhex("0102000000000a")),
                       yi="192.0.2.100")

MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){0,15}")
HOSTNAME = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
HEX = re.compile(r"([0-9a-f]{2})+")
OCTET = r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
DOTTED_QUAD = re.compile(rf"{OCTET}(\.{OCTET}){{3}}")
TYPES_FOR_OP = {1: {None, 1, 3, 4, 7, 8}, 2: {None, 2, 5, 6}}


def check(msg: DhcpMessage) -> None:
    """Every field of a decoded message in the format R-RD-1 and the other modules expect."""
    assert msg.msg_type in TYPES_FOR_OP[msg.op]
    if msg.msg_type is None:  # R-IN-12: a corrupt or truncated packet is never BOOTP
        assert not msg.framing_error and not msg.capture_truncated
    assert 0 <= msg.hlen <= 16 and len(msg.chaddr) == msg.hlen
    assert msg.mac is None if msg.hlen == 0 else MAC.fullmatch(msg.mac or "")
    for name in (msg.hostname, msg.fqdn):
        assert name is None or (len(name) <= 253 and HOSTNAME.fullmatch(name))
    for hex_value in (msg.client_id, msg.circuit_id, msg.remote_id):
        assert hex_value is None or HEX.fullmatch(hex_value)
    assert msg.client_id is None or 4 <= len(msg.client_id) <= 510
    assert msg.lease_time is None or 0 <= msg.lease_time <= 0xFFFFFFFF
    for ip in (msg.ciaddr, msg.yiaddr, msg.siaddr, msg.giaddr, *msg.routers):
        assert DOTTED_QUAD.fullmatch(ip)
    for ip_or_none in (msg.server_id, msg.requested_ip, msg.subnet_mask):
        assert ip_or_none is None or DOTTED_QUAD.fullmatch(ip_or_none)
    vendor = msg.vendor_class
    assert vendor is None or (vendor.isascii() and vendor.isprintable())
    assert msg.relay_info or (msg.circuit_id is None and msg.remote_id is None)
    assert len(set(msg.option_codes)) == len(msg.option_codes)
    assert not {0, 255} & set(msg.option_codes)
    assert all(0 <= code <= 255 for code in msg.param_request_list)
    json.dumps(msg.to_json())


def decode_or_drop(data: bytes, truncated: bool = False) -> None:
    try:
        msg = decode(Datagram(ts=1.5, src=S1, dst="255.255.255.255", sport=67, dport=68,
                              payload=data, truncated=truncated))
    except Dropped as dropped:
        assert dropped.reason
    else:
        check(msg)


@FUZZ
@given(st.binary(max_size=1500), st.booleans())
def test_random_payloads(data: bytes, truncated: bool) -> None:
    decode_or_drop(data, truncated)


@FUZZ
@given(st.sampled_from([1, 2]), st.sampled_from([DISCOVER, OFFER, REQUEST, ACK]),
       st.binary(max_size=600), st.binary(max_size=64), st.binary(max_size=128), st.booleans())
def test_valid_header_with_fuzzed_options(op: int, msg_type: int, options: bytes, sname: bytes,
                                          file: bytes, truncated: bool) -> None:
    raw = bytes([53, 1, msg_type, 52, 1, 3]) + options  # overloaded, so sname and file are walked
    decode_or_drop(payload(op, 0x1001, A, raw_options=raw, sname=sname, file=file), truncated)


Mutation = tuple[str, int, bytes]
MUTATIONS = st.lists(
    st.tuples(st.sampled_from(["flip", "truncate", "extend", "insert"]),
              # positions anywhere, and more often in the options, where decoding has most to do
              st.integers(0, len(CASE1_ACK) + 20) | st.integers(240, len(CASE1_ACK) + 20),
              st.binary(min_size=1, max_size=40)),
    min_size=1, max_size=6,
)


def mutate(data: bytes, mutations: list[Mutation]) -> bytes:
    for kind, position, octets in mutations:
        at = position % (len(data) + 1)
        if kind == "flip" and data:
            at %= len(data)
            data = data[:at] + bytes([data[at] ^ (octets[0] or 1)]) + data[at + 1:]
        elif kind == "truncate":
            data = data[:at]
        elif kind == "extend":
            data = data + octets
        elif kind == "insert":
            data = data[:at] + octets + data[at:]
    return data


@FUZZ
@given(MUTATIONS, st.booleans())
def test_mutated_case1_ack(mutations: list[Mutation], truncated: bool) -> None:
    decode_or_drop(mutate(CASE1_ACK, mutations), truncated)


def test_unmutated_case1_ack_passes_the_checks() -> None:
    """The property above must hold for its own starting point, with every field filled."""
    msg = decode(Datagram(ts=1.5, src=S1, dst="255.255.255.255", sport=67, dport=68,
                          payload=CASE1_ACK, truncated=False))
    check(msg)
    assert (msg.hostname, msg.fqdn, msg.client_id, msg.lease_time) == (
        "alpha", "alpha.example.org", "0102000000000a", 3600)
