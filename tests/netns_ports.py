"""TCP ports of the test's own network namespace, reachable at the same address inside lab
namespaces: a Redis Cluster or a Sentinel set listening on 127.0.0.1 here is reached by the
sniffers on the lab's relay hosts at 127.0.0.1 there, where 127.0.0.1 is each namespace's own.

The nodes announce themselves as 127.0.0.1:<port> (CLUSTER SLOTS, SENTINEL get-master-addr), so
forwarding each port to itself is all a client needs, and a node that dies closes the forwarded
connections as it would close direct ones. One process (this file run as a script) listens in
every namespace: it enters each (setns), opens its listening sockets there, which stay in that
namespace, and returns to its own namespace to connect onwards.

    with NamespacePorts(["hiveab12cd-relay"], [7000, 7001]):
        ...  # in hiveab12cd-relay, 127.0.0.1:7000 is this namespace's 127.0.0.1:7000
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType

CLONE_NEWNET = 0x40000000
LOOPBACK = "127.0.0.1"
READY = "ready"


class NamespacePorts:
    """The forwarding process, from entering the block until its end."""

    def __init__(self, namespaces: Sequence[str], ports: Sequence[int]) -> None:
        argv = [sys.executable, __file__, ",".join(namespaces), *map(str, ports)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)

    def __enter__(self) -> NamespacePorts:
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != READY:
            self.close()
            raise RuntimeError(f"port forwarding into the namespaces failed "
                               f"(exit {self.proc.poll()})")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _enter(namespace_fd: int) -> None:
    if ctypes.CDLL(None, use_errno=True).setns(namespace_fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


def _listeners(namespaces: Sequence[str], ports: Sequence[int]) -> list[tuple[socket.socket, int]]:
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    found = []
    try:
        for name in namespaces:
            target = os.open(f"/run/netns/{name}", os.O_RDONLY)
            try:
                _enter(target)
            finally:
                os.close(target)
            for port in ports:
                sock = socket.create_server((LOOPBACK, port))
                sock.setblocking(False)
                found.append((sock, port))
    finally:
        _enter(home)
        os.close(home)
    return found


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def _serve(listeners: list[tuple[socket.socket, int]]) -> None:
    def handler(port: int) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                       Awaitable[None]]:
        async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                upstream = await asyncio.open_connection(LOOPBACK, port)
            except OSError:  # the node is down: so is the forwarded connection
                writer.close()
                return
            await asyncio.gather(_pipe(reader, upstream[1]), _pipe(upstream[0], writer))
        return forward

    for sock, port in listeners:
        await asyncio.start_server(handler(port), sock=sock)
    print(READY, flush=True)
    await asyncio.Event().wait()


def main(namespaces: str, *ports: str) -> None:
    listeners = _listeners(namespaces.split(","), [int(port) for port in ports])
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(listeners))


if __name__ == "__main__":
    main(*sys.argv[1:])
