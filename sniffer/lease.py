"""The lease record (R-RD-1: the seed hash and the detail hash in Redis): one value type shared
by the tracker and the store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from sniffer.dhcp import ZERO

INFINITE = 0xFFFFFFFF
Identity = tuple[str | None, tuple[int, str] | None]  # (client_id, (htype, mac) or None)


def same_client(a: Identity, b: Identity) -> bool:
    """R-ID-3: client identifiers if both have one, else typed hardware addresses if both have
    one, else never the same."""
    if a[0] is not None and b[0] is not None:
        return a[0] == b[0]
    return a[1] is not None and a[1] == b[1]


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease as the tracker believes the client holds it; the detail hash, field for field."""

    ip: str
    mac: str | None
    htype: int
    client_id: str | None
    hostname: str | None
    hostname_src: str | None
    expires: int | None  # Unix seconds (capture clock); None means infinite
    lease_time: int  # 1..4294967295; INFINITE when expires is None
    server: str
    giaddr: str
    circuit_id: str | None
    remote_id: str | None
    xid: int
    updated: int
    kind: str  # "dhcp" | "bootp"
    # The writer that stored the record (spec R-HV-1); set by the store, not by the tracker, and
    # not part of what the lease is: leases are equal whoever wrote them.
    writer: str | None = field(default=None, compare=False)

    @property
    def infinite(self) -> bool:
        return self.expires is None

    @property
    def identity(self) -> Identity:
        return (self.client_id, (self.htype, self.mac) if self.mac is not None else None)

    def seed_fields(self) -> dict[str, str]:
        """The contract hash at the bare IP: mac and hostname only, each only when known."""
        fields: dict[str, str] = {}
        if self.mac is not None:
            fields["mac"] = self.mac
        if self.hostname is not None:
            fields["hostname"] = self.hostname
        return fields

    def detail_fields(self) -> dict[str, str]:
        """The detail hash: the fields that have a value, in DETAIL_FIELDS order, as text. Built
        field by field (a sniffer writes one for every grant): half of what filtering a dict of
        them all cost."""
        fields = {"ip": self.ip}
        if self.mac is not None:
            fields["mac"] = self.mac
        fields["htype"] = str(self.htype)
        if self.client_id is not None:
            fields["client_id"] = self.client_id
        if self.hostname is not None:
            fields["hostname"] = self.hostname
        if self.hostname_src is not None:
            fields["hostname_src"] = self.hostname_src
        fields["expires"] = "infinite" if self.expires is None else str(self.expires)
        fields["lease_time"] = str(self.lease_time)
        fields["server"] = self.server
        fields["giaddr"] = self.giaddr
        if self.circuit_id is not None:
            fields["circuit_id"] = self.circuit_id
        if self.remote_id is not None:
            fields["remote_id"] = self.remote_id
        fields["xid"] = f"{self.xid:08x}"
        fields["updated"] = str(self.updated)
        fields["kind"] = self.kind
        if self.writer is not None:
            fields["writer"] = self.writer
        return fields

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> Lease:
        """Parse a detail hash; raises ValueError on a record that is not ours."""
        return cls(*parse_detail([fields.get(name) for name in DETAIL_FIELDS]))


class LeaseRow(NamedTuple):
    """A lease as `leases` lists it: Lease's fields in its order, typed, then the record's TTL in
    seconds (-1: infinite). A tuple, so that 100k of them cost little to build and to keep."""

    ip: str
    mac: str | None
    htype: int
    client_id: str | None
    hostname: str | None
    hostname_src: str | None
    expires: int | None
    lease_time: int
    server: str
    giaddr: str
    circuit_id: str | None
    remote_id: str | None
    xid: int
    updated: int
    kind: str
    writer: str | None
    ttl: int

    @property
    def lease(self) -> Lease:
        return Lease(*self[:-1])


DETAIL_FIELDS: tuple[str, ...] = LeaseRow._fields[:-1]  # the detail hash's, Lease's order


# Lease's fields as a tuple, in its order.
LeaseValues = tuple[str, str | None, int, str | None, str | None, str | None, int | None, int, str,
                    str, str | None, str | None, int, int, str, str | None]


def parse_detail(values: Sequence[str | None]) -> LeaseValues:
    """A detail hash's values (in DETAIL_FIELDS order, None where absent) typed as Lease's
    fields; raises ValueError on a record that is not ours (a required field missing, a number
    that is not one)."""
    (ip, mac, htype, client_id, hostname, hostname_src, expires, lease_time, server, giaddr,
     circuit_id, remote_id, xid, updated, kind, writer) = values
    if (ip is None or server is None or expires is None or htype is None or lease_time is None
            or xid is None or updated is None):
        raise ValueError("not a detail hash")
    return (ip, mac, int(htype), client_id, hostname, hostname_src,
            None if expires == "infinite" else int(expires), int(lease_time), server,
            ZERO if giaddr is None else giaddr, circuit_id, remote_id, int(xid, 16),
            int(updated), "dhcp" if kind is None else kind, writer)
