"""The garbage collector's policy for the pipeline's runs (replay and sniff), and a replay's
tracker left to the process's exit.

A packet's objects die by reference counting. What survives is the tracker's state (leases,
transactions, duplicate keys) and the writer's recent writes, kept for seconds to days, and
they form no reference cycles (a 100,000-lease run leaves none to collect). CPython's
generational collector traverses those survivors again and again while every thread waits
for it: in the sniffer at 3,000 exchanges a second, each young collection (one every 50,000
allocations) took 10-12 ms of CPU, 30-45 ms under load; and with 100,000 leases a full
collection, which comes whenever a quarter of the heap is new, takes 200 ms.

So the survivors of every collection are frozen (gc.freeze: left out of later collections,
still freed by reference counting when they die), young collections come every 10,000
allocations (2 ms), and a long run has a full collection once an hour, to free any cycle that
formed among frozen objects.
"""

from __future__ import annotations

import gc
import time

from sniffer.logs import log
from sniffer.tracker import Tracker

YOUNG_THRESHOLD = 10_000  # allocations (less deallocations) between two young collections
FULL_EVERY = 3600.0  # seconds between a long run's full collections


def _freeze_survivors(phase: str, info: dict[str, int]) -> None:
    if phase == "stop":
        gc.freeze()


def collect_young_only() -> None:
    """From now on, what survives a collection is never traversed again; what exists now (the
    imports, a tracker restored from Redis) is frozen at once."""
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD)
    if _freeze_survivors not in gc.callbacks:
        gc.callbacks.append(_freeze_survivors)


class FullCollections:
    """The full collection of a long run, every `every` seconds (see tick)."""

    def __init__(self, now: float, every: float = FULL_EVERY) -> None:
        self.every = every
        self._due = now + every

    def tick(self, now: float) -> int | None:
        """Collect everything, frozen objects included, if it is time: the number of objects
        freed (cycles among long-lived objects; none expected), else None."""
        if now < self._due:
            return None
        self._due = now + self.every
        started = time.perf_counter()
        gc.unfreeze()
        freed = gc.collect()
        gc.freeze()
        log.debug("full garbage collection: %d objects freed in %.0f ms", freed,
                  (time.perf_counter() - started) * 1000)
        return freed


def left_to_exit(tracker: Tracker) -> None:
    """Leave a tracker the program is done with to the operating system, which takes back the
    whole process at exit at no cost, instead of freeing its records object by object: 20 to
    35 ms of one core after a 100,000-packet replay's work was done. A tracker is plain data
    (no files, sockets or finalizers), so nothing is lost by never freeing it. It is held by a
    reference cycle taken out of the collector's sight (gc.freeze), which exit does not free."""
    cycle: list[object] = [tracker]
    cycle.append(cycle)
    gc.freeze()
