"""Live capture: dumpcap processes (DumpcapRun), the pcapng block splitter, and the tshark that
decodes the blocks of one interface (LiveDecoder).

dumpcap captures (the BPF filter runs in the kernel, -B sizes the kernel buffer) and writes
pcapng to a pipe; the sniffer cuts that stream into blocks and writes them on to a tshark that
reads pcapng on its stdin. With the sniffer in between, tshark can be replaced at a block
boundary (a new one gets the section header and interface blocks first), and the dumpcap of a
scheduled restart can overlap the old one: sniffer.watch does both.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import os
import queue
import re
import shutil
import signal
import struct
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from sniffer.dhcp import Datagram
from sniffer.tshark import (
    STOP_TIMEOUT,
    CaptureError,
    TsharkProcess,
    check_ports,
    to_datagram,
    tshark_argv,
)

DUMPCAP_BUFFER_MIB = 64
SHB, IDB, SPB, ISB, EPB = 0x0A0D0D0A, 1, 3, 5, 6
PACKET_BLOCKS = frozenset({SPB, EPB})
MAX_BLOCK = 16 << 20  # dumpcap's blocks hold one packet; anything larger is a corrupt stream
READ_SIZE = 1 << 16
BLOCK_QUEUE = 10_000  # blocks read ahead of tshark; then dumpcap waits and the kernel buffers
STDERR_LINES = 50
SBIN = "/usr/sbin:/sbin:/usr/local/sbin"
PERMISSION_HINT = (
    "run as root, or let dumpcap capture with `setcap cap_net_raw,cap_net_admin+eip {path}` "
    "(Debian: dpkg-reconfigure wireshark-common, then add the user to group wireshark)"
)
_STATISTICS = re.compile(r"^Packets received/dropped on interface .*: (\d+)/(\d+) \(([^)]*)\)")
_INFORMATION = ("Capturing on", "File:", "Packets captured:", "Packets received/dropped",
                "Running as user")


def capture_filter(ports: Iterable[int]) -> str:
    """The kernel (BPF) filter for UDP on the given ports."""
    return " or ".join(f"udp port {port}" for port in sorted(set(ports)))


@functools.cache
def find_dumpcap() -> str:
    path = shutil.which("dumpcap") or shutil.which("dumpcap", path=SBIN)
    if path is None:
        raise CaptureError("dumpcap not found: install it with apt-get install tshark")
    return path


def dumpcap_argv(interface: str, ports: Iterable[int], buffer_mib: int) -> list[str]:
    """dumpcap writing pcapng of one interface to stdout, quietly (no packet counts)."""
    return [find_dumpcap(), "-q", "-n", "-i", interface, "-f", capture_filter(ports),
            "-B", str(buffer_mib), "-w", "-"]


@dataclass(frozen=True, slots=True)
class Block:
    """One pcapng block, bytes as dumpcap wrote them."""

    type: int
    data: bytes


class BlockSplitter:
    """Cuts a pcapng byte stream into whole blocks, in whatever pieces it arrives."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._order = "<"  # the current section's byte order, from its header block

    def feed(self, data: bytes) -> list[Block]:
        """The blocks completed by `data`; CaptureError if the stream is not pcapng."""
        buffer = self._buffer
        buffer += data
        blocks = []
        start = 0
        while len(buffer) - start >= 12:
            if buffer[start:start + 4] == b"\x0a\x0d\x0d\x0a":
                magic = bytes(buffer[start + 8:start + 12])
                self._order = "<" if magic == b"\x4d\x3c\x2b\x1a" else ">"
            kind, length = struct.unpack_from(self._order + "II", buffer, start)
            if length < 12 or length % 4 or length > MAX_BLOCK:
                raise CaptureError(f"dumpcap wrote a corrupt pcapng block (length {length})")
            if len(buffer) - start < length:
                break
            blocks.append(Block(kind, bytes(buffer[start:start + length])))
            start += length
        del buffer[:start]
        return blocks


@dataclass(frozen=True)
class DumpcapEnd:
    """How one dumpcap run ended, from its exit status and its last words on stderr."""

    status: int
    message: str  # its complaint in one line; "" if it said nothing of note
    permission: bool  # it was not allowed to capture on the interface
    received: int | None  # its final statistics, when it printed them
    drops: Mapping[str, int]  # pcap (kernel buffer full), ps_ifdrop (interface), dumpcap, flushed

    @property
    def dropped(self) -> int:
        return sum(self.drops.values())


class DumpcapRun:
    """One dumpcap process on one interface. A thread reads its pcapng stream into `blocks`
    (None after the last), so one supervisor can follow two runs during a handover; `ready`
    is set once dumpcap has described the interface, that is, once it captures."""

    def __init__(self, interface: str, ports: Iterable[int], buffer_mib: int) -> None:
        self.interface = interface
        self.blocks: queue.Queue[Block | None] = queue.Queue(BLOCK_QUEUE)
        self.ready = threading.Event()
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._lock = threading.Lock()
        self._stopping = False
        self._abandoned = False
        try:
            self._popen = subprocess.Popen(
                dumpcap_argv(interface, ports, buffer_mib), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0, process_group=0)
        except OSError as error:
            raise CaptureError(f"cannot start dumpcap: {error.strerror}") from None
        self.pid = self._popen.pid
        self._threads = [
            threading.Thread(target=self._read_blocks, name=f"dumpcap-{interface}", daemon=True),
            threading.Thread(target=self._read_stderr, name=f"dumpcap-err-{interface}",
                             daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Ask dumpcap to finish (SIGINT: it closes its output and prints its statistics)."""
        with self._lock:
            self._stopping = True
            if self._popen.poll() is None:
                self._popen.send_signal(signal.SIGINT)

    def kill(self) -> None:
        with self._lock:
            if self._popen.poll() is None:
                self._popen.kill()

    def abandon(self) -> DumpcapEnd:
        """Kill dumpcap and drop whatever it still had to say; how it ended."""
        self._abandoned = True
        self.kill()
        return self.end()

    def exited(self) -> bool:
        return self._popen.poll() is not None

    @property
    def stopping(self) -> bool:
        return self._stopping

    def end(self) -> DumpcapEnd:
        """Wait for dumpcap to exit (killing it if it will not) and say how it ended. Call it
        after `blocks` has delivered its None, or after stop() or kill()."""
        try:
            status = self._popen.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            status = self._popen.wait()
        for thread in self._threads:
            thread.join()
        return _dumpcap_end(status, list(self._stderr))

    def _read_blocks(self) -> None:
        assert self._popen.stdout is not None
        splitter = BlockSplitter()
        try:
            while data := self._popen.stdout.read(READ_SIZE):
                for block in splitter.feed(data):
                    if block.type == IDB:
                        self.ready.set()
                    self._put(block)
        except CaptureError as error:
            self._stderr.append(str(error))
            self.kill()
        finally:
            self._popen.stdout.close()
            self._put(None)

    def _put(self, item: Block | None) -> None:
        """Queue an item, waiting for room, unless nobody will ever take it (abandoned)."""
        while not self._abandoned:
            try:
                self.blocks.put(item, timeout=0.2)
                return
            except queue.Full:
                pass

    def _read_stderr(self) -> None:
        assert self._popen.stderr is not None
        with self._popen.stderr:
            for line in self._popen.stderr:
                self._stderr.append(line.decode("utf-8", "replace").rstrip())


def _dumpcap_end(status: int, lines: Sequence[str]) -> DumpcapEnd:
    received: int | None = None
    drops: dict[str, int] = {}
    for line in lines:
        if match := _STATISTICS.match(line):
            received = (received or 0) + int(match[1])
            for part in match[3].split("/"):
                name, _, count = part.partition(":")
                if count.isdigit():
                    drops[name] = drops.get(name, 0) + int(count)
    said = [line.strip() for line in lines
            if line.strip() and not line.startswith(_INFORMATION)]
    # dumpcap's error is its "dumpcap: ..." line and the "(reason)" line after it; what follows
    # is advice for Wireshark users.
    errors = [i for i, line in enumerate(said) if line.startswith("dumpcap: ")]
    if errors:
        first = errors[0]
        message = " ".join(line.removeprefix("dumpcap: ") for line in said[first:first + 2]
                           if line.startswith(("dumpcap: ", "(")))
    else:
        message = said[0] if said else ""
    if not message and status:
        message = (f"dumpcap was killed by signal {-status}" if status < 0
                   else f"dumpcap exited with status {status}")
    permission = "permission" in message.lower()
    return DumpcapEnd(status, message, permission, received, drops)


def permission_message(interface: str, end: DumpcapEnd) -> str:
    """The one line for a dumpcap that may not capture: what it said and what to do about it."""
    return (f"dumpcap may not capture on {interface}: {end.message}; "
            + PERMISSION_HINT.format(path=find_dumpcap()))


class LiveDecoder:
    """One tshark process decoding the live pcapng blocks written to it; a thread turns its
    output into Datagrams for `sink`, but only once the previous decoder's thread has finished,
    so datagrams keep capture order across a change of tshark. finish() closes its input: it
    decodes what it has and exits."""

    def __init__(self, ports: Sequence[int], label: str, sink: Callable[[Datagram], None],
                 previous: LiveDecoder | None = None) -> None:
        self.ports = check_ports(ports)
        self.frames = 0  # frames written to it
        self.skipped = 0  # frames it printed that are not one of our datagrams
        self.failure: str | None = None  # why it exited, when it failed
        self._sink = sink
        read_end, write_end = os.pipe()
        try:
            self._process = TsharkProcess(tshark_argv(["-r", "-", "-l"], self.ports), label,
                                           stdin=read_end, own_group=True)
        except BaseException:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        self._stdin = os.fdopen(write_end, "wb")
        self._thread = threading.Thread(target=self._read, args=(previous,), name=label,
                                        daemon=True)
        self._thread.start()

    def write(self, blocks: Iterable[Block]) -> None:
        """Pass blocks on; CaptureError if tshark is no longer there to read them."""
        try:
            for block in blocks:
                self._stdin.write(block.data)
                self.frames += block.type in PACKET_BLOCKS
            self._stdin.flush()  # whole blocks, at once: tshark decodes what it has
        except (OSError, ValueError):  # EPIPE: tshark has exited; ValueError: we closed it
            raise CaptureError("tshark exited") from None

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            self._stdin.close()

    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every datagram has gone to the sink and tshark is reaped; False if it
        is still running after `timeout`."""
        self._thread.join(timeout)
        return self.done()

    def kill(self) -> None:
        self.finish()
        self._process.kill()

    def _read(self, previous: LiveDecoder | None) -> None:
        if previous is not None:
            previous.wait()
        try:
            for line in self._process.lines():
                datagram = to_datagram(line.rstrip("\n").split("\t"), self.ports)
                if datagram is None:
                    self.skipped += 1
                else:
                    self._sink(datagram)
            self.failure = self._process.failure()
        finally:
            self._process.stop()
