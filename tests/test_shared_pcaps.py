"""Every public capture in ../shared/pcaps replays without error; the ones whose outcome is clear
are checked lease by lease (under the replay clock: they are years old)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from conftest import SHARED_PCAPS, require_tool, shared_pcaps
from specharness import Session, lease_ips, record

from sniffer.capture_file import read_file

# file -> {ip: (mac, hostname, hostname_src, lease_time, server, giaddr)}; every other file
# must leave no lease at all. Each row was checked against the capture's .fields.txt.
EXPECTED: dict[str, dict[str, tuple[str, str | None, str | None, int, str, str]]] = {
    "charrua_dhcp_request_ack.pcap": {
        "192.168.8.20": ("68:5b:35:aa:29:16", "feanor", "req12", 86400, "192.168.8.1",
                         "0.0.0.0")},
    "joy_dhcp_renew_request_ack.pcap": {
        "10.0.2.15": ("08:00:27:83:f4:42", "pythagoras", "req12", 86400, "10.0.2.2", "0.0.0.0")},
    "ndpi_alexa_bg_request_ack.pcapng": {
        "172.16.42.216": ("78:f8:82:d3:fb:c2", "android-1c1335ec95a27318", "req12", 43200,
                          "172.16.42.1", "0.0.0.0")},
    # The hostname Lucas-iMac belongs to another client's DISCOVER (another MAC and xid).
    "ndpi_android_bg_dora.pcap": {
        "192.168.2.16": ("4c:6a:f6:9f:f6:27", None, None, 85536, "192.168.2.1", "0.0.0.0")},
    "ndpi_fuzzed_sip_bg_renew.pcap": {
        "192.168.1.2": ("00:e0:ed:01:6e:bd", "d002465", "ack12", 3600, "192.168.1.1", "0.0.0.0")},
    "ndpi_gnutella_bg_renew.pcap": {
        "10.0.2.15": ("08:00:27:e6:e5:59", "MSEDGEWIN10", "req81", 86400, "10.0.2.2", "0.0.0.0")},
    "ndpi_iphone_bg_dora.pcap": {
        "192.168.2.17": ("c4:61:8b:35:82:a9", "Lucas-iPhone", "req12", 85536, "192.168.2.1",
                         "0.0.0.0")},
    "pcapplusplus_dhcp3_ack.pcap": {
        "192.168.2.20": ("c0:cb:38:42:db:58", None, None, 43200, "192.168.2.1", "0.0.0.0")},
    "suricata_unit_ack.pcap": {
        "192.168.0.10": ("00:0b:82:01:fc:42", None, None, 3600, "192.168.0.1", "0.0.0.0")},
    "sv_sip_bg_renew.pcap": {
        "192.168.1.2": ("00:e0:ed:01:6e:bd", "d002465", "ack12", 3600, "192.168.1.1", "0.0.0.0")},
    "sv_smb2_bg_dora_renew.pcap": {
        "192.168.199.132": ("00:0c:29:03:df:ad", "DESKTOP-2AEFM7G", "req81", 1800,
                            "192.168.199.254", "0.0.0.0"),
        "192.168.199.133": ("00:0c:29:61:f5:5f", "DESKTOP-V1FA0UQ", "req81", 1800,
                            "192.168.199.254", "0.0.0.0")},
    "tcpdump_dhcp_mud_relayed.pcap": {
        "62.12.173.123": ("b8:27:eb:b8:53:c8", "raspberrypi", "req12", 600, "62.12.173.114",
                          "62.12.173.121")},
    "tcpdump_dhcp_rfc3004_user_class.pcap": {
        "192.168.1.4": ("00:0c:29:1f:74:06", None, None, 86400, "192.168.1.1", "0.0.0.0")},
    "tcpdump_dhcp_rfc5859_tftp.pcap": {
        "192.168.1.4": ("00:0c:29:1f:74:06", None, None, 43200, "192.168.1.1", "0.0.0.0")},
    "tcpdump_dhcpv4v6_rfc5970_rfc8572.pcap": {
        "10.10.0.4": ("00:00:44:01:00:00", None, None, 28800, "10.10.0.2", "0.0.0.0")},
    # DISCOVER/OFFER use xid 3d1d, REQUEST/ACK 3d1e: the ACK correlates with the REQUEST.
    "wireshark_sample_dhcp.pcap": {
        "192.168.0.10": ("00:0b:82:01:fc:42", None, None, 3600, "192.168.0.1", "0.0.0.0")},
    "zeek_dhcp_time_and_nameserver.pcap": {
        "192.168.15.250": ("00:90:f5:91:cd:1f", "pop-os", "req12", 86093, "192.168.15.101",
                           "0.0.0.0")},
}


def replay(redis_url: str, tmp_path: Path, *paths: Path, capture_clock: bool = False) -> Session:
    session = Session(redis_url, tmp_path, allowed=(), capture_clock=capture_clock)
    for path in paths:
        session.pipeline.process(read_file(path))
    session.pipeline.flush()
    return session


def test_the_table_names_real_files() -> None:
    names = {p.name for p in shared_pcaps()}
    assert len(names) >= 50
    assert set(EXPECTED) <= names


@pytest.mark.parametrize("path", shared_pcaps(), ids=lambda p: p.name)
def test_shared_capture(path: Path, redis_url: str, rclient: redis.Redis,
                        tmp_path: Path) -> None:
    require_tool("tshark")
    session = replay(redis_url, tmp_path, path)
    try:
        assert session.pipeline.stats["packets"] > 0
        expected = EXPECTED.get(path.name, {})
        assert lease_ips(rclient) == set(expected)
        for ip, (mac, hostname, source, lease_time, server, giaddr) in expected.items():
            got = record(rclient, ip)
            assert got is not None
            detail = got.detail
            assert (detail["mac"], detail.get("hostname"), detail.get("hostname_src"),
                    int(detail["lease_time"]), detail["server"], detail["giaddr"]) == (
                mac, hostname, source, lease_time, server, giaddr)
            assert got.seed == {k: v for k, v in (("mac", mac), ("hostname", hostname)) if v}
            assert abs(got.detail_ttl - lease_time) <= 2
            assert abs(got.seed_ttl - lease_time) <= 2
    finally:
        session.close()


def test_release_in_a_later_file_deletes_the_lease(redis_url: str, rclient: redis.Redis,
                                                   tmp_path: Path) -> None:
    """PcapPlusPlus' Dhcp4 RELEASE (ciaddr 192.168.2.20, same chaddr) ends Dhcp3's lease."""
    require_tool("tshark")
    replay(redis_url, tmp_path, SHARED_PCAPS / "pcapplusplus_dhcp3_ack.pcap").close()
    assert rclient.exists("192.168.2.20") == 1
    session = replay(redis_url, tmp_path, SHARED_PCAPS / "pcapplusplus_dhcp4_release.pcap")
    session.close()
    assert lease_ips(rclient) == set()


def test_old_captures_write_nothing_under_the_capture_clock(redis_url: str,
                                                            rclient: redis.Redis,
                                                            tmp_path: Path) -> None:
    """Their leases ended years ago (G9)."""
    require_tool("tshark")
    paths = [SHARED_PCAPS / name for name in sorted(EXPECTED)]
    session = replay(redis_url, tmp_path, *paths, capture_clock=True)
    session.close()
    assert lease_ips(rclient) == set()
    assert session.tracker.counters["already_expired"] >= len(EXPECTED)
