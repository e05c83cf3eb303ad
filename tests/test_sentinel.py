"""Redis through Sentinel, against a real Sentinel set (one master, two replicas, three
Sentinels): every command through redis+sentinel://, clear refusals at start, and writes that
carry on through a failover after the master is killed."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from conftest import free_port, require_tool
from helpers import build_lease, run_cli
from sentinel_set import MASTER, SentinelSet, sentinel_set
from test_cli import three_leases

from sniffer.commands import Grant, GrantEvent
from sniffer.connection import RedisOptions, StoreError, close_redis, open_redis
from sniffer.keys import Keys
from sniffer.metrics import Metrics
from sniffer.store import LeaseStore
from sniffer.writer import RedisWriter

S1 = "192.0.2.1"


@pytest.fixture(scope="module")
def sentinels() -> Iterator[SentinelSet]:
    with sentinel_set() as nodes:
        yield nodes


def test_replay_leases_and_history_go_through_sentinel(sentinels: SentinelSet,
                                                       tmp_path: Path) -> None:
    require_tool("tshark")
    pcap = three_leases(tmp_path / "three.pcap")
    replayed = run_cli("replay", str(pcap), "--redis-url", sentinels.url, "--allow-server", S1)
    assert replayed.returncode == 0, replayed.stderr
    with redis.Redis(port=sentinels.master_port(), decode_responses=True) as master:
        assert master.hgetall("192.0.2.11") == {"mac": "02:00:00:00:10:01",
                                                "hostname": "host-1"}
    listed = run_cli("leases", "--json", "--redis-url", sentinels.url)
    assert listed.returncode == 0, listed.stderr
    assert [row["ip"] for row in json.loads(listed.stdout)] == [
        "192.0.2.10", "192.0.2.11", "192.0.2.12"]
    history = run_cli("history", "192.0.2.12", "--json", "--redis-url",
                      sentinels.url.replace(f"/{MASTER}", f"/{MASTER}/0"))
    assert history.returncode == 0, history.stderr
    assert [event["event"] for event in json.loads(history.stdout)] == ["granted"]


def test_a_wrong_master_name_is_one_line_at_start(sentinels: SentinelSet) -> None:
    url = sentinels.url.replace(f"/{MASTER}", "/nosuch")
    result = run_cli("leases", "--redis-url", url)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "knows no master named 'nosuch' (it knows: hive)" in result.stderr


def test_an_unreachable_sentinel_set_is_one_line_at_start() -> None:
    hosts = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    result = run_cli("leases", "--redis-url", f"redis+sentinel://{hosts}/{MASTER}")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert f"no Sentinel {hosts} answered: Connection refused" in result.stderr


@pytest.mark.parametrize(("url", "problem"), [
    ("redis+sentinel://127.0.0.1:1", "must name the master"),
    ("redis+sentinel://127.0.0.1:1/m/x", "must name the master"),
    ("redis+sentinel://127.0.0.1:99999/m", "is not a Sentinel's host[:port]"),
    ("redis+sentinel://127.0.0.1:1/m?socket_timeout=1", "takes no options but password"),
])
def test_a_malformed_sentinel_url_is_refused(url: str, problem: str) -> None:
    with pytest.raises(StoreError, match=problem.replace("[", r"\[")):
        open_redis(url)


def test_the_sentinel_password_and_the_master_password_go_to_each(tmp_path: Path) -> None:
    """Sentinels with requirepass of their own, a master with another: each gets its own."""
    require_tool("redis-server")
    with sentinel_set(master_password="master-secret",
                      sentinel_password="sentinel-secret") as nodes:
        url = nodes.url.replace("://", "://:master-secret@")
        with pytest.raises(StoreError, match=r"no Sentinel .* answered"):
            open_redis(url)
        client, shown = open_redis(url, options=RedisOptions(
            sentinel_password="sentinel-secret"))
        try:
            assert shown.startswith(f"Redis master '{MASTER}' through Sentinel 127.0.0.1:")
            assert client.set("k", "v")
        finally:
            close_redis(client)


def test_writes_carry_on_through_a_failover_after_the_master_is_killed() -> None:
    """SIGKILL of the master while the writer writes: its batches fail and wait, Sentinel
    promotes a replica, the client finds it, and every lease is in the new master."""
    with sentinel_set() as nodes:
        client, _ = open_redis(nodes.url)
        store = LeaseStore(client, Keys(), capture_clock=False, writer="failover-test")
        writer = RedisWriter(store, Metrics(), batch_size=10, max_pending=10_000)
        writer.start()
        old_master = nodes.master_port()
        count = 0
        try:
            started = time.monotonic()
            while time.monotonic() - started < 4:
                if count == 40:
                    nodes.kill(old_master)
                lease = build_lease(f"10.0.{count // 250}.{count % 250 + 1}")
                writer.put([(Grant(lease, GrantEvent.GRANTED), time.time())])
                count += 1
                time.sleep(0.02)
            assert writer.close(30) == 0
        finally:
            close_redis(client)
        new_master = nodes.master_port()
        assert new_master != old_master
        with redis.Redis(port=new_master) as master:
            assert master.zcard("dhcp-hive-mind:expiry") == count
