"""`make install`: the program, its command, the settings and the systemd unit, installed into a
temporary tree (every path of the Makefile moved there), and the unit verified as installed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import REPO, require_tool


def run(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(arg) for arg in argv], capture_output=True, text=True,
                          timeout=600, check=False, stdin=subprocess.DEVNULL)


def test_make_install_puts_the_command_where_the_unit_expects_it(tmp_path: Path) -> None:
    analyze, make = require_tool("systemd-analyze"), require_tool("make")
    prefix, bindir = tmp_path / "opt" / "dhcp-hive-mind", tmp_path / "usr" / "local" / "bin"
    confdir, unitdir = tmp_path / "etc" / "dhcp-hive-mind", tmp_path / "etc" / "systemd" / "system"
    sysusersdir = tmp_path / "etc" / "sysusers.d"
    where = [f"PREFIX={prefix}", f"BINDIR={bindir}", f"CONFDIR={confdir}", f"UNITDIR={unitdir}",
             f"SYSUSERSDIR={sysusersdir}"]
    installed = run(make, "-C", REPO, "install", *where)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    unit = unitdir / "dhcp-hive-mind.service"
    text = unit.read_text()
    command, config = bindir / "dhcp-hive-mind", confdir / "config.toml"
    assert f"\nExecStart={command} --config {config} sniff\n" in text
    assert "\nEnvironment=HIVE_SERVICE=1\n" in text  # sniff refuses the embedded store there
    verified = run(analyze, "verify", unit)
    assert (verified.returncode, verified.stderr) == (0, "")

    # The command the unit starts runs from its own virtualenv, with the installed settings.
    assert command.resolve() == prefix / "bin" / "dhcp-hive-mind"
    shown = run(command, "--config", config, "config", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    settings = json.loads(shown.stdout)["settings"]
    assert settings["sniff"]["interface"] == {"value": ["eth0"], "source": "file"}
    assert settings["redis"]["url"]["source"] == "file"
    assert (sysusersdir / "dhcp-hive-mind.conf").read_text() == (
        REPO / "contrib" / "dhcp-hive-mind.sysusers").read_text()

    # Installing again updates the program and keeps the administrator's settings.
    config.write_text('[sniff]\ninterface = ["eth1"]\n')
    again = run(make, "-C", REPO, "install", *where)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"kept {config}" in again.stdout
    assert config.read_text() == '[sniff]\ninterface = ["eth1"]\n'

    removed = run(make, "-C", REPO, "uninstall", *where)
    assert removed.returncode == 0, removed.stderr
    assert not prefix.exists() and not unit.exists() and not command.is_symlink()
    assert config.exists()
