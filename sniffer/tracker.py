"""Sans-IO transaction tracker: transactions (R-TX), grants (R-GR), NAK, DECLINE and RELEASE
(R-NK, R-DC, R-RL), the server allow-list (R-SV), client identity (R-ID-3/4) and hostname
precedence (R-HN-1). The rule tags are those of docs/tracking.md.

`Tracker.handle(msg, now)` takes one decoded message and returns the store commands it causes.
It never touches Redis, tshark or a clock: `msg.ts` is the capture time that every protocol rule
uses, and `now` is the wall-clock time the adapter read, used only for G9 (already expired) under
the capture clock.

The tracker keeps its own view of the current records (ip -> Lease), updated as it emits commands,
so the next packet sees their effect. A record whose `expires` <= the packet's capture second is
treated as absent (R-EX) and dropped from the view; Redis expires it by itself.
"""

from __future__ import annotations

import heapq
import math
import socket
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from sniffer.commands import (
    Command,
    Grant,
    GrantEvent,
    Rejected,
    RejectReason,
    Revoke,
    RevokeReason,
)
from sniffer.dhcp import (
    ACK,
    DECLINE,
    DISCOVER,
    INFORM,
    NAK,
    OFFER,
    RELEASE,
    REQUEST,
    ZERO,
    DhcpMessage,
    valid_lease_address,
)
from sniffer.history import MICRO
from sniffer.lease import INFINITE, Identity, Lease, same_client
from sniffer.transactions import BOOTREQUEST, TransactionTable, Txn

SWEEP_EVERY = 1.0  # seconds of capture time between sweeps of expired transactions

DupKey = tuple[int | None, int, int, bytes, str, int | None]
K = TypeVar("K")


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    """The tracker's options (spec section 1.11, defaults as there), plus the clock mode of
    R-T-3 (capture clock or replay clock)."""

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
    # Also ask the store to end bindings this tracker does not hold, which a RELEASE, DECLINE
    # or NAK names: another writer may have seen the grant (hive.md R-HV-6).
    end_unknown_bindings: bool = False


def _ip_int(ip: str) -> int:
    return int.from_bytes(socket.inet_aton(ip), "big")


def _msg_identity(msg: DhcpMessage, client_id: str | None) -> Identity:
    mac = msg.mac
    return (client_id, (msg.htype, mac) if mac is not None else None)


@dataclass
class Tracker:
    config: TrackerConfig = field(default_factory=TrackerConfig)
    counters: Counter[str] = field(default_factory=Counter)
    _txns: TransactionTable = field(init=False, repr=False)
    _replies: OrderedDict[DupKey, float] = field(default_factory=OrderedDict, init=False,
                                                 repr=False)
    _swept_at: float = field(default=-math.inf, init=False, repr=False)
    # The records: by ip, with indexes by identity (G14) and a lazy expiry heap (R-EX).
    _leases: dict[str, Lease] = field(default_factory=dict, init=False, repr=False)
    _by_client_id: dict[str, set[str]] = field(default_factory=dict, init=False, repr=False)
    _by_hw: dict[tuple[int, str], set[str]] = field(default_factory=dict, init=False,
                                                    repr=False)
    _expiry: list[tuple[int, str]] = field(default_factory=list, init=False, repr=False)
    # The capture time of each record's grant, its version (R-HV-2), for re-assertion (R-HV-8);
    # 0.0 for records restored from Redis (their `updated` second stands in).
    _granted_at: dict[str, float] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        config = self.config
        self._txns = TransactionTable(config.txn_ttl, config.txn_max, config.txn_max_per_hw,
                                      self.counters)

    # ---- public ------------------------------------------------------------------------------

    def restore(self, leases: Iterable[Lease]) -> None:
        """Load records found in Redis at start-up (R-RD-6)."""
        for lease in leases:
            self._put(lease)

    def handle(self, msg: DhcpMessage, now: float) -> list[Command]:
        """The commands one message causes, in the order the store must apply them."""
        ts = msg.ts
        if abs(ts - self._swept_at) >= SWEEP_EVERY:
            self._sweep(ts)
        kind = msg.msg_type
        if msg.op == 1:
            if kind in (DISCOVER, REQUEST, INFORM):
                self._client(msg, kind)
            elif kind is None:
                if self.config.track_bootp:
                    self._client(msg, BOOTREQUEST)
                else:
                    self.counters["ignored_bootp"] += 1
            elif kind == RELEASE:
                return self._release(msg)
            elif kind == DECLINE:
                return self._decline(msg)
            return []
        if kind == ACK:
            return self._grant(msg, now)
        if kind is None:
            if self.config.track_bootp:
                return self._grant(msg, now)
            self.counters["ignored_bootp"] += 1
        elif kind == NAK:
            return self._nak(msg)
        elif kind == OFFER and not self._allowed(msg, msg.server):
            return self._reject(RejectReason.ROGUE_REPLY, msg)
        return []

    def current_grants(self, now: float) -> list[Grant]:
        """The records that have not expired by wall-clock time `now`, each as the Grant that
        writes it again with its original version (hive.md R-HV-8: a store that lost them gets
        them back). The label and the record replaced are not kept: GRANTED, none."""
        granted_at = self._granted_at
        return [Grant(lease, GrantEvent.GRANTED, None, granted_at.get(ip, 0.0))
                for ip, lease in self._leases.items()
                if lease.expires is None or lease.expires > now]

    @property
    def pending_transactions(self) -> int:
        return len(self._txns)

    @property
    def leases(self) -> Mapping[str, Lease]:
        """The records as the tracker believes them (read-only; may still hold records that have
        expired since the last packet)."""
        return MappingProxyType(self._leases)

    # ---- client messages ---------------------------------------------------------------------

    def _client(self, msg: DhcpMessage, kind: int) -> None:
        """R-TX-2: open or update the transaction of a DISCOVER, REQUEST, INFORM or BOOTREQUEST."""
        group_key = (msg.xid, msg.htype, msg.chaddr)
        client_id = msg.client_id
        txn = None
        group = self._txns.live_group(group_key, msg.ts)
        if group is not None:
            for candidate in group:
                if candidate.client_id == client_id:
                    txn = candidate
                    break
        if txn is None:
            txn = self._txns.open(group_key, client_id, msg.ts)
        txn.merge(msg, kind, self.config.dup_window)
        self._txns.touch(txn, msg.ts)

    def _release(self, msg: DhcpMessage) -> list[Command]:
        """R-RL: ciaddr, else option 50."""
        ip = msg.ciaddr if msg.ciaddr != ZERO else msg.requested_ip
        return self._end_by_client(msg, ip, RevokeReason.RELEASED, "release_deleted")

    def _decline(self, msg: DhcpMessage) -> list[Command]:
        """R-DC: option 50, else ciaddr."""
        ip = msg.requested_ip or (msg.ciaddr if msg.ciaddr != ZERO else None)
        return self._end_by_client(msg, ip, RevokeReason.DECLINED, "decline_deleted")

    def _end_by_client(self, msg: DhcpMessage, ip: str | None, reason: RevokeReason,
                       counter: str) -> list[Command]:
        allowed = self.config.allowed_servers
        if msg.framing_error or ip is None:  # R-IN-13: no deletion based on a corrupt message
            return []
        if allowed and msg.server_id is not None and msg.server_id not in allowed:
            return []
        record = self._current(ip, math.floor(msg.ts))
        identity = _msg_identity(msg, msg.client_id)
        if record is None or not same_client(record.identity, identity):
            return self._unknown(ip, msg, identity, reason)
        self.counters[counter] += 1
        revoke = self._revoke(record, reason, msg.ts)
        self._remove(ip)
        return [revoke]

    # ---- replies -----------------------------------------------------------------------------

    def _grant(self, msg: DhcpMessage, now: float) -> list[Command]:
        """R-GR: an ACK or a BOOTREPLY, steps G1-G15 in order."""
        server = msg.server
        if not self._allowed(msg, server):  # G1 allow-list
            return self._reject(RejectReason.ROGUE_REPLY, msg)
        if self._duplicate(msg):  # G2 a copy of a reply already handled
            return []
        txn = self._correlate(msg)  # G3 the transaction it answers, if any
        if txn is not None and txn.latest_kind == INFORM:  # G4 an ACK to INFORM grants nothing
            return self._reject(RejectReason.ACK_TO_INFORM, msg)
        if not valid_lease_address(msg.yiaddr):  # G5 an address a lease can be for
            return self._reject(RejectReason.BAD_YIADDR, msg)
        lease_time = msg.lease_time  # G6 a usable lease time
        if lease_time is None:
            if msg.msg_type == ACK:
                return self._reject(RejectReason.NO_LEASE_TIME, msg)
            lease_time = INFINITE
        elif lease_time == 0:
            return self._reject(RejectReason.ZERO_LEASE, msg)
        if txn is not None and txn.decided is not None and txn.decided != server:  # G7 decided
            return self._reject(RejectReason.LATE_OTHER_SERVER, msg)
        second = math.floor(msg.ts)
        record = self._current(msg.yiaddr, second)
        if record is not None and record.updated > second:  # G8 older than the record
            return self._reject(RejectReason.STALE, msg)
        if (self.config.capture_clock and lease_time != INFINITE
                and second + lease_time <= now):  # G9 already over
            return self._reject(RejectReason.ALREADY_EXPIRED, msg)
        # G10-G12: the record's identity, hostname and relay fields
        lease = self._new_lease(msg, txn, record, server, lease_time, second)
        mask = self._mask(msg) if self.config.supersede_same_subnet else None
        commands: list[Command] = [self._write(lease, record, msg.ts, mask)]  # G13 write
        if mask is not None:  # G14 supersede on the same subnet
            commands.extend(self._supersede(lease, msg, mask))
        self._decide(txn, msg, server)  # G15 the transaction is decided by this server
        if txn is not None and txn.selected is not None and txn.selected != server:
            self.counters["ack_not_selected"] += 1
        return commands

    def _new_lease(self, msg: DhcpMessage, txn: Txn | None, record: Lease | None, server: str,
                   lease_time: int, second: int) -> Lease:
        mac = msg.mac
        client_id = msg.client_id  # G10, R-ID-4: the reply's 61, else the transaction's, ...
        if client_id is None and txn is not None:
            client_id = txn.client_id
        if (client_id is None and record is not None and mac is not None
                and record.mac == mac and record.htype == msg.htype):
            client_id = record.client_id
        same = record is not None and same_client(record.identity,
                                                  _msg_identity(msg, client_id))
        prev = record if same else None
        hostname, source = self._hostname(msg, txn, prev)  # G11 hostname
        relayed = msg.giaddr != ZERO  # G12 giaddr and option 82, from the reply or carried over
        if relayed:
            giaddr = msg.giaddr
        elif txn is not None and txn.giaddr is not None:
            giaddr = txn.giaddr
        else:
            giaddr = prev.giaddr if prev is not None else ZERO
        if relayed and msg.relay_info:
            circuit_id, remote_id = msg.circuit_id, msg.remote_id
        elif txn is not None and txn.relay is not None:
            circuit_id, remote_id = txn.relay
        elif prev is not None:
            circuit_id, remote_id = prev.circuit_id, prev.remote_id
        else:
            circuit_id = remote_id = None
        return Lease(
            ip=msg.yiaddr, mac=mac, htype=msg.htype, client_id=client_id,
            hostname=hostname, hostname_src=source,
            expires=None if lease_time == INFINITE else second + lease_time,
            lease_time=lease_time, server=server, giaddr=giaddr,
            circuit_id=circuit_id, remote_id=remote_id, xid=msg.xid, updated=second,
            kind="bootp" if msg.msg_type is None else "dhcp",
        )

    @staticmethod
    def _hostname(msg: DhcpMessage, txn: Txn | None,
                  prev: Lease | None) -> tuple[str | None, str | None]:
        """R-HN-1 precedence: ack81, ack12, req81, req12, prev."""
        if msg.fqdn:
            return msg.fqdn, "ack81"
        if msg.hostname:
            return msg.hostname, "ack12"
        if txn is not None and txn.fqdn:
            return txn.fqdn, "req81"
        if txn is not None and txn.hostname:
            return txn.hostname, "req12"
        if prev is not None and prev.hostname:
            return prev.hostname, "prev"
        return None, None

    def _write(self, lease: Lease, record: Lease | None, ts: float,
               mask: int | None = None) -> Grant:
        """G13: replace the record at the address; tell whose it was."""
        if record is None:
            event = GrantEvent.GRANTED
        elif same_client(record.identity, lease.identity):
            event = GrantEvent.RENEWED
        else:
            event = GrantEvent.REASSIGNED
        self.counters[event] += 1
        self._put(lease)
        self._granted_at[lease.ip] = ts
        return Grant(lease, event, record, ts,
                     None if mask is None else mask.bit_count())

    def _mask(self, msg: DhcpMessage) -> int:
        """The client's subnet mask: option 1, else the configured prefix length."""
        if msg.subnet_mask is not None:
            return _ip_int(msg.subnet_mask)
        return (0xFFFFFFFF << (32 - self.config.default_prefix_len)) & 0xFFFFFFFF

    def _supersede(self, lease: Lease, msg: DhcpMessage, mask: int) -> list[Command]:
        """G14: delete the client's other records on the same subnet, oldest grant first."""
        identity = lease.identity
        candidates: set[str] = set()
        if identity[0] is not None:
            candidates |= self._by_client_id.get(identity[0], set())
        if identity[1] is not None:
            candidates |= self._by_hw.get(identity[1], set())
        candidates.discard(lease.ip)
        if not candidates:  # the usual case: the client holds no other record
            return []
        subnet = _ip_int(lease.ip) & mask
        commands: list[Command] = []
        for ip in sorted(candidates, key=_ip_int):
            other = self._current(ip, lease.updated)
            if (other is not None and other.updated <= lease.updated
                    and _ip_int(ip) & mask == subnet
                    and same_client(other.identity, identity)):
                self.counters["superseded"] += 1
                commands.append(self._revoke(other, RevokeReason.SUPERSEDED, msg.ts))
                self._remove(ip)
        return commands

    def _nak(self, msg: DhcpMessage) -> list[Command]:
        """R-NK steps 1-7: allow-list, duplicate, correlate (no match: decide, delete nothing),
        already decided, not answering a REQUEST, delete the requested address's record if it is
        the client's, decide."""
        server = msg.server
        if not self._allowed(msg, server):
            return self._reject(RejectReason.ROGUE_NAK, msg)
        if self._duplicate(msg):
            return []
        txn = self._correlate(msg)
        if txn is None:
            self.counters["nak_uncorrelated"] += 1
            self._decide(txn, msg, server)
            return []
        if txn.decided is not None:
            if txn.decided == server:
                return []
            return self._reject(RejectReason.LATE_OTHER_SERVER, msg)
        commands: list[Command] = []
        ip = txn.requested_ip
        if txn.latest_kind == REQUEST and ip is not None:
            record = self._current(ip, math.floor(msg.ts))
            identity = _msg_identity(msg, msg.client_id or txn.client_id)
            if record is not None and same_client(record.identity, identity):
                self.counters["nak_deleted"] += 1
                commands.append(self._revoke(record, RevokeReason.NAK, msg.ts))
                self._remove(ip)
            else:
                commands += self._unknown(ip, msg, identity, RevokeReason.NAK)
        self._decide(txn, msg, server)
        return commands

    def _revoke(self, record: Lease, reason: RevokeReason, ts: float) -> Revoke:
        """The deletion of a record this tracker holds, which comes after the grant it ends
        whatever the capture's clock says (a capture stamped earlier than the grant: R-RD-7, in
        processing order): the store orders an address's events by capture time. A record read
        back at start has only its grant's second: the deletion comes at its end."""
        granted = self._granted_at.get(record.ip, record.updated + 1 - 1 / MICRO)
        return Revoke(record, reason, max(ts, granted))

    def _unknown(self, ip: str, msg: DhcpMessage, identity: Identity,
                 reason: RevokeReason) -> list[Command]:
        """The deletion of a binding this tracker does not hold, for the store to decide
        (end_unknown_bindings): only the address and the client the packet names are known."""
        if not self.config.end_unknown_bindings or not valid_lease_address(ip):
            return []
        second = math.floor(msg.ts)
        named = Lease(ip=ip, mac=msg.mac, htype=msg.htype, client_id=identity[0], hostname=None,
                      hostname_src=None, expires=second, lease_time=0, server=msg.server,
                      giaddr=msg.giaddr, circuit_id=None, remote_id=None, xid=msg.xid,
                      updated=second, kind="dhcp")
        return [Revoke(named, reason, msg.ts, held=False)]

    def _allowed(self, msg: DhcpMessage, server: str) -> bool:
        """R-SV-2 and R-SV-3 for a server reply."""
        config = self.config
        if config.allowed_servers and server not in config.allowed_servers:
            return False
        if config.strict_source and msg.src not in config.allowed_servers:
            return msg.src in config.trusted_relays and msg.giaddr == msg.src
        return True

    def _duplicate(self, msg: DhcpMessage) -> bool:
        """R-TX-7, for a reply that passed G1: remembers it, and tells whether a copy came first."""
        key = (msg.msg_type, msg.xid, msg.htype, msg.chaddr, msg.yiaddr, msg.lease_time)
        replies = self._replies
        earlier = replies.get(key)
        if earlier is not None and abs(msg.ts - earlier) < self.config.dup_window:
            self.counters["duplicates"] += 1
            return True
        replies[key] = msg.ts
        replies.move_to_end(key)
        if len(replies) > self.config.txn_max:
            replies.popitem(last=False)
        return False

    def _correlate(self, msg: DhcpMessage) -> Txn | None:
        """R-TX-3: the transaction a reply answers, or None when it is uncorrelated."""
        group = self._txns.live_group((msg.xid, msg.htype, msg.chaddr), msg.ts)
        if group is None:
            return None
        match = None
        if msg.client_id is not None:
            for candidate in group:
                if candidate.client_id == msg.client_id:
                    match = candidate
                    break
        elif len(group) == 1:
            match = group[0]
        if match is not None:
            self._txns.touch(match, msg.ts)
        return match

    def _decide(self, txn: Txn | None, msg: DhcpMessage, server: str) -> None:
        """G15 / R-NK step 7; an uncorrelated reply gets an empty transaction to hold it."""
        if txn is None:
            group_key = (msg.xid, msg.htype, msg.chaddr)
            group = self._txns.live_group(group_key, msg.ts) or []
            txn = next((t for t in group if t.client_id == msg.client_id), None)
            if txn is None:
                txn = self._txns.open(group_key, msg.client_id, msg.ts)
        txn.decided = server
        self._txns.touch(txn, msg.ts)

    def _reject(self, reason: RejectReason, msg: DhcpMessage) -> list[Command]:
        self.counters[reason] += 1
        return [Rejected(reason, msg)]

    def _sweep(self, ts: float) -> None:
        """Forget what outlived its time, oldest first: amortised O(1) per packet (R-TX-5,
        R-TX-7, R-EX). Lookups check ages themselves, so this only bounds memory."""
        self._swept_at = ts
        self._txns.sweep(ts)
        replies, window = self._replies, self.config.dup_window
        while replies:
            key, seen = next(iter(replies.items()))
            if seen > ts - window:
                break
            del replies[key]
        second = math.floor(ts)
        expiry = self._expiry
        while expiry and expiry[0][0] <= second:
            self._current(heapq.heappop(expiry)[1], second)

    # ---- the records -------------------------------------------------------------------------

    def _current(self, ip: str, second: int) -> Lease | None:
        """The record at `ip`, or None; a record that expired by `second` is dropped (R-EX)."""
        record = self._leases.get(ip)
        if record is not None and record.expires is not None and record.expires <= second:
            self._remove(ip)
            return None
        return record

    def _put(self, lease: Lease) -> None:
        ip = lease.ip
        if ip in self._leases:
            self._remove(ip)
        self._leases[ip] = lease
        if lease.client_id is not None:
            self._by_client_id.setdefault(lease.client_id, set()).add(ip)
        if lease.mac is not None:
            self._by_hw.setdefault((lease.htype, lease.mac), set()).add(ip)
        if lease.expires is not None:
            heapq.heappush(self._expiry, (lease.expires, ip))
            if len(self._expiry) > 2 * len(self._leases) + 1024:  # renewals left stale entries
                self._expiry = [(r.expires, r.ip) for r in self._leases.values()
                                if r.expires is not None]
                heapq.heapify(self._expiry)

    def _remove(self, ip: str) -> None:
        lease = self._leases.pop(ip)
        self._granted_at.pop(ip, None)
        if lease.client_id is not None:
            _discard(self._by_client_id, lease.client_id, ip)
        if lease.mac is not None:
            _discard(self._by_hw, (lease.htype, lease.mac), ip)


def _discard(index: dict[K, set[str]], key: K, ip: str) -> None:
    ips = index[key]
    ips.discard(ip)
    if not ips:
        del index[key]
