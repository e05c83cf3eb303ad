"""The `dhcp-hive-mind` command as a user runs it: a real process, real tshark, real Redis."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from conftest import REPO, free_port, require_tool
from helpers import run_cli
from specharness import (
    ACK,
    DISCOVER,
    OFFER,
    REQUEST,
    S1,
    Capture,
    client_msg,
    o_host,
    o_lease,
    o_req,
    o_server,
    server_msg,
)

from sniffer import __version__

PCAPS = REPO / "pcaps"
CLIENTS = [bytes.fromhex(f"0200000010{n:02x}") for n in range(3)]


def three_leases(path: Path) -> Path:
    """Three DORA exchanges from S1: 192.0.2.10-12 with hostnames host-0..2."""
    capture = Capture()
    for n, chaddr in enumerate(CLIENTS):
        xid, ip, t = 0x7000 + n, f"192.0.2.{10 + n}", n * 1.0
        capture.add(t, client_msg(DISCOVER, xid, chaddr, o_host(f"host-{n}")))
        capture.add(t + 0.1, server_msg(OFFER, xid, chaddr, o_lease(3600), yi=ip), src=S1)
        capture.add(t + 0.2, client_msg(REQUEST, xid, chaddr, o_req(ip), o_server(S1),
                                        o_host(f"host-{n}")))
        capture.add(t + 0.3, server_msg(ACK, xid, chaddr, o_lease(3600), yi=ip), src=S1)
    return capture.write(path)


@pytest.fixture
def pcap(tmp_path: Path) -> Path:
    require_tool("tshark")
    return three_leases(tmp_path / "three.pcap")


def test_replay_in_a_pipe_prints_only_the_summary(pcap: Path, rclient: redis.Redis,
                                                  redis_url: str) -> None:
    result = run_cli("replay", str(pcap), "--redis-url", redis_url, "--allow-server", S1)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("1 file: 12 packets, 12 DHCP messages, 3 leases written, 0 deleted")
    assert result.stderr == ""  # an allow-list was given, so no warning; no progress bar
    assert rclient.hgetall("192.0.2.11") == {"mac": "02:00:00:00:10:01", "hostname": "host-1"}
    assert 3590 <= rclient.ttl("192.0.2.11") <= 3600  # the replay clock: TTL = lease time


def test_replay_warns_without_an_allow_list(pcap: Path, redis_url: str) -> None:
    result = run_cli("replay", str(pcap), "--redis-url", redis_url)
    assert result.returncode == 0
    assert "warning: no --allow-server given" in result.stderr


def test_replay_on_a_terminal_shows_a_progress_bar(pcap: Path, redis_url: str) -> None:
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "sniffer", "replay", str(pcap), "--redis-url", redis_url,
             "--allow-server", S1],
            stdout=subprocess.PIPE, stderr=secondary, stdin=subprocess.DEVNULL, timeout=120,
            env={**os.environ, "COLUMNS": "160", "TERM": "xterm"},
        )
        os.close(secondary)
        shown = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(primary)
    assert proc.returncode == 0
    text = shown.decode(errors="replace")
    assert "three.pcap" in text and "100%" in text and "packets" in text
    assert b"3 leases written" in proc.stdout


def test_replay_as_captured_uses_the_capture_clock(pcap: Path, redis_url: str,
                                                   rclient: redis.Redis) -> None:
    capture = Capture(t0=Capture().t0 - 600)  # ten minutes ago: 3000 s are left of 3600
    capture.add(0, server_msg(ACK, 0x7100, CLIENTS[0], o_lease(3600), yi="192.0.2.50"), src=S1)
    path = capture.write(pcap.parent / "old.pcap")
    assert run_cli("replay", str(path), "--redis-url", redis_url, "--as-captured").returncode == 0
    assert 2990 <= rclient.ttl("192.0.2.50") <= 3000


def test_missing_file_is_one_line_and_exit_1(redis_url: str, tmp_path: Path) -> None:
    result = run_cli("replay", str(tmp_path / "nope.pcap"), "--redis-url", redis_url)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"dhcp-hive-mind: error: {tmp_path / 'nope.pcap'}: no such file")
    assert "Traceback" not in result.stderr


def test_unreachable_redis_masks_the_password(pcap: Path) -> None:
    url = f"redis://hive:s3cret-pw@127.0.0.1:{free_port()}/0"
    result = run_cli("replay", str(pcap), "--redis-url", url, "--allow-server", S1)
    assert result.returncode == 1
    assert "s3cret-pw" not in result.stderr + result.stdout
    warning, line = result.stderr.strip().splitlines()
    assert warning.startswith("warning: a Redis password on the command line")
    assert line.startswith("dhcp-hive-mind: error: Redis at redis://hive:***@127.0.0.1:")
    assert "unreachable" in line


def test_redis_url_comes_from_the_environment(pcap: Path, redis_url: str,
                                              rclient: redis.Redis) -> None:
    result = run_cli("replay", str(pcap), env={"REDIS_URL": redis_url})
    assert result.returncode == 0, result.stderr
    assert "embedded" not in result.stderr
    assert rclient.exists("192.0.2.10") == 1


def test_bad_option_is_a_usage_error(pcap: Path, redis_url: str) -> None:
    result = run_cli("replay", str(pcap), "--redis-url", redis_url, "--allow-server", "not-an-ip")
    assert result.returncode == 2
    assert "'not-an-ip' is not an IPv4 address" in result.stderr
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(redis_url: str, tmp_path: Path) -> None:
    result = run_cli("--debug", "replay", str(tmp_path / "nope.pcap"), "--redis-url", redis_url)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "UsageProblem" in result.stderr


def test_leases_filters_and_json(pcap: Path, redis_url: str) -> None:
    replayed = run_cli("replay", str(pcap), "--redis-url", redis_url, "--allow-server", S1)
    assert replayed.returncode == 0

    every = json.loads(run_cli("leases", "--json", "--redis-url", redis_url).stdout)
    assert [lease["ip"] for lease in every] == ["192.0.2.10", "192.0.2.11", "192.0.2.12"]
    assert every[0]["hostname"] == "host-0" and every[0]["server"] == S1
    assert 3590 <= every[0]["ttl"] <= 3600

    by_mac = json.loads(run_cli("leases", "--json", "--mac", "02-00-00-00-10-02",
                                "--redis-url", redis_url).stdout)
    assert [lease["ip"] for lease in by_mac] == ["192.0.2.12"]
    by_name = json.loads(run_cli("leases", "--json", "--hostname", "HOST-1",
                                 "--redis-url", redis_url).stdout)
    assert [lease["ip"] for lease in by_name] == ["192.0.2.11"]
    by_ip = json.loads(run_cli("leases", "--json", "--ip", "192.0.2.10",
                               "--redis-url", redis_url).stdout)
    assert [lease["mac"] for lease in by_ip] == ["02:00:00:00:10:00"]

    table = run_cli("leases", "--redis-url", redis_url).stdout
    rows = [line for line in table.splitlines() if "192.0.2." in line]
    assert len(rows) == 3 and "host-2" in rows[2] and "02:00:00:00:10:02" in rows[2]


def test_embedded_store_is_found_again(pcap: Path, tmp_path: Path) -> None:
    env = {"XDG_STATE_HOME": str(tmp_path / "state"), "REDIS_URL": ""}
    env_without_url = {k: v for k, v in env.items() if k != "REDIS_URL"}
    clean = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    replayed = run_cli("replay", str(pcap), "--allow-server", S1, base_env=clean,
                       env=env_without_url)
    assert replayed.returncode == 0, replayed.stderr
    assert "embedded Redis at" in replayed.stderr
    assert (tmp_path / "state" / "dhcp-hive-mind").is_dir()
    listed = run_cli("leases", "--json", base_env=clean, env=env_without_url)
    assert listed.returncode == 0, listed.stderr
    assert [lease["ip"] for lease in json.loads(listed.stdout)] == [
        "192.0.2.10", "192.0.2.11", "192.0.2.12"]


def test_decode_json_has_the_seed_message_format(pcap: Path) -> None:
    result = run_cli("decode", "--json", str(pcap))
    assert result.returncode == 0, result.stderr
    messages = [json.loads(line) for line in result.stdout.splitlines()]
    assert [m["msg_type"] for m in messages[:4]] == [
        "DHCPDISCOVER", "DHCPOFFER", "DHCPREQUEST", "DHCPACK"]
    ack = messages[3]
    assert {k: ack[k] for k in ("client_mac", "hostname", "relay_ip", "client_ip", "server_ip",
                                 "lease_time", "subnet_mask", "router", "xid")} == {
        "client_mac": "02:00:00:00:10:00", "hostname": None, "relay_ip": "0.0.0.0",
        "client_ip": "192.0.2.10", "server_ip": S1, "lease_time": 3600,
        "subnet_mask": "255.255.255.0", "router": None, "xid": "00007000"}
    assert messages[0]["hostname"] == "host-0"
    assert isinstance(ack["ts"], float)


def test_decode_table_is_readable(pcap: Path) -> None:
    result = run_cli("decode", str(pcap))
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["frame", "time", "type"]
    assert "DHCPACK" in lines[4] and "192.0.2.10" in lines[4] and "1h00m" in lines[4]


@pytest.mark.parametrize("path", sorted(PCAPS.glob("*.pcap*")), ids=lambda p: p.name)
def test_both_engines_decode_alike(path: Path) -> None:
    """The pyshark engine is a cross-check: the same decoded messages as the default engine."""
    require_tool("tshark")
    fast = run_cli("decode", "--json", str(path))
    slow = run_cli("decode", "--json", "--engine", "pyshark", str(path))
    assert fast.returncode == slow.returncode == 0
    assert fast.stdout == slow.stdout
    assert fast.stdout.count("\n") > 0


def test_realtime_pace_keeps_the_capture_timing(redis_url: str, tmp_path: Path) -> None:
    """Three exchanges 1 s apart take at least the 2 s the capture spans (a lower bound only)."""
    require_tool("tshark")
    path = three_leases(tmp_path / "paced.pcap")
    started = time.monotonic()
    result = run_cli("replay", str(path), "--redis-url", redis_url, "--allow-server", S1,
                     "--pace", "realtime")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started >= 2.0
    assert "3 leases written" in result.stdout


def test_version_needs_no_command() -> None:
    result = run_cli("--version")
    assert (result.returncode, result.stdout, result.stderr) == (
        0, f"dhcp-hive-mind {__version__}\n", "")


# typer's switch that makes the completion options take the shell as their value instead of
# detecting it from the parent processes, which a test runner need not have.
NAMED_SHELL = {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}


@pytest.mark.parametrize(("shell", "registers"), [
    ("bash", "complete -o default -F _dhcp_hive_mind_completion dhcp-hive-mind"),
    ("zsh", "compdef _dhcp_hive_mind_completion dhcp-hive-mind"),
    ("fish", "complete --command dhcp-hive-mind"),
])
def test_show_completion_for_a_named_shell(shell: str, registers: str) -> None:
    """The script names the command and its variable, however the program was started."""
    result = run_cli("--show-completion", shell, env=NAMED_SHELL)
    assert result.returncode == 0, result.stderr
    assert registers in result.stdout
    assert f"_DHCP_HIVE_MIND_COMPLETE=complete_{shell}" in result.stdout


def completes(script: str, *words: str) -> list[str]:
    """What a real bash offers after `words` once `script` is loaded (the last word is the one
    being completed); the script runs the dhcp-hive-mind installed beside this Python."""
    bash = require_tool("bash")
    command = Path(sys.executable).parent / "dhcp-hive-mind"
    assert command.exists(), "the package is not installed in this Python's environment"
    result = subprocess.run(
        [bash, "--norc", "--noprofile", "-c",
         f'{script}\nCOMP_WORDS=({" ".join(words)}); COMP_CWORD={len(words) - 1}\n'
         '_dhcp_hive_mind_completion dhcp-hive-mind; printf "%s\\n" "${COMPREPLY[@]}"'],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PATH": f"{command.parent}{os.pathsep}{os.environ['PATH']}"})
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_completion_detected_in_bash_completes_commands_and_values() -> None:
    """As a user runs it: from bash, no shell named; the script it prints completes in bash."""
    bash = require_tool("bash")
    shown = subprocess.run([bash, "--norc", "--noprofile", "-c",
                            '"$0" -m sniffer --show-completion; exit $?', sys.executable],
                           capture_output=True, text=True, timeout=120, check=False)
    assert shown.returncode == 0, shown.stderr
    assert completes(shown.stdout, "dhcp-hive-mind", "rep") == ["replay"]
    assert completes(shown.stdout, "dhcp-hive-mind", "leases", "--sort", "e") == ["expires"]


def test_install_completion_for_bash(tmp_path: Path) -> None:
    result = run_cli("--install-completion", "bash", env={**NAMED_SHELL, "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    script = tmp_path / ".bash_completions" / "dhcp-hive-mind.sh"
    assert f"source '{script}'" in (tmp_path / ".bashrc").read_text()
    assert completes(f"source '{tmp_path / '.bashrc'}'", "dhcp-hive-mind", "dec") == ["decode"]
