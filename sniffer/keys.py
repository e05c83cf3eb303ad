"""Every Redis key dhcp-hive-mind reads or writes, built in one place (spec R-RD-1: the seed and
detail hashes of a lease; R-RD-5: the tracker's other keys, under its namespace)."""

from __future__ import annotations

import socket


class Keys:
    """The key names for one key prefix (seed hashes) and one namespace (everything else)."""

    def __init__(self, key_prefix: str = "", namespace: str = "dhcp-hive-mind") -> None:
        self.key_prefix = key_prefix
        self.namespace = namespace

    def seed(self, ip: str) -> str:
        """The seed hash (mac, hostname): the contract other programs read."""
        return f"{self.key_prefix}{ip}"

    def tag(self, ip: str) -> str:
        """The hash tag of the address's keys: its seed key in braces, so that Redis Cluster
        puts them in the seed hash's slot (hive.md R-HV-7): a lease change is one atomic script
        on one slot. With no key prefix, `{<ip>}`."""
        return f"{{{self.seed(ip)}}}"

    def lease(self, ip: str) -> str:
        """The detail hash: every field of the lease."""
        return f"{self.namespace}:lease:{self.tag(ip)}"

    def old_lease(self, ip: str) -> str:
        """The detail hash as versions before the cluster layout named it (`migrate`)."""
        return f"{self.namespace}:lease:{ip}"

    def by_mac(self, mac: str) -> str:
        """Set: the addresses leased to the MAC. The MAC in braces, as in `mac_log`: a Redis
        Cluster hash tag that puts a MAC's two keys in one slot, so that a grant's writes to
        them are one call (hive.md R-HV-7)."""
        return f"{self.namespace}:mac:{{{mac}}}"

    def old_by_mac(self, mac: str) -> str:
        """The MAC's index as versions before the MAC hash tag named it (`migrate`)."""
        return f"{self.namespace}:mac:{mac}"

    def by_client_id(self, client_id: str) -> str:
        return f"{self.namespace}:client-id:{client_id}"

    def log(self, ip: str) -> str:
        """Sorted set: the address's history (sniffer/history.py), scored by version; in the
        seed hash's slot, so that an event is written with its lease."""
        return f"{self.namespace}:log:{self.tag(ip)}"

    def mac_log(self, mac: str) -> str:
        """Sorted set: the addresses a MAC was granted -> the latest end of those grants (a
        hint: readers check each address's log); in the slot of the MAC's index (`by_mac`)."""
        return f"{self.namespace}:mac-log:{{{mac}}}"

    def old_mac_log(self, mac: str) -> str:
        """The MAC's history as versions before the MAC hash tag named it (`migrate`)."""
        return f"{self.namespace}:mac-log:{mac}"

    @property
    def expiry(self) -> str:
        """Sorted set: address -> expiry (inf when infinite), the list of our leases."""
        return f"{self.namespace}:expiry"

    @property
    def events(self) -> str:
        """Stream of grants and deletions (capped), for history and the live view."""
        return f"{self.namespace}:events"

    @property
    def rogue(self) -> str:
        """Stream of replies from servers not allowed; apart from `events` so that a rogue flood
        cannot push lease history out of the capped stream."""
        return f"{self.namespace}:rogue"

    @property
    def rogue_servers(self) -> str:
        """Hash: rogue server address -> number of its replies seen."""
        return f"{self.namespace}:rogue-servers"

    @property
    def writers(self) -> str:
        """Hash: writer id -> Unix seconds of its last write or registration (several sniffers,
        one Redis): every writer the store has known."""
        return f"{self.namespace}:writers"

    def writer(self, writer_id: str) -> str:
        """A running writer's heartbeat (spec R-HV-1): a short TTL, refreshed while it runs."""
        return f"{self.namespace}:writer:{writer_id}"

    def mark(self, writer_id: str) -> str:
        """A running writer's marker (spec R-HV-8): no TTL, a token of the process; gone or
        changed, the store lost what the writer wrote."""
        return f"{self.namespace}:mark:{writer_id}"

    def cluster_mark(self, writer_id: str, tag: str) -> str:
        """One of a running writer's markers on a Redis Cluster, one on each master: `tag` (a
        number, sniffer/registry.py picks it) is the hash tag that puts the key in a slot that
        master serves. The tag comes before the writer id, whose braces would be the tag
        otherwise."""
        return f"{self.namespace}:mark:{{{tag}}}:{writer_id}"

    @property
    def seed_pattern(self) -> str:
        """SCAN pattern for keys that may be seed hashes; `seed_ip` confirms each."""
        return literal_pattern(self.key_prefix) + "[0-9]*.[0-9]*.[0-9]*.[0-9]*"

    def seed_ip(self, key: str) -> str | None:
        """The address a seed key names, or None if the key is not a seed key."""
        if not key.startswith(self.key_prefix):
            return None
        ip = key[len(self.key_prefix):]
        return ip if ipv4_number(ip) is not None else None


def literal_pattern(text: str) -> str:
    """`text` as a SCAN pattern that matches it literally."""
    return "".join("\\" + c if c in "\\*?[]" else c for c in text)


def ipv4_number(text: str) -> int | None:
    """The address as a number if `text` is an IPv4 address written as str(IPv4Address) writes
    it, else None. A tenth of ipaddress's cost: a view checks 100k keys per sweep."""
    try:
        packed = socket.inet_pton(socket.AF_INET, text)
    except (OSError, ValueError):
        return None
    return int.from_bytes(packed, "big") if socket.inet_ntop(socket.AF_INET, packed) == text \
        else None
