"""A real Sentinel set for tests: one master, two replicas and three Sentinels (Debian's
redis-server started with --sentinel), on free ports, with a short down-after so that a failover
takes a few seconds."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.conftest import free_port, require_tool
from tests.redis_procs import RedisProcesses, wait_ready

MASTER = "hive"
DOWN_AFTER_MS = 1000


@dataclass
class SentinelSet(RedisProcesses):
    sentinel_password: str | None = None
    data_ports: list[int] = field(default_factory=list)  # the first is the master at start
    sentinel_ports: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{MASTER}"

    def master_port(self) -> int:
        with redis.Redis(port=self.sentinel_ports[0], password=self.sentinel_password) as sentinel:
            _host, port = sentinel.sentinel_get_master_addr_by_name(MASTER)
        return int(port)


@contextmanager
def sentinel_set(master_password: str | None = None,
                 sentinel_password: str | None = None) -> Iterator[SentinelSet]:
    """A running set whose Sentinels all know the master and its two replicas; with
    requirepass on the data nodes (`master_password`) and on the Sentinels if given."""
    binary = require_tool("redis-server")
    nodes = SentinelSet(Path(tempfile.mkdtemp(prefix="hive-sentinel-")), binary,
                        sentinel_password=sentinel_password)
    try:
        nodes.data_ports = [free_port() for _ in range(3)]
        master = nodes.data_ports[0]
        for port in nodes.data_ports:
            replica = () if port == master else ("--replicaof", "127.0.0.1", str(master))
            auth = () if master_password is None else (
                "--requirepass", master_password, "--masterauth", master_password)
            (nodes.workdir / str(port)).mkdir()
            nodes.start(port, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                        "--appendonly", "no", "--dir", str(nodes.workdir / str(port)),
                        "--repl-diskless-sync-delay", "0", *replica, *auth)
        for _ in range(3):
            port = free_port()
            nodes.sentinel_ports.append(port)
            conf = nodes.workdir / f"sentinel-{port}.conf"  # Sentinel rewrites it: writable
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {nodes.workdir}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {master} 2\n"
                f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER} 10000\n"
                f"sentinel parallel-syncs {MASTER} 2\n"
                + (f"sentinel auth-pass {MASTER} {master_password}\n" if master_password else "")
                + (f"requirepass {sentinel_password}\n" if sentinel_password else ""))
            nodes.start(port, str(conf), "--sentinel")

        def known() -> bool:
            for port in nodes.sentinel_ports:
                with redis.Redis(port=port, password=sentinel_password) as sentinel:
                    state = sentinel.sentinel_master(MASTER)
                if int(state["num-slaves"]) < 2 or int(state["num-other-sentinels"]) < 2:
                    return False
            return True

        def synced() -> bool:
            for port in nodes.data_ports[1:]:
                with redis.Redis(port=port, password=master_password) as replica:
                    if replica.info("replication").get("master_link_status") != "up":
                        return False
            return True

        # A replica still in its first sync would lose, once promoted, what the master took.
        wait_ready("Sentinel set: the replicas' first sync", synced, 20)
        wait_ready("Sentinel set: the Sentinels' view of the master, replicas and each other",
                   known, 20)
        yield nodes
    finally:
        nodes.stop()
