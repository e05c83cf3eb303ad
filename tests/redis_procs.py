"""Groups of redis-server processes for the Redis Cluster and Sentinel fixtures: started in one
work directory, stopped together, and waited for."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis


@dataclass
class RedisProcesses:
    workdir: Path
    binary: str  # redis-server
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)  # by port
    args: dict[int, tuple[str, ...]] = field(default_factory=dict)  # each server's, by port

    def start(self, port: int, *args: str) -> None:
        self.args[port] = args
        self.procs[port] = subprocess.Popen(
            [self.binary, *args], cwd=self.workdir, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)

    def kill(self, port: int) -> None:
        """SIGKILL the server on this port: a node that dies without a word."""
        proc = self.procs.pop(port)
        proc.kill()
        proc.wait(timeout=10)

    def restart(self, port: int) -> None:
        """Start the server on this port again (after kill), with the arguments it had."""
        self.start(port, *self.args[port])

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


def wait_ready(what: str, ready: Callable[[], object], timeout: float) -> None:
    """Until `ready()` is true; a Redis not answering yet counts as not ready."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout:g}s")
        time.sleep(0.1)
