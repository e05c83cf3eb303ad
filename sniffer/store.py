"""Redis: the only module that imports redis. Every key is built by `Keys`; every write goes
through `LeaseStore.apply` in one pipeline (spec R-RD)."""

from __future__ import annotations

from collections.abc import Sequence

from sniffer.lease import Lease
from sniffer.tracker import Command


class StoreError(Exception):
    """Redis is unreachable or refused a command: a local problem, reported in one line."""


class Keys:
    """Every Redis key dhcp-hive-mind reads or writes (R-RD-1, R-RD-5)."""

    def __init__(self, key_prefix: str = "", namespace: str = "dhcp-hive-mind") -> None:
        self.key_prefix = key_prefix
        self.namespace = namespace

    def seed(self, ip: str) -> str:
        return f"{self.key_prefix}{ip}"

    def lease(self, ip: str) -> str:
        return f"{self.namespace}:lease:{ip}"

    def by_mac(self, mac: str) -> str:
        return f"{self.namespace}:mac:{mac}"

    def by_client_id(self, client_id: str) -> str:
        return f"{self.namespace}:client-id:{client_id}"

    @property
    def expiry(self) -> str:
        return f"{self.namespace}:expiry"

    @property
    def events(self) -> str:
        return f"{self.namespace}:events"


class LeaseStore:
    def apply(self, commands: Sequence[Command], now: float) -> None:
        raise NotImplementedError

    def load(self) -> list[Lease]:
        raise NotImplementedError
