"""The replay command's work: capture files read in order through the pipeline, with a progress
bar on a terminal, and its summary.

A damaged file (cut short, corrupt, not a capture) stops only itself: the packets tshark read
before the damage go through the pipeline, a warning names the file and says what tshark found,
and the next file is read. An empty file is a warning and nothing more.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from enum import StrEnum
from typing import TYPE_CHECKING

from sniffer.capture_file import FileCapture
from sniffer.commands import RejectReason
from sniffer.dhcp import Datagram
from sniffer.pipeline import Pipeline
from sniffer.tshark import DamagedCapture

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress


class Pace(StrEnum):
    fast = "fast"
    realtime = "realtime"


# How the summary names each reason, for one reply and for several.
REASON_WORDS: dict[RejectReason, tuple[str, str]] = {
    RejectReason.ROGUE_REPLY: ("from a rogue server", "from rogue servers"),
    RejectReason.ROGUE_NAK: ("NAK from a rogue server", "NAKs from rogue servers"),
    RejectReason.ACK_TO_INFORM: ("ACK to an INFORM", "ACKs to INFORMs"),
    RejectReason.BAD_YIADDR: ("with an unusable yiaddr", "with an unusable yiaddr"),
    RejectReason.NO_LEASE_TIME: ("without a lease time", "without a lease time"),
    RejectReason.ZERO_LEASE: ("with a zero lease time", "with a zero lease time"),
    RejectReason.LATE_OTHER_SERVER: ("from a server the client did not choose",
                                     "from servers the clients did not choose"),
    RejectReason.STALE: ("stale", "stale"),
    RejectReason.ALREADY_EXPIRED: ("already over", "already over"),
}


def replay_files(pipeline: Pipeline, paths: Sequence[str], engine: str, pace: Pace,
                 warn: Callable[[str], None], progress_on: Console | None = None) -> int:
    """Feed the files' datagrams to the pipeline, in order; `progress_on`: draw a progress bar
    there. Returns how many files were damaged (each one warned about)."""
    damaged = 0
    with _progress(progress_on) if progress_on is not None else nullcontext() as progress:
        for path in paths:
            packets = pipeline.stats["packets"]
            try:
                with FileCapture(path, engine=engine) as capture:
                    if capture.empty():
                        warn(f"{capture.label}: empty, nothing to replay")
                        continue
                    _replay_one(pipeline, capture, pace, progress)
            except DamagedCapture as problem:
                damaged += 1
                warn(_damage(str(problem), pipeline.stats["packets"] - packets))
    return damaged


def _damage(problem: str, packets: int) -> str:
    """The warning for a damaged file: what tshark said, and what was read before."""
    if not packets:
        return problem
    before = _count(packets, "packet", "packets")
    return f"{problem}{'' if problem.endswith('.') else '.'} Replayed what came before ({before})."


def summary(files: int, stats: Mapping[str, int], rejected: Mapping[str, int],
            elapsed: float) -> str:
    """The one-line summary; `rejected` counts rejected replies by RejectReason."""
    return (
        f"{_count(files, 'file', 'files')}: {_count(stats['packets'], 'packet', 'packets')}, "
        f"{_count(stats['messages'], 'DHCP message', 'DHCP messages')}, "
        f"{_count(stats['written'], 'lease written', 'leases written')}, "
        f"{stats['deleted']:,} deleted, {rejections(stats['rejected'], rejected)}, "
        f"{_count(stats['malformed'], 'malformed packet', 'malformed packets')} dropped "
        f"({elapsed:.1f}s)"
    )


def rejections(total: int, by_reason: Mapping[str, int]) -> str:
    """"3 replies rejected (2 from rogue servers, 1 stale)": the reasons that occurred."""
    text = _count(total, "reply rejected", "replies rejected")
    reasons = [_count(by_reason[reason], *words) for reason, words in REASON_WORDS.items()
               if by_reason.get(reason)]
    return f"{text} ({', '.join(reasons)})" if reasons else text


def _count(n: int, one: str, several: str) -> str:
    return f"{n:,} {one if n == 1 else several}"


def _replay_one(pipeline: Pipeline, capture: FileCapture, pace: Pace,
                progress: Progress | None) -> None:
    datagrams = _paced(capture, pace)
    if progress is None:
        pipeline.process(datagrams)
        return
    stats = pipeline.stats
    task = progress.add_task(capture.path.name if not capture.stdin else capture.label,
                             total=capture.size or None, packets=0, leases=0, rate=0.0)
    started = time.monotonic()
    first_packets = stats["packets"]

    def update() -> None:
        elapsed = max(time.monotonic() - started, 1e-6)
        packets = stats["packets"] - first_packets
        progress.update(task, completed=capture.bytes_read(), packets=packets,
                        leases=stats["written"], rate=packets / elapsed)

    try:
        for n, datagram in enumerate(datagrams, 1):
            pipeline.feed(datagram)
            if n % 1000 == 0:
                update()
    finally:
        update()  # where a damaged file stopped stays on screen
    progress.update(task, completed=capture.size or 1, total=capture.size or 1)


def _progress(console: Console) -> Progress:
    # Imported only for a bar on a terminal: rich.progress is 3-5 ms of every replay's start.
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
        TextColumn("{task.fields[packets]:>10,} packets {task.fields[leases]:>8,} leases "
                   "{task.fields[rate]:>8,.0f}/s"),
        TimeElapsedColumn(),
    )
    return Progress(*columns, console=console, transient=False)


def _paced(datagrams: Iterable[Datagram], pace: Pace) -> Iterable[Datagram]:
    return datagrams if pace is Pace.fast else _realtime(datagrams)


def _realtime(datagrams: Iterable[Datagram]) -> Iterator[Datagram]:
    first: float | None = None
    started = time.monotonic()
    for datagram in datagrams:
        if first is None:
            first = datagram.ts
        delay = (datagram.ts - first) - (time.monotonic() - started)
        if delay > 0:
            time.sleep(delay)
        yield datagram

