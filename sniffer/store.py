"""LeaseStore: tracker commands written to Redis (spec R-RD, the Redis data model), on top of
LeaseReader (sniffer/reader.py), which reads records back. Every key comes from `Keys`
(sniffer/keys.py); every write goes through `LeaseStore.apply`, one transaction a batch, running
write.lua (sniffer/lua/) by SHA (sniffer/scripts.py).
"""

from __future__ import annotations

import math
import socket
from collections.abc import Sequence

import redis
from redis.typing import EncodableT

from sniffer.commands import ROGUE_REASONS, Command, Grant, Rejected, Revoke
from sniffer.dhcp import ZERO
from sniffer.history import MICRO, grant_member, revoke_member
from sniffer.keys import Keys
from sniffer.permissions import check_writes
from sniffer.reader import LeaseReader
from sniffer.scripts import Call, Calls, SentBatch, call_with, lua

# Rogue servers counted one by one, in the rogue-server hash and in a sniffer's own summary;
# forged server identifiers must not grow either without end.
ROGUE_SERVERS_MAX = 1000
HISTORY_DAYS = 30.0  # how long an address's history is kept, by default
HISTORY_MAX = 1000  # events kept per address: a flood on one address cannot grow its history

WRITE_LUA = lua("write")


def _extra(**fields: str | None) -> dict[str, str]:
    """The fields that have a value, in the order given."""
    return {k: v for k, v in fields.items() if v is not None}


class LeaseStore(LeaseReader):
    """Writes tracker commands to Redis; reads records back as LeaseReader does."""

    def __init__(self, client: redis.Redis, keys: Keys, *, capture_clock: bool,
                 stream_maxlen: int = 100_000, writer: str | None = None,
                 history_days: float = HISTORY_DAYS, history_max: int = HISTORY_MAX) -> None:
        self.capture_clock = capture_clock
        self.stream_maxlen = stream_maxlen
        # An address's history keeps the events of the `history_days` before its newest (capture
        # time), at most `history_max` of them (hive.md R-HV-4).
        self.history_seconds = max(1, round(history_days * 86400))
        self.history_max = history_max
        self.writer = writer or socket.gethostname()
        super().__init__(client, keys)
        self._write_script = client.register_script(WRITE_LUA)

    def check_writes(self) -> None:
        """Refuse, in one line, a Redis user whose ACL lacks a right the writes need (at start,
        rather than at the first write)."""
        check_writes(self.client, self.keys, self.writer)

    def apply(self, commands: Sequence[Command], now: float) -> None:
        """Write one batch, in order (R-RD-2: each record replaced whole and atomically; R-RD-7:
        in processing order).

        Every write goes through write.lua (about 35 arguments a lease instead of fifteen redis-py
        commands and their 80 arguments), one call per slot (hive.md R-HV-7): on a standalone
        Redis the whole batch is one atomic call; on a cluster each address's seed and detail
        hashes change in one atomic call on its slot, and the indexes (by MAC, by client-id,
        the expiry set), the streams and the writers hash are written after the leases, by
        idempotent commands on their own slots. Calls are pipelined (per node on a cluster).
        """
        self.send(commands, now).wait()

    def send(self, commands: Sequence[Command], now: float) -> SentBatch:
        """Send one batch as apply() does, without waiting for the reply, which the batch's
        wait() reads, raising what apply() would. Wait for a batch before sending the next
        (R-RD-7). On a cluster the leases' calls are sent here, and wait() writes the rest (the
        indexes, streams and writers hash) once they are written."""
        if not commands:
            return SentBatch(self, self._write_script, [])
        calls = Calls(self._cluster)
        for command in commands:
            match command:
                case Grant():
                    self._grant(calls, command, now)
                case Revoke():
                    self._revoke(calls, command)
                case Rejected() if command.reason in ROGUE_REASONS:
                    self._rogue(calls, command)
        writers = calls.at(self.keys.writers)
        writers.records += ("W", writers.key(self.keys.writers), self.writer,
                            str(math.floor(now)))
        head: list[EncodableT] = [self.stream_maxlen, ROGUE_SERVERS_MAX,
                                  self.history_seconds * MICRO, self.history_max]
        leases = [call.args(head) for call in calls.by_slot.values() if call.address]
        others = [call.args(head) for call in calls.by_slot.values() if not call.address]
        sent = SentBatch(self, self._write_script, [leases, others])
        sent.send()  # standalone, one call (Calls): one EVALSHA; a cluster, the leases' calls
        return sent

    def _grant(self, calls: Calls, grant: Grant, now: float) -> None:
        lease, previous, keys = grant.lease, grant.previous, self.keys
        detail = {**lease.detail_fields(), "writer": self.writer}
        extra = _extra(event=grant.event, ts=str(lease.updated),
                       previous_mac=previous.mac if previous else None,
                       previous_client_id=previous.client_id if previous else None,
                       previous_hostname=previous.hostname if previous else None)
        score: EncodableT
        if lease.expires is None:
            expire, seconds, score = "", 0, "inf"
        elif self.capture_clock:
            expire, seconds, score = "EXPIREAT", lease.expires, lease.expires
        else:
            expire, seconds = "EXPIRE", lease.lease_time
            score = math.floor(now) + lease.lease_time
        ip, names = lease.ip, (*detail, *extra)
        if previous is not None:
            self._index(calls, "S", ip, previous.mac, previous.client_id)
        call = self._lease_call(calls, ip)
        stream = self._stream(call, calls, keys.events, names, (*detail.values(),
                                                                *extra.values()))
        version, member = grant_member(grant)
        call.records += ("L", call.key(keys.seed(ip)), call.key(keys.lease(ip)), stream,
                         *self._indexes(call, calls, "A", ip, lease.mac, lease.client_id),
                         call_with(call, calls, keys.expiry, "Z", score, ip), score, expire,
                         seconds, call.key(keys.log(ip)), version, member,
                         self.history_seconds + lease.lease_time,
                         call.schema(len(detail), names))
        call.records += detail.values()
        call.records += extra.values()
        if lease.mac is not None:  # where `history MAC` looks: the latest end of its grants
            mac_log = keys.mac_log(lease.mac)
            macs = calls.at(mac_log)
            macs.records += ("M", macs.key(mac_log),
                             "inf" if lease.expires is None else lease.expires, ip,
                             version // MICRO - self.history_seconds - 1,
                             self.history_seconds + lease.lease_time)

    def _revoke(self, calls: Calls, revoke: Revoke) -> None:
        lease, keys = revoke.lease, self.keys
        event = lease.detail_fields()
        event.update(_extra(event="deleted", reason=revoke.reason, writer=self.writer,
                            ts=str(math.floor(revoke.ts)) if revoke.ts else None))
        ip, names = lease.ip, tuple(event)
        call = self._lease_call(calls, ip)
        stream = self._stream(call, calls, keys.events, names, tuple(event.values()))
        version, member = revoke_member(revoke)
        # Kept while the binding it ended could have lasted (R-HV-4), and the retention.
        call.records += ("D", call.key(keys.seed(ip)), call.key(keys.lease(ip)), stream,
                         *self._indexes(call, calls, "S", ip, lease.mac, lease.client_id),
                         call_with(call, calls, keys.expiry, "z", ip), call.key(keys.log(ip)),
                         version, member, self.history_seconds + lease.lease_time,
                         call.schema(0, names))
        call.records += event.values()

    def _lease_call(self, calls: Calls, ip: str) -> Call:
        call = calls.at(self.keys.seed(ip))
        call.address = True
        return call

    @staticmethod
    def _stream(call: Call, calls: Calls, stream: str, names: tuple[str, ...],
                values: Sequence[str]) -> int:
        """The stream's index in `call` when the stream shares its slot (always on a standalone
        Redis: the event goes with the lease); else 0, and the event goes in the stream's call."""
        target = calls.at(stream)
        if target is call:
            return call.key(stream)
        target.records += ("E", target.key(stream), target.schema(0, names), *values)
        return 0

    def _indexes(self, call: Call, calls: Calls, op: str, ip: str, mac: str | None,
                 client_id: str | None) -> tuple[int, int]:
        """The MAC and client-id index entries of a lease written (op A) or deleted (S) by
        `call`: their keys' numbers in it when they share its slot (always on a standalone
        Redis: fewer arguments), else 0, and the change goes in their own calls."""
        return (call_with(call, calls, self.keys.by_mac(mac), op, ip) if mac else 0,
                call_with(call, calls, self.keys.by_client_id(client_id), op, ip)
                if client_id else 0)

    def _index(self, calls: Calls, op: str, ip: str, mac: str | None,
               client_id: str | None) -> None:
        for key in (self.keys.by_mac(mac) if mac else None,
                    self.keys.by_client_id(client_id) if client_id else None):
            if key is not None:
                call = calls.at(key)
                call.records += (op, call.key(key), ip)

    def _rogue(self, calls: Calls, rejected: Rejected) -> None:
        msg, keys = rejected.msg, self.keys
        server = msg.server  # R-SV-1: option 54, else the source address
        event = _extra(
            event="rejected", reason=rejected.reason, type=msg.type_name, server=server,
            src=msg.src, mac=msg.mac, ip=msg.yiaddr if msg.yiaddr != ZERO else None,
            xid=f"{msg.xid:08x}", ts=str(math.floor(msg.ts)), writer=self.writer)
        counts = calls.at(keys.rogue_servers)
        counts.records += ("C", counts.key(keys.rogue_servers), server)
        stream = calls.at(keys.rogue)
        stream.records += ("E", stream.key(keys.rogue), stream.schema(0, tuple(event)),
                           *event.values())
