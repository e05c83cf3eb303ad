"""The namespace lab works end to end, and the committed recordings still hold what
pcaps/README.md says they hold."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import REPO, require_root, require_tool
from lab import Lab, Summary, summarize
from lab_servers import Lease, dhcpd_leases, dnsmasq_leases

PCAPS = REPO / "pcaps"
ROW = re.compile(r"^\| `(?P<file>[^`]+\.pcap(?:ng)?)` \|(?P<cells>.*)\|$")


def readme_table() -> dict[str, Summary]:
    """The table rows of pcaps/README.md, keyed by file name."""
    rows = {}
    for line in (PCAPS / "README.md").read_text().splitlines():
        if match := ROW.match(line):
            messages, xids, relayed, leased, hostnames = (
                cell.strip() for cell in match["cells"].split("|"))
            rows[match["file"]] = Summary(messages, int(xids), int(relayed), leased, hostnames)
    return rows


def namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def require_lab() -> None:
    """The lab's tools, and root for network namespaces (CI runs as root: a failure there)."""
    for name in ("kea-dhcp4", "dhcrelay", "dhclient", "ip"):
        require_tool(name)
    require_root("the namespace lab")


@pytest.mark.e2e
def test_relayed_dora_reaches_kea_with_hostname() -> None:
    require_lab()
    with Lab(relayed_clients=1) as lab:
        client = lab.clients[0]
        client.hostname = "lab-test-client"
        ip = client.obtain()
        leases = lab.leases()
        built = lab.namespace_names()
        workdir = lab.workdir
        assert set(built) <= namespaces()
    assert ip.startswith("198.51.100.")
    ours = [lease for lease in leases if lease["ip-address"] == ip]
    assert len(ours) == 1
    assert ours[0]["hw-address"] == client.mac
    assert ours[0]["hostname"] == "lab-test-client"
    assert not set(built) & namespaces()
    assert not workdir.exists()


@pytest.mark.e2e
def test_lab_is_removed_when_the_body_fails() -> None:
    require_lab()
    with pytest.raises(RuntimeError, match="boom"), Lab(relayed_clients=1) as lab:
        built = lab.namespace_names()
        raise RuntimeError("boom")
    assert built
    assert not set(built) & namespaces()


def test_readme_lists_every_committed_capture() -> None:
    committed = {path.name for path in PCAPS.iterdir() if path.suffix in (".pcap", ".pcapng")}
    assert committed
    assert set(readme_table()) == committed


@pytest.mark.parametrize("name", sorted(readme_table()))
def test_capture_holds_what_readme_says(name: str) -> None:
    require_tool("tshark")
    assert summarize(PCAPS / name) == readme_table()[name]



# Blocks as dhcpd 4.4 writes them: a DORA, then its renewal, then another address released.
DHCPD_LEASES = r"""# The format of this file is documented in the dhcpd.leases(5) manual page.
lease 198.51.100.100 {
  starts 1 2024/01/01 10:00:00;
  ends 1 2024/01/01 10:02:00;
  binding state active;
  hardware ethernet 02:00:00:00:01:01;
  client-hostname "alpha \"one\"";
}
lease 198.51.100.101 {
  starts 1 2024/01/01 10:00:01;
  ends 1 2024/01/01 10:02:01;
  binding state active;
  hardware ethernet 02:00:00:00:01:02;
  client-hostname "bravo";
}
lease 198.51.100.100 {
  starts 1 2024/01/01 10:00:05;
  ends 1 2024/01/01 10:02:05;
  binding state active;
  next binding state free;
  hardware ethernet 02:00:00:00:01:01;
  uid "\001\002\000\000\000\001\001";
  client-hostname "alpha \"one\"";
}
lease 198.51.100.101 {
  starts 1 2024/01/01 10:00:01;
  ends 1 2024/01/01 10:00:09;
  binding state free;
  hardware ethernet 02:00:00:00:01:02;
}
lease 198.51.100.102 {
  ends 1 2024/01/01 10:02:07;
  binding state active;
  hardware ethernet 02:00:00:00:02:00;
}
"""


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_dhcpd_leases_are_the_last_block_of_each_address_when_active(tmp_path: Path) -> None:
    path = tmp_path / "dhcpd.leases"
    path.write_text(DHCPD_LEASES)
    assert dhcpd_leases(path) == {
        "198.51.100.100": Lease("198.51.100.100", "02:00:00:00:01:01", 'alpha "one"',
                                utc("2024-01-01 10:02:05")),
        "198.51.100.102": Lease("198.51.100.102", "02:00:00:00:02:00", "",
                                utc("2024-01-01 10:02:07")),
    }


def test_dnsmasq_leases_read_expiry_mac_ip_and_hostname(tmp_path: Path) -> None:
    path = tmp_path / "dnsmasq.leases"
    assert dnsmasq_leases(path) == {}  # dnsmasq writes the file at its first lease
    path.write_text("1704103320 02:00:00:00:01:01 198.51.100.100 alpha 01:02:00:00:00:01:01\n"
                    "1704103327 02:00:00:00:02:00 198.51.100.102 * 01:02:00:00:00:02:00\n")
    assert dnsmasq_leases(path) == {
        "198.51.100.100": Lease("198.51.100.100", "02:00:00:00:01:01", "alpha", 1704103320),
        "198.51.100.102": Lease("198.51.100.102", "02:00:00:00:02:00", "", 1704103327),
    }
