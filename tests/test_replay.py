"""`dhcp-hive-mind replay` on damaged captures and standard input, and its summary: the real
command in a process of its own, real tshark, real Redis."""

from __future__ import annotations

import gc
import os
import random
import shlex
import struct
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
import redis
from conftest import require_tool
from helpers import run_cli
from specharness import (
    S1,
    WRITER,
    A,
    B,
    Case,
    X,
    ack,
    assert_absent,
    assert_lease,
)

from sniffer.collector import left_to_exit
from sniffer.commands import RejectReason
from sniffer.replay import REASON_WORDS, rejections
from sniffer.tracker import Tracker

C = bytes.fromhex("02000000000c")
IP1, IP2, IP3 = "192.0.2.101", "192.0.2.102", "192.0.2.103"
PCAP_HEADER = 24
RECORD_HEADER = 16


def replay(redis_url: str, *files: str | Path, stdin: bytes | None = None,
           engine: str = "tshark") -> subprocess.CompletedProcess[str]:
    """Replay on the capture clock, as the spec harness's writer, so that each record is exactly
    the spec's REC."""
    return run_cli("replay", *map(str, files), "--redis-url", redis_url, "--allow-server", S1,
                   "--as-captured", "--engine", engine, "--writer-id", WRITER, stdin=stdin)


def warnings(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("warning: ")]


def two_leases(case: Case, path: Path) -> Path:
    """A's DORA for IP1 (ACK at +0.3), then B's for IP2 (ACK at +1.3, the last packet)."""
    case.dora(0x1201, IP1, chaddr=A)
    case.dora(0x1202, IP2, chaddr=B, ack_at=1.3)
    return case.capture.write(path)


def third_lease(case: Case, path: Path) -> Path:
    """C's DORA for IP3, in a file of its own."""
    case.capture.packets.clear()
    case.dora(0x1203, IP3, chaddr=C, ack_at=2.3)
    return case.capture.write(path)


def assert_first_lease_only(case: Case, rclient: redis.Redis) -> None:
    """A's lease, field by field, and nothing of B's, whose ACK was lost in the damage."""
    assert_lease(rclient, case.rec(IP1, A, S1, 0x1201, 0.3, 3600))
    assert_absent(rclient, IP2)


def to_pcapng(path: Path) -> Path:
    converted = path.with_suffix(".pcapng")
    subprocess.run([require_tool("editcap"), "-F", "pcapng", str(path), str(converted)],
                   check=True, capture_output=True)
    return converted


def cut_in_last_packet(path: Path, name: str) -> Path:
    """The capture as tcpdump leaves it when killed mid-write: the last record cut short."""
    cut = path.with_name(name)
    cut.write_bytes(path.read_bytes()[:-40])
    return cut


@pytest.fixture(autouse=True)
def _tshark() -> None:
    require_tool("tshark")


# ---- damaged files ---------------------------------------------------------------------------

@pytest.mark.parametrize("engine", ["tshark", "pyshark"])
@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_cut_short_file_keeps_its_leases_and_the_next_file_is_replayed(
        fmt: str, engine: str, redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    case = Case(redis_url, tmp_path)
    whole = two_leases(case, tmp_path / "two.pcap")
    cut = cut_in_last_packet(whole if fmt == "pcap" else to_pcapng(whole), f"cut.{fmt}")
    good = third_lease(case, tmp_path / "good.pcap")

    result = replay(redis_url, cut, good, engine=engine)

    assert result.returncode == 1, result.stderr  # scripts notice
    assert warnings(result) == [
        f"warning: {cut}: tshark: The file appears to have been cut short in the "
        "middle of a packet. Replayed what came before (7 packets)."]
    assert "error" not in result.stderr
    assert_first_lease_only(case, rclient)
    assert_lease(rclient, case.rec(IP3, C, S1, 0x1203, 2.3, 3600))
    assert result.stdout.startswith(
        "2 files: 11 packets, 11 DHCP messages, 2 leases written, 0 deleted, 0 replies rejected, "
        "0 malformed packets dropped (")


def test_corrupt_and_foreign_files_are_warnings_and_the_rest_is_replayed(
        redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    case = Case(redis_url, tmp_path)
    corrupt = two_leases(case, tmp_path / "corrupt.pcap")
    # Garbage in the record header of the fifth packet (B's DISCOVER): a length past any limit.
    data = bytearray(corrupt.read_bytes())
    offset = PCAP_HEADER
    for _ in range(4):
        offset += RECORD_HEADER + struct.unpack_from("<I", data, offset + 8)[0]
    data[offset + 8:offset + 16] = b"\xff" * 8
    corrupt.write_bytes(data)
    noise = tmp_path / "noise.pcap"
    noise.write_bytes(random.Random(12).randbytes(4096))
    text = tmp_path / "notes.txt"
    text.write_text("This is not a capture file, only a few words of text.\n")
    good = third_lease(case, tmp_path / "good.pcap")

    result = replay(redis_url, corrupt, noise, text, good)

    assert result.returncode == 1, result.stderr
    damaged, *foreign = warnings(result)
    # tshark's detail in parentheses varies with its version, such as "(pcap: File has
    # 4294967295-byte packet, bigger than maximum of 262144)".
    assert damaged.startswith(
        f"warning: {corrupt}: tshark: The file appears to be damaged or corrupt. (pcap: ")
    assert damaged.endswith(". Replayed what came before (4 packets).")
    assert foreign == [
        f"warning: {noise}: tshark: The file isn't a capture file in a format "
        "TShark understands.",
        f"warning: {text}: tshark: The file isn't a capture file in a format "
        "TShark understands.",
    ]
    assert_first_lease_only(case, rclient)
    assert_lease(rclient, case.rec(IP3, C, S1, 0x1203, 2.3, 3600))
    assert result.stdout.startswith("4 files: 8 packets, 8 DHCP messages, 2 leases written")


def test_an_empty_file_is_a_warning_only(redis_url: str, rclient: redis.Redis,
                                         tmp_path: Path) -> None:
    case = Case(redis_url, tmp_path)
    empty = tmp_path / "empty.pcap"
    empty.touch()
    good = third_lease(case, tmp_path / "good.pcap")

    result = replay(redis_url, empty, good)

    assert result.returncode == 0, result.stderr
    assert warnings(result) == [f"warning: {empty}: empty, nothing to replay"]
    assert_lease(rclient, case.rec(IP3, C, S1, 0x1203, 2.3, 3600))
    assert result.stdout.startswith("2 files: 4 packets, 4 DHCP messages, 1 lease written")


# ---- standard input --------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_a_capture_piped_in(fmt: str, redis_url: str, rclient: redis.Redis,
                            tmp_path: Path) -> None:
    case = Case(redis_url, tmp_path)
    capture = two_leases(case, tmp_path / "two.pcap")
    if fmt == "pcapng":
        capture = to_pcapng(capture)

    # As a user types it: cat's output through a shell pipe.
    command = (f"cat {shlex.quote(str(capture))} | {shlex.quote(sys.executable)} -m sniffer "
               f"replay - --redis-url {redis_url} --allow-server {S1} --as-captured "
               f"--writer-id {WRITER}")
    result = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=120,
                            check=False)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert_lease(rclient, case.rec(IP1, A, S1, 0x1201, 0.3, 3600))
    assert_lease(rclient, case.rec(IP2, B, S1, 0x1202, 1.3, 3600))
    assert result.stdout.startswith("1 file: 8 packets, 8 DHCP messages, 2 leases written")


def test_standard_input_between_files(redis_url: str, rclient: redis.Redis,
                                      tmp_path: Path) -> None:
    case = Case(redis_url, tmp_path)
    case.dora(0x1201, IP1, chaddr=A)
    first = case.capture.write(tmp_path / "first.pcap")
    case.capture.packets.clear()
    case.dora(0x1202, IP2, chaddr=B, ack_at=1.3)
    piped = to_pcapng(case.capture.write(tmp_path / "piped.pcap"))
    last = third_lease(case, tmp_path / "last.pcap")

    result = replay(redis_url, first, "-", last, stdin=piped.read_bytes())

    assert result.returncode == 0, result.stderr
    for ip, chaddr, xid, at in ((IP1, A, 0x1201, 0.3), (IP2, B, 0x1202, 1.3),
                                (IP3, C, 0x1203, 2.3)):
        assert_lease(rclient, case.rec(ip, chaddr, S1, xid, at, 3600))
    assert result.stdout.startswith("3 files: 12 packets")


def test_standard_input_cut_short(redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    case = Case(redis_url, tmp_path)
    cut = cut_in_last_packet(two_leases(case, tmp_path / "two.pcap"), "cut.pcap")

    result = replay(redis_url, "-", stdin=cut.read_bytes())

    assert result.returncode == 1
    assert warnings(result) == [
        "warning: standard input: tshark: The standard input appears to have been cut short in "
        "the middle of a packet. Replayed what came before (7 packets)."]
    assert_first_lease_only(case, rclient)


def test_standard_input_empty(redis_url: str) -> None:
    result = replay(redis_url, "-", stdin=b"")
    assert result.returncode == 0, result.stderr
    assert warnings(result) == ["warning: standard input: empty, nothing to replay"]
    assert result.stdout.startswith("1 file: 0 packets")


@pytest.mark.parametrize(("args", "problem"), [
    (["-", "--engine", "pyshark"], "the pyshark engine reads only named files, not standard "
                                   "input (-): use the tshark engine"),
    (["-", "-"], "standard input (-) can be read only once"),
])
def test_standard_input_refused(args: list[str], problem: str, redis_url: str) -> None:
    result = run_cli("replay", *args, "--redis-url", redis_url, stdin=b"")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"dhcp-hive-mind: error: {problem}"]
    assert result.stdout == ""


# ---- the summary -----------------------------------------------------------------------------

def test_summary_splits_rejected_replies_by_reason(redis_url: str, rclient: redis.Redis,
                                                   tmp_path: Path) -> None:
    case = Case(redis_url, tmp_path)
    case.add(100, ack(0x1301, IP1, A), src=S1)
    case.add(101, ack(0x1302, IP2, B, server=X), src=X)  # a rogue server, twice
    case.add(102, ack(0x1303, IP3, C, server=X), src=X)
    case.add(50, ack(0x1300, IP1, A), src=S1)  # older than the record at IP1: stale
    path = case.capture.write(tmp_path / "mixed.pcap")

    result = replay(redis_url, path)

    assert result.returncode == 0, result.stderr
    summary, rogues = result.stdout.splitlines()
    assert summary.startswith(
        "1 file: 4 packets, 4 DHCP messages, 1 lease written, 0 deleted, "
        "3 replies rejected (2 from rogue servers, 1 stale), 0 malformed packets dropped (")
    assert rogues == f"rogue DHCP servers (replies rejected, not written): {X} (2)"
    assert_lease(rclient, case.rec(IP1, A, S1, 0x1301, 100, 3600))
    assert_absent(rclient, IP2)


def test_every_reason_has_words() -> None:
    assert set(REASON_WORDS) == set(RejectReason)
    counts = {reason.value: 1 for reason in RejectReason}
    text = rejections(len(counts), counts)
    assert text.startswith(f"{len(counts)} replies rejected (1 from a rogue server, ")
    assert text.endswith(", 1 stale, 1 already over)")
    assert rejections(0, {}) == "0 replies rejected"
    assert rejections(1, {RejectReason.ZERO_LEASE: 1}) == (
        "1 reply rejected (1 with a zero lease time)")


def test_a_terminal_as_standard_input_is_refused(redis_url: str,
                                                              tmp_path: Path) -> None:
    # `replay -` typed at a shell, nothing piped in: tshark would wait for a capture typed in.
    primary, secondary = os.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "sniffer", "replay", "-", "--redis-url", redis_url],
            stdin=secondary, capture_output=True, text=True, timeout=120, check=False)
    finally:
        os.close(primary)
        os.close(secondary)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "dhcp-hive-mind: error: standard input (-) is a terminal, not a capture: pipe one in")


def test_decode_reads_standard_input_too(tmp_path: Path, redis_url: str) -> None:
    path = to_pcapng(two_leases(Case(redis_url, tmp_path), tmp_path / "two.pcap"))
    from_file = run_cli("decode", "--json", str(path))
    piped = run_cli("decode", "--json", "-", stdin=path.read_bytes())
    assert piped.returncode == 0, piped.stderr
    assert len(piped.stdout.splitlines()) == 8
    assert piped.stdout == from_file.stdout


def test_a_tracker_left_to_exit_is_never_freed() -> None:
    tracker = Tracker()
    alive = weakref.ref(tracker)
    try:
        left_to_exit(tracker)
        del tracker
        gc.collect()
        assert alive() is not None  # neither freed nor collected: exit takes it back whole
    finally:
        gc.unfreeze()
