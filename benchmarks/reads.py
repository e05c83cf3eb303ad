"""Reads at scale: `leases` in each output format, `leases --mac`, the view's first screen and
`history`, each timed as a whole process (start-up included) against a Redis holding many leases
(and, for `history`, ten events at each address), with the process's own peak resident set
(`wait4`'s rusage).

The Redis is filled through `LeaseStore.apply`, as a sniffer writes, a thousand leases a batch,
by the code of the checkout whose commands are measured (`tree`: code before and after a change
are measured in one run, each reading the key layout it writes):

    python benchmarks/reads.py REDIS_URL COUNT [history]   (PYTHONPATH: that checkout first)
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import redis

from benchmarks import traffic
from sniffer.commands import Grant, GrantEvent
from sniffer.keys import Keys
from sniffer.lease import INFINITE, Lease
from sniffer.store import LeaseStore

REPO = Path(__file__).resolve().parent.parent
RELAY = "10.0.0.254"
SCREEN = (40, 200)  # the view's terminal: lines, columns
_ANSI = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07]*\x07|[@-_])")


class Failed(Exception):
    """A command failed or printed something wrong."""


# ---- the leases ----------------------------------------------------------------------------------

def lease(index: int, now: int) -> Lease:
    """Client `index`'s lease: traffic's address, MAC and hostname; every tenth relayed, every
    hundredth infinite (BOOTP), lease times spread so that sorting by expiry has work to do."""
    infinite = index % 100 == 99
    lease_time = INFINITE if infinite else 3600 + index % 3600
    return Lease(
        ip=traffic.lease_address(index), mac=traffic.client_mac(index).hex(":"), htype=1,
        client_id=None, hostname=traffic.hostname(index), hostname_src="req12",
        expires=None if infinite else now + lease_time, lease_time=lease_time,
        server=traffic.SERVER, giaddr=RELAY if index % 10 == 0 else "0.0.0.0",
        circuit_id="706f727431" if index % 10 == 0 else None, remote_id=None,
        xid=0x10000000 + index, updated=now, kind="bootp" if infinite else "dhcp")


def fill_from(tree: Path, url: str, count: int) -> None:
    """`count` leases written into an empty Redis by the code of `tree`."""
    redis.Redis.from_url(url).flushall()
    _fill_from(tree, url, count)


def fill_history_from(tree: Path, url: str, count: int) -> None:
    """fill_history() by the code of `tree`, after fill_from()."""
    _fill_from(tree, url, count, "history")


def _fill_from(tree: Path, url: str, count: int, *what: str) -> None:
    done = subprocess.run([sys.executable, str(Path(__file__)), url, str(count), *what],
                          cwd=tree, env={**_environment(tree), "PYTHONPATH": f"{tree}:{REPO}"},
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise Failed(f"writing {' '.join(what) or 'the leases'} from {tree}: "
                     f"{done.stderr.strip()[-500:]}")


def fill(client: redis.Redis, count: int) -> None:
    """`count` leases written as a sniffer writes them, a batch of a thousand at a time."""
    store = LeaseStore(client, Keys(), capture_clock=False, writer="bench")
    now = int(time.time())
    for start in range(0, count, 1000):
        store.apply([Grant(lease(index, now), GrantEvent.GRANTED)
                     for index in range(start, min(count, start + 1000))], time.time())


HISTORY_EVENTS = 10  # events at each address for the `history` reads
HOUR = 3600


def fill_history(client: redis.Redis, count: int) -> None:
    """Before the lease fill() wrote at each of the `count` addresses, one grant an hour for
    HISTORY_EVENTS - 1 hours (every third to another client: a reassignment), written as a
    sniffer writes them: count * HISTORY_EVENTS events in all."""
    store = LeaseStore(client, Keys(), capture_clock=False, writer="bench")
    now = int(time.time())
    for hours in range(HISTORY_EVENTS - 1, 0, -1):
        at = now - hours * HOUR
        for start in range(0, count, 1000):
            store.apply([Grant(earlier_lease(index, count, hours, now), GrantEvent.GRANTED,
                               ts=at + 0.5) for index in range(start, min(count, start + 1000))],
                        time.time())


def earlier_lease(index: int, count: int, hours: int, now: int) -> Lease:
    """The lease at client `index`'s address `hours` before `now`: every third hour another
    client's (client `index + count`'s MAC)."""
    mine = lease(index, now - hours * HOUR)
    return mine if hours % 3 else replace(mine, mac=traffic.client_mac(index + count).hex(":"))


def check_history(args: Sequence[str], output: bytes, count: int) -> None:
    """What `history ARGS --json` printed is what fill() and fill_history() wrote, numbers
    typed."""
    found = json.loads(output)
    target = args[1]
    if "--at" in args:  # the client of fill() held it from `now` on; the lease is long
        ok = isinstance(found, dict) and found["ip"] == target and \
            isinstance(found["lease_time"], int)
    elif ":" in target:  # a MAC: the address it held, in each of its holds
        ok = bool(found) and all(hold["ip"] == traffic.lease_address(count // 2)
                                 for hold in found)
    else:
        grants = [entry for entry in found if entry["event"] in ("granted", "renewed",
                                                                 "reassigned")]
        ok = len(grants) == HISTORY_EVENTS and all(isinstance(entry["time"], float)
                                                   for entry in grants)
    if not ok:
        raise Failed(f"history {' '.join(args)}: unexpected output {output[:300]!r}")


# ---- commands ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Measured:
    wall: float  # seconds, start to exit
    cpu: float  # seconds of CPU, user and system
    rss: int  # bytes, the process's peak resident set
    output: bytes


def _environment(tree: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return {**env, "PYTHONPATH": str(tree), "TERM": "xterm-256color"}


# Runs a command (argv[2:]) in a child of its own, then writes into the file argv[1] its exit
# code, when it started (Unix seconds), wall and CPU seconds, and peak resident set (KiB). The
# child is forked from this small process, not from the benchmark's: Linux starts a child's
# maxrss at what its parent held (through fork, and vfork then exec), and the benchmark holds
# the outputs it checks.
_LAUNCHER = """
import os, sys, time
started, clock = time.perf_counter(), time.time()
pid = os.fork()
if pid == 0:
    try:
        os.execv(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as report:
    report.write(f"{os.waitstatus_to_exitcode(status)} {clock} {time.perf_counter() - started} "
                 f"{usage.ru_utime + usage.ru_stime} {usage.ru_maxrss}")
"""


@dataclass(frozen=True)
class _Report:
    status: int
    started: float  # Unix seconds
    wall: float
    cpu: float
    rss: int


def _launch(tree: Path, args: Sequence[str], report: Path,
            **options: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(report), *command(*args)],
                            cwd=tree, env=_environment(tree), **options)


def _report(path: Path) -> _Report:
    status, started, wall, cpu, rss = path.read_text().split()
    return _Report(int(status), float(started), float(wall), float(cpu), int(rss) * 1024)


def command(*args: str) -> list[str]:
    """`dhcp-hive-mind ARGS`, from the checkout that is the working directory."""
    return [sys.executable, "-m", "sniffer", *args]


class Unsupported(Failed):
    """The command refused an option (its code predates it)."""


def run(tree: Path, args: Sequence[str]) -> Measured:
    """`dhcp-hive-mind ARGS` from `tree`, its standard output a pipe read to the end."""
    with tempfile.TemporaryDirectory() as scratch, \
            open(Path(scratch) / "stderr", "w+b") as errors:
        process = _launch(tree, args, Path(scratch) / "report", stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=errors)
        assert process.stdout is not None
        out = process.stdout.read()
        process.wait()
        done = _report(Path(scratch) / "report")
        if done.status != 0:
            errors.seek(0)
            message = errors.read().decode(errors="replace").strip()[-300:]
            raise (Unsupported if done.status == 2 and "No such option" in message else Failed)(
                f"{' '.join(args[:2])}: exit {done.status}: {message}")
    return Measured(done.wall, done.cpu, done.rss, out)


BOX = frozenset("─━│┃┏┓┗┛┡┩╇┿┼╋")
NUMBERS = ("htype", "expires", "lease_time", "updated", "ttl")


def check(args: Sequence[str], output: bytes, expected: set[str]) -> None:
    """What `leases ARGS` printed holds each of the `expected` addresses once, in the format
    asked for: JSON with typed numbers, JSON Lines, CSV with its header, or plain columns."""
    text = output.decode()
    if "--json" in args or "--jsonl" in args:
        rows = json.loads(text) if "--json" in args else [json.loads(line)
                                                         for line in text.splitlines()]
        ips = [row["ip"] for row in rows]
        if rows and not all(isinstance(rows[0][name], int) for name in NUMBERS):
            raise Failed(f"leases {' '.join(args)}: numbers not typed: {rows[0]}")
    elif "--csv" in args:
        ips = [row["ip"] for row in csv.DictReader(io.StringIO(text, newline=""))]
    else:
        lines = text.splitlines()
        if BOX & set(text) or (lines[:1] and not lines[0].startswith("IP ")):
            raise Failed(f"leases {' '.join(args)}: not plain columns: {lines[:2]}")
        ips = [line.split()[0] for line in lines[1:]]
    if len(ips) != len(expected) or set(ips) != expected:
        raise Failed(f"leases {' '.join(args)}: {len(ips):,} leases printed, "
                     f"{len(set(ips) & expected):,} of the {len(expected):,} expected")


# ---- the view ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ViewMeasured:
    first: float  # seconds from the start to the first screen showing leases
    loaded: float  # seconds from the start to the header counting every lease
    refresh: float  # seconds from a key (the next sort order) to the screen showing it; median
    rss: int


_LEASE_ROW = re.compile(r"10\.1\.\d+\.\d+ +02:00:")


class _Terminal:
    """The master side of a pseudo-terminal: what the program drew, escape sequences taken out."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.text = ""

    def wait(self, found: re.Pattern[str] | str, timeout: float = 180) -> float:
        """When (Unix seconds) the text drawn since the call first contains `found`."""
        deadline = time.monotonic() + timeout
        raw = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 1 << 16)
            except OSError:  # the program has gone and its side of the terminal with it
                chunk = b""
            if not chunk:
                break
            at = time.time()
            raw = raw[-(1 << 16):] + chunk  # frames are a few kB: enough to hold a whole one
            self.text = _ANSI.sub("", raw.decode("utf-8", "replace"))
            if (found.search(self.text) if isinstance(found, re.Pattern)
                    else found in self.text):
                return at
        raise Failed(f"the view never showed {found!r}; last drawn: {self.text[-500:]!r}")

    def drain(self) -> None:
        while True:
            try:
                if not os.read(self.master, 1 << 16):
                    return
            except OSError:
                return


def view(tree: Path, url: str, count: int) -> ViewMeasured:
    """`dhcp-hive-mind view` in a 200x40 pseudo-terminal: time to its first screen of leases,
    to every lease loaded, and from a key to the screen that answers it."""
    master, slave = pty.openpty()
    lines, columns = SCREEN
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report"
        process = _launch(tree, ["view", "--redis-url", url], report, stdin=slave,
                          stdout=slave, stderr=slave, start_new_session=True)
        os.close(slave)
        terminal = _Terminal(master)
        try:
            first = terminal.wait(_LEASE_ROW)
            loaded = terminal.wait(f"active leases {count:,} ")
            keys = []
            for sort in ("time left", "recency", "ip"):
                sent = time.time()
                os.write(master, b"s")
                keys.append(terminal.wait(f"sorted by {sort}") - sent)
            os.write(master, b"q")
            terminal.drain()
            process.wait()
            done = _report(report)
            if done.status != 0:
                raise Failed(f"view: exit {done.status}: {terminal.text[-300:]!r}")
        finally:
            if process.returncode is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait()
            os.close(master)
    return ViewMeasured(first - done.started, loaded - done.started, sorted(keys)[1], done.rss)


if __name__ == "__main__":
    target = redis.Redis.from_url(sys.argv[1])
    (fill_history if sys.argv[3:] == ["history"] else fill)(target, int(sys.argv[2]))
