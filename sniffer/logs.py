"""How the sniffer logs: one line of printable text per message on stderr, lines held back while
the live view owns the screen, and rogue replies logged without letting a flood of them through.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from sniffer.commands import Rejected
from sniffer.connection import redact
from sniffer.dhcp import ZERO
from sniffer.escape import printable
from sniffer.pipeline import count_rogue

log = logging.getLogger("dhcp_hive_mind")

# Rejected rogue replies are logged one by one up to this many per window; the rest are summed
# up per server at the end of the window, so that a rogue flood cannot flood the log.
ROGUE_LOG_LINES, ROGUE_LOG_WINDOW = 10, 60.0


class _HeldLogs(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: collections.deque[logging.LogRecord] = collections.deque(maxlen=1000)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def logs_held() -> Iterator[None]:
    """Keep log records (the last 1000) instead of writing them; write them afterwards."""
    handlers, held = log.handlers[:], _HeldLogs()
    log.handlers[:] = [held]
    try:
        yield
    finally:
        log.handlers[:] = handlers
        for record in held.records:
            log.handle(record)


class _SafeFormatter(logging.Formatter):
    """Every message one line of printable text (control characters from the wire, Redis or a
    tool's output escaped), with Redis passwords replaced by ***. The record is left as it was:
    held records (see logs_held) are formatted later."""

    def format(self, record: logging.LogRecord) -> str:
        original = record.msg, record.args
        record.msg, record.args = printable(redact(record.getMessage())), None
        try:
            return super().format(record)
        finally:
            record.msg, record.args = original


def configure_logging(level: str) -> None:
    """Compact lines on stderr, stamped to the millisecond (restarts are timed by them); no
    timestamps under systemd, whose journal adds its own."""
    handler = logging.StreamHandler(sys.stderr)
    stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s.%(msecs)03d "
    handler.setFormatter(_SafeFormatter(stamp + "%(levelname)s %(message)s",
                                        "%Y-%m-%d %H:%M:%S"))
    log.handlers[:] = [handler]
    log.setLevel(level.upper())
    log.propagate = False


class RogueLog:
    """Logs rejected replies of rogue servers with the server and the client: one by one up to
    ROGUE_LOG_LINES per ROGUE_LOG_WINDOW seconds, then a count per server for the rest."""

    def __init__(self) -> None:
        self._window_end = -math.inf
        self._logged = 0
        self._unlogged: Counter[str] = Counter()

    def note(self, rejected: Rejected) -> None:
        self.roll()
        if self._logged >= ROGUE_LOG_LINES:
            count_rogue(self._unlogged, rejected)
            return
        self._logged += 1
        msg = rejected.msg
        server = msg.server
        address = "" if msg.yiaddr == ZERO else f" of {msg.yiaddr}"
        source = "" if msg.src == server else f" sent from {msg.src}"
        log.warning("rogue reply rejected, not written: %s%s to client %s from server %s%s",
                    msg.type_name, address, msg.mac or "-", server, source)

    def roll(self, *, final: bool = False) -> None:
        """Start a new window once the current one is over (or at the end: `final`), summing
        up the replies it did not log."""
        now = time.monotonic()
        if now < self._window_end and not final:
            return
        if self._unlogged:
            servers = ", ".join(f"{server} ({count})" for server, count
                                in self._unlogged.most_common())
            log.warning("%d more rogue replies rejected, not logged one by one: %s",
                        sum(self._unlogged.values()), servers)
        self._window_end, self._logged = now + ROGUE_LOG_WINDOW, 0
        self._unlogged.clear()

