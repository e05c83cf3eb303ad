"""`leases` in every output format, as a user runs it: a real process reading a real Redis that
holds more leases than one read batch, some infinite, relayed, nameless or hostile."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import math
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator

import pytest
import redis
from conftest import REPO
from helpers import build_lease, run_cli

from sniffer.commands import Grant, GrantEvent
from sniffer.escape import printable
from sniffer.keys import Keys
from sniffer.lease import INFINITE, Lease
from sniffer.reader import BATCH
from sniffer.store import LeaseStore

COUNT = 2 * BATCH + 500  # three read batches
HOSTILE = "\x1b]0;pwned\x07\x1b[2J=cmd|' /C calc'!A0,\"x\"\r\nnext"
HOSTILE_IP = "10.9.0.1"
FORMULA = "=HYPERLINK(\"http://example.com\")"
FORMULA_IP = "10.9.0.2"
NUMBERS = ("htype", "expires", "lease_time", "updated", "ttl")
BOX = set("─━│┃┏┓┗┛┡┩╇┿┼╋")


def address(n: int) -> str:
    return f"10.8.{n // 250}.{n % 250 + 1}"


def lease(n: int, now: int) -> Lease:
    """Lease n: every seventh infinite, every fifth relayed, every eleventh without a name;
    lease times that differ, so that each sort order has work to do."""
    changes: dict[str, object] = {"mac": f"02:00:00:08:{n // 256:02x}:{n % 256:02x}",
                                  "hostname": None if n % 11 == 0 else f"Host-{n * 7 % COUNT}",
                                  "xid": n}
    if n % 5 == 0:
        changes["giaddr"] = "10.8.255.1"
    if n % 7 == 0:
        changes.update(expires=None, kind="bootp")
    return build_lease(address(n), updated=now - n % 13,
                       lease_time=INFINITE if n % 7 == 0 else 600 + n * 37 % 3000, **changes)


@pytest.fixture
def filled(redis_url: str) -> dict[str, Lease]:
    """COUNT leases, and one whose strings another program made hostile."""
    client = redis.Redis.from_url(redis_url)
    store = LeaseStore(client, Keys(), capture_clock=True, writer="test")
    now = math.floor(time.time())
    leases = {address(n): lease(n, now) for n in range(COUNT)}
    batch = list(leases.values())
    for start in range(0, len(batch), 1000):
        store.apply([Grant(one, GrantEvent.GRANTED) for one in batch[start:start + 1000]],
                    time.time())
    hostile = build_lease(HOSTILE_IP, mac=HOSTILE, hostname=HOSTILE, client_id=HOSTILE)
    formula = build_lease(FORMULA_IP, mac="@SUM(1)", hostname=FORMULA)
    store.apply([Grant(hostile, GrantEvent.GRANTED), Grant(formula, GrantEvent.GRANTED)],
                time.time())
    client.close()
    return {**leases, HOSTILE_IP: hostile, FORMULA_IP: formula}


def listed(redis_url: str, *args: str) -> str:
    result = run_cli("leases", "--redis-url", redis_url, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_json_is_every_lease_once_with_typed_numbers(redis_url: str,
                                                     filled: dict[str, Lease]) -> None:
    text = listed(redis_url, "--json")
    assert "\x1b" not in text and "\r" not in text  # escaped: \u001b, \r
    rows = json.loads(text)
    assert [row["ip"] for row in rows] == sorted(filled, key=_number)
    for row in rows:
        expected = filled[row["ip"]]
        assert {k: row[k] for k in ("mac", "hostname", "client_id", "server", "giaddr", "kind")} \
            == {k: getattr(expected, k) for k in ("mac", "hostname", "client_id", "server",
                                                  "giaddr", "kind")}
        assert (row["htype"], row["lease_time"], row["updated"]) == \
            (expected.htype, expected.lease_time, expected.updated)
        assert row["xid"] == f"{expected.xid:08x}"
        assert all(isinstance(row[name], int) for name in NUMBERS if row[name] is not None)
        if expected.expires is None:
            assert row["expires"] is None and row["ttl"] == -1
        else:
            assert row["expires"] == expected.expires
            assert -60 <= expected.expires - time.time() - row["ttl"] <= 1  # read a moment ago
    hostile = next(row for row in rows if row["ip"] == HOSTILE_IP)
    assert hostile["hostname"] == HOSTILE  # JSON-escaped, the same string once parsed


def test_jsonl_is_one_object_a_line(redis_url: str, filled: dict[str, Lease]) -> None:
    lines = listed(redis_url, "--jsonl").splitlines()
    rows = [json.loads(line) for line in lines]
    assert sorted(row["ip"] for row in rows) == sorted(filled)
    assert rows[0] == json.loads(listed(redis_url, "--json"))[0]


def test_csv_has_a_header_and_every_lease_once(redis_url: str,
                                               filled: dict[str, Lease]) -> None:
    text = listed(redis_url, "--csv")
    assert "\x1b" not in text
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert {"ip", "mac", "hostname", "expires", "ttl", "lease_time", "server"} <= set(rows[0])
    assert [row["ip"] for row in rows] == sorted(filled, key=_number)
    by_ip = {row["ip"]: row for row in rows}
    for ip, expected in filled.items():
        if ip not in (HOSTILE_IP, FORMULA_IP):
            assert by_ip[ip]["hostname"] == (expected.hostname or "")
            assert by_ip[ip]["expires"] == ("" if expected.expires is None
                                            else str(expected.expires))
    # Controls escaped as tables show them; a formula is text to a spreadsheet; the comma and
    # the quotes survive RFC 4180 quoting.
    hostile = by_ip[HOSTILE_IP]["hostname"]
    assert hostile == "\\x1b]0;pwned\\x07\\x1b[2J=cmd|' /C calc'!A0,\"x\"\\x0d\\x0anext"
    formula = by_ip[FORMULA_IP]
    assert (formula["hostname"], formula["mac"]) == ("'" + FORMULA, "'@SUM(1)")
    assert int(by_ip[address(7)]["ttl"]) == -1  # a number: no apostrophe


def test_a_pipe_gets_plain_aligned_columns(redis_url: str, filled: dict[str, Lease]) -> None:
    lines = listed(redis_url).splitlines()
    assert not BOX & set("".join(lines))
    assert "\x1b" not in "".join(lines)
    header, rows = lines[0].split(), [line.split(None, 6) for line in lines[1:]]
    assert header[:2] == ["IP", "MAC"] and header[-1] == "HOSTNAME"
    assert [row[0] for row in rows] == sorted(filled, key=_number)
    # The hostname starts where its heading does, on every line but the one whose MAC is too
    # long for its column.
    start = lines[0].index("HOSTNAME")
    for line, row in zip(lines[1:], rows, strict=True):
        hostname = printable(filled[row[0]].hostname) or "-"
        assert line.endswith(hostname) and (row[0] == HOSTILE_IP or line[start:] == hostname)
    hostile = next(line for line in lines if line.startswith(HOSTILE_IP))
    assert "\\x1b]0;pwned\\x07\\x1b[2J" in hostile
    infinite = next(row for row in rows if row[0] == address(7))
    assert infinite[2] == "infinite" and infinite[4] == "-"  # not relayed


def test_ip_takes_an_address_or_a_prefix(redis_url: str, filled: dict[str, Lease]) -> None:
    rows = json.loads(listed(redis_url, "--json", "--ip", "10.8.2.0/23"))
    assert [row["ip"] for row in rows] == sorted(
        (ip for ip in filled if ip.startswith(("10.8.2.", "10.8.3."))), key=_number)
    one = json.loads(listed(redis_url, "--json", "--ip", address(600)))
    assert [row["ip"] for row in one] == [address(600)]
    assert json.loads(listed(redis_url, "--json", "--ip", "10.7.0.0/16")) == []
    refused = run_cli("leases", "--redis-url", redis_url, "--ip", "10.8.0.0/33")
    assert refused.returncode == 2 and "not an IPv4 address or prefix" in refused.stderr


def test_sort_orders_cover_every_lease(redis_url: str, filled: dict[str, Lease]) -> None:
    def order(*args: str) -> list[str]:
        return [row["ip"] for row in json.loads(listed(redis_url, "--json", *args))]

    by_expiry = sorted(filled, key=lambda ip: (filled[ip].expires is None,
                                               filled[ip].expires or 0, _number(ip)))
    assert order("--sort", "expires") == by_expiry
    by_name = sorted(filled, key=lambda ip: ((filled[ip].hostname or "").lower(), _number(ip)))
    assert order("--sort", "hostname") == by_name
    reverse = order("--sort", "ip", "--reverse")
    assert reverse == sorted(filled, key=_number, reverse=True)
    updated = order("--sort", "updated")
    assert [filled[ip].updated for ip in updated] == sorted(
        (one.updated for one in filled.values()), reverse=True)


def test_mac_and_hostname_filters(redis_url: str, filled: dict[str, Lease]) -> None:
    one = json.loads(listed(redis_url, "--json", "--mac", "02-00-00-08-01-2C"))
    assert [row["ip"] for row in one] == [address(300)]
    names = json.loads(listed(redis_url, "--json", "--hostname", "HOST-100"))
    assert sorted(row["hostname"] for row in names) == sorted(
        one.hostname for one in filled.values()
        if one.hostname and "host-100" in one.hostname.lower())


def test_formats_are_exclusive_and_empty_listings_are_valid(redis_url: str) -> None:
    both = run_cli("leases", "--redis-url", redis_url, "--json", "--csv")
    assert both.returncode == 1 and "give one" in both.stderr
    assert json.loads(listed(redis_url, "--json")) == []
    assert listed(redis_url, "--jsonl") == ""
    assert listed(redis_url, "--csv").startswith("ip,mac,")
    empty = run_cli("leases", "--redis-url", redis_url)
    assert empty.stdout.split() == ["IP", "MAC", "EXPIRES", "IN", "SERVER", "RELAY", "KIND",
                                    "HOSTNAME"] and "No leases." in empty.stderr


def test_a_closed_pipe_ends_it_quietly(redis_url: str, filled: dict[str, Lease]) -> None:
    command = [sys.executable, "-m", "sniffer", "leases", "--redis-url", redis_url, "--json"]
    process = subprocess.Popen(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.read(100).startswith(b"[\n{")
    process.stdout.close()
    assert process.wait(timeout=60) == 141
    assert process.stderr.read() == b""


def test_a_terminal_gets_one_table_in_pages(redis_url: str, filled: dict[str, Lease]) -> None:
    lines = [line for line in _on_a_terminal("leases", "--redis-url", redis_url).splitlines()
             if line.strip()]
    assert BOX & set(lines[0] + lines[1])  # a rich table ...
    assert sum("Hostname" in line for line in lines) == 1  # ... with its header once
    # Rows, not the lines a long hostname wraps onto.
    addresses = [line.split()[0] for line in lines[2:] if line.split()[0][0].isdigit()]
    assert addresses == sorted(filled, key=_number)
    assert "\x1b]0;pwned" not in "".join(lines)


def _on_a_terminal(*args: str) -> str:
    """The command's output on a 200-column pseudo-terminal, escape sequences left out."""
    main, side = pty.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(PYTHONPATH=str(REPO), TERM="xterm-256color")
    process = subprocess.Popen([sys.executable, "-m", "sniffer", *args], cwd=REPO, env=env,
                               stdin=subprocess.DEVNULL, stdout=side, stderr=side)
    os.close(side)
    output = b"".join(_read_all(main))
    os.close(main)
    assert process.wait(timeout=60) == 0, output[-500:]
    return re.sub(r"\x1b\[[0-9;]*m", "", output.decode()).replace("\r\n", "\n")


def _read_all(fd: int) -> Iterator[bytes]:
    while select.select([fd], [], [], 60)[0]:
        try:
            chunk = os.read(fd, 1 << 16)
        except OSError:  # the other side has closed
            return
        if not chunk:
            return
        yield chunk


def _number(ip: str) -> tuple[int, ...]:
    return tuple(int(part) for part in ip.split("."))
