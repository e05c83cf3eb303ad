"""The live view's parts: safe rendering, the model and its order, render(), keys, the feed
from a real Redis, the store's read methods it uses, and the `history` command.

Run as a script (`python tests/test_view.py docs/view.svg`) it draws the README picture, SVG
and PNG.
"""

from __future__ import annotations

import dataclasses
import gc
import io
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from helpers import build_lease, run_cli
from hypothesis import example, given, settings
from hypothesis import strategies as st
from rich.console import Console, RenderableType

from sniffer.commands import Grant, Revoke
from sniffer.escape import printable
from sniffer.keys import Keys
from sniffer.lease import INFINITE, Lease
from sniffer.registry import Heartbeat, WriterRegistry
from sniffer.store import LeaseStore
from sniffer.view.feed import Feed
from sniffer.view.model import Change, Sort, SortedIndex, ViewModel
from sniffer.view.render import safe
from sniffer.view.screen import ViewState, circuit_text, page_size, render
from sniffer.view.terminal import handle_key, parse_keys

REPO = Path(__file__).resolve().parent.parent
NS = "dhcp-hive-mind"
HOSTILE = "\x1b[31mRED[bold]markup[/bold]\r\nX\u202eevil"
HOSTILE_SHOWN = "\\x1b[31mRED[bold]markup[/bold]\\x0d\\x0aX\\u202eevil"
MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


def make_lease(ip: str, mac: str | None = MAC_A, hostname: str | None = "alpha", *,
               lease_time: int = 600, updated: int | None = None, **changes: object) -> Lease:
    """A relayed lease with a circuit-id, granted at `updated` (default this second)."""
    fields: dict[str, object] = {"hostname_src": "req12", "giaddr": "198.51.100.1",
                                 "circuit_id": "6574682f31", **changes}
    return build_lease(ip, lease_time=lease_time, updated=updated, mac=mac, hostname=hostname,
                       **fields)


def recorder(width: int, height: int = 40) -> Console:
    return Console(width=width, height=height, record=True, file=io.StringIO(),
                   force_terminal=True, color_system="truecolor")


def screen(renderable: RenderableType, width: int = 160, height: int = 40) -> str:
    console = recorder(width, height)
    console.print(renderable)
    return console.export_text(styles=False)


def styled(renderable: RenderableType, width: int = 160) -> str:
    console = recorder(width)
    console.print(renderable)
    return console.export_text(styles=True)


def lease_lines(text: str) -> list[str]:
    """The table rows of a rendered view: the lines above the recent changes that start with an
    address."""
    table = text.partition("─ recent changes")[0]
    return [line for line in table.splitlines() if line[:1].isdigit()]


# ---- safe ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "shown"), [
    ("plain-host_1.example", "plain-host_1.example"),
    ("\x1b[31mred", "\\x1b[31mred"),
    ("[bold]x[/bold]", "[bold]x[/bold]"),
    ("a\r\nb\tc\x00d\x7f\x9b", "a\\x0d\\x0ab\\x09c\\x00d\\x7f\\x9b"),
    ("back\\x1bslash", "back\\\\x1bslash"),
    ("rtl\u202eoverride\u200bzero\u2028line", "rtl\\u202eoverride\\u200bzero\\u2028line"),
    ("caf\u00e9 \u6771\u4eac", "caf\u00e9 \u6771\u4eac"),
])
def test_safe_shows_every_string_literally(raw: str, shown: str) -> None:
    text = safe(raw)
    assert text.plain == shown
    assert not text.spans
    assert screen(text).rstrip("\n") == shown


_ESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2}|u[0-9a-f]{4})")


@given(st.text(st.characters(max_codepoint=0x3000)) | st.text(st.characters(max_codepoint=0x7F)))
@example("back\\x41slash")
@example("plain-host_1.example")
def test_printable_text_reads_back_as_it_was(raw: str) -> None:
    shown = printable(raw)
    assert not [c for c in shown if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0]
    assert _ESCAPE.sub(lambda m: "\\" if m[1] == "\\" else chr(int(m[1][1:], 16)),
                       shown) == raw


def test_safe_output_never_holds_a_control_character() -> None:
    everything = "".join(chr(c) for c in range(0x3000))
    plain = safe(everything).plain
    assert not [c for c in plain if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0]


def test_circuit_id_is_text_when_printable() -> None:
    assert circuit_text("6574682f31") == "eth/1"
    assert circuit_text("00ff10") == "00ff10"
    assert circuit_text("not hex") == "not hex"
    assert circuit_text(None) == ""


# ---- the sorted index ------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3000)), max_size=4000))
def test_sorted_index_matches_a_sorted_list(ops: list[tuple[bool, int]]) -> None:
    SortedIndex.LOAD = 8  # small blocks, so that splits and merges happen
    try:
        index, model = SortedIndex(), set()
        for add, n in ops:
            entry = (n % 97, n)
            if add and entry not in model:
                index.add(entry)
                model.add(entry)
            elif not add and entry in model:
                index.discard(entry)
                model.discard(entry)
        expected = sorted(model)
        assert list(index) == expected
        assert len(index) == len(expected)
        assert index.window(5, 7) == expected[5:12]
        assert index.window(len(expected), 3) == []
    finally:
        SortedIndex.LOAD = 512


# ---- the model and render() -----------------------------------------------------------------

NOW = 1_800_000_000.0


def sample_model(now: float = NOW) -> ViewModel:
    """Six leases, one of them hostile (as another program could write it), and some changes."""
    model = ViewModel()
    for n, (hostname, ttl) in enumerate([("alpha", 3000), ("bravo", 50), ("charlie", 700),
                                         ("delta", 120), (HOSTILE, 1500), ("echo", -1)]):
        ip = f"192.0.2.{10 + n * 5}"
        lease = make_lease(ip, f"02:00:00:00:00:{n:02x}", hostname, updated=int(now) - 600 * n)
        if ttl < 0:
            lease = dataclasses.replace(lease, expires=None, lease_time=INFINITE)
        recent = n in (0, 2)
        model.put(ip, lease, ttl, now, "granted" if recent else None,
                  now - (2 + n) if recent else None)
    model.note(Change(now - 30, "released", "192.0.2.99", MAC_B, "gone"))
    model.note(Change(now - 4, "granted", "192.0.2.10", "02:00:00:00:00:00", "alpha"))
    model.writers = {"relay-a": int(now) - 1, "relay-b": int(now) - 7, "old": int(now) - 3600}
    model.live = {"relay-a", "relay-b"}
    return model


def test_render_shows_each_column_and_the_totals() -> None:
    text = screen(render(sample_model(), ViewState(source="Redis at redis://x"), NOW, 40))
    lines = text.splitlines()
    assert len(lines) == 40
    assert "Redis at redis://x" in lines[0] and "sorted by ip" in lines[0]
    assert "active leases 6" in lines[1]
    assert "grants/min 1" in lines[1] and "released 1" in lines[1]
    assert "writers 2: relay-a 1s ago, relay-b 7s ago, old gone" in lines[1]
    for column in ("IP", "MAC", "Hostname", "Left", "Relay", "Circuit-id", "Server", "Change",
                   "When"):
        assert column in lines[2]
    rows = lease_lines(text)
    assert [row.split()[0] for row in rows] == [f"192.0.2.{10 + n * 5}" for n in range(6)]
    alpha = rows[0].split()
    assert alpha[1:8] == ["02:00:00:00:00:00", "alpha", "50m00s", "198.51.100.1", "eth/1",
                          "192.0.2.1", "granted"]
    assert rows[1].split()[3] == "50s" and rows[5].split()[3] == "infinite"
    assert rows[3].split()[-2:] == ["30m00s", "ago"]  # no change seen: the lease's update time
    assert "recent changes" in text
    recent = text[text.index("recent changes"):].splitlines()
    assert "granted" in recent[1] and "released" in recent[2]  # newest first
    assert "q quit" in lines[-1]


def test_render_keeps_hostile_strings_literal() -> None:
    model = sample_model()
    model.note(Change(NOW, "\x1b[2J", "192.0.2.30", "\x1b]0;title\x07", HOSTILE))
    model.writers["[blink]w\x1b[5m"] = int(NOW)
    model.last_rogue = "\x1b[31m"
    model.count("rogue", NOW)
    out = styled(render(model, ViewState(filter="[b]"), NOW, 40))
    assert "\x1b[31mRED" not in out and "\x1b[2J" not in out and "\x1b]0" not in out
    assert "\x1b[5m" not in out and "\u202e" not in out and "\r" not in out
    text = screen(render(model, ViewState(), NOW, 40), width=200)
    assert HOSTILE_SHOWN in text  # the table row and the recent-changes line
    assert text.count(HOSTILE_SHOWN) == 2
    assert "\\x1b[2J" in text and "\\x1b]0;title\\x07" in text
    assert "[blink]w\\x1b[5m" in text and "(last from \\x1b[31m)" in text


def test_render_sorts_filters_and_scrolls() -> None:
    model = sample_model()
    by_left = lease_lines(screen(render(model, ViewState(sort=Sort.left), NOW, 40)))
    assert [row.split()[2] for row in by_left] == [
        "bravo", "delta", "charlie", "\\x1b[31mRED[bold]markup[/bold]\\x0d\\x0aX\\u202eevil",
        "alpha", "echo"]
    by_recency = lease_lines(screen(render(model, ViewState(sort=Sort.recency), NOW, 40)))
    assert [row.split()[2] for row in by_recency][:3] == ["alpha", "charlie", "bravo"]
    filtered = screen(render(model, ViewState(filter="CHAR"), NOW, 40))
    assert [row.split()[2] for row in lease_lines(filtered)] == ["charlie"]
    assert "filter CHAR: 1 of 6" in filtered
    by_mac = screen(render(model, ViewState(filter=":03"), NOW, 40))
    assert [row.split()[0] for row in lease_lines(by_mac)] == ["192.0.2.25"]
    short = screen(render(model, ViewState(offset=3), NOW, 12), height=12)
    assert page_size(12) == 7
    assert [row.split()[0] for row in lease_lines(short)] == [
        "192.0.2.10", "192.0.2.15", "192.0.2.20", "192.0.2.25", "192.0.2.30", "192.0.2.35"][:6]
    assert "rows 1-6 of 6" in short  # offset 3 clamped: all six rows fit


@pytest.mark.parametrize(("width", "dropped"), [
    (160, []), (120, ["Circuit-id"]), (100, ["Relay", "Circuit-id"]),
    (80, ["Relay", "Circuit-id", "Server"]),
    (60, ["Relay", "Circuit-id", "Server", "Change", "When"])])
def test_a_narrow_terminal_drops_the_least_needed_columns(width: int,
                                                           dropped: list[str]) -> None:
    text = screen(render(sample_model(), ViewState(source="Redis at redis://x"), NOW, 30, width),
                  width=width, height=30)
    lines = text.splitlines()
    assert len(lines) == 30 and max(len(line) for line in lines) <= width
    header = lines[2].split()
    assert [c for c in ("IP", "MAC", "Hostname", "Left", "Relay", "Circuit-id", "Server",
                        "Change", "When") if c not in header] == dropped
    assert lease_lines(text)[2].split()[:4] == ["192.0.2.20", "02:00:00:00:00:02", "charlie",
                                                "11m40s"]


def test_countdown_highlight_and_expiry() -> None:
    model = sample_model()
    later = NOW + 60
    text = screen(render(model, ViewState(), later, 40))
    rows = {row.split()[0]: row.split() for row in lease_lines(text)}
    assert rows["192.0.2.10"][3] == "49m00s"  # counted down from the TTL read, no Redis call
    assert rows["192.0.2.15"][3] == "0s"
    fresh = styled(render(model, ViewState(), NOW, 40))
    stale = styled(render(model, ViewState(), NOW + 10, 40))
    assert "\x1b[1;7;32m192.0.2.10" in fresh  # a change from 2 s ago stands out
    assert "\x1b[1;7;32m192.0.2.10" not in stale
    assert model.expire(later) == 1
    assert "192.0.2.15" not in model.rows
    assert model.recent[-1].change == "expired" and model.recent[-1].ip == "192.0.2.15"
    assert model.totals(later)["expired"] == 1
    assert model.expire(NOW + 10**6) == 4  # the infinite lease stays
    assert list(model.rows) == ["192.0.2.35"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.sampled_from(["", "ab", "abc", "b", "x"]),
                          st.sampled_from(["put", "drop", "read"])), max_size=200),
       st.sampled_from(list(Sort)))
def test_a_filter_follows_changes(ops: list[tuple[int, str, str]], sort: Sort) -> None:
    model = ViewModel()
    typed = ""
    for n, name, op in ops:
        ip = f"192.0.2.{n}"
        if op == "put":
            model.put(ip, make_lease(ip, hostname=f"{name}{n}", updated=int(NOW)), n * 7, NOW,
                      "granted", NOW - n)
        elif op == "drop":
            model.drop(ip)
        else:
            typed = name  # typed, narrowed, cleared; changes arrive meanwhile
        expected = sorted(ip for ip, row in model.rows.items()
                          if typed in (row.lease.hostname or "") or typed in ip)
        assert sorted(e[-1] for e in model.matching(sort, typed)) == expected
        assert list(model.matching(sort, typed)) == [
            e for e in model.matching(sort, "") if e[-1] in expected]


def test_counters_keep_one_hour() -> None:
    model = ViewModel()
    model.count("released", NOW - 4000)
    model.count("released", NOW - 100)
    model.count("granted", NOW - 30)
    model.count("renewed", NOW - 90)
    model.count("\x1b[2J", NOW)
    assert model.totals(NOW) == {"released": 1, "granted": 1, "renewed": 1, "other": 1}
    assert model.totals(NOW, 60) == {"granted": 1, "other": 1}


def test_rows_stay_out_of_the_collectors_passes() -> None:
    """Rows kept as objects would lengthen every full collection (a stalled refresh at 100k
    leases); gc.freeze() is not the cure: it is process-wide, and `sniff --view` shares it."""
    model = ViewModel()
    gc.collect()
    tracked = len(gc.get_objects())
    for n in range(10_000):
        ip = f"10.0.{n >> 8}.{n & 255}"
        model.put(ip, make_lease(ip, hostname=f"h{n}", updated=int(NOW)), n, NOW, "granted", NOW)
    gc.collect()
    assert len(gc.get_objects()) - tracked < 1_000
    assert gc.get_freeze_count() == 0
    assert model.rows["10.0.0.7"].lease.hostname == "h7"


def test_100k_leases_render_and_update_in_order() -> None:
    """Correctness at size; prints the times (no timed assertion)."""
    model = ViewModel()
    rng = random.Random(4)
    numbers = rng.sample(range(1 << 24), 100_000)
    started = time.perf_counter()
    for n in numbers:
        ip = f"10.{n >> 16}.{n >> 8 & 255}.{n & 255}"
        model.put(ip, make_lease(ip, hostname=f"h{n}", updated=int(NOW)), n % 7200, NOW)
    loaded = time.perf_counter() - started
    times: dict[str, float] = {}
    for sort in Sort:
        for text in ("", "h12"):
            started = time.perf_counter()
            shown = screen(render(model, ViewState(sort=sort, filter=text), NOW, 40))
            times[f"render {sort.value}{' filtered' if text else ''}"] = \
                time.perf_counter() - started
            first = lease_lines(shown)[0].split()[0]
            matching = sorted(n for n in numbers if not text or text in f"h{n}")
            if sort is Sort.ip:
                n = matching[0]
                assert first == f"10.{n >> 16}.{n >> 8 & 255}.{n & 255}"
            if sort is Sort.left:
                assert model.rows[first].deadline == NOW + min(n % 7200 for n in matching)
    started = time.perf_counter()
    renewed = rng.sample(numbers, 1000)
    for n in renewed:
        ip = f"10.{n >> 16}.{n >> 8 & 255}.{n & 255}"
        model.put(ip, make_lease(ip, hostname=f"h{n}"), 9000, NOW + 1, "renewed", NOW + 1)
    expired = model.expire(NOW + 1)
    shown = screen(render(model, ViewState(sort=Sort.recency), NOW + 1, 40))
    times["update 1000 + expire + render"] = time.perf_counter() - started
    assert expired == sum(1 for n in numbers if n % 7200 <= 1 and n not in set(renewed))
    assert all(row.split()[7] == "renewed" for row in lease_lines(shown))
    assert len(model.rows) == 100_000 - expired
    print(f"\n100k leases: loaded in {loaded:.2f}s; " +
          "; ".join(f"{name} {seconds * 1000:.1f} ms" for name, seconds in times.items()))


# ---- keys ------------------------------------------------------------------------------------

def test_parse_keys() -> None:
    assert parse_keys("ab/\x1b[A\x1b[B\x1b[5~\x1b[6~\x1bOH\x1b[F\x7f\r") == [
        "a", "b", "/", "up", "down", "pageup", "pagedown", "home", "end", "backspace", "enter"]
    assert parse_keys("\x1b") == ["esc"]
    assert parse_keys("\x1bq") == ["esc", "q"]
    assert parse_keys("\x1b[1;5C\x01x\u00e9") == ["x", "\u00e9"]  # unknown keys are dropped


def test_keys_drive_filter_sort_scroll_and_quit() -> None:
    state = ViewState()
    assert not handle_key(state, "s", 10)
    assert state.sort is Sort.left
    handle_key(state, "s", 10)
    handle_key(state, "s", 10)
    assert state.sort is Sort.ip
    handle_key(state, "a", 10)  # typing starts the filter
    assert (state.editing, state.filter) == (True, "a")
    for key in ("l", "s", "q", "backspace"):
        assert not handle_key(state, key, 10)  # s and q are text while typing
    assert state.filter == "als"
    handle_key(state, "enter", 10)
    assert (state.editing, state.filter) == (False, "als")
    handle_key(state, "esc", 10)
    assert state.filter == ""
    handle_key(state, "/", 10)
    handle_key(state, "q", 10)
    handle_key(state, "esc", 10)
    assert (state.editing, state.filter) == (False, "")
    handle_key(state, "pagedown", 10)
    handle_key(state, "down", 10)
    assert state.offset == 11
    handle_key(state, "home", 10)
    assert state.offset == 0
    assert handle_key(state, "q", 10)


# ---- the store's read methods and the feed, against a real Redis ----------------------------

@pytest.fixture
def writer(redis_url: str) -> Iterator[LeaseStore]:
    """A sniffer writing with the replay clock (TTL = lease time from now), as relay-a."""
    client = redis.Redis.from_url(redis_url)
    yield LeaseStore(client, Keys(), capture_clock=False, writer="relay-a")
    client.close()


@pytest.fixture
def reader(redis_url: str) -> Iterator[LeaseStore]:
    client = redis.Redis.from_url(redis_url)
    yield LeaseStore(client, Keys(), capture_clock=True)
    client.close()


def test_records_reads_ours_and_foreign_in_one_call(writer: LeaseStore, reader: LeaseStore,
                                                   rclient: redis.Redis) -> None:
    ours = make_lease("192.0.2.10")
    writer.apply([Grant(ours, "granted")], time.time())
    rclient.hset("192.0.2.20", mapping={"mac": "aa:bb:cc:dd:ee:ff", "hostname": HOSTILE})
    rclient.expire("192.0.2.20", 300)
    rclient.hset("192.0.2.21", mapping={"hostname": b"\xff\xfebad"})
    rclient.set("192.0.2.30", "a string, not a seed hash")
    found = reader.records(["192.0.2.10", "192.0.2.20", "192.0.2.21", "192.0.2.30",
                            "192.0.2.40"])
    assert list(found) == ["192.0.2.10", "192.0.2.20", "192.0.2.21"]
    assert found["192.0.2.10"] == (ours, rclient.ttl(f"{NS}:lease:{{192.0.2.10}}"))
    foreign, ttl = found["192.0.2.20"]
    assert (foreign.kind, foreign.mac, foreign.hostname, ttl) == (
        "foreign", "aa:bb:cc:dd:ee:ff", HOSTILE, rclient.ttl("192.0.2.20"))
    assert found["192.0.2.21"][0].hostname == "\ufffd\ufffdbad"
    assert found["192.0.2.21"][1] == -1
    assert reader.lease_ips() == ["192.0.2.10"]
    seen: list[str] = []
    cursor = 0
    while True:
        cursor, ips = reader.scan_seeds(cursor, 10)
        seen += ips
        if cursor == 0:
            break
    assert sorted(seen) == ["192.0.2.10", "192.0.2.20", "192.0.2.21"]
    assert abs(reader.server_time() - time.time()) < 5


def step_until_idle(feed: Feed) -> None:
    for _ in range(100):
        feed.step()
        if not feed.busy:
            return
    raise AssertionError("the feed never caught up")


def test_feed_loads_follows_events_and_reconciles(writer: LeaseStore, reader: LeaseStore,
                                                  rclient: redis.Redis) -> None:
    now = time.time()
    leases = [make_lease(f"192.0.2.{n}", f"02:00:00:00:00:{n:02x}", f"host-{n}")
              for n in (10, 11, 12)]
    writer.apply([Grant(lease, "granted") for lease in leases], now)
    rclient.hset("192.0.2.50", mapping={"mac": "aa:bb:cc:dd:ee:ff", "hostname": HOSTILE})
    rclient.expire("192.0.2.50", 300)
    model = ViewModel()
    feed = Feed(reader, model, reconcile=0)
    live = Heartbeat(WriterRegistry(writer.client, writer.keys), "relay-b")
    live.start()
    try:
        step_until_idle(feed)
    finally:
        live.stop()
    assert sorted(model.rows) == ["192.0.2.10", "192.0.2.11", "192.0.2.12", "192.0.2.50"]
    assert model.rows["192.0.2.50"].lease.kind == "foreign"
    assert model.rows["192.0.2.50"].lease.hostname == HOSTILE
    assert 595 <= model.rows["192.0.2.10"].deadline - time.time() <= 600
    assert model.rows["192.0.2.10"].change == "granted"  # from the last hour of events
    assert set(model.writers) == {"relay-a", "relay-b"}  # relay-a wrote, relay-b registered
    assert model.live == {"relay-b"}
    assert model.totals(time.time())["granted"] == 3

    # Changes arrive through the stream: a release, a renewal, a new lease.
    writer.apply([Revoke(leases[0], "released", time.time()),
                  Grant(dataclasses.replace(leases[1], lease_time=900), "renewed", leases[1]),
                  Grant(make_lease("192.0.2.13", hostname="new"), "granted")], time.time())
    feed.step()
    assert "192.0.2.10" not in model.rows
    assert model.rows["192.0.2.11"].change == "renewed"
    assert 895 <= model.rows["192.0.2.11"].deadline - time.time() <= 900
    assert model.rows["192.0.2.13"].lease.hostname == "new"
    assert [c.change for c in model.recent][-3:] == ["released", "renewed", "granted"]
    assert model.totals(time.time())["released"] == 1

    # What the stream does not say, the sweep finds: a foreign lease added and one deleted.
    rclient.hset("192.0.2.51", mapping={"mac": "aa:bb:cc:dd:ee:01"})
    rclient.delete("192.0.2.50")
    rclient.delete(f"{NS}:lease:{{192.0.2.12}}", "192.0.2.12")  # behind the sniffer's back
    step_until_idle(feed)
    feed.step()
    step_until_idle(feed)
    assert sorted(model.rows) == ["192.0.2.11", "192.0.2.13", "192.0.2.51"]
    assert {c.ip for c in model.recent if c.change == "vanished"} == {"192.0.2.50",
                                                                       "192.0.2.12"}

    # A hostile event and rogue replies from another writer.
    rclient.xadd(f"{NS}:events", {"event": "\x1b[2J", "ip": "192.0.2.11", "hostname": HOSTILE})
    rclient.xadd(f"{NS}:rogue", {"event": "rejected", "server": "192.0.2.66"})
    feed.step()
    assert model.recent[-1].change == "\x1b[2J"
    assert model.totals(time.time())["other"] == 1
    assert model.totals(time.time())["rogue"] == 1 and model.last_rogue == "192.0.2.66"
    assert "192.0.2.11" in model.rows  # re-read: the record is still there


def test_feed_drops_expired_rows_without_asking_redis(writer: LeaseStore,
                                                      reader: LeaseStore) -> None:
    writer.apply([Grant(make_lease("192.0.2.10", lease_time=1), "granted"),
                  Grant(make_lease("192.0.2.11", lease_time=600), "granted")], time.time())
    model = ViewModel()
    ahead = 0.0
    feed = Feed(reader, model, reconcile=3600, clock=lambda: time.time() + ahead)
    step_until_idle(feed)
    assert list(model.rows) == ["192.0.2.10", "192.0.2.11"]
    ahead = 5.0  # the clock moves on; nothing is written
    feed.step()
    assert list(model.rows) == ["192.0.2.11"]
    assert model.recent[-1].change == "expired" and model.recent[-1].ip == "192.0.2.10"


# ---- the command ---------------------------------------------------------------------------

def test_view_without_a_terminal_is_a_usage_error(redis_url: str) -> None:
    result = run_cli("view", "--redis-url", redis_url)
    assert result.returncode == 1
    assert result.stderr == "dhcp-hive-mind: error: the view needs an interactive terminal\n"


# ---- the README picture ----------------------------------------------------------------------

def picture_model(now: float) -> ViewModel:
    model = ViewModel()
    names = ["laptop-ana", "printer-2f", "phone-bo", "cam-lobby", "nas", "tv-lounge",
             "desk-17", "desk-18", "pos-1", "pos-2", "ap-east", "voip-104"]
    for n, name in enumerate(names):
        ip = f"10.20.{n // 6}.{20 + n * 7}"
        relay = "10.20.0.1" if n < 6 else "10.20.1.1"
        lease = make_lease(ip, f"3c:22:fb:{n:02x}:{n * 17 % 256:02x}:{n * 29 % 256:02x}", name,
                           updated=int(now) - 300 * n, giaddr=relay,
                           circuit_id=f"gi1/0/{n + 1}".encode().hex())
        change = ("granted", "renewed", "reassigned")[n % 3] if n < 5 else None
        model.put(ip, lease, [3400, 45, 900, 7100, 1800, 260][n % 6] + n * 13, now, change,
                  now - 2 * n if change else None)
    model.put("10.20.9.9", make_lease("10.20.9.9", "02:de:ad:be:ef:01", HOSTILE,
                                      kind="foreign", server="", giaddr="0.0.0.0",
                                      circuit_id=None, updated=0), 1200, now)
    for seconds, change, n in [(40, "released", 3), (25, "nak", 7), (12, "expired", 9),
                               (4, "renewed", 1), (2, "granted", 0)]:
        model.note(Change(now - seconds, change, f"10.20.{n // 6}.{20 + n * 7}",
                          f"3c:22:fb:{n:02x}:{n * 17 % 256:02x}:{n * 29 % 256:02x}", names[n]))
    for when in range(12):
        model.count("granted", now - when * 5)
    model.count("rogue", now - 100)
    model.last_rogue = "10.20.0.66"
    model.writers = {"relay-east": int(now) - 1, "relay-west": int(now) - 3}
    model.live = {"relay-east", "relay-west"}
    return model


def write_picture(svg: Path) -> None:
    now = time.time()
    console = recorder(150, 30)
    state = ViewState(source="Redis at redis://10.20.0.5:6379/0")
    console.print(render(picture_model(now), state, now, 30))
    console.save_svg(str(svg), title="dhcp-hive-mind view")


def test_readme_picture_renders(tmp_path: Path) -> None:
    write_picture(tmp_path / "view.svg")
    svg = (tmp_path / "view.svg").read_text()
    assert "laptop-ana" in svg and "relay-east" in svg
    assert "\x1b" not in svg and "markup" in svg


def write_png(svg: Path) -> Path:
    """The picture as PNG beside it, by rsvg-convert (Debian: librsvg2-bin). rsvg drops the
    no-break spaces rich writes at the start of a span, so they become preserved spaces."""
    text = svg.read_text().replace("&#160;", " ").replace("<svg ", '<svg xml:space="preserve" ', 1)
    png = svg.with_suffix(".png")
    subprocess.run(["rsvg-convert", "-f", "png", "-o", str(png)], input=text.encode(),
                   check=True)
    return png


if __name__ == "__main__":
    write_picture(Path(sys.argv[1]))
    write_png(Path(sys.argv[1]))
