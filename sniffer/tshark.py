"""tshark: finding it, its version, the command line and fields we ask of it, one tshark process,
and the Datagram made of one row of its output. File capture (capture_file.py) and live capture
(capturer.py) both decode through tshark, started only here.

tshark reassembles IP fragments (R-IN-4: fragments are never decoded alone) and we turn its DHCP
dissector off: sniffer.dhcp decodes the raw UDP payload itself, and tshark runs faster without it
(and with the DHCP ports decoded as plain data, see decode_as).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import io
import os
import select
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import IO

from sniffer.dhcp import Datagram
from sniffer.errors import HiveError

DEFAULT_PORTS = (67, 68)
# udp.payload, which both engines read, first appeared in Wireshark 3.4.0.
MIN_TSHARK_VERSION = (3, 4, 0)
# Where tshark is looked for when PATH is unset: pyshark's list on Linux.
TSHARK_DIRECTORIES = "/usr/bin:/usr/sbin:/usr/lib/tshark:/usr/local/bin"

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
# At most this much per read1() of the live batches: no more than the buffer already holds or
# one refill of it brings. A larger request is read into a new buffer of that size: a 1 MiB one
# cost 16 us a read (mapped and unmapped each time) where 64 KiB costs 2, and a busy live
# tshark is read tens of thousands of times a minute.
BATCH_READ = 1 << 16
# tshark's stdout pipe: 1 MiB (Linux's limit for unprivileged users) instead of 64 KiB, so that
# tshark keeps decoding while we wait for Redis, rather than blocking after 100 lines.
PIPE_SIZE = 1 << 20
# What a tshark started ahead (read_ahead) may print into memory before its lines are read.
READ_AHEAD_LIMIT = 16 << 20  # about half a second of its output
AHEAD_PAUSE = 0.005  # seconds


class CaptureError(HiveError):
    """tshark is missing, too old, or failed on a file, or the capture was asked for something
    impossible: a local problem, reported in one line."""


class DamagedCapture(CaptureError):
    """tshark stopped reading a capture and said why (cut short, damaged, not a capture file):
    the packets it printed before are good, and other captures can still be read."""


class _TooOld(CaptureError):
    """tshark is older than MIN_TSHARK_VERSION."""


@functools.cache
def find_tshark() -> str:
    """Path of the tshark executable: the first on PATH (pyshark's directories when PATH is
    unset). Found without pyshark, whose import (40 ms) came before the replay's tshark could
    start."""
    path = shutil.which("tshark", path=os.environ.get("PATH", TSHARK_DIRECTORIES))
    if path is None:
        raise CaptureError("tshark not found: install it with apt-get install tshark")
    return path


@functools.cache
def tshark_version() -> str:
    """tshark's version, such as "4.0.17"; CaptureError if it is older than MIN_TSHARK_VERSION."""
    from pyshark.tshark.tshark import TSharkVersionException, get_tshark_version

    path = find_tshark()
    try:
        version = get_tshark_version(path)
    except (OSError, subprocess.CalledProcessError, TSharkVersionException) as error:
        raise CaptureError(f"{path}: cannot read the tshark version: {error}") from None
    if version.release < MIN_TSHARK_VERSION:
        minimum = ".".join(map(str, MIN_TSHARK_VERSION))
        raise _TooOld(f"tshark {version} is too old: {minimum} or newer is needed")
    return str(version)


def _too_old() -> str | None:
    """Why tshark failed if it is too old for our fields (it refuses to start), else None.

    The version is only asked after a failure: `tshark -v` before every run took 0.2 s, a tenth
    of a 100,000-packet replay."""
    try:
        tshark_version()
    except _TooOld as error:
        return str(error)
    except CaptureError:
        pass  # the version cannot be read either: tshark's own complaint says more
    return None


def read_error(label: str, stderr_lines: Iterable[str], status: int) -> CaptureError:
    """The error of a tshark that exited with `status` (negative: killed by that signal) while
    reading the capture `label`: DamagedCapture when it complained about its input, a plain
    CaptureError when it is too old or was killed."""
    message = failure_message(stderr_lines, status)
    if status < 0:
        return CaptureError(f"{label}: {message}")
    too_old = _too_old()
    if too_old is not None:
        return CaptureError(f"{label}: {too_old}")
    # tshark names the file again, as it was given: the label says it once.
    return DamagedCapture(f"{label}: " + message.replace(f'The file "{label}" ', "The file "))


def decode_as(ports: Iterable[int]) -> dict[str, str]:
    """tshark's Decode As rules (-d) that give the DHCP ports the `data` dissector, so that UDP
    does not try its heuristic dissectors on each payload first (a quarter of tshark's CPU)."""
    return {f"udp.port=={port}": "data" for port in sorted(set(ports))}


def display_filter(ports: Iterable[int]) -> str:
    """The tshark display filter that keeps UDP datagrams on the given ports, at any layer."""
    return " || ".join(f"udp.port == {port}" for port in sorted(set(ports)))


def to_datagram(values: Sequence[str], ports: frozenset[int]) -> Datagram | None:
    """A Datagram from the FIELDS values of the innermost layers; None if it is not one of ours.

    The innermost UDP layer must sit directly on IPv4 (R-IN-1: IPv4 UDP datagrams on a DHCP port),
    must not be the copy an ICMP error quotes, and must use one of the ports: the display filter
    matches a port at any layer.
    """
    if len(values) != _FIELD_COUNT:
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
        return _datagram((float(ts), src, dst, source_port, destination_port, data, truncated,
                          int(frame)))
    except ValueError:
        return None


_FIELD_COUNT = len(FIELDS)
_datagram = Datagram._make  # in its order: ts src dst sport dport payload truncated frame


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
    """The payload cut to the UDP length (R-IN-2: bounded by the UDP length and what was
    captured), and whether a header claims more than we have.

    tshark's udp.payload already stops at the IP total length (so a link-layer trailer is gone)
    and at the captured length; ip_room is what the IP total length leaves for the payload.
    """
    if udp_len is None:  # the capture ends inside the UDP header
        return b"", True
    room = udp_len - UDP_HEADER
    if room < 0:  # an impossible UDP length: there is no payload to speak of
        return b"", False
    return raw[:room], len(raw) < max(room, ip_room)


def check_ports(ports: Sequence[int]) -> frozenset[int]:
    """The DHCP ports as a set; CaptureError unless there are some, each 1-65535."""
    if not ports or any(not 0 < port < 65536 for port in ports):
        raise CaptureError(f"DHCP ports must be 1-65535, got {list(ports)}")
    return frozenset(ports)


def tshark_argv(source: Sequence[str], ports: Iterable[int], *, filtered: bool = True
                ) -> list[str]:
    """The tshark command line that prints FIELDS for each matching frame of `source`
    (such as ["-r", path]). Without `filtered`, for a source a kernel filter has already
    narrowed to UDP on the ports, every frame is printed: the display filter made tshark keep
    its fields' tree for each frame, 4% of its work, and to_datagram checks the ports anyway."""
    argv = [find_tshark(), *source, "-n", "--disable-protocol", DISABLED_PROTOCOL]
    for name, value in PREFERENCES.items():
        argv += ["-o", f"{name}:{value}"]
    for criterion, protocol in decode_as(ports).items():
        argv += ["-d", f"{criterion},{protocol}"]
    if filtered:
        argv += ["-Y", display_filter(ports)]
    argv += ["-T", "fields", "-E", "occurrence=l"]
    for field in FIELDS:
        argv += ["-e", field]
    return argv


class TsharkProcess:
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
        self._ahead: list[bytes] = []
        self._ahead_stop = threading.Event()
        self._ahead_thread: threading.Thread | None = None

    def read_ahead(self, limit: int = READ_AHEAD_LIMIT) -> None:
        """Take its output into memory from a thread of its own, up to `limit` bytes, until
        lines() is called: a tshark started before Python is ready to read goes on decoding,
        where a full pipe would stop it after a megabyte (50 ms of its work)."""
        self._ahead_thread = threading.Thread(target=self._read_ahead, args=(limit,),
                                              name="tshark-read-ahead", daemon=True)
        self._ahead_thread.start()

    def _read_ahead(self, limit: int) -> None:
        assert self._popen.stdout is not None
        fd = self._popen.stdout.fileno()
        taken = 0
        # Short waits, so that the thread stops soon once asked; between reads, a pause that
        # lets the pipe fill (tshark writes 4 KiB at a time): each read takes the GIL from the
        # imports.
        while taken < limit and not self._ahead_stop.wait(AHEAD_PAUSE):
            if select.select([fd], [], [], AHEAD_PAUSE)[0]:
                data = os.read(fd, STDOUT_BUFFER)
                if not data:
                    return
                self._ahead.append(data)
                taken += len(data)

    def _end_read_ahead(self) -> bytes:
        """Stop the read-ahead thread, if there is one; what it read."""
        thread, self._ahead_thread = self._ahead_thread, None
        if thread is None:
            return b""
        self._ahead_stop.set()
        thread.join()
        ahead, self._ahead = b"".join(self._ahead), []
        return ahead

    def lines(self) -> Iterator[str]:
        """Its output as text lines (with their newlines), what was read ahead first."""
        stdout = self._popen.stdout
        assert stdout is not None
        ahead = self._end_read_ahead()
        return _after(ahead, stdout) if ahead else stdout

    def batches(self) -> Iterator[list[str]]:
        """Its output as it comes, in batches of whole lines (without their newlines): what
        each read of the pipe returns, one line while tshark keeps up with a quiet capture,
        many when it is busy. For live capture, where handing lines on one by one costs more
        than making them."""
        stdout = self._popen.stdout
        assert isinstance(stdout, io.TextIOWrapper)
        pipe = stdout.buffer
        rest = b""
        while data := pipe.read1(BATCH_READ):
            cut = data.rfind(b"\n") + 1
            if not cut:
                rest += data
                continue
            text = (rest + data[:cut]).decode("ascii", "replace")
            rest = data[cut:]
            yield text.split("\n")[:-1]
        if rest:
            yield [rest.decode("ascii", "replace")]

    def finish(self) -> None:
        """Wait for the exit after end of output; CaptureError (see read_error) if tshark
        failed."""
        status = self._popen.wait()
        if status != 0:
            raise read_error(self._label, self._stderr_lines(), status)

    def failure(self) -> str | None:
        """Wait for the exit; None if tshark succeeded, else why it failed, in one line."""
        status = self._popen.wait()
        if status == 0:
            return None
        message = failure_message(self._stderr_lines(), status)
        # < 0: we or someone killed it
        return (_too_old() or message) if status > 0 else message

    def _stderr_lines(self) -> list[str]:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace").splitlines()

    def kill(self) -> None:
        if self.running():
            self._popen.kill()

    def running(self) -> bool:
        return self._popen.poll() is None

    def stop(self) -> None:
        """Stop tshark if it still runs, reap it and release the pipes.

        Closing stdout first makes a tshark blocked on a full pipe fail its write and exit,
        instead of waiting there for the SIGTERM it cannot act on."""
        self._end_read_ahead()
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


def _after(ahead: bytes, rest: IO[str]) -> Iterator[str]:
    """The lines of `ahead` (bytes of tshark's output), then those of `rest`, the line that
    `ahead` cut in two made whole again."""
    cut = ahead.rfind(b"\n") + 1
    yield from io.TextIOWrapper(io.BytesIO(ahead[:cut]), encoding="ascii", errors="replace")
    if cut < len(ahead):
        yield ahead[cut:].decode("ascii", "replace") + next(rest, "")
    yield from rest


def failure_message(stderr_lines: Iterable[str], status: int) -> str:
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

