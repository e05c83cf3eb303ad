"""The transaction table (spec R-TX): the client messages of each open DHCP transaction, by
(xid, htype, chaddr) and client-id, bounded in size (R-TX-6) and in age (R-TX-5). The tracker
correlates replies through it; only sanitised, bounded values are kept, never packets."""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from collections.abc import Iterable

from sniffer.dhcp import DISCOVER, INFORM, REQUEST, ZERO, DhcpMessage

BOOTREQUEST = 0  # the kind of a client message without option 53, beside the DHCP types 1-8
# Where a transaction keeps the newest capture time of each kind of client message it merged
# (slots, not a dict per entry: R-TX-6 bounds the table's memory).
SEEN_SLOT = {DISCOVER: "seen_discover", REQUEST: "seen_request", INFORM: "seen_inform",
             BOOTREQUEST: "seen_bootrequest"}

GroupKey = tuple[int, int, bytes]  # (xid, htype, chaddr): the candidates of R-TX-3
CapKey = tuple[int, bytes | str | None]  # whose transactions count towards txn_max_per_hw


class Txn:
    """One transaction (R-TX-2): only sanitised, bounded values, never the packet itself."""

    __slots__ = ("cap_key", "client_id", "decided", "fqdn", "fresh", "giaddr", "group_key",
                 "hostname", "last", "latest_kind", "latest_ts", "relay", "requested_ip",
                 "saw_request", "seen_bootrequest", "seen_discover", "seen_inform",
                 "seen_request", "selected")

    def __init__(self, group_key: GroupKey, cap_key: CapKey, client_id: str | None,
                 ts: float) -> None:
        self.group_key = group_key
        self.cap_key = cap_key
        self.client_id = client_id
        self.last = ts  # last activity, capture time (R-TX-5)
        self.fresh = True  # in the first eviction class: undecided, never saw a REQUEST (R-TX-6)
        self.saw_request = False  # ever saw a REQUEST, INFORM or BOOTREQUEST
        self.decided: str | None = None  # server(P) of the ACK or NAK applied (R-TX-4)
        self.seen_discover = self.seen_request = self.seen_inform = -math.inf
        self.seen_bootrequest = -math.inf
        self.latest_kind: int | None = None
        self.latest_ts = -math.inf
        self.requested_ip: str | None = None  # of the latest client message (R-CL-2)
        self.selected: str | None = None  # option 54 of a SELECTING REQUEST; for a counter only
        self.fqdn: str | None = None  # newest usable 81 of this generation
        self.hostname: str | None = None  # newest usable 12 of this generation
        self.giaddr: str | None = None  # from relayed client copies
        self.relay: tuple[str | None, str | None] | None = None  # their option 82

    def merge(self, msg: DhcpMessage, kind: int, window: float) -> None:
        """Add one client message; start a new generation when it follows a decision (R-TX-4)."""
        ts = msg.ts
        slot = SEEN_SLOT[kind]
        seen: float = getattr(self, slot)
        if self.decided is not None and not abs(ts - seen) < window:
            self.decided = self.selected = self.fqdn = self.hostname = None
        if ts > seen:
            setattr(self, slot, ts)
        if ts >= self.latest_ts:
            self.latest_kind, self.latest_ts = kind, ts
            self.requested_ip = msg.requested_ip or (msg.ciaddr if msg.ciaddr != ZERO else None)
            if kind == REQUEST:
                self.selected = msg.server_id
            self.fqdn = msg.fqdn or self.fqdn
            self.hostname = msg.hostname or self.hostname
        else:  # an older copy arriving late fills gaps only: candidates are kept newest first
            self.fqdn = self.fqdn or msg.fqdn
            self.hostname = self.hostname or msg.hostname
        if kind != DISCOVER:
            self.saw_request = True
        if msg.giaddr != ZERO:
            self.giaddr = msg.giaddr
            if msg.relay_info:
                self.relay = (msg.circuit_id, msg.remote_id)


def eviction_choice(txns: Iterable[Txn]) -> Txn:
    """R-TX-6 order within a small set: the oldest fresh entry, else the oldest entry."""
    return min(txns, key=lambda txn: (not txn.fresh, txn.last))


class TransactionTable:
    """The open transactions: by (xid, htype, chaddr), each group holding one entry per
    client_id (R-TX-1), and in both eviction classes of R-TX-6, each ordered by last activity
    (oldest first)."""

    def __init__(self, ttl: float, max_entries: int, max_per_hw: int,
                 counters: Counter[str]) -> None:
        self.ttl, self.max_entries, self.max_per_hw = ttl, max_entries, max_per_hw
        self.counters = counters  # txn_evicted
        self._groups: dict[GroupKey, list[Txn]] = {}
        self._per_hw: dict[CapKey, list[Txn]] = {}
        self._fresh: OrderedDict[Txn, None] = OrderedDict()
        self._settled: OrderedDict[Txn, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._fresh) + len(self._settled)


    def live_group(self, group_key: GroupKey, ts: float) -> list[Txn] | None:
        """The live transactions of (xid, hw), after dropping any that outlived txn_ttl."""
        group = self._groups.get(group_key)
        if group is None:
            return None
        horizon = ts - self.ttl
        stale = [txn for txn in group if txn.last <= horizon]
        if not stale:  # the usual case: nothing to drop
            return group
        for txn in stale:
            self._drop(txn)
        return self._groups.get(group_key)

    def open(self, group_key: GroupKey, client_id: str | None, ts: float) -> Txn:
        """A new transaction, after making room for it (R-TX-6)."""
        chaddr = group_key[2]
        cap_key: CapKey = (group_key[1], chaddr if chaddr else client_id)
        peers = self._per_hw.get(cap_key)
        if peers is not None and len(peers) >= self.max_per_hw:
            self._evict(eviction_choice(peers))
        if len(self._fresh) + len(self._settled) >= self.max_entries:
            queue = self._fresh or self._settled
            self._evict(next(iter(queue)))
        txn = Txn(group_key, cap_key, client_id, ts)
        self._per_hw.setdefault(cap_key, []).append(txn)
        self._groups.setdefault(group_key, []).append(txn)
        self._fresh[txn] = None
        return txn

    def touch(self, txn: Txn, ts: float) -> None:
        """Record activity, and move the entry to the end of its eviction class."""
        if ts > txn.last:
            txn.last = ts
        fresh = txn.decided is None and not txn.saw_request
        if fresh == txn.fresh:
            (self._fresh if fresh else self._settled).move_to_end(txn)
        else:
            del (self._settled if fresh else self._fresh)[txn]
            (self._fresh if fresh else self._settled)[txn] = None
            txn.fresh = fresh

    def _evict(self, txn: Txn) -> None:
        self.counters["txn_evicted"] += 1
        self._drop(txn)

    def _drop(self, txn: Txn) -> None:
        del (self._fresh if txn.fresh else self._settled)[txn]
        group = self._groups[txn.group_key]
        group.remove(txn)
        if not group:
            del self._groups[txn.group_key]
        peers = self._per_hw[txn.cap_key]
        peers.remove(txn)
        if not peers:
            del self._per_hw[txn.cap_key]

    def sweep(self, ts: float) -> None:
        """Forget the transactions that outlived the ttl, oldest first (R-TX-5)."""
        horizon = ts - self.ttl
        for queue in (self._fresh, self._settled):
            while queue:
                txn = next(iter(queue))
                if txn.last > horizon:
                    break
                self._drop(txn)
