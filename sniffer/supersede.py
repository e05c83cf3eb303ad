"""Supersede against the store (hive.md R-HV-6), decided from what the store holds (pure: the
store reads, this module decides).

A client holds one binding per subnet (G14): its newer grant at another address of the same
subnet supersedes its binding. One sniffer knows its own records; in a hive the client's other
grant may be another writer's, may arrive before or after this one, and may have ended already
(released, reassigned). So a grant is placed among the client's grants on its subnet that the
store's logs hold (at the addresses the MAC's history and the identity indexes list, and at its
own), in version order:

* the grant before it, if at another address, had its binding superseded at this grant's
  version;
* the grant after it, if at another address, superseded this one at that grant's version.

Each writer decides the pairs its own grant makes, so whichever arrives last, the store gets
both deletions; write.lua ends a record only if the binding still holds (a deletion names its
client).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from sniffer.commands import Grant, Revoke, RevokeReason
from sniffer.history import GRANT, MICRO, LogEvent, version
from sniffer.keys import ipv4_number
from sniffer.lease import same_client


@dataclass(frozen=True, slots=True)
class Elsewhere:
    """An address of the grant's subnet where the client may have had a binding (the grant's
    own among them): its newest log events."""

    ip: str
    events: Sequence[LogEvent]


def same_subnet(grant: Grant, addresses: Iterable[str]) -> list[str]:
    """The addresses, other than the grant's, in the grant's subnet (its prefix length)."""
    prefix = grant.subnet_prefix or 0
    mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    subnet = (ipv4_number(grant.lease.ip) or 0) & mask
    found = []
    for address in addresses:
        number = ipv4_number(address)
        if address != grant.lease.ip and number is not None and number & mask == subnet:
            found.append(address)
    return found


def superseded(grant: Grant, addresses: Iterable[Elsewhere]) -> list[Revoke]:
    """The deletions of the pairs this grant makes with the client's grants before and after
    it at other addresses."""
    lease = grant.lease
    mine = version(grant.ts, lease)
    grants = sorted({(event.version, other.ip) for other in addresses for event in other.events
                     if event.kind == GRANT and same_client(event.identity, lease.identity)}
                    | {(mine, lease.ip)})
    at = grants.index((mine, lease.ip))
    revokes = []
    if at > 0 and (before := grants[at - 1])[1] != lease.ip:
        revokes.append(Revoke(replace(lease, ip=before[1]), RevokeReason.SUPERSEDED,
                              mine / MICRO))
    if at + 1 < len(grants) and (after := grants[at + 1])[1] != lease.ip:
        revokes.append(Revoke(lease, RevokeReason.SUPERSEDED, after[0] / MICRO))
    return revokes
