"""The tracker's memory under a DHCP starvation flood (spec case 71, scaled up).

Feeds FLOOD DISCOVERs with random xids and MACs, then EXCHANGES real DORA exchanges, through the
real Pipeline (decode, Tracker, LeaseStore) into Redis, and reports how far the resident set
grew above what it was after the imports and the Redis connection (the kernel's high-water mark,
so no peak is missed between samples). Run in a fresh process by run.py:

    python benchmarks/memory.py FLOOD EXCHANGES REDIS_URL

prints one JSON object. The leases are checked by run.py.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import traffic
from sniffer.dhcp import Datagram
from sniffer.keys import Keys
from sniffer.pipeline import Pipeline
from sniffer.store import LeaseStore
from sniffer.tracker import Tracker

FLOOD_RATE = 10_000.0  # DISCOVERs per second of capture time: the flood lasts FLOOD / 10,000 s


def datagrams(packets: Iterator[traffic.Packet]) -> Iterator[Datagram]:
    for frame, packet in enumerate(packets, 1):
        yield Datagram(packet.ts, packet.src, packet.dst, packet.sport, packet.dport,
                       packet.payload, False, frame)


def status_bytes(field: str) -> int:
    """VmRSS (resident now) or VmHWM (resident at most, so far) of this process."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def main(flood: int, exchanges: int, url: str) -> None:
    client = redis.Redis.from_url(url)
    pipeline = Pipeline(Tracker(), LeaseStore(client, Keys(), capture_clock=False))
    start = time.time() - flood / FLOOD_RATE - exchanges / 1000 - 10
    baseline = status_bytes("VmRSS")
    started = time.monotonic()
    pipeline.process(datagrams(traffic.discover_flood(flood, start, FLOOD_RATE)))
    after_flood = pipeline.tracker.pending_transactions
    pipeline.process(datagrams(traffic.exchanges(exchanges, start + flood / FLOOD_RATE)))
    pipeline.flush()
    elapsed = time.monotonic() - started
    growth = status_bytes("VmHWM") - baseline
    client.close()
    print(json.dumps({
        "rss_growth": growth, "seconds": elapsed,
        "transactions_after_flood": after_flood,
        "evicted": pipeline.tracker.counters["txn_evicted"],
        "written": pipeline.stats["written"], "packets": pipeline.stats["packets"],
    }))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
