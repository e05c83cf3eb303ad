"""tshark and dumpcap processes: the only module that starts them.

`read_file(path)` yields one Datagram per captured IPv4 UDP datagram on a DHCP port, through
tshark's field output (default engine) or pyshark's FileCapture in EK mode. `FileCapture` is the
same as a context manager that also reports how far tshark has read, for a progress bar.

tshark reassembles IP fragments (R-IN-4) and we turn its DHCP dissector off: sniffer.dhcp decodes
the raw UDP payload itself, and tshark runs faster without it (and with the DHCP ports
decoded as plain data, see decode_as).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import functools
import os
import queue
import re
import shutil
import signal
import stat
import struct
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol

import pyshark
from pyshark import ek_field_mapping
from pyshark.tshark.tshark import (
    TSharkNotFoundException,
    TSharkVersionException,
    get_process_path,
    get_tshark_version,
)

from sniffer.dhcp import Datagram, new_datagram
from sniffer.errors import HiveError

ENGINES = ("tshark", "pyshark")
DEFAULT_PORTS = (67, 68)
# udp.payload, which both engines read, first appeared in Wireshark 3.4.0.
MIN_TSHARK_VERSION = (3, 4, 0)

# The order of the values the tshark engine prints and the pyshark engine collects.
FIELDS = (
    "frame.number",
    "frame.time_epoch",
    "frame.protocols",
    "ip.src",
    "ip.dst",
    "ip.len",
    "ip.hdr_len",
    "udp.srcport",
    "udp.dstport",
    "udp.length",
    "udp.payload",
)
# Fixed preferences: fragments are reassembled, and a port's dissector (see decode_as) comes
# before UDP's heuristic ones, whatever the user's Wireshark profile says.
PREFERENCES = {"ip.defragment": "TRUE", "udp.try_heuristic_first": "FALSE"}
DISABLED_PROTOCOL = "dhcp"
UDP_HEADER = 8
STOP_TIMEOUT = 5.0  # seconds tshark gets to exit after SIGTERM before it is killed
STDOUT_BUFFER = 1 << 20
# tshark's stdout pipe: 1 MiB (Linux's limit for unprivileged users) instead of 64 KiB, so that
# tshark keeps decoding while we wait for Redis, rather than blocking after 100 lines.
PIPE_SIZE = 1 << 20


class CaptureError(HiveError):
    """tshark is missing, too old, or failed on a file, or the capture was asked for something
    impossible: a local problem, reported in one line."""


class _TooOld(CaptureError):
    """tshark is older than MIN_TSHARK_VERSION."""


@functools.cache
def find_tshark() -> str:
    """Path of the tshark executable."""
    try:
        return str(get_process_path())
    except TSharkNotFoundException:
        raise CaptureError("tshark not found: install it with apt-get install tshark") from None


@functools.cache
def tshark_version() -> str:
    """tshark's version, such as "4.0.17"; CaptureError if it is older than MIN_TSHARK_VERSION."""
    path = find_tshark()
    try:
        version = get_tshark_version(path)
    except (OSError, subprocess.CalledProcessError, TSharkVersionException) as error:
        raise CaptureError(f"{path}: cannot read the tshark version: {error}") from None
    if version.release < MIN_TSHARK_VERSION:
        minimum = ".".join(map(str, MIN_TSHARK_VERSION))
        raise _TooOld(f"tshark {version} is too old: {minimum} or newer is needed")
    return str(version)


def _explain(failure: str) -> str:
    """Why tshark exited with an error: that it is too old, if it is, else what it said.

    The version is only asked now, after a failure (a tshark too old for our fields refuses to
    start): `tshark -v` before every run took 0.2 s, a tenth of a 100,000-packet replay."""
    try:
        tshark_version()
    except _TooOld as error:
        return str(error)
    except CaptureError:
        pass  # the version cannot be read either: tshark's own complaint says more
    return failure


def decode_as(ports: Iterable[int]) -> dict[str, str]:
    """tshark's Decode As rules (-d) that give the DHCP ports the `data` dissector, so that UDP
    does not try its heuristic dissectors on each payload first (a quarter of tshark's CPU)."""
    return {f"udp.port=={port}": "data" for port in sorted(set(ports))}


def display_filter(ports: Iterable[int]) -> str:
    """The tshark display filter that keeps UDP datagrams on the given ports, at any layer."""
    return " || ".join(f"udp.port == {port}" for port in sorted(set(ports)))


class FileCapture:
    """The datagrams of one pcap or pcapng file, read by one tshark process.

    Iterate it once. tshark starts on the first iteration and is stopped and reaped by close(),
    by leaving the `with` block, or when iteration ends; a tshark failure is raised as
    CaptureError after every datagram tshark printed before it has been yielded.
    """

    def __init__(
        self, path: Path | str, *, engine: str = "tshark", ports: Sequence[int] = DEFAULT_PORTS
    ) -> None:
        if engine not in ENGINES:
            raise CaptureError(
                f"unknown capture engine {engine!r}: use one of {', '.join(ENGINES)}"
            )
        self.path = Path(path)
        self.ports = _check_ports(ports)
        self.engine = engine
        self.size = _readable_size(self.path)
        self.skipped = 0  # matched frames that are not an IPv4 UDP datagram on our ports
        find_tshark()  # its version is checked if it fails (_explain); pyshark's engine reads it
        self._reader: _Reader = (
            _TsharkReader(self.path) if engine == "tshark" else _PysharkReader(self.path)
        )
        self._iterator: Generator[Datagram, None, None] | None = None
        self._done = False

    def __enter__(self) -> FileCapture:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[Datagram]:
        if self._iterator is None:
            self._iterator = self._datagrams()
        return self._iterator

    def bytes_read(self) -> int:
        """How many bytes of the file tshark has read so far (0 while that is unknown)."""
        if self._done:
            return self.size
        return self._reader.position()

    def close(self) -> None:
        """End the iteration, stop tshark if it still runs and reap it. Safe to call twice."""
        if self._iterator is not None:
            self._iterator.close()
        self._reader.close()

    def _datagrams(self) -> Generator[Datagram, None, None]:
        rows = self._reader.rows(self.ports)
        try:
            for values in rows:
                datagram = to_datagram(values, self.ports)
                if datagram is None:
                    self.skipped += 1
                else:
                    yield datagram
            self._done = True
        finally:
            rows.close()
            self._reader.close()


def read_file(
    path: Path | str, *, engine: str = "tshark", ports: Sequence[int] = DEFAULT_PORTS
) -> Iterator[Datagram]:
    """Yield the datagrams of a capture file (see FileCapture). Closing the generator early
    stops tshark."""
    with FileCapture(path, engine=engine, ports=ports) as capture:
        yield from capture


def to_datagram(values: Sequence[str], ports: frozenset[int]) -> Datagram | None:
    """A Datagram from the FIELDS values of the innermost layers; None if it is not one of ours.

    The innermost UDP layer must sit directly on IPv4 (R-IN-1), must not be the copy an ICMP
    error quotes, and must use one of the ports: the display filter matches a port at any layer.
    """
    if len(values) != len(FIELDS):
        return None
    frame, ts, protocols, src, dst, ip_len, ip_hdr_len, sport, dport, udp_len, payload = values
    try:
        if not _innermost_udp_over_ipv4(protocols):
            return None
        source_port, destination_port = int(sport), int(dport)
        if source_port not in ports and destination_port not in ports:
            return None
        ip_room = int(ip_len) - int(ip_hdr_len) - UDP_HEADER if ip_len and ip_hdr_len else 0
        data, truncated = _bounded(
            bytes.fromhex(payload), int(udp_len) if udp_len else None, ip_room
        )
        return new_datagram(  # Datagram(...) costs twice as much
            ts=float(ts),
            src=src,
            dst=dst,
            sport=source_port,
            dport=destination_port,
            payload=data,
            truncated=truncated,
            frame=int(frame),
        )
    except ValueError:
        return None


# A capture holds a handful of distinct protocol stacks: remembering the answer saves 0.5 us of
# every datagram's 3.7 here. Bounded, as live traffic chooses the strings.
@functools.lru_cache(maxsize=1024)
def _innermost_udp_over_ipv4(protocols: str) -> bool:
    layers = protocols.split(":")
    if "udp" not in layers:
        return False
    udp = len(layers) - 1 - layers[::-1].index("udp")
    return udp > 0 and layers[udp - 1] == "ip" and "icmp" not in layers[:udp]


def _bounded(raw: bytes, udp_len: int | None, ip_room: int) -> tuple[bytes, bool]:
    """The payload cut to the UDP length (R-IN-2), and whether a header claims more than we have.

    tshark's udp.payload already stops at the IP total length (so a link-layer trailer is gone)
    and at the captured length; ip_room is what the IP total length leaves for the payload.
    """
    if udp_len is None:  # the capture ends inside the UDP header
        return b"", True
    room = udp_len - UDP_HEADER
    if room < 0:  # an impossible UDP length: there is no payload to speak of
        return b"", False
    return raw[:room], len(raw) < max(room, ip_room)


def _check_ports(ports: Sequence[int]) -> frozenset[int]:
    if not ports or any(not 0 < port < 65536 for port in ports):
        raise CaptureError(f"DHCP ports must be 1-65535, got {list(ports)}")
    return frozenset(ports)


def _readable_size(path: Path) -> int:
    """The file's size; CaptureError naming it if it cannot be read (checked the same way for
    both engines, so both report a missing file alike). Not opened: it may be a FIFO."""
    try:
        info = path.stat()
    except OSError as error:
        raise CaptureError(f"{path}: {error.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise CaptureError(f"{path}: Is a directory")
    if not os.access(path, os.R_OK):
        raise CaptureError(f"{path}: Permission denied")
    return info.st_size


class _Reader(Protocol):
    def rows(self, ports: frozenset[int]) -> Generator[Sequence[str], None, None]: ...
    def position(self) -> int: ...
    def close(self) -> None: ...


class _TsharkReader:
    """tshark -T fields: one tab-separated line of FIELDS per matching frame."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._process: _TsharkProcess | None = None
        self._position = 0
        self._fd: str | None = None  # tshark's descriptor for the file, once found

    def rows(self, ports: frozenset[int]) -> Generator[Sequence[str], None, None]:
        argv = tshark_argv(["-r", str(self._path)], ports)
        self._process = _TsharkProcess(argv, str(self._path))
        for line in self._process.lines():
            yield line.rstrip("\n").split("\t")
        self._process.finish()

    def position(self) -> int:
        """Read tshark's file offset from /proc; keep the last value when that is not possible."""
        if self._process is None or not self._process.running():
            return self._position  # a reaped tshark's pid may already belong to another process
        pid = self._process.pid
        try:
            if self._fd is None:
                self._fd = _find_fd(pid, os.path.realpath(self._path))
            if self._fd is not None:
                self._position = _fd_position(pid, self._fd)
        except (OSError, ValueError):
            pass  # not Linux, or tshark has exited: the last known value will do
        return self._position

    def close(self) -> None:
        if self._process is not None:
            self._process.stop()


def tshark_argv(source: Sequence[str], ports: Iterable[int]) -> list[str]:
    """The tshark command line that prints FIELDS for each matching frame of `source`
    (such as ["-r", path])."""
    argv = [find_tshark(), *source, "-n", "--disable-protocol", DISABLED_PROTOCOL]
    for name, value in PREFERENCES.items():
        argv += ["-o", f"{name}:{value}"]
    for criterion, protocol in decode_as(ports).items():
        argv += ["-d", f"{criterion},{protocol}"]
    argv += ["-Y", display_filter(ports), "-T", "fields", "-E", "occurrence=l"]
    for field in FIELDS:
        argv += ["-e", field]
    return argv


def _find_fd(pid: int, target: str) -> str | None:
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        with contextlib.suppress(OSError):
            if os.readlink(f"{fd_dir}/{fd}") == target:
                return fd
    return None


def _fd_position(pid: int, fd: str) -> int:
    with open(f"/proc/{pid}/fdinfo/{fd}") as info:
        for line in info:
            if line.startswith("pos:"):
                return int(line.split()[1])
    raise ValueError("no pos line")


class _TsharkProcess:
    """One tshark run: stdout read as text lines, stderr kept in an unnamed temporary file
    (nothing to clean up, and no pipe that could fill up and block tshark)."""

    def __init__(self, argv: list[str], label: str, *, stdin: int = subprocess.DEVNULL,
                 own_group: bool = False) -> None:
        """`own_group`: in a process group of its own, so that a Ctrl-C at the terminal reaches
        only the sniffer, which then stops its children in order."""
        self._label = label
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop())
        try:
            self._popen: subprocess.Popen[str] = subprocess.Popen(
                argv,
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                bufsize=STDOUT_BUFFER,
                encoding="ascii",
                errors="replace",
                process_group=0 if own_group else None,
            )
        except OSError as error:
            self._stderr.close()
            raise CaptureError(f"{label}: cannot start tshark: {error.strerror}") from None
        self.pid = self._popen.pid
        assert self._popen.stdout is not None
        with contextlib.suppress(OSError):  # a lower limit (pipe-max-size) keeps the default
            fcntl.fcntl(self._popen.stdout, fcntl.F_SETPIPE_SZ, PIPE_SIZE)

    def lines(self) -> IO[str]:
        assert self._popen.stdout is not None
        return self._popen.stdout

    def finish(self) -> None:
        """Wait for the exit after end of output; CaptureError if tshark failed."""
        failure = self.failure()
        if failure is not None:
            raise CaptureError(f"{self._label}: {failure}")

    def failure(self) -> str | None:
        """Wait for the exit; None if tshark succeeded, else why it failed, in one line."""
        status = self._popen.wait()
        if status == 0:
            return None
        self._stderr.seek(0)
        lines = self._stderr.read().decode("utf-8", "replace").splitlines()
        message = _failure_message(lines, status)
        return _explain(message) if status > 0 else message  # < 0: we or someone killed it

    def kill(self) -> None:
        if self.running():
            self._popen.kill()

    def running(self) -> bool:
        return self._popen.poll() is None

    def stop(self) -> None:
        """Stop tshark if it still runs, reap it and release the pipes.

        Closing stdout first makes a tshark blocked on a full pipe fail its write and exit,
        instead of waiting there for the SIGTERM it cannot act on."""
        if self._popen.stdout is not None:
            self._popen.stdout.close()
        if self.running():
            self._popen.terminate()
            try:
                self._popen.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
        self._stderr.close()


def _failure_message(stderr_lines: Iterable[str], status: int) -> str:
    """One line from tshark's stderr, without blank lines and the warning it prints as root."""
    message = " ".join(
        line.strip()
        for line in stderr_lines
        if line.strip() and not line.startswith("Running as user")
    )
    if message:
        return message
    if status < 0:
        return f"tshark was killed by signal {-status}"
    return f"tshark exited with status {status}"


class _PysharkCapture(pyshark.FileCapture):  # type: ignore[misc]
    """pyshark's FileCapture with a deterministic end, keeping tshark's exit status and stderr.

    pyshark 0.6 kills tshark as soon as its output ends, racing tshark's own exit: asyncio then
    logs "Unknown child process", and the exit status that reports a truncated file is lost. Its
    stderr handler also keeps only the last line. These two hooks replace that behaviour.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.exit_status: int | None = None
        self.stderr_lines: list[str] = []

    async def _cleanup_subprocess(self, process: asyncio.subprocess.Process) -> None:
        if not self._eof_reached and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()  # stopped early: tshark may still have a long way to go
        self.exit_status = await process.wait()

    async def _handle_process_stderr_forever(self, stderr: asyncio.StreamReader) -> None:
        async for line in stderr:
            self.stderr_lines.append(line.decode("utf-8", "replace"))


class _PysharkReader:
    """pyshark.FileCapture in EK mode, on an event loop of its own that is closed afterwards."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._loop: asyncio.AbstractEventLoop | None = None
        self._capture: _PysharkCapture | None = None
        self._packets: Generator[Any, None, None] | None = None

    def rows(self, ports: frozenset[int]) -> Generator[Sequence[str], None, None]:
        _load_ek_field_types()
        self._loop = asyncio.new_event_loop()
        self._capture = _PysharkCapture(
            str(self._path),
            keep_packets=False,
            display_filter=display_filter(ports),
            disable_protocol=DISABLED_PROTOCOL,
            decode_as=decode_as(ports),
            override_prefs=PREFERENCES,
            use_ek=True,
            tshark_path=find_tshark(),
            eventloop=self._loop,
        )
        self._packets = iter(self._capture)
        for packet in self._packets:
            yield _ek_values(packet)
        self._capture.close()  # waits for tshark's stderr to end
        status = self._capture.exit_status
        if status:
            message = _failure_message(self._capture.stderr_lines, status)
            raise CaptureError(f"{self._path}: {message}")

    def position(self) -> int:
        return 0

    def close(self) -> None:
        """Kill tshark if it still runs (closing pyshark's generator does that), then let
        pyshark collect its stderr tasks, and close the loop."""
        if self._loop is None or self._loop.is_closed():
            return
        if self._packets is not None:
            self._packets.close()
        if self._capture is not None:
            self._capture.close()
        self._loop.close()


def _load_ek_field_types() -> None:
    """pyshark loads its cached EK field types on first use and leaves the file open. Load them
    here first, without the ResourceWarning that leak causes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        ek_field_mapping.MAPPING.load_mapping(tshark_version(), tshark_path=find_tshark())


def _ek_values(packet: Any) -> list[str]:
    """The FIELDS values of one pyshark EK packet, in the form tshark -T fields prints them."""
    ip = _innermost_layer(packet, "ip")
    udp = _innermost_layer(packet, "udp")
    return [
        str(packet.number),
        packet.sniff_timestamp,
        packet.frame_info.get_field("protocols") or "",
        *(str(ip.get(f"ip_ip_{name}", "")) for name in ("src", "dst", "len", "hdr_len")),
        *(str(udp.get(f"udp_udp_{name}", "")) for name in ("srcport", "dstport", "length")),
        str(udp.get("udp_udp_payload", "")).replace(":", ""),
    ]


def _innermost_layer(packet: Any, name: str) -> Mapping[str, Any]:
    """The EK fields of the last `name` layer. pyshark 0.6 keeps a repeated layer (a tunnel) as
    one layer holding a list of field dicts, which its get_field cannot read, so read the dicts."""
    for layer in reversed(packet.layers):
        if layer.layer_name == name:
            fields = layer._fields_dict
            return fields[-1] if isinstance(fields, list) else fields  # type: ignore[no-any-return]
    return {}


# ---- live capture ----------------------------------------------------------------------------
#
# dumpcap captures (the BPF filter runs in the kernel, -B sizes the kernel buffer) and writes
# pcapng to a pipe; the sniffer cuts that stream into blocks and writes them on to a tshark that
# reads pcapng on its stdin. With the sniffer in between, tshark can be replaced at a block
# boundary (a new one gets the section header and interface blocks first), and the dumpcap of a
# scheduled restart can overlap the old one: sniffer.live does both.

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


class TsharkLeg:
    """One tshark decoding the pcapng blocks written to it; a thread turns its output into
    Datagrams for `sink`, but only once the previous leg's thread has finished, so datagrams
    keep capture order across a change of tshark. finish() closes its input: it decodes what
    it has and exits."""

    def __init__(self, ports: Sequence[int], label: str, sink: Callable[[Datagram], None],
                 previous: TsharkLeg | None = None) -> None:
        self.ports = _check_ports(ports)
        self.frames = 0  # frames written to it
        self.skipped = 0  # frames it printed that are not one of our datagrams
        self.failure: str | None = None  # why it exited, when it failed
        self._sink = sink
        read_end, write_end = os.pipe()
        try:
            self._process = _TsharkProcess(tshark_argv(["-r", "-", "-l"], self.ports), label,
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

    def _read(self, previous: TsharkLeg | None) -> None:
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
