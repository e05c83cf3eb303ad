"""`dhcp-hive-mind migrate`: a store written before the Redis Cluster layout moved to it (hive.md
R-HV-7): detail hashes at `<namespace>:lease:<ip>` to `<namespace>:lease:{<seed key>}`, and the
MAC's index and history at `<namespace>:mac:<mac>` and `<namespace>:mac-log:<mac>` to
`...:{<mac>}` (one slot per MAC).

Each old detail hash is copied with its TTL (DUMP, RESTORE: it works across cluster slots) and
then deleted. Where a new one exists already (a sniffer of this version wrote the address since),
the old one is only deleted: it is older. The MAC keys are read and merged into the new ones
(SADD; ZADD GT, the latest end of each address kept, as write.lua does), never with fewer
seconds left than either had. Safe to run again, and while sniffers write.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import redis

from sniffer.connection import redis_errors
from sniffer.keys import ipv4_number, literal_pattern
from sniffer.reader import BATCH
from sniffer.store import LeaseStore


def migrate(store: LeaseStore) -> Counter[str]:
    """Moves every old detail hash and MAC key; counts `moved` and `dropped` (a newer detail
    hash was there) and `macs` (MAC keys moved)."""
    keys, client = store.keys, store.client
    counts: Counter[str] = Counter()
    prefix = keys.old_lease("")
    with redis_errors("migration"):
        old = [(name, ip) for key in client.scan_iter(match=literal_pattern(prefix) + "[0-9]*",
                                                      count=BATCH, _type="hash")
               if ipv4_number(ip := (name := _text(key))[len(prefix):]) is not None]
        for start in range(0, len(old), BATCH):
            batch = old[start:start + BATCH]
            pipe = client.pipeline(transaction=False)
            for name, ip in batch:
                pipe.exists(keys.lease(ip))
                pipe.dump(name)
                pipe.pttl(name)
            replies: list[Any] = pipe.execute()
            pipe = client.pipeline(transaction=False)
            restored = []
            for (name, ip), newer, dumped, pttl in zip(batch, replies[::3], replies[1::3],
                                                        replies[2::3], strict=True):
                if dumped is not None and pttl != -2 and not newer:
                    # No REPLACE: a sniffer that writes the address meanwhile keeps its record.
                    pipe.restore(keys.lease(ip), max(int(pttl), 0), dumped)
                    restored.append(True)
                else:
                    counts["dropped"] += dumped is not None
                    restored.append(False)
                pipe.delete(name)
            done = iter(pipe.execute(raise_on_error=False))
            for was_restored in restored:
                if was_restored:
                    reply = next(done)
                    counts["dropped" if isinstance(reply, Exception) else "moved"] += 1
                next(done)
        counts["macs"] += _move_mac_keys(client, keys.old_by_mac(""), keys.by_mac, "set")
        counts["macs"] += _move_mac_keys(client, keys.old_mac_log(""), keys.mac_log, "zset")
    return counts


def _move_mac_keys(client: redis.Redis, prefix: str, new: Callable[[str], str],
                   kind: str) -> int:
    """Merges each untagged MAC key (`prefix` then the MAC) of type `kind` into its new name and
    deletes it; the number moved. Read and rewritten: a RENAME across cluster slots is refused,
    and a sniffer may have written the new key already."""
    moved = 0
    old = [(name, new(name[len(prefix):])) for key in client.scan_iter(
               match=literal_pattern(prefix) + "[^{]*", count=BATCH, _type=kind)
           if not (name := _text(key))[len(prefix):].startswith("{")]
    for start in range(0, len(old), BATCH):
        batch = old[start:start + BATCH]
        pipe = client.pipeline(transaction=False)
        for name, target in batch:
            if kind == "set":
                pipe.smembers(name)
            else:
                pipe.zrange(name, 0, -1, withscores=True)
            pipe.pttl(name)
            pipe.pttl(target)
        replies: list[Any] = pipe.execute()
        pipe = client.pipeline(transaction=False)
        for (name, target), members, left, target_left in zip(
                batch, replies[::3], replies[1::3], replies[2::3], strict=True):
            if members:
                if kind == "set":
                    pipe.sadd(target, *members)
                else:
                    pipe.zadd(target, dict(members), gt=True)
                if left > 0 and target_left != -1:  # the longer of the two TTLs (-2: new)
                    pipe.pexpire(target, max(left, target_left))
                moved += 1
            pipe.delete(name)
        pipe.execute()
    return moved


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
