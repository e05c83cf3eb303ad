"""The history of an address, from its event log (pure: no Redis, no clock).

Every address keeps a log of the grants and deletions that concerned it (the store's
`<namespace>:log:{<ip>}`). A log member is the canonical compact JSON of one event: what the
packet said and nothing that differs between two honest sightings of it (no writer, no
replay-clock expiry, no granted/renewed/reassigned label, which depends on what the writer held
before). The same packet gives the same member, so replaying a capture again or a twin sniffer
adds no second entry.

This module writes and reads those members and replays them in version order with the
single-sniffer rules (docs/tracking.md): a grant to the client holding the address renews, to
another client reassigns; a deletion ends only the binding of the client it names; a binding
not renewed by its expiry has expired. From that replay come the labels `history IP` prints, who
held the address at a moment, and the intervals a MAC held it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from json.encoder import encode_basestring_ascii as _string
from typing import TypeGuard

from sniffer.commands import Grant, Revoke
from sniffer.dhcp import ZERO
from sniffer.lease import INFINITE, Identity, Lease, same_client

MICRO = 1_000_000
GRANT, DELETION = "g", "r"


def version(ts: float, lease: Lease) -> int:
    """An event's version (hive.md R-HV-2): its capture time in microseconds, an integer that a
    Redis score holds exactly (< 2**53). A command that carries no capture time (built by hand)
    takes its lease's `updated` second."""
    return round(ts * MICRO) if ts else lease.updated * MICRO


def grant_member(grant: Grant) -> tuple[int, str]:
    """A grant's (version, log member): the object _compact makes of its fields, written out
    field by field, as a sniffer makes one for every ACK (5 -> 2 us)."""
    lease = grant.lease
    v = version(grant.ts, lease)
    mac, client_id, hostname = lease.mac, lease.client_id, lease.hostname
    circuit_id, remote_id, giaddr, kind = (lease.circuit_id, lease.remote_id, lease.giaddr,
                                           lease.kind)
    return v, "".join((
        f'{{"v":{v},"k":"{GRANT}"',
        "" if mac is None else f',"mac":{_string(mac)}',
        f',"ht":{lease.htype}',
        "" if client_id is None else f',"cid":{_string(client_id)}',
        "" if hostname is None else f',"hn":{_string(hostname)}',
        f',"lt":{lease.lease_time},"xid":"{lease.xid:08x}","srv":{_string(lease.server)}',
        "" if giaddr == ZERO else f',"relay":{_string(giaddr)}',
        "" if circuit_id is None else f',"cir":{_string(circuit_id)}',
        "" if remote_id is None else f',"rem":{_string(remote_id)}',
        "" if kind == "dhcp" else f',"kind":{_string(kind)}',
        "}"))


def revoke_member(revoke: Revoke) -> tuple[int, str]:
    """A deletion's (version, log member): why, and whose binding it ends."""
    lease = revoke.lease
    v = version(revoke.ts, lease)
    return v, _compact((("v", v), ("k", DELETION), ("why", str(revoke.reason)),
                        ("mac", lease.mac), ("ht", lease.htype), ("cid", lease.client_id)))


def _compact(fields: tuple[tuple[str, str | int | None], ...]) -> str:
    """A JSON object of the fields that have a value, in this order, without spaces, ASCII. "v"
    then "k" come first: members of equal score sort by them in Redis (a grant before a deletion
    of the same microsecond). Built by hand: json.dumps costs three times as much, on every
    grant a sniffer writes."""
    return "{" + ",".join(f'"{name}":{_string(value) if isinstance(value, str) else value}'
                          for name, value in fields if value is not None) + "}"


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One member of an address's log, parsed."""

    version: int  # capture time, microseconds
    kind: str  # GRANT or DELETION
    mac: str | None
    htype: int
    client_id: str | None
    hostname: str | None = None  # the rest: grants only, except `why`
    lease_time: int = 0
    xid: str | None = None
    server: str | None = None
    relay: str | None = None  # giaddr; None when not relayed
    circuit_id: str | None = None
    remote_id: str | None = None
    lease_kind: str = "dhcp"
    why: str | None = None  # deletions: released, declined, nak, superseded

    @property
    def ts(self) -> float:
        return self.version / MICRO

    @property
    def expires(self) -> int | None:
        """A grant's end as the record has it (capture second + lease time); None: infinite."""
        return None if self.lease_time == INFINITE else self.version // MICRO + self.lease_time

    @property
    def identity(self) -> Identity:
        return (self.client_id, (self.htype, self.mac) if self.mac is not None else None)


def parse_member(member: str) -> LogEvent | None:
    """A log member read back, or None when it is not one this module wrote (Redis is shared:
    anything may be there)."""
    try:
        raw = json.loads(member)
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    v, kind, ht, lt = raw.get("v"), raw.get("k"), raw.get("ht", 1), raw.get("lt", 0)
    if (not _integer(v) or v < 0 or kind not in (GRANT, DELETION) or not _integer(ht)
            or not _integer(lt) or not 0 <= lt <= INFINITE or (kind == GRANT and lt == 0)):
        return None
    text = {name: raw.get(name) for name in ("mac", "cid", "hn", "xid", "srv", "relay", "cir",
                                             "rem", "kind", "why")}
    if not all(value is None or isinstance(value, str) for value in text.values()):
        return None
    return LogEvent(
        version=v, kind=kind, mac=text["mac"], htype=ht, client_id=text["cid"],
        hostname=text["hn"], lease_time=lt, xid=text["xid"], server=text["srv"],
        relay=text["relay"], circuit_id=text["cir"], remote_id=text["rem"],
        lease_kind=text["kind"] or "dhcp",
        why=(text["why"] or "deleted") if kind == DELETION else None)


def _integer(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


# ---- replaying a log -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Holding:
    """One client's hold of the address: from the grant that gave it to the deletion,
    reassignment or expiry that ended it."""

    ip: str
    grants: tuple[LogEvent, ...]  # the first, then its renewals
    end: float | None  # when it ended, or ends (its expiry); None: infinite
    ended: str | None  # how: released, declined, nak, superseded, reassigned, expired; None: held

    @property
    def start(self) -> float:
        return self.grants[0].ts

    @property
    def grant(self) -> LogEvent:
        """The latest grant: the record as it stands (or stood last)."""
        return self.grants[-1]

    def as_of(self, t: float) -> Holding:
        """The hold with the record as it stood at `t` (its grants until then)."""
        return replace(self, grants=tuple(g for g in self.grants if g.ts <= t) or self.grants)

    def held_at(self, t: float) -> bool:
        return self.start <= t and (self.end is None or t < self.end)

    def overlaps(self, since: float | None, until: float | None) -> bool:
        return ((until is None or self.start <= until)
                and (since is None or self.end is None or self.end > since))

    def to_json(self) -> dict[str, object]:
        grant = self.grant
        return _present({
            "ip": self.ip, "mac": grant.mac, "htype": grant.htype, "client_id": grant.client_id,
            "hostname": grant.hostname, "start": self.start,
            "end": self.end if self.ended is not None else None, "ended": self.ended,
            **_record(grant)}, keep=("end", "ended", "expires"))


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of an address's history: an event with its label, or an expiry."""

    time: float
    label: str  # granted, renewed, reassigned, released, declined, nak, superseded, expired,
    # or ignored (a deletion naming a client that did not hold the address)
    event: LogEvent  # the event; for "expired" the grant that ran out
    previous: LogEvent | None = None  # the grant a reassignment ended

    def to_json(self, ip: str) -> dict[str, object]:
        event = self.event
        fields: dict[str, object] = {
            "time": self.time, "event": self.label, "ip": ip, "mac": event.mac,
            "client_id": event.client_id}
        if event.kind == GRANT:
            fields |= {"hostname": event.hostname, **_record(event)}
        if self.label == "ignored":
            fields["reason"] = event.why
        if self.previous is not None:
            fields["previous_mac"] = self.previous.mac
            fields["previous_client_id"] = self.previous.client_id
        return _present(fields, keep=("expires",))


def _record(grant: LogEvent) -> dict[str, object]:
    return {"updated": grant.ts, "expires": grant.expires, "lease_time": grant.lease_time,
            "xid": grant.xid, "server": grant.server, "relay": grant.relay,
            "circuit_id": grant.circuit_id, "remote_id": grant.remote_id,
            "kind": grant.lease_kind}


def _present(fields: dict[str, object], keep: tuple[str, ...] = ()) -> dict[str, object]:
    """Fields without a value left out, except `keep`, where null means something (an
    infinite lease's expiry, a hold not ended)."""
    return {k: v for k, v in fields.items() if v is not None or k in keep}


@dataclass(frozen=True, slots=True)
class AddressHistory:
    """An address's log replayed: its history oldest first, and every hold of it."""

    ip: str
    entries: list[Entry]
    holdings: list[Holding]

    def between(self, since: float | None, until: float | None) -> list[Entry]:
        """The entries from `since` to `until` (None: no bound), newest first."""
        return [entry for entry in reversed(self.entries)
                if (since is None or entry.time >= since)
                and (until is None or entry.time <= until)]

    def holder_at(self, t: float) -> Holding | None:
        """Who held the address at `t` (a hold covers [its first grant, its end)), with the
        record as it stood then."""
        return next((h.as_of(t) for h in self.holdings if h.held_at(t)), None)


def holds_of(mac: str, histories: Iterable[AddressHistory], since: float | None,
             until: float | None) -> list[Holding]:
    """The holds of `mac` in these addresses' histories that overlap [since, until], newest
    first."""
    return sorted((hold for history in histories for hold in history.holdings
                   if hold.grant.mac == mac and hold.overlaps(since, until)),
                  key=lambda hold: hold.start, reverse=True)


def address_history(ip: str, events: Iterable[LogEvent], now: float) -> AddressHistory:
    """Apply the events in version order (a grant before a deletion of the same microsecond,
    as Redis orders the members). `now` tells a binding that has expired from one still held."""
    entries: list[Entry] = []
    holdings: list[Holding] = []
    grants: list[LogEvent] = []  # of the current hold; empty when nobody holds the address

    def close(end: float | None, ended: str | None) -> None:
        holdings.append(Holding(ip, tuple(grants), end, ended))
        grants.clear()

    for event in sorted(events, key=lambda e: (e.version, e.kind)):
        t = event.ts
        holder = grants[-1] if grants else None
        if holder is not None and (expires := holder.expires) is not None and expires <= t:
            entries.append(Entry(expires, "expired", holder))
            close(expires, "expired")
            holder = None
        if event.kind == GRANT:
            if holder is None:
                entries.append(Entry(t, "granted", event))
            elif same_client(holder.identity, event.identity):
                entries.append(Entry(t, "renewed", event))
                if holder.mac != event.mac:
                    close(t, "renewed")  # a new MAC under the same client-id: a hold per MAC
            else:
                entries.append(Entry(t, "reassigned", event, previous=holder))
                close(t, "reassigned")
            grants.append(event)
        elif holder is not None and same_client(holder.identity, event.identity):
            entries.append(Entry(t, event.why or "deleted", event))
            close(t, event.why)
        else:  # hive.md H15: a deletion ends only the binding of the client it names
            entries.append(Entry(t, "ignored", event))
    if grants:
        holder = grants[-1]
        expires = holder.expires
        if expires is not None and expires <= now:
            entries.append(Entry(expires, "expired", holder))
            close(expires, "expired")
        else:
            close(expires, None)
    return AddressHistory(ip, entries, holdings)


def parse_time(text: str) -> float:
    """A moment as the command line takes it, in Unix seconds: a plain number is Unix seconds,
    anything else ISO 8601 (`2026-12-01T14:00`, `2026-12-01 14:00`, `...Z`, `...+01:00`), in
    local time unless it carries a zone. ValueError when it is neither."""
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise ValueError(f"{text!r} is not a time (ISO 8601 or Unix seconds)")
        return seconds
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"{text!r} is not a time (ISO 8601 or Unix seconds)") from None
