"""Which leases `leases` lists, and in which order, read a batch at a time.

Sorted by address or by expiry (the common case), the order comes from the expiry set alone: its
members are sorted first, then the records are read and handed on in that order, a batch at a
time, so that the first lines are out before the last records are read and memory stays flat.
Other orders need every record before the first line: each is kept only as the caller's compact
rendering (a line of text) beside its sort key.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from sniffer.keys import ipv4_number
from sniffer.lease import LeaseRow
from sniffer.reader import BATCH, IndexEntry
from sniffer.store import LeaseStore

T = TypeVar("T")


class SortKey(StrEnum):
    ip = "ip"
    expires = "expires"
    hostname = "hostname"
    mac = "mac"
    updated = "updated"


@dataclass(frozen=True)
class Query:
    """What to list. `network` is an address (a /32) or a prefix; `mac` in lowercase with
    colons; `hostname` a case-insensitive substring."""

    network: ipaddress.IPv4Network | None = None
    mac: str | None = None
    hostname: str | None = None
    sort: SortKey = SortKey.ip
    reverse: bool = False

    def matcher(self) -> Callable[[LeaseRow], bool] | None:
        """Whether a record matches: its own address (the set it was listed from may name
        another record's), MAC and hostname; None when every record does."""
        network, mac = self.network, self.mac
        if network is None and mac is None and self.hostname is None:
            return None
        hostname = self.hostname.lower() if self.hostname is not None else None
        first, last = ((int(network.network_address), int(network.broadcast_address))
                       if network is not None else (0, 0))

        def matches(row: LeaseRow) -> bool:
            if network is not None:
                number = ipv4_number(row.ip)
                if number is None or not first <= number <= last:
                    return False
            return ((mac is None or (row.mac or "").lower() == mac)
                    and (hostname is None or hostname in (row.hostname or "").lower()))

        return matches


def listing(store: LeaseStore, query: Query,
            render: Callable[[LeaseRow], T]) -> Iterator[list[T]]:
    """The matching leases in the query's order, each as `render` makes it, a batch at a time."""
    if query.mac is not None:
        return _sorted(store.rows_of_mac(query.mac), query, render)
    if query.network is not None and query.network.prefixlen == 32:
        return _sorted(store.rows([str(query.network.network_address)]), query, render)
    entries = store.expiry_index(query.network)
    if query.sort is SortKey.ip:
        entries.sort(key=_by_number, reverse=query.reverse)
    elif query.sort is SortKey.expires:
        entries.sort(reverse=query.reverse)  # inf (infinite) last, ties by address
    else:
        return _sorted(store.rows([ip for _e, _n, ip in entries], indexed=True), query, render)
    return _streamed(store.rows([ip for _e, _n, ip in entries], indexed=True), query, render)


def _by_number(entry: IndexEntry) -> int:
    return entry[1]


def _streamed(batches: Iterator[list[LeaseRow]], query: Query,
              render: Callable[[LeaseRow], T]) -> Iterator[list[T]]:
    matches = query.matcher()
    for batch in batches:
        yield [render(row) for row in batch if matches is None or matches(row)]


def _sorted(batches: Iterator[list[LeaseRow]], query: Query,
            render: Callable[[LeaseRow], T]) -> Iterator[list[T]]:
    key, matches = sort_key(query.sort), query.matcher()
    rows = (row for batch in batches for row in batch if matches is None or matches(row))
    # The key, then a counter: two equal keys never compare the renderings.
    kept = sorted((key(row), n, render(row)) for n, row in enumerate(rows))
    if query.reverse:
        kept.reverse()
    for start in range(0, len(kept), BATCH):
        yield [item for _key, _n, item in kept[start:start + BATCH]]


def sort_key(sort: SortKey) -> Callable[[LeaseRow], tuple[object, ...]]:
    """Each order's key; ties go by address."""

    def key(row: LeaseRow) -> tuple[object, ...]:
        number = ipv4_number(row.ip) or -1
        if sort is SortKey.expires:
            return (row.ttl < 0, row.ttl, number)
        if sort is SortKey.hostname:
            return ((row.hostname or "").lower(), number)
        if sort is SortKey.mac:
            return (row.mac or "", number)
        if sort is SortKey.updated:
            return (-row.updated, number)
        return (number,)

    return key
