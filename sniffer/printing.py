"""What the CLI's commands print: the leases table (a page a batch, or redrawn with --watch),
the answers of `history` (a table on a terminal, plain columns into a pipe), and `decode`'s
rows."""

import sys
import time
from collections.abc import Iterable, Sequence

from rich.live import Live
from rich.text import Text

from sniffer.console import err, out
from sniffer.dhcp import DhcpMessage
from sniffer.export import EVENTS, HOLDINGS, event_line, holding_line
from sniffer.history import Entry, Holding
from sniffer.lease import LeaseRow
from sniffer.listing import Query, listing
from sniffer.registry import WriterRegistry
from sniffer.store import LeaseStore
from sniffer.view import (
    duration,
    history_table,
    holder_table,
    holdings_table,
    hostname_width,
    lease_table,
    moment,
    safe,
)


def live_writers(store: LeaseStore) -> Text:
    live = [writer.writer_id for writer in WriterRegistry(store.client, store.keys).live()]
    return safe(f"live writers ({len(live)}): {', '.join(live) or 'none'}")


def same(row: LeaseRow) -> LeaseRow:
    return row


def table_pages(batches: Iterable[list[LeaseRow]]) -> int:
    """The table a batch at a time: each page a table of its own, printed as it is read, in
    the columns of the first; how many leases."""
    count, width = 0, None
    for batch in batches:
        if batch:
            width = width or hostname_width(batch)
            out.print(lease_table(batch, header=not count, width=width))
            count += len(batch)
    return count


def watch_leases(store: LeaseStore, query: Query, interval: float) -> None:
    """Redraw the table in place every `interval` seconds until Ctrl-C, which ends it cleanly.
    The table holds as many leases as the terminal has lines for."""
    with Live(console=out, auto_refresh=False, redirect_stderr=False) as live:
        try:
            while True:
                shown: list[LeaseRow] = []
                count = 0
                room = max(1, out.size.height - 5)  # title, header, rule, and the cursor
                for batch in listing(store, query, same):
                    shown += batch[:room - len(shown)]
                    count += len(batch)
                title = (f"{count:,} lease{'s' if count != 1 else ''} at "
                         f"{time.strftime('%H:%M:%S')}, every {interval:g}s (Ctrl-C ends)")
                if len(shown) < count:
                    title += f"; the first {len(shown):,}"
                live.update(lease_table(shown, title=title), refresh=True)
                time.sleep(interval)
        except KeyboardInterrupt:
            pass


def print_holder(ip: str, at: float, holding: Holding | None, as_json: bool) -> None:
    if as_json:
        out.print_json(data=holding.to_json() if holding is not None else None,
                       ensure_ascii=True)
    elif holding is None:
        out.print(Text(f"nobody held {ip} at {moment(at)}"))
    else:
        out.print(Text(f"{ip} at {moment(at)} was held by {holding.grant.mac or 'a client'}:"))
        out.print(holder_table(holding))

def print_events(ip: str, entries: Sequence[Entry], as_json: bool) -> None:
    """`history IP`: the address's entries, newest first."""
    if as_json:
        out.print_json(data=[entry.to_json(ip) for entry in entries], ensure_ascii=True)
    elif not entries:
        err.print(Text(f"No events for {ip}."))
    elif not out.is_terminal:
        _write(EVENTS.header, map(event_line, entries))
    else:
        out.print(history_table(ip, entries))


def print_holdings(mac: str, holdings: Sequence[Holding], as_json: bool) -> None:
    """`history MAC`: the addresses the device held, and when."""
    if as_json:
        out.print_json(data=[holding.to_json() for holding in holdings], ensure_ascii=True)
    elif not holdings:
        err.print(Text(f"No addresses held by {mac}."))
    elif not out.is_terminal:
        _write(HOLDINGS.header, map(holding_line, holdings))
    else:
        out.print(holdings_table(mac, holdings))


def _write(header: str, lines: Iterable[str]) -> None:
    """Plain columns into a pipe (sniffer/export.py): no table drawing, no wrapping."""
    sys.stdout.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    sys.stdout.write(header + "".join(lines))


DECODE_HEADER = (f"{'frame':>6} {'time':<15} {'type':<13} {'xid':<8} {'client mac':<17} "
                  f"{'ciaddr':<15} {'yiaddr':<15} {'giaddr':<15} {'server':<15} {'lease':>8} "
                  "hostname")


def decode_row(msg: DhcpMessage) -> Text:
    lease = "" if msg.lease_time is None else (
        "infinite" if msg.lease_time == 0xFFFFFFFF else duration(msg.lease_time))
    stamp = time.strftime("%H:%M:%S", time.localtime(msg.ts)) + f".{int(msg.ts % 1 * 1e6):06d}"
    text = (f"{msg.frame:>6} {stamp:<15} {msg.type_name:<13} {msg.xid:08x} "
            f"{msg.mac or '-':<17} {msg.ciaddr:<15} {msg.yiaddr:<15} {msg.giaddr:<15} "
            f"{msg.server_id or '-':<15} {lease:>8} ")
    return Text(text) + safe(msg.fqdn or msg.hostname or "")
