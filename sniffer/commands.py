"""What the tracker asks of the store: frozen commands with their reasons as enums.

The tracker (sans-IO) returns these; the store, the pipeline and the writer consume them. Living
apart from both, they let the store know nothing of the tracker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from sniffer.dhcp import DhcpMessage
from sniffer.lease import Lease


class GrantEvent(StrEnum):
    GRANTED = "granted"  # no current record at the address
    RENEWED = "renewed"  # a record of the same client (R-ID-3)
    REASSIGNED = "reassigned"  # another client's record


class RevokeReason(StrEnum):
    RELEASED = "released"
    DECLINED = "declined"
    NAK = "nak"
    SUPERSEDED = "superseded"  # the client's newer lease on the same subnet replaced it


class RejectReason(StrEnum):
    """Why a reply was refused; each is also the name of its counter (docs/tracking.md)."""

    ROGUE_REPLY = "rogue_reply"  # from a server that is not allowed (R-SV-1)
    ROGUE_NAK = "rogue_nak"
    ACK_TO_INFORM = "ack_to_inform"  # an ACK answering an INFORM grants nothing (G4)
    BAD_YIADDR = "bad_yiaddr"
    NO_LEASE_TIME = "no_lease_time"
    ZERO_LEASE = "zero_lease"
    LATE_OTHER_SERVER = "late_other_server"  # the client chose another server
    STALE = "stale"  # older than what the address already holds
    ALREADY_EXPIRED = "already_expired"  # over before it could be written (G9)


ROGUE_REASONS = frozenset({RejectReason.ROGUE_REPLY, RejectReason.ROGUE_NAK})


@dataclass(frozen=True, slots=True)
class Grant:
    """Write `lease` at lease.ip, replacing whatever is there (R-RD-2, whole and atomically).
    `previous` is the record replaced (renewed, reassigned), None for granted."""

    lease: Lease
    event: GrantEvent
    previous: Lease | None = None
    ts: float = 0.0  # capture time of the reply; 0: unknown, the lease's `updated` second
    # The prefix length of the client's subnet, where the client's other records are
    # superseded (G14), also against other writers' records in the store (hive.md R-HV-6);
    # None: no supersede. Where the write is checked, not what it writes: not compared.
    subnet_prefix: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Revoke:
    """Delete the record at lease.ip (R-RD-4)."""

    lease: Lease
    reason: RevokeReason
    ts: float = 0.0  # capture time of the packet that caused it
    # False: a binding the tracker did not hold (`lease` carries only the address and the
    # client the packet names), ended in the store only if the store's record is that
    # client's: another writer may have seen the grant (hive.md R-HV-6).
    held: bool = True


@dataclass(frozen=True, slots=True)
class Rejected:
    """A reply or client message that was refused, for logs and the event stream (no Redis write
    to the lease keys)."""

    reason: RejectReason
    msg: DhcpMessage


Command = Grant | Revoke | Rejected
