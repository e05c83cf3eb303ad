"""The hive's writers (spec R-HV-1, R-HV-8, R-HV-9): each writer's id, a heartbeat key while it
runs (a second writer with a live id refuses to start), its clock against Redis's, and the
checks that tell it Redis lost what it wrote.

`WriterRegistry` is the Redis side (the heartbeat keys, the writers hash, TIME); `Heartbeat`
keeps one writer's key alive from a thread of its own and measures the clock skew as it goes,
apart from the lease writes, so a long write backlog never lets the heartbeat lapse.
`StoreProbe` reads what sniffer/durability.py decides from: the writer's marker and the masters'
run ids.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, cast

import redis

from sniffer.connection import StoreError, is_cluster, redis_errors
from sniffer.durability import Probe
from sniffer.errors import HiveError
from sniffer.escape import printable
from sniffer.keys import Keys
from sniffer.logs import log
from sniffer.scripts import key_slot

HEARTBEAT_TTL = 15  # seconds a heartbeat key outlives a writer that stopped refreshing it
HEARTBEAT_EVERY = 5.0  # seconds between refreshes (and clock measurements)
SKEW_ALLOWED = 1.0  # seconds of clock difference from Redis before a warning (R-HV-9)
SKEW_WARN_EVERY = 600.0  # seconds between repeated warnings while the skew stays too large
WRITER_ID_MAX = 200
FILE_NAMES_SHOWN = 3  # a replay of more files is named by the first and a digest of all


class WriterError(HiveError):
    """A writer id that cannot be used: not one, or held by a running writer (a live
    heartbeat of another process)."""


def _lua(name: str) -> str:
    return (files("sniffer") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


HEARTBEAT_LUA, RELEASE_LUA = _lua("heartbeat"), _lua("release")


def sniff_writer_id(interfaces: Sequence[str]) -> str:
    """The default id of a live sniffer: this host and the interfaces it captures."""
    return f"{socket.gethostname()}:{','.join(interfaces)}"


def replay_writer_id(paths: Sequence[Path]) -> str:
    """The default id of a replay: this host and the files it reads."""
    names = [path.name for path in paths]
    if len(names) > FILE_NAMES_SHOWN:
        digest = hashlib.sha256("\0".join(map(str, paths)).encode()).hexdigest()[:8]
        names = [names[0], f"+{len(names) - 1} more ({digest})"]
    return f"{socket.gethostname()}:replay:{','.join(names)}"


def check_writer_id(writer_id: str) -> str:
    """The id as given, if it is one: 1 to 200 printable characters (it is shown everywhere)."""
    if not 1 <= len(writer_id) <= WRITER_ID_MAX or printable(writer_id) != writer_id \
            or writer_id != writer_id.strip():
        raise WriterError(f"writer id {printable(writer_id)!r} must be 1 to {WRITER_ID_MAX} "
                        "printable characters, without spaces at either end")
    return writer_id


@dataclass(frozen=True)
class LiveWriter:
    """A writer whose heartbeat is live, as it registered itself."""

    writer_id: str
    host: str
    pid: int
    since: float  # Unix seconds it started


class WriterRegistry:
    """The writers' keys: a heartbeat per live writer (`<ns>:writer:<id>`, a short TTL) and the
    writers hash (`<ns>:writers`: every writer that registered or wrote -> Unix seconds)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._heartbeat = client.register_script(HEARTBEAT_LUA)
        self._release = client.register_script(RELEASE_LUA)

    def beat(self, writer_id: str, value: str, ttl: int) -> str | None:
        """Set or refresh the writer's heartbeat; the holder's value if another process's live
        heartbeat has the id (nothing is changed then)."""
        with redis_errors("heartbeat"):
            held = self._heartbeat(keys=[self.keys.writer(writer_id)], args=[value, ttl])
            if held is not None:
                return _text(held)
            self.client.hset(self.keys.writers, writer_id, str(math.floor(time.time())))
        return None

    def release(self, writer_id: str, value: str) -> None:
        with redis_errors("heartbeat"):
            self._release(keys=[self.keys.writer(writer_id)], args=[value])

    def live(self) -> list[LiveWriter]:
        """The writers whose heartbeat is live, by id."""
        with redis_errors("read"):
            ids = sorted(_text(name) for name in self.client.hkeys(self.keys.writers))
            pipe = self.client.pipeline(transaction=False)
            for writer_id in ids:
                pipe.get(self.keys.writer(writer_id))
            values = pipe.execute()
        return [_live(writer_id, _text(value)) for writer_id, value in zip(ids, values,
                                                                          strict=True)
                if value is not None]

    def clock_skew(self, clock: Callable[[], float] = time.time) -> float:
        """This host's clock minus Redis's (TIME), in seconds: read around the round trip, so
        its own length cancels out."""
        with redis_errors("read"):
            before = clock()
            seconds, micros = self.client.time()
            after = clock()
        return (before + after) / 2 - (seconds + micros / 1e6)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _live(writer_id: str, value: str) -> LiveWriter:
    try:
        fields = json.loads(value)
        return LiveWriter(writer_id, str(fields["host"]), int(fields["pid"]),
                          float(fields["since"]))
    except (ValueError, KeyError, TypeError):  # another program's key: still a live id
        return LiveWriter(writer_id, "?", 0, 0.0)


class Heartbeat:
    """One writer's registration while it runs. `start` claims the id (WriterError if a live
    heartbeat of another process has it) and measures the clock skew; a thread then refreshes
    the heartbeat and measures again every `every` seconds; `stop` ends it and removes the key.

    The skew is this host's clock minus Redis's; beyond `allowed` it is a warning (`warn`), at
    start and then every SKEW_WARN_EVERY seconds while it lasts. `clock` is the host's clock
    (passed in: tests set it off by a known amount)."""

    def __init__(self, registry: WriterRegistry, writer_id: str, *, ttl: int = HEARTBEAT_TTL,
                 every: float = HEARTBEAT_EVERY, allowed: float = SKEW_ALLOWED,
                 clock: Callable[[], float] = time.time,
                 warn: Callable[[str], None] = log.warning) -> None:
        self.registry = registry
        self.writer_id = writer_id
        self.ttl, self.every, self.allowed = ttl, every, allowed
        self.clock = clock
        self.warn = warn
        self.skew = math.nan  # the last measurement
        self._value = json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                  "since": round(clock(), 3)})
        self._warned_at = -math.inf
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._failing = False

    def start(self) -> None:
        held = self.registry.beat(self.writer_id, self._value, self.ttl)
        if held is not None:
            raise WriterError(
                f"writer id {self.writer_id!r} is in use by a running writer "
                f"({_describe(_live(self.writer_id, held))}): give this one another "
                f"--writer-id, or stop that one (its heartbeat lasts {self.ttl} s after it "
                "stops)")
        self._measure()
        self._thread.start()

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(StoreError):  # Redis is away: the key expires on its own
            self.registry.release(self.writer_id, self._value)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                held = self.registry.beat(self.writer_id, self._value, self.ttl)
                self._measure()
            except StoreError as error:
                if not self._failing:
                    log.warning("writer heartbeat failed, retrying: %s", error)
                self._failing = True
                continue
            self._failing = False
            if held is not None:
                log.error("writer id %r was taken by another writer (%s) while our heartbeat "
                          "lapsed: two writers now share it", self.writer_id,
                          _describe(_live(self.writer_id, held)))

    def _measure(self) -> None:
        self.skew = skew = self.registry.clock_skew(self.clock)
        now = time.monotonic()
        if abs(skew) <= self.allowed:
            if self._warned_at > -math.inf:
                log.info("clock skew back within %g s of Redis's: %+.3f s", self.allowed, skew)
            self._warned_at = -math.inf
        elif now - self._warned_at >= SKEW_WARN_EVERY:
            self._warned_at = now
            side = "ahead of" if skew > 0 else "behind"
            self.warn(f"this host's clock is {abs(skew):.3f} s {side} Redis's (more than "
                      f"the {self.allowed:g} s allowed): changes to one address from "
                      "different sniffers may be ordered wrongly; synchronise the clocks (NTP)")


@contextmanager
def registered(client: redis.Redis, keys: Keys, writer_id: str, *, allowed: float,
               warn: Callable[[str], None] = log.warning) -> Iterator[Heartbeat]:
    """The writer registered, with its heartbeat running, for the time of the block."""
    heartbeat = Heartbeat(WriterRegistry(client, keys), writer_id, allowed=allowed, warn=warn)
    heartbeat.start()
    try:
        yield heartbeat
    finally:
        heartbeat.stop()


def _describe(writer: LiveWriter) -> str:
    if writer.pid == 0:
        return "a key this program did not write"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(writer.since))
    return f"pid {writer.pid} on {printable(writer.host)}, since {started}"


class StoreProbe:
    """The Redis side of a writer's durability checks (sniffer/durability.py): its marker, a key
    without TTL holding a token of this process, and the run ids of the masters (INFO server;
    on a cluster every master's). A user not allowed INFO has the marker alone.

    On a cluster the writer keeps a marker on every master (`Keys.cluster_mark`, in a slot the
    master serves as the client's slot map has it), so that a master restarted empty is told
    from the others, whose markers hold on. When the map changes (a reshard, a master added)
    the markers it asks for that were never written are written at that check, not counted
    as lost."""

    def __init__(self, client: redis.Redis, keys: Keys, writer_id: str) -> None:
        self.client = client
        self.keys = keys
        self.writer_id = writer_id
        self.token = secrets.token_hex(8)
        self._info = True  # INFO allowed, as far as we know
        self._written: set[str] = set()  # every marker written, removed by unmark()
        self._map: dict[int, str] = {}  # the slot map (slot -> master) the markers were for
        self._markers = [keys.mark(writer_id)]

    def mark(self) -> None:
        self._set(self._current())

    def unmark(self) -> None:
        with redis_errors("check"):
            pipe = self.client.pipeline(transaction=False)
            for key in sorted(self._written):
                pipe.delete(key)
            pipe.execute()
        self._written.clear()

    def check(self) -> Probe:
        markers = self._current()
        new = [key for key in markers if key not in self._written] if self._written else []
        self._set(new)  # the map changed since mark(): nothing to compare with there yet
        kept = [key for key in markers if key not in new]
        with redis_errors("check"):
            pipe = self.client.pipeline(transaction=False)
            for key in kept:
                pipe.get(key)
            marked = all(_text(value) == self.token for value in pipe.execute())
            return Probe(self._run_ids(), marked)

    def _set(self, markers: list[str]) -> None:
        if not markers:
            return
        with redis_errors("check"):
            pipe = self.client.pipeline(transaction=False)
            for key in markers:
                pipe.set(key, self.token)
            pipe.execute()
        self._written.update(markers)

    def _current(self) -> list[str]:
        """The markers for the slot map as the client has it now: one key standalone; on a
        cluster one per master, each with the first tag (0, 1, ...) whose slot it serves."""
        if not is_cluster(self.client):
            return self._markers
        slots: Any = cast(redis.RedisCluster, self.client).nodes_manager.slots_cache
        # A copy first: the heartbeat's thread may have the client update the map meanwhile.
        masters = {slot: nodes[0].name for slot, nodes in list(slots.items()) if nodes}
        if masters != self._map:
            self._map = masters
            self._markers = _one_per_master(masters, lambda tag: self.keys.cluster_mark(
                self.writer_id, tag))
        return self._markers

    def _run_ids(self) -> frozenset[str] | None:
        if not self._info:
            return None
        client: Any = self.client
        try:
            if is_cluster(client):
                infos = client.info("server", target_nodes=redis.RedisCluster.PRIMARIES)
                # One master: its reply as it is; several: by node.
                replies = [infos] if "run_id" in infos else list(infos.values())
            else:
                replies = [client.info("server")]
        except redis.exceptions.NoPermissionError:
            self._info = False
            log.info("the Redis user may not run INFO: a failover that lost writes is told "
                     "by failed writes only, a Redis that came back empty by the writer's "
                     "marker")
            return None
        return frozenset(str(reply["run_id"]) for reply in replies)


TAGS_TRIED = 1 << 16  # far more than the masters of any cluster need (3 masters: a few)


def _one_per_master(masters: dict[int, str], key: Callable[[str], str]) -> list[str]:
    """`key(tag)` for the first tag (0, 1, ...) whose slot each master in `masters` (slot ->
    master) serves. A namespace with braces puts every key in one slot: one master then."""
    found: dict[str, str] = {}
    count = len(set(masters.values()))
    for n in range(TAGS_TRIED):
        name = key(str(n))
        master = masters.get(key_slot(name.encode()))
        if master is not None and master not in found:
            found[master] = name
            if len(found) == count:
                break
    return sorted(found.values())
