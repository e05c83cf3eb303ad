"""Durability through failover (hive.md R-HV-8), against the real thing: a live `sniff` (real
tcpdump and tshark capturing frames built here) whose Redis loses writes it acknowledged.

H10: the redis-server, without persistence, is restarted empty while the sniffer holds 5,000
current leases: every one comes back with its original expiry; on a cluster, one master restarted
empty alone: the same. H9: on a Sentinel set, a lease
the master took but never passed on (its replicas frozen), then the master killed and a replica
promoted that never got it: the sniffer re-asserts it into the new master.
"""

# ruff: noqa: F811  (test_sniff's fixtures, imported, are parameters of the tests here)
from __future__ import annotations

import secrets
import shutil
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from conftest import free_port, require_root, require_tool
from lab import Daemon, FrameSender, Namespace, RedisServer, fetch, run, sniff_daemon, wait_for
from redis_cluster import redis_cluster
from sentinel_set import sentinel_set
from specharness import S1
from test_sniff import (  # noqa: F401  (the fixtures: found by pytest under these names)
    LIVE_CAPTURE,
    METRICS_PORT,
    Link,
    client_ip,
    client_mac,
    exchanges,
    link,
    metrics,
    socket_redis,
)

NS = "dhcp-hive-mind"
LEASES = 5_000  # hive.md H10
CHUNK = 250  # exchanges sent at a time, so that the capture keeps up
FILLER, FILLER_BYTES = "h9-filler", 64 << 20  # more than a loopback connection buffers


@pytest.fixture
def own_redis(socket_redis: RedisServer) -> Iterator[RedisServer]:
    """A redis-server without persistence (socket_redis: the module's checks for root and
    tools): restarted, it comes back empty."""
    server = RedisServer()
    yield server
    server.close()


def expiries(client: redis.Redis, count: int) -> dict[str, tuple[str, int, int]]:
    """Each client's lease: its `expires` field and the Unix times its seed and detail hashes
    expire at (EXPIRETIME)."""
    pipe = client.pipeline(transaction=False)
    for n in range(count):
        ip = client_ip(n)
        pipe.hget(f"{NS}:lease:{{{ip}}}", "expires")
        pipe.expiretime(ip)
        pipe.expiretime(f"{NS}:lease:{{{ip}}}")
    replies = pipe.execute()
    return {client_ip(n): (replies[3 * n], replies[3 * n + 1], replies[3 * n + 2])
            for n in range(count)}


def test_h10_a_redis_restarted_empty_gets_every_current_lease_back(
        link: Link, own_redis: RedisServer, tmp_path: Path) -> None:
    sniffer = sniff_daemon(link.ns, ["-i", "v0", "--redis-url", own_redis.url,
                                     "--allow-server", S1, "--metrics-port", str(METRICS_PORT)],
                           tmp_path / "sniff.log")
    client = redis.Redis(unix_socket_path=str(own_redis.socket), decode_responses=True)
    try:
        sniffer.wait_output(r"capturing on v0")
        for first in range(0, LEASES, CHUNK):
            link.send(exchanges(first, CHUNK))
            wait_for(lambda first=first: client.zcard(f"{NS}:expiry") == first + CHUNK,
                     f"{first + CHUNK} leases in Redis", timeout=60)
        before = expiries(client, LEASES)
        assert all(int(expires) == seed == detail for expires, seed, detail in before.values())
        own_redis.stop()  # no persistence: it comes back empty
        own_redis.start()
        sniffer.wait_output(r"WARNING Redis lost writes \(store emptied\): re-asserting "
                            rf"{LEASES} leases", timeout=30)
        wait_for(lambda: client.zcard(f"{NS}:expiry") == LEASES, "every lease back", timeout=60)
        after = expiries(client, LEASES)
        assert after == before  # the same expiries, to the second: the original ones
        assert client.hgetall(client_ip(LEASES - 1)) == {"mac": client_mac(LEASES - 1)}
        values = metrics(link)
        assert values['dhcp_hive_mind_store_resets_total{kind="emptied"}'] == 1
        assert values['dhcp_hive_mind_reasserted_total{reason="emptied"}'] == LEASES
        assert values["dhcp_hive_mind_rx_packets_total"] == 2 * LEASES
        assert sniffer.stop(signal.SIGTERM) == 0
    finally:
        sniffer.stop(signal.SIGKILL)
        client.close()
    assert "ERROR" not in sniffer.output()


class RootNamespace(Namespace):
    """This process's own network namespace, where the Sentinel set listens on 127.0.0.1."""

    def cmd(self, *argv: str) -> list[str]:
        return list(argv)


class RootLink:
    """A veth pair: one end here, where the sniffer captures; frames are sent from the other,
    in a namespace of its own. Random names, so that tests running at once do not collide."""

    def __init__(self) -> None:
        token = secrets.token_hex(3)
        self.ns = Namespace(f"hivedur{token}")
        self.iface = f"hdur{token}"
        run(["ip", "netns", "add", self.ns.name])
        try:
            run(["ip", "link", "add", self.iface, "type", "veth", "peer", "name", "v1",
                 "netns", self.ns.name])
            run(["ip", "link", "set", self.iface, "up"])
            self.ns.ip("link", "set", "v1", "up")
            self.sender = FrameSender(self.ns)
        except BaseException:
            self.close()
            raise

    def send(self, frames: list[bytes]) -> None:
        self.sender.send("v1", frames)

    def close(self) -> None:
        if hasattr(self, "sender"):
            self.sender.close()
        run(["ip", "netns", "del", self.ns.name])  # the veth pair goes with it


def require_live() -> None:
    require_root(LIVE_CAPTURE)
    for name in ("tcpdump", "tshark", "redis-server"):
        require_tool(name)


def root_sniffer(url: str, port: int, log: Path, *args: str) -> tuple[RootLink, Daemon]:
    """A RootLink and a sniffer capturing on its end here, writing to `url`, its metrics on
    `port` (of 127.0.0.1 here)."""
    link = RootLink()
    return link, sniff_daemon(RootNamespace(""), [
        "-i", link.iface, "--redis-url", url, "--allow-server", S1, "--metrics-port", str(port),
        *args], log)


def root_metrics(port: int) -> dict[str, float]:
    """A root_sniffer's metrics as {name{labels}: value}."""
    text = fetch(RootNamespace(""), f"http://127.0.0.1:{port}/metrics")
    return {name: float(value) for name, _, value in
            (line.rpartition(" ") for line in text.splitlines())
            if name and not name.startswith("#")}


def test_h9_a_write_the_dead_master_never_passed_on_is_reasserted_into_the_new_one(
        tmp_path: Path) -> None:
    require_live()
    port = free_port()
    with sentinel_set() as nodes:
        link, sniffer = root_sniffer(nodes.url, port, tmp_path / "sniff.log", "--writer-id",
                                     "h9")
        try:
            sniffer.wait_output(rf"capturing on {link.iface}")
            old = nodes.master_port()
            replicas = [p for p in nodes.data_ports if p != old]
            master = redis.Redis(port=old, decode_responses=True)
            link.send(exchanges(0, 1))
            wait_for(lambda: master.exists(client_ip(0)), "client 0's lease in the master")
            for replica in replicas:  # from here on the master passes nothing on ...
                nodes.procs[replica].send_signal(signal.SIGSTOP)
            # ... not even through the kernel: a frozen replica's socket buffers would take in
            # the stream, and once thawed it would read what the dead master had sent. A value
            # larger than those buffers holds the rest of the stream back in the master.
            master.set(FILLER, "x" * FILLER_BYTES)
            link.send(exchanges(1, 1))
            wait_for(lambda: master.exists(client_ip(1)), "client 1's lease in the master")
            expires = master.hget(f"{NS}:lease:{{{client_ip(1)}}}", "expires")
            master.close()
            nodes.kill(old)
            for replica in replicas:
                nodes.procs[replica].send_signal(signal.SIGCONT)
            wait_for(lambda: nodes.master_port() != old, "a replica promoted", timeout=60)
            with redis.Redis(port=nodes.master_port(), decode_responses=True) as new:
                assert not new.exists(FILLER)  # the stream was cut before it, so before client 1
                wait_for(lambda: new.exists(client_ip(1)) == 1,
                         "client 1's lease re-asserted into the new master", timeout=60)
                assert new.hget(f"{NS}:lease:{{{client_ip(1)}}}", "expires") == expires
                assert new.expiretime(client_ip(1)) == int(expires)
                assert new.hgetall(client_ip(0)) == {"mac": client_mac(0)}
            sniffer.wait_output(r"WARNING re-asserting the \d+ writes Redis took in the last "
                                r"30 s|WARNING Redis lost writes \(run id changed")
            reasserted = sum(value for name, value in root_metrics(port).items()
                             if name.startswith("dhcp_hive_mind_reasserted_total{"))
            assert reasserted >= 2  # at least clients 0 and 1, written in the last 30 s
            assert sniffer.stop(signal.SIGTERM) == 0
        finally:
            sniffer.stop(signal.SIGKILL)
            link.close()
    assert "ERROR" not in sniffer.output()



CLUSTER_LEASES, CLUSTER_CHUNK = 300, 100  # spread over the three masters


def test_h10_on_a_cluster_a_master_restarted_empty_gets_its_leases_back(tmp_path: Path) -> None:
    """One cluster master, without persistence, restarted empty with its slots (its nodes.conf
    kept; its replica may not fail over, and re-syncs from it, empty too) while the sniffer
    holds leases on every master, all older than --reassert-seconds: the master's own marker
    is gone, so every lease is re-asserted, and those of that master come back with their
    original expiries."""
    require_live()
    port = free_port()
    with redis_cluster() as nodes:
        link, sniffer = root_sniffer(nodes.url, port, tmp_path / "sniff.log", "--writer-id",
                                     "h10c", "--reassert-seconds", "1")
        client = nodes.client()
        try:
            sniffer.wait_output(rf"capturing on {link.iface}")
            for first in range(0, CLUSTER_LEASES, CLUSTER_CHUNK):
                link.send(exchanges(first, CLUSTER_CHUNK))
                wait_for(lambda first=first: client.zcard(f"{NS}:expiry") ==
                         first + CLUSTER_CHUNK, f"{first + CLUSTER_CHUNK} leases in Redis",
                         timeout=60)
            before = expiries(client, CLUSTER_LEASES)
            assert all(int(expires) == seed == detail for expires, seed, detail in
                       before.values())
            by_master = Counter(client.get_node_from_key(client_ip(n)).port
                                for n in range(CLUSTER_LEASES))
            assert len(by_master) == 3 and min(by_master.values()) > 50
            victim = client.get_node_from_key(client_ip(0)).port
            for node_port in nodes.ports:  # the victim comes back as the master of its slots
                with redis.Redis(port=node_port) as node:
                    node.config_set("cluster-replica-no-failover", "yes")
            time.sleep(2)  # every lease older than --reassert-seconds
            nodes.kill(victim)
            workdir = nodes.workdir / str(victim)
            assert (workdir / "nodes.conf").exists()
            for name in ("dump.rdb", "appendonlydir"):
                shutil.rmtree(workdir / name, ignore_errors=True)
                (workdir / name).unlink(missing_ok=True)
            nodes.restart(victim)
            sniffer.wait_output(r"WARNING Redis lost writes \(store emptied\): re-asserting "
                                rf"{CLUSTER_LEASES} leases", timeout=60)

            def all_back() -> bool:
                try:
                    return expiries(client, CLUSTER_LEASES) == before
                except redis.RedisError:
                    return False
            wait_for(all_back, "every lease back with its expiry", timeout=60)
            with redis.Redis(port=victim) as node:
                assert node.info("replication")["role"] == "master"
            assert client.hgetall(client_ip(0)) == {"mac": client_mac(0)}
            values = root_metrics(port)
            assert values['dhcp_hive_mind_store_resets_total{kind="emptied"}'] == 1
            assert values['dhcp_hive_mind_reasserted_total{reason="emptied"}'] == CLUSTER_LEASES
            assert sniffer.stop(signal.SIGTERM) == 0
            wait_for(lambda: not client.keys(f"{NS}:mark:*", target_nodes=client.PRIMARIES),
                     "the markers removed at the clean stop", timeout=10)
        finally:
            sniffer.stop(signal.SIGKILL)
            client.close()
            link.close()
    assert "ERROR" not in sniffer.output()
