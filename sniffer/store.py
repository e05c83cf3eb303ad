"""LeaseStore: tracker commands written to Redis (spec R-RD, the Redis data model), on top of
LeaseReader (sniffer/reader.py), which reads records back. Every key comes from `Keys`
(sniffer/keys.py); every write goes through `LeaseStore.apply`, one transaction a batch, running
write.lua (sniffer/lua/) by SHA (sniffer/scripts.py).
"""

from __future__ import annotations

import math
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.typing import EncodableT

from sniffer.commands import ROGUE_REASONS, Command, Grant, Rejected, Revoke
from sniffer.connection import redis_errors
from sniffer.dhcp import ZERO
from sniffer.history import MICRO, grant_member, parse_member, revoke_member
from sniffer.keys import Keys
from sniffer.permissions import check_writes
from sniffer.reader import LeaseReader
from sniffer.scripts import Call, Calls, SentBatch, lua, text
from sniffer.supersede import Elsewhere, same_subnet, superseded

# Rogue servers counted one by one, in the rogue-server hash and in a sniffer's own summary;
# forged server identifiers must not grow either without end.
ROGUE_SERVERS_MAX = 1000
HISTORY_DAYS = 30.0  # how long an address's history is kept, by default
HISTORY_MAX = 1000  # events kept per address: a flood on one address cannot grow its history
# Two sightings of one packet (twin sniffers, a replay, a re-assertion) closer than this are one
# event (hive.md R-HV-3); a twin's clock may differ by up to the allowed skew.
DUPLICATE_WINDOW = MICRO

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
        # Its settings written into write.lua's text (the stream cap a string, as XADD reads it).
        settings = (f"'{int(stream_maxlen)}', {ROGUE_SERVERS_MAX}, "
                    f"{self.history_seconds * MICRO}, {int(history_max)}, {DUPLICATE_WINDOW}")
        self._write_script = client.register_script(
            WRITE_LUA.replace("{{settings}}", settings, 1))
        # Whether other writers share the store (the writers hash lists another): then each
        # grant is also checked against their records (R-HV-6). Read before the first batch,
        # then told by every batch's reply; once seen, for good.
        self._others: bool | None = None
        # On a cluster, reads the replies of the previous batch's writes that followed its lease
        # calls (sent, not waited for: the next batch is decoded meanwhile), and acts on them.
        self._unread: Callable[[], object] | None = None

    def check_writes(self) -> None:
        """Refuse, in one line, a Redis user whose ACL lacks a right the writes need (at start,
        rather than at the first write)."""
        check_writes(self.client, self.keys, self.writer)

    def apply(self, commands: Sequence[Command], now: float) -> None:
        """Write one batch, in order (R-RD-2: each record replaced whole and atomically; R-RD-7:
        in processing order).

        Every write goes through write.lua (about 35 arguments a lease instead of fifteen redis-py
        commands and their 80 arguments), one call per slot (hive.md R-HV-7): on a standalone
        Redis the whole batch is one atomic call; on a cluster each address's change is one
        atomic call on its slot. Each grant or deletion joins the address's log, from which the
        script recomputes the record (R-HV-3: whatever the order writers' events arrive in).
        What depends on the result (the indexes by MAC and client-id and the expiry set when
        they live on other slots, a record of another writer that was replaced) and the streams
        on other slots are written after, by idempotent commands. Calls are pipelined (per node
        on a cluster).
        """
        self.send(commands, now).wait()
        self.drain()

    def drain(self) -> None:
        """Read the replies of what the last batch's wait() sent on a cluster and did not wait
        for (StoreError if those writes failed): after it, Redis holds every batch."""
        unread, self._unread = self._unread, None
        if unread is not None:
            with redis_errors("write"):
                unread()

    def send(self, commands: Sequence[Command], now: float) -> SentBatch:
        """Send one batch as apply() does, without waiting for the reply, which the batch's
        wait() reads, raising what apply() would. Wait for a batch before sending the next
        (R-RD-7). On a cluster the leases' calls (and the writers hash's) are sent here; wait()
        reads them and sends the writes that follow, whose replies the next batch's wait()
        reads, or drain(), unless other writers share the store (then they are waited for)."""
        if not commands:
            return SentBatch(self, self._write_script, [])
        if self._others is None:  # part of the write: its failure is the write's
            with redis_errors("write"):
                self._others = any(text(name) != self.writer
                                   for name in self.client.hkeys(self.keys.writers))
        batch = _Batch(self._cluster)
        for command in commands:
            match command:
                case Grant():
                    self._grant(batch, command, now)
                case Revoke():
                    self._revoke(batch, command)
                case Rejected() if command.reason in ROGUE_REASONS:
                    self._rogue(batch, command)
        # With the lease calls: its reply (the number of writers) says, once they are read,
        # whether the writes that follow them must be waited for.
        writers = batch.writers = batch.calls.at(self.keys.writers)
        writers.records += ("W", writers.key(self.keys.writers), self.writer,
                            str(math.floor(now)))
        calls = [call.args() for call in batch.calls.by_slot.values()]
        sent = SentBatch(self, self._write_script, calls, lambda replies: self._after(
            batch, replies, now))
        sent.send()  # standalone, one call (Calls): one EVALSHA; a cluster, the leases' calls
        return sent

    def _after(self, batch: _Batch, replies: list[Any], now: float) -> None:
        """The writes that follow a batch's lease calls: the other slots' writes of the
        operations that changed a record, taking a replaced or deleted record of another
        client out of the indexes, and, when other writers share the store, supersede against
        their records."""
        self.drain()  # the batch before is written whole before this one's writes that follow
        later, written = batch.later, []
        replies_by_slot = dict(zip(batch.calls.by_slot, replies, strict=True))
        for slot, reply in replies_by_slot.items():
            results = reply if isinstance(reply, list) else []
            for n, pending in enumerate(batch.pending.get(slot, [])):
                code, mac, client_id = results[3 * n:3 * n + 3] or ("", "", "")
                code = text(code)
                if code in LOGGED and pending.grant is not None:  # ended or not, it was a grant
                    written.append(pending.grant)
                for changed, op, key, tail in pending.writes:
                    if code in changed:
                        target = later.at(key)
                        if op == "E":  # an event: its names, then its values
                            names, values = tail
                            target.records += ("E", target.key(key), target.schema(0, names),
                                               *values)
                        else:
                            target.records += (op, target.key(key), *tail)
                if not (mac or client_id):  # the usual case: no other client's record ended
                    continue
                for key in self._index_keys(text(mac) or None, text(client_id) or None):
                    if key not in pending.removed:
                        target = later.at(key)
                        target.records += ("S", target.key(key), pending.ip)
        if batch.writers is not None:  # write.lua's W counts the writers after its own
            counted = replies_by_slot.get(batch.writers.slot)
            if isinstance(counted, list) and counted and int(counted[-1]) > 1:
                self._others = True
        calls = [call.args() for call in later.by_slot.values()]
        if calls and self._cluster and not (self._others and written):
            # Sent without waiting, read by the next batch's wait() or drain(), so that the
            # next batch is decoded meanwhile: nothing reads what they write before then.
            script = self._write_script
            self._load(script)
            read = self._sent_by_master("EVALSHA", script.sha, calls)
            self._unread = lambda: self._evalsha_replies(script, calls, read())
            return
        self._evalsha(self._write_script, calls)
        if self._others and written:  # supersede reads what those wrote
            self._supersede(written, now)

    def _supersede(self, grants: list[Grant], now: float) -> None:
        """G14 against the store (hive.md R-HV-6, sniffer/supersede.py): the client's grants at
        the other addresses of its subnet, found through the MAC's history and the identity
        indexes, whoever wrote them. Read after this batch's own writes, so of two writers
        racing, the later reader sees the other's."""
        keys = self.keys
        checked = [grant for grant in grants if grant.subnet_prefix is not None]
        if not checked:
            return
        with redis_errors("write"):  # what the batch writes next depends on it
            pipe = self.client.pipeline(transaction=False)
            for grant in checked:
                lease = grant.lease
                # Addresses the MAC held a grant at that could still end after this one began.
                if lease.mac is not None:
                    pipe.zrangebyscore(keys.mac_log(lease.mac), lease.updated, "+inf")
                for key in self._index_keys(None, lease.client_id):
                    pipe.smembers(key)
            listed = iter(pipe.execute())
            candidates = []
            for grant in checked:
                lease = grant.lease
                addresses: set[str] = set()
                for _ in range((lease.mac is not None) + (lease.client_id is not None)):
                    addresses.update(map(text, next(listed)))
                candidates += [(grant, ip) for ip in same_subnet(grant, sorted(addresses))]
            if not candidates:
                return
            candidates += [(grant, grant.lease.ip) for grant in checked]  # and their own
            pipe = self.client.pipeline(transaction=False)
            for _, ip in candidates:
                pipe.zrevrange(keys.log(ip), 0, 31)
            logs = pipe.execute()
        elsewhere: dict[int, list[Elsewhere]] = {}
        for (grant, ip), log in zip(candidates, logs, strict=True):
            events = [event for event in map(parse_member, map(text, log)) if event is not None]
            elsewhere.setdefault(id(grant), []).append(Elsewhere(ip, events))
        revokes: list[Command] = []
        for grant in checked:
            revokes += superseded(grant, elsewhere.get(id(grant), ()))
        if revokes:
            self.send(revokes, now).wait()

    def _grant(self, batch: _Batch, grant: Grant, now: float) -> None:
        lease, previous, keys = grant.lease, grant.previous, self.keys
        detail = lease.detail_fields()  # a dict of its own
        detail["writer"] = self.writer
        extra = {"event": grant.event, "ts": str(lease.updated)}
        if previous is not None:
            extra.update(_extra(previous_mac=previous.mac,
                                previous_client_id=previous.client_id,
                                previous_hostname=previous.hostname))
        score: EncodableT
        if lease.expires is None:
            expire, seconds, score = "", 0, "inf"
        elif self.capture_clock:
            expire, seconds, score = "EXPIREAT", lease.expires, lease.expires
        else:
            expire, seconds = "EXPIRE", lease.lease_time
            score = math.floor(now) + lease.lease_time
        ip, names = lease.ip, (*detail, *extra)
        call, pending = batch.lease(keys.seed(ip), ip)
        pending.grant = grant
        if previous is not None:  # the tracker's own record it replaced
            new_keys = self._index_keys(lease.mac, lease.client_id)
            for key in self._index_keys(previous.mac, previous.client_id):
                if key not in new_keys:
                    pending.removed.add(key)
                    if pending.put(REPLACED, key, "S", ip):
                        call.records += ("S", call.key(key), ip)
        stream = pending.put(LOGGED, keys.events, "E", names,
                             (*detail.values(), *extra.values()))
        version, member = grant_member(grant)
        macs, cids = (pending.put(WRITTEN, key, "A", ip) if key else 0
                      for key in self._index_pair(lease.mac, lease.client_id))
        expiry = pending.put(WRITTEN, keys.expiry, "Z", score, ip)
        if expiry == 0:
            pending.writes.append((ENDED, "z", keys.expiry, (ip,)))
        call.records += ("L", call.key(keys.seed(ip)), call.key(keys.lease(ip)), stream,
                         macs, cids, expiry, score, expire, seconds, call.key(keys.log(ip)),
                         version, member, self.history_seconds + lease.lease_time,
                         call.schema(len(detail), names))
        call.records += detail.values()
        call.records += extra.values()
        if lease.mac is not None:  # where `history MAC` looks: the latest end of its grants
            mac_log = keys.mac_log(lease.mac)
            macs_call = batch.other(mac_log)
            macs_call.records += ("M", macs_call.key(mac_log),
                                  "inf" if lease.expires is None else lease.expires, ip,
                                  version // MICRO - self.history_seconds - 1,
                                  self.history_seconds + lease.lease_time)

    def _revoke(self, batch: _Batch, revoke: Revoke) -> None:
        lease, keys = revoke.lease, self.keys
        event = lease.detail_fields()
        event.update(_extra(event="deleted", reason=revoke.reason, writer=self.writer,
                            ts=str(math.floor(revoke.ts)) if revoke.ts else None))
        ip, names = lease.ip, tuple(event)
        call, pending = batch.lease(keys.seed(ip), ip)
        stream = pending.put(LOGGED, keys.events, "E", names, tuple(event.values()))
        version, member = revoke_member(revoke)
        macs, cids = (pending.put(ENDED, key, "S", ip) if key else 0
                      for key in self._index_pair(lease.mac, lease.client_id))
        pending.removed.update(self._index_keys(lease.mac, lease.client_id))
        call.records += ("D", call.key(keys.seed(ip)), call.key(keys.lease(ip)), stream,
                         macs, cids, pending.put(ENDED, keys.expiry, "z", ip),
                         call.key(keys.log(ip)),
                         version, member, self.history_seconds + lease.lease_time,
                         call.schema(0, names))
        call.records += event.values()

    def _index_pair(self, mac: str | None, client_id: str | None) -> tuple[str | None, ...]:
        """A client's index keys, by MAC and by client-id (None where it has none)."""
        return (self.keys.by_mac(mac) if mac else None,
                self.keys.by_client_id(client_id) if client_id else None)

    def _index_keys(self, mac: str | None, client_id: str | None) -> list[str]:
        """The index keys a client is listed under."""
        return [key for key in self._index_pair(mac, client_id) if key is not None]

    def _rogue(self, batch: _Batch, rejected: Rejected) -> None:
        msg, keys = rejected.msg, self.keys
        server = msg.server  # R-SV-1: option 54, else the source address
        event = _extra(
            event="rejected", reason=rejected.reason, type=msg.type_name, server=server,
            src=msg.src, mac=msg.mac, ip=msg.yiaddr if msg.yiaddr != ZERO else None,
            xid=f"{msg.xid:08x}", ts=str(math.floor(msg.ts)), writer=self.writer)
        counts = batch.other(keys.rogue_servers)
        counts.records += ("C", counts.key(keys.rogue_servers), server)
        stream = batch.other(keys.rogue)
        stream.records += ("E", stream.key(keys.rogue), stream.schema(0, tuple(event)),
                           *event.values())


# The results of a lease operation (write.lua) that its other writes wait for.
WRITTEN, ENDED, REPLACED, LOGGED = (frozenset("w"), frozenset("x"), frozenset("wx"),
                                    frozenset("wxs"))
Write = tuple[frozenset[str], str, str, tuple[Any, ...]]  # results, op, key, arguments


@dataclass
class _Pending:
    """A lease operation's writes on other slots, made after it by its result, and the index
    keys its own call takes the address out of."""

    ip: str
    calls: Calls
    call: Call
    grant: Grant | None = None  # a grant's pending writes: checked against the store after
    writes: list[Write] = field(default_factory=list)
    removed: set[str] = field(default_factory=set)

    def put(self, changed: frozenset[str], key: str, op: str, *tail: Any) -> int:
        """A write made by `changed` results: in the call (write.lua makes it by the result;
        the key's number there returned) when its key shares the call's slot, else after."""
        if self.calls.slot(key) == self.call.slot:
            return self.call.key(key)
        self.writes.append((changed, op, key, tail))
        return 0


class _Batch:
    """A batch being built: the lease calls (one per slot; on a standalone Redis one call that
    holds every write), their pending writes on other slots (per slot, in order), and the
    writes on other slots that wait for nothing (`later`)."""

    def __init__(self, cluster: bool) -> None:
        self.calls = Calls(cluster)
        self.later = Calls(cluster)
        self.pending: dict[int, list[_Pending]] = {}
        self.writers: Call | None = None  # the call registering the writer

    def lease(self, seed: str, ip: str) -> tuple[Call, _Pending]:
        call = self.calls.at(seed)
        call.address = True
        pending = _Pending(ip, self.calls, call)
        self.pending.setdefault(call.slot, []).append(pending)
        return call, pending

    def other(self, key: str) -> Call:
        """The call of a write that waits for nothing: the batch's own call on a standalone
        Redis, else one made after the lease calls."""
        return (self.later if self.calls.cluster else self.calls).at(key)
