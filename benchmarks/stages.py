"""Where the ACK-to-Redis latency goes, stage by stage, in one live run of benchmarks/live.py.

    sudo python benchmarks/stages.py RATE [--seconds N] [--tree CHECKOUT]

The sniffer runs under a probe (this file, `--probe`) that wraps four of its functions to note
when each packet passes: the capture's bytes cut into packets as they come out of the
capturer's pipe, tshark's line turned into a Datagram, the lease change handed to the Redis
writer, and the batch write to Redis (start, return). Packets are followed by their kernel
timestamp, which the sniffer's copy and the benchmark's own capture of the ACK share; lease
changes by address. The grant is made from whichever copy of the ACK (server side, up0, or
client side, down0) reaches the tracker first: the stages follow that copy. The probe costs a
few microseconds a packet.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import os
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
STAGES = ("read", "line", "put", "start", "done")
LABELS = (
    "ACK on up0 (kernel time) -> out of the capturer's pipe",
    "-> tshark's line read, a Datagram",
    "-> tracked, handed to the writer",
    "-> its batch write begins",
    "-> the write returns",
)


# ---- the probe, inside the sniffer's process -------------------------------------------------

def packet_stamp(record: bytes) -> int:
    """A pcap record's kernel timestamp in microseconds (tcpdump writes its host's byte order)."""
    seconds, micros = struct.unpack_from("=II", record)
    return int(seconds * 1_000_000 + micros)


def install_probe(out: Path) -> None:
    """Wrap the sniffer's stages; the notes go to OUT.<pid> when the process exits."""
    import sniffer.capturer as capture
    from sniffer.commands import Grant
    from sniffer.store import LeaseStore
    from sniffer.writer import RedisWriter

    notes: list[str] = []
    atexit.register(lambda: Path(f"{out}.{os.getpid()}").write_text("".join(notes)))

    def wrap(owner: Any, name: str, after: Callable[..., None]) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def wrapper(*args: Any) -> Any:
            started = time.time()
            result = original(*args)
            after(started, result, *args)
            return result

        setattr(owner, name, wrapper)

    def read(now: float, records: Sequence[bytes], *_args: Any) -> None:
        notes.extend(f"read {packet_stamp(record)} {now:.6f}\n" for record in records)

    def line(now: float, datagram: Any, *_args: Any) -> None:
        if datagram is not None:
            notes.append(f"line {round(datagram.ts * 1e6)} {now:.6f}\n")

    def put(now: float, _result: None, _writer: Any, entries: Sequence[Any]) -> None:
        for command, ts in entries:
            if isinstance(command, Grant):
                notes.append(f"put {command.lease.ip} {now:.6f} {round(ts * 1e6)}\n")

    def apply(now: float, _result: None, _store: Any, commands: Sequence[Any],
              *_args: Any) -> None:
        done = time.time()
        for command in commands:
            if isinstance(command, Grant):
                notes.append(f"start {command.lease.ip} {now:.6f}\n"
                             f"done {command.lease.ip} {done:.6f}\n")

    wrap(capture.RecordSplitter, "feed", read)
    wrap(capture, "to_datagram", line)
    wrap(RedisWriter, "put", put)
    wrap(LeaseStore, "apply", apply)


def probe(out: Path, command: Sequence[str]) -> None:
    """Run `command` (python -m sniffer ARGS, as the lab starts the sniffer) in this process,
    with the probe installed."""
    install_probe(out)
    sys.argv = ["dhcp-hive-mind", *command[3:]]
    from sniffer.cli import main

    main()


# ---- the run and its table -----------------------------------------------------------------------

def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def near(stamps: dict[int, float], stamp: int) -> float | None:
    """The note of a packet; its microseconds may be rounded either way."""
    for key in (stamp, stamp - 1, stamp + 1):
        if key in stamps:
            return stamps[key]
    return None


def measure(rate: int, seconds: int, tree: Path) -> None:
    sys.path.insert(0, str(REPO))
    from benchmarks import live as lab_runs

    workdir = Path(tempfile.mkdtemp(prefix="hive-stages-"))
    out = workdir / "notes"
    result = lab_runs.run(rate, seconds, tree,
                          prefix=[sys.executable, str(Path(__file__).resolve()), "--probe",
                                  str(out), "--"])
    packets: dict[str, dict[int, float]] = {"read": {}, "line": {}}
    leases: dict[str, dict[str, float]] = {"put": {}, "start": {}, "done": {}}
    cause: dict[str, int] = {}
    for path in workdir.glob("notes.*"):
        for note in path.read_text().splitlines():
            stage, key, when, *rest = note.split()
            if stage in packets:
                packets[stage].setdefault(int(key), float(when))
            else:
                leases[stage].setdefault(key, float(when))
                if rest:
                    cause.setdefault(key, int(rest[0]))
        path.unlink()
    workdir.rmdir()
    rows = []
    for ack, written, ip in result.timed:
        if ip not in cause:
            continue
        used = cause[ip]  # the ACK the grant was made from, on either leg
        times = [ack, near(packets["read"], used), near(packets["line"], used),
                 *(leases[stage].get(ip) for stage in ("put", "start", "done")), written]
        if None not in times:
            rows.append(times)
    print(f"{rate:,} exchanges/s for {seconds} s: {result.kea_leases:,} leases, {result.lost} "
          f"lost, {len(rows):,} followed through every stage")
    print("| stage | p50 | p99 | max | mean |\n|---|---|---|---|---|")
    columns = list(zip(*rows, strict=True))
    for index, label in enumerate((*LABELS, "-> the Redis clock of the write (stream id, ms)")):
        spans = [(b - a) * 1000 for a, b in zip(columns[index], columns[index + 1], strict=True)]
        print(f"| {label} | {percentile(spans, 0.5):.1f} | {percentile(spans, 0.99):.1f} | "
              f"{max(spans):.1f} | {statistics.mean(spans):.1f} |")
    total = [(row[-1] - row[0]) * 1000 for row in rows]
    print(f"| ACK on up0 -> Redis, in all | {percentile(total, 0.5):.1f} | "
          f"{percentile(total, 0.99):.1f} | {max(total):.1f} | {statistics.mean(total):.1f} |")


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--probe"]:
        probe(Path(argv[1]), argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rate", type=int, help="exchanges a second")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--tree", type=Path, default=REPO,
                        help="the checkout whose sniffer runs (default: this one)")
    args = parser.parse_args(argv)
    measure(args.rate, args.seconds, args.tree.resolve())


if __name__ == "__main__":
    main()
