"""`decode --json` speaks the seed's message format: what `client_ip`, `server_ip` and `relay_ip`
mean for each message type, checked through the real command and real tshark, on built packets
and on real captures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO, SHARED_PCAPS, require_tool
from helpers import run_cli
from specharness import (
    ACK,
    DECLINE,
    DISCOVER,
    INFORM,
    OFFER,
    R1,
    RELEASE,
    REQUEST,
    S1,
    ZERO,
    A,
    Capture,
    client_msg,
    nak,
    o_req,
    o_server,
    payload,
    server_msg,
)

# Every built message carries all four header addresses, each a different one, and option 50
# where the type may have it, so that each expectation says which of them client_ip takes.
YI, CI, REQ, SI = "192.0.2.10", "192.0.2.20", "192.0.2.30", "192.0.2.40"
HEADER = {"yi": YI, "ci": CI, "si": SI, "gi": R1}

# msg_type -> (the message, its client_ip, its server_ip): the seed's table.
SEED_TABLE: dict[str, tuple[bytes, str | None, str]] = {
    # No address yet: option 50 is only a wish. No option 54, so server_ip is siaddr.
    "DHCPDISCOVER": (client_msg(DISCOVER, 1, A, o_req(REQ), **HEADER), None, SI),
    "DHCPOFFER": (server_msg(OFFER, 2, A, **HEADER), YI, S1),  # option 54 wins over siaddr
    # Selecting or init-reboot: the requested address, whatever ciaddr says.
    "DHCPREQUEST": (client_msg(REQUEST, 3, A, o_req(REQ), o_server(S1), **HEADER), REQ, S1),
    "DHCPDECLINE": (client_msg(DECLINE, 4, A, o_req(REQ), o_server(S1), **HEADER), REQ, S1),
    "DHCPACK": (server_msg(ACK, 5, A, **HEADER), YI, S1),
    "DHCPNAK": (nak(6, A, **HEADER), None, S1),
    "DHCPRELEASE": (client_msg(RELEASE, 7, A, o_req(REQ), o_server(S1), **HEADER), CI, S1),
    "DHCPINFORM": (client_msg(INFORM, 8, A, **HEADER), CI, SI),
    # BOOTP, no options at all: the reply's address is yiaddr, the request's its own ciaddr.
    "BOOTREQUEST": (payload(1, 9, A, **HEADER), CI, SI),
    "BOOTREPLY": (payload(2, 10, A, **HEADER), YI, SI),
}

# A renewing or rebinding REQUEST names its address in ciaddr only; its siaddr is 0.
RENEWING = client_msg(REQUEST, 11, A, ci=CI, yi=YI, gi=R1)


def decode_json(path: Path) -> list[dict[str, object]]:
    result = run_cli("decode", "--json", str(path))
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, object]]:
    """The table's messages and the renewing REQUEST, in one capture, decoded once."""
    require_tool("tshark")
    capture = Capture()
    for n, (data, _, _) in enumerate(SEED_TABLE.values()):
        capture.add(n, data)
    capture.add(len(SEED_TABLE), RENEWING)
    return decode_json(capture.write(tmp_path_factory.mktemp("seed") / "types.pcap"))


@pytest.mark.parametrize("msg_type", SEED_TABLE)
def test_each_type_has_the_seed_meanings(built: list[dict[str, object]], msg_type: str) -> None:
    _, client_ip, server_ip = SEED_TABLE[msg_type]
    [message] = [m for m in built if m["msg_type"] == msg_type and m["xid"] != "0000000b"]
    assert {k: message[k] for k in ("client_ip", "server_ip", "relay_ip")} == {
        "client_ip": client_ip, "server_ip": server_ip, "relay_ip": R1}
    # The header's own addresses stay under their names.
    assert {k: message[k] for k in ("ciaddr", "yiaddr", "your_ip", "siaddr")} == {
        "ciaddr": CI, "yiaddr": YI, "your_ip": YI, "siaddr": SI}


def test_renewing_request_names_ciaddr(built: list[dict[str, object]]) -> None:
    [message] = [m for m in built if m["xid"] == "0000000b"]
    assert message["msg_type"] == "DHCPREQUEST"
    assert message["requested_ip"] is None
    # server_ip is siaddr as the header holds it, as relay_ip is giaddr as it is.
    assert {k: message[k] for k in ("client_ip", "server_ip", "relay_ip", "ciaddr", "yiaddr")} == {
        "client_ip": CI, "server_ip": ZERO, "relay_ip": R1, "ciaddr": CI, "yiaddr": YI}


# file -> (frame, msg_type, client_ip, server_ip, relay_ip) of every DHCP message in it, as the
# file's description (pcaps/README.md, or the shared INDEX.md and .fields.txt) says.
PLAIN = "192.0.2.1"
REAL: dict[Path, list[tuple[int, str, str | None, str, str]]] = {
    REPO / "pcaps" / "plain_dora.pcap": [
        (1, "DHCPDISCOVER", None, ZERO, ZERO),
        (2, "DHCPOFFER", "192.0.2.110", PLAIN, ZERO),
        (3, "DHCPREQUEST", "192.0.2.110", PLAIN, ZERO),
        (4, "DHCPACK", "192.0.2.110", PLAIN, ZERO)],
    # The renewal (frames 5, 6): ciaddr, no options 50 and 54.
    REPO / "pcaps" / "renewal.pcap": [
        (1, "DHCPDISCOVER", None, ZERO, ZERO),
        (2, "DHCPOFFER", "192.0.2.130", PLAIN, ZERO),
        (3, "DHCPREQUEST", "192.0.2.130", PLAIN, ZERO),
        (4, "DHCPACK", "192.0.2.130", PLAIN, ZERO),
        (5, "DHCPREQUEST", "192.0.2.130", ZERO, ZERO),
        (6, "DHCPACK", "192.0.2.130", PLAIN, ZERO)],
    REPO / "pcaps" / "release.pcap": [
        (1, "DHCPDISCOVER", None, ZERO, ZERO),
        (2, "DHCPOFFER", "192.0.2.150", PLAIN, ZERO),
        (3, "DHCPREQUEST", "192.0.2.150", PLAIN, ZERO),
        (4, "DHCPACK", "192.0.2.150", PLAIN, ZERO),
        (5, "DHCPRELEASE", "192.0.2.150", PLAIN, ZERO)],
    # Both legs of the relay: the up0 copies (frames 1-4) and the client leg's (5-8), where
    # only the client's own messages have giaddr 0.
    REPO / "pcaps" / "relayed_dora_both_legs.pcapng": [
        (1, "DHCPDISCOVER", None, ZERO, R1),
        (2, "DHCPOFFER", "198.51.100.120", PLAIN, R1),
        (3, "DHCPREQUEST", "198.51.100.120", PLAIN, R1),
        (4, "DHCPACK", "198.51.100.120", PLAIN, R1),
        (5, "DHCPDISCOVER", None, ZERO, ZERO),
        (6, "DHCPOFFER", "198.51.100.120", PLAIN, R1),
        (7, "DHCPREQUEST", "198.51.100.120", PLAIN, ZERO),
        (8, "DHCPACK", "198.51.100.120", PLAIN, R1)],
    # The DISCOVER carries option 50 = 0.0.0.0; the OFFER's siaddr is the server too.
    SHARED_PCAPS / "wireshark_sample_dhcp.pcap": [
        (1, "DHCPDISCOVER", None, ZERO, ZERO),
        (2, "DHCPOFFER", "192.168.0.10", "192.168.0.1", ZERO),
        (3, "DHCPREQUEST", "192.168.0.10", "192.168.0.1", ZERO),
        (4, "DHCPACK", "192.168.0.10", "192.168.0.1", ZERO)],
    # The ACK to an INFORM leases nothing (yiaddr 0); its option 54 differs from its siaddr.
    SHARED_PCAPS / "zeek_dhcp_inform.pcap": [
        (1, "DHCPINFORM", "128.2.6.122", ZERO, ZERO),
        (2, "DHCPACK", ZERO, "128.2.6.152", ZERO)],
    SHARED_PCAPS / "pcapplusplus_dhcp4_release.pcap": [
        (1, "DHCPRELEASE", "192.168.2.20", ZERO, ZERO)],
    # A renewal through a relay, on the relay-server leg.
    SHARED_PCAPS / "tcpdump_dhcp_mud_relayed.pcap": [
        (1, "DHCPREQUEST", "62.12.173.123", ZERO, "62.12.173.121"),
        (2, "DHCPACK", "62.12.173.123", "62.12.173.114", "62.12.173.121")],
}


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name)
def test_real_captures_have_the_seed_meanings(path: Path) -> None:
    require_tool("tshark")
    assert [(m["frame"], m["msg_type"], m["client_ip"], m["server_ip"], m["relay_ip"])
            for m in decode_json(path)] == REAL[path]


def test_the_readme_example_is_the_real_output() -> None:
    """The README's `decode --json` lines, each cut short with `...}`, begin the real lines."""
    require_tool("tshark")
    command = "$ dhcp-hive-mind decode --json pcaps/plain_dora.pcap\n"
    readme = (REPO / "README.md").read_text()
    shown = readme[readme.index(command) + len(command):].split("\n```", 1)[0].splitlines()
    real = [json.dumps(m) for m in decode_json(REPO / "pcaps" / "plain_dora.pcap")]
    assert len(shown) == len(real) == 4
    for line, full in zip(shown, real, strict=True):
        assert line.endswith(", ...}")
        assert full.startswith(line.removesuffix("...}"))
