"""Live capture: tcpdump processes (CaptureRun), the pcap record splitter, and the tshark that
decodes the records of one interface (LiveDecoder).

tcpdump captures in libpcap's immediate mode, so the kernel hands each packet over as it comes
(dumpcap 4.0 does not ask for it: the kernel then holds packets in blocks until one fills or a
250 ms timeout retires it). The BPF filter runs in the kernel, -B sizes the kernel buffer, and
tcpdump writes pcap to a pipe, flushed after each packet (-U). The sniffer cuts that stream into
records and writes them on, as many as have come at once, to a tshark that reads pcap on its
stdin. With the sniffer in between, tshark can be replaced at a record boundary (a new one gets
the file header first), and the tcpdump of a scheduled restart can overlap the old one:
sniffer.watch does both.
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

BUFFER_MIB = 64  # tcpdump -B (in KiB there): the kernel buffer that absorbs bursts
# Bytes kept of each packet (tcpdump -s): a whole Ethernet frame with two VLAN tags. In immediate
# mode libpcap uses fixed ring slots sized for this, and two of them fill a page: a 64 MiB buffer
# holds 32,000 packets (with tcpdump's default of 256 KiB, slots of 64 KiB held a thousand).
# A longer DHCP message (jumbo frames) is cut, and counted as truncated.
SNAPLEN = 1700
PCAP_HEADER = 24
RECORD_HEADER = 16
# The pcap magic numbers (microsecond and nanosecond timestamps) -> byte order of the stream.
PCAP_MAGIC = {b"\xd4\xc3\xb2\xa1": "<", b"\x4d\x3c\xb2\xa1": "<",
              b"\xa1\xb2\xc3\xd4": ">", b"\xa1\xb2\x3c\x4d": ">"}
MAX_RECORD = 16 << 20  # more than any snapshot length: a corrupt stream
ECHO_WINDOW = 0.01  # seconds between two captures' stamps of one packet (see Echoes)
READ_SIZE = 1 << 16
CHUNK_QUEUE = 256  # reads (at most READ_SIZE each) ahead of tshark; then tcpdump waits
STDERR_LINES = 50
SBIN = "/usr/sbin:/sbin:/usr/local/sbin"
PERMISSION_HINT = (
    "run as root, or let tcpdump capture with `setcap cap_net_raw,cap_net_admin+eip {path}` "
    "(then every user who may run it can capture)"
)
# tcpdump's statistics when it ends (what it received, what the kernel and the interface
# dropped), and the lines it prints that are information, not complaints.
_STATISTICS = re.compile(r"^(\d+) packets? (received by filter|dropped by kernel|"
                         r"dropped by interface)$")
_DROP_PLACES = {"dropped by kernel": "kernel", "dropped by interface": "interface"}
_INFORMATION = re.compile(r"^(tcpdump: (listening on|data link type) |\d+ packets? )")


def capture_filter(ports: Iterable[int]) -> str:
    """The kernel (BPF) filter for UDP on the given ports."""
    return " or ".join(f"udp port {port}" for port in sorted(set(ports)))


@functools.cache
def find_tcpdump() -> str:
    path = shutil.which("tcpdump") or shutil.which("tcpdump", path=SBIN)
    if path is None:
        raise CaptureError("tcpdump not found: install it with apt-get install tcpdump")
    return path


def tcpdump_argv(interface: str, ports: Iterable[int], buffer_mib: int) -> list[str]:
    """tcpdump writing pcap of one interface to stdout, each packet as it comes: immediate mode
    (no kernel block timeout) and its output flushed after every packet (-U)."""
    return [find_tcpdump(), "--immediate-mode", "-U", "-n", "-i", interface,
            "-B", str(buffer_mib * 1024), "-s", str(SNAPLEN), "-w", "-", capture_filter(ports)]


class RecordSplitter:
    """Cuts a pcap byte stream into its file header and whole packet records (record header
    and data, bytes as tcpdump wrote them), in whatever pieces it arrives."""

    def __init__(self) -> None:
        self.header: bytes | None = None  # the file header, once it has come
        self._buffer = bytearray()
        self._length = struct.Struct("<I")  # a record's captured length, in the stream's order

    def feed(self, data: bytes) -> list[bytes]:
        """The packet records completed by `data`; CaptureError if the stream is not pcap."""
        buffer = self._buffer
        buffer += data
        start = 0
        if self.header is None:
            if len(buffer) < PCAP_HEADER:
                return []
            order = PCAP_MAGIC.get(bytes(buffer[:4]))
            if order is None:
                raise CaptureError("tcpdump wrote something other than pcap")
            self.header, self._length, start = bytes(buffer[:PCAP_HEADER]), struct.Struct(
                order + "I"), PCAP_HEADER
        records = []
        unpack, end = self._length.unpack_from, len(buffer)
        while end - start >= RECORD_HEADER:
            (length,) = unpack(buffer, start + 8)
            if length > MAX_RECORD:
                raise CaptureError(f"tcpdump wrote a corrupt pcap record (length {length})")
            stop = start + RECORD_HEADER + length
            if stop > end:
                break
            records.append(bytes(buffer[start:stop]))
            start = stop
        del buffer[:start]
        return records


class Echoes:
    """The packets one tcpdump run delivered while the next one was starting (a scheduled
    restart), so that the copies the next run delivers of them are dropped.

    Both runs see every packet of the overlap, but the kernel may stamp the two copies a few
    microseconds apart (when nothing has asked it to stamp packets on arrival, each capture
    socket reads the clock itself): a copy is a record with the same bytes and a timestamp at
    most ECHO_WINDOW apart. A DHCP message sent twice within that time is one message twice."""

    def __init__(self, header: bytes = b"") -> None:
        """`header`: the pcap file header of the runs (none: Echoes that stay empty)."""
        magic = header[:4]
        self._stamp = struct.Struct(PCAP_MAGIC.get(magic, "<") + "II")
        self._unit = 1e-9 if magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1e-6
        self._seen: dict[bytes, list[float]] = {}  # a record after its timestamp -> the stamps

    def __bool__(self) -> bool:
        return bool(self._seen)

    def add(self, records: Iterable[bytes]) -> None:
        for record in records:
            self._seen.setdefault(record[8:], []).append(self._time(record))

    def drop(self, records: list[bytes]) -> list[bytes]:
        """The records that are not copies; each copy is matched once."""
        kept = []
        for record in records:
            stamps = self._seen.get(record[8:])
            if stamps is not None:
                when = self._time(record)
                match = next((s for s in stamps if abs(s - when) <= ECHO_WINDOW), None)
                if match is not None:
                    stamps.remove(match)
                    if not stamps:
                        del self._seen[record[8:]]
                    continue
            kept.append(record)
        return kept

    def _time(self, record: bytes) -> float:
        seconds, fraction = self._stamp.unpack_from(record)
        return float(seconds + fraction * self._unit)


@dataclass(frozen=True)
class CaptureEnd:
    """How one tcpdump run ended, from its exit status and its last words on stderr."""

    status: int
    message: str  # its complaint in one line; "" if it said nothing of note
    permission: bool  # it was not allowed to capture on the interface
    received: int | None  # its final statistics, when it printed them
    drops: Mapping[str, int]  # by place: kernel (its buffer was full), interface

    @property
    def dropped(self) -> int:
        return sum(self.drops.values())


class CaptureRun:
    """One tcpdump process on one interface. A thread reads its pcap stream into `chunks`, the
    packet records of each read (None after the last), which take() hands out, so one
    supervisor can follow two runs during a handover; `ready` is set, and `header` known, once
    tcpdump has written the file header, that is, once it captures."""

    def __init__(self, interface: str, ports: Iterable[int], buffer_mib: int) -> None:
        self.interface = interface
        self.chunks: queue.Queue[list[bytes] | None] = queue.Queue(CHUNK_QUEUE)
        self.ready = threading.Event()
        self.header = b""
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._lock = threading.Lock()
        self._stopping = False
        self._abandoned = False
        self._ended = False  # take() has met the None after the last records
        try:
            self._popen = subprocess.Popen(
                tcpdump_argv(interface, ports, buffer_mib), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0, process_group=0)
        except OSError as error:
            raise CaptureError(f"cannot start tcpdump: {error.strerror}") from None
        self.pid = self._popen.pid
        self._threads = [
            threading.Thread(target=self._read_records, name=f"tcpdump-{interface}",
                             daemon=True),
            threading.Thread(target=self._read_stderr, name=f"tcpdump-err-{interface}",
                             daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Ask tcpdump to finish (SIGINT: it flushes its output and prints its statistics)."""
        with self._lock:
            self._stopping = True
            if self._popen.poll() is None:
                self._popen.send_signal(signal.SIGINT)

    def kill(self) -> None:
        with self._lock:
            if self._popen.poll() is None:
                self._popen.kill()

    def abandon(self) -> CaptureEnd:
        """Kill tcpdump and drop whatever it still had to say; how it ended."""
        self._abandoned = True
        self.kill()
        return self.end()

    def take(self, timeout: float) -> list[bytes] | None:
        """The records of every read that waits, at once (queue.Empty after `timeout` if none
        does); None once the last has been taken.

        The supervisor's thread must win the GIL back for each take; on a busy sniffer that is
        a wait of up to the interpreter's switch interval (5 ms), while the reading thread's
        reads grow as it falls behind. Taken a read at a time, the queue grew: at 3,000
        exchanges a second, records waited a mean 20 to 290 ms there, after the 3 ms it took
        to read them."""
        if self._ended:
            return None
        records = self.chunks.get(timeout=timeout)
        while records is not None:
            try:
                more = self.chunks.get_nowait()
            except queue.Empty:
                break
            if more is None:
                self._ended = True
                break
            records += more
        return records

    def exited(self) -> bool:
        return self._popen.poll() is not None

    @property
    def stopping(self) -> bool:
        return self._stopping

    def end(self) -> CaptureEnd:
        """Wait for tcpdump to exit (killing it if it will not) and say how it ended. Call it
        after `chunks` has delivered its None, or after stop() or kill()."""
        try:
            status = self._popen.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            status = self._popen.wait()
        for thread in self._threads:
            thread.join()
        return capture_end(status, list(self._stderr), self.interface)

    def _read_records(self) -> None:
        assert self._popen.stdout is not None
        splitter = RecordSplitter()
        try:
            # A read returns what the pipe holds: one record when the line is quiet, many
            # when it is busy, and they travel on together.
            while data := self._popen.stdout.read(READ_SIZE):
                records = splitter.feed(data)
                if not self.ready.is_set() and splitter.header is not None:
                    self.header = splitter.header
                    self.ready.set()
                    self._put(records)  # possibly none: the supervisor learns it captures
                elif records:
                    self._put(records)
        except CaptureError as error:
            self._stderr.append(str(error))
            self.kill()
        finally:
            self._popen.stdout.close()
            self._put(None)

    def _put(self, item: list[bytes] | None) -> None:
        """Queue an item, waiting for room, unless nobody will ever take it (abandoned)."""
        while not self._abandoned:
            try:
                self.chunks.put(item, timeout=0.2)
                return
            except queue.Full:
                pass

    def _read_stderr(self) -> None:
        assert self._popen.stderr is not None
        with self._popen.stderr:
            for line in self._popen.stderr:
                self._stderr.append(line.decode("utf-8", "replace").rstrip())


def capture_end(status: int, lines: Sequence[str], interface: str) -> CaptureEnd:
    """How a tcpdump on `interface` ended: its exit status and what it said on stderr."""
    received: int | None = None
    drops: dict[str, int] = {}
    for line in lines:
        if match := _STATISTICS.match(line.strip()):
            if match[2] == "received by filter":
                received = int(match[1])
            else:
                drops[_DROP_PLACES[match[2]]] = int(match[1])
    said = [line.strip() for line in lines if line.strip() and not _INFORMATION.match(line)]
    # tcpdump's error is its "tcpdump: ..." line, often with a "(reason)" line after it.
    errors = [i for i, line in enumerate(said) if line.startswith("tcpdump: ")]
    if errors:
        first = errors[0]
        message = said[first].removeprefix("tcpdump: ").removeprefix("pcap_loop: ")
        message = message.removeprefix(f"{interface}: ")
        reason = said[first + 1] if first + 1 < len(said) else ""
        if reason.startswith("(") and reason.strip("()") not in message:
            message += " " + reason
    else:
        message = said[0] if said else ""
    if not message and status:
        message = (f"tcpdump was killed by signal {-status}" if status < 0
                   else f"tcpdump exited with status {status}")
    permission = "permission" in message.lower()
    return CaptureEnd(status, message, permission, received, drops)


def permission_message(interface: str, end: CaptureEnd) -> str:
    """The one line for a tcpdump that may not capture: what it said and what to do about it."""
    return (f"tcpdump may not capture on {interface}: {end.message}; "
            + PERMISSION_HINT.format(path=find_tcpdump()))


class LiveDecoder:
    """One tshark process decoding the live pcap written to it; a thread turns its output into
    Datagrams for `sink`, a list of those of each read of tshark's output, but only once the
    previous decoder's thread has finished, so datagrams keep capture order across a change of
    tshark. finish() closes its input: it decodes what it has and exits."""

    def __init__(self, ports: Sequence[int], label: str,
                 sink: Callable[[list[Datagram]], None],
                 previous: LiveDecoder | None = None) -> None:
        self.ports = check_ports(ports)
        self.failure: str | None = None  # why it exited, when it failed
        self._sink = sink
        read_end, write_end = os.pipe()
        try:
            # tcpdump's kernel filter already keeps UDP on the ports: no display filter.
            argv = tshark_argv(["-r", "-", "-l"], self.ports, filtered=False)
            self._process = TsharkProcess(argv, label, stdin=read_end, own_group=True)
        except BaseException:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        self._stdin = os.fdopen(write_end, "wb")
        self._thread = threading.Thread(target=self._read, args=(previous,), name=label,
                                        daemon=True)
        self._thread.start()

    def write(self, records: Sequence[bytes]) -> None:
        """Pass pcap on (the file header, or packet records), in one write; CaptureError if
        tshark is no longer there to read it."""
        try:
            self._stdin.write(b"".join(records))
            self._stdin.flush()  # whole records, at once: tshark decodes what it has
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
            ports = self.ports
            for lines in self._process.batches():
                datagrams = [datagram for line in lines
                             if (datagram := to_datagram(line.split("\t"), ports)) is not None]
                if datagrams:
                    self._sink(datagrams)
            self.failure = self._process.failure()
        finally:
            self._process.stop()
