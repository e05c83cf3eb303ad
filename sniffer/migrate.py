"""`dhcp-hive-mind migrate`: a store written before the Redis Cluster layout (detail hashes at
`<namespace>:lease:<ip>`) moved to it (`<namespace>:lease:{<seed key>}`, hive.md R-HV-7).

Each old detail hash is copied with its TTL (DUMP, RESTORE: it works across cluster slots) and
then deleted. Where a new one exists already (a sniffer of this version wrote the address since),
the old one is only deleted: it is older. Safe to run again, and while sniffers write.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sniffer.connection import redis_errors
from sniffer.keys import ipv4_number
from sniffer.reader import BATCH
from sniffer.store import LeaseStore


def migrate(store: LeaseStore) -> Counter[str]:
    """Moves every old detail hash; counts `moved` and `dropped` (a newer one was there)."""
    keys, client = store.keys, store.client
    counts: Counter[str] = Counter()
    prefix = keys.old_lease("")
    pattern = "".join("\\" + c if c in "\\*?[]" else c for c in prefix) + "[0-9]*"
    with redis_errors("migration"):
        old = [(name, ip) for key in client.scan_iter(match=pattern, count=BATCH, _type="hash")
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
    return counts


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
