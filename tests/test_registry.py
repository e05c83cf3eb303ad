"""Writers in the hive (spec R-HV-1, R-HV-9), against a real Redis: ids, heartbeats (a live id
refused to another process, a dead one's free once its heartbeat expires), the clock skew, and
the writer each lease record names."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis
from conftest import REPO, require_tool
from helpers import build_lease, run_cli
from test_cli import three_leases

from sniffer.commands import Grant, GrantEvent
from sniffer.keys import Keys
from sniffer.registry import (
    Heartbeat,
    WriterError,
    WriterRegistry,
    check_writer_id,
    replay_writer_id,
    sniff_writer_id,
)
from sniffer.store import LeaseStore

S1 = "192.0.2.1"
HOST = socket.gethostname()


@pytest.fixture
def registry(redis_url: str) -> WriterRegistry:
    return WriterRegistry(redis.Redis.from_url(redis_url), Keys())


def test_default_ids_name_the_host_and_the_interfaces_or_files() -> None:
    assert sniff_writer_id(["eth0", "eth1"]) == f"{HOST}:eth0,eth1"
    two = replay_writer_id([Path("/a/x.pcap"), Path("y.pcapng")])
    assert two == f"{HOST}:replay:x.pcap,y.pcapng"
    many = replay_writer_id([Path(f"/c/{n}.pcap") for n in range(10)])
    assert re.fullmatch(rf"{re.escape(HOST)}:replay:0\.pcap,\+9 more \([0-9a-f]{{8}}\)", many)
    assert many != replay_writer_id([Path(f"/d/{n}.pcap") for n in range(10)])


@pytest.mark.parametrize("bad", ["", " a", "a\x1b[5m", "x" * 201])
def test_a_writer_id_is_printable_and_bounded(bad: str) -> None:
    with pytest.raises(WriterError, match="must be 1 to 200 printable characters"):
        check_writer_id(bad)


def test_a_live_id_is_refused_and_free_again_after_a_clean_stop(registry: WriterRegistry,
                                                                rclient: redis.Redis) -> None:
    first = Heartbeat(registry, "relay-a", every=0.2)
    first.start()
    try:
        assert json.loads(rclient.get("dhcp-hive-mind:writer:relay-a") or "")["pid"] > 0
        assert 0 < rclient.ttl("dhcp-hive-mind:writer:relay-a") <= 15
        with pytest.raises(WriterError, match=r"writer id 'relay-a' is in use by a running "
                           rf"writer \(pid \d+ on {re.escape(HOST)}, since "):
            Heartbeat(registry, "relay-a").start()
        assert [w.writer_id for w in registry.live()] == ["relay-a"]
    finally:
        first.stop()
    assert not rclient.exists("dhcp-hive-mind:writer:relay-a")
    assert registry.live() == []
    assert "relay-a" in rclient.hgetall("dhcp-hive-mind:writers")  # known, no longer live
    again = Heartbeat(registry, "relay-a")
    again.start()
    again.stop()


def test_the_id_of_a_killed_writer_is_free_once_its_heartbeat_expires(
        registry: WriterRegistry, redis_url: str, rclient: redis.Redis) -> None:
    code = textwrap.dedent(f"""
        import redis, time
        from sniffer.keys import Keys
        from sniffer.registry import Heartbeat, WriterRegistry
        registry = WriterRegistry(redis.Redis.from_url({redis_url!r}), Keys())
        Heartbeat(registry, "relay-b", ttl=1, every=0.2).start()
        print("ready", flush=True)
        time.sleep(60)
        """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        time.sleep(1.5)  # longer than the TTL: only the refreshes keep it alive
        with pytest.raises(WriterError, match="'relay-b' is in use"):
            Heartbeat(registry, "relay-b").start()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 3
    while rclient.exists("dhcp-hive-mind:writer:relay-b") and time.monotonic() < deadline:
        time.sleep(0.05)
    heir = Heartbeat(registry, "relay-b")
    heir.start()
    heir.stop()


@pytest.mark.parametrize(("offset", "words"), [(5.0, "ahead of"), (-3.0, "behind")])
def test_a_clock_off_redis_s_is_measured_and_warned_about(registry: WriterRegistry,
                                                          offset: float, words: str) -> None:
    warnings: list[str] = []
    heartbeat = Heartbeat(registry, "skewed", clock=lambda: time.time() + offset,
                          warn=warnings.append)
    heartbeat.start()
    heartbeat.stop()
    assert abs(heartbeat.skew - offset) < 1  # off by half a round trip at most: a busy host
    assert len(warnings) == 1
    assert re.match(rf"this host's clock is {abs(heartbeat.skew):.3f} s {words} Redis's "
                    r"\(more than the 1 s allowed\)", warnings[0])


def test_a_clock_within_the_allowed_skew_is_quiet(registry: WriterRegistry) -> None:
    warnings: list[str] = []
    heartbeat = Heartbeat(registry, "on-time", clock=lambda: time.time() + 0.5, allowed=2.0,
                          warn=warnings.append)
    heartbeat.start()
    heartbeat.stop()
    assert abs(heartbeat.skew - 0.5) < 1
    assert warnings == []


def test_each_record_names_the_writer_that_stored_it(redis_url: str,
                                                     rclient: redis.Redis) -> None:
    store = LeaseStore(redis.Redis.from_url(redis_url), Keys(), capture_clock=False,
                       writer="relay-c")
    store.apply([Grant(build_lease("192.0.2.50"), GrantEvent.GRANTED)], time.time())
    assert rclient.hget(Keys().lease("192.0.2.50"), "writer") == "relay-c"
    [(lease, _ttl)] = store.current()
    assert lease.writer == "relay-c"
    assert lease == build_lease("192.0.2.50", updated=lease.updated)  # whoever wrote it


def test_replay_registers_its_id_and_refuses_one_in_use(redis_url: str, rclient: redis.Redis,
                                                        registry: WriterRegistry,
                                                        tmp_path: Path) -> None:
    require_tool("tshark")
    pcap = three_leases(tmp_path / "three.pcap")
    done = run_cli("replay", str(pcap), "--redis-url", redis_url, "--allow-server", S1)
    assert done.returncode == 0, done.stderr
    default = f"{HOST}:replay:three.pcap"
    assert rclient.hget(Keys().lease("192.0.2.10"), "writer") == default
    assert default in rclient.hgetall("dhcp-hive-mind:writers")
    assert not rclient.exists(f"dhcp-hive-mind:writer:{default}")  # gone once it ended
    listed = run_cli("leases", "--json", "--redis-url", redis_url)
    assert {row["writer"] for row in json.loads(listed.stdout)} == {default}

    holder = Heartbeat(registry, "twin")
    holder.start()
    try:
        refused = run_cli("replay", str(pcap), "--redis-url", redis_url, "--allow-server", S1,
                          "--writer-id", "twin")
    finally:
        holder.stop()
    assert refused.returncode == 1
    assert re.fullmatch(r"dhcp-hive-mind: error: writer id 'twin' is in use by a running "
                        r"writer \(pid \d+ on .*\): give this one another --writer-id, or "
                        r"stop that one \(its heartbeat lasts 15 s after it stops\)\n",
                        refused.stderr)


def stderr_on_a_terminal(*args: str) -> tuple[str, str]:
    """Run the command with stderr on a pseudo-terminal, stdout in a pipe: (stdout, stderr)."""
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "sniffer", *args], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=secondary,
                              stdin=subprocess.DEVNULL, timeout=60, text=True,
                              env={**os.environ, "COLUMNS": "200", "TERM": "xterm"})
        os.close(secondary)
        shown = b""
        with contextlib.suppress(OSError):  # EIO once the other side is closed
            while chunk := os.read(primary, 65536):
                shown += chunk
    finally:
        os.close(primary)
    assert proc.returncode == 0, shown
    return proc.stdout, shown.decode(errors="replace")


def test_leases_names_the_live_writers_on_stderr_never_in_the_data(
        redis_url: str, registry: WriterRegistry) -> None:
    store = LeaseStore(redis.Redis.from_url(redis_url), Keys(), capture_clock=False,
                       writer="relay-d")
    store.apply([Grant(build_lease("192.0.2.60"), GrantEvent.GRANTED)], time.time())
    live = Heartbeat(registry, "relay-e")
    live.start()
    try:
        data, shown = stderr_on_a_terminal("leases", "--json", "--redis-url", redis_url)
    finally:
        live.stop()
    assert "live writers (1): relay-e" in shown  # relay-d wrote, but runs no more
    assert [row["writer"] for row in json.loads(data)] == ["relay-d"]
    _, shown = stderr_on_a_terminal("leases", "--csv", "--redis-url", redis_url)
    assert "live writers (0): none" in shown
