"""What `leases` prints for programs and pipes: a JSON array, JSON Lines, CSV, or plain text in
columns (and `history` its plain columns). Each lease becomes one line as its batch arrives, so
output starts with the first batch and nothing holds every lease as objects.

Every field of the record comes out (LeaseRow's, in its order), numbers as numbers: `expires`
(Unix seconds; null, or an empty CSV cell, for an infinite lease), `lease_time` (4294967295 when
infinite), `ttl` (seconds left; -1 when infinite), `updated`, `htype`; `xid` as 8 hex digits.

Strings from Redis stay data. JSON escapes every control and non-ASCII character (\\u...). CSV
and the plain columns show control and hidden characters escaped (`printable`, as tables do),
and a CSV cell that a spreadsheet would take for a formula (it starts with =, +, - or @) gets a
leading apostrophe, which spreadsheets show as text: such a value is never a valid hostname,
MAC or address, only a hostile one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import TextIO

from sniffer.escape import printable
from sniffer.history import GRANT, Entry, Holding
from sniffer.lease import LeaseRow
from sniffer.view.render import duration, entry_label, expiry, moment, relay, until

# Strings as JSON, every control and non-ASCII character escaped (\u...).
_json_text = json.encoder.encode_basestring_ascii
_JSON_OBJECT = ("{{" + ", ".join(f'"{name}": {{}}' for name in LeaseRow._fields) + "}}").format
NUMBERS = frozenset({"htype", "expires", "lease_time", "updated", "ttl"})
FORMULA = ("=", "+", "-", "@")


class Format(StrEnum):
    json = "json"
    jsonl = "jsonl"
    csv = "csv"
    plain = "plain"


def json_object(row: LeaseRow) -> str:
    """The row as a JSON object: what json.dumps writes (ASCII only), from a template, at half
    the cost of building a dict and encoding it."""
    values = (*row[:12], f"{row.xid:08x}", *row[13:])
    return _JSON_OBJECT(*["null" if value is None else _json_text(value)
                          if value.__class__ is str else str(value) for value in values])


def csv_line(row: LeaseRow) -> str:
    """One CSV record (RFC 4180: fields quoted when they hold a comma or a quote, quotes
    doubled, CRLF at the end); escaped controls mean a record is always one line."""
    cells = (*row[:12], f"{row.xid:08x}", *row[13:])
    return ",".join("" if value is None else str(value) if number else _csv_text(value)
                    for number, value in zip(_IS_NUMBER, cells, strict=True)) + "\r\n"


def _csv_text(value: object) -> str:
    text = printable(value)
    if text.startswith(FORMULA):
        text = "'" + text
    if "," in text or '"' in text:
        return '"' + text.replace('"', '""') + '"'
    return text


CSV_HEADER = ",".join(LeaseRow._fields) + "\r\n"
_IS_NUMBER = tuple(name in NUMBERS for name in LeaseRow._fields)

class Columns:
    """Plain text in columns: names and formats. The hostname is last, so that a long one
    cannot push the columns after it out of line. An empty cell is "-", so that each line
    splits into as many words (awk, cut -w) as there are columns; a cell never holds a space
    (the hostname's, being last, does no harm)."""

    def __init__(self, *columns: tuple[str, str]) -> None:
        self._format = "  ".join(f"{{:{spec}}}" for _name, spec in columns).format
        self.header = self._format(*(name for name, _spec in columns)) + "\n"

    def line(self, *cells: object) -> str:
        return self._format(*(printable(cell) or "-" for cell in cells)) + "\n"


PLAIN = Columns(("IP", "<15"), ("MAC", "<17"), ("EXPIRES IN", ">10"), ("SERVER", "<15"),
                ("RELAY", "<15"), ("KIND", "<7"), ("HOSTNAME", ""))
# `history` into a pipe: times in ISO 8601 (local time, as `--since` reads them).
EVENTS = Columns(("TIME", "<19"), ("EVENT", "<16"), ("MAC", "<17"), ("EXPIRES", "<19"),
                 ("SERVER", "<15"), ("RELAY", "<15"), ("PREVIOUS MAC", "<17"), ("HOSTNAME", ""))
HOLDINGS = Columns(("IP", "<15"), ("FROM", "<19"), ("TO", "<19"), ("ENDED", "<10"),
                   ("HOSTNAME", ""))


def plain_line(row: LeaseRow) -> str:
    return PLAIN.line(row.ip, row.mac, duration(row.ttl if row.ttl >= 0 else None), row.server,
                      relay(row.giaddr), row.kind, row.hostname)


def event_line(entry: Entry) -> str:
    """One entry of `history IP`."""
    event = entry.event
    return EVENTS.line(moment(entry.time, "T"), entry_label(entry).replace(" ", "-"), event.mac,
                       expiry(event, "T") if event.kind == GRANT else None, event.server,
                       event.relay, entry.previous.mac if entry.previous is not None else None,
                       event.hostname)


def holding_line(holding: Holding) -> str:
    """One hold of `history MAC`."""
    return HOLDINGS.line(holding.ip, moment(holding.start, "T"), until(holding, "T"),
                         holding.ended or "held", holding.grant.hostname)


# Each format: how a lease becomes its line, and what comes before the first line.
LINES: dict[Format, tuple[Callable[[LeaseRow], str], str]] = {
    Format.json: (json_object, ""),
    Format.jsonl: (json_object, ""),
    Format.csv: (csv_line, CSV_HEADER),
    Format.plain: (plain_line, PLAIN.header),
}


def write(fmt: Format, batches: Iterable[list[str]], out: TextIO) -> int:
    """Write the lines of `fmt` (from LINES), a batch at a time; how many leases."""
    count = 0
    if fmt is Format.json:
        for batch in batches:
            if batch:
                out.write(("[\n" if not count else ",\n") + ",\n".join(batch))
                count += len(batch)
        out.write("\n]\n" if count else "[]\n")
        return count
    if fmt is Format.jsonl:
        batches = ([line + "\n" for line in batch] for batch in batches)
    out.write(LINES[fmt][1])
    for batch in batches:
        out.write("".join(batch))
        count += len(batch)
    return count
