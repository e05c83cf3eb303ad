"""Property tests of the decoder (spec R-IN-16, case 93): whatever the octets, decode() either
raises Dropped or returns a message whose every field has the format the store writes (R-RD-1).

Inputs: random bytes, fuzzed options behind a valid header, and mutations of a valid ACK and of
every DHCP payload of the real captures (pcaps/ and ../shared/pcaps/). Streams of mutated
replies also go through the real pipeline into a real Redis, which must then hold only whole
records (R-IN-16: never partly written). atheris, a coverage-guided fuzzer, runs on the decoder
for a bounded time from the real payloads: `python tests/test_decoder_fuzz.py CORPUS_DIR
-max_total_time=SECONDS` (libFuzzer's options).
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import redis
from conftest import REPO, SHARED_PCAPS, cannot_run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from specharness import (
    ACK,
    BCAST,
    DISCOVER,
    OFFER,
    REQUEST,
    S1,
    A,
    check_all_formats,
    o_cid,
    o_fqdn,
    o_host,
    o_lease,
    payload,
    server_msg,
)

from sniffer.dhcp import Datagram, DhcpMessage, Dropped, decode
from sniffer.keys import Keys
from sniffer.pipeline import Pipeline
from sniffer.store import LeaseStore
from sniffer.tracker import Tracker, TrackerConfig

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


def datagram(data: bytes, truncated: bool = False, ts: float = 1.5) -> Datagram:
    return Datagram(ts=ts, src=S1, dst=BCAST, sport=67, dport=68, payload=data,
                    truncated=truncated)


def decode_or_drop(data: bytes, truncated: bool = False) -> None:
    try:
        msg = decode(datagram(data, truncated))
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


# ---- mutations of real captures --------------------------------------------------------------

@functools.cache
def real_payloads() -> tuple[bytes, ...]:
    """Every distinct DHCP payload (UDP port 67 or 68) of the captures in pcaps/ and
    ../shared/pcaps/, read with scapy and cut at the UDP length."""
    from scapy.all import UDP, PcapReader  # scapy's layers bind only once all are loaded

    files = [*REPO.glob("pcaps/*.pcap*"), *SHARED_PCAPS.glob("*.pcap*")]
    found: dict[bytes, None] = {}
    for path in sorted(f for f in files if not f.name.endswith(".txt")):
        with PcapReader(str(path)) as packets:
            for packet in packets:
                if UDP in packet and {packet[UDP].sport, packet[UDP].dport} & {67, 68}:
                    udp = packet[UDP]
                    found[bytes(udp.original)[8:udp.len]] = None
    assert len(found) > 100, "the captures hold a few hundred DHCP payloads at least"
    return tuple(found)


def real_replies() -> tuple[bytes, ...]:
    """The real payloads that are server replies (op 2): the ones that write to Redis."""
    return tuple(p for p in real_payloads() if p[:1] == b"\x02")


@FUZZ
@given(st.data(), MUTATIONS, st.booleans())
def test_mutated_real_payloads(data: st.DataObject, mutations: list[Mutation],
                               truncated: bool) -> None:
    original = data.draw(st.sampled_from(real_payloads()))
    decode_or_drop(mutate(original, mutations), truncated)


# ---- no partial write ------------------------------------------------------------------------

def run_replies(redis_url: str, payloads: list[bytes]) -> set[str]:
    """Feed server replies through the real pipeline (every server trusted, the capture clock
    at now) into Redis; every record must be whole: both hashes, same TTL, every field in its
    format. Returns the addresses that have a record."""
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    now = time.time()
    pipeline = Pipeline(Tracker(TrackerConfig(capture_clock=True)),
                        LeaseStore(client, Keys(), capture_clock=True))
    for n, data in enumerate(payloads):
        pipeline.feed(datagram(data, ts=now + n * 0.01))
    pipeline.flush()
    try:
        return check_all_formats(client)
    finally:
        client.close()


def test_real_replies_write_whole_records(redis_url: str) -> None:
    """The starting point of the property below: unmutated, the real ACKs write records."""
    acks = [p for p in real_replies() if b"\x35\x01\x05" in p[240:]]
    assert len(run_replies(redis_url, acks)) >= 5


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from([CASE1_ACK]) | st.sampled_from(real_replies()),
                          MUTATIONS), min_size=1, max_size=12))
def test_mutated_reply_streams_leave_only_whole_records(
        redis_url: str, stream: list[tuple[bytes, list[Mutation]]]) -> None:
    run_replies(redis_url, [mutate(original, mutations) for original, mutations in stream])


# ---- atheris ---------------------------------------------------------------------------------

ATHERIS_SECONDS = 20


def test_atheris_finds_no_crash(tmp_path: Path) -> None:
    """A coverage-guided run of ATHERIS_SECONDS from the real payloads: no exception but
    Dropped escapes decode(), and every message passes check()."""
    try:
        import atheris  # noqa: F401
    except ImportError:
        cannot_run("atheris is not installed (make test installs it)")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for n, data in enumerate(real_payloads()[::10]):
        (corpus / f"{n:05d}").write_bytes(data)
    done = subprocess.run(
        [sys.executable, str(Path(__file__)), str(corpus), f"-max_total_time={ATHERIS_SECONDS}",
         "-timeout=10", "-rss_limit_mb=4096"],
        cwd=tmp_path, capture_output=True, text=True, timeout=ATHERIS_SECONDS + 120,
        env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    runs = re.search(r"Done (\d+) runs", done.stderr)
    assert done.returncode == 0 and runs, done.stderr[-3000:]
    print(f"\natheris: {int(runs[1]):,} inputs in {ATHERIS_SECONDS} s, no crash")


def fuzz_one(data: bytes) -> None:
    decode_or_drop(data, truncated=len(data) % 2 == 1)


def instrument_decoder() -> None:
    """Coverage for atheris in the decoder's functions only: instrumenting every module loaded
    (the test libraries too) would take most of the time."""
    import inspect

    import atheris

    import sniffer.dhcp

    for value in vars(sniffer.dhcp).values():
        members = vars(value).values() if inspect.isclass(value) else [value]
        for member in members:
            if inspect.isfunction(member) and member.__module__ == sniffer.dhcp.__name__:
                atheris.instrument_func(member)


if __name__ == "__main__":
    import atheris

    instrument_decoder()
    atheris.Setup(sys.argv, fuzz_one)
    atheris.Fuzz()
