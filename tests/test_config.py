"""The configuration file through the real command: precedence flag > environment > file >
default, `config show` with its sources and secrets masked, and one line for each mistake."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import typer
from conftest import REPO, require_tool
from helpers import run_cli
from specharness import S1
from test_cli import three_leases

from sniffer.cli import app


def run(*args: str, env: dict[str, str] | None = None,
        unset: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """The command, with `env` added to this environment and the `unset` variables taken out."""
    return run_cli(*args, env=env, base_env={name: value for name, value in os.environ.items()
                                             if name not in unset})


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def show(*args: str, env: dict[str, str] | None = None) -> dict[str, dict[str, dict[str, object]]]:
    done = run(*args, env=env)
    assert done.returncode == 0, done.stderr
    settings: dict[str, dict[str, dict[str, object]]] = json.loads(done.stdout)["settings"]
    return settings


def error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert (done.returncode, done.stdout) == (1, "")
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


# ---- precedence, on what the commands do ------------------------------------------------------

@pytest.fixture
def pcap(tmp_path: Path) -> Path:
    require_tool("tshark")
    return three_leases(tmp_path / "three.pcap")


def test_the_file_gives_the_redis_url_the_namespace_and_the_tracker_rules(
        tmp_path: Path, pcap: Path, redis_url: str, rclient: redis.Redis) -> None:
    config = write(tmp_path / "config.toml", f'[redis]\nurl = "{redis_url}"\n'
                   'namespace = "from-file"\n[tracker]\nallow-server = ["192.0.2.99"]\n')
    # The file's allow-list rejects S1: nothing is written, and it says so.
    rejected = run("--config", str(config), "replay", str(pcap), unset=("REDIS_URL",))
    assert rejected.returncode == 0, rejected.stderr
    assert "0 leases written" in rejected.stdout
    assert rclient.keys("*lease:*") == []
    # A flag beats the file.
    done = run("--config", str(config), "replay", str(pcap), "--allow-server", S1,
               unset=("REDIS_URL",))
    assert "3 leases written" in done.stdout, done.stderr
    assert rclient.exists("from-file:lease:{192.0.2.10}")
    # leases reads the same Redis and namespace from the file (HIVE_CONFIG works as --config).
    listed = run("leases", "--json", env={"HIVE_CONFIG": str(config)}, unset=("REDIS_URL",))
    assert [lease["ip"] for lease in json.loads(listed.stdout)] == [
        "192.0.2.10", "192.0.2.11", "192.0.2.12"]


def test_flag_beats_environment_beats_file_beats_default(tmp_path: Path, pcap: Path,
                                                         redis_url: str,
                                                         rclient: redis.Redis) -> None:
    config = write(tmp_path / "config.toml", f'[redis]\nurl = "{redis_url}"\n'
                   'namespace = "file"\n')
    base = ("--config", str(config), "replay", str(pcap), "--allow-server", S1)
    run(*base, env={"HIVE_NAMESPACE": "env"}, unset=("REDIS_URL",))
    run(*base, "--namespace", "flag", env={"HIVE_NAMESPACE": "env"}, unset=("REDIS_URL",))
    run(*base, unset=("REDIS_URL", "HIVE_NAMESPACE"))
    # An empty file: the option's default.
    run("--config", str(write(tmp_path / "empty.toml", "")), "replay", str(pcap),
        "--allow-server", S1, "--redis-url", redis_url, unset=("HIVE_NAMESPACE",))
    namespaces = {key.partition(":lease:")[0] for key in rclient.keys("*:lease:*")}
    assert namespaces == {"env", "flag", "file", "dhcp-hive-mind"}


def test_config_show_names_each_source(tmp_path: Path) -> None:
    config = write(tmp_path / "config.toml", '[redis]\nnamespace = "file"\nkey-prefix = "f:"\n'
                   '[tracker]\nprefix-len = 20\nallow-server = ["192.0.2.1"]\n'
                   '[sniff]\ninterface = ["eth0"]\nbuffer-size = 8\nlog-level = "debug"\n')
    settings = show("--config", str(config), "config", "show", "--json", "--buffer-size", "16",
                    "--prefix-len", "22",
                    env={"HIVE_NAMESPACE": "env", "HIVE_KEY_PREFIX": "e:"})
    assert settings["sniff"]["buffer-size"] == {"value": 16, "source": "flag"}
    assert settings["tracker"]["prefix-len"] == {"value": 22, "source": "flag"}
    assert settings["redis"]["namespace"] == {"value": "env", "source": "env",
                                              "variable": "HIVE_NAMESPACE"}
    assert settings["redis"]["key-prefix"]["value"] == "e:"
    assert settings["sniff"]["interface"] == {"value": ["eth0"], "source": "file"}
    assert settings["sniff"]["log-level"] == {"value": "debug", "source": "file"}
    assert settings["tracker"]["allow-server"] == {"value": ["192.0.2.1"], "source": "file"}
    assert settings["sniff"]["restart-every"] == {"value": 3600.0, "source": "default"}
    assert settings["tracker"]["supersede"] == {"value": True, "source": "default"}

    text = run("--config", str(config), "config", "show", "sniff", "-i", "eth1",
               env={"HIVE_NAMESPACE": "env"})
    lines = text.stdout.splitlines()
    assert lines[0] == f"# settings of sniff; configuration file: {config}"
    assert lines[1] == "[redis]"
    rows = {tuple(line.split()) for line in lines if not line.startswith(("#", "["))}
    assert ("interface", '["eth1"]', "flag") in rows
    assert ("namespace", '"env"', "env", "HIVE_NAMESPACE") in rows
    assert ("buffer-size", "8", "file") in rows
    assert ("url", "not", "set", "default") in rows


def test_config_show_other_commands_and_what_is_missing(tmp_path: Path) -> None:
    config = write(tmp_path / "config.toml", '[tracker]\nbootp = false\n')
    settings = show("--config", str(config), "config", "show", "--json", "replay")
    assert set(settings) == {"redis", "tracker"}
    assert settings["tracker"]["bootp"] == {"value": False, "source": "file"}
    assert set(show("--config", str(config), "config", "show", "--json", "leases")) == {"redis"}
    # sniff's interface is required: shown as missing, not an error.
    shown = run("--config", str(config), "config", "show")
    assert shown.returncode == 0, shown.stderr
    assert "interface         not set (required)  default" in shown.stdout
    assert "no command with settings" in error_line(
        run("--config", str(config), "config", "show", "decode"))
    unknown = run("--config", str(config), "config", "show", "--no-such-option")
    assert unknown.returncode == 2 and "No such option" in unknown.stderr


def test_secrets_are_masked(tmp_path: Path) -> None:
    password = write(tmp_path / "redis-password", "hunter2-file\n")
    config = write(tmp_path / "config.toml", '[redis]\nurl = "redis://hive:hunter2-url@'
                   f'redis.example:6380/0"\npassword-file = "{password}"\n')
    for args in (("config", "show"), ("config", "show", "--json")):
        done = run("--config", str(config), *args)
        assert done.returncode == 0, done.stderr
        assert "hunter2" not in done.stdout + done.stderr
        assert "redis://hive:***@redis.example:6380/0" in done.stdout
        assert str(password) in done.stdout  # the file's path, never its content
    # The environment's password outranks the file's password file, and is never shown.
    settings = show("--config", str(config), "config", "show", "--json",
                    env={"REDIS_PASSWORD": "hunter2-env"})
    assert settings["redis"]["password"] == {"value": "***", "source": "env",
                                             "variable": "REDIS_PASSWORD"}
    assert settings["redis"]["password-file"] == {"value": None, "source": "default"}
    assert "hunter2" not in json.dumps(settings)


# ---- mistakes: one line naming the file, the key and what it takes ----------------------------

@pytest.mark.parametrize(("text", "message"), [
    ("[sniff]\nbufer-size = 8\n",
     "[sniff] bufer-size: unknown setting; did you mean buffer-size?"),
    ('[sniff]\nbuffer-size = "64"\n',
     '[sniff] buffer-size: expected an integer of at least 1, got "64"'),
    ("[tracker]\nprefix-len = 33\n",
     "[tracker] prefix-len: expected an integer from 0 to 32, got 33"),
    ("[tracker]\nbootp = 1\n", "[tracker] bootp: expected true or false, got 1"),
    ('[sniff]\ninterface = "eth0"\n',
     '[sniff] interface: expected a list of strings, got "eth0"'),
    ("[sniff]\nport = [67, 0]\n",
     "[sniff] port: expected a list, each an integer from 1 to 65535, got [67, 0]"),
    ('[sniff]\nlog-level = "loud"\n', '[sniff] log-level: expected one of "debug", "info", '
     '"warning", "error", got "loud"'),
    ("[redis]\nurl = 6379\n", "[redis] url: expected a string, got 6379"),
    ("[snif]\ninterface = []\n",
     "[snif]: unknown section (known: [redis], [tracker], [sniff]); did you mean [sniff]?"),
    ('url = "redis://h"\n',
     "url: a setting outside any section (settings go in [redis], [tracker], [sniff])"),
    ("[sniff\n", "not valid TOML: Expected ']' at the end of a table declaration (at line 1, "
     "column 7)"),
])
def test_a_mistake_in_the_file_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    config = write(tmp_path / "config.toml", text)
    for args in (("--config", str(config), "leases"), ("config", "show")):
        done = run(*args, env={"HIVE_CONFIG": str(config)})
        assert error_line(done) == f"dhcp-hive-mind: error: {config}: {message}"


def test_a_missing_or_unreadable_file_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    assert error_line(run("--config", str(missing), "leases")) == (
        f"dhcp-hive-mind: error: configuration file {missing}: No such file or directory")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe")
    assert error_line(run("--config", str(binary), "leases")) == (
        f"dhcp-hive-mind: error: {binary}: not UTF-8 text")


def test_the_default_file_is_read_when_it_exists(tmp_path: Path) -> None:
    """/etc/dhcp-hive-mind/config.toml, seen through an overlay in a mount namespace of its
    own, so that nothing else on the machine sees it."""
    unshare = require_tool("unshare")
    if os.geteuid() != 0:
        pytest.skip("mounting an overlay needs root")
    upper, work = tmp_path / "upper", tmp_path / "work"
    (upper / "dhcp-hive-mind").mkdir(parents=True)
    work.mkdir()
    write(upper / "dhcp-hive-mind" / "config.toml", '[sniff]\ninterface = ["ovl0"]\n')
    mount = (f"mount -t overlay overlay -o lowerdir=/etc,upperdir={upper},workdir={work} /etc"
             ' && exec "$@"')
    environment = {k: v for k, v in os.environ.items() if k != "HIVE_CONFIG"}
    done = subprocess.run([unshare, "--mount", "--propagation", "private", "sh", "-c", mount,
                           "sh", sys.executable, "-m", "sniffer", "config", "show"],
                          capture_output=True, text=True, timeout=60, env=environment,
                          cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("# settings of sniff; configuration file: "
                                  "/etc/dhcp-hive-mind/config.toml\n")
    assert ["interface", '["ovl0"]', "file"] in [line.split() for line in
                                                   done.stdout.splitlines()]
    # Without it (here: HIVE_CONFIG=/dev/null, as for every test), no file and no error.
    assert "interface" in run("config", "show").stdout


def test_every_option_of_sniff_has_a_key() -> None:
    sniff = typer.main.get_command(app).commands["sniff"]  # type: ignore[attr-defined]
    options = {param.name for param in sniff.params if param.param_type_name == "option"}
    settings = show("config", "show", "--json")
    assert sum(len(section) for section in settings.values()) == len(options) > 20


def test_the_shipped_example_is_valid() -> None:
    settings = show("--config", str(REPO / "contrib" / "config.toml"), "config", "show",
                    "--json")
    assert settings["redis"]["url"] == {"value": "redis://127.0.0.1:6379/0", "source": "file"}
    assert settings["sniff"]["interface"]["source"] == "file"


# ---- the service -------------------------------------------------------------------------------

def test_the_service_refuses_the_embedded_store() -> None:
    done = run("sniff", "-i", "lo", env={"HIVE_SERVICE": "1"}, unset=("REDIS_URL",))
    assert error_line(done).startswith("dhcp-hive-mind: error: the service needs a Redis URL "
                                       "(url in [redis] of the configuration file, or "
                                       "REDIS_URL): an embedded store would be private")
