"""`view` and `leases --watch` run for real: in a tmux terminal, against a real Redis, with
leases replayed from a capture and hostile ones written by another program."""

from __future__ import annotations

import math
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from conftest import REPO, free_port, require_tool
from helpers import build_lease, run_cli
from specharness import (
    ACK,
    DISCOVER,
    OFFER,
    R1,
    REQUEST,
    S1,
    Capture,
    client_msg,
    o_82,
    o_host,
    o_lease,
    o_req,
    o_server,
    server_msg,
)

from sniffer.commands import Grant, Revoke
from sniffer.keys import Keys
from sniffer.lease import INFINITE
from sniffer.reader import BATCH
from sniffer.store import LeaseStore

NS = "dhcp-hive-mind"
HOSTILE = "\x1b[31mRED[bold]markup[/bold]\r\nX"
HOSTILE_SHOWN = "\\x1b[31mRED[bold]markup[/bold]\\x0d\\x0aX"
CLIENTS = [("alpha", 3600), ("bravo", 600), ("charlie", 90)]


class Terminal:
    """A tmux server of our own (its own socket) with one 200x40 pane running a shell."""

    def __init__(self, workdir: Path) -> None:
        self.binary = require_tool("tmux")
        self.socket = f"hive-view-{uuid.uuid4().hex[:12]}"
        self.workdir = workdir
        self.tmux("new-session", "-d", "-s", "main", "-x", "200", "-y", "40", "-c", str(REPO),
                  "env PS1='$ ' sh")

    def tmux(self, *args: str) -> str:
        # A terminal library loaded in this process may have put COLUMNS=80 and LINES=24 into
        # its C environment, which children would inherit: they'd hide the pane's real size.
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        return subprocess.run([self.binary, "-L", self.socket, *args], check=True, env=env,
                              capture_output=True, text=True, timeout=30).stdout

    def run(self, *args: str) -> None:
        """Run the command in the pane's shell, noting the terminal settings before and after
        and the exit status."""
        command = shlex.join([sys.executable, "-m", "sniffer", *args])
        before, after = self.workdir / "stty-before", self.workdir / "stty-after"
        self.tmux("send-keys", "-t", "main", "-l",
                  f"stty -g > {before}; PYTHONPATH={shlex.quote(str(REPO))} {command}; "
                  f"echo exit=$?; stty -g > {after}")
        self.tmux("send-keys", "-t", "main", "Enter")

    def screen(self, escapes: bool = False) -> str:
        return self.tmux("capture-pane", "-p", *(["-e"] if escapes else []), "-t", "main")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "main", *keys)

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", "main", "-l", text)

    def wait(self, check: Callable[[str], bool], timeout: float = 30) -> str:
        """The screen once `check` accepts it, and it is the same twice in a row (a capture
        may catch a frame half drawn)."""
        deadline = time.monotonic() + timeout
        previous = None
        while True:
            text = self.screen()
            if check(text) and text == previous:
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"the screen never showed what was expected:\n{text}")
            previous = text
            time.sleep(0.05)

    def wait_for(self, text: str, timeout: float = 30) -> str:
        return self.wait(lambda screen: text in screen, timeout)

    def restored(self) -> bool:
        before, after = self.workdir / "stty-before", self.workdir / "stty-after"
        return before.read_text() == after.read_text() and before.read_text().strip() != ""

    def command_pid(self) -> int:
        """The process the pane's shell is running."""
        shell = int(self.tmux("display", "-p", "-t", "main", "#{pane_pid}"))
        children = Path(f"/proc/{shell}/task/{shell}/children").read_text().split()
        assert len(children) == 1, children
        return int(children[0])

    def close(self) -> None:
        subprocess.run([self.binary, "-L", self.socket, "kill-server"], capture_output=True,
                       timeout=30, check=False)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    term = Terminal(tmp_path)
    yield term
    term.close()


def relayed_leases(path: Path) -> Path:
    """Three DORA exchanges relayed by R1 (circuit-ids port1..3), seen on the server side."""
    capture = Capture()
    relayed = {"gi": R1, "hops": 1}
    for n, (name, lease_time) in enumerate(CLIENTS):
        chaddr, xid, ip, t = bytes([2, 0, 0, 0, 0x20, n]), 0x5100 + n, f"198.51.100.{10 + n}", n
        agent = o_82(f"port{n + 1}".encode(), b"sw1")
        capture.add(t, client_msg(DISCOVER, xid, chaddr, o_host(name), agent, **relayed),
                    src=R1, dst=S1, sport=67)
        capture.add(t + 0.01, server_msg(OFFER, xid, chaddr, o_lease(lease_time), agent, yi=ip,
                                         gi=R1), src=S1, dst=R1, dport=67)
        capture.add(t + 0.1, client_msg(REQUEST, xid, chaddr, o_req(ip), o_server(S1),
                                        o_host(name), agent, **relayed), src=R1, dst=S1, sport=67)
        capture.add(t + 0.11, server_msg(ACK, xid, chaddr, o_lease(lease_time), agent, yi=ip,
                                         gi=R1), src=S1, dst=R1, dport=67)
    return capture.write(path)


def replay(path: Path, redis_url: str) -> None:
    require_tool("tshark")
    result = run_cli("replay", str(path), "--redis-url", redis_url, "--allow-server", S1)
    assert result.returncode == 0, result.stderr
    assert "3 leases written" in result.stdout


def write_hostile(rclient: redis.Redis) -> None:
    """What another program could put in the same Redis: a seed hash with escape sequences
    (one sets the terminal title), a detail hash, an event and a writer name, all hostile."""
    rclient.hset("198.51.100.200", mapping={"mac": "\x1b]0;pwned\x07", "hostname": HOSTILE})
    rclient.expire("198.51.100.200", 900)
    now = math.floor(time.time())
    detail = {"ip": "198.51.100.201", "mac": "[red]02:00[/red]", "htype": "1",
              "hostname": HOSTILE, "expires": str(now + 900), "lease_time": "900",
              "server": "\x1b[2J", "giaddr": "\x1b[5m", "circuit_id": "1b5b33316d",
              "xid": "00000001", "updated": str(now), "kind": "dhcp"}
    rclient.hset(f"{NS}:lease:{{198.51.100.201}}", mapping=detail)
    rclient.expire(f"{NS}:lease:{{198.51.100.201}}", 900)
    rclient.zadd(f"{NS}:expiry", {"198.51.100.201": now + 900})
    rclient.xadd(f"{NS}:events", {**detail, "event": "granted", "writer": "\x1b[5mblink"})
    rclient.hset(f"{NS}:writers", "\x1b[5mblink", str(now))


def lease_column(screen: str, column: int) -> list[str]:
    table = screen.partition("─ recent changes")[0]
    return [line.split()[column] for line in table.splitlines() if line[:1].isdigit()]


def test_view_in_a_terminal(terminal: Terminal, redis_url: str, rclient: redis.Redis,
                            tmp_path: Path) -> None:
    replay(relayed_leases(tmp_path / "relayed.pcap"), redis_url)
    write_hostile(rclient)
    terminal.run("view", "--redis-url", redis_url)
    screen = terminal.wait_for("active leases 5")
    # The header counts live writers (heartbeats); these two wrote and are gone.
    screen = terminal.wait(lambda s: "writers 0:" in s and "\\x1b[5mblink gone" in s)

    # Every hostile string shows escaped, nothing from Redis reached the terminal as control.
    assert HOSTILE_SHOWN in screen
    assert "\\x1b]0;pwned\\x07" in screen and "[red]02:00[/red]" in screen
    assert "\\x1b[2J" in screen and "\\x1b[5m" in screen and "\\x1b[5mblink" in screen
    assert "1b5b33316d" in screen  # a circuit-id that would decode to ESC stays hex
    assert "pwned" not in terminal.tmux("display", "-p", "-t", "main", "#{pane_title}")
    raw = terminal.screen(escapes=True)
    assert "\x1b[31mRED" not in raw and "\x1b[5mblink" not in raw

    # The replayed leases with their relay, circuit-id, server and last change.
    lines = {line.split()[0]: line for line in screen.splitlines() if "198.51.100." in line[:15]}
    alpha = lines["198.51.100.10"].split()
    assert alpha[1:3] == ["02:00:00:00:20:00", "alpha"]
    assert alpha[4:8] == [R1, "port1", S1, "granted"]
    assert lease_column(screen, 0) == ["198.51.100.10", "198.51.100.11", "198.51.100.12",
                                       "198.51.100.200", "198.51.100.201"]

    terminal.keys("s")  # sort by time left: charlie's 90 s lease first
    screen = terminal.wait_for("sorted by time left")
    assert lease_column(screen, 2) == ["charlie", "bravo", HOSTILE_SHOWN, HOSTILE_SHOWN, "alpha"]
    terminal.keys("s", "s")
    terminal.wait_for("sorted by ip")

    terminal.keys("/")
    terminal.type("BRA")
    screen = terminal.wait_for("filter BRA: 1 of 5")
    assert lease_column(screen, 2) == ["bravo"]
    assert "filter: BRA" in screen  # the prompt while typing
    terminal.keys("Escape")
    screen = terminal.wait(lambda s: "filter" not in s.splitlines()[0])
    assert len(lease_column(screen, 0)) == 5
    terminal.type(":20:02")  # typing starts a filter too: a MAC this time
    screen = terminal.wait_for("filter :20:02: 1 of 5")
    assert lease_column(screen, 2) == ["charlie"]
    terminal.keys("Enter", "Escape")
    terminal.wait(lambda s: "filter" not in s.splitlines()[0])

    # Another sniffer writes: a new lease appears highlighted, a release takes one away.
    client = redis.Redis.from_url(redis_url)
    other = LeaseStore(client, Keys(), capture_clock=False, writer="relay-b")
    now = math.floor(time.time())
    newcomer = build_lease("198.51.100.50", lease_time=1800, updated=now, mac="02:00:00:00:20:50",
                           hostname="newcomer", hostname_src="req12", giaddr=R1, xid=0x99)
    other.apply([Grant(newcomer, "granted")], time.time())
    screen = terminal.wait(lambda s: "newcomer" in s and "relay-b gone" in s)  # every 2 s
    assert "active leases 6" in screen
    # The fresh change stands out (bold, reverse video); a lease with no news does not.
    raw = terminal.screen(escapes=True).splitlines()
    fresh, plain = (next(line.partition(ip)[0] for line in raw if f"{ip} " in line)
                    for ip in ("198.51.100.50", "198.51.100.200"))
    assert "1;7m" in fresh and "7m" not in plain
    alpha_lease = other.records(["198.51.100.10"])["198.51.100.10"][0]
    other.apply([Revoke(alpha_lease, "released", time.time())], time.time())
    screen = terminal.wait(lambda s: "198.51.100.10 " not in s.partition("─ recent")[0])
    recent = screen.partition("─ recent changes")[2]
    assert "released" in recent.splitlines()[1] and "alpha" in recent.splitlines()[1]
    assert "released 1" in screen
    client.close()

    terminal.keys("q")
    screen = terminal.wait_for("exit=0")
    assert "active leases" not in screen  # the alternate screen is gone
    assert terminal.restored()


class HoldingProxy:
    """A TCP proxy in front of Redis that holds back every request naming `held` until
    `release()`: a reader of records in batches stops at the batch that holds that key."""

    def __init__(self, redis_url: str, held: bytes) -> None:
        target = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs
        self.target = (target["host"], target["port"])
        self.held = held
        self.released = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"
        threading.Thread(target=self._accept, daemon=True).start()

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.release()
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            server = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False),
                             daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, requests: bool) -> None:
        tail = b""
        with source, sink:
            while data := _receive(source):
                if requests and self.held in tail + data:
                    self.released.wait()
                tail = data[-len(self.held):]
                sink.sendall(data)


def _receive(sock: socket.socket) -> bytes:
    try:
        return sock.recv(1 << 16)
    except OSError:
        return b""


def test_the_first_screen_shows_while_the_rest_loads(terminal: Terminal,
                                                     redis_url: str) -> None:
    """The view loads its leases in address order, a batch at a time behind the screen: with
    the second batch held back on the way, the first is on screen and the rest still loading."""
    count = 2 * BATCH + 500
    addresses = [f"10.20.{n // 250}.{n % 250 + 1}" for n in range(count)]
    writer = LeaseStore(redis.Redis.from_url(redis_url), Keys(), capture_clock=False,
                        writer="w")
    for start in range(0, count, 1000):
        writer.apply([Grant(build_lease(ip, mac=f"02:00:00:20:{n // 256:02x}:{n % 256:02x}",
                                        hostname=f"host-{n}"), "granted")
                      for n, ip in enumerate(addresses[start:start + 1000], start)], time.time())
    writer.close()
    proxy = HoldingProxy(redis_url, f"{NS}:lease:{{{addresses[BATCH]}}}\r\n".encode())
    try:
        terminal.run("view", "--redis-url", proxy.url)
        screen = terminal.wait_for(f"active leases {BATCH:,} ")
        assert f"loading leases: {count - BATCH:,} to go" in screen
        assert lease_column(screen, 0)[:3] == addresses[:3]  # the first screen, in order
        proxy.release()
        screen = terminal.wait_for(f"active leases {count:,} ")
        assert "loading" not in screen
        terminal.keys("End")
        screen = terminal.wait_for(addresses[-1])
        terminal.keys("q")
        terminal.wait_for("exit=0")
    finally:
        proxy.close()


def test_sigterm_restores_the_terminal(terminal: Terminal, redis_url: str) -> None:
    terminal.run("view", "--redis-url", redis_url)
    terminal.wait_for("active leases 0")
    os.kill(terminal.command_pid(), signal.SIGTERM)
    screen = terminal.wait_for("exit=143")
    assert "active leases" not in screen
    assert terminal.restored()


def test_leases_watch_redraws_until_ctrl_c(terminal: Terminal, redis_url: str,
                                           tmp_path: Path) -> None:
    terminal.run("leases", "--watch", "--interval", "0.3", "--redis-url", redis_url)
    terminal.wait_for("0 leases at")
    replay(relayed_leases(tmp_path / "relayed.pcap"), redis_url)
    screen = terminal.wait_for("3 leases at")
    assert "alpha" in screen and "charlie" in screen
    terminal.keys("C-c")
    terminal.wait_for("exit=0")
    assert terminal.restored()


def test_a_redis_outage_is_shown_and_survived(terminal: Terminal, tmp_path: Path) -> None:
    """A Redis of its own, stopped and started again under the running view."""
    binary, port = require_tool("redis-server"), free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", str(tmp_path)]
    url = f"redis://127.0.0.1:{port}/0"

    def start() -> subprocess.Popen[bytes]:
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        for _ in range(100):
            try:
                redis.Redis.from_url(url).ping()
                return server
            except redis.ConnectionError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    server = start()
    try:
        terminal.run("view", "--redis-url", url)
        terminal.wait_for("active leases 0")
        server.terminate()
        server.wait(timeout=10)
        screen = terminal.wait_for("retrying")
        assert "Connection refused" in screen.splitlines()[0]
        server = start()
        LeaseStore(redis.Redis.from_url(url), Keys(), capture_clock=False, writer="w").apply(
            [Grant(build_lease("192.0.2.9", mac="02:00:00:00:00:09", hostname="after",
                               hostname_src="req12", expires=None, lease_time=INFINITE, xid=1),
                   "granted")], time.time())
        screen = terminal.wait(lambda s: "after" in s and "retrying" not in s)
        assert "active leases 1" in screen
        terminal.keys("q")
        terminal.wait_for("exit=0")
    finally:
        server.terminate()
        server.wait(timeout=10)
