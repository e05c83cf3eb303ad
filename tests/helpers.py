"""Helpers many test files share: the command run as a user runs it, and lease records."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from conftest import REPO

from sniffer.dhcp import ZERO
from sniffer.lease import Lease


def run_cli(*args: str, env: Mapping[str, str] | None = None,
            base_env: Mapping[str, str] | None = None, cwd: Path = REPO,
            timeout: float = 120, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """`dhcp-hive-mind ARGS` from this checkout, in a process of its own: no standard input
    (or `stdin`'s bytes through a pipe), output captured as text, the exit code left to the
    caller. `env` is added to `base_env` (this process's environment unless given)."""
    environment = {**(os.environ if base_env is None else base_env), "PYTHONPATH": str(REPO),
                   **(env or {})}
    done = subprocess.run([sys.executable, "-m", "sniffer", *args], cwd=cwd, env=environment,
                          stdin=subprocess.DEVNULL if stdin is None else None, input=stdin,
                          capture_output=True, timeout=timeout, check=False)
    return subprocess.CompletedProcess(done.args, done.returncode, _text(done.stdout),
                                       _text(done.stderr))


def _text(output: bytes) -> str:
    """As text=True reads it: UTF-8 with universal newlines."""
    return output.decode().replace("\r\n", "\n").replace("\r", "\n")


def build_lease(ip: str, *, lease_time: int = 3600, updated: int | None = None,
                **changes: object) -> Lease:
    """A finite DHCP lease at `ip`, granted at `updated` (Unix seconds, default this second) for
    `lease_time` seconds, to 02:00:00:00:00:0a by 192.0.2.1, not relayed; `changes` sets any
    other field (expires=None with lease_time=INFINITE for an infinite one)."""
    updated = math.floor(time.time()) if updated is None else updated
    lease = Lease(
        ip=ip, mac="02:00:00:00:00:0a", htype=1, client_id=None, hostname=None,
        hostname_src=None, expires=updated + lease_time, lease_time=lease_time,
        server="192.0.2.1", giaddr=ZERO, circuit_id=None, remote_id=None, xid=0x1001,
        updated=updated, kind="dhcp")
    return dataclasses.replace(lease, **changes)  # type: ignore[arg-type]
