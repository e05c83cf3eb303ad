"""Durability through failover (hive.md R-HV-8): telling, from periodic checks of the store,
that Redis lost writes it had taken. Sans-IO: `StoreWatch` decides from what a check found, with
the time passed in; sniffer/registry.py's `StoreProbe` reads Redis, and the writer
(sniffer/writer.py) acts on the decision.

Redis replication is asynchronous: a master that dies can take writes it acknowledged with it,
and a Redis restarted without persistence comes back empty, with no error to the writer. What
tells, besides a write that fails (the writer's WriteQueue re-asserts its recent writes then):

* a check that fails (connection lost, READONLY, MOVED, a timeout): the same;
* the masters' run ids (INFO server, every master of a cluster): one gone means a master was
  restarted or replaced by a replica (a failover): the recent writes are re-asserted;
* the writer's marker, a key without TTL holding a token of this process, written at start (on
  a cluster one on each master, so that one master restarted empty is told too): missing or
  changed, the store (or that master) lost what it held (restarted empty, or from an older
  snapshot): every current lease the tracker holds is re-asserted, which is harmless where
  nothing was lost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

CHECK_EVERY = 5.0  # seconds between checks of the store (the heartbeat's pace)
REASSERT_SECONDS = 30.0  # the writes Redis took in this many seconds are re-asserted, by default


class Loss(StrEnum):
    """What a check found Redis lost (its value: the metrics' label)."""

    RESTARTED = "restarted"  # a master's run id is gone: the recent writes may be lost
    EMPTIED = "emptied"  # the writer's marker is gone: everything it wrote may be lost

    @property
    def why(self) -> str:
        return "run id changed" if self is Loss.RESTARTED else "store emptied"


@dataclass(frozen=True)
class Probe:
    """What one check of the store found."""

    run_ids: frozenset[str] | None  # the masters' run ids; None: not known (INFO refused)
    marked: bool  # the writer's marker (every one, on a cluster) holds this process's token


class StoreWatch:
    """When to check the store, and what a check means. The first check (at start, after the
    marker is written) sets the run ids that the later ones are compared with."""

    def __init__(self, every: float = CHECK_EVERY) -> None:
        self.every = every
        self.failing = False  # the last check failed
        self._run_ids: frozenset[str] | None = None
        self._next = -math.inf

    def due(self, now: float) -> bool:
        return now >= self._next

    def wake_in(self, now: float) -> float:
        """Seconds until the next check is due."""
        return max(0.0, self._next - now)

    def failed(self, now: float) -> bool:
        """A check failed; True if it is the first of a series (worth a warning)."""
        self._next = now + self.every
        first, self.failing = not self.failing, True
        return first

    def checked(self, probe: Probe, now: float) -> Loss | None:
        """A check went through: what Redis lost, if anything. A lost marker says more than a
        changed run id (a Redis restarted empty has both)."""
        self._next = now + self.every
        self.failing = False
        previous = self._run_ids
        if probe.run_ids is not None:
            self._run_ids = probe.run_ids
        if not probe.marked:
            return Loss.EMPTIED
        if previous is not None and probe.run_ids is not None and previous - probe.run_ids:
            return Loss.RESTARTED
        return None
