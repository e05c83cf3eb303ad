"""A real Redis Cluster for tests: six redis-server processes with `cluster-enabled yes` on free
ports (three masters, one replica each), joined by `redis-cli --cluster create`; or, for the
benchmarks' like-for-like rows, the three masters alone."""

from __future__ import annotations

import random
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.conftest import require_tool
from tests.redis_procs import RedisProcesses, wait_ready

MASTERS = 3
BUS_OFFSET = 10000  # a node's cluster bus listens on its port + 10000, so ports stay below 55536


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _node_port(taken: list[int]) -> int:
    while True:
        port = random.randrange(20000, 45000)
        if port not in taken and _free(port) and _free(port + BUS_OFFSET):
            return port


@dataclass
class RedisCluster(RedisProcesses):
    ports: list[int] = field(default_factory=list)
    host: str = "127.0.0.1"  # where every node listens, and the address it announces

    @property
    def url(self) -> str:
        """Any one node: the tool finds the others itself."""
        return f"redis://{self.host}:{self.ports[0]}"

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster(host=self.host, port=self.ports[0], decode_responses=True)

    def nodes(self) -> list[redis.Redis]:
        """A client of each node, replicas too."""
        return [redis.Redis(host=self.host, port=port) for port in self.ports]

    def flush(self) -> None:
        with self.client() as client:
            client.flushall(target_nodes=redis.RedisCluster.PRIMARIES)


def _cluster_ok(host: str, port: int) -> bool:
    with redis.Redis(host=host, port=port, decode_responses=True) as node:
        return bool(node.cluster("info").get("cluster_state") == "ok")


@contextmanager
def redis_cluster(host: str = "127.0.0.1", replicas: int = 1) -> Iterator[RedisCluster]:
    """Three masters with `replicas` replicas each, every slot covered, listening on `host`
    (an address of this machine); stopped at the end."""
    server, cli = require_tool("redis-server"), require_tool("redis-cli")
    cluster = RedisCluster(Path(tempfile.mkdtemp(prefix="hive-cluster-")), server, host=host)
    for _ in range(MASTERS * (1 + replicas)):
        cluster.ports.append(_node_port(cluster.ports))
    try:
        for port in cluster.ports:
            workdir = cluster.workdir / str(port)
            workdir.mkdir()
            cluster.start(port, "--port", str(port), "--bind", host, "--cluster-enabled",
                          "yes", "--cluster-config-file", "nodes.conf",
                          "--cluster-node-timeout", "2000", "--save", "", "--appendonly", "no",
                          # no password: off the loopback address, only if unprotected
                          "--protected-mode", "no" if host != "127.0.0.1" else "yes",
                          "--dir", str(workdir))
        for port in cluster.ports:
            wait_ready(f"Redis Cluster: node {port}", redis.Redis(host=host, port=port).ping, 30)
        subprocess.run(
            [cli, "--cluster", "create", *(f"{host}:{port}" for port in cluster.ports),
             "--cluster-replicas", str(replicas), "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
        for port in cluster.ports:
            wait_ready(f"Redis Cluster: cluster_state on {port}",
                       lambda port=port: _cluster_ok(host, port), 30)
        yield cluster
    finally:
        cluster.stop()
