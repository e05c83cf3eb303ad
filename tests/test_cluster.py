"""Redis Cluster (issue 11, hive.md R-HV-7 and R-HV-10): `--redis-url` naming any node of a real
six-node cluster works for replay, leases and history, and the view's reads; what a replay leaves
in the cluster equals, field by field, what the same replay leaves in a standalone Redis."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import require_tool
from helpers import build_lease, run_cli
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot
from redis_cluster import RedisCluster, redis_cluster
from specharness import RELEASE, S1, Case, client_msg, o_host, o_server

from sniffer.commands import Grant
from sniffer.connection import StoreError, close_redis, is_cluster, open_redis
from sniffer.keys import Keys
from sniffer.scripts import key_slot as scripts_key_slot
from sniffer.store import LeaseStore

CLIENTS = 60
RELEASED = range(0, CLIENTS, 7)  # these clients release their address
MOVED = 7  # client 7 releases its address, which is granted to client 500 afterwards
TAKEN = 3  # client 3's address is granted to client 501 (a reassignment, no release seen)


@given(st.binary(max_size=40) | st.sampled_from([b"{}", b"{a}", b"x{}{a}", b"{{a}}", b"a{b}c{d}"]))
def test_the_slot_of_a_key_is_redis_py_s(key: bytes) -> None:
    """sniffer.scripts.key_slot (CRC16 in C, the one the store and its readers use) agrees with
    redis-py's, hash tags included."""
    assert scripts_key_slot(key) == key_slot(key)

def mac(n: int) -> bytes:
    return bytes([2, 0, 0, 0, n // 256, n % 256])


def ip(n: int) -> str:
    return f"10.{n // 250}.{n % 250 // 10}.{n % 10 + 1}"


def capture(redis_url: str, path: Path) -> tuple[Path, set[str]]:
    """Grants to CLIENTS clients with host names, releases by some, and a released address
    granted again to another client; returns the pcap and the addresses leased at its end. (The
    spec harness's Case builds it; nothing is fed to its session on `redis_url`.)"""
    case = Case(redis_url, path.parent)
    for n in range(CLIENTS):
        case.dora(0x1000 + n, ip(n), chaddr=mac(n), ack_at=1 + n * 0.5,
                  request_opts=[o_host(f"host-{n}")])
    at = 1 + CLIENTS * 0.5
    for k, n in enumerate(RELEASED):
        case.add(at + k * 0.5, client_msg(RELEASE, 0x2000 + n, mac(n), o_server(S1), ci=ip(n)))
    case.dora(0x3000, ip(MOVED), chaddr=mac(500), ack_at=at + 60)
    case.dora(0x3001, ip(TAKEN), chaddr=mac(501), ack_at=at + 61)
    leased = {ip(n) for n in range(CLIENTS) if n not in RELEASED} | {ip(MOVED)}
    return case.capture.write(path), leased


def replay(url: str, pcap: Path) -> None:
    result = run_cli("replay", str(pcap), "--redis-url", url, "--allow-server", S1,
                     "--as-captured")
    assert result.returncode == 0, result.stderr


def state(client: Any, ips: set[str]) -> dict[str, Any]:
    """Everything the store holds about these addresses, with the Unix second each expires (the
    TTL, independent of when it is read)."""
    keys = Keys()
    found: dict[str, Any] = {}
    for address in sorted(ips):
        seed, detail = keys.seed(address), keys.lease(address)
        found[address] = (client.hgetall(seed), client.expiretime(seed),
                          client.hgetall(detail), client.expiretime(detail))
    return found


@pytest.fixture(scope="module")
def replayed(redis_cluster_session: RedisCluster, redis_server: str,
             tmp_path_factory: pytest.TempPathFactory) -> tuple[set[str], set[str]]:
    """The capture replayed into the (emptied) cluster and the standalone Redis: (leased
    addresses, every address it named)."""
    require_tool("tshark")
    redis_cluster_session.flush()
    with redis.Redis.from_url(redis_server) as standalone:
        standalone.flushall()
    pcap, leased = capture(redis_server, tmp_path_factory.mktemp("cluster") / "hive.pcap")
    replay(redis_cluster_session.url, pcap)
    replay(redis_server, pcap)
    return leased, {ip(n) for n in range(CLIENTS)}


def test_any_node_opens_the_whole_cluster(redis_cluster_session: RedisCluster) -> None:
    for port in redis_cluster_session.ports:  # masters and replicas alike
        client, shown = open_redis(f"redis://127.0.0.1:{port}")
        try:
            assert is_cluster(client)
            assert shown == f"Redis Cluster at redis://127.0.0.1:{port}"
        finally:
            close_redis(client)


def test_replay_into_a_cluster_equals_the_standalone_replay(
        replayed: tuple[set[str], set[str]], redis_cluster_session: RedisCluster,
        redis_server: str) -> None:
    leased, named = replayed
    with redis_cluster_session.client() as cluster, \
            redis.Redis.from_url(redis_server, decode_responses=True) as standalone:
        ours, theirs = state(cluster, named), state(standalone, named)
        assert {a for a, (seed, _t, detail, _d) in ours.items() if seed and detail} == leased
        for address in named:
            seed, seed_ttl, detail, detail_ttl = ours[address]
            want_seed, want_seed_ttl, want_detail, want_detail_ttl = theirs[address]
            assert (seed, detail) == (want_seed, want_detail), address
            assert abs(seed_ttl - want_seed_ttl) <= 2 and abs(detail_ttl - want_detail_ttl) <= 2
        # The indexes, on other nodes than the leases: a release and a reassignment took the
        # address out of the old client's entry.
        keys = Keys()
        for n in range(CLIENTS):
            index = keys.by_mac(":".join(f"{b:02x}" for b in mac(n)))
            assert cluster.smembers(index) == standalone.smembers(index), n
        assert cluster.smembers(keys.by_mac("02:00:00:00:01:f4")) == {ip(MOVED)}
        assert cluster.smembers(keys.by_mac("02:00:00:00:01:f5")) == {ip(TAKEN)}
        assert not cluster.exists(keys.by_mac("02:00:00:00:00:03"))
        assert cluster.hget(keys.seed(ip(TAKEN)), "mac") == "02:00:00:00:01:f5"
        assert cluster.zrange(keys.expiry, 0, -1, withscores=True) == \
            standalone.zrange(keys.expiry, 0, -1, withscores=True)
        assert cluster.xlen(keys.events) == standalone.xlen(keys.events)
        # Each address's history, written with its lease in its slot; each MAC's on its own.
        for address in named:
            assert cluster.zrange(keys.log(address), 0, -1, withscores=True) == \
                standalone.zrange(keys.log(address), 0, -1, withscores=True), address
        for n in range(CLIENTS):
            mac_log = keys.mac_log(":".join(f"{b:02x}" for b in mac(n)))
            assert cluster.zrange(mac_log, 0, -1, withscores=True) == \
                standalone.zrange(mac_log, 0, -1, withscores=True), n


def test_commands_read_the_cluster_as_they_read_a_standalone_redis(
        replayed: tuple[set[str], set[str]], redis_cluster_session: RedisCluster,
        redis_server: str) -> None:
    leased, _named = replayed
    outputs = []
    for url in (redis_cluster_session.url, redis_server):
        listed = run_cli("leases", "--redis-url", url, "--json")
        by_mac = run_cli("leases", "--redis-url", url, "--mac", "02:00:00:00:01:f4", "--json")
        histories = [run_cli("history", "--redis-url", url, ip(n), "--json")
                     for n in (MOVED, TAKEN)]
        for result in (listed, by_mac, *histories):
            assert result.returncode == 0, result.stderr
        events = [[e["event"] for e in json.loads(result.stdout)] for result in histories]
        outputs.append((_without_ttl(listed.stdout), _without_ttl(by_mac.stdout), events))
    assert outputs[0] == outputs[1]
    assert {row["ip"] for row in json.loads(run_cli(
        "leases", "--redis-url", redis_cluster_session.url, "--json").stdout)} == leased
    assert outputs[0][2] == [["granted", "released", "granted"], ["reassigned", "granted"]]


def _without_ttl(text: str) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k not in ("ttl", "expires_in")}
            for row in json.loads(text)]


def test_the_views_reads_scan_every_master(
        replayed: tuple[set[str], set[str]], redis_cluster_session: RedisCluster) -> None:
    leased, named = replayed
    client, _shown = open_redis(redis_cluster_session.url)
    store = LeaseStore(client, Keys(), capture_clock=True)
    try:
        scanned: list[str] = []
        cursor, masters = 0, set()
        while True:
            cursor, ips = store.scan_seeds(cursor, count=10)
            scanned += ips
            masters.add(cursor >> 64)
            if cursor == 0:
                break
        assert sorted(scanned) == sorted(leased)  # each seed once, from all three masters
        assert len(masters) == 3
        records = store.records(sorted(named))
        assert set(records) == leased
        assert all(lease.kind == "dhcp" and 3000 < ttl <= 3700 for lease, ttl in records.values())
        assert sorted(store.lease_ips()) == sorted(leased)
        assert sorted(lease.ip for lease in store.load()) == sorted(leased)
    finally:
        store.close()


def test_a_cluster_that_is_down_is_one_line_at_start() -> None:
    with redis_cluster() as down:
        with redis.Redis(port=down.ports[0], decode_responses=True) as node:
            master = node.cluster("myid")
            nodes = node.cluster("nodes")  # "host:port" -> {"node_id", "master_id", ...}
        # A master and its replica gone: a third of the slots has no one serving it.
        for address, about in nodes.items():
            if master in (about["node_id"], about["master_id"]):
                down.procs.pop(int(address.rsplit(":", 1)[1])).kill()
        url = f"redis://127.0.0.1:{next(iter(down.procs))}"  # a node still running
        with pytest.raises(StoreError, match=r"Redis Cluster at .* is down \(cluster_state:fail"):
            _wait_down(url)
        result = run_cli("leases", "--redis-url", url)
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1 and "is down" in result.stderr


def _wait_down(url: str) -> None:
    """open_redis until the surviving nodes agree the cluster has failed (node timeout 2 s)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        client, _shown = open_redis(url)
        close_redis(client)
        time.sleep(0.5)


def mac_state(client: Any) -> dict[str, Any]:
    """Each replayed MAC's index and history, with the Unix second the history expires."""
    keys, found = Keys(), {}
    for n in (*range(CLIENTS), 500, 501):
        text = ":".join(f"{b:02x}" for b in mac(n))
        found[text] = (client.smembers(keys.by_mac(text)),
                       client.zrange(keys.mac_log(text), 0, -1, withscores=True),
                       client.expiretime(keys.mac_log(text)))
    return found


@pytest.mark.parametrize("where", ["cluster", "standalone"])
def test_migrate_moves_a_store_of_the_old_layout(
        where: str, replayed: tuple[set[str], set[str]], redis_cluster_session: RedisCluster,
        redis_server: str) -> None:
    """Detail hashes at `<ns>:lease:<ip>` (before the hash tags) move, TTL and all; where a
    sniffer wrote the new key since, the old copy is dropped; the MAC keys without their tag
    (`<ns>:mac:<mac>`, `<ns>:mac-log:<mac>`) are merged into the new ones, TTL kept; a second
    run changes nothing."""
    leased, named = replayed
    url = redis_cluster_session.url if where == "cluster" else redis_server
    keys, newer = Keys(), ip(MOVED)
    client: Any = (redis_cluster_session.client() if where == "cluster"
                   else redis.Redis.from_url(redis_server, decode_responses=True))
    with client:
        before, macs_before = state(client, named), mac_state(client)
        raw: Any = (redis.RedisCluster(host="127.0.0.1", port=redis_cluster_session.ports[0])
                    if where == "cluster" else redis.Redis.from_url(redis_server))
        with raw:
            for address in leased:  # as the old layout wrote them
                raw.restore(keys.old_lease(address), raw.pttl(keys.lease(address)),
                            raw.dump(keys.lease(address)))
                if address != newer:
                    raw.delete(keys.lease(address))
            old_macs = 0
            for text, (members, history, _expires) in macs_before.items():
                if members:
                    raw.sadd(keys.old_by_mac(text), *members)
                    old_macs += 1
                ttl = raw.pttl(keys.mac_log(text))
                raw.zadd(keys.old_mac_log(text), dict(history))
                raw.pexpire(keys.old_mac_log(text), ttl)
                old_macs += 1
                if text == "02:00:00:00:00:01":  # a sniffer wrote part of it again since
                    raw.delete(keys.by_mac(text))
                    raw.zpopmin(keys.mac_log(text))
                    raw.pexpire(keys.mac_log(text), 5000)
                else:
                    raw.delete(keys.by_mac(text), keys.mac_log(text))
        first = run_cli("migrate", "--redis-url", url)
        assert first.returncode == 0, first.stderr
        assert f"{len(leased) - 1} detail hashes moved" in first.stdout
        assert "1 older copies dropped" in first.stdout
        assert f"{old_macs} MAC index and history keys moved" in first.stdout
        after, macs_after = state(client, named), mac_state(client)
        for address in named:
            assert after[address][0::2] == before[address][0::2], address
            assert abs(after[address][3] - before[address][3]) <= 2
        assert not any(client.exists(keys.old_lease(address)) for address in named)
        for text, (members, history, expires) in macs_before.items():
            assert macs_after[text][:2] == (members, history), text
            assert abs(macs_after[text][2] - expires) <= 2, text
            assert not client.exists(keys.old_by_mac(text)), text
            assert not client.exists(keys.old_mac_log(text)), text
        again = run_cli("migrate", "--redis-url", url)
        assert "0 detail hashes moved" in again.stdout and state(client, named) == after
        assert "0 MAC index and history keys moved" in again.stdout
        assert mac_state(client) == macs_after


def test_a_grant_writes_its_mac_keys_in_one_call(redis_cluster_session: RedisCluster,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A MAC's index and history share a slot (hash tag `{<mac>}`, whatever the key prefix),
    so a new grant writes both in one call, not one each (issue 11, item 8)."""
    for keys in (Keys(), Keys("leases:", "ns")):
        assert key_slot(keys.by_mac("02:00:00:00:0b:01").encode()) == \
            key_slot(keys.mac_log("02:00:00:00:0b:01").encode())
    sent: list[list[Any]] = []
    runner = LeaseStore._sent_by_master

    def recorded(store: LeaseStore, command: str, script: str,
                 calls: list[list[Any]]) -> Any:
        sent.extend(calls)
        return runner(store, command, script, calls)

    monkeypatch.setattr(LeaseStore, "_sent_by_master", recorded)
    client, _shown = open_redis(redis_cluster_session.url)
    store, keys = LeaseStore(client, Keys(), capture_clock=True, writer="w"), Keys()
    leases = [build_lease(f"10.11.0.{n}", mac=f"02:00:00:00:0b:{n:02x}") for n in range(1, 21)]
    try:
        store.apply([Grant(lease, "granted") for lease in leases], time.time())
    finally:
        store.close()
    with redis_cluster_session.client() as cluster:
        for lease in leases:
            mac_keys = {keys.by_mac(str(lease.mac)), keys.mac_log(str(lease.mac))}
            assert len([call for call in sent if mac_keys & set(call)]) == 1, lease.mac
            assert cluster.smembers(keys.by_mac(str(lease.mac))) == {lease.ip}
            assert cluster.zrange(keys.mac_log(str(lease.mac)), 0, -1) == [lease.ip]


def test_writes_follow_a_slot_moved_to_another_master() -> None:
    """A resharding moves an address's slot after the client learned the slot map: the write
    sent to the old master is redirected (MOVED) and written again where the slot now is, and
    the batch's other calls, sent at the same time to every master, are written once."""
    with redis_cluster() as reshaped:
        client, _shown = open_redis(reshaped.url)
        store = LeaseStore(client, Keys(), capture_clock=True, writer="w")
        try:
            store.apply([Grant(build_lease(f"10.8.0.{n}", mac=f"02:00:00:00:09:{n:02x}"),
                               "granted") for n in range(1, 21)], time.time())  # map learned
            moved = "10.9.9.9"
            target = _move_slot(reshaped, moved)
            leases = [build_lease(f"10.9.{n}.{n}", mac=f"02:00:00:00:0a:{n:02x}")
                      for n in range(1, 10)]
            store.apply([Grant(lease, "granted") for lease in leases], time.time())
            with redis.Redis(port=target, decode_responses=True) as new_master:
                assert new_master.hgetall(moved) == {"mac": "02:00:00:00:0a:09"}
            with reshaped.client() as cluster:
                for lease in leases:
                    assert cluster.hget(lease.ip, "mac") == lease.mac, lease.ip
                    assert cluster.smembers(Keys().by_mac(str(lease.mac))) == {lease.ip}
                assert cluster.xlen(Keys().events) == 20 + 9  # each grant's event once
        finally:
            store.close()


def _move_slot(cluster: RedisCluster, key: str) -> int:
    """Move `key`'s slot (holding no key) to another master the way a resharding does
    (IMPORTING, MIGRATING, then NODE on every master); the port of its new master."""
    slot = key_slot(key.encode())
    masters: dict[int, dict[str, Any]] = {}  # as each master sees itself: right after the
    for port in cluster.ports:  # cluster is made, a node may not know yet who replicates whom
        with redis.Redis(port=port, decode_responses=True) as node:
            itself = next(about for about in node.cluster("nodes").values()
                          if "myself" in about["flags"])
        if "master" in itself["flags"]:
            masters[port] = itself
    source = next(port for port, about in masters.items()
                  if any(int(first) <= slot <= int(last) for first, last, *_ in about["slots"]))
    target = next(port for port in masters if port != source)
    ids = {port: about["node_id"] for port, about in masters.items()}
    with redis.Redis(port=target) as new, redis.Redis(port=source) as old:
        new.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
        old.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])
        for port in (target, source, *(p for p in masters if p not in (source, target))):
            with redis.Redis(port=port) as master:
                master.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target])
    return target
