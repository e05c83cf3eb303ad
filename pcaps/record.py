#!/usr/bin/env python3
"""Re-record the project's own captures in pcaps/ with the namespace lab in tests/lab.py.

Run as root (`make pcaps`, or `python3 pcaps/record.py [NAME...]` for some of them). Afterwards
it prints each capture's summary as a row of the table in pcaps/README.md: compare, and update
the README if the content changed on purpose (tests/test_lab.py checks they agree).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from lab import Lab, summarize  # noqa: E402

# Each recording is a lab scenario of its own (tests/lab.py): its clients' MACs carry the number
# in their fourth octet and their addresses start at .100 + 10 * number, so replaying all the
# files together (`make demo`) shows every client apart instead of one overwriting another.
#
# A short T1 so the renewal captures take seconds (dhclient renews at T1), and a valid lifetime
# of ten minutes so the renewed lease is still there a while after a replay. T2 at 87.5 % of
# the lifetime, the share RFC 2131 suggests.
QUICK_RENEWAL = {"valid_lifetime": 600, "renew_timer": 5, "rebind_timer": 525}


def plain_dora(path: Path) -> None:
    """A client on the server's own segment: broadcast DORA, captured at the server."""
    with Lab(relayed_clients=0, scenario=1) as lab:
        lab.local.hostname = "plain-client"
        capture = lab.capture("srv", ["eth0"], path)
        lab.local.obtain()
        capture.stop()


def relayed_dora_both_legs(path: Path) -> None:
    """A relayed DORA, captured on both interfaces of the relay host."""
    with Lab(relayed_clients=1, scenario=2) as lab:
        lab.clients[0].hostname = "relayed-client"
        capture = lab.capture("relay", ["up0", "down0"], path)
        lab.clients[0].obtain()
        capture.stop()


def renewal(path: Path) -> None:
    """DORA, then one renewal at T1: unicast REQUEST/ACK with ciaddr, captured at the server."""
    with Lab(relayed_clients=0, scenario=3, **QUICK_RENEWAL) as lab:
        lab.local.hostname = "renewing-client"
        capture = lab.capture("srv", ["eth0"], path)
        lab.local.obtain()
        lab.local.wait_renewals(1)
        lab.local.vanish()
        capture.stop()


def relayed_renewal_both_legs(path: Path) -> None:
    """A relayed client renewing through its router, captured on both relay legs.

    The unicast renewal is routed, and dhcrelay relays a second copy of it too (it listens for
    port 67 on the client leg whatever the destination), so the server answers twice.
    """
    with Lab(relayed_clients=1, scenario=4, **QUICK_RENEWAL) as lab:
        client = lab.clients[0]
        client.hostname = "relayed-renewer"
        capture = lab.capture("relay", ["up0", "down0"], path)
        client.obtain()
        client.wait_renewals(1)
        client.vanish()
        capture.stop()


def release(path: Path) -> None:
    """DORA, then DHCPRELEASE, captured at the server."""
    with Lab(relayed_clients=0, scenario=5) as lab:
        lab.local.hostname = "releasing-client"
        capture = lab.capture("srv", ["eth0"], path)
        lab.local.obtain()
        lab.local.release()
        capture.stop()


def relayed_release_both_legs(path: Path) -> None:
    """A relayed DORA, then DHCPRELEASE, captured on both relay legs."""
    with Lab(relayed_clients=1, scenario=6) as lab:
        lab.clients[0].hostname = "relayed-releaser"
        capture = lab.capture("relay", ["up0", "down0"], path)
        lab.clients[0].obtain()
        lab.clients[0].release()
        capture.stop()


def relayed_dora_any(path: Path) -> None:
    """A relayed DORA captured on the relay host with `-i any`: Linux cooked capture (SLL)."""
    with Lab(relayed_clients=1, scenario=7) as lab:
        lab.clients[0].hostname = "any-client"
        capture = lab.capture("relay", ["any"], path)
        lab.clients[0].obtain()
        capture.stop()


def perfdhcp_both_legs(path: Path) -> None:
    """Load from perfdhcp (5 simulated clients, no hostnames) through the relay host, captured
    on both legs. perfdhcp plays the relay agent, so its requests carry giaddr from the start
    and are routed; dhcrelay relays a second copy of each, and Kea answers both."""
    with Lab(relayed_clients=0, scenario=8) as lab:
        capture = lab.capture("relay", ["up0", "down0"], path)
        lab.perfdhcp(5, rate=5)
        capture.stop()


RECORDINGS: dict[str, Callable[[Path], None]] = {
    "plain_dora.pcap": plain_dora,
    "relayed_dora_both_legs.pcapng": relayed_dora_both_legs,
    "renewal.pcap": renewal,
    "relayed_renewal_both_legs.pcapng": relayed_renewal_both_legs,
    "release.pcap": release,
    "relayed_release_both_legs.pcapng": relayed_release_both_legs,
    "relayed_dora_any.pcap": relayed_dora_any,
    "perfdhcp_both_legs.pcapng": perfdhcp_both_legs,
}


def main(names: list[str]) -> int:
    unknown = [name for name in names if name not in RECORDINGS]
    if unknown:
        print(f"unknown recording(s) {', '.join(unknown)}; known: {', '.join(RECORDINGS)}",
              file=sys.stderr)
        return 2
    for name in names or list(RECORDINGS):
        path = HERE / name
        RECORDINGS[name](path)
        s = summarize(path)
        print(f"| `{name}` | {s.messages} | {s.xids} | {s.relayed} | {s.leased} | {s.hostnames} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
