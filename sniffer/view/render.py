"""Rendering helpers for terminals: everything shown came from the wire or from Redis, so it is
untrusted; strings become rich Text (never markup) with control characters shown escaped."""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich import box
from rich.table import Table
from rich.text import Text

from sniffer.dhcp import ZERO
from sniffer.escape import printable
from sniffer.history import GRANT, Entry, Holding, LogEvent
from sniffer.lease import INFINITE, LeaseRow


def safe(value: object, style: str = "") -> Text:
    """A Text that prints `value` literally: no markup, no escape sequences."""
    return Text(printable(value), style=style)


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


# The `leases` table's columns and their widths (0: the hostname's, set per listing).
LEASE_COLUMNS = (("IP", 15), ("MAC", 17), ("Hostname", 0), ("Expires in", 10), ("Server", 15),
                 ("Relay", 15), ("Kind", 5))
HOSTNAME_WIDTHS = (8, 40)  # the narrowest and widest the Hostname column is made


def hostname_width(rows: Sequence[LeaseRow]) -> int:
    """A Hostname column as wide as the longest of these (within HOSTNAME_WIDTHS)."""
    narrowest, widest = HOSTNAME_WIDTHS
    return max(narrowest, min(widest, max((len(printable(row.hostname)) for row in rows),
                                          default=0)))


def lease_table(rows: Sequence[LeaseRow], title: str | None = None, *, header: bool = True,
                width: int | None = None) -> Table:
    """The `leases` table on a terminal, one row per lease. Its columns have fixed widths
    (`width`: the Hostname's; longer values wrap) and no outer edge, so that the pages of a long
    listing, each a table of its own with the header on the first only, print as one table."""
    table = Table(title=title, header_style="bold", box=box.HEAVY_HEAD, show_edge=False,
                  show_header=header)
    for column, fixed in LEASE_COLUMNS:
        table.add_column(column, width=fixed or width or hostname_width(rows), overflow="fold",
                         justify="right" if column == "Expires in" else "left")
    for row in rows:
        table.add_row(
            safe(row.ip),
            safe(row.mac),
            safe(row.hostname),
            safe(duration(row.ttl if row.ttl >= 0 else None)),
            safe(row.server),
            safe(relay(row.giaddr)),
            safe(row.kind),
        )
    return table


def relay(giaddr: str | None) -> str:
    """The relay address to show: none for a lease that was not relayed."""
    return "" if giaddr is None or giaddr == ZERO else giaddr


def event_label(fields: dict[str, str]) -> str:
    """What an event did: granted, renewed, reassigned, or the reason of a deletion."""
    event = fields.get("event", "")
    return fields.get("reason", event) if event == "deleted" else event


def stream_seconds(entry_id: str) -> float:
    """A stream id's time: Redis milliseconds, then a sequence number."""
    return int(entry_id.partition("-")[0]) / 1000


def moment(seconds: float | None, sep: str = " ") -> str:
    """A Unix time as local date and time to the second (`sep` between them: "T" for ISO 8601);
    "" for None."""
    if seconds is None:
        return ""
    try:
        return time.strftime(f"%Y-%m-%d{sep}%H:%M:%S", time.localtime(seconds))
    except (ValueError, OverflowError, OSError):
        return "?"


def history_table(ip: str, entries: Sequence[Entry]) -> Table:
    """The `history IP` table, one row per entry (`AddressHistory.between`)."""
    table = Table(title=safe(f"History of {ip}"), header_style="bold")
    for column in ("Time", "Event", "MAC", "Hostname", "Expires", "Server", "Relay",
                   "Previous MAC"):
        table.add_column(column, no_wrap=column in ("Time", "MAC", "Expires"))
    for entry in entries:
        event = entry.event
        table.add_row(
            safe(moment(entry.time)), safe(entry_label(entry)), safe(event.mac),
            safe(event.hostname), safe(expiry(event) if event.kind == GRANT else ""),
            safe(event.server), safe(event.relay),
            safe(entry.previous.mac if entry.previous is not None else None))
    return table


def holdings_table(mac: str, holdings: Sequence[Holding]) -> Table:
    """The `history MAC` table: one row per address the device held, and when."""
    table = Table(title=safe(f"Addresses of {mac}"), header_style="bold")
    for column in ("IP", "From", "To", "Hostname", "Ended"):
        table.add_column(column, no_wrap=column != "Hostname")
    for holding in holdings:
        table.add_row(safe(holding.ip), safe(moment(holding.start)), safe(until(holding)),
                      safe(holding.grant.hostname), safe(holding.ended or "held"))
    return table


def holder_table(holding: Holding) -> Table:
    """`history IP --at`: the record of who held the address, one field a line."""
    grant = holding.grant
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    table.add_column(style="bold")
    table.add_column()
    rows = (("mac", grant.mac), ("hostname", grant.hostname), ("client id", grant.client_id),
            ("from", moment(holding.start)), ("to", until(holding)), ("ended", holding.ended),
            ("last grant", moment(grant.ts)), ("expires", expiry(grant)),
            ("lease time", _lease_time(grant.lease_time)), ("server", grant.server),
            ("relay", grant.relay), ("circuit id", grant.circuit_id),
            ("remote id", grant.remote_id), ("xid", grant.xid))
    for name, value in rows:
        if value:
            table.add_row(name, safe(value))
    return table


def until(holding: Holding, sep: str = " ") -> str:
    """When a hold ended, or "now"."""
    return moment(holding.end, sep) if holding.ended is not None else "now"


def expiry(grant: LogEvent, sep: str = " ") -> str:
    return "never" if grant.expires is None else moment(grant.expires, sep)


def entry_label(entry: Entry) -> str:
    """An entry's label, and for an ignored deletion what it was."""
    return entry.label if entry.label != "ignored" else f"ignored {entry.event.why}"


def _lease_time(seconds: int) -> str:
    return "infinite" if seconds == INFINITE else duration(seconds)
