"""tshark and dumpcap processes: the only module that starts them.

`read_file(path)` yields one Datagram per captured IPv4 UDP datagram on a DHCP port, through
tshark's field output (default engine) or pyshark's FileCapture in EK mode.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from sniffer.dhcp import Datagram


class CaptureError(Exception):
    """tshark is missing, too old, or failed on a file: a local problem, reported in one line."""


def read_file(path: Path, *, engine: str = "tshark", ports: tuple[int, ...] = (67, 68)) -> Iterator[Datagram]:
    raise NotImplementedError
