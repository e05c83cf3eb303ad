"""A Redis reached over TLS (rediss://, with a CA, a client certificate and key) as an ACL user
whose password comes from a file or the environment, never the command line; and the password
never shows: not in error messages, logs, the process title, nor the capture tools' environment.
The README's least-privilege users, as written there: a sniffer's writes only its keys, a
reader's only reads, and a user without a right it needs refused at start.

A real redis-server with TLS (certificates made here with openssl) and an ACL user, the default
user disabled; the commands run as a user runs them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import redis
from conftest import free_port, require_root, require_tool
from helpers import REPO, run_cli
from lab import Daemon, children, sniff_daemon, wait_for
from redis_cluster import RedisCluster
from specharness import S1, S2, Capture, ack
from test_sniff import LIVE_CAPTURE, Link, request_ack

from sniffer.keys import Keys
from sniffer.permissions import writing_commands
from sniffer.store import LeaseStore
from sniffer.view.feed import Feed
from sniffer.view.model import ViewModel

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


# ---- least privilege: the README's ACL users ------------------------------------------------

def readme_block(marker: str) -> list[str]:
    """The lines of the README's fenced block that holds `marker`."""
    blocks = (REPO / "README.md").read_text().split("```")[1::2]
    found = [block for block in blocks if marker in block]
    assert len(found) == 1, marker
    return [line.strip() for line in found[0].strip().splitlines()]


def readme_password(user: str) -> str:
    line = next(line for line in readme_block("user hive-sniffer on") if f"user {user} " in line)
    return re.search(r" >(\S+)", line).group(1)  # type: ignore[union-attr]


class AclRedis:
    """redis-server with the ACL users of `acl_lines` (an ACL file), reached as `admin`."""

    def __init__(self, directory: Path, acl_lines: Sequence[str]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "users.acl").write_text("\n".join(acl_lines) + "\n")
        self.port = free_port()
        conf = directory / "redis.conf"
        conf.write_text("\n".join([
            f"port {self.port}", "bind 127.0.0.1", 'save ""', "appendonly no",
            f"dir {directory}", f"aclfile {directory / 'users.acl'}", ""]))
        self.log = directory / "redis.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([require_tool("redis-server"), str(conf)], stdout=out,
                                         stderr=subprocess.STDOUT)
        wait_for(self._ready, "redis-server with an ACL file to start", timeout=15)

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"redis-server exited: {self.log.read_text()}")
        return "Ready to accept connections" in self.log.read_text()

    def url(self, user: str) -> str:
        return f"redis://{user}@127.0.0.1:{self.port}/0"

    def client(self, user: str = "admin", password: str = "admin-password") -> redis.Redis:
        return redis.Redis(port=self.port, username=user, password=password,
                           decode_responses=True)

    def cli(self, user: str, *args: str) -> subprocess.CompletedProcess[str]:
        return cli(*args, "--redis-url", self.url(user),
                   env={"REDIS_PASSWORD": readme_password(user)})

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture(params=["aclfile", "ACL SETUSER"])
def acl_redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AclRedis]:
    """The README's ACL file as written; or its ACL SETUSER lines typed at redis-cli's prompt
    (a server with an admin user only, whose other users are then made so)."""
    acl_file = readme_block("user hive-sniffer on")
    if request.param == "aclfile":
        server = AclRedis(tmp_path / "redis", acl_file)
    else:
        server = AclRedis(tmp_path / "redis", acl_file[:2])  # default off, admin
        typed = subprocess.run(
            [require_tool("redis-cli"), "-p", str(server.port), "--user", "admin", "--pass",
             "admin-password", "--no-auth-warning"],
            input="\n".join(readme_block("ACL SETUSER hive-sniffer reset")) + "\n",
            capture_output=True, text=True, check=True)
        assert typed.stdout.split() == ["OK", "OK"], typed.stdout + typed.stderr
    yield server
    server.close()


@pytest.fixture
def traffic(tmp_path: Path) -> Path:
    """A lease from the allowed server S1 and a reply from the rogue S2."""
    return (Capture().add(0, ack(0x42, "192.0.2.42", lease=600), src=S1)
            .add(1, ack(0x43, "192.0.2.43", b"\x02\0\0\0\0\x0b", lease=600, server=S2),
                 src=S2)
            .write(tmp_path / "two.pcap"))


def lua_commands() -> set[str]:
    """Every command the Lua scripts call: they run under the caller's ACL too."""
    return {name.upper() for path in (REPO / "sniffer" / "lua").glob("*.lua")
            for name in re.findall(r"call\('([A-Za-z_|]+)'", path.read_text())}


def test_readme_users_sniffer_writes_and_reader_reads(acl_redis: AclRedis, traffic: Path,
                                                      tmp_path: Path) -> None:
    for _ in range(2):  # the second restores the first's leases, reading them back
        wrote = acl_redis.cli("hive-sniffer", "replay", str(traffic), "--allow-server", S1)
        assert wrote.returncode == 0, wrote.stderr
    admin = acl_redis.client()
    assert admin.hgetall("192.0.2.42") == {"mac": "02:00:00:00:00:0a"}
    assert admin.hgetall(f"{NS}:rogue-servers") == {S2: "2"}
    # The reader: every read command, and the view's feed.
    listed = acl_redis.cli("hive-reader", "leases", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [lease["ip"] for lease in json.loads(listed.stdout)] == ["192.0.2.42"]
    by_mac = acl_redis.cli("hive-reader", "leases", "--mac", "02:00:00:00:00:0a")
    assert by_mac.returncode == 0 and "192.0.2.42" in by_mac.stdout, by_mac.stderr
    for target, shown_text in (("192.0.2.42", "granted"), ("02:00:00:00:00:0a", "192.0.2.42")):
        history = acl_redis.cli("hive-reader", "history", target)
        assert history.returncode == 0 and shown_text in history.stdout, history.stderr
    shown = acl_redis.cli("hive-reader", "config", "show", "leases")
    assert shown.returncode == 0 and "hive-reader" in shown.stdout, shown.stderr
    reader = LeaseStore(acl_redis.client("hive-reader", readme_password("hive-reader")), Keys(),
                        capture_clock=True)
    model = ViewModel()
    feed = Feed(reader, model, reconcile=0)
    for _ in range(3):
        feed.step()
    assert list(model.rows) == ["192.0.2.42"]
    assert reader.rogue_servers() == {S2: 2}
    # A stale index entry is left as it was: the reader may not tidy it, and need not.
    admin.zadd(f"{NS}:expiry", {"192.0.2.99": 1})
    again = acl_redis.cli("hive-reader", "leases", "--json")
    assert again.returncode == 0, again.stderr
    assert admin.zscore(f"{NS}:expiry", "192.0.2.99") == 1
    # Its attempt to write: refused at start, one line naming the missing right, nothing written.
    refused = acl_redis.cli("hive-reader", "replay", str(traffic), "--allow-server", S1)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == (
        "dhcp-hive-mind: error: the Redis user may not write as a sniffer does: this user has "
        "no permissions to run the 'evalsha' command (the README's Least privilege part lists "
        "what a sniffer's user needs)")
    assert "Traceback" not in refused.stderr
    # Nor through a script: it may run only read-only ones, whose writes are refused.
    deleting = "return redis.call('DEL', KEYS[1])"
    with pytest.raises(redis.exceptions.NoPermissionError, match="'eval' command"):
        reader.client.eval(deleting, 1, "192.0.2.42")
    with pytest.raises(redis.exceptions.ResponseError, match="can't run this command"):
        reader.client.eval_ro(deleting, 1, "192.0.2.42")
    assert admin.exists("192.0.2.42") == 1
    reader.close()
    # The sniffer's user may run every command the sniffer sends, its scripts' included.
    assert lua_commands() <= {words[0] for words in writing_commands(Keys(), "w")}
    for words in writing_commands(Keys(), "w"):
        assert admin.execute_command("ACL", "DRYRUN", "hive-sniffer", *words) == "OK", words
    assert admin.execute_command("ACL", "DRYRUN", "hive-sniffer", "FLUSHALL") != "OK"
    admin.close()


def without(line: str, word: str, instead: str = "") -> str:
    assert f" {word} " in f"{line} "
    return f"{line} ".replace(f" {word} ", f" {instead} " if instead else " ").strip()


def test_a_sniffer_user_without_a_right_it_needs_is_refused_at_start(tmp_path: Path,
                                                                     traffic: Path) -> None:
    """One line naming the command and key refused, exit 1, nothing written; `--key-prefix`
    takes the prefixed pattern the README gives."""
    lines = readme_block("user hive-sniffer on")
    sniffer = next(line for line in lines if line.startswith("user hive-sniffer "))
    seeds = "~[0-9]*.[0-9]*.[0-9]*.[0-9]*"
    server = AclRedis(tmp_path / "redis", [
        *lines, without(sniffer.replace("hive-sniffer", "no-hincrby"), "+hincrby"),
        without(sniffer.replace("hive-sniffer", "prefixed"), seeds,
                "~leases:[0-9]*.[0-9]*.[0-9]*.[0-9]*")])
    try:
        def replay(user: str, *extra: str) -> subprocess.CompletedProcess[str]:
            return cli("replay", str(traffic), "--allow-server", S1, *extra, "--redis-url",
                       server.url(user), env={"REDIS_PASSWORD": readme_password("hive-sniffer")})

        cases = {
            ("no-hincrby",): f"its ACL refuses HINCRBY {NS}:rogue-servers",
            ("hive-sniffer", "--key-prefix", "leases:"): "its ACL refuses DEL leases:192.0.2.1",
            ("prefixed",): "its ACL refuses DEL 192.0.2.1"}
        for (user, *extra), refusal in cases.items():
            done = replay(user, *extra)
            assert done.returncode == 1, (user, done.stderr)
            assert done.stderr.strip().splitlines()[-1] == (
                "dhcp-hive-mind: error: the Redis user may not write as a sniffer does: "
                f"{refusal} (the README's Least privilege part lists what a sniffer's user "
                "needs)"), user
        admin = server.client()
        assert admin.dbsize() == 0
        done = replay("prefixed", "--key-prefix", "leases:")
        assert done.returncode == 0, done.stderr
        assert admin.hgetall("leases:192.0.2.42") == {"mac": "02:00:00:00:00:0a"}
        admin.close()
    finally:
        server.close()


def test_readme_users_on_a_cluster(cluster: RedisCluster, traffic: Path) -> None:
    """The README's ACL SETUSER lines and its cluster addition, typed on every node."""
    lines = [*readme_block("ACL SETUSER hive-sniffer reset"),
             *readme_block("ACL SETUSER hive-sniffer +info")]
    for port in cluster.ports:
        with redis.Redis(port=port) as node:
            for line in lines:
                node.execute_command(*line.split())
    try:
        def run(user: str, *args: str) -> subprocess.CompletedProcess[str]:
            return cli(*args, "--redis-url", f"redis://{user}@127.0.0.1:{cluster.ports[0]}",
                       env={"REDIS_PASSWORD": readme_password(user)})

        for _ in range(2):
            wrote = run("hive-sniffer", "replay", str(traffic), "--allow-server", S1)
            assert wrote.returncode == 0, wrote.stderr
        with cluster.client() as admin:
            assert admin.hgetall("192.0.2.42") == {"mac": "02:00:00:00:00:0a"}
        listed = run("hive-reader", "leases", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [lease["ip"] for lease in json.loads(listed.stdout)] == ["192.0.2.42"]
        history = run("hive-reader", "history", "192.0.2.42")
        assert history.returncode == 0 and "granted" in history.stdout, history.stderr
        refused = run("hive-reader", "replay", str(traffic), "--allow-server", S1)
        assert refused.returncode == 1
        assert "may not write as a sniffer does: this user has no permissions to run the " \
            "'evalsha' command" in refused.stderr.strip().splitlines()[-1]
    finally:
        for port in cluster.ports:
            with redis.Redis(port=port) as node:
                node.execute_command("ACL", "DELUSER", "hive-sniffer", "hive-reader")
