"""Sans-IO transaction tracker (spec R-TX, R-GR, R-NK, R-DC, R-RL, R-SV, R-ID-3/4, R-HN-1).

`Tracker.handle(msg, now)` takes one decoded message and returns the store commands it causes.
It never touches Redis, tshark or a clock: `msg.ts` is the capture time that every protocol rule
uses, and `now` is the wall-clock time the adapter read, used only for G9 (already expired) under
the capture clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from sniffer.dhcp import DhcpMessage
from sniffer.lease import Lease


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    """Spec section 1.11, plus the clock mode of R-T-3."""

    allowed_servers: frozenset[str] = frozenset()
    strict_source: bool = False
    trusted_relays: frozenset[str] = frozenset()
    txn_ttl: float = 120.0
    txn_max: int = 65_536
    txn_max_per_hw: int = 8
    dup_window: float = 2.0
    supersede_same_subnet: bool = True
    default_prefix_len: int = 24
    track_bootp: bool = True
    capture_clock: bool = False  # True: G9 applies (live sniffing, replay --as-captured)


@dataclass(frozen=True, slots=True)
class Grant:
    """Write `lease` at lease.ip, replacing whatever is there (R-RD-2).

    `event` is "granted" (no previous record, or a previous one of the same client at another
    xid from DORA), "renewed" (same client, same ip) or "reassigned" (another client's record
    was replaced; `previous` is that record).
    """

    lease: Lease
    event: str
    previous: Lease | None = None


@dataclass(frozen=True, slots=True)
class Revoke:
    """Delete the record at lease.ip (R-RD-4). `reason`: released, declined, nak, superseded."""

    lease: Lease
    reason: str
    ts: float = 0.0  # capture time of the packet that caused it


@dataclass(frozen=True, slots=True)
class Rejected:
    """A reply or client message that was refused, for logs and the event stream (no Redis write
    to the lease keys). `reason` is the counter name (rogue_reply, rogue_nak, ...)."""

    reason: str
    msg: DhcpMessage


Command = Grant | Revoke | Rejected


@dataclass
class Tracker:
    config: TrackerConfig = field(default_factory=TrackerConfig)
    counters: Counter[str] = field(default_factory=Counter)

    def restore(self, leases: Iterable[Lease]) -> None:
        """Load records found in Redis at start-up (R-RD-6)."""
        raise NotImplementedError

    def handle(self, msg: DhcpMessage, now: float) -> list[Command]:
        raise NotImplementedError

    @property
    def pending_transactions(self) -> int:
        raise NotImplementedError
