"""The lab's other DHCP servers, ISC dhcpd and dnsmasq: their configuration, and their lease
files read back as the leases they hold now.

Both serve the lab's two segments as Kea does (lab.py): the server segment directly, the client
segment through the relay, each with a pool from `first` to .199. Their lease files are the
servers' own account of what they granted; the end-to-end tests compare Redis with them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class Lease:
    """A lease as a server holds it: `hostname` is "" when the client sent none."""

    ip: str
    mac: str
    hostname: str
    expires: float  # Unix seconds


@dataclass(frozen=True)
class Timers:
    """Lease time, T1 and T2 in seconds; a timer left None is the server's own choice."""

    valid: int
    renew: int | None = None
    rebind: int | None = None


# ---- ISC dhcpd -------------------------------------------------------------------------------

def dhcpd_config(server_net: str, client_net: str, router: str, first: int,
                 timers: Timers) -> str:
    """dhcpd.conf for the lab. `dhcp-cache-threshold 0`: dhcpd would otherwise answer a renewal
    within a quarter of the lease time with the lease as it was, not extended."""
    lines = ["authoritative;", "dhcp-cache-threshold 0;", "ping-check false;",
             *(f"{name} {timers.valid};"
               for name in ("default-lease-time", "min-lease-time", "max-lease-time"))]
    if timers.renew is not None:
        lines.append(f"option dhcp-renewal-time {timers.renew};")
    if timers.rebind is not None:
        lines.append(f"option dhcp-rebinding-time {timers.rebind};")
    for net, extra in ((server_net, ""), (client_net, f" option routers {router};")):
        prefix = net.split("/")[0].rsplit(".", 1)[0]
        lines.append(f"subnet {prefix}.0 netmask 255.255.255.0 "
                     f"{{ range {prefix}.{first} {prefix}.199;{extra} }}")
    return "\n".join(lines) + "\n"


LEASE_BLOCK = re.compile(r"^lease (\S+) \{\n(.*?)^\}", re.M | re.S)
ESCAPE = re.compile(rb"\\([0-7]{3}|.)")


def dhcpd_string(literal: str) -> str:
    """A quoted string of dhcpd.leases, where dhcpd escapes `"` and `\\` with a backslash and
    other bytes outside printable ASCII as \\ooo."""
    raw = ESCAPE.sub(lambda m: bytes([int(m[1], 8)]) if len(m[1]) == 3 else m[1],
                     literal.encode())
    return raw.decode(errors="replace")


def dhcpd_leases(path: Path) -> dict[str, Lease]:
    """The addresses dhcpd holds as active: dhcpd appends a block for each change, so the last
    block of an address is its state; `ends` is UTC (dhcpd's default db-time-format)."""
    last: dict[str, str] = {}
    for match in LEASE_BLOCK.finditer(path.read_text()):
        last[match[1]] = match[2]
    leases = {}
    for ip, block in last.items():
        if not re.search(r"^\s*binding state active;", block, re.M):
            continue
        ends = re.search(r"^\s*ends \d (\S+ \S+);", block, re.M)
        mac = re.search(r"^\s*hardware ethernet (\S+);", block, re.M)
        hostname = re.search(r'^\s*client-hostname "((?:[^"\\]|\\.)*)";', block, re.M)
        if ends is None or mac is None:
            raise ValueError(f"dhcpd lease {ip} without ends or hardware ethernet:\n{block}")
        expires = datetime.strptime(ends[1], "%Y/%m/%d %H:%M:%S").replace(tzinfo=UTC)
        leases[ip] = Lease(ip, mac[1], dhcpd_string(hostname[1]) if hostname else "",
                           expires.timestamp())
    return leases


# ---- dnsmasq ---------------------------------------------------------------------------------

DNSMASQ_MIN_LEASE = 120  # seconds: dnsmasq raises any shorter lease time to this


def dnsmasq_args(server_net: str, client_net: str, router: str, first: int,
                 timers: Timers) -> list[str]:
    """dnsmasq's options for the lab (no config file; DNS off, so no port 53). Requests relayed
    from the client segment match its dhcp-range by their giaddr; the netmask is needed because
    dnsmasq has no interface there."""
    if timers.valid < DNSMASQ_MIN_LEASE:
        raise ValueError(f"dnsmasq leases last {DNSMASQ_MIN_LEASE} s at least, "
                         f"not {timers.valid}")
    args = ["--conf-file=/dev/null", "--port=0", "--dhcp-authoritative", "--no-ping",
            "--log-dhcp", "--log-facility=-"]
    for tag, net in (("server", server_net), ("clients", client_net)):
        prefix = net.split("/")[0].rsplit(".", 1)[0]
        args.append(f"--dhcp-range=set:{tag},{prefix}.{first},{prefix}.199,255.255.255.0,"
                    f"{timers.valid}")
    args.append(f"--dhcp-option=tag:clients,option:router,{router}")
    if timers.renew is not None:
        args.append(f"--dhcp-option=option:T1,{timers.renew}")
    if timers.rebind is not None:
        args.append(f"--dhcp-option=option:T2,{timers.rebind}")
    return args


def dnsmasq_leases(path: Path) -> dict[str, Lease]:
    """dnsmasq's lease file, one lease a line: expiry (Unix seconds), MAC, IP, hostname ("*"
    for none), client id. dnsmasq rewrites it whole and drops a released lease."""
    leases = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        expires, mac, ip, hostname = line.split()[:4]
        leases[ip] = Lease(ip, mac, "" if hostname == "*" else hostname, float(expires))
    return leases
