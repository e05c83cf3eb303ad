"""Shared fixtures: a real redis-server on a free port, and checks for tools and root that fail
in CI. Shared helpers that are not fixtures are in helpers.py."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest
import redis

if TYPE_CHECKING:
    from tests.redis_cluster import RedisCluster

REPO = Path(__file__).resolve().parent.parent
SHARED_PCAPS = REPO.parent / "shared" / "pcaps"
IN_CI = os.environ.get("CI", "").lower() == "true"
# Every command the tests run reads no configuration file, whatever the machine's
# /etc/dhcp-hive-mind/config.toml holds (an empty file: no settings).
os.environ["HIVE_CONFIG"] = os.devnull


def cannot_run(reason: str) -> NoReturn:
    """End a test that this machine cannot run, saying why: a failure in CI, which must run every
    test, a skip elsewhere."""
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


def require_tool(name: str) -> str:
    """Path of an executable; in CI a missing tool fails the test, locally it skips."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/local/sbin")
    if path is None:
        cannot_run(f"{name} is not installed (make test installs it)")
    return path


def require_root(what: str) -> None:
    """Root, which `what` needs (network namespaces, capture, other users); CI runs as root."""
    if os.geteuid() != 0:
        cannot_run(f"{what} needs root")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_redis(binary: str) -> Iterator[str]:
    """A scratch redis-server of this binary on a free port, until the block ends; its URL."""
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="hive-redis-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.05)
    try:
        yield url
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """A scratch redis-server for the whole session; yields its URL."""
    with running_redis(require_tool("redis-server")) as url:
        yield url


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The scratch Redis, emptied for this test."""
    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    return redis_server


@pytest.fixture
def rclient(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def shared_pcaps() -> list[Path]:
    return sorted(p for p in SHARED_PCAPS.glob("*.pcap*") if not p.name.endswith(".txt"))


@pytest.fixture(scope="session")
def redis_cluster_session() -> Iterator[RedisCluster]:
    """A real Redis Cluster (tests/redis_cluster.py) for the whole session."""
    from tests.redis_cluster import redis_cluster

    with redis_cluster() as cluster:
        yield cluster


@pytest.fixture
def cluster(redis_cluster_session: RedisCluster) -> RedisCluster:
    """The session's Redis Cluster, emptied for this test."""
    redis_cluster_session.flush()
    return redis_cluster_session
