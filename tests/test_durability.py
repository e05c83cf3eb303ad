"""Durability (hive.md R-HV-8). StoreWatch, the checks' policy, without Redis or clocks: when a
check is due, and what the marker and the masters' run ids found tell; the tracker's current
leases as the grants that re-assert them. Then StoreProbe and the writer against a real Redis
and a real cluster: what a check reads (on a cluster a marker on every master, followed through
a reshard), and a store emptied under a running writer.
(test_failover.py has the live cases H9 and H10.)"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable

import redis
from helpers import build_lease
from redis.crc import key_slot
from redis_cluster import RedisCluster, redis_cluster

from sniffer.commands import Grant, GrantEvent
from sniffer.connection import close_redis, open_redis
from sniffer.durability import Loss, Probe, StoreWatch
from sniffer.keys import Keys
from sniffer.metrics import Metrics
from sniffer.registry import StoreProbe
from sniffer.store import LeaseStore
from sniffer.tracker import Tracker
from sniffer.writer import RedisWriter

A, B, C = frozenset({"a"}), frozenset({"b"}), frozenset({"a", "c"})


def test_checks_come_every_few_seconds_after_the_last_one() -> None:
    watch = StoreWatch(every=5.0)
    assert watch.due(0.0)  # the first, at start
    assert watch.checked(Probe(A, marked=True), 0.0) is None
    assert not watch.due(4.9)
    assert watch.wake_in(1.0) == 4.0
    assert watch.due(5.0)
    assert watch.failed(5.0)  # the first failure of a series
    assert not watch.failed(10.0)
    assert watch.wake_in(10.0) == 5.0
    assert watch.checked(Probe(A, marked=True), 15.0) is None
    assert watch.failed(20.0)  # a new series


def test_a_master_gone_from_the_run_ids_is_a_restart_or_failover() -> None:
    watch = StoreWatch()
    assert watch.checked(Probe(A, marked=True), 0.0) is None  # the run ids at start
    assert watch.checked(Probe(C, marked=True), 5.0) is None  # a master added: nothing lost
    assert watch.checked(Probe(B, marked=True), 10.0) is Loss.RESTARTED
    assert watch.checked(Probe(B, marked=True), 15.0) is None  # told once
    assert watch.checked(Probe(None, marked=True), 20.0) is None  # INFO refused: unknown
    assert watch.checked(Probe(A, marked=True), 25.0) is Loss.RESTARTED


def test_a_lost_marker_means_the_store_lost_everything() -> None:
    watch = StoreWatch()
    watch.checked(Probe(A, marked=True), 0.0)
    # A Redis restarted empty: a new run id too, but the marker says more.
    assert watch.checked(Probe(B, marked=False), 5.0) is Loss.EMPTIED
    assert watch.checked(Probe(B, marked=True), 10.0) is None  # marked again meanwhile
    assert watch.checked(Probe(None, marked=False), 15.0) is Loss.EMPTIED
    assert Loss.EMPTIED.why == "store emptied" and Loss.RESTARTED.why == "run id changed"


def test_the_tracker_hands_out_its_current_leases_with_their_versions() -> None:
    tracker = Tracker()
    kept = build_lease("192.0.2.1", expires=2000)
    ended = build_lease("192.0.2.2", expires=1000)
    forever = build_lease("192.0.2.3", expires=None)
    tracker.restore([kept, ended, forever])
    grants = tracker.current_grants(1000.0)
    # Restored records have no capture time (0.0: their `updated` second is the version);
    # the one that ended by `now` is not written again.
    assert grants == [Grant(kept, GrantEvent.GRANTED, None, 0.0),
                      Grant(forever, GrantEvent.GRANTED, None, 0.0)]


# ---- against a real Redis --------------------------------------------------------------------

def test_the_probe_reads_the_marker_and_the_run_id(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    probe = StoreProbe(client, Keys(), "w1")
    probe.mark()
    assert client.ttl("dhcp-hive-mind:mark:w1") == -1  # no TTL: only a loss removes it
    found = probe.check()
    assert found == Probe(frozenset({client.info("server")["run_id"]}), marked=True)
    client.set("dhcp-hive-mind:mark:w1", "an older token")  # the store went back in time
    assert not probe.check().marked
    probe.mark()
    probe.unmark()
    assert not client.exists("dhcp-hive-mind:mark:w1")
    client.close()


def test_the_probe_reads_every_masters_run_id_on_a_cluster(cluster: RedisCluster) -> None:
    client, _shown = open_redis(cluster.url)
    try:
        probe = StoreProbe(client, Keys(), "w1")
        probe.mark()
        found = probe.check()
        assert found.marked
        assert found.run_ids is not None and len(found.run_ids) == 3  # the three masters
    finally:
        close_redis(client)


def markers_by_master(cluster: RedisCluster) -> dict[int, dict[str, str]]:
    """Each master's (by port) marker keys and their values, read from the node itself."""
    found: dict[int, dict[str, str]] = {}
    with cluster.client() as admin:
        for master in admin.get_primaries():
            with redis.Redis(port=master.port, decode_responses=True) as node:
                found[master.port] = {key: node.get(key) for key in
                                      node.keys("dhcp-hive-mind:mark:*")}
    return found


def test_on_a_cluster_a_master_emptied_alone_is_told_by_its_own_marker(
        cluster: RedisCluster) -> None:
    """A marker on each master, in a slot it serves: one master emptied (FLUSHALL on that node
    alone stands for its restart without persistence), the others holding theirs, is a lost
    marker; the marks written again, found again; all removed at the clean stop."""
    client, _shown = open_redis(cluster.url)
    try:
        probe = StoreProbe(client, Keys(), "w1")
        probe.mark()
        markers = markers_by_master(cluster)
        assert len(markers) == 3
        for found in markers.values():
            [(key, value)] = found.items()
            assert re.fullmatch(r"dhcp-hive-mind:mark:\{\d+\}:w1", key)
            assert value == probe.token
        assert probe.check().marked
        emptied = min(markers)
        with redis.Redis(port=emptied) as node:
            node.flushall()
        assert not probe.check().marked
        probe.mark()
        assert markers_by_master(cluster) == markers  # the same keys again
        assert probe.check().marked
        probe.unmark()
        assert all(not found for found in markers_by_master(cluster).values())
    finally:
        close_redis(client)


def move_slot(cluster: RedisCluster, slot: int, to: int) -> None:
    """Move one slot, with its keys, to the master at port `to`, as a reshard does."""
    with cluster.client() as admin:
        source = admin.nodes_manager.get_node_from_slot(slot).port
        masters = [node.port for node in admin.get_primaries()]
    with redis.Redis(port=source, decode_responses=True) as src, \
            redis.Redis(port=to, decode_responses=True) as dst:
        src_id, dst_id = src.cluster("myid"), dst.cluster("myid")
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
        if keys:
            src.migrate(cluster.host, to, keys, 0, 5000)
    for port in masters:
        with redis.Redis(port=port) as node:
            node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)


def test_on_a_cluster_a_reshard_moves_a_marker_and_is_no_loss(cluster: RedisCluster) -> None:
    """The slot of a master's marker moved to another master (its key with it): the probe
    follows the move, finds every marker, writes one on the master that lost its slot, and
    removes them all at the end."""
    client, _shown = open_redis(cluster.url)
    probe = StoreProbe(client, Keys(), "w1")
    with cluster.client() as admin:
        masters = sorted(node.port for node in admin.get_primaries())
    try:
        probe.mark()
        before = markers_by_master(cluster)
        [key] = before[masters[0]]
        slot = key_slot(key.encode())
        move_slot(cluster, slot, masters[1])
        try:
            for _ in range(3):  # the first follows the move; the next have the new map
                assert probe.check().marked
            after = markers_by_master(cluster)
            assert key in after[masters[1]]  # moved with its slot
            assert len(after[masters[0]]) == 1 and key not in after[masters[0]]
            with redis.Redis(port=masters[0]) as node:
                node.flushall()
            assert not probe.check().marked  # the new marker is watched like the others
            probe.mark()
            probe.unmark()
            assert all(not found for found in markers_by_master(cluster).values())
        finally:
            move_slot(cluster, slot, masters[0])
    finally:
        close_redis(client)


def test_a_user_not_allowed_info_has_the_marker_alone(redis_url: str) -> None:
    admin = redis.Redis.from_url(redis_url)
    admin.acl_setuser("no-info", enabled=True, passwords=["+secret"], keys=["*"],
                      commands=["+@all", "-info"])
    client = redis.Redis.from_url(redis_url, username="no-info", password="secret")
    try:
        probe = StoreProbe(client, Keys(), "w1")
        probe.mark()
        assert probe.check() == Probe(None, marked=True)
        assert probe.check() == Probe(None, marked=True)  # INFO not asked again
    finally:
        client.close()
        admin.acl_deluser("no-info")
        admin.close()


def test_a_store_emptied_under_a_running_writer_asks_for_every_lease(redis_url: str) -> None:
    """The writer marks the store at start; emptied (FLUSHALL stands for a restart without
    persistence), its next check asks for the cache once, and what it is handed is written
    with the leases' own expiries."""
    client = redis.Redis.from_url(redis_url)
    store = LeaseStore(client, Keys(), capture_clock=True, writer="w1")
    metrics = Metrics()
    writer = RedisWriter(store, metrics, batch_size=10, max_pending=100,
                         probe=StoreProbe(client, Keys(), "w1"))
    lease = build_lease("192.0.2.7")
    grant = Grant(lease, GrantEvent.GRANTED, None, lease.updated + 0.25)
    writer.start()
    try:
        writer.put([(grant, time.time())])
        deadline = time.monotonic() + 5
        while not client.exists("192.0.2.7") and time.monotonic() < deadline:
            time.sleep(0.05)
        client.flushall()
        deadline = time.monotonic() + 15
        while not writer.cache_wanted():
            assert time.monotonic() < deadline, "the writer never found the store emptied"
            time.sleep(0.05)
        assert not writer.cache_wanted()  # asked once
        writer.reassert_cache([grant])
        assert writer.close(10) == 0
    finally:
        client.close()
    with redis.Redis.from_url(redis_url) as check:
        assert check.expiretime("192.0.2.7") == lease.expires
        assert not check.exists("dhcp-hive-mind:mark:w1")  # removed at the clean stop
    sample = metrics.registry.get_sample_value
    assert sample("dhcp_hive_mind_store_resets_total", {"kind": "emptied"}) == 1
    assert sample("dhcp_hive_mind_reasserted_total", {"reason": "emptied"}) == 1


def wait(condition: Callable[[], object], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except redis.RedisError:
            pass
        assert time.monotonic() < deadline, f"no {what} after {timeout:g} s"
        time.sleep(0.1)


def replica_of(port: int, master: int) -> int | None:
    """The port of the replica of the master at `master`, in sync with it, as the node at `port`
    sees them (a new cluster's nodes learn their roles over a few seconds); None if none yet."""
    with redis.Redis(port=port, decode_responses=True) as node:
        lines = [line.split() for line in node.execute_command("CLUSTER", "NODES").splitlines()]
    master_id = next(words[0] for words in lines if words[1].split("@")[0].endswith(f":{master}"))
    for words in lines:
        if words[3] == master_id:
            replica = int(words[1].split("@")[0].rpartition(":")[2])
            with redis.Redis(port=replica, decode_responses=True) as node:
                if node.info("replication").get("master_link_status") == "up":
                    return replica
    return None


def test_on_a_cluster_a_write_the_dead_master_never_passed_on_is_reasserted() -> None:
    """hive.md H9 on a cluster: a grant the address's master took while its replica was frozen
    (a value larger than the kernel buffers first, so that the replica, thawed, cannot read the
    rest of the stream either), the master killed, its replica promoted without it: the writer
    re-asserts it into the new master."""
    ip = "192.0.2.9"
    with redis_cluster() as nodes:
        client, _shown = open_redis(nodes.url)
        store = LeaseStore(client, Keys(), capture_clock=True, writer="w1")
        writer = RedisWriter(store, Metrics(), batch_size=10, max_pending=100,
                             probe=StoreProbe(client, Keys(), "w1"))
        with nodes.client() as cluster:
            primary = cluster.get_node_from_key(ip).port
        wait(lambda: replica_of(nodes.ports[0], primary), "replica in sync", 30)
        replica = replica_of(nodes.ports[0], primary)
        assert replica is not None
        lease = build_lease(ip)
        writer.start()
        try:
            with redis.Redis(port=primary) as master:
                nodes.procs[replica].send_signal(signal.SIGSTOP)
                master.set(f"filler{{{ip}}}", b"x" * (64 << 20))  # in the address's slot
                writer.put([(Grant(lease, GrantEvent.GRANTED, None, lease.updated + 0.5),
                             time.time())])
                wait(lambda: master.exists(ip), "grant in the master", 10)
            nodes.kill(primary)
            nodes.procs[replica].send_signal(signal.SIGCONT)
            with redis.Redis(port=replica) as promoted:
                wait(lambda: promoted.info("replication")["role"] == "master",
                     "replica promoted", 60)
                assert not promoted.exists(f"filler{{{ip}}}")  # the stream was cut before it
                wait(lambda: promoted.exists(ip), "grant re-asserted", 60)
                assert promoted.expiretime(ip) == lease.expires
            assert writer.close(30) == 0
        finally:
            writer.close(0)
            close_redis(client)
