"""Live capture under load: leases lost and ACK-to-Redis latency, in the namespace lab.

The lab of tests/lab.py (Kea, dhcrelay on the relay host) with perfdhcp's simulated clients
behind the relay; `dhcp-hive-mind sniff -i up0 -i down0` runs on the relay host, so it sees
every message on both legs. After each run, Kea's leases (lease4-get-all) are compared with the
seed hashes in Redis: a lease Kea granted that Redis lacks, or holds with another MAC, is lost.

Latency is measured outside the sniffer: a separate dumpcap on up0 timestamps each ACK as the
kernel saw it arrive from Kea, and the id of the lease's "granted" event in the event stream is
Redis's own clock when the write ran (one machine, one clock). The CPU time of the sniffer and
its children (capturers, tsharks) is taken from /proc, from the traffic's start to its end.

The sniffer runs from this checkout, or from another one (`tree`, such as a worktree of an older
commit, for before-and-after rows measured in one run). It writes into a scratch redis-server on
a unix socket, or into a 3-master Redis Cluster (six redis-server processes, replicas included)
listening on this namespace's end of a veth pair into the relay host: the sniffer reaches the
nodes at the addresses they announce, through the kernel, as it would a cluster on its network.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import redis

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from lab import PERF_IP, Lab, RedisServer, children, sniff_relay, wait_for  # noqa: E402

from tests.redis_cluster import redis_cluster  # noqa: E402

BIG_NET = "10.64.0.0/16"  # perfdhcp's clients: room for 65,000 leases
BIG_POOL = "10.64.0.1 - 10.64.255.254"
EVENTS = "dhcp-hive-mind:events"
SEED_PATTERN = "[0-9]*.[0-9]*.[0-9]*.[0-9]*"
SETTLE = 2.0  # seconds Redis must stay unchanged after perfdhcp before the comparison
SETTLE_LIMIT = 60.0
# Seconds between the sniffer's "capturing" and the traffic: its tsharks are still starting then
# (a second or so on a busy machine), which a sniffer running for months does once.
WARM_UP = 2.0


class BenchLab(Lab):
    """The lab with a pool big enough for thousands of exchanges a second: perfdhcp's relayed
    requests (giaddr PERF_IP) are given addresses in BIG_NET, selected by that relay address."""

    def _kea_config(self) -> dict[str, Any]:
        config: dict[str, Any] = super()._kea_config()
        config["Dhcp4"]["subnet4"].insert(0, {
            "id": 100, "subnet": BIG_NET, "pools": [{"pool": BIG_POOL}],
            "relay": {"ip-addresses": [PERF_IP]}})
        # Not a log line per lease: the loggers that write them say only warnings.
        config["Dhcp4"]["loggers"] += [
            {"name": f"kea-dhcp4.{name}", "severity": "WARN",
             "output_options": [{"output": "stdout"}]}
            for name in ("leases", "packets", "alloc-engine", "dhcpsrv", "bad-packets")]
        return config


@dataclass(frozen=True)
class LiveResult:
    rate: int  # exchanges a second perfdhcp was asked for
    seconds: int
    kea_leases: int
    redis_leases: int
    lost: int  # Kea's leases missing from Redis or held there with another MAC
    extra: int  # seed hashes in Redis that Kea does not have
    acks_seen: int  # ACKs the separate capture saw on up0
    cpu: float  # CPU seconds of the sniffer and its capturers and tsharks, traffic to settled
    lab_cpu: float  # ... of everything: Kea, dhcrelay, perfdhcp, Redis, captures, the sniffer
    busy: float  # seconds from the traffic's start to Redis settled (less the settling wait)
    idle: float  # share of the machine's CPU time left idle while perfdhcp ran
    packets: int  # packets it captured
    timed: tuple[tuple[float, float, str], ...]  # per lease, in ACK order: (its first ACK on
    # up0, Redis's clock when it was written, both Unix times in seconds; its address)

    @property
    def latencies(self) -> tuple[float, ...]:
        return tuple(written - ack for ack, written, _ip in self.timed)

    def percentile(self, fraction: float) -> float:
        return percentile(self.latencies, fraction)

    def quarters(self, fraction: float) -> tuple[float, ...]:
        """The percentile of the latencies in each quarter of the run (by ACK time): a latency
        that grows over the run is a sniffer falling behind."""
        if not self.timed:
            return ()
        start, end = self.timed[0][0], self.timed[-1][0]
        span = max(end - start, 1e-9)
        parts: list[list[float]] = [[], [], [], []]
        for ack, written, _ip in self.timed:
            parts[min(3, int(4 * (ack - start) / span))].append(written - ack)
        return tuple(percentile(part, fraction) for part in parts)


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def available() -> str | None:
    """Why the live benchmark cannot run here, or None if it can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for name in ("kea-dhcp4", "dhcrelay", "perfdhcp", "dumpcap", "tshark", "redis-server"):
        if shutil.which(name) is None and shutil.which(name, path="/usr/sbin:/sbin") is None:
            return f"{name} is not installed"
    return None


@dataclass(frozen=True)
class Store:
    """Where the sniffer writes: its URL, a client of it, and its server processes (for their
    CPU time)."""

    url: str
    client: Any  # redis.Redis or redis.RedisCluster, decoding responses
    pids: tuple[int, ...]


@contextmanager
def scratch_redis() -> Iterator[Store]:
    server = RedisServer()
    client = redis.Redis(unix_socket_path=str(server.socket), decode_responses=True)
    try:
        yield Store(server.url, client, (server.proc.pid,))
    finally:
        client.close()
        server.close()


@contextmanager
def scratch_cluster(lab: Lab) -> Iterator[Store]:
    """A 3-master Redis Cluster on this namespace's end of a veth pair into the lab's relay host
    (a /30 of 100.64.0.0/16, chosen at random, so that labs running at once do not meet)."""
    net = ipaddress.ip_network(f"100.64.{secrets.randbelow(256)}.{4 * secrets.randbelow(64)}/30")
    ours, theirs = (str(address) for address in net.hosts())
    link = f"{lab.tag}r"  # this end's name, unique like the lab's namespaces
    commands = [["ip", "link", "add", link, "type", "veth", "peer", "name", "redis0", "netns",
                 lab.relay.name],
                ["ip", "addr", "add", f"{ours}/30", "dev", link], ["ip", "link", "set", link, "up"],
                ["ip", "-n", lab.relay.name, "addr", "add", f"{theirs}/30", "dev", "redis0"],
                ["ip", "-n", lab.relay.name, "link", "set", "redis0", "up"]]
    try:
        for command in commands:
            subprocess.run(command, check=True, capture_output=True)
        with redis_cluster(host=ours) as cluster, cluster.client() as client:
            yield Store(cluster.url, client, tuple(proc.pid for proc in cluster.procs.values()))
    finally:
        subprocess.run(["ip", "link", "del", link], check=False, capture_output=True)


def run(rate: int, seconds: int, tree: Path = REPO, prefix: Sequence[str] = (),
        cluster: bool = False) -> LiveResult:
    """One perfdhcp run at `rate` exchanges a second for `seconds`, sniffed on both legs by the
    sniffer of checkout `tree` (started after `prefix`, as sniff_daemon does), into a scratch
    Redis or, with `cluster`, a 3-master Redis Cluster."""
    workdir = Path(tempfile.mkdtemp(prefix="hive-bench-live-"))
    try:
        with contextlib.ExitStack() as stack:
            lab = stack.enter_context(BenchLab(relayed_clients=0))
            store = stack.enter_context(scratch_cluster(lab) if cluster else scratch_redis())
            client = store.client
            # In the tree's directory: `python -m` puts the current one first on the path.
            sniffer = sniff_relay(lab.relay, store.url, workdir / "sniff.log",
                                  prefix=["env", "-C", str(tree), *prefix],
                                  env={"PYTHONPATH": str(tree)})
            try:
                acks = lab.capture("relay", ["up0"], workdir / "up0.pcap")
                time.sleep(WARM_UP)
                cpu, lab_cpu = -tree_cpu(sniffer.proc.pid), -everything_cpu(lab, store.pids)
                machine = machine_times()
                started = time.monotonic()
                lab.perfdhcp(rate * seconds, rate=rate)
                idle = idle_share(machine, machine_times())
                settle(client)
                busy = time.monotonic() - started - SETTLE
                cpu += tree_cpu(sniffer.proc.pid)
                lab_cpu += everything_cpu(lab, store.pids)
                ack_times = first_acks(acks.stop())
                kea = {str(lease["ip-address"]): str(lease["hw-address"])
                       for lease in lab.leases()}
                if sniffer.stop(signal.SIGTERM) != 0:
                    raise RuntimeError(f"sniff failed: {sniffer.output()[-2000:]}")
            finally:
                sniffer.stop(signal.SIGKILL)
            output = sniffer.output()
            ours = seed_macs(client)
            written = granted_at(client)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    lost = sum(1 for ip, mac in kea.items() if ours.get(ip) != mac)
    timed = sorted((ack_times[ip], written[ip], ip) for ip in kea
                   if ip in written and ip in ack_times)
    packets = re.search(r"stopped: ([\d,]+) packets", output)
    return LiveResult(rate, seconds, len(kea), len(ours), lost, len(ours.keys() - kea.keys()),
                      len(ack_times), cpu, lab_cpu, busy, idle,
                      int(packets[1].replace(",", "")) if packets else 0, tuple(timed))


def tree_cpu(pid: int) -> float:
    """CPU seconds used so far by a process and its children, living (the sniffer's capturers and
    tsharks) or reaped (those replaced)."""
    ticks = 0
    for process in (pid, *children(pid)):
        # utime, stime, cutime, cstime: after the command name, which may hold spaces
        fields = Path(f"/proc/{process}/stat").read_text().rpartition(")")[2].split()
        ticks += sum(int(field) for field in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_times() -> list[int]:
    """The machine's CPU time so far, by state (the first line of /proc/stat)."""
    with open("/proc/stat") as stat:
        return [int(ticks) for ticks in stat.readline().split()[1:]]


def idle_share(before: Sequence[int], after: Sequence[int]) -> float:
    """The share of the CPU time between two machine_times() that was idle (idle, iowait)."""
    spent = [later - earlier for earlier, later in zip(before, after, strict=True)]
    return (spent[3] + spent[4]) / max(sum(spent), 1)


def everything_cpu(lab: Lab, servers: Sequence[int]) -> float:
    """CPU seconds used so far by the lab: every process in its namespaces, the Redis servers
    (by pid), and the commands this process ran and reaped (perfdhcp)."""
    pids = {int(pid) for ns in lab.namespaces.values()
            for pid in subprocess.run(["ip", "netns", "pids", ns.name], capture_output=True,
                                      text=True, check=False).stdout.split()}
    ticks = 0
    for pid in (*pids, *servers):
        with contextlib.suppress(OSError):  # gone meanwhile
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            ticks += int(fields[11]) + int(fields[12])  # its own, not its children's: listed too
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ticks / os.sysconf("SC_CLK_TCK") + reaped.ru_utime + reaped.ru_stime


def settle(client: redis.Redis) -> None:
    """Wait until the number of keys in Redis has not changed for SETTLE seconds."""
    last, since = -1, time.monotonic()

    def steady() -> bool:
        nonlocal last, since
        size = int(client.dbsize())
        if size != last:
            last, since = size, time.monotonic()
        return time.monotonic() - since >= SETTLE

    wait_for(steady, "Redis to settle", timeout=SETTLE_LIMIT)


def seed_macs(client: redis.Redis) -> dict[str, str]:
    """The seed hashes in Redis: IP -> MAC."""
    keys = list(client.scan_iter(match=SEED_PATTERN, count=1000, _type="hash"))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hget(key, "mac")
    return dict(zip(keys, pipe.execute(), strict=True))


def granted_at(client: redis.Redis) -> dict[str, float]:
    """IP -> Redis's clock when its first lease was written: the event stream id (milliseconds
    of Redis time) of its first "granted" event."""
    written: dict[str, float] = {}
    last = "-"
    while entries := cast(list[tuple[str, dict[str, str]]],
                          client.xrange(EVENTS, last, "+", count=10_000)):
        for entry_id, fields in entries:
            if fields.get("event") == "granted" and fields["ip"] not in written:
                written[fields["ip"]] = int(entry_id.split("-")[0]) / 1000
        last = "(" + entries[-1][0]
    return written


def first_acks(pcap: Path) -> dict[str, float]:
    """IP -> capture time of the first ACK granting it."""
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-n", "-Y", "dhcp.option.dhcp == 5", "-T", "fields",
         "-e", "frame.time_epoch", "-e", "dhcp.ip.your"],
        capture_output=True, text=True, check=True).stdout
    times: dict[str, float] = {}
    for line in out.splitlines():
        stamp, _, ip = line.partition("\t")
        times.setdefault(ip, float(stamp))
    return times
