"""Redis killed or hung for 10 s while Kea grants leases at 200 exchanges a second: the sniffer
on the relay host of the namespace lab keeps capturing, holds the writes, and once Redis is back
Redis mirrors Kea's leases exactly (test_sniff_e2e's comparison: address, MAC, expiry within 3 s).

Killed: SIGKILL, then a new redis-server on the same socket with the append-only file synced at
every write, as a production Redis keeps its data. Emptied: the same without persistence, so it
comes back empty and the sniffer re-asserts every current lease (hive.md R-HV-8, H10). Hung:
SIGSTOP, then SIGCONT.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from conftest import require_root, require_tool
from lab import RedisServer, fetch, sniff_relay
from test_sniff_e2e import assert_mirrors, differences, redis_leases

from benchmarks.live import BenchLab

METRICS_PORT = 9733
RATE, SECONDS = 200, 20  # exchanges a second, for this long
OUTAGE_AT, OUTAGE = 5.0, 10.0  # seconds into the load; seconds without Redis

pytestmark = pytest.mark.e2e


def kill_and_restart(server: RedisServer) -> tuple[Callable[[], None], Callable[[], None]]:
    return server.kill, server.start


def hang(server: RedisServer) -> tuple[Callable[[], None], Callable[[], None]]:
    return server.pause, server.resume


@pytest.mark.parametrize(("fault", "persistent"), [
    (kill_and_restart, True), (kill_and_restart, False), (hang, True)],
    ids=["killed", "emptied", "hung"])
def test_no_lease_is_lost_through_a_redis_outage(
        fault: Callable[[RedisServer], tuple[Callable[[], None], Callable[[], None]]],
        persistent: bool, tmp_path: Path) -> None:
    for name in ("kea-dhcp4", "dhcrelay", "perfdhcp", "tcpdump", "dumpcap", "tshark",
                 "redis-server"):
        require_tool(name)
    require_root("the namespace lab")
    server = RedisServer(persistent=persistent)
    begin, end = fault(server)
    client = redis.Redis(unix_socket_path=str(server.socket), decode_responses=True)
    try:
        with BenchLab(relayed_clients=0) as lab:
            sniffer = sniff_relay(lab.relay, server.url, tmp_path / "sniff.log",
                                  "--metrics-port", str(METRICS_PORT))
            try:
                load = threading.Thread(target=lab.perfdhcp, args=(RATE * SECONDS,),
                                        kwargs={"rate": RATE})
                load.start()
                time.sleep(OUTAGE_AT)
                begin()
                time.sleep(OUTAGE)
                end()
                load.join()
                sniffer.wait_output(r"INFO Redis writes resumed after \d+ s", timeout=60)
                if not persistent:
                    sniffer.wait_output(r"WARNING Redis lost writes \(store emptied\): "
                                        r"re-asserting \d+ leases", timeout=30)
                assert_mirrors(lab, client, timeout=30)
                kea = lab.active_leases()
                problems = differences(lab, client)
                shown = fault.__name__ + ("" if persistent else ", restarted empty")
                print(f"\n{shown}: {len(kea)} leases in Kea, "
                      f"{len(redis_leases(client))} in Redis, {len(problems)} differences; "
                      f"{late_writes(sniffer.output())}; "
                      f"{packets(fetch(lab.relay, f'http://127.0.0.1:{METRICS_PORT}/metrics'))}")
                assert len(kea) >= RATE * SECONDS * 0.95  # the load really ran
                assert sniffer.stop(signal.SIGTERM) == 0
            finally:
                sniffer.stop(signal.SIGKILL)
    finally:
        client.close()
        server.close()
    output = sniffer.output()
    assert "WARNING Redis write failed" in output  # the outage did reach the sniffer
    assert "ERROR" not in output  # no write dropped
    assert not re.search(r"capture on \S+ dropped", output)  # no packet lost by the capture


def late_writes(log: str) -> str:
    match = re.search(r"Redis writes resumed after (\d+) s: (\d+) writes made late", log)
    return f"{match[2]} writes made {match[1]} s late" if match else "no late writes"


def packets(metrics: str) -> str:
    match = re.search(r"^dhcp_hive_mind_rx_packets_total (\S+)$", metrics, re.M)
    return f"{float(match[1]):.0f} packets captured" if match else "no packet count"
