"""`make demo` replays pcaps/ into one store: every recorded client must show up on its own."""

from __future__ import annotations

import json

import redis
from conftest import REPO, require_tool
from helpers import run_cli

EXPECTED = {  # ip: (mac, hostname); the two released clients are gone
    "192.0.2.110": ("02:00:00:01:00:0a", "plain-client"),
    "192.0.2.130": ("02:00:00:03:00:0a", "renewing-client"),
    "198.51.100.120": ("02:00:00:02:01:01", "relayed-client"),
    "198.51.100.140": ("02:00:00:04:01:01", "relayed-renewer"),
    "198.51.100.170": ("02:00:00:07:01:01", "any-client"),
    **{f"198.51.100.{180 + n}": (f"02:00:00:08:02:{n:02x}", None) for n in range(5)},
}


def test_demo_shows_every_recorded_client(redis_url: str, rclient: redis.Redis) -> None:
    require_tool("tshark")
    files = sorted(str(p) for p in (REPO / "pcaps").glob("*.pcap*"))
    replay = run_cli("replay", *files, "--redis-url", redis_url, "--allow-server", "192.0.2.1",
                     timeout=300)
    assert replay.returncode == 0, replay.stderr
    assert "2 deleted, 0 replies rejected, 0 malformed" in replay.stdout
    listed = run_cli("leases", "--json", "--redis-url", redis_url)
    leases = {lease["ip"]: (lease["mac"], lease.get("hostname"))
              for lease in json.loads(listed.stdout)}
    assert leases == EXPECTED
    assert rclient.hgetall("192.0.2.110") == {"mac": "02:00:00:01:00:0a",
                                              "hostname": "plain-client"}
