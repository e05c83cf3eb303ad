"""A Redis reached over TLS (rediss://, with a CA, a client certificate and key) as an ACL user
whose password comes from a file or the environment, never the command line; and the password
never shows: not in error messages, logs, the process title, nor the capture tools' environment.

A real redis-server with TLS (certificates made here with openssl) and an ACL user, the default
user disabled; the commands run as a user runs them.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import redis
from conftest import free_port, require_root, require_tool
from helpers import run_cli
from lab import Daemon, children, sniff_daemon, wait_for
from specharness import S1, Capture, ack
from test_sniff import LIVE_CAPTURE, Link, request_ack

USER, PASSWORD = "hive", "Zq8-hunter2-vX"
NS = "dhcp-hive-mind"


# ---- a TLS Redis with an ACL user ------------------------------------------------------------

def openssl(*args: str, cwd: Path) -> None:
    subprocess.run([require_tool("openssl"), *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(directory: Path, ca: str = "ca") -> None:
    """<ca>.crt, and server.crt/key (for 127.0.0.1) and client.crt/key signed by it."""
    directory.mkdir(parents=True, exist_ok=True)
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *curve, "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "2",
            "-subj", f"/CN=hive test {ca}", cwd=directory)
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        openssl("req", *curve, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}", cwd=directory)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", "san.ext",
                cwd=directory)


class TlsRedis:
    """redis-server on 127.0.0.1 with TLS only, the default user off and USER with PASSWORD;
    `clients_need_certificates`: tls-auth-clients. `wrap` puts its command in a namespace."""

    def __init__(self, directory: Path, *, clients_need_certificates: bool,
                 wrap: Callable[[list[str]], list[str]] = list) -> None:
        self.dir = directory
        self.certs = directory / "certs"
        make_certificates(self.certs)
        self.port = free_port()
        self.url = f"rediss://{USER}@127.0.0.1:{self.port}/0"
        conf = directory / "redis.conf"
        conf.write_text("\n".join([
            "port 0", f"tls-port {self.port}", "bind 127.0.0.1", 'save ""', "appendonly no",
            f"dir {directory}", f"tls-cert-file {self.certs / 'server.crt'}",
            f"tls-key-file {self.certs / 'server.key'}",
            f"tls-ca-cert-file {self.certs / 'ca.crt'}",
            f"tls-auth-clients {'yes' if clients_need_certificates else 'no'}",
            "user default off", f"user {USER} on >{PASSWORD} ~* &* +@all", ""]))
        self.log = directory / "redis.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(wrap([require_tool("redis-server"), str(conf)]),
                                         stdout=out, stderr=subprocess.STDOUT)
        wait_for(self._ready, "redis-server with TLS to start", timeout=15)

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"redis-server exited: {self.log.read_text()}")
        return "Ready to accept connections" in self.log.read_text()

    def files(self) -> list[str]:
        """The TLS options of the CLI for this server."""
        return ["--redis-ca", str(self.certs / "ca.crt"), "--redis-cert",
                str(self.certs / "client.crt"), "--redis-key", str(self.certs / "client.key")]

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, ssl=True, username=USER,
                           password=PASSWORD, ssl_ca_certs=str(self.certs / "ca.crt"),
                           ssl_certfile=str(self.certs / "client.crt"),
                           ssl_keyfile=str(self.certs / "client.key"), decode_responses=True)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[TlsRedis]:
    require_tool("redis-server")
    server = TlsRedis(tmp_path / "redis", clients_need_certificates=True)
    yield server
    server.close()


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "redis-password"
    path.write_text(PASSWORD + "\n")
    path.chmod(0o600)
    return path


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The command without any REDIS_* variable of this environment: only what a test gives."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_")}
    return run_cli(*args, base_env=environment, env=env)


@pytest.fixture
def pcap(tmp_path: Path) -> Path:
    return Capture().add(0, ack(0x42, "192.0.2.42", lease=600), src=S1).write(
        tmp_path / "one.pcap")


# ---- working -------------------------------------------------------------------------------

def test_tls_with_a_client_certificate_and_an_acl_user(tls_redis: TlsRedis, password_file: Path,
                                                        pcap: Path) -> None:
    done = cli("replay", str(pcap), "--redis-url", tls_redis.url, "--redis-password-file",
               str(password_file), *tls_redis.files(), "--allow-server", S1)
    assert done.returncode == 0, done.stderr
    client = tls_redis.client()
    assert client.hgetall("192.0.2.42") == {"mac": "02:00:00:00:00:0a"}
    client.close()
    # Everything from the environment instead: REDIS_PASSWORD and the REDIS_TLS_* files.
    certs = tls_redis.certs
    listed = cli("leases", "--json", env={
        "REDIS_URL": tls_redis.url, "REDIS_PASSWORD": PASSWORD,
        "REDIS_TLS_CA": str(certs / "ca.crt"), "REDIS_TLS_CERT": str(certs / "client.crt"),
        "REDIS_TLS_KEY": str(certs / "client.key")})
    assert listed.returncode == 0, listed.stderr
    assert '"ip": "192.0.2.42"' in listed.stdout
    assert PASSWORD not in listed.stdout + listed.stderr


# ---- failing, in one line, without the password ----------------------------------------------

def other_ca(tmp_path: Path) -> list[str]:
    make_certificates(tmp_path / "other", ca="other")
    return ["--redis-ca", str(tmp_path / "other" / "other.crt")]


FAILURES: dict[str, tuple[Callable[[TlsRedis, Path, Path], list[str]], str]] = {
    "an unknown CA": (
        lambda r, pw, tmp: [r.url, "--redis-password-file", str(pw), *other_ca(tmp)],
        r"Redis at rediss://hive@127\.0\.0\.1:\d+/0 unreachable: .*certificate verify failed"),
    "no client certificate": (
        lambda r, pw, tmp: [r.url, "--redis-password-file", str(pw), *r.files()[:2]],
        r"Redis at rediss://hive@127\.0\.0\.1:\d+/0 unreachable: "),
    "a wrong password, in the URL": (
        lambda r, pw, tmp: [r.url.replace("hive@", f"hive:{PASSWORD}x@"), *r.files()],
        r"Redis at rediss://hive:\*\*\*@127\.0\.0\.1:\d+/0 refused us: "
        r".*(WRONGPASS|invalid username-password)"),
    "no password": (
        lambda r, pw, tmp: [r.url, *r.files()],
        r"Redis at rediss://hive@127\.0\.0\.1:\d+/0 refused us: .*\(no password was given: "
        r"REDIS_PASSWORD or --redis-password-file\)"),
    "TLS files for redis://": (
        lambda r, pw, tmp: [r.url.replace("rediss:", "redis:"), *r.files()],
        r"TLS files are for a rediss:// or rediss\+sentinel:// URL, not redis://hive@127\.0\.0\.1:\d+/0"),
    "a password twice": (
        lambda r, pw, tmp: [r.url.replace("hive@", f"hive:{PASSWORD}@"), "--redis-password-file",
                            str(pw), *r.files()],
        r"Redis URL rediss://hive:\*\*\*@127\.0\.0\.1:\d+/0 holds a password, and another was "
        r"given apart"),
    "a certificate without its key": (
        lambda r, pw, tmp: [r.url, "--redis-password-file", str(pw), *r.files()[:4]],
        r"a Redis client certificate and its key go together"),
    "a missing CA file": (
        lambda r, pw, tmp: [r.url, "--redis-password-file", str(pw), "--redis-ca",
                            str(tmp / "nope.crt")],
        r"Redis TLS CA file \S+nope\.crt: No such file or directory"),
    "a missing password file": (
        lambda r, pw, tmp: [r.url, "--redis-password-file", str(tmp / "nope"), *r.files()],
        r"Redis password file \S+nope: No such file or directory"),
}


@pytest.mark.parametrize("case", FAILURES)
def test_connection_problems_are_one_line_without_the_password(
        tls_redis: TlsRedis, password_file: Path, tmp_path: Path, pcap: Path, case: str) -> None:
    arguments, expected = FAILURES[case]
    done = cli("replay", str(pcap), "--allow-server", S1, "--redis-url",
               *arguments(tls_redis, password_file, tmp_path))
    assert done.returncode == 1
    assert PASSWORD not in done.stdout + done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert re.fullmatch("dhcp-hive-mind: error: " + expected + ".*", error), error
    assert "Traceback" not in done.stderr


# ---- sniffing: process title, logs, the capture tools' environment --------------------------

def proc_text(pid: int, name: str) -> str:
    return Path(f"/proc/{pid}/{name}").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def sniffing(link: Link, args: Sequence[str], log: Path,
             env: dict[str, str] | None = None) -> Daemon:
    daemon = sniff_daemon(link.ns, ["-i", "v0", "--allow-server", S1, *args], log, env=env)
    daemon.wait_output(r"capturing on v0")
    return daemon


def test_sniff_never_shows_the_password(tmp_path: Path) -> None:
    """The password in --redis-url on the command line: warned about, masked in the process
    title, and absent from every log line while Redis goes away and the sniffer gives up.
    Given in REDIS_PASSWORD: tcpdump and tshark do not inherit it."""
    require_root(LIVE_CAPTURE)
    for name in ("tcpdump", "tshark", "redis-server", "openssl"):
        require_tool(name)
    link = Link()
    def in_namespace(argv: list[str]) -> list[str]:
        return link.ns.cmd(*argv)

    server = TlsRedis(tmp_path / "redis", clients_need_certificates=True, wrap=in_namespace)
    try:
        url = server.url.replace("hive@", f"hive:{PASSWORD}@")
        sniffer = sniffing(link, ["--redis-url", url, *server.files()], tmp_path / "one.log")
        try:
            title = proc_text(sniffer.proc.pid, "cmdline")
            assert PASSWORD not in title and "rediss://hive:***@127.0.0.1" in title
            server.close()  # Redis goes away: writes fail, are logged, and are lost at the stop
            link.send(request_ack(2))
            sniffer.wait_output(r"WARNING Redis write failed: .*; keeping \d+ writes")
            sniffer.proc.send_signal(signal.SIGTERM)
            assert sniffer.proc.wait(60) == 1
        finally:
            sniffer.stop(signal.SIGKILL)
        output = sniffer.output()
        assert "warning: a Redis password on the command line can be read by other users" \
            in output
        assert "lease writes were lost" in output
        assert PASSWORD not in output

        server = TlsRedis(tmp_path / "redis2", clients_need_certificates=True,
                          wrap=in_namespace)
        sniffer = sniffing(link, ["--redis-url", server.url, *server.files()],
                           tmp_path / "two.log", env={"REDIS_PASSWORD": PASSWORD})
        try:
            helpers = children(sniffer.proc.pid)
            assert len(helpers) == 2  # tcpdump and tshark
            for pid in [sniffer.proc.pid, *helpers]:
                assert PASSWORD not in proc_text(pid, "cmdline")
            for pid in helpers:
                assert PASSWORD not in proc_text(pid, "environ")
            assert sniffer.stop(signal.SIGTERM) == 0
        finally:
            sniffer.stop(signal.SIGKILL)
        assert PASSWORD not in sniffer.output() and "warning" not in sniffer.output()
    finally:
        server.close()
        link.close()
