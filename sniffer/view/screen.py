"""The view's screen: `render` is a pure function of the model, the UI state and the time, and
builds only the visible rows."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from sniffer.view.model import GRANTS, Row, Sort, ViewModel
from sniffer.view.render import duration, relay, safe

HIGHLIGHT = 5.0  # seconds a change stays highlighted


@dataclass
class ViewState:
    """What the user chose: sort order, filter text (being typed or not), scroll position."""

    sort: Sort = Sort.ip
    filter: str = ""
    editing: bool = False
    offset: int = 0
    source: str = ""  # where the leases come from, for the title


CHANGE_STYLES = {
    "granted": "green", "renewed": "cyan", "reassigned": "magenta", "released": "yellow",
    "superseded": "yellow", "expired": "yellow", "declined": "red", "nak": "red",
    "vanished": "red",
}
HEADER_LINES = 2
FOOTER_LINES = 2  # the rule above the recent changes, and the key-help line
TABLE_HEADER_LINES = 1


def recent_lines(height: int) -> int:
    return 5 if height >= 24 else 0


def page_size(height: int) -> int:
    """How many leases a terminal `height` lines tall shows."""
    fixed = HEADER_LINES + TABLE_HEADER_LINES + FOOTER_LINES + recent_lines(height)
    return max(1, height - fixed)


def clamp(offset: int, total: int, page: int) -> int:
    return max(0, min(offset, total - page))


def ago(seconds: float) -> str:
    return duration(max(0, math.floor(seconds))) + " ago"


def circuit_text(circuit_id: str | None) -> str:
    """A circuit-id (lowercase hex) as text if it is printable ASCII, as it usually is."""
    if not circuit_id:
        return ""
    try:
        raw = bytes.fromhex(circuit_id)
    except ValueError:
        return circuit_id
    return raw.decode() if raw.isascii() and raw.decode().isprintable() else circuit_id


def render(model: ViewModel, state: ViewState, now: float, height: int,
           width: int = 160) -> RenderableType:
    """The whole screen for a terminal `height` lines tall and `width` columns wide; only the
    visible rows are built."""
    page = page_size(height)
    offset = clamp(state.offset, len(model.matching(state.sort, state.filter)), page)
    rows, matches = model.window(state.sort, state.filter, offset, page)
    parts: list[RenderableType] = [
        _title(model, state, now, matches, offset, len(rows)),
        _totals(model, now),
        _lease_rows(rows, now, width),
    ]
    blank = page - len(rows)
    if blank:
        parts.append(Text("\n" * (blank - 1)))
    lines = recent_lines(height)
    if lines:
        parts.append(Text("─ recent changes ", style="dim"))
        parts.append(_recent(model, now, lines))
    parts.append(_help(state))
    return Group(*parts)


def _line(text: Text) -> Text:
    """One line, cut with an ellipsis, whatever the terminal width."""
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text


def _title(model: ViewModel, state: ViewState, now: float, matches: int, offset: int,
           shown: int) -> Text:
    title = Text.assemble(("dhcp-hive-mind", "bold"), "  ",
                          time.strftime("%H:%M:%S", time.localtime(now)))
    if model.status:
        title.append("  ")
        title.append_text(safe(model.status, "bold yellow"))
    title.append(f"  sorted by {state.sort.value}")
    if state.filter:
        title.append("  filter ")
        title.append_text(safe(state.filter, "bold"))
        title.append(f": {matches:,} of {len(model.rows):,}")
    if shown:
        title.append(f"  rows {offset + 1:,}-{offset + shown:,} of {matches:,}")
    title.append("  ")
    title.append_text(safe(state.source, "dim"))
    return _line(title)


def _totals(model: ViewModel, now: float) -> Text:
    hour = model.totals(now)
    minute = model.totals(now, 60)
    text = Text.assemble(
        "active leases ", (f"{len(model.rows):,}", "bold"),
        "  grants/min ", (f"{sum(minute[k] for k in GRANTS):,}", "bold green"),
        "  last hour: released ", (f"{hour['released']:,}", "bold"),
        "  NAKs ", (f"{hour['nak']:,}", "bold red" if hour["nak"] else "bold"),
        "  declines ", (f"{hour['declined']:,}", "bold red" if hour["declined"] else "bold"),
        "  expired ", (f"{hour['expired']:,}", "bold"),
        "  rogue replies ", (f"{hour['rogue']:,}", "bold red" if hour["rogue"] else "bold"))
    if hour["rogue"] and model.last_rogue:
        text.append(" (last from ")
        text.append_text(safe(model.last_rogue))
        text.append(")")
    text.append(f"  writers {len(model.live)}")  # the live; those gone are listed after
    # The live first, then those gone (stopped, or their heartbeat lapsed), newest first.
    order = sorted(model.writers.items(), key=lambda w: (w[0] not in model.live, -w[1]))
    for i, (name, seen) in enumerate(order):
        text.append(": " if i == 0 else ", ")
        gone = name not in model.live
        text.append_text(safe(name, style="dim" if gone else ""))
        text.append(f" {'gone ' if gone else ''}{ago(now - seen)}", style="dim")
    return _line(text)


# The lease table's columns: name, minimum width, and the order in which a narrow terminal
# drops them (0: never).
COLUMNS = (("IP", 15, 0), ("MAC", 17, 6), ("Hostname", 12, 0), ("Left", 8, 0),
           ("Relay", 15, 2), ("Circuit-id", 10, 1), ("Server", 15, 3), ("Change", 10, 5),
           ("When", 11, 4))


def visible_columns(width: int) -> list[str]:
    """The columns that fit in `width`, one space between each."""
    shown = list(COLUMNS)
    for drop in range(1, 7):
        if sum(w for _n, w, _d in shown) + len(shown) - 1 <= width:
            break
        shown = [column for column in shown if column[2] != drop]
    return [name for name, _w, _d in shown]


def _lease_rows(rows: list[Row], now: float, width: int) -> Table:
    names = visible_columns(width)
    # No box: a space of padding after each cell, so a highlighted row is one unbroken bar.
    table = Table(box=None, header_style="bold underline", expand=True, padding=(0, 1, 0, 0),
                  pad_edge=False)
    for name, minimum, _drop in COLUMNS:
        if name in names:
            table.add_column(name, min_width=minimum, no_wrap=True, overflow="ellipsis",
                             justify="right" if name in ("Left", "When") else "left",
                             ratio=1 if name == "Hostname" else None)
    for row in rows:
        cells = _cells(row, now)
        fresh = bool(row.change) and now - row.when < HIGHLIGHT
        table.add_row(*(cells[name] for name in names),
                      style=f"bold reverse {CHANGE_STYLES.get(row.change, '')}" if fresh else None)
    return table


def _cells(row: Row, now: float) -> dict[str, Text]:
    lease = row.lease
    left = row.deadline - now
    return {
        "IP": safe(row.ip),
        "MAC": safe(lease.mac),
        "Hostname": safe(lease.hostname),
        "Left": safe(duration(None if math.isinf(left) else max(0, math.ceil(left))),
                     "bold red" if left < 60 else "yellow" if left < 300 else ""),
        "Relay": safe(relay(lease.giaddr)),
        "Circuit-id": safe(circuit_text(lease.circuit_id)),
        "Server": safe(lease.server),
        "Change": safe(row.change or ("foreign" if lease.kind == "foreign" else ""),
                       CHANGE_STYLES.get(row.change, "dim")),
        "When": Text(ago(now - row.when) if row.when else "", style="dim"),
    }


def _recent(model: ViewModel, now: float, lines: int) -> Table:
    table = Table(box=None, show_header=False, padding=(0, 1, 0, 0), expand=True)
    for width in (8, 10, 15, 17):
        table.add_column(min_width=width, no_wrap=True)
    table.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
    changes = list(model.recent)[-lines:][::-1]
    for change in changes:
        style = CHANGE_STYLES.get(change.change, "")
        table.add_row(
            time.strftime("%H:%M:%S", time.localtime(change.when)),
            safe(change.change, style), safe(change.ip), safe(change.mac),
            safe(change.hostname),
            style="bold" if now - change.when < HIGHLIGHT else "dim")
    for _ in range(lines - len(changes)):
        table.add_row("")
    return table


def _help(state: ViewState) -> Text:
    if state.editing:
        return _line(Text.assemble(("filter: ", "bold"), safe(state.filter), ("█", "blink"),
                                   "   Enter keep   Esc clear   (IP, MAC or hostname text)"))
    keys = Text.assemble(("/", "bold"), " filter  ", ("s", "bold"), " sort (ip, time left, "
                         "recency)  ", ("↑↓ PgUp PgDn Home End", "bold"), " scroll  ",
                         ("Esc", "bold"), " clear filter  ", ("q", "bold"), " quit")
    return _line(keys)
