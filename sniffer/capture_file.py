"""Reading a capture file: `read_file(path)` yields one Datagram per captured IPv4 UDP datagram on
a DHCP port, through tshark's field output (default engine) or pyshark's FileCapture in EK mode
(sniffer.pyshark_engine). `FileCapture` is the same as a context manager that also reports how far
tshark has read, for a progress bar. The path `-` reads standard input (tshark engine only).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import stat
import struct
import subprocess
import termios
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Protocol

from sniffer import head_start
from sniffer.dhcp import Datagram
from sniffer.tshark import (
    DEFAULT_PORTS,
    CaptureError,
    TsharkProcess,
    check_ports,
    find_tshark,
    to_datagram,
    tshark_argv,
)

ENGINES = ("tshark", "pyshark")
STDIN = "-"


class FileCapture:
    """The datagrams of one pcap or pcapng file, read by one tshark process.

    Iterate it once. tshark starts on the first iteration and is stopped and reaped by close(),
    by leaving the `with` block, or when iteration ends; a tshark failure is raised as
    CaptureError (DamagedCapture for a file cut short or corrupt) after every datagram tshark
    printed before it has been yielded.
    """

    def __init__(
        self, path: Path | str, *, engine: str = "tshark", ports: Sequence[int] = DEFAULT_PORTS
    ) -> None:
        if engine not in ENGINES:
            raise CaptureError(
                f"unknown capture engine {engine!r}: use one of {', '.join(ENGINES)}"
            )
        self.path = Path(path)
        self.stdin = str(path) == STDIN
        self.label = "standard input" if self.stdin else str(path)  # for messages
        self.ports = check_ports(ports)
        self.engine = engine
        self.size = stdin_size(engine) if self.stdin else _readable_size(self.path)
        self.skipped = 0  # matched frames that are not an IPv4 UDP datagram on our ports
        find_tshark()  # its version is checked if it fails; pyshark's engine reads it
        if engine == "tshark":
            self._reader: _Reader = _TsharkReader(self.path, self.label, self.stdin)
        else:  # imported only when asked for: pyshark takes 20 ms to import
            from sniffer.pyshark_engine import PysharkReader

            self._reader = PysharkReader(self.path)
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

    def empty(self) -> bool:
        """Whether there is nothing at all to read: a 0-byte file, or standard input at its end
        before any data (waits for the first data or the end, and reads nothing)."""
        if self.stdin:
            return _stdin_at_end()
        return self.size == 0

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
        ports = self.ports
        rows = self._reader.rows(ports)
        try:
            for values in rows:
                datagram = to_datagram(values, ports)
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


def stdin_size(engine: str) -> int:
    """The size of standard input when it is a file (0 for a pipe); CaptureError if `engine`
    cannot read it, or if it is a terminal, where tshark would wait for a capture typed in."""
    if engine != "tshark":
        raise CaptureError(f"the {engine} engine reads only named files, not standard input "
                           "(-): use the tshark engine")
    try:
        info = os.fstat(0)
    except OSError as error:
        raise CaptureError(f"standard input: {error.strerror}") from None
    if os.isatty(0):
        raise CaptureError("standard input (-) is a terminal, not a capture: pipe one in")
    return info.st_size if stat.S_ISREG(info.st_mode) else 0


def _stdin_at_end() -> bool:
    """Whether standard input holds no data at all. A pipe or socket at its end polls readable
    with 0 bytes waiting; nothing is read, so tshark still gets all of it."""
    info = os.fstat(0)
    if stat.S_ISREG(info.st_mode):
        return info.st_size - os.lseek(0, 0, os.SEEK_CUR) <= 0
    select.select([0], [], [])
    try:
        waiting = fcntl.ioctl(0, termios.FIONREAD, struct.pack("i", 0))
    except OSError:
        return False  # not a pipe or socket (/dev/null, say): tshark will say what it is
    return bool(struct.unpack("i", waiting)[0] == 0)


class _Reader(Protocol):
    def rows(self, ports: frozenset[int]) -> Generator[Sequence[str], None, None]: ...
    def position(self) -> int: ...
    def close(self) -> None: ...


class _TsharkReader:
    """tshark -T fields: one tab-separated line of FIELDS per matching frame."""

    def __init__(self, path: Path, label: str, stdin: bool) -> None:
        self._path = path
        self._label = label
        self._stdin = stdin
        self._process: TsharkProcess | None = None
        self._position = 0
        # tshark's descriptor for the file, once found (its standard input, if that is read)
        self._fd: str | None = "0" if stdin else None

    def rows(self, ports: frozenset[int]) -> Generator[Sequence[str], None, None]:
        argv = tshark_argv(["-r", STDIN if self._stdin else str(self._path)], ports)
        self._process = head_start.claim(argv) or TsharkProcess(
            argv, self._label, stdin=0 if self._stdin else subprocess.DEVNULL)
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

