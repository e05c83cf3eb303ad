"""The hive lab: the namespace lab of lab.py with a second relay host, so that one Kea serves two
client subnets through two relays, each relay host with its own sniffers; and the comparison of a
shared store (standalone, Cluster or Sentinel) with Kea's leases.

      srv (Kea) --- br0: server segment 192.0.2.0/24 ----------------------------------
                         |                                       |
           relay (A): up0 192.0.2.254               relayb (B): up0 192.0.2.253
                      down0 198.51.100.1                        down0 203.0.113.1
                         |                                       |
           br1: 198.51.100.0/24                     br2: 203.0.113.0/24
           cli1 (dhclient "alpha-hive")             clib (dhclient "bravo-hive")
           perf (perfdhcp at .50)                   perfb (perfdhcp at .50)

Each client subnet's pool is `pool` addresses from .100: small, so that once perfdhcp's clients
have taken them all, an address released is soon handed to another client (reassignment).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lab import (
    CLIENT_NET,
    PERF_IP,
    RELAY_DOWN_IP,
    Client,
    Lab,
    LabError,
    Namespace,
    client_mac,
    run,
    tool,
)
from lab_servers import Lease

from sniffer.connection import StoreError, close_redis, open_redis, redis_errors
from sniffer.history import LogEvent
from sniffer.keys import Keys
from sniffer.reader import LeaseReader

CLIENT_NET_B = "203.0.113.0/24"
RELAY_B_UP_IP = "192.0.2.253"
RELAY_B_DOWN_IP = "203.0.113.1"
PERF_IP_B = "203.0.113.50"
TTL_TOLERANCE = 3  # seconds between Kea's expiry and the store's, as the issue allows
DUP_WINDOW = 1.0  # seconds: two copies of one packet are closer than this (hive.md R-HV-3)


@dataclass(frozen=True)
class Side:
    """One relay's client segment: where its perfdhcp sits and whom it sends to."""

    perf_role: str  # the namespace of its perfdhcp
    bridge: str
    perf_ip: str
    relay_ip: str  # the relay's address on the segment (giaddr, clients' router)
    mac_group: int  # client_mac's group of its perfdhcp clients


SIDES = {"A": Side("perf", "br1", PERF_IP, RELAY_DOWN_IP, 2),
         "B": Side("perfb", "br2", PERF_IP_B, RELAY_B_DOWN_IP, 3)}


class HiveLab(Lab):
    """Lab plus relay host B (role "relayb") on client segment B, its dhclient client ("clib",
    the last of `clients`), and pools of `pool` addresses on both client segments."""

    def __init__(self, *, pool: int, valid_lifetime: int = 600) -> None:
        if not 1 <= pool <= 100:
            raise LabError(f"pool of {pool}: 1 to 100 addresses")
        super().__init__(relayed_clients=1, valid_lifetime=valid_lifetime)
        self.pool = pool

    def _pool(self, net: str) -> str:
        prefix = net.split("/")[0].rsplit(".", 1)[0]
        return f"{prefix}.100 - {prefix}.{99 + self.pool}"

    def _kea_config(self) -> dict[str, Any]:
        config: dict[str, Any] = super()._kea_config()
        subnets = config["Dhcp4"]["subnet4"]
        for subnet in subnets:
            if subnet["subnet"] == CLIENT_NET:
                subnet["pools"] = [{"pool": self._pool(CLIENT_NET)}]
        subnets.append({"id": 3, "subnet": CLIENT_NET_B,
                        "pools": [{"pool": self._pool(CLIENT_NET_B)}],
                        "option-data": [{"name": "routers", "data": RELAY_B_DOWN_IP}]})
        return config

    def _build(self) -> None:
        super()._build()
        self.switch.ip("link", "add", "br2", "type", "bridge")
        self.switch.ip("link", "set", "br2", "up")
        self.relay_b = self._namespace("relayb")
        self._plug(self.relay_b, "up0", "br0", "02:00:00:00:fe:02", f"{RELAY_B_UP_IP}/24")
        self._plug(self.relay_b, "down0", "br2", "02:00:00:00:fe:03", f"{RELAY_B_DOWN_IP}/24")
        run(self.relay_b.cmd("sysctl", "-qw", "net.ipv4.ip_forward=1"))
        self.srv.ip("route", "add", CLIENT_NET_B, "via", RELAY_B_UP_IP)
        self._start_relay(self.relay_b)
        ns = self._namespace("clib")
        mac = client_mac(self.scenario, 1, 0xb0)
        self._plug(ns, "eth0", "br2", mac)
        self.clients.append(Client(ns, self.workdir, mac, "clib"))

    def perf(self, side: str, *, rate: int, release_rate: int, clients: int, seconds: int,
             seed: int) -> subprocess.Popen[str]:
        """perfdhcp on client segment `side` ("A" or "B") for `seconds`, started, not waited
        for: `rate` DORAs a second from `clients` simulated clients (random MACs of its
        group), and `release_rate` RELEASEs a second of the leases it got. It plays a relay
        agent on the segment, as Lab.perfdhcp explains."""
        where = SIDES[side]
        ns = self.namespaces.get(where.perf_role) or self._perf_host(where)
        argv = ns.cmd(tool("perfdhcp"), "-4", "-l", where.perf_ip, "-r", str(rate),
                      "-F", str(release_rate), "-R", str(clients), "-p", str(seconds),
                      "-s", str(seed), "-b", f"mac={client_mac(self.scenario, where.mac_group, 0)}",
                      where.relay_ip)
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)

    def _perf_host(self, side: Side) -> Namespace:
        ns = self._namespace(side.perf_role)
        self._plug(ns, "eth0", side.bridge, client_mac(self.scenario, side.mac_group, 0xff),
                   f"{side.perf_ip}/24")
        return ns


# ---- the store against Kea -------------------------------------------------------------------

@dataclass(frozen=True)
class StoreView:
    """What a store holds: seed hashes with their TTLs, and the records `leases --json` lists."""

    seeds: dict[str, tuple[dict[str, str], int]]
    rows: dict[str, dict[str, Any]]


def read_store(url: str) -> StoreView:
    """The seed hashes (every master of a cluster scanned), and `dhcp-hive-mind leases --json`
    run against `url` (from this checkout). StoreError if it cannot be read."""
    client, _shown = open_redis(url)
    try:
        reader, keys = LeaseReader(client, Keys()), Keys()
        ips: list[str] = []
        cursor = 0
        while True:
            cursor, found = reader.scan_seeds(cursor)
            ips += found
            if cursor == 0:
                break
        with redis_errors("read"):
            seeds = {ip: (client.hgetall(keys.seed(ip)), int(client.ttl(keys.seed(ip))))
                     for ip in set(ips)}
    finally:
        close_redis(client)
    try:
        listed = run([sys.executable, "-m", "sniffer", "leases", "--json", "--redis-url", url],
                     timeout=60)
    except LabError as error:
        raise StoreError(str(error)) from None
    return StoreView({ip: (_texts(fields), ttl) for ip, (fields, ttl) in seeds.items()},
                     {row["ip"]: row for row in json.loads(listed)})


def _texts(fields: dict[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in fields.items()}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def differences(kea: dict[str, Lease], store: StoreView) -> list[str]:
    """How the store differs from Kea's active leases, one line per difference (seed hash and
    record each): a lease missing, one too many, another MAC or hostname, an expiry more than
    TTL_TOLERANCE off. [] when it mirrors Kea."""
    now = time.time()
    problems = []
    for what, held in (("seed", store.seeds), ("record", store.rows)):
        problems += [f"{ip}: {what} missing" for ip in sorted(kea.keys() - held.keys())]
        problems += [f"{ip}: {what} not in Kea" for ip in sorted(held.keys() - kea.keys())]
    for ip in sorted(kea.keys() & store.seeds.keys()):
        lease, (fields, ttl) = kea[ip], store.seeds[ip]
        problems += _mismatches(ip, "seed", lease, fields.get("mac"), fields.get("hostname"),
                                now + ttl)
    for ip in sorted(kea.keys() & store.rows.keys()):
        lease, row = kea[ip], store.rows[ip]
        problems += _mismatches(ip, "record", lease, row["mac"], row["hostname"],
                                row["expires"])
    return problems


def _mismatches(ip: str, what: str, lease: Lease, mac: str | None, hostname: str | None,
                expires: float | None) -> list[str]:
    found = []
    if mac != lease.mac:
        found.append(f"{ip}: {what} MAC {mac}, Kea {lease.mac}")
    if (hostname or "") != lease.hostname:
        found.append(f"{ip}: {what} hostname {hostname!r}, Kea {lease.hostname!r}")
    if expires is None or abs(expires - lease.expires) > TTL_TOLERANCE:
        found.append(f"{ip}: {what} expires {expires}, Kea {lease.expires:.0f}")
    return found


def address_logs(url: str, ips: Sequence[str]) -> dict[str, list[LogEvent]]:
    """The per-address event logs of `ips`, oldest first."""
    client, _shown = open_redis(url)
    try:
        return LeaseReader(client, Keys()).address_logs(list(ips))
    finally:
        close_redis(client)


def shown(event: LogEvent) -> str:
    return (f"{event.ts:.6f} {event.kind} {event.mac} xid {event.xid} "
            f"{event.why or f'expires {event.expires}'}")


def duplicates(events: Sequence[LogEvent]) -> list[tuple[LogEvent, LogEvent]]:
    """Grants of a log that repeat one before them, with it: the same client and xid within
    DUP_WINDOW seconds (the same ACK, seen twice: on both legs of a relay, or by a twin), which
    the store must log once. Deletions are left out: their log entries carry no xid, so two
    RELEASEs of one client close together cannot be told from one seen twice."""
    found = []
    for n, event in enumerate(events):
        if event.xid is None:
            continue
        found += [(e, event) for e in events[max(0, n - 8):n]
                  if (e.identity, e.xid) == (event.identity, event.xid)
                  and event.version - e.version <= DUP_WINDOW * 1_000_000][:1]
    return found
