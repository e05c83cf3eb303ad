"""The history of an address replayed from its log (sniffer/history.py, pure): log members,
labels, who held an address at a moment, the intervals of a MAC, and TIME on the command line."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pytest
from helpers import build_lease

from sniffer.commands import Grant, Revoke
from sniffer.history import (
    MICRO,
    AddressHistory,
    LogEvent,
    address_history,
    grant_member,
    holds_of,
    parse_member,
    parse_time,
    revoke_member,
)
from sniffer.lease import INFINITE, Lease

IP = "192.0.2.10"
C, D = "02:00:00:00:00:0c", "02:00:00:00:00:0d"
T0 = 1_800_000_000
NOW = T0 + 86400 * 10  # later than every lease below, unless they are infinite


def lease(mac: str = C, at: float = T0, lease_time: int = 600, **changes: object) -> Lease:
    return build_lease(IP, mac=mac, lease_time=lease_time, updated=int(at), **changes)


def g(mac: str = C, at: float = T0, lease_time: int = 600, **changes: object) -> LogEvent:
    """The log event of a grant to `mac` at `at` (a capture time) for `lease_time`."""
    command = Grant(lease(mac, at, lease_time, **changes), "granted", ts=at)
    event = parse_member(grant_member(command)[1])
    assert event is not None
    return event


def r(mac: str = C, at: float = T0, why: str = "released", **changes: object) -> LogEvent:
    """The log event of a deletion of `mac`'s binding at `at`."""
    event = parse_member(revoke_member(Revoke(lease(mac, at, **changes), why, ts=at))[1])
    assert event is not None
    return event


def history(*events: LogEvent, now: float = NOW) -> AddressHistory:
    return address_history(IP, events, now)


def labels(found: AddressHistory) -> list[tuple[float, str, str | None]]:
    return [(entry.time - T0, entry.label, entry.event.mac) for entry in found.entries]


def holds(found: AddressHistory) -> list[tuple[str | None, float, float | None, str | None]]:
    return [(h.grant.mac, h.start - T0, None if h.end is None else h.end - T0, h.ended)
            for h in found.holdings]


# ---- log members -----------------------------------------------------------------------------

def test_a_grant_member_is_the_packet_alone_and_round_trips() -> None:
    relayed = lease(hostname="alpha", client_id="0102000000000c", giaddr="198.51.100.1",
                    circuit_id="6765", remote_id="7377", xid=0xBEEF)
    version, member = grant_member(Grant(relayed, "granted", ts=T0 + 0.123456))
    assert version == T0 * MICRO + 123456
    # What the writer held before, and who wrote it, do not change the member: a replay or a
    # twin sniffer sending the same packet adds nothing.
    assert grant_member(Grant(relayed, "renewed", relayed, ts=T0 + 0.123456)) == (version, member)
    assert member.startswith(f'{{"v":{version},"k":"g",') and " " not in member
    event = parse_member(member)
    assert event == LogEvent(
        version=version, kind="g", mac=C, htype=1, client_id="0102000000000c",
        hostname="alpha", lease_time=600, xid="0000beef", server="192.0.2.1",
        relay="198.51.100.1", circuit_id="6765", remote_id="7377")
    assert event.expires == T0 + 600 and event.ts == T0 + 0.123456


@pytest.mark.parametrize("changes", [
    {},
    {"hostname": "alpha", "client_id": "0102000000000c", "giaddr": "198.51.100.1",
     "circuit_id": "6765", "remote_id": "7377", "kind": "bootp", "htype": 6},
    {"mac": None, "client_id": "ff00", "hostname": 'a"b\\c\u00e9\x01', "lease_time": INFINITE},
])
def test_a_grant_member_is_compact_json_of_the_fields_that_have_a_value(
        changes: dict[str, object]) -> None:
    """The log's members are compared byte for byte (a twin's grant is the same member)."""
    held = lease(**changes)
    version, member = grant_member(Grant(held, "granted", ts=T0 + 0.5))
    fields = {"v": version, "k": "g", "mac": held.mac, "ht": held.htype, "cid": held.client_id,
              "hn": held.hostname, "lt": held.lease_time, "xid": f"{held.xid:08x}",
              "srv": held.server, "relay": held.giaddr if held.giaddr != "0.0.0.0" else None,
              "cir": held.circuit_id, "rem": held.remote_id,
              "kind": held.kind if held.kind != "dhcp" else None}
    assert member == json.dumps({name: value for name, value in fields.items()
                                 if value is not None}, separators=(",", ":"))


def test_a_deletion_member_names_the_binding_it_ends() -> None:
    version, member = revoke_member(Revoke(lease(), "nak", ts=T0 + 5.5))
    assert json.loads(member) == {"v": version, "k": "r", "why": "nak", "mac": C, "ht": 1}
    assert parse_member(member) == LogEvent(version, "r", C, 1, None, why="nak")


def test_a_command_without_a_capture_time_takes_its_lease_second() -> None:
    assert grant_member(Grant(lease(at=T0 + 7), "granted"))[0] == (T0 + 7) * MICRO
    assert revoke_member(Revoke(lease(at=T0 + 7), "released"))[0] == (T0 + 7) * MICRO


@pytest.mark.parametrize("member", [
    "", "not json", "[1]", '{"k":"g","lt":600}', '{"v":true,"k":"g","lt":600}',
    '{"v":1.5,"k":"g","lt":600}', '{"v":-1,"k":"g","lt":600}', '{"v":1,"k":"x","lt":600}',
    '{"v":1,"k":"g"}', '{"v":1,"k":"g","lt":4294967296}', '{"v":1,"k":"g","lt":600,"mac":7}',
    '{"v":1,"k":"g","lt":600,"ht":"1"}', '{"v":1,"k":"r","why":["released"]}'])
def test_members_this_program_did_not_write_are_refused(member: str) -> None:
    assert parse_member(member) is None


# ---- labels ----------------------------------------------------------------------------------

def test_labels_follow_the_single_sniffer_rules() -> None:
    found = history(g(C, T0), g(C, T0 + 300), g(D, T0 + 400), r(D, T0 + 500),
                    g(C, T0 + 1000), g(C, T0 + 2000))
    assert labels(found) == [
        (0, "granted", C), (300, "renewed", C), (400, "reassigned", D), (500, "released", D),
        (1000, "granted", C), (1600, "expired", C),  # 1000 + 600: not renewed in time
        (2000, "granted", C), (2600, "expired", C)]
    assert found.entries[2].previous is not None and found.entries[2].previous.mac == C
    assert holds(found) == [(C, 0, 400, "reassigned"), (D, 400, 500, "released"),
                            (C, 1000, 1600, "expired"), (C, 2000, 2600, "expired")]


def test_h15_a_deletion_naming_another_client_ends_nothing() -> None:
    found = history(g(C, T0), r(D, T0 + 20))
    assert labels(found) == [(0, "granted", C), (20, "ignored", D), (600, "expired", C)]
    assert found.entries[1].event.why == "released"
    holder = found.holder_at(T0 + 25)
    assert holder is not None and holder.grant.mac == C
    # Nor does one reaching an address nobody holds.
    assert labels(history(r(C, T0))) == [(0, "ignored", C)]


def test_the_client_is_its_client_id_when_both_have_one() -> None:
    """R-ID-3: a new MAC under the same client-id renews (a hold per MAC for `history MAC`);
    the same MAC under another client-id is another client."""
    found = history(g(C, T0, client_id="01aa"), g(D, T0 + 100, client_id="01aa"),
                    g(D, T0 + 200, client_id="01bb"))
    assert [label for _t, label, _mac in labels(found)][:3] == [
        "granted", "renewed", "reassigned"]
    assert holds(found) == [(C, 0, 100, "renewed"), (D, 100, 200, "reassigned"),
                            (D, 200, 800, "expired")]


def test_events_are_replayed_in_version_order_whatever_order_they_come_in() -> None:
    events = [g(C, T0), r(C, T0 + 10), g(D, T0 + 10), g(D, T0 + 200)]
    expected = history(*events)
    assert history(*reversed(events)) == expected
    # A grant and a deletion of the same microsecond: the grant first, as Redis orders them.
    assert labels(expected)[:3] == [(0, "granted", C), (10, "reassigned", D),
                                    (10, "ignored", C)]


def test_a_hold_still_running_now_has_not_ended() -> None:
    found = history(g(C, T0, lease_time=3600), now=T0 + 100)
    assert labels(found) == [(0, "granted", C)]
    assert holds(found) == [(C, 0, 3600, None)]
    assert found.holdings[0].to_json()["end"] is None


# ---- who held it at a moment -----------------------------------------------------------------

def test_holder_at_the_boundaries() -> None:
    found = history(g(C, T0 + 0.5), r(C, T0 + 100.25), g(D, T0 + 200))
    holder_mac = {t: h.grant.mac if (h := found.holder_at(T0 + t)) else None
                  for t in (0, 0.5, 50, 100.2, 100.25, 150, 200, 799.9, 800, 1e6)}
    assert holder_mac == {0: None, 0.5: C, 50: C, 100.2: C, 100.25: None, 150: None, 200: D,
                          799.9: D, 800: None, 1e6: None}


def test_holder_across_a_reassignment_and_a_renewal() -> None:
    found = history(g(C, T0), g(C, T0 + 500), g(D, T0 + 700))
    before, renewed, taken = (found.holder_at(T0 + t) for t in (499, 600, 700))
    assert before is not None and renewed is not None and taken is not None
    # One hold, with the record as it stood at each moment.
    assert (before.start, before.grant.ts, before.end, before.ended) == (
        T0, T0, T0 + 700, "reassigned")
    assert (renewed.start, renewed.grant.ts, renewed.end, renewed.ended) == (
        T0, T0 + 500, T0 + 700, "reassigned")
    assert taken.grant.mac == D


def test_an_infinite_lease_never_runs_out() -> None:
    found = history(g(C, T0, lease_time=INFINITE), now=T0 + 10**9)
    assert labels(found) == [(0, "granted", C)]
    holder = found.holder_at(T0 + 10**9)
    assert holder is not None and holder.end is None and holder.ended is None
    record = holder.to_json()
    assert (record["expires"], record["lease_time"], record["end"]) == (None, INFINITE, None)
    # Until something ends it.
    found = history(g(C, T0, lease_time=INFINITE), g(D, T0 + 10**6, lease_time=INFINITE))
    assert holds(found) == [(C, 0, 10**6, "reassigned"), (D, 10**6, None, None)]


def test_the_holders_record_has_typed_numbers() -> None:
    found = history(g(C, T0 + 0.25, hostname="alpha", giaddr="198.51.100.1"),
                    r(C, T0 + 60, "declined"))
    holder = found.holder_at(T0 + 30)
    assert holder is not None
    assert holder.to_json() == {
        "ip": IP, "mac": C, "htype": 1, "hostname": "alpha", "start": T0 + 0.25,
        "end": T0 + 60, "ended": "declined", "updated": T0 + 0.25, "expires": T0 + 600,
        "lease_time": 600, "xid": "00001001", "server": "192.0.2.1", "relay": "198.51.100.1",
        "kind": "dhcp"}
    assert found.entries[1].to_json(IP) == {"time": T0 + 60, "event": "declined", "ip": IP,
                                            "mac": C}


# ---- the intervals of a MAC ------------------------------------------------------------------

def test_intervals_of_a_mac_overlapping_a_period() -> None:
    found = history(g(C, T0), g(D, T0 + 100), r(D, T0 + 200), g(C, T0 + 1000),
                    g(C, T0 + 1500))
    other = address_history("192.0.2.11", [g(C, T0 + 300)], NOW)

    def holds_between(since: float | None, until: float | None) -> list[tuple[str, float]]:
        return [(h.ip, h.start - T0) for h in holds_of(
            C, [found, other], None if since is None else T0 + since,
            None if until is None else T0 + until)]

    assert holds_between(None, None) == [(IP, 1000), ("192.0.2.11", 300), (IP, 0)]
    assert [(h.end, h.ended) for h in holds_of(C, [found], None, None)] == [
        (T0 + 2100, "expired"), (T0 + 100, "reassigned")]
    assert holds_between(100, 299) == []  # the first ended at 100: [start, end)
    assert holds_between(99, 300) == [("192.0.2.11", 300), (IP, 0)]
    assert holds_between(2100, None) == []
    assert holds_between(None, -1) == []
    assert [h.grant.mac for h in holds_of(D, [found, other], None, None)] == [D]


def test_entries_between_two_moments_newest_first() -> None:
    found = history(g(C, T0), r(C, T0 + 100), g(D, T0 + 200))
    assert [(e.time - T0, e.label) for e in found.between(T0 + 100, T0 + 800)] == [
        (800, "expired"), (200, "granted"), (100, "released")]
    assert [e.label for e in found.between(None, T0 + 99)] == ["granted"]


# ---- TIME ------------------------------------------------------------------------------------

@pytest.fixture
def berlin() -> Iterator[None]:
    """Local time is Europe/Berlin (UTC+1 in December)."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Berlin"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


UTC_1300 = 1_796_130_000  # 2026-12-01 13:00:00 UTC


@pytest.mark.usefixtures("berlin")
@pytest.mark.parametrize(("text", "seconds"), [
    ("2026-12-01T14:00", UTC_1300), ("2026-12-01 14:00", UTC_1300),
    ("2026-12-01T14:00:00.5", UTC_1300 + 0.5), ("2026-12-01T13:00Z", UTC_1300),
    ("2026-12-01T15:00+02:00", UTC_1300), ("2026-12-01", UTC_1300 - 14 * 3600),
    (str(UTC_1300), UTC_1300), ("1796130000.25", UTC_1300 + 0.25), ("0", 0)])
def test_time_is_iso_8601_in_local_time_or_unix_seconds(text: str, seconds: float) -> None:
    assert parse_time(text) == seconds


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01", "14:00", "nan", "inf",
                                  "2026-12-01T25:00"])
def test_a_bad_time_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not"):
        parse_time(text)


def test_an_unknown_reason_still_reads() -> None:
    """A deletion reason this version does not know still ends the binding it names."""
    member = revoke_member(Revoke(lease(at=T0 + 9), "released", ts=T0 + 9))[1]
    event = parse_member(member.replace("released", "moved"))
    assert event is not None
    assert labels(history(g(C, T0), event)) == [(0, "granted", C), (9, "moved", C)]
