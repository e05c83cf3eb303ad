"""A real Redis Cluster for tests: six redis-server processes with `cluster-enabled yes` on free
ports (three masters, one replica each), joined by `redis-cli --cluster create`."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.conftest import require_tool

NODES = 6
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
class RedisCluster:
    workdir: Path
    ports: list[int]
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """Any one node: the tool finds the others itself."""
        return f"redis://127.0.0.1:{self.ports[0]}"

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster(host="127.0.0.1", port=self.ports[0], decode_responses=True)

    def flush(self) -> None:
        with self.client() as client:
            client.flushall(target_nodes=redis.RedisCluster.PRIMARIES)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _wait(what: str, ready: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():  # type: ignore[operator]
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"Redis Cluster: {what} not ready after {timeout:g}s")
        time.sleep(0.1)


def _cluster_ok(port: int) -> bool:
    with redis.Redis(port=port, decode_responses=True) as node:
        return bool(node.cluster("info").get("cluster_state") == "ok")


@contextmanager
def redis_cluster() -> Iterator[RedisCluster]:
    """Six nodes, three masters with a replica each, every slot covered; stopped at the end."""
    server, cli = require_tool("redis-server"), require_tool("redis-cli")
    cluster = RedisCluster(Path(tempfile.mkdtemp(prefix="hive-cluster-")),
                           [])
    for _ in range(NODES):
        cluster.ports.append(_node_port(cluster.ports))
    try:
        for port in cluster.ports:
            workdir = cluster.workdir / str(port)
            workdir.mkdir()
            cluster.procs[port] = subprocess.Popen(
                [server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000",
                 "--save", "", "--appendonly", "no", "--dir", str(workdir)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for port in cluster.ports:
            _wait(f"node {port}", redis.Redis(port=port).ping)
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{port}" for port in cluster.ports),
             "--cluster-replicas", "1", "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
        for port in cluster.ports:
            _wait(f"cluster_state on {port}", lambda port=port: _cluster_ok(port))
        yield cluster
    finally:
        cluster.stop()
