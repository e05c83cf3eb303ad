"""The pyshark engine for capture files (`--engine pyshark`): pyshark's FileCapture in EK mode,
its packets turned into the same FIELDS values tshark -T fields prints, so both engines share
to_datagram."""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyshark
from pyshark import ek_field_mapping

from sniffer.tshark import (
    DISABLED_PROTOCOL,
    PREFERENCES,
    decode_as,
    display_filter,
    find_tshark,
    read_error,
    tshark_version,
)


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


class PysharkReader:
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
            raise read_error(str(self._path), self._capture.stderr_lines, status)

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

