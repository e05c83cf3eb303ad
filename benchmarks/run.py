"""dhcp-hive-mind benchmarks: replay speed against tshark and pyshark, the tracker's memory under a
DISCOVER flood, reads of many leases (`leases` in each format, the view's first screen), and live
capture (zero loss and ACK-to-Redis latency), measured side by side in one run and printed as one
table.

    python benchmarks/run.py [--quick] [--only replay,memory,reads,live] [--repeat N]
                             [--before TREE]

Captures are generated once (struct-built records, not scapy) and cached in benchmarks/.cache/.
A scratch redis-server is started on a free port and stopped at the end. Timings are the median of
--repeat runs (3 by default; 1 with --quick, which uses small sizes and only checks correctness).
The exit status is 1 if a correctness check failed (a lease missing or wrong, a command failing),
never because of a timing.
"""

from __future__ import annotations

import argparse
import compileall
import json
import math
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import redis

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import reads as read_runs  # noqa: E402
from benchmarks import traffic  # noqa: E402
from tests.redis_cluster import redis_cluster  # noqa: E402

if TYPE_CHECKING:
    from benchmarks.live import LiveResult

CACHE = REPO / "benchmarks" / ".cache"
PARTS = ("replay", "memory", "reads", "live")
# The floor for any tshark-based pipeline: tshark printing the fields a tracker needs. TRACKER:
# what the spec's rules read (R-TX, R-GR, R-SV, R-ID, R-HN) and the detail hash records; SEED:
# only the seed contract's (type, xid, MAC, address, hostname, lease time), which cannot follow
# a transaction or tell servers apart, for comparison.
TRACKER_FIELDS = (
    "frame.time_epoch", "ip.src", "ip.dst", "udp.srcport", "udp.dstport", "dhcp.type",
    "dhcp.hw.type", "dhcp.hw.len", "dhcp.hw.mac_addr", "dhcp.id", "dhcp.ip.client",
    "dhcp.ip.your", "dhcp.ip.relay", "dhcp.option.dhcp", "dhcp.option.dhcp_server_id",
    "dhcp.option.requested_ip_address", "dhcp.option.ip_address_lease_time",
    "dhcp.option.subnet_mask", "dhcp.option.hostname", "dhcp.fqdn.name", "dhcp.client_id",
    "dhcp.option.agent_information_option.agent_circuit_id",
    "dhcp.option.agent_information_option.agent_remote_id")
SEED_FIELDS = ("dhcp.option.dhcp", "dhcp.id", "dhcp.hw.mac_addr", "dhcp.ip.your",
               "dhcp.option.hostname", "dhcp.option.ip_address_lease_time")
REPLAY_TARGET = 1.25  # times the tshark floor
CLUSTER_TARGET = 1.15  # into a 3-master cluster, times into one server (replay time; live,
# the sniffer's CPU a packet)
MEMORY_TARGET = 150 * 2**20


@dataclass(frozen=True)
class Sizes:
    replay_exchanges: int
    flood: int
    flood_exchanges: int
    live_rates: tuple[int, ...]  # exchanges a second, each run separately
    live_seconds: int
    read_leases: int


FULL = Sizes(replay_exchanges=25_000, flood=1_000_000, flood_exchanges=10_000,
             live_rates=(1000, 3000), live_seconds=20, read_leases=100_000)
QUICK = Sizes(replay_exchanges=250, flood=20_000, flood_exchanges=200, live_rates=(50,),
              live_seconds=3, read_leases=2_000)
# Exchanges a second -> the p99 of ACK-to-Redis latency to stay within, in seconds; at these
# rates no lease may be lost either. 3,000/s is about what Kea sustains on the 2-core machine.
LATENCY_TARGETS = {1000: 0.050, 3000: 0.200}
# Reads: a whole `leases` process (seconds, bytes of peak resident set); the view's first screen
# and its answer to a key (seconds).
READ_TARGET = (2.0, 150 * 2**20)
FIRST_SCREEN_TARGET = 1.0
REFRESH_TARGET = 0.100
HISTORY_TARGET = 0.5  # seconds, a whole `history IP` process at a million events


@dataclass
class Row:
    """One line of the results table."""

    what: str
    measured: str
    ratio: str = ""
    target: str = ""
    verdict: str = ""


class CheckFailed(Exception):
    """A correctness check failed: the run's numbers cannot be trusted."""


# ---- tools ---------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def redis_server(replica: bool = False
                 ) -> Iterator[tuple[str, redis.Redis, list[redis.Redis]]]:
    """A scratch redis-server on a free port, without persistence, and with `replica` one replica
    of it (which applies every write too, as a cluster's replicas do); yields (URL, client, a
    client of each server)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise CheckFailed("redis-server is not installed")
    workdir = Path(tempfile.mkdtemp(prefix="hive-bench-"))
    processes: list[subprocess.Popen[bytes]] = []
    clients: list[redis.Redis] = []

    def start(*args: str) -> tuple[int, redis.Redis]:
        port = free_port()
        (workdir / str(port)).mkdir()
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
             "no", "--dir", str(workdir / str(port)), *args], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        processes.append(process)
        client = redis.Redis.from_url(f"redis://127.0.0.1:{port}/0", decode_responses=True)
        clients.append(client)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return port, client
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise CheckFailed("redis-server did not start") from None
                time.sleep(0.05)

    try:
        port, client = start()
        if replica:
            _, copy = start("--replicaof", "127.0.0.1", str(port))
            deadline = time.monotonic() + 10
            while copy.info("replication").get("master_link_status") != "up":
                if time.monotonic() > deadline:
                    raise CheckFailed("the replica did not join its redis-server")
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0", client, list(clients)
    finally:
        for client in clients:
            client.close()
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass(frozen=True)
class Timing:
    wall: float  # seconds
    cpu: float  # CPU seconds of the command and its children, and of Redis meanwhile
    redis: float = 0.0  # of which Redis's (every server's, replicas too)


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def timed(argv: Sequence[str], servers: Sequence[redis.Redis] = (),
          **options: object) -> tuple[Timing, str]:
    """Run a command to completion: its Timing (with the CPU `servers` used meanwhile) and
    stdout; CheckFailed if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    redis_before = sum(map(redis_cpu, servers))
    started = time.perf_counter()
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False,
                          **options)  # type: ignore[call-overload]
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    used = sum(map(redis_cpu, servers)) - redis_before
    if done.returncode != 0:
        raise CheckFailed(f"{' '.join(map(str, argv[:3]))}... exited {done.returncode}: "
                          f"{done.stderr.strip()[-500:]}")
    return Timing(elapsed, cpu + used, used), done.stdout


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cached_capture(name: str, make: Callable[[], Iterator[traffic.Packet]]) -> Path:
    """benchmarks/.cache/NAME, generated once; written aside and renamed, so never half-made."""
    path = CACHE / name
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        traffic.write_pcap(partial, make())
        partial.rename(path)
    return path


def check_leases(client: redis.Redis, indexes: range, *, hostnames: bool) -> None:
    """Every client of `indexes` has its seed hash (mac, and hostname if asked) with a TTL."""
    pipe = client.pipeline(transaction=False)
    for index in indexes:
        pipe.hgetall(traffic.lease_address(index))
        pipe.ttl(traffic.lease_address(index))
    replies = pipe.execute()
    wrong = []
    for index, fields, ttl in zip(indexes, replies[::2], replies[1::2], strict=True):
        expected = {"mac": traffic.client_mac(index).hex(":")}
        if hostnames:
            expected["hostname"] = traffic.hostname(index)
        if fields != expected or not 0 < ttl <= traffic.LEASE_TIME:
            wrong.append(traffic.lease_address(index))
    if wrong:
        raise CheckFailed(f"{len(wrong):,} of {len(indexes):,} leases missing or wrong in Redis, "
                          f"such as {wrong[0]}")


def python() -> str:
    return sys.executable


def compiled(tree: Path) -> None:
    """Write the bytecode of the package in `tree`, as installing it does: a checkout run
    under PYTHONDONTWRITEBYTECODE=1 (or on a read-only tree) compiled its 40 modules again at
    every start, 60 ms of CPU that an installed program never spends."""
    compileall.compile_dir(tree / "sniffer", quiet=1)


# ---- replay --------------------------------------------------------------------------------------

def floor_argv(path: Path, fields: Sequence[str]) -> list[str]:
    argv = ["tshark", "-r", str(path), "-Y", "dhcp", "-T", "fields"]
    for field in fields:
        argv += ["-e", field]
    return argv


@dataclass(frozen=True)
class Into:
    """A store a replay is written into: its URL, a client that reads it back and flushes it,
    and a client of each of its servers (replicas too), whose CPU counts."""

    url: str
    store: redis.Redis | redis.RedisCluster
    servers: Sequence[redis.Redis]


def replay(sizes: Sizes, repeat: int, one: Into, judge: bool,
           replicated: Into | None = None, bare_cluster: Into | None = None,
           cluster: Into | None = None) -> list[Row]:
    """The replay against tshark's floor and the naive loop, into one server; and, like for
    like, into a 3-master cluster without replicas against one server, and into a 3-master
    cluster with a replica each against one server with a replica (a replica applies every
    write again: on this machine's two cores its CPU is the masters' time)."""
    exchanges = sizes.replay_exchanges
    packets = 4 * exchanges
    path = cached_capture(f"replay-{exchanges}.pcap",
                          lambda: traffic.exchanges(exchanges, time.time() - 3600))

    def tshark(fields: Sequence[str]) -> Callable[[], Timing]:
        return lambda: timed(floor_argv(path, fields), stdin=subprocess.DEVNULL)[0]

    def ours(into: Into = one) -> Timing:
        into.store.flushall()
        timing, out = timed(
            [python(), "-m", "sniffer", "replay", str(path), "--redis-url", into.url],
            into.servers, cwd=REPO, stdin=subprocess.DEVNULL)
        if f"{exchanges:,} leases written" not in out:
            raise CheckFailed(f"dhcp-hive-mind replay: unexpected summary {out.strip()!r}")
        check_leases(into.store, range(exchanges), hostnames=True)
        return timing

    def naive() -> Timing:
        one.store.flushall()
        timing, out = timed([python(), str(REPO / "benchmarks" / "naive.py"), str(path),
                             one.url], one.servers, cwd=REPO, stdin=subprocess.DEVNULL)
        if out.strip() != str(exchanges):
            raise CheckFailed(f"naive pyshark loop wrote {out.strip()} ACKs, not {exchanges}")
        check_leases(one.store, range(exchanges), hostnames=False)  # it cannot correlate
        return timing

    contenders = {"tracker floor": tshark(TRACKER_FIELDS), "seed floor": tshark(SEED_FIELDS),
                  "ours": ours, "naive": naive}
    for name, into in (("one server and a replica", replicated),
                       ("cluster, no replicas", bare_cluster),
                       ("cluster, a replica each", cluster)):
        if into is not None:
            contenders[name] = lambda into=into: ours(into)
    # Interleaved, so that a slow spell of the machine hits every contender alike.
    runs: dict[str, list[Timing]] = {name: [] for name in contenders}
    for n in range(repeat):
        for name, measure in contenders.items():
            runs[name].append(measure())
            progress(f"replay {n + 1}/{repeat}: {name} {runs[name][-1].wall:.2f} s")
    medians = {name: Timing(statistics.median(t.wall for t in timings),
                            statistics.median(t.cpu for t in timings),
                            statistics.median(t.redis for t in timings))
               for name, timings in runs.items()}
    floor, seed_floor = medians["tracker floor"], medians["seed floor"]
    mine, slow = medians["ours"], medians["naive"]
    ratio = mine.wall / floor.wall
    label = f"replay {packets:,} packets ({exchanges:,} exchanges)"

    def measured(timing: Timing) -> str:
        redis_part = f", Redis {timing.redis:.2f} s" if timing.redis else ""
        return f"{timing.wall:.2f} s (CPU {timing.cpu:.2f} s{redis_part})"

    def ratios(timing: Timing) -> str:
        return f"{timing.wall / floor.wall:.2f} (CPU {timing.cpu / floor.cpu:.2f})"

    def against(what: str, timing: Timing, base: Timing, base_name: str, target: bool) -> Row:
        return Row(f"{label}: dhcp-hive-mind replay into {what}", measured(timing),
                   f"{timing.wall / base.wall:.2f} x {base_name} "
                   f"(CPU {timing.cpu / base.cpu:.2f})",
                   f"<= {CLUSTER_TARGET:.2f} x" if target else "",
                   verdict(timing.wall <= CLUSTER_TARGET * base.wall) if judge and target
                   else "")

    rows = [
        Row(f"{label}: tshark -Y dhcp, {len(TRACKER_FIELDS)} fields a tracker needs (floor)",
            measured(floor), ratios(floor)),
        Row(f"{label}: tshark -Y dhcp, {len(SEED_FIELDS)} seed-contract fields",
            measured(seed_floor), ratios(seed_floor)),
        Row(f"{label}: dhcp-hive-mind replay into one Redis server, no replica",
            measured(mine), ratios(mine),
            f"<= {REPLAY_TARGET:.2f}", verdict(ratio <= REPLAY_TARGET) if judge else ""),
        Row(f"{label}: naive pyshark loop into Redis", measured(slow), ratios(slow),
            "", f"{slow.wall / mine.wall:.0f}x ours"),
    ]
    if "cluster, no replicas" in medians:
        rows.append(against("a 3-master Redis Cluster, no replicas",
                            medians["cluster, no replicas"], mine, "one server", True))
    if "one server and a replica" in medians:
        paired = medians["one server and a replica"]
        rows.append(against("one Redis server and a replica", paired, mine, "one server",
                            False))
        if "cluster, a replica each" in medians:
            rows.append(against("a 3-master Redis Cluster, a replica each",
                                medians["cluster, a replica each"], paired,
                                "one server and a replica", True))
    return rows


# ---- memory --------------------------------------------------------------------------------------

def memory(sizes: Sizes, url: str, client: redis.Redis, judge: bool) -> list[Row]:
    client.flushall()
    progress(f"memory: {sizes.flood:,} DISCOVERs, then {sizes.flood_exchanges:,} exchanges")
    _timing, out = timed([python(), str(REPO / "benchmarks" / "memory.py"), str(sizes.flood),
                           str(sizes.flood_exchanges), url], cwd=REPO, stdin=subprocess.DEVNULL)
    result = json.loads(out)
    if result["written"] != sizes.flood_exchanges:
        raise CheckFailed(f"flood: {result['written']} leases written, "
                          f"not {sizes.flood_exchanges}")
    check_leases(client, range(sizes.flood_exchanges), hostnames=True)
    growth = result["rss_growth"]
    return [Row(f"memory: {sizes.flood:,} random DISCOVERs, then {sizes.flood_exchanges:,} "
                f"exchanges ({result['transactions_after_flood']:,} transactions kept)",
                f"{growth / 2**20:.0f} MB", f"all {sizes.flood_exchanges:,} leases written",
                f"< {MEMORY_TARGET // 2**20} MB", verdict(growth < MEMORY_TARGET) if judge else "")]


# ---- reads --------------------------------------------------------------------------------------

def reads(sizes: Sizes, repeat: int, url: str, judge: bool, before: Path | None) -> list[Row]:
    """Each `leases` command and the view, as whole processes against a Redis holding
    sizes.read_leases leases, written by the same code: that of `before` first, if given, each
    command once, then ours, `repeat` times."""
    count = sizes.read_leases
    one = count // 2
    everyone = {traffic.lease_address(index) for index in range(count)}
    commands: list[tuple[str, list[str], set[str], bool]] = [  # what, args, printed, target
        ("`leases` into a pipe", [], everyone, True),
        ("`leases --json` into a pipe", ["--json"], everyone, True),
        ("`leases --jsonl` into a pipe", ["--jsonl"], everyone, False),
        ("`leases --csv` into a pipe", ["--csv"], everyone, False),
        ("`leases --sort hostname` into a pipe", ["--sort", "hostname"], everyone, False),
        ("`leases --mac M`", ["--mac", traffic.client_mac(one).hex(":")],
         {traffic.lease_address(one)}, False)]
    old: dict[str, read_runs.Measured | None] = {}
    old_view = None
    if before is not None:
        with _read_failures("before: "):
            progress(f"reads, before: writing {count:,} leases")
            read_runs.fill_from(before, url, count)
            for what, args, _printed, _targeted in commands:
                progress(f"reads, before: {what}")
                try:
                    old[what] = read_runs.run(before, ["leases", *args, "--redis-url", url])
                except read_runs.Unsupported:
                    old[what] = None
            progress("reads, before: the view")
            old_view = read_runs.view(before, url, count)
    rows: list[Row] = []
    with _read_failures():
        progress(f"reads: writing {count:,} leases")
        read_runs.fill_from(REPO, url, count)
        for what, args, printed, targeted in commands:
            runs = []
            for n in range(repeat):
                runs.append(read_runs.run(REPO, ["leases", *args, "--redis-url", url]))
                read_runs.check(args, runs[-1].output, printed)
                progress(f"reads {n + 1}/{repeat}: {what} {runs[-1].wall:.2f} s")
            label = f"reads, {count:,} leases: {what}"
            if what in old:
                rows.append(_read_row(f"{label}, before", old[what]))
            seconds, memory = READ_TARGET
            target = (f"<= {seconds:g} s, <= {memory // 2**20} MB" if targeted else
                      "keep" if "--mac" in args else "")
            rows.append(_read_row(label, _median(runs), old.get(what), target,
                                  targeted and judge))
        progress("reads: the view")
        seen = read_runs.view(REPO, url, count)
    if old_view is not None:
        rows += _view_rows(f"reads, {count:,} leases: `view`, before", old_view, False)
    rows += _view_rows(f"reads, {count:,} leases: `view`", seen, judge)
    return rows + _history_rows(count, repeat, url, judge)


def _history_rows(count: int, repeat: int, url: str, judge: bool) -> list[Row]:
    """`history` of an address, of it at a moment, and of a MAC, once the addresses have
    read_runs.HISTORY_EVENTS events each (ours only: the code before kept no such history)."""
    events = count * read_runs.HISTORY_EVENTS
    one = count // 2
    ip, mac = traffic.lease_address(one), traffic.client_mac(one).hex(":")
    commands = [("`history IP`", [ip], True),
                ("`history IP --at T`", [ip, "--at", str(time.time() - 1800)], False),
                ("`history MAC`", [mac], False)]
    rows: list[Row] = []
    with _read_failures():
        progress(f"reads: writing {events:,} history events")
        read_runs.fill_history_from(REPO, url, count)
        for what, args, targeted in commands:
            runs = []
            for n in range(repeat):
                runs.append(read_runs.run(REPO, ["history", *args, "--json", "--redis-url",
                                                 url]))
                read_runs.check_history(["history", *args], runs[-1].output, count)
                progress(f"reads {n + 1}/{repeat}: {what} {runs[-1].wall:.2f} s")
            measured = _median(runs)
            rows.append(Row(f"reads, {events:,} history events: {what} --json",
                            f"{measured.wall:.2f} s (CPU {measured.cpu:.2f} s), "
                            f"{measured.rss / 2**20:.0f} MB", "",
                            f"<= {HISTORY_TARGET:g} s" if targeted else "",
                            verdict(measured.wall <= HISTORY_TARGET)
                            if targeted and judge else ""))
    return rows


def _times(ratio: float, better: str, worse: str) -> str:
    return f"{ratio:.1f}x {better}" if ratio >= 1 else f"{1 / ratio:.1f}x {worse}"


@contextmanager
def _read_failures(prefix: str = "") -> Iterator[None]:
    try:
        yield
    except read_runs.Failed as failure:
        raise CheckFailed(f"{prefix}{failure}") from failure


def _median(runs: list[read_runs.Measured]) -> read_runs.Measured:
    """The median times, with the largest resident set of the runs."""
    return read_runs.Measured(statistics.median(run.wall for run in runs),
                              statistics.median(run.cpu for run in runs),
                              max(run.rss for run in runs), b"")


def _read_row(label: str, measured: read_runs.Measured | None,
              before: read_runs.Measured | None = None, target: str = "",
              judged: bool = False) -> Row:
    """A command's row: time and memory, against `before`'s, and READ_TARGET if `judged`."""
    if measured is None:
        return Row(label, "no such option")
    seconds, memory = READ_TARGET
    return Row(label, f"{measured.wall:.2f} s (CPU {measured.cpu:.2f} s), "
                      f"{measured.rss / 2**20:.0f} MB",
               _times(before.wall / measured.wall, "faster", "slower") + ", " +
               _times(before.rss / measured.rss, "less memory", "more memory")
               if before is not None else "",
               target,
               verdict(measured.wall <= seconds and measured.rss <= memory) if judged else "")


def _view_rows(label: str, seen: read_runs.ViewMeasured, judge: bool) -> list[Row]:
    return [
        Row(f"{label}: first screen of leases", f"{seen.first:.2f} s",
            f"every lease loaded at {seen.loaded:.1f} s, {seen.rss / 2**20:.0f} MB",
            f"<= {FIRST_SCREEN_TARGET:g} s" if judge else "",
            verdict(seen.first <= FIRST_SCREEN_TARGET) if judge else ""),
        Row(f"{label}: a key (next sort order) to the screen that answers it",
            f"{seen.refresh * 1000:.0f} ms", "median of 3",
            f"<= {REFRESH_TARGET * 1000:.0f} ms" if judge else "",
            verdict(seen.refresh <= REFRESH_TARGET) if judge else ""),
    ]


# ---- live ----------------------------------------------------------------------------------------

def live(sizes: Sizes, judge: bool, before: Path | None) -> list[Row]:
    """At each rate, the sniffer of `before` (a checkout of older code) if given, then ours."""
    from benchmarks import live as lab_runs  # imports tests/lab.py, only when asked for

    reason = lab_runs.available()
    if reason is not None:
        raise CheckFailed(f"live: {reason}")
    trees = {"before": before, "": REPO} if before is not None else {"": REPO}
    rows = []
    ours: dict[int, LiveResult] = {}
    for rate in sizes.live_rates:
        for name, tree in trees.items():
            result = _live_run(rate, sizes.live_seconds, tree, name)
            label = (f"live {rate:,} exchanges/s for {sizes.live_seconds} s, both legs "
                     f"(~{8 * rate:,} packets/s){', ' + name if name else ''}")
            rows += live_rows(label, result, LATENCY_TARGETS.get(rate) if judge else None)
            if not name:
                ours[rate] = result
    # A diagnosis, not a deployment: at the highest rate, the same sniffer run ahead of the lab
    # when both want a CPU. What latency is left then is the sniffer's own; the rest of the
    # latency above is time its processes waited for a CPU the lab was using.
    rate = sizes.live_rates[-1]
    first = _live_run(rate, sizes.live_seconds, REPO, "given the CPU first (nice -5)",
                      prefix=("nice", "-n", "-5"))
    rows += live_rows(f"live {rate:,} exchanges/s for {sizes.live_seconds} s, both legs, "
                      "the sniffer given the CPU first (nice -5; a diagnosis)", first, None)
    # The same sniffer into a 3-master Redis Cluster, at the first rate (1,000/s per relay).
    rate = sizes.live_rates[0]
    spread = _live_run(rate, sizes.live_seconds, REPO, "into a 3-master Redis Cluster",
                       cluster=True)
    label = (f"live {rate:,} exchanges/s for {sizes.live_seconds} s, both legs "
             f"(~{8 * rate:,} packets/s), into a 3-master Redis Cluster")
    rows += live_rows(label, spread, LATENCY_TARGETS.get(rate) if judge else None)
    one = ours[rate]
    cpu = (spread.cpu / max(spread.packets, 1)) / max(one.cpu / max(one.packets, 1), 1e-12)
    rows.append(Row(f"{label}: against one server, CPU of the sniffer a packet, p50 / p99 latency",
                    f"{cpu:.2f} x, {spread.percentile(0.5) / one.percentile(0.5):.2f} / "
                    f"{spread.percentile(0.99) / one.percentile(0.99):.2f} x", "",
                    f"CPU <= {CLUSTER_TARGET:.2f} x" if judge else "",
                    verdict(cpu <= CLUSTER_TARGET) if judge else ""))
    return rows


def _live_run(rate: int, seconds: int, tree: Path, name: str,
              cluster: bool = False, prefix: Sequence[str] = ()) -> LiveResult:
    from benchmarks import live as lab_runs

    progress(f"live: {rate:,} exchanges/s for {seconds} s {name}".rstrip())
    try:
        result = lab_runs.run(rate, seconds, tree, prefix, cluster=cluster)
    except Exception as error:  # the lab's and the sniffer's failures alike: report them
        raise CheckFailed(f"live at {rate}/s {name}: {error}") from error
    if result.kea_leases == 0:
        raise CheckFailed(f"live at {rate}/s: Kea granted no leases")
    return result


def live_rows(label: str, result: LiveResult, target: float | None) -> list[Row]:
    """Leases lost, the latency, and its p99 in each quarter of the run (bounded, or growing as
    the sniffer falls behind); verdicts if there is a `target` (seconds, the p99 latency)."""
    def ms(values: Iterable[float]) -> str:
        return " / ".join(f"{value * 1000:.0f}" for value in values) + " ms"

    timed = len(result.latencies)
    return [
        Row(f"{label}: leases lost", f"{result.lost:,} of {result.kea_leases:,}",
            f"{result.extra:,} extra in Redis", "0" if target is not None else "",
            verdict(result.lost == 0) if target is not None else ""),
        Row(f"{label}: ACK-to-Redis latency p50 / p99 / max",
            ms((result.percentile(0.5), result.percentile(0.99), max(result.latencies,
                                                                     default=math.nan))),
            f"{timed:,} leases timed",
            f"p99 <= {target * 1000:.0f} ms" if target is not None else "",
            verdict(result.percentile(0.99) <= target) if target is not None else ""),
        Row(f"{label}: ACK-to-Redis p99 in each quarter of the run", ms(result.quarters(0.99)),
            "", "bounded" if target is not None else ""),
        Row(f"{label}: CPU of the sniffer, its capturers and tsharks",
            f"{result.cpu:.1f} s", f"{result.cpu / max(result.packets, 1) * 1e6:.0f} us a packet "
            f"({result.packets:,})"),
        Row(f"{label}: CPU of the whole lab (Kea, dhcrelay, perfdhcp, Redis, captures, sniffer)",
            f"{result.lab_cpu:.1f} s in {result.busy:.1f} s",
            f"{result.lab_cpu / max(result.busy, 1e-9):.2f} cores of {os.cpu_count()}, "
            f"{100 * result.idle:.0f} % idle during the traffic"),
    ]


# ---- report --------------------------------------------------------------------------------------

def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def table(rows: Sequence[Row]) -> str:
    header = Row("benchmark", "measured", "ratio / check", "target", "")
    cells = [[r.what, r.measured, r.ratio, r.target, r.verdict] for r in (header, *rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(5)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |"
             for line in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    tshark = subprocess.run(["tshark", "--version"], capture_output=True, text=True,
                            check=False).stdout.splitlines()[0]
    server = subprocess.run(["redis-server", "--version"], capture_output=True, text=True,
                            check=False).stdout.split()[2]
    return (f"{os.cpu_count()} x {cpu}, Linux {os.uname().release}, Python "
            f"{sys.version.split()[0]}, {tshark}, Redis {server.removeprefix('v=')}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, one repetition: a correctness smoke test")
    parser.add_argument("--only", default=",".join(PARTS),
                        help="comma-separated parts to run: " + ", ".join(PARTS))
    parser.add_argument("--repeat", type=int, help="repetitions per timing (median taken)")
    parser.add_argument("--before", type=Path, metavar="TREE",
                        help="live and reads: also run the sniffer and the read commands of "
                             "this checkout (such as a worktree of an older commit), before ours, "
                             "for before and after rows from one run")
    args = parser.parse_args(argv)
    parts = [part.strip() for part in args.only.split(",") if part.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown part {sorted(unknown)[0]!r}: use {', '.join(PARTS)}")
    sizes = QUICK if args.quick else FULL
    repeat = args.repeat or (1 if args.quick else 3)
    judge = not args.quick  # small sizes measure start-up, not throughput: no verdicts
    compiled(REPO)
    if args.before is not None:
        compiled(args.before)
    print(machine(), flush=True)
    rows: list[Row] = []
    try:
        with redis_server() as (url, client, servers):
            if "replay" in parts:
                with (redis_server(replica=True) as (paired_url, paired, paired_servers),
                      redis_cluster(replicas=0) as bare, bare.client() as bare_client,
                      redis_cluster() as cluster, cluster.client() as cluster_client):
                    rows += replay(
                        sizes, repeat, Into(url, client, servers), judge,
                        Into(paired_url, paired, paired_servers),
                        Into(bare.url, bare_client, bare.nodes()),
                        Into(cluster.url, cluster_client, cluster.nodes()))
            if "memory" in parts:
                rows += memory(sizes, url, client, judge)
            if "reads" in parts:
                rows += reads(sizes, repeat, url, judge, args.before)
        if "live" in parts:
            rows += live(sizes, judge, args.before)
    except CheckFailed as failure:
        print(table(rows))
        print(f"benchmark failed: {failure}", file=sys.stderr)
        return 1
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
