"""benchmarks/run.py --quick: the benchmark runs end to end on small sizes and its correctness
checks hold (every lease written, the table printed). Timings are not asserted."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import REPO, require_root, require_tool

LIVE_TOOLS = ("kea-dhcp4", "dhcrelay", "perfdhcp", "tcpdump", "dumpcap", "tshark", "redis-server",
              "redis-cli", "ip")


def run_quick(parts: str) -> str:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--only", parts],
        cwd=REPO, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def row(table: str, start: str) -> list[str]:
    """The cells of the table row whose first cell starts with `start`."""
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0].startswith(start):
            return cells
    raise AssertionError(f"no row {start!r} in:\n{table}")


def test_replay_and_memory_write_every_lease() -> None:
    for name in ("tshark", "redis-server"):
        require_tool(name)
    table = run_quick("replay,memory")
    assert table.splitlines()[0].startswith(f"{os.cpu_count()} x ")  # the machine line
    for contender in ("tshark -Y dhcp, 23 fields", "tshark -Y dhcp, 6 seed"):
        cells = row(table, f"replay 1,000 packets (250 exchanges): {contender}")
        assert re.fullmatch(r"\d+\.\d\d s \(CPU \d+\.\d\d s\)", cells[1])
    # Into Redis: the CPU counts every server's, replicas too, and says how much.
    for contender in ("dhcp-hive-mind replay into one Redis server, no replica",
                      "naive pyshark loop",
                      "dhcp-hive-mind replay into a 3-master Redis Cluster, no replicas",
                      "dhcp-hive-mind replay into one Redis server and a replica",
                      "dhcp-hive-mind replay into a 3-master Redis Cluster, a replica each"):
        cells = row(table, f"replay 1,000 packets (250 exchanges): {contender}")
        assert re.fullmatch(r"\d+\.\d\d s \(CPU \d+\.\d\d s, Redis \d+\.\d\d s\)", cells[1]), cells
    memory = row(table, "memory: 20,000 random DISCOVERs, then 200 exchanges")
    assert memory[2] == "all 200 leases written"
    assert re.fullmatch(r"\d+ MB", memory[1])


def test_reads_print_every_lease_and_the_view_its_first_screen() -> None:
    """Each `leases` format is checked inside the run: every lease once, typed numbers, CSV
    with its header, plain columns; the view is timed in a pseudo-terminal; `history` after
    ten events an address."""
    require_tool("redis-server")
    table = run_quick("reads")
    for what in ("`leases` into a pipe", "`leases --json` into a pipe",
                 "`leases --jsonl` into a pipe", "`leases --csv` into a pipe",
                 "`leases --sort hostname` into a pipe", "`leases --mac M`"):
        cells = row(table, f"reads, 2,000 leases: {what}")
        assert re.fullmatch(r"\d+\.\d\d s \(CPU \d+\.\d\d s\), \d+ MB", cells[1]), cells
    first = row(table, "reads, 2,000 leases: `view`: first screen of leases")
    assert re.fullmatch(r"\d+\.\d\d s", first[1])
    assert re.fullmatch(r"every lease loaded at \d+\.\d s, \d+ MB", first[2])
    key = row(table, "reads, 2,000 leases: `view`: a key")
    assert re.fullmatch(r"\d+ ms", key[1])
    # `history`, checked inside the run too: the address's ten grants, its holder, the MAC's
    # holds, numbers typed.
    for what in ("`history IP`", "`history IP --at T`", "`history MAC`"):
        cells = row(table, f"reads, 20,000 history events: {what} --json")
        assert re.fullmatch(r"\d+\.\d\d s \(CPU \d+\.\d\d s\), \d+ MB", cells[1]), cells


@pytest.mark.e2e
def test_live_loses_no_lease_at_a_low_rate() -> None:
    for name in LIVE_TOOLS:
        require_tool(name)
    require_root("the namespace lab")
    table = run_quick("live")
    one = "live 50 exchanges/s for 3 s, both legs (~400 packets/s)"
    for label in (one, f"{one}, into a 3-master Redis Cluster"):
        lost = re.fullmatch(r"0 of (\d+)", row(table, f"{label}: leases lost")[1])
        assert lost is not None and int(lost[1]) > 0, label
        latency = row(table, f"{label}: ACK-to-Redis latency")
        assert re.fullmatch(r"\d+ / \d+ / \d+ ms", latency[1])
        assert latency[2] == f"{lost[1]} leases timed"  # every lease Kea granted, written
    assert re.search(r" cores of \d+, \d+ % idle during the traffic$",
                     row(table, f"{one}: CPU of the whole lab")[2])
    first = ("live 50 exchanges/s for 3 s, both legs, the sniffer given the CPU first "
             "(nice -5; a diagnosis)")
    assert re.fullmatch(r"0 of [1-9]\d*", row(table, f"{first}: leases lost")[1])
