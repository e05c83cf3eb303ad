"""A DHCP lab in network namespaces: a DHCP server (Kea, or ISC dhcpd or dnsmasq), a relay, and
dhclient clients, torn down on exit.

Topology (every name below is prefixed with a per-lab tag such as ``hive3f9a1c-``, so parallel
labs never clash; nothing is created in the caller's own namespace):

      local (dhclient)            srv (kea-dhcp4 192.0.2.1, control socket, lease_cmds;
                                       or dhcpd, or dnsmasq: lab_servers.py)
      eth0 02:00:00:0s:00:0a      eth0 02:00:00:00:ff:01
           |                           |
    ===== br0 in namespace sw: server segment N0 192.0.2.0/24 (pool .1s0-.199) =====
                          |
                 up0 192.0.2.254 02:00:00:00:ff:02
                 relay (dhcrelay -iu up0 -id down0 192.0.2.1, ip_forward=1)
                 down0 198.51.100.1 02:00:00:00:ff:03  (giaddr, clients' router)
                          |
    ===== br1 in namespace sw: client segment N1 198.51.100.0/24 (pool .1s0-.199) =====
           |                  |
      cli1 eth0          cli2 eth0 ...   (dhclient; MAC 02:00:00:0s:01:<n>)

`s` is the lab's `scenario` (0-9, default 0), which keeps recordings apart when they are replayed
together: it is the fourth octet of every client MAC (perfdhcp's too) and moves both pools to
start at .100 + 10 * s. The server and the relay are the same in every scenario.

Clients renew by unicast through the relay acting as a router, as a real client would.
The addresses are documentation ranges (RFC 5737); the traffic never leaves the namespaces.

    with Lab(relayed_clients=1) as lab:
        ip = lab.clients[0].obtain()
        leases = lab.leases()

`Lab(server="dhcpd")` or `"dnsmasq"` serves with those instead; `active_leases()` reads any
server's current leases (Kea's through lease_cmds, the others' from their lease files).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Self

from lab_servers import Lease, Timers, dhcpd_config, dhcpd_leases, dnsmasq_args, dnsmasq_leases

SERVER_IP = "192.0.2.1"
RELAY_UP_IP = "192.0.2.254"
RELAY_DOWN_IP = "198.51.100.1"
SERVER_NET = "192.0.2.0/24"
CLIENT_NET = "198.51.100.0/24"
PERF_IP = "198.51.100.50"  # perfdhcp, a pretend relay agent on the client segment


def client_mac(scenario: int, group: int, n: int) -> str:
    """A client MAC of the lab: group 0 is the local client, 1 the relayed clients, 2 perfdhcp."""
    return f"02:00:00:{scenario:02x}:{group:02x}:{n:02x}"


PERF_MAC = client_mac(0, 2, 0)  # the first of perfdhcp's simulated clients in scenario 0
DHCP_FILTER = "udp port 67 or udp port 68"
SBIN = "/usr/sbin:/sbin:/usr/local/sbin"
SERVERS = {"kea": "kea-dhcp4", "dhcpd": "dhcpd", "dnsmasq": "dnsmasq"}  # name: its command

# Configures only what renewals need (address, default route). Debian's dhclient-script would
# also rewrite /etc/resolv.conf, which a network namespace shares with the host.
# Each call is appended to "events" beside the script, so callers can see binds and renewals.
CLIENT_SCRIPT = """#!/bin/sh
echo "$reason $new_ip_address" >> "$(dirname "$0")/events"
case "$reason" in
  PREINIT)
    ip link set dev "$interface" up ;;
  BOUND|RENEW|REBIND|REBOOT)
    if [ -n "$old_ip_address" ] && [ "$old_ip_address" != "$new_ip_address" ]; then
      ip -4 addr flush dev "$interface"
    fi
    ip addr replace "$new_ip_address/$new_subnet_mask" dev "$interface"
    for router in $new_routers; do
      ip route replace default via "$router" dev "$interface"
      break
    done ;;
  EXPIRE|FAIL|RELEASE|STOP)
    ip -4 addr flush dev "$interface" ;;
esac
exit 0
"""


class LabError(Exception):
    """The lab could not be built or an operation in it failed."""


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path=SBIN)
    if path is None:
        raise LabError(f"{name} is not installed")
    return path


def run(argv: Sequence[str], *, timeout: float = 30) -> str:
    """Run a command to completion; its stdout, or LabError with its stderr."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout}s: {' '.join(argv)}") from exc
    if done.returncode != 0:
        raise LabError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def lease_cmds_hook(kea: str) -> Path:
    """The lease_cmds hook library; its directory differs between distros and Kea versions."""
    match = re.search(r"Hooks directory:\s*(\S+)", run([kea, "-W"]))
    reported = [Path(match.group(1))] if match else []
    for directory in [*reported, *Path("/usr/lib").glob("*/kea/hooks"),
                      Path("/usr/lib/kea/hooks"), Path("/usr/local/lib/kea/hooks")]:
        if (directory / "libdhcp_lease_cmds.so").exists():
            return directory / "libdhcp_lease_cmds.so"
    raise LabError("libdhcp_lease_cmds.so not found (on Debian it is in kea-common)")


def conf_string(value: str) -> str:
    """A dhclient.conf string literal for any UTF-8 text: octal escapes for all but plain ASCII."""
    plain = {*range(0x20, 0x7F)} - {ord('"'), ord("\\")}
    return '"' + "".join(chr(b) if b in plain else f"\\{b:03o}" for b in value.encode()) + '"'


def kea_lease(lease: dict[str, object]) -> Lease:
    """A lease of lease4-get-all; Kea's expiry is its cltt (last contact) plus the lifetime."""
    return Lease(str(lease["ip-address"]), str(lease["hw-address"]), str(lease["hostname"]),
                 int(str(lease["cltt"])) + int(str(lease["valid-lft"])))


class Namespace:
    def __init__(self, name: str) -> None:
        self.name = name

    def cmd(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def ip(self, *args: str) -> str:
        return run(["ip", "-n", self.name, *args])

    def ipv4(self, iface: str) -> list[str]:
        out = self.ip("-4", "-o", "addr", "show", "dev", iface)
        return re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", out)


class Daemon:
    """A long-running process in a namespace with its output in a log file."""

    def __init__(self, ns: Namespace, argv: Sequence[str], log: Path,
                 env: dict[str, str] | None = None) -> None:
        self.log = log
        self.argv = list(argv)
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                ns.cmd(*argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=None if env is None else {**os.environ, **env},
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_output(self, pattern: str, timeout: float = 20) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise LabError(f"{self.argv[0]} exited {self.proc.returncode}: {self.output()}")
            return re.search(pattern, self.output()) is not None

        wait_for(ready, f"{self.argv[0]} to print {pattern!r}", timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class Client:
    """dhclient on eth0 of its own namespace, with its own config, lease file and pid file."""

    def __init__(self, ns: Namespace, workdir: Path, mac: str, hostname: str) -> None:
        self.ns = ns
        self.mac = mac
        self.hostname = hostname  # written into the config at each obtain()
        self.dir = workdir / ns.name
        self.dir.mkdir()
        self.script = self.dir / "script"
        self.script.write_text(CLIENT_SCRIPT)
        self.script.chmod(0o755)

    def _dhclient(self, *flags: str, timeout: float = 60) -> str:
        files = ["-cf", str(self.dir / "conf"), "-lf", str(self.dir / "leases"),
                 "-pf", str(self.dir / "pid"), "-sf", str(self.script)]
        return run(self.ns.cmd(tool("dhclient"), *flags, *files, "eth0"), timeout=timeout)

    def obtain(self, timeout: int = 30) -> str:
        """DORA; dhclient then stays in the background and renews by itself. Returns the IP."""
        (self.dir / "conf").write_text(
            f"send host-name {conf_string(self.hostname)};\n"
            "request subnet-mask, broadcast-address, routers;\n"
            f"timeout {timeout};\ninitial-interval 1;\n"
        )
        self._dhclient("-1", "-v", timeout=timeout + 10)
        addresses = self.ns.ipv4("eth0")
        if not addresses:
            raise LabError(f"{self.ns.name}: dhclient exited but eth0 has no IPv4 address")
        return addresses[0]

    def events(self) -> list[str]:
        """The reasons dhclient has called its script with so far: PREINIT, BOUND, RENEW..."""
        path = self.dir / "events"
        return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []

    def wait_renewals(self, count: int = 1, timeout: float = 60) -> None:
        """Wait until dhclient has renewed its lease `count` times in all."""
        wait_for(lambda: self.events().count("RENEW") >= count,
                 f"{self.ns.name} to renew {count}x", timeout)

    def release(self) -> None:
        """Stop the background dhclient and send DHCPRELEASE."""
        self._dhclient("-r", "-v")

    def vanish(self) -> None:
        """Kill the background dhclient: the client leaves without a word, keeping its lease.

        `dhclient -x` is no use here: the stopping instance itself sends an INIT-REBOOT REQUEST.
        """
        os.kill(int((self.dir / "pid").read_text()), signal.SIGKILL)


class Capture:
    """dumpcap on interfaces of one namespace; pcap for one interface, pcapng for several."""

    def __init__(self, ns: Namespace, interfaces: Sequence[str], path: Path, log: Path,
                 capture_filter: str = DHCP_FILTER) -> None:
        if path.suffix != (".pcap" if len(interfaces) == 1 else ".pcapng"):
            raise LabError(f"{path.name}: use .pcap for one interface, .pcapng for several")
        self.path = path
        path.unlink(missing_ok=True)
        # A filter before the first -i applies to every interface.
        argv = [tool("dumpcap"), "-q", "-f", capture_filter]
        for iface in interfaces:
            argv += ["-i", iface]
        argv += ["-P"] if len(interfaces) == 1 else []
        self.daemon = Daemon(ns, [*argv, "-w", str(path)], log)
        self.daemon.wait_output(r"Capturing on")

    def stop(self, settle: float = 0.5) -> Path:
        """Let in-flight packets arrive, then stop dumpcap cleanly; returns the file."""
        time.sleep(settle)
        code = self.daemon.stop(signal.SIGINT)
        if code != 0 or not self.path.exists():
            raise LabError(f"dumpcap exited {code}: {self.daemon.output()}")
        self.path.chmod(0o644)  # dumpcap creates it private; recordings are for everyone
        return self.path


class Lab:
    """The whole topology; use as a context manager so everything is removed even on failure."""

    def __init__(self, relayed_clients: int = 1, *, valid_lifetime: int = 3600,
                 renew_timer: int | None = None, rebind_timer: int | None = None,
                 scenario: int = 0, server: str = "kea") -> None:
        if not 0 <= scenario <= 9:
            raise LabError(f"scenario {scenario}: 0 to 9 (each moves the pools by 10 addresses)")
        if server not in SERVERS:
            raise LabError(f"server {server!r}: one of {', '.join(SERVERS)}")
        self.server = server
        self.tag = f"hive{secrets.token_hex(3)}"
        self.scenario = scenario
        self.relayed_clients = relayed_clients
        self.timers = Timers(valid_lifetime, renew_timer, rebind_timer)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.tag}-"))
        self.namespaces: dict[str, Namespace] = {}  # by role: "sw", "srv", "relay", "cli1"...
        self.daemons: list[Daemon] = []
        self.clients: list[Client] = []
        self.ports = 0
        self.control_socket = self.workdir / "kea.sock"
        self.lease_file = self.workdir / f"{server}.leases"  # dhcpd's or dnsmasq's

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Self:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Kill every process in the lab's namespaces, delete them, remove the temp dir."""
        for daemon in self.daemons:
            daemon.stop()
        for ns in self.namespaces.values():
            # Also catches daemonized dhclients, which are not our children.
            pids = subprocess.run(["ip", "netns", "pids", ns.name], capture_output=True,
                                  text=True, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", ns.name], capture_output=True, check=False)
        self.namespaces.clear()
        self.daemons.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def namespace_names(self) -> list[str]:
        return [ns.name for ns in self.namespaces.values()]

    # -- building --------------------------------------------------------------------------

    def _namespace(self, role: str) -> Namespace:
        ns = Namespace(f"{self.tag}-{role}")
        run(["ip", "netns", "add", ns.name])
        self.namespaces[role] = ns
        ns.ip("link", "set", "lo", "up")
        return ns

    def _plug(self, ns: Namespace, iface: str, bridge: str, mac: str,
              address: str | None = None) -> None:
        """A veth from `iface` in `ns` to a port of `bridge` in the switch namespace."""
        self.ports += 1
        port = f"{bridge}p{self.ports}"
        self.switch.ip("link", "add", port, "type", "veth", "peer", "name", iface,
                       "netns", ns.name)
        self.switch.ip("link", "set", port, "master", bridge, "up")
        ns.ip("link", "set", iface, "address", mac, "up")
        if address is not None:
            ns.ip("addr", "add", address, "dev", iface)

    def _build(self) -> None:
        self.switch = self._namespace("sw")
        for bridge in ("br0", "br1"):
            self.switch.ip("link", "add", bridge, "type", "bridge")
            self.switch.ip("link", "set", bridge, "up")

        self.srv = self._namespace("srv")
        self._plug(self.srv, "eth0", "br0", "02:00:00:00:ff:01", f"{SERVER_IP}/24")
        self.srv.ip("route", "add", CLIENT_NET, "via", RELAY_UP_IP)

        self.relay = self._namespace("relay")
        self._plug(self.relay, "up0", "br0", "02:00:00:00:ff:02", f"{RELAY_UP_IP}/24")
        self._plug(self.relay, "down0", "br1", "02:00:00:00:ff:03", f"{RELAY_DOWN_IP}/24")
        run(self.relay.cmd("sysctl", "-qw", "net.ipv4.ip_forward=1"))

        local = self._namespace("local")
        local_mac = client_mac(self.scenario, 0, 0x0a)
        self._plug(local, "eth0", "br0", local_mac)
        self.local = Client(local, self.workdir, local_mac, "local")
        for n in range(1, self.relayed_clients + 1):
            ns = self._namespace(f"cli{n}")
            mac = client_mac(self.scenario, 1, n)
            self._plug(ns, "eth0", "br1", mac)
            self.clients.append(Client(ns, self.workdir, mac, f"cli{n}"))

        {"kea": self._start_kea, "dhcpd": self._start_dhcpd,
         "dnsmasq": self._start_dnsmasq}[self.server]()
        self._start_relay()

    def _kea_config(self) -> dict[str, object]:
        timers = {name: value for name, value in (("valid-lifetime", self.timers.valid),
                                                  ("renew-timer", self.timers.renew),
                                                  ("rebind-timer", self.timers.rebind))
                  if value is not None}
        first = 100 + 10 * self.scenario
        return {"Dhcp4": {
            "interfaces-config": {"interfaces": ["eth0"]},
            "control-socket": {"socket-type": "unix", "socket-name": str(self.control_socket)},
            "lease-database": {"type": "memfile", "persist": True, "lfc-interval": 0,
                               "name": str(self.workdir / "leases4.csv")},
            "hooks-libraries": [
                {"library": str(lease_cmds_hook(tool("kea-dhcp4")))}],
            **timers,
            "subnet4": [
                {"id": 1, "subnet": SERVER_NET,
                 "pools": [{"pool": f"192.0.2.{first} - 192.0.2.199"}]},
                {"id": 2, "subnet": CLIENT_NET,
                 "pools": [{"pool": f"198.51.100.{first} - 198.51.100.199"}],
                 "option-data": [{"name": "routers", "data": RELAY_DOWN_IP}]},
            ],
            "loggers": [{"name": "kea-dhcp4", "severity": "INFO",
                         "output_options": [{"output": "stdout"}]}],
        }}

    def _start_kea(self) -> None:
        config = self.workdir / "kea-dhcp4.json"
        config.write_text(json.dumps(self._kea_config(), indent=2))
        # Kea writes its pid file and logger lock under /run unless told otherwise; newer Kea
        # (2.6.3+) also confines the socket and lease file to directories named like this.
        env = {name: str(self.workdir) for name in (
            "KEA_PIDFILE_DIR", "KEA_LOCKFILE_DIR", "KEA_CONTROL_SOCKET_DIR", "KEA_DHCP_DATA_DIR")}
        kea = Daemon(self.srv, [tool("kea-dhcp4"), "-c", str(config)],
                     self.workdir / "kea.log", env)
        self.daemons.append(kea)
        kea.wait_output(r"DHCP4_STARTED")
        self.kea_command("version-get")

    def _server_args(self) -> tuple[str, str, str, int, Timers]:
        """What dhcpd's and dnsmasq's configurations are made of: the same pools as Kea's."""
        return SERVER_NET, CLIENT_NET, RELAY_DOWN_IP, 100 + 10 * self.scenario, self.timers

    def _start_dhcpd(self) -> None:
        config = self.workdir / "dhcpd.conf"
        config.write_text(dhcpd_config(*self._server_args()))
        self.lease_file.touch()  # dhcpd refuses to start without one
        dhcpd = Daemon(self.srv, [tool("dhcpd"), "-4", "-f", "-d", "-cf", str(config),
                                  "-lf", str(self.lease_file),
                                  "-pf", str(self.workdir / "dhcpd.pid"), "eth0"],
                       self.workdir / "dhcpd.log")
        self.daemons.append(dhcpd)
        dhcpd.wait_output(r"Server starting service")

    def _start_dnsmasq(self) -> None:
        try:
            args = dnsmasq_args(*self._server_args())
        except ValueError as exc:
            raise LabError(str(exc)) from exc
        # As root it would switch to the user "dnsmasq", who cannot write in the lab's directory.
        dnsmasq = Daemon(self.srv, [tool("dnsmasq"), "--keep-in-foreground", "--user=root",
                                    "--interface=eth0", "--bind-interfaces",
                                    f"--pid-file={self.workdir / 'dnsmasq.pid'}",
                                    f"--dhcp-leasefile={self.lease_file}", *args],
                         self.workdir / "dnsmasq.log")
        self.daemons.append(dnsmasq)
        dnsmasq.wait_output(r"DHCP, IP range 198\.51\.100\.")

    def _start_relay(self, host: Namespace | None = None) -> None:
        """dhcrelay on a relay host (the lab's own by default): up0 towards the server, down0
        towards the clients."""
        host = host or self.relay
        relay = Daemon(host, [tool("dhcrelay"), "-d", "-4", "-pf",
                              str(self.workdir / f"dhcrelay-{host.name}.pid"),
                              "-iu", "up0", "-id", "down0", SERVER_IP],
                       self.workdir / f"dhcrelay-{host.name}.log")
        self.daemons.append(relay)
        relay.wait_output(r"Sending on\s+Socket/fallback")

    # -- operations ------------------------------------------------------------------------

    def kea_command(self, command: str, arguments: dict[str, object] | None = None
                    ) -> dict[str, object]:
        """One command through Kea's unix control socket; the response when result is 0 or 3."""
        request: dict[str, object] = {"command": command}
        if arguments is not None:
            request["arguments"] = arguments
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(self.control_socket))
            sock.sendall(json.dumps(request).encode())
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        response: dict[str, object] = json.loads(b"".join(chunks))
        if response.get("result") not in (0, 3):  # 3: empty, e.g. no leases yet
            raise LabError(f"kea {command}: {response}")
        return response

    def leases(self) -> list[dict[str, object]]:
        """Kea's current leases (lease4-get-all via the lease_cmds hook)."""
        arguments = self.kea_command("lease4-get-all").get("arguments") or {}
        assert isinstance(arguments, dict)
        leases: list[dict[str, object]] = arguments.get("leases", [])
        return leases

    def active_leases(self) -> dict[str, Lease]:
        """The server's current leases by IP, whichever server it is: Kea's that are in the
        default state and not over, dhcpd's and dnsmasq's from their lease files."""
        now = time.time()
        if self.server == "kea":
            leases = {str(lease["ip-address"]): kea_lease(lease) for lease in self.leases()
                      if lease["state"] == 0}
        else:
            read = dhcpd_leases if self.server == "dhcpd" else dnsmasq_leases
            leases = read(self.lease_file)
        return {ip: lease for ip, lease in leases.items() if lease.expires > now}

    def perfdhcp(self, clients: int, *, rate: int = 50, seed: int = 1) -> str:
        """DORAs of `clients` simulated clients (perfdhcp) through the relay host; its report.

        perfdhcp plays a relay agent (for DHCPv4 it needs an address): it sits on the client
        segment at PERF_IP and sends its requests, giaddr set, to dhcrelay, which relays them
        on to Kea (a chain of two relays); Kea answers to PERF_IP, routed back through the
        relay host. A capture there sees every message on both legs, once each. MACs count up
        from client_mac(scenario, 2, 0) (PERF_MAC in scenario 0); `seed` makes the xids
        repeatable.
        """
        ns = self.namespaces.get("perf") or self._perf_namespace()
        argv = ns.cmd(tool("perfdhcp"), "-4", "-l", PERF_IP, "-r", str(rate), "-R", str(clients),
                      "-n", str(clients), "-s", str(seed),
                      "-b", f"mac={client_mac(self.scenario, 2, 0)}",
                      "-W", "1000000", RELAY_DOWN_IP)  # waits 1 s for the last exchanges
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode not in (0, 3):  # 3: some exchanges did not complete
            raise LabError(f"perfdhcp exited {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    def _perf_namespace(self) -> Namespace:
        ns = self._namespace("perf")
        self._plug(ns, "eth0", "br1", client_mac(self.scenario, 2, 0xff), f"{PERF_IP}/24")
        return ns

    def capture(self, where: str, interfaces: Sequence[str], path: Path) -> Capture:
        """Start dumpcap in the namespace of role `where` ("srv", "relay", "local", "cliN")."""
        if where not in self.namespaces:
            raise LabError(f"no namespace {where!r}; the lab has {', '.join(self.namespaces)}")
        ns = self.namespaces[where]
        log = self.workdir / f"dumpcap-{path.name}.log"
        capture = Capture(ns, interfaces, path, log)
        self.daemons.append(capture.daemon)
        return capture


MESSAGE_TYPES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK",
                 7: "RELEASE", 8: "INFORM"}


@dataclass(frozen=True)
class Summary:
    """What a capture holds, in the words of pcaps/README.md's table."""

    messages: str  # "DISCOVER x2, OFFER, ACK* x3": types by first appearance; * = ciaddr set
    xids: int  # distinct transaction ids
    relayed: int  # messages with a non-zero giaddr
    leased: str  # the ACKs' yiaddr values, sorted, comma-separated
    hostnames: str  # option 12 values, sorted, comma-separated


def summarize(path: Path) -> Summary:
    """Read a capture with tshark and summarize its DHCP messages.

    Counts rather than a sequence, in timestamp order: a multi-interface pcapng is written in
    per-interface blocks, and the order of near-simultaneous copies is a race.
    """
    fields = ["frame.time_epoch", "dhcp.option.dhcp", "dhcp.id", "dhcp.ip.client",
              "dhcp.ip.relay", "dhcp.ip.your", "dhcp.option.hostname"]
    argv = [tool("tshark"), "-n", "-r", str(path), "-Y", "dhcp", "-T", "fields"]
    for field in fields:
        argv += ["-e", field]
    rows = sorted((line.split("\t") for line in run(argv).splitlines()),
                  key=lambda row: Decimal(row[0]))
    kinds: Counter[str] = Counter()
    xids: set[str] = set()
    leased: set[str] = set()
    hostnames: set[str] = set()
    relayed = 0
    for _, kind, xid, ciaddr, giaddr, yiaddr, hostname in rows:
        name = MESSAGE_TYPES[int(kind)]
        kinds[name + ("*" if ciaddr != "0.0.0.0" else "")] += 1
        xids.add(xid)
        relayed += giaddr != "0.0.0.0"
        if name == "ACK":
            leased.add(yiaddr)
        if hostname:
            hostnames.add(hostname)
    messages = ", ".join(kind if n == 1 else f"{kind} x{n}" for kind, n in kinds.items())
    return Summary(messages, len(xids), relayed, ",".join(sorted(leased)),
                   ",".join(sorted(hostnames)))


# ---- helpers for live sniffing tests ---------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent
# Sends raw frames given as hex, one batch per line of stdin, answering "sent" after each; it
# binds for each batch, so an interface that was deleted and created again is found anew.
SENDER = """
import socket, sys, time
for line in sys.stdin:
    iface, gap, frames = line.split()
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((iface, 0))
        for frame in frames.split(","):
            sock.send(bytes.fromhex(frame))
            time.sleep(float(gap))
    print("sent", flush=True)
"""


class RedisServer:
    """A scratch redis-server listening on a unix socket only. A socket path is reachable from
    every network namespace, where 127.0.0.1 would be each namespace's own.

    `persistent`: an append-only file synced at every write, so that a server killed (SIGKILL)
    and started again has every write it acknowledged, as a production Redis would have."""

    def __init__(self, *, persistent: bool = False) -> None:
        self.persistent = persistent
        self.dir = Path(tempfile.mkdtemp(prefix="hive-sniff-redis-"))
        self.dir.chmod(0o755)  # an unprivileged sniffer must reach the socket too
        self.socket = self.dir / "redis.sock"
        self.url = f"unix://{self.socket}"
        try:
            self.start()
        except BaseException:
            self.close()
            raise

    def start(self) -> None:
        """Start it (again, after stop() or kill(): on the same socket, empty unless
        persistent)."""
        persistence = (["--appendonly", "yes", "--appendfsync", "always"] if self.persistent
                       else ["--appendonly", "no"])
        self.proc = subprocess.Popen(
            [tool("redis-server"), "--port", "0", "--unixsocket", str(self.socket),
             "--unixsocketperm", "777", "--save", "", *persistence, "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._answers, "redis-server to listen", timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.resume()  # a paused server would not act on SIGTERM
            self.proc.terminate()
            self.proc.wait(10)

    def kill(self) -> None:
        """Kill it as a crash would (SIGKILL): no shutdown, no last save."""
        self.proc.kill()
        self.proc.wait(10)

    def pause(self) -> None:
        """Freeze it (SIGSTOP): connections stay open and commands get no answer, as from a
        hung server."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise LabError(f"redis-server exited {self.proc.returncode}")
        with socket.socket(socket.AF_UNIX) as sock:
            try:
                sock.connect(str(self.socket))
            except OSError:
                return False
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def close(self) -> None:
        if hasattr(self, "proc"):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class FrameSender:
    """Sends Ethernet frames out of interfaces of one namespace, through one helper process;
    send() returns once the frames are out."""

    def __init__(self, ns: Namespace) -> None:
        self.proc = subprocess.Popen(ns.cmd(sys.executable, "-c", SENDER), text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def send(self, iface: str, frames: Sequence[bytes], gap: float = 0.0) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{iface} {gap} {','.join(f.hex() for f in frames)}\n")
        self.proc.stdin.flush()
        if self.proc.stdout.readline().strip() != "sent":
            raise LabError(f"sending on {iface} failed (sender exited {self.proc.poll()})")

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def sniff_daemon(ns: Namespace, args: Sequence[str], log: Path, *, prefix: Sequence[str] = (),
            env: dict[str, str] | None = None) -> Daemon:
    """`dhcp-hive-mind sniff ARGS` in a namespace (after `prefix`, such as a setpriv), from this
    checkout; stdout and stderr go to `log`."""
    argv = [*prefix, sys.executable, "-m", "sniffer", "sniff", *args]
    return Daemon(ns, argv, log, {"PYTHONPATH": str(REPO), **(env or {})})


def sniff_relay(ns: Namespace, redis_url: str, log: Path, *args: str,
                prefix: Sequence[str] = (), env: dict[str, str] | None = None) -> Daemon:
    """`sniff` on both legs of the lab's relay host (up0, down0), the lab's server allowed, once it
    captures on both; stopped if it never does. `prefix` and `env` as for sniff_daemon (a
    PYTHONPATH in `env` runs the sniffer of another checkout)."""
    daemon = sniff_daemon(ns, ["-i", "up0", "-i", "down0", "--redis-url", redis_url,
                               "--allow-server", SERVER_IP, *args], log, prefix=prefix, env=env)
    try:
        daemon.wait_output(r"capturing on up0[\s\S]*capturing on down0|"
                           r"capturing on down0[\s\S]*capturing on up0")
    except BaseException:
        daemon.stop(signal.SIGKILL)
        raise
    return daemon


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                # The command name in parentheses may hold spaces: split after it.
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
                if int(fields[1]) == pid:
                    found.append(int(entry.name))
    return found


def fetch(ns: Namespace, url: str) -> str:
    """GET a URL from inside a namespace (its 127.0.0.1 is not ours)."""
    code = ("import urllib.request; "
            f"print(urllib.request.urlopen({url!r}, timeout=10).read().decode())")
    return run(ns.cmd(sys.executable, "-c", code))
