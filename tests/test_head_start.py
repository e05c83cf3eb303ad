"""The replay's tshark started before the CLI is imported (sniffer.head_start): which command
lines get one, that the replay takes it over only when it is the tshark it would start, and that
one nobody takes is stopped."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from conftest import SHARED_PCAPS, require_tool
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from sniffer import head_start
from sniffer.capture_file import read_file
from sniffer.cli import app
from sniffer.tshark import DEFAULT_PORTS, _after, tshark_argv

FLOOD = SHARED_PCAPS / "sv_dhcp_request_flood_10000_discover.pcap"


@pytest.fixture
def pcap(tmp_path: Path) -> Path:
    path = tmp_path / "one.pcap"
    packet = (Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff")
              / IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67)
              / BOOTP(op=1, xid=7, chaddr=bytes.fromhex("020000000001"))
              / DHCP(options=[("message-type", "discover"), "end"]))
    wrpcap(str(path), [packet])
    return path


@pytest.fixture(autouse=True)
def _nothing_left() -> Iterator[None]:
    yield
    for process in head_start._started.values():
        process.stop()
    head_start._started.clear()


@pytest.mark.parametrize(("args", "first"), [
    (["replay", "a.pcap"], "a.pcap"),
    (["replay", "./dir//a.pcap", "b.pcap"], "dir/a.pcap"),
    (["--debug", "--config", "c.toml", "replay", "a.pcap"], "a.pcap"),
    (["replay", "--redis-url", "redis://h/0", "--as-captured", "a.pcap"], "a.pcap"),
    (["replay", "--redis-url=redis://h/0", "--no-supersede", "a.pcap"], "a.pcap"),
    (["replay", "--engine", "tshark", "a.pcap"], "a.pcap"),
    (["replay", "--", "-odd.pcap"], "-odd.pcap"),
    (["replay", "a.pcap", "--engine", "pyshark"], "a.pcap"),  # the replay will not claim it
    (["replay", "--engine", "pyshark", "a.pcap"], None),
    (["replay", "--engine=pyshark", "a.pcap"], None),
    (["replay", "-"], None),
    (["replay", "--help"], None),
    (["replay", "-h", "a.pcap"], None),
    (["replay"], None),
    (["leases", "replay"], None),
    (["--config", "replay", "leases"], None),
    ([], None),
])
def test_first_file(args: list[str], first: str | None) -> None:
    assert head_start.first_file(args) == first


def test_value_options_are_the_clis() -> None:
    """The options that take a value are those of the CLI: otherwise a value would be taken for
    the first file (only a wasted head start, but every time)."""
    group = typer.main.get_command(app)

    def valued(params: list[Any]) -> set[str]:
        return {name for param in params
                if param.param_type_name == "option" and not param.is_flag
                for name in param.opts}

    assert valued(group.params) == head_start.GLOBAL_VALUE_OPTIONS
    replay = group.commands[head_start.COMMAND]  # type: ignore[attr-defined]
    assert valued(replay.params) == head_start.REPLAY_VALUE_OPTIONS


def test_the_replay_takes_over_the_tshark_started_ahead(pcap: Path) -> None:
    require_tool("tshark")
    head_start.start(["replay", str(pcap)])
    argv = tshark_argv(["-r", str(pcap)], DEFAULT_PORTS)
    ahead = head_start._started[tuple(argv)]
    datagrams = list(read_file(pcap))
    assert [d.sport for d in datagrams] == [68]
    assert head_start._started == {}  # taken, and the capture has reaped it
    assert not ahead.running()


def test_what_was_read_ahead_comes_first_and_whole() -> None:
    """tshark's output read ahead into memory while Python starts: the same datagrams, in
    order, as a tshark read the ordinary way (a line cut by the read-ahead is made whole)."""
    require_tool("tshark")
    head_start.start(["replay", str(FLOOD)])
    [ahead] = head_start._started.values()
    deadline = time.monotonic() + 30
    while not ahead._ahead and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ahead._ahead, "nothing was read ahead"
    started_ahead = list(read_file(FLOOD))
    assert head_start._started == {}
    assert started_ahead == list(read_file(FLOOD))
    assert len(started_ahead) == 10_000


def test_a_line_cut_in_two_by_the_read_ahead() -> None:
    lines = list(_after(b"1\ta\n2\tb", io.StringIO("c\n3\td\n")))
    assert lines == ["1\ta\n", "2\tbc\n", "3\td\n"]
    assert list(_after(b"1\ta\n", io.StringIO(""))) == ["1\ta\n"]


def test_one_for_another_command_line_is_not_taken(pcap: Path) -> None:
    require_tool("tshark")
    head_start.start(["replay", str(pcap)])
    assert head_start.claim(tshark_argv(["-r", str(pcap)], [67, 68, 4011])) is None
    assert len(head_start._started) == 1


def test_none_for_a_missing_file(tmp_path: Path) -> None:
    head_start.start(["replay", str(tmp_path / "nope.pcap")])
    assert head_start._started == {}


def test_one_not_taken_is_stopped_at_exit(pcap: Path, tmp_path: Path) -> None:
    """A replay that stops before reading (Redis unreachable) leaves no tshark behind: it is
    gone when the process has exited (it would still be loading its dissectors otherwise)."""
    require_tool("tshark")
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from sniffer import head_start; "
         "head_start.start(sys.argv[1:]); "
         "[p] = head_start._started.values(); print(p.pid, flush=True)",
         "replay", str(pcap)],
        capture_output=True, text=True, timeout=60, check=True)
    pid = int(done.stdout)
    assert not Path(f"/proc/{pid}").exists()
