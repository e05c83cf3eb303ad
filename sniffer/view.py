"""Rendering for terminals: pure functions from leases to rich renderables.

Everything shown here came from the wire or from Redis, so it is untrusted: strings become
rich Text (never markup) and control characters are shown escaped.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from sniffer.lease import Lease

# Every C0 control, DEL and the C1 range would move the cursor or start an escape sequence.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}


def safe(value: object) -> Text:
    """A Text that prints `value` literally: no markup, no escape sequences."""
    if value is None:
        return Text("")
    return Text(str(value).translate(_ESCAPES))


def duration(seconds: int | None) -> str:
    """Compact time left: 59s, 12m05s, 3h07m, 2d04h; 'infinite' for None or negative TTL."""
    if seconds is None or seconds < 0:
        return "infinite"
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def lease_table(rows: list[tuple[Lease, int]], title: str | None = None) -> Table:
    """The `leases` table: one row per (lease, TTL in seconds, -1 for infinite)."""
    table = Table(title=title, header_style="bold", expand=False)
    for column, justify in (("IP", "left"), ("MAC", "left"), ("Hostname", "left"),
                            ("Expires in", "right"), ("Server", "left"), ("Relay", "left"),
                            ("Kind", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for lease, ttl in rows:
        table.add_row(
            safe(lease.ip),
            safe(lease.mac),
            safe(lease.hostname),
            safe(duration(ttl if ttl >= 0 else None)),
            safe(lease.server),
            safe("" if lease.giaddr == "0.0.0.0" else lease.giaddr),
            safe(lease.kind),
        )
    return table
