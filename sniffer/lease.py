"""The lease record (R-RD-1: the seed hash and the detail hash in Redis): one value type shared
by the tracker and the store."""

from __future__ import annotations

from dataclasses import dataclass

from sniffer.dhcp import ZERO

INFINITE = 0xFFFFFFFF


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

    @property
    def infinite(self) -> bool:
        return self.expires is None

    def seed_fields(self) -> dict[str, str]:
        """The contract hash at the bare IP: mac and hostname only, each only when known."""
        fields: dict[str, str] = {}
        if self.mac is not None:
            fields["mac"] = self.mac
        if self.hostname is not None:
            fields["hostname"] = self.hostname
        return fields

    def detail_fields(self) -> dict[str, str]:
        fields = {
            "ip": self.ip,
            "mac": self.mac,
            "htype": str(self.htype),
            "client_id": self.client_id,
            "hostname": self.hostname,
            "hostname_src": self.hostname_src,
            "expires": "infinite" if self.expires is None else str(self.expires),
            "lease_time": str(self.lease_time),
            "server": self.server,
            "giaddr": self.giaddr,
            "circuit_id": self.circuit_id,
            "remote_id": self.remote_id,
            "xid": f"{self.xid:08x}",
            "updated": str(self.updated),
            "kind": self.kind,
        }
        return {k: v for k, v in fields.items() if v is not None}

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> Lease:
        """Parse a detail hash; raises ValueError (or KeyError) on a record that is not ours."""
        expires_text = fields["expires"]
        return cls(
            ip=fields["ip"],
            mac=fields.get("mac"),
            htype=int(fields["htype"]),
            client_id=fields.get("client_id"),
            hostname=fields.get("hostname"),
            hostname_src=fields.get("hostname_src"),
            expires=None if expires_text == "infinite" else int(expires_text),
            lease_time=int(fields["lease_time"]),
            server=fields["server"],
            giaddr=fields.get("giaddr", ZERO),
            circuit_id=fields.get("circuit_id"),
            remote_id=fields.get("remote_id"),
            xid=int(fields["xid"], 16),
            updated=int(fields["updated"]),
            kind=fields.get("kind", "dhcp"),
        )
