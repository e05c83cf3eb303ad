"""`dhcp-hive-mind sniff` live, on a veth pair in a network namespace: DHCP frames built here go
out of one end, the sniffer (a real process, with real tcpdump and tshark) captures the other.
Supervision, clean stops, drops, metrics and unprivileged capture; the live part of the capture
(sniffer.capturer).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shlex
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from conftest import REPO, cannot_run, require_root, require_tool
from lab import (
    Daemon,
    FrameSender,
    Namespace,
    RedisServer,
    children,
    fetch,
    run,
    sniff_daemon,
    wait_for,
)
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw, raw
from specharness import ACK, REQUEST, S1, client_msg, o_host, o_lease, o_req, o_server, server_msg

from sniffer.capturer import PCAP_HEADER, Echoes, LiveDecoder, RecordSplitter, capture_end
from sniffer.dhcp import Datagram
from sniffer.tshark import CaptureError

METRICS_PORT = 9731
SETCAP = "cap_net_raw,cap_net_admin+eip"
LIVE_CAPTURE = "live capture in network namespaces"  # what needs root here


# ---- frames ----------------------------------------------------------------------------------

def frame(data: bytes, src: str, dst: str, sport: int, dport: int) -> bytes:
    return bytes(Ether(src="02:00:00:00:ff:01", dst="ff:ff:ff:ff:ff:ff")
                 / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / Raw(data))


def client_ip(n: int) -> str:
    return f"10.0.{n // 250}.{n % 250 + 1}"


def client_mac(n: int) -> str:
    return f"02:00:00:0a:{n // 256:02x}:{n % 256:02x}"


def request_ack(n: int, *, lease: int = 600, hostname: str | None = None) -> list[bytes]:
    """Client n's SELECTING REQUEST and S1's ACK: a lease Redis must hold afterwards."""
    mac, ip = bytes.fromhex(client_mac(n).replace(":", "")), client_ip(n)
    options = [o_req(ip), o_server(S1)] + ([o_host(hostname)] if hostname else [])
    return [
        frame(client_msg(REQUEST, 0x5000 + n, mac, *options), "0.0.0.0", "255.255.255.255",
              68, 67),
        frame(server_msg(ACK, 0x5000 + n, mac, o_lease(lease), yi=ip), S1, "255.255.255.255",
              67, 68),
    ]


def exchanges(first: int, count: int) -> list[bytes]:
    return [f for n in range(first, first + count) for f in request_ack(n)]


# ---- fixtures --------------------------------------------------------------------------------

class Link:
    """A namespace with a veth pair: the sniffer captures on v0, frames are sent on v1."""

    def __init__(self) -> None:
        self.ns = Namespace(f"hivesniff{secrets.token_hex(3)}")
        run(["ip", "netns", "add", self.ns.name])
        self.ns.ip("link", "set", "lo", "up")
        self.create()
        self.sender = FrameSender(self.ns)

    def create(self) -> None:
        self.ns.ip("link", "add", "v0", "type", "veth", "peer", "name", "v1")
        self.ns.ip("link", "set", "v0", "up")
        self.ns.ip("link", "set", "v1", "up")

    def delete(self) -> None:
        self.ns.ip("link", "del", "v0")

    def send(self, frames: list[bytes], gap: float = 0.0) -> None:
        self.sender.send("v1", frames, gap)

    def close(self) -> None:
        self.sender.close()
        for pid in run(["ip", "netns", "pids", self.ns.name]).split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", self.ns.name], check=False, capture_output=True)


@pytest.fixture(scope="module")
def socket_redis() -> Iterator[RedisServer]:
    require_root(LIVE_CAPTURE)
    for name in ("tcpdump", "tshark", "redis-server"):
        require_tool(name)
    server = RedisServer()
    yield server
    server.close()


@pytest.fixture
def rc(socket_redis: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(unix_socket_path=str(socket_redis.socket), decode_responses=True)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def link(socket_redis: RedisServer) -> Iterator[Link]:
    link = Link()
    yield link
    link.close()


Start = Callable[..., Daemon]


@pytest.fixture
def start(link: Link, socket_redis: RedisServer, tmp_path: Path) -> Iterator[Start]:
    """Start a sniffer on v0 (extra arguments appended); waits until it captures. Every one
    started is stopped at teardown."""
    started: list[Daemon] = []

    def start_sniffer(*args: str, wait: bool = True, prefix: tuple[str, ...] = (),
                      env: dict[str, str] | None = None) -> Daemon:
        log = tmp_path / f"sniff{len(started)}.log"
        daemon = sniff_daemon(link.ns, ["-i", "v0", "--redis-url", socket_redis.url, *args],
                              log, prefix=prefix, env=env)
        started.append(daemon)
        if wait:
            daemon.wait_output(r"capturing on v0")
        return daemon

    yield start_sniffer
    for daemon in started:
        daemon.stop(signal.SIGKILL)


def record(rc: redis.Redis, n: int) -> dict[str, str]:
    fields: dict[str, str] = rc.hgetall(client_ip(n))
    return fields


def wait_records(rc: redis.Redis, numbers: range, timeout: float = 20) -> None:
    wait_for(lambda: all(rc.exists(client_ip(n)) for n in numbers),
             f"records of clients {numbers.start}-{numbers.stop - 1}", timeout)


def metrics(link: Link) -> dict[str, float]:
    """The sniffer's metrics as {name{labels}: value}."""
    text = fetch(link.ns, f"http://127.0.0.1:{METRICS_PORT}/metrics")
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def processes(daemon: Daemon) -> dict[str, list[int]]:
    """The sniffer's children by command name (tcpdump, tshark)."""
    found: dict[str, list[int]] = {}
    for pid in children(daemon.proc.pid):
        name = Path(f"/proc/{pid}/comm").read_text().strip()
        found.setdefault(name, []).append(pid)
    return found


# ---- recording leases ------------------------------------------------------------------------

def test_leases_reach_redis_under_the_capture_clock(link: Link, rc: redis.Redis,
                                                     start: Start) -> None:
    sniffer = start("--allow-server", S1, "--metrics-port", str(METRICS_PORT))
    sent = time.time()
    link.send(request_ack(1, lease=600, hostname="alpha"))
    wait_records(rc, range(1, 2))
    assert record(rc, 1) == {"mac": client_mac(1), "hostname": "alpha"}
    detail = rc.hgetall(f"dhcp-hive-mind:lease:{{{client_ip(1)}}}")
    assert int(detail["expires"]) == int(detail["updated"]) + 600
    assert abs(int(detail["updated"]) - sent) <= 2  # the capture time, not a replay's
    assert abs(rc.ttl(client_ip(1)) - (int(detail["expires"]) - time.time())) <= 2
    assert "no --allow-server" not in sniffer.output()


def test_no_allow_server_is_a_warning_at_start(link: Link, rc: redis.Redis,
                                               start: Start) -> None:
    sniffer = start()
    assert re.search(r"WARNING no --allow-server given", sniffer.output())


def test_metrics_serve_the_counters(link: Link, rc: redis.Redis, start: Start) -> None:
    start("--allow-server", S1, "--metrics-port", str(METRICS_PORT))
    link.send([*exchanges(0, 3), frame(b"\x01" * 50, "0.0.0.0", "255.255.255.255", 68, 67)])
    wait_records(rc, range(0, 3))
    wait_for(lambda: metrics(link).get("dhcp_hive_mind_rx_packets_total") == 7,
             "the counters to be published")
    values = metrics(link)
    assert values["dhcp_hive_mind_written_total"] == 3
    assert values["dhcp_hive_mind_dropped_short_total"] == 1
    assert values["dhcp_hive_mind_rogue_reply_total"] == 0
    assert values['dhcp_hive_mind_capture_up{interface="v0"}'] == 1
    assert values["dhcp_hive_mind_active_leases"] == 3
    assert values["dhcp_hive_mind_capture_to_redis_seconds_count"] == 3
    assert values["dhcp_hive_mind_redis_write_seconds_count"] >= 1
    assert values["dhcp_hive_mind_queue_depth"] == 0
    assert values["dhcp_hive_mind_pending_writes"] == 0
    assert abs(values["dhcp_hive_mind_clock_skew_seconds"]) < 1  # one host, one clock


# ---- stopping --------------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_cleanly_after_writing_everything(link: Link, rc: redis.Redis,
                                                         start: Start, tmp_path: Path,
                                                         sig: signal.Signals) -> None:
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    sniffer = start("--allow-server", S1, env={"TMPDIR": str(private_tmp)})
    # tshark starts once tcpdump's first bytes (the capture header) reach the sniffer.
    wait_for(lambda: set(processes(sniffer)) == {"tcpdump", "tshark"}, "tcpdump and tshark")
    helpers = processes(sniffer)
    link.send(exchanges(0, 50))
    sniffer.proc.send_signal(sig)  # at once: the last packets are still in the kernel's hands
    assert sniffer.proc.wait(30) == 0
    assert all(rc.exists(client_ip(n)) for n in range(50))
    for pid in (pid for pids in helpers.values() for pid in pids):
        assert not Path(f"/proc/{pid}").exists()
    assert list(private_tmp.iterdir()) == []
    assert f"{signal.Signals(sig).name}: stopping" in sniffer.output()
    assert "stopped: 100 packets, 50 leases written" in sniffer.output()


# ---- supervision -----------------------------------------------------------------------------

def test_writes_wait_out_a_redis_outage(link: Link, tmp_path: Path) -> None:
    own = RedisServer()
    try:
        sniffer = sniff_daemon(link.ns, ["-i", "v0", "--redis-url", own.url,
                                         "--allow-server", S1], tmp_path / "log")
        sniffer.wait_output(r"capturing on v0")
        own.stop()
        link.send(exchanges(0, 3))
        sniffer.wait_output(r"WARNING Redis write failed: .*; keeping \d+ writes and retrying")
        own.start()
        sniffer.wait_output(r"INFO Redis writes resumed after \d+ s", timeout=40)
        client = redis.Redis(unix_socket_path=str(own.socket), decode_responses=True)
        assert all(client.exists(client_ip(n)) for n in range(3))
        client.close()
        assert sniffer.stop(signal.SIGTERM) == 0
    finally:
        own.close()


def test_killed_tshark_and_tcpdump_are_replaced(link: Link, rc: redis.Redis,
                                                start: Start) -> None:
    sniffer = start("--allow-server", S1)
    link.send(exchanges(0, 2))
    wait_records(rc, range(0, 2))
    (tshark,) = processes(sniffer)["tshark"]
    os.kill(tshark, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{tshark}").exists(), "tshark to die")
    link.send(exchanges(2, 2))
    wait_records(rc, range(2, 4))
    assert re.search(r"tshark for v0 exited \(tshark was killed by signal 9\)", sniffer.output())

    (tcpdump,) = processes(sniffer)["tcpdump"]
    os.kill(tcpdump, signal.SIGKILL)
    sniffer.wait_output(r"capture on v0 resumed")
    link.send(exchanges(4, 2))
    wait_records(rc, range(4, 6))
    assert re.search(r"capture on v0 stopped: tcpdump was killed by signal 9", sniffer.output())


def test_capture_resumes_when_the_interface_returns(link: Link, rc: redis.Redis,
                                                    start: Start) -> None:
    sniffer = start("--allow-server", S1)
    link.delete()
    sniffer.wait_output(r"capture on v0 stopped: The interface disappeared")
    time.sleep(2.5)  # a few failed retries while it is gone
    link.create()
    sniffer.wait_output(r"capture on v0 resumed", timeout=40)
    link.send(exchanges(0, 3))
    wait_records(rc, range(0, 3))
    output = sniffer.output()
    assert output.count("capture on v0 stopped") == 1  # logged once, not at every retry
    assert output.count("capture on v0 resumed") == 1


def test_scheduled_restarts_lose_and_repeat_nothing(link: Link, rc: redis.Redis,
                                                    start: Start) -> None:
    start("--allow-server", S1, "--restart-every", "1", "--metrics-port", str(METRICS_PORT))
    link.send(exchanges(0, 200), gap=0.01)  # about 4 s of traffic across several handovers
    wait_records(rc, range(0, 200))
    wait_for(lambda: metrics(link).get("dhcp_hive_mind_rx_packets_total") == 400,
             "all 400 packets counted")
    values = metrics(link)
    restarts = values['dhcp_hive_mind_capture_restarts_total{interface="v0",process="tcpdump",'
                      'reason="scheduled"}']
    assert restarts >= 2
    time.sleep(1.5)  # a later publication would show a packet delivered twice
    assert metrics(link)["dhcp_hive_mind_rx_packets_total"] == 400


def test_kernel_drops_are_counted_and_logged(link: Link, rc: redis.Redis, start: Start) -> None:
    sniffer = start("--allow-server", S1, "--buffer-size", "1", "--restart-every", "3",
                    "--metrics-port", str(METRICS_PORT))
    (tcpdump,) = processes(sniffer)["tcpdump"]
    os.kill(tcpdump, signal.SIGSTOP)  # the kernel buffer (1 MiB) fills up and overflows
    try:
        link.send(exchanges(0, 3000))
    finally:
        os.kill(tcpdump, signal.SIGCONT)
    label = 'dhcp_hive_mind_capture_dropped_packets_total{interface="v0",where="kernel"}'
    wait_for(lambda: metrics(link).get(label, 0) > 0, "drops reported", timeout=30)
    assert re.search(r"WARNING capture on v0 dropped \d+ packets \(kernel \d+", sniffer.output())


# ---- with the live view ----------------------------------------------------------------------

@pytest.mark.parametrize("how", ["q", "SIGTERM"])
def test_the_view_runs_beside_the_sniffer(link: Link, rc: redis.Redis,
                                          socket_redis: RedisServer, tmp_path: Path,
                                          how: str) -> None:
    require_tool("tmux")
    from test_view_tmux import Terminal

    terminal = Terminal(tmp_path)
    try:
        errors = tmp_path / "stderr"
        command = shlex.join(link.ns.cmd(
            sys.executable, "-m", "sniffer", "sniff", "-i", "v0", "--redis-url",
            socket_redis.url, "--allow-server", S1, "--view"))
        # As Terminal.run does it, with the terminal settings noted for restored().
        terminal.type(f"stty -g > {tmp_path}/stty-before; {command} 2> {errors}; "
                      f"echo exit=$?; stty -g > {tmp_path}/stty-after")
        terminal.keys("Enter")
        terminal.wait_for("active leases 0")
        link.send(request_ack(0, hostname="viewed"))
        screen = terminal.wait_for("active leases 1")
        assert re.search(rf"{client_ip(0)} +{client_mac(0)} +viewed ", screen)
        if how == "q":
            terminal.keys("q")
        else:
            os.kill(terminal.command_pid(), signal.SIGTERM)
        terminal.wait_for("exit=0")
        assert terminal.restored()
        # Log lines held back while the view had the screen come out afterwards.
        assert re.search(r"INFO capturing on v0\n.*INFO stopped: 2 packets, 1 leases written",
                         errors.read_text(), re.S)
    finally:
        terminal.close()


# ---- start-up problems -----------------------------------------------------------------------

def test_an_unknown_interface_fails_at_start(link: Link, socket_redis: RedisServer,
                                             tmp_path: Path) -> None:
    daemon = sniff_daemon(link.ns, ["-i", "nosuch0", "--redis-url", socket_redis.url],
                          tmp_path / "log")
    assert daemon.proc.wait(30) == 1
    lines = daemon.output().strip().splitlines()
    assert lines[-1] == "dhcp-hive-mind: error: cannot capture on nosuch0: No such device exists"
    assert not children(daemon.proc.pid)


def test_unreachable_redis_fails_at_start(link: Link, tmp_path: Path) -> None:
    daemon = sniff_daemon(link.ns, ["-i", "v0", "--redis-url", f"unix://{tmp_path}/none.sock"],
                          tmp_path / "log")
    assert daemon.proc.wait(30) == 1
    assert re.fullmatch(r"dhcp-hive-mind: error: Redis at unix://\S+ unreachable: .*\n",
                        daemon.output())


def test_a_busy_metrics_port_fails_at_start(link: Link, rc: redis.Redis, start: Start,
                                            socket_redis: RedisServer, tmp_path: Path) -> None:
    start("--metrics-port", str(METRICS_PORT))
    second = sniff_daemon(link.ns, ["-i", "v0", "--redis-url", socket_redis.url,
                                    "--metrics-port", str(METRICS_PORT), "--writer-id", "twin"],
                          tmp_path / "log2")
    assert second.proc.wait(30) == 1
    assert f"error: metrics on 127.0.0.1:{METRICS_PORT}: Address already in use" in \
        second.output()


def test_a_second_sniffer_with_a_running_one_s_id_refuses_to_start(
        link: Link, rc: redis.Redis, start: Start, socket_redis: RedisServer,
        tmp_path: Path) -> None:
    """Two sniffers on one host and interface: the same default id (R-HV-1, case H13)."""
    first = start("--allow-server", S1)
    writer_id = f"{socket.gethostname()}:v0"
    assert rc.exists(f"dhcp-hive-mind:writer:{writer_id}")
    second = sniff_daemon(link.ns, ["-i", "v0", "--redis-url", socket_redis.url],
                          tmp_path / "log2")
    assert second.proc.wait(30) == 1
    assert re.fullmatch(rf"dhcp-hive-mind: error: writer id '{re.escape(writer_id)}' is in use "
                        r"by a running writer \(pid \d+ on .*\n", second.output())
    assert first.stop(signal.SIGTERM) == 0
    assert not rc.exists(f"dhcp-hive-mind:writer:{writer_id}")  # released at a clean stop


# ---- unprivileged ----------------------------------------------------------------------------

class User:
    """A throwaway system user, and the command prefixes that run a program as it."""

    def __init__(self, name: str, reach: list[str]) -> None:
        entry = pwd.getpwnam(name)
        self.name, self.uid = name, entry.pw_uid
        self._setpriv = [*reach, require_tool("setpriv"), f"--reuid={entry.pw_uid}",
                         f"--regid={entry.pw_gid}", "--clear-groups"]

    def plain(self) -> list[str]:
        return [*self._setpriv, "--inh-caps=-all"]

    def ambient(self) -> list[str]:
        """With CAP_NET_RAW and CAP_NET_ADMIN as ambient capabilities, as the systemd unit's
        AmbientCapabilities gives them."""
        caps = "-all,+net_raw,+net_admin"
        return [*self._setpriv, f"--inh-caps={caps}", f"--ambient-caps={caps}"]


@pytest.fixture
def user(tmp_path: Path) -> Iterator[User]:
    """A throwaway user; tcpdump has no file capabilities meanwhile. The user is removed and
    tcpdump's capabilities are restored afterwards."""
    for name in ("setcap", "getcap", "setpriv", "useradd", "unshare"):
        require_tool(name)
    closed = closed_to_others(REPO / "sniffer")
    if closed:
        cannot_run(f"this test runs the sniffer from this checkout as a throwaway unprivileged "
                   f"user, who cannot read it: {', '.join(map(str, closed))} "
                   f"{'is' if len(closed) == 1 else 'are'} closed to other users (no o+x), so "
                   f"it would die with 'No module named sniffer'. Clone the repository under "
                   f"a directory other users can enter (not a private home directory).")
    name = f"hive{secrets.token_hex(3)}"
    run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name])
    tcpdump = require_tool("tcpdump")
    original = run([require_tool("getcap"), tcpdump]).split(maxsplit=1)
    try:
        subprocess.run([require_tool("setcap"), "-r", tcpdump], capture_output=True, check=False)
        user = User(name, reach_interpreter(tmp_path))
        check_user_imports_sniffer(user)
        yield user
    finally:
        if len(original) == 2:
            run([require_tool("setcap"), original[1].strip(), tcpdump])
        else:
            subprocess.run([require_tool("setcap"), "-r", tcpdump], capture_output=True,
                           check=False)
        subprocess.run(["userdel", name], capture_output=True, check=False)


def closed_to_others(path: Path) -> list[Path]:
    """The directories from / down to `path` that other users cannot enter (no o+x)."""
    return [d for d in (*reversed(path.parents), path)
            if not os.stat(d).st_mode & stat.S_IXOTH]


def check_user_imports_sniffer(user: User) -> None:
    """`user` imports the sniffer from this checkout, as the tests will run it; what else may stop
    it (access control lists, files of mode 0600) is said here, not as a sniffer dying later."""
    probe = subprocess.run([*user.plain(), sys.executable, "-c", "import sniffer.cli"], cwd="/",
                           env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                           text=True, check=False)
    if probe.returncode != 0:
        said = (probe.stderr.strip().splitlines() or ["no message"])[-1]
        cannot_run(f"the throwaway user {user.name} cannot import the sniffer from this "
                   f"checkout ({REPO}): {said}. Other users must be able to read the checkout.")


def reach_interpreter(tmp_path: Path) -> list[str]:
    """A prefix that lets other users run this Python when it sits in a private directory (such
    as /root/.pyenv): in a mount namespace of its own, the private directory is covered by an
    open one holding only the interpreter's subtree. Nothing changes outside that namespace."""
    real = Path(os.path.realpath(sys.executable))
    closed = [d for d in real.parents if not os.stat(d).st_mode & 0o001]
    if not closed:
        return []
    if len(closed) > 1 or closed[0] in REPO.parents:
        cannot_run(f"other users cannot run this Python ({real}): it lies under "
                   f"{', '.join(map(str, closed))}, closed to other users")
    private = closed[0]
    child = real.relative_to(private).parts[0]
    cover = tmp_path / "cover"
    (cover / child).mkdir(parents=True)
    cover.chmod(0o755)
    script = 'mount --bind "$1" "$2/$3" && mount --rbind "$2" "$4" && shift 4 && exec "$@"'
    return [require_tool("unshare"), "--mount", "--propagation", "private", "sh", "-c", script,
            "sh", str(private / child), str(cover), child, str(private)]


def sniff_as(user: User, prefix: list[str], link: Link, url: str, log: Path,
             rc: redis.Redis, first: int) -> None:
    """The sniffer, run with `prefix`, captures as `user` and records leases."""
    argv = ["-i", "v0", "--redis-url", url, "--allow-server", S1]
    daemon = sniff_daemon(link.ns, argv, log, prefix=prefix)
    try:
        daemon.wait_output(r"capturing on v0")
        assert Path(f"/proc/{daemon.proc.pid}").stat().st_uid == user.uid
        link.send(exchanges(first, 2))
        wait_records(rc, range(first, first + 2))
        assert daemon.stop(signal.SIGTERM) == 0
    finally:
        daemon.stop(signal.SIGKILL)


def test_an_unprivileged_user_needs_tcpdump_capabilities(
        link: Link, rc: redis.Redis, socket_redis: RedisServer, tmp_path: Path,
        user: User) -> None:
    argv = ["-i", "v0", "--redis-url", socket_redis.url, "--allow-server", S1]
    denied = sniff_daemon(link.ns, argv, tmp_path / "denied.log", prefix=user.plain())
    assert denied.proc.wait(30) == 1
    assert re.search(r"error: tcpdump may not capture on v0: You don't have permission .*"
                     r"setcap cap_net_raw,cap_net_admin\+eip", denied.output())

    run([require_tool("setcap"), SETCAP, require_tool("tcpdump")])
    sniff_as(user, user.plain(), link, socket_redis.url, tmp_path / "allowed.log", rc, 0)


def test_ambient_capabilities_are_enough(link: Link, rc: redis.Redis,
                                         socket_redis: RedisServer, tmp_path: Path,
                                         user: User) -> None:
    """What the systemd unit does: no file capabilities on tcpdump, ambient ones instead."""
    sniff_as(user, user.ambient(), link, socket_redis.url, tmp_path / "ambient.log", rc, 10)


def test_any_captures_every_interface(link: Link, rc: redis.Redis,
                                      socket_redis: RedisServer, tmp_path: Path) -> None:
    daemon = sniff_daemon(link.ns, ["-i", "any", "--redis-url", socket_redis.url,
                                    "--allow-server", S1], tmp_path / "any.log")
    try:
        daemon.wait_output(r"capturing on any")
        link.send(exchanges(0, 3))
        wait_records(rc, range(0, 3))
        assert daemon.stop(signal.SIGTERM) == 0
    finally:
        daemon.stop(signal.SIGKILL)
    # Each frame is seen leaving v1 and arriving at v0: the copies count once.
    assert "stopped: 12 packets, 3 leases written" in daemon.output()


# ---- the pcap stream and tcpdump's last words (no root needed) ---------------------------------

def test_records_are_cut_whole_however_the_stream_arrives() -> None:
    stream = (REPO / "pcaps" / "plain_dora.pcap").read_bytes()
    whole = RecordSplitter()
    records = whole.feed(stream)
    assert whole.header == stream[:PCAP_HEADER] and len(records) == 4
    assert whole.header + b"".join(records) == stream
    for size in (1, 7, 100, 4096):
        splitter = RecordSplitter()
        pieces = [r for i in range(0, len(stream), size) for r in splitter.feed(stream[i:i + size])]
        assert (splitter.header, pieces) == (whole.header, records)


def test_big_endian_pcap_is_cut_too() -> None:
    header = struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1)  # nanosecond stamps
    record = struct.pack(">IIII", 1, 2, 5, 5) + b"hello"
    splitter = RecordSplitter()
    assert splitter.feed(header + record + record[:10]) == [record]
    assert splitter.feed(record[10:]) == [record]


def test_a_handover_drops_the_copies_of_what_the_old_run_delivered() -> None:
    """Both tcpdumps of a handover see each packet, their stamps microseconds apart at most."""
    header = (REPO / "pcaps" / "plain_dora.pcap").read_bytes()[:PCAP_HEADER]

    def record(seconds: int, micros: int, data: bytes) -> bytes:
        return struct.pack("<IIII", seconds, micros, len(data), len(data)) + data

    echoes = Echoes(header)
    echoes.add([record(100, 10, b"one"), record(100, 20, b"two"), record(100, 30, b"two")])
    assert echoes.drop([record(100, 13, b"one"), record(101, 20, b"two"), record(100, 21, b"two"),
                        record(100, 31, b"two"), record(100, 32, b"two")]) == [
        record(101, 20, b"two"), record(100, 32, b"two")]  # a second later; a third copy
    assert not echoes


def test_the_live_tshark_makes_datagrams_only_of_ipv4_udp_on_the_ports() -> None:
    """Live tshark runs without a display filter (tcpdump's kernel filter has narrowed the
    capture to UDP on the ports): whatever else reaches it still never becomes a datagram."""
    require_tool("tshark")
    payload = Raw(b"\x02" * 240)
    frames = [
        Ether() / IP(src="192.0.2.1", dst="192.0.2.9") / UDP(sport=67, dport=67) / payload,
        Ether() / IPv6() / UDP(sport=67, dport=68) / payload,
        Ether() / IP() / UDP(sport=53, dport=53) / payload,
        Ether() / IP() / ICMP(type=3, code=3) / IP() / UDP(sport=68, dport=67) / payload,
        Ether() / ARP(),
        Ether() / IP(src="192.0.2.2", dst="192.0.2.9") / UDP(sport=68, dport=67) / payload,
    ]
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    records = [struct.pack("<IIII", 100 + i, 0, len(raw(f)), len(raw(f))) + raw(f)
               for i, f in enumerate(frames)]
    got: list[Datagram] = []
    decoder = LiveDecoder((67, 68), "test", got.extend)
    decoder.write([header, *records])
    decoder.finish()
    assert decoder.wait(30) and decoder.failure is None
    assert [(d.src, d.sport, d.dport, d.payload) for d in got] == [
        ("192.0.2.1", 67, 67, payload.load), ("192.0.2.2", 68, 67, payload.load)]


def test_a_corrupt_stream_is_a_capture_error() -> None:
    with pytest.raises(CaptureError, match="something other than pcap"):
        RecordSplitter().feed((REPO / "pcaps" / "relayed_dora_both_legs.pcapng").read_bytes())
    header = (REPO / "pcaps" / "plain_dora.pcap").read_bytes()[:PCAP_HEADER]
    with pytest.raises(CaptureError, match="corrupt pcap record"):
        RecordSplitter().feed(header + struct.pack("<IIII", 1, 2, 1 << 30, 1 << 30))


def test_tcpdump_statistics_and_errors_are_read() -> None:
    end = capture_end(0, [
        "tcpdump: listening on v0, link-type EN10MB (Ethernet), snapshot length 262144 bytes",
        "10 packets captured", "17 packets received by filter", "5 packets dropped by kernel",
        "2 packets dropped by interface"], "v0")
    assert (end.message, end.received, end.dropped) == ("", 17, 7)
    assert end.drops == {"kernel": 5, "interface": 2}
    denied = capture_end(1, [
        "tcpdump: v0: You don't have permission to perform this capture on that device",
        "(socket: Operation not permitted)"], "v0")
    assert denied.permission
    assert denied.message == ("You don't have permission to perform this capture on that device "
                              "(socket: Operation not permitted)")
    gone = capture_end(1, [
        "tcpdump: listening on v0, link-type EN10MB (Ethernet), snapshot length 262144 bytes",
        "tcpdump: pcap_loop: The interface disappeared", "0 packets captured",
        "3 packets received by filter", "0 packets dropped by kernel"], "v0")
    assert (gone.message, gone.permission, gone.dropped) == ("The interface disappeared", False, 0)
    unknown = capture_end(1, ["tcpdump: nosuch0: No such device exists",
                              "(No such device exists)"], "nosuch0")
    assert unknown.message == "No such device exists"
    killed = capture_end(-9, ["tcpdump: listening on v0, link-type EN10MB (Ethernet), ..."], "v0")
    assert (killed.message, killed.permission) == ("tcpdump was killed by signal 9", False)
