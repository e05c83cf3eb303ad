"""The program's entry point, which gives the tshark of `replay FILE` a head start.

tshark takes 0.2 to 0.3 s to load its dissectors before it reads a packet, and Python about as
long to import the CLI, redis-py and the pipeline and to parse the options: one after the other,
they were a sixth of a 100,000-packet replay. So before the rest of the program is imported, a
command line that looks like a replay of a named file starts that file's tshark, which loads
while Python does; the replay takes it over if its command line is exactly the one it would
have started (`claim`), and starts its own otherwise. Its output is read into memory meanwhile
(up to a limit), so that it does not stop at a full pipe while Python is still starting. A head
start nobody claims (a mistaken guess, a replay that stops before reading, `--help`) is stopped
at exit.
"""

from __future__ import annotations

import atexit
import gc
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from sniffer.tshark import DEFAULT_PORTS, CaptureError, TsharkProcess, tshark_argv

COMMAND = "replay"
# The options that take a value, of the program (before the command) and of `replay` (a test
# holds these to the CLI's): the first other word after `replay` is its first file.
GLOBAL_VALUE_OPTIONS = frozenset({"--config"})
REPLAY_VALUE_OPTIONS = frozenset({
    "--redis-url", "--redis-password-file", "--redis-ca", "--redis-cert", "--redis-key",
    "--key-prefix", "--namespace", "--engine", "--pace", "--allow-server", "--trusted-relay",
    "--prefix-len", "--writer-id", "--max-clock-skew", "--history-days",
})

_started: dict[tuple[str, ...], TsharkProcess] = {}


def main() -> None:
    """The `dhcp-hive-mind` command."""
    start(sys.argv[1:])
    # The imports make objects that live as long as the program, few of them in cycles: the
    # collector went through them 120 times while they came (50 ms). Once they are all there,
    # they are frozen out of its collections.
    gc.disable()
    try:
        from sniffer.cli import main as cli_main
    finally:
        gc.freeze()
        gc.enable()
    cli_main()


def start(args: Sequence[str]) -> None:
    """Start the tshark that `replay` will want for its first file, if `args` (the command line
    without the program's name) look like a replay of a named file with the tshark engine."""
    path = first_file(args)
    if path is None or not os.path.isfile(path):
        return
    try:
        argv = tshark_argv(["-r", path], DEFAULT_PORTS)
        process = TsharkProcess(argv, path, stdin=subprocess.DEVNULL)
    except CaptureError:
        return  # no tshark: the replay says so in its own words
    process.read_ahead()
    _started[tuple(argv)] = process
    atexit.register(process.stop)  # stopping a claimed one again does nothing


def claim(argv: Sequence[str]) -> TsharkProcess | None:
    """The tshark started ahead with exactly this command line, once; None if there is none."""
    return _started.pop(tuple(argv), None)


def first_file(args: Sequence[str]) -> str | None:
    """The first file of a `replay` command line, as the replay will name it (a path, not `-`);
    None if it is not such a command line, or asks for help or another engine."""
    words = iter(args)
    for word in words:
        if word == COMMAND:
            break
        if not word.startswith("--"):
            return None  # another command
        if word in GLOBAL_VALUE_OPTIONS:
            next(words, None)
    else:
        return None
    for word in words:
        if word == "--":
            path = next(words, None)
            break
        if word.startswith("--"):
            name, has_value, value = word.partition("=")
            value = value if has_value else (
                next(words, "") if name in REPLAY_VALUE_OPTIONS else "")
            if name == "--help" or (name == "--engine" and value != "tshark"):
                return None
            continue
        if word.startswith("-") and word != "-":
            return None  # not an option replay knows: let the CLI say so
        path = word
        break
    else:
        return None
    if path is None or path == "-":
        return None
    # typer hands the replay a Path, whose str() drops a leading "./" and doubled slashes.
    return str(Path(path))

