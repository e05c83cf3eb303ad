"""The replay and sniff loop: datagrams -> decode -> track -> batched store writes.

The only place that reads the wall clock for the tracker (G9, already expired) and decides when a
batch is flushed.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sniffer.commands import ROGUE_REASONS, Command, Grant, Rejected, Revoke
from sniffer.dhcp import Datagram, Dropped, decode
from sniffer.scripts import SentBatch
from sniffer.store import ROGUE_SERVERS_MAX, LeaseStore
from sniffer.tracker import Tracker


def count_rogue(counter: Counter[str], rejected: Rejected) -> str:
    """Count a rejected rogue reply under its server (R-SV-1), or "others"; that name."""
    server = rejected.msg.server
    if server not in counter and len(counter) >= ROGUE_SERVERS_MAX:
        server = "others"
    counter[server] += 1
    return server


@dataclass
class Pipeline:
    """Feeds datagrams through the tracker and writes its commands to the store in batches."""

    tracker: Tracker
    store: LeaseStore
    batch_size: int = 500
    clock: Callable[[], float] = time.time
    stats: Counter[str] = field(default_factory=Counter)
    rogue: Counter[str] = field(default_factory=Counter)  # rejected replies per rogue server
    _pending: list[Command] = field(default_factory=list)
    _sent: SentBatch | None = None  # the batch Redis may still be writing

    def process(self, datagrams: Iterable[Datagram]) -> None:
        for datagram in datagrams:
            self.feed(datagram)

    def feed(self, datagram: Datagram) -> None:
        stats = self.stats
        stats["packets"] += 1
        try:
            msg = decode(datagram)
        except Dropped as drop:
            stats["malformed" if drop.reason != "ignored_type" else "ignored"] += 1
            stats[drop.reason] += 1
            return
        stats["messages"] += 1
        commands = self.tracker.handle(msg, self.clock())
        if commands:
            for command in commands:
                if isinstance(command, Grant):
                    stats["written"] += 1
                elif isinstance(command, Revoke):
                    stats["deleted"] += command.held
                elif isinstance(command, Rejected):
                    stats["rejected"] += 1
                    if command.reason in ROGUE_REASONS:
                        count_rogue(self.rogue, command)
            self._pending.extend(commands)
            if len(self._pending) >= self.batch_size:
                self._send()

    def flush(self) -> None:
        """Write what is pending; on return Redis holds every batch (or StoreError says why
        not)."""
        self._send()
        self._wait()
        self.store.drain()

    def _send(self) -> None:
        """Send the pending batch once the one before is written (R-RD-7: in order), without
        waiting for Redis: the next batch is decoded while Redis runs this one, and a write
        error surfaces when that batch is sent, or at flush()."""
        self._wait()
        if self._pending:
            batch, self._pending = self._pending, []
            self._sent = self.store.send(batch, self.clock())

    def _wait(self) -> None:
        sent, self._sent = self._sent, None
        if sent is not None:
            sent.wait()
