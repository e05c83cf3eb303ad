"""Faults a long-running sniffer meets, injected into the real thing (issue 6): Redis hung or
down while leases change, more writes waiting than --max-pending, tcpdump or tshark killed,
rogue servers, a DHCP starvation flood, and hostile strings in every output.

The live tests run `dhcp-hive-mind sniff` on the veth pair of test_sniff.py (frames built here
go out of one end, real tcpdump and tshark capture the other) against a redis-server of their
own, which they pause (SIGSTOP: a hung server), stop or start again.
"""

# ruff: noqa: F811  (test_sniff's fixtures, imported, are parameters of the tests here)
from __future__ import annotations

import heapq
import json
import os
import re
import signal
import subprocess
import sys
import time
import unicodedata
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import redis
from conftest import REPO, require_tool
from helpers import run_cli
from lab import Daemon, RedisServer, sniff_daemon, wait_for
from specharness import (
    ACK,
    BCAST,
    RELEASE,
    REQUEST,
    S1,
    ZERO,
    Capture,
    X,
    check_all_formats,
    client_msg,
    o,
    o_82,
    o_host,
    o_req,
    o_server,
    server_msg,
)
from specharness import ack as ack_msg
from test_sniff import (  # noqa: F401  (the fixtures: found by pytest under these names)
    METRICS_PORT,
    Link,
    Start,
    client_ip,
    client_mac,
    exchanges,
    frame,
    link,
    metrics,
    processes,
    rc,
    request_ack,
    socket_redis,
    start,
    wait_records,
)

from benchmarks import traffic
from sniffer.dhcp import Datagram
from sniffer.keys import Keys
from sniffer.pipeline import Pipeline
from sniffer.store import ROGUE_SERVERS_MAX, LeaseStore
from sniffer.tracker import Tracker, TrackerConfig

LOG_STAMP = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})"
NS = "dhcp-hive-mind"


# ---- helpers ---------------------------------------------------------------------------------

def mac_bytes(n: int) -> bytes:
    return bytes.fromhex(client_mac(n).replace(":", ""))


def grant(n: int, ip: str, lease: int, xid: int) -> list[bytes]:
    """Client n's REQUEST for `ip` and S1's ACK of it, for `lease` seconds."""
    mac = mac_bytes(n)
    return [frame(client_msg(REQUEST, xid, mac, o_req(ip), o_server(S1)), ZERO, BCAST, 68, 67),
            frame(ack_msg(xid, ip, mac, lease=lease), S1, BCAST, 67, 68)]


def release(n: int, ip: str, xid: int) -> bytes:
    return frame(client_msg(RELEASE, xid, mac_bytes(n), o_server(S1), ci=ip), ip, S1, 68, 67)


def rogue_ack(n: int, *, server: str, src: str) -> bytes:
    """An ACK of client n's usual address carrying 54=server, sent from `src`."""
    return frame(ack_msg(0x7000 + n, client_ip(n), mac_bytes(n), lease=600, server=server),
                 src, BCAST, 67, 68)


def logged_at(output: str, pattern: str) -> float:
    """The Unix time of the first log line matching `pattern` (its millisecond stamp)."""
    match = re.search(LOG_STAMP + r" \w+ " + pattern, output)
    assert match, f"no log line matches {pattern!r}:\n{output}"
    return datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S.%f").timestamp()


def own_sniffer(link: Link, server: RedisServer, log: Path, *args: str) -> Daemon:
    """A sniffer on v0 writing to `server` (one the test may pause or stop), with metrics."""
    daemon = sniff_daemon(link.ns, ["-i", "v0", "--redis-url", server.url, "--allow-server", S1,
                                    "--metrics-port", str(METRICS_PORT), *args], log)
    daemon.wait_output(r"capturing on v0")
    return daemon


@pytest.fixture
def own_redis(socket_redis: RedisServer) -> Iterator[RedisServer]:
    """A redis-server for one test (socket_redis: the module's checks for root and tools)."""
    server = RedisServer()
    yield server
    server.close()


def client_of(server: RedisServer) -> redis.Redis:
    return redis.Redis(unix_socket_path=str(server.socket), decode_responses=True)


# ---- Redis hung or down ----------------------------------------------------------------------

def test_a_hung_redis_holds_up_nothing_and_late_writes_keep_capture_clock_expiries(
        link: Link, own_redis: RedisServer, tmp_path: Path) -> None:
    """Redis frozen (SIGSTOP) while leases are granted, reassigned and released: the capture
    goes on (every packet counted while Redis is frozen), and once Redis answers the writes land
    in order with their capture-clock expiries: a lease that ended meanwhile is not kept, nor the
    record it replaced, and nothing that lasts is lost."""
    sniffer = own_sniffer(link, own_redis, tmp_path / "sniff.log")
    client = client_of(own_redis)
    try:
        link.send(grant(0, client_ip(0), 600, 0x100) + grant(4, client_ip(4), 600, 0x104))
        wait_records(client, range(0, 1))
        wait_for(lambda: client.exists(client_ip(4)) == 1, "client 4's lease")
        own_redis.pause()
        sent = time.time()
        link.send(grant(1, client_ip(1), 600, 0x101)  # lasts
                  + grant(2, client_ip(2), 2, 0x102)  # ends during the outage
                  + grant(3, client_ip(0), 2, 0x103)  # takes client 0's address, then ends
                  + [release(4, client_ip(4), 0x204)])
        wait_for(lambda: metrics(link)["dhcp_hive_mind_rx_packets_total"] == 4 + 7,
                 "every packet processed while Redis is frozen")
        sniffer.wait_output(r"WARNING Redis write failed: .*; keeping 4 writes and retrying",
                            timeout=30)
        assert metrics(link)["dhcp_hive_mind_redis_up"] == 0
        time.sleep(max(0.0, sent + 3 - time.time()))  # the 2 s leases are over
        own_redis.resume()
        sniffer.wait_output(r"INFO Redis writes resumed after \d+ s: \d+ writes made late, "
                            r"2 of them leases that had expired meanwhile", timeout=40)
        assert client.hgetall(client_ip(1)) == {"mac": client_mac(1)}
        assert abs(client.ttl(client_ip(1)) - (sent + 600 - time.time())) <= 2
        for gone in (client_ip(0), client_ip(2), client_ip(4)):
            assert not client.exists(gone) and not client.exists(f"{NS}:lease:{{{gone}}}"), gone
        check_all_formats(client)
        # The history keeps what happened meanwhile, the short leases included.
        events = [fields for _id, fields in client.xrange(f"{NS}:events")]
        assert {"granted", "reassigned", "deleted"} <= {e["event"] for e in events}
        assert any(e["ip"] == client_ip(2) and e["event"] == "granted" for e in events)
        values = metrics(link)
        assert values["dhcp_hive_mind_expired_when_written_total"] == 2
        assert values["dhcp_hive_mind_redis_up"] == 1
        assert values["dhcp_hive_mind_pending_writes"] == 0
        assert sniffer.stop(signal.SIGTERM) == 0
    finally:
        sniffer.stop(signal.SIGKILL)
        client.close()
    assert "ERROR" not in sniffer.output()


def test_writes_past_max_pending_drop_the_oldest_loudly(link: Link, own_redis: RedisServer,
                                                        tmp_path: Path) -> None:
    """Redis down while more lease changes come than --max-pending holds: the oldest are
    dropped and counted, an error says so once and sums it up at recovery, the newest land."""
    sniffer = own_sniffer(link, own_redis, tmp_path / "sniff.log", "--max-pending", "10")
    try:
        own_redis.stop()
        link.send(exchanges(0, 30))
        sniffer.wait_output(r"ERROR more than 10 writes wait for Redis: dropping the oldest")
        wait_for(lambda: metrics(link)["dhcp_hive_mind_rx_packets_total"] == 60,
                 "every packet processed")
        assert metrics(link)['dhcp_hive_mind_pending_dropped_total{kind="grant"}'] == 20
        assert metrics(link)["dhcp_hive_mind_pending_writes"] == 10
        own_redis.start()
        sniffer.wait_output(r"ERROR 20 writes were dropped, the oldest first, while more than 10 "
                            r"waited for Redis: 20 grants, 0 deletions, 0 rogue replies",
                            timeout=40)
        client = client_of(own_redis)
        assert [n for n in range(30) if client.exists(client_ip(n))] == list(range(20, 30))
        client.close()
        assert sniffer.stop(signal.SIGTERM) == 0
    finally:
        sniffer.stop(signal.SIGKILL)
    assert sniffer.output().count("dropping the oldest") == 1


def test_a_stop_while_redis_is_down_says_what_was_lost(link: Link, own_redis: RedisServer,
                                                       tmp_path: Path) -> None:
    sniffer = own_sniffer(link, own_redis, tmp_path / "sniff.log")
    try:
        own_redis.stop()
        link.send(exchanges(0, 3))
        sniffer.wait_output(r"keeping \d+ writes and retrying")
        sniffer.proc.send_signal(signal.SIGTERM)
        assert sniffer.proc.wait(60) == 1
    finally:
        sniffer.stop(signal.SIGKILL)
    assert re.search(r"dhcp-hive-mind: error: 3 lease writes were lost: Redis write failed",
                     sniffer.output())


# ---- capture crashes -------------------------------------------------------------------------

def test_a_killed_tcpdump_is_replaced_at_once(link: Link, rc: redis.Redis,
                                              start: Start) -> None:
    sniffer = start("--allow-server", S1)
    (tcpdump,) = processes(sniffer)["tcpdump"]
    killed = time.time()
    os.kill(tcpdump, signal.SIGKILL)
    sniffer.wait_output(r"capture on v0 resumed")
    restart = logged_at(sniffer.output(), r"capture on v0 resumed") - killed
    print(f"\ntcpdump killed -> capturing again: {restart:.3f} s")
    assert restart < 2.0  # the first restart is immediate; backoff is for repeated failures
    link.send(exchanges(0, 3))
    wait_records(rc, range(0, 3))


def test_a_killed_tshark_is_replaced_between_packets(link: Link, rc: redis.Redis,
                                                     start: Start) -> None:
    sniffer = start("--allow-server", S1)
    # The capture may report in before its tshark has started: wait for the process itself.
    wait_for(lambda: "tshark" in processes(sniffer), "a tshark")
    (tshark,) = processes(sniffer)["tshark"]
    killed = time.time()
    os.kill(tshark, signal.SIGKILL)
    sniffer.wait_output(r"tshark for v0 exited \(tshark was killed by signal 9\); starting")
    replaced = logged_at(sniffer.output(), r"tshark for v0 exited") - killed
    wait_for(lambda: processes(sniffer).get("tshark", [tshark]) != [tshark], "a new tshark")
    print(f"\ntshark killed -> replaced: {replaced:.3f} s")
    assert replaced < 2.0  # with no packet to write, it is noticed within a poll
    link.send(exchanges(0, 3))
    wait_records(rc, range(0, 3))
    assert "capture on v0 stopped" not in sniffer.output()  # tcpdump ran on


# ---- rogue servers ---------------------------------------------------------------------------

def test_rogue_replies_are_logged_with_server_and_client_and_never_written(
        link: Link, rc: redis.Redis, start: Start) -> None:
    sniffer = start("--allow-server", S1, "--strict-source")
    link.send([rogue_ack(1, server=X, src=X),  # another server
               rogue_ack(2, server=S1, src=X),  # S1's identifier, sent from X (R-SV-3)
               *request_ack(3)])  # S1's own: written
    wait_records(rc, range(3, 4))
    link.send([rogue_ack(n, server=X, src=X) for n in range(10, 35)])  # a rogue flood
    wait_for(lambda: rc.xlen(f"{NS}:rogue") == 27, "27 rogue replies in the rogue stream")
    assert sniffer.stop(signal.SIGTERM) == 0
    output = sniffer.output()
    assert (f"WARNING rogue reply rejected, not written: DHCPACK of {client_ip(1)} to client "
            f"{client_mac(1)} from server {X}\n") in output
    assert (f"WARNING rogue reply rejected, not written: DHCPACK of {client_ip(2)} to client "
            f"{client_mac(2)} from server {S1} sent from {X}\n") in output
    assert output.count("rogue reply rejected") == 10  # one by one, then summed up
    assert f"WARNING 17 more rogue replies rejected, not logged one by one: {X} (17)" in output
    assert not any(rc.exists(client_ip(n)) for n in (1, 2, *range(10, 35)))
    assert rc.hgetall(f"{NS}:rogue-servers") == {X: "26", S1: "1"}


def test_replay_sums_up_rogue_servers(redis_url: str, rclient: redis.Redis,
                                      tmp_path: Path) -> None:
    capture = Capture()
    for n in range(3):
        capture.add(n, ack_msg(0x10 + n, f"192.0.2.{100 + n}", mac_bytes(n), server=X), src=X)
    capture.add(5, ack_msg(0x20, "192.0.2.120", mac_bytes(9)), src=S1)
    done = run_cli("replay", str(capture.write(tmp_path / "rogue.pcap")), "--redis-url", redis_url,
                   "--allow-server", S1)
    assert done.returncode == 0, done.stderr
    assert f"rogue DHCP servers (replies rejected, not written): {X} (3)" in done.stdout
    assert rclient.keys("192.0.2.1*") == ["192.0.2.120"]


def test_forged_server_identifiers_cannot_grow_the_rogue_count(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    pipeline = Pipeline(Tracker(TrackerConfig(allowed_servers=frozenset({S1}))),
                        LeaseStore(client, Keys(), capture_clock=False))
    for n in range(ROGUE_SERVERS_MAX + 100):
        forged = f"10.{n // 65536}.{n // 256 % 256}.{n % 256}"
        pipeline.feed(Datagram(ts=1.0 + n, src=X, dst=BCAST, sport=67, dport=68, truncated=False,
                               payload=ack_msg(n, client_ip(n), mac_bytes(n), server=forged)))
    pipeline.flush()
    client.close()
    assert len(pipeline.rogue) == ROGUE_SERVERS_MAX + 1
    assert pipeline.rogue["others"] == 100


# ---- a starvation flood ----------------------------------------------------------------------

FLOOD = 1_000_000
REAL = 2_000  # real exchanges spread through the flood


def test_a_starvation_flood_loses_no_real_lease(redis_url: str, rclient: redis.Redis,
                                                tmp_path: Path) -> None:
    """A million DISCOVERs with random xids and MACs (R-TX-6, case 71 at scale), real DORA
    exchanges among them, replayed by the real command: every real lease is written, and the
    sniffer's resident memory stays bounded (measured, and reported)."""
    require_tool("tshark")
    begin = time.time() - 1000
    seconds = FLOOD / 10_000
    packets = heapq.merge(traffic.discover_flood(FLOOD, begin, 10_000),
                          traffic.exchanges(REAL, begin, REAL / seconds), key=lambda p: p.ts)
    pcap = tmp_path / "flood.pcap"
    assert traffic.write_pcap(pcap, packets) == FLOOD + 4 * REAL
    proc = subprocess.Popen(
        [sys.executable, "-m", "sniffer", "replay", str(pcap), "--redis-url", redis_url,
         "--allow-server", traffic.SERVER], cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, high_water_mark(proc.pid))
        time.sleep(0.2)
    stdout, stderr = proc.communicate()
    pcap.unlink()
    assert proc.returncode == 0, stderr
    print(f"\nflood replay: peak resident memory of the sniffer {peak / 2**20:.0f} MiB; "
          f"{stdout.strip()}")
    assert f"{FLOOD + 4 * REAL:,} packets" in stdout and f"{REAL:,} leases written" in stdout
    for n in range(REAL):
        assert rclient.hgetall(traffic.lease_address(n)) == {
            "mac": traffic.client_mac(n).hex(":"), "hostname": traffic.hostname(n)}, n
    # The bound for the tracker (at most 65,536 transactions of about 1 KiB, R-TX-6)
    # holds for the whole process: interpreter, libraries, decoder and tracker.
    assert peak < 150 * 2**20


def high_water_mark(pid: int) -> int:
    """The peak resident set (VmHWM) of a running process, 0 once it has gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    return int(match[1]) * 1024 if match else 0


# ---- hostile strings -------------------------------------------------------------------------

HOSTILE = "\x1b[2J\x1b]0;pwned\x07[bold]loud[/bold]\r\n\x9b31m\u202eevil\x00"
HOSTILE_IP = "192.0.2.200"


def unsafe_characters(text: str) -> list[str]:
    """Characters a terminal could act on: controls (but the newline), C1, format characters."""
    return sorted({repr(c) for c in text if (c != "\n" and unicodedata.category(c) == "Cc")
                   or unicodedata.category(c) == "Cf"})


def test_hostile_strings_are_stored_sanitised_and_printed_safely(
        redis_url: str, rclient: redis.Redis, tmp_path: Path) -> None:
    """Hostnames, a vendor class and option 82 full of escape sequences, markup and controls
    come off the wire sanitised (R-HN-2); what another program wrote into Redis (our hashes
    tampered with, an event in an address's history) is printed escaped by every command,
    tables and JSON alike, and so are file names in error messages."""
    hostile = HOSTILE.encode("utf-8", "surrogateescape")
    capture = Capture()
    capture.add(0, client_msg(REQUEST, 0x99, mac_bytes(1), o_req("192.0.2.150"), o_host(hostile),
                              o(60, hostile)))
    capture.add(0.01, server_msg(ACK, 0x99, mac_bytes(1), o(51, (600).to_bytes(4, "big")),
                                 o_host(hostile), o_82(hostile, hostile), yi="192.0.2.150",
                                 gi="198.51.100.1"), src=S1)
    pcap = capture.write(tmp_path / "hostile.pcap")
    done = run_cli("replay", str(pcap), "--redis-url", redis_url, "--allow-server", S1,
                   "--as-captured")
    assert done.returncode == 0, done.stderr
    stored = rclient.hgetall("192.0.2.150")
    assert stored == {"mac": client_mac(1), "hostname": "2J0pwnedboldloudbold31mevil"}
    check_all_formats(rclient)

    # Another program (or an attacker with write access) puts escapes into Redis.
    expires = int(time.time()) + 600
    rclient.hset(f"{NS}:lease:{{{HOSTILE_IP}}}", mapping={
        "ip": HOSTILE_IP, "mac": HOSTILE, "htype": "1", "hostname": HOSTILE,
        "hostname_src": "ack12", "expires": str(expires), "lease_time": "600",
        "server": HOSTILE, "giaddr": "0.0.0.0", "xid": "00000001", "updated": str(expires - 600),
        "kind": "dhcp"})
    rclient.expire(f"{NS}:lease:{{{HOSTILE_IP}}}", 600)
    rclient.zadd(f"{NS}:expiry", {HOSTILE_IP: expires})
    granted = (expires - 600) * 1_000_000
    rclient.zadd(f"{NS}:log:{{{HOSTILE_IP}}}", {json.dumps({
        "v": granted, "k": "g", "mac": HOSTILE, "hn": HOSTILE, "lt": 600, "srv": HOSTILE,
        "relay": HOSTILE}): granted})
    outputs = {
        "leases": run_cli("leases", "--redis-url", redis_url),
        "leases --json": run_cli("leases", "--json", "--redis-url", redis_url),
        "history": run_cli("history", HOSTILE_IP, "--redis-url", redis_url),
        "history --json": run_cli("history", HOSTILE_IP, "--json", "--redis-url", redis_url),
        "decode": run_cli("decode", str(pcap)),
        "decode --json": run_cli("decode", "--json", str(pcap)),
        "a hostile file name": run_cli("replay", str(tmp_path / "\x1b[31mx\x07.pcap"),
                                       "--redis-url", redis_url),
    }
    for name, result in outputs.items():
        printed = result.stdout + result.stderr
        assert unsafe_characters(printed) == [], (name, printed)
    # Tables show the text literally: markup is not interpreted, escapes are spelled out.
    assert "\\x1b[2J\\x1b]0;pwned\\x07[bold]loud[/bold]" in outputs["leases"].stdout
    assert "[bold]loud[/bold]" in outputs["history"].stdout
    assert "\\x1b[31mx\\x07.pcap: no such file" in outputs["a hostile file name"].stderr
    leases = json.loads(outputs["leases --json"].stdout)
    assert {row["hostname"] for row in leases} == {HOSTILE, stored["hostname"]}
    assert json.loads(outputs["history --json"].stdout)[0]["hostname"] == HOSTILE
    decoded = [json.loads(line) for line in outputs["decode --json"].stdout.splitlines()]
    assert [msg["hostname"] for msg in decoded] == [stored["hostname"]] * 2
