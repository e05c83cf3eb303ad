"""The `dhcp-hive-mind` command: parse options, call the pipeline, report errors, set exit codes."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from sniffer import __version__, export
from sniffer import config as config_file
from sniffer.arguments import ip_or_mac, ipv4_set, network, normal_mac, parse_moment
from sniffer.capture_file import STDIN, FileCapture, stdin_size
from sniffer.capturer import BUFFER_MIB
from sniffer.collector import collect_young_only, left_to_exit
from sniffer.commands import RejectReason
from sniffer.connection import RedisOptions, close_redis, mask_url, open_redis
from sniffer.console import err, out
from sniffer.dhcp import Dropped, decode
from sniffer.durability import REASSERT_SECONDS
from sniffer.export import Format
from sniffer.history import address_history, holds_of
from sniffer.keys import Keys, ipv4_number
from sniffer.listing import Query, SortKey, listing
from sniffer.logs import configure_logging, log
from sniffer.migrate import migrate as migrate_store
from sniffer.pipeline import Pipeline
from sniffer.printing import (
    DECODE_HEADER,
    decode_row,
    live_writers,
    print_events,
    print_holder,
    print_holdings,
    same,
    table_pages,
    watch_leases,
)
from sniffer.process_title import hide_url_passwords
from sniffer.registry import (
    SKEW_ALLOWED,
    check_writer_id,
    registered,
    replay_writer_id,
    sniff_writer_id,
)
from sniffer.replay import Pace, replay_files, summary
from sniffer.reporting import UsageProblem, reports_errors, settings
from sniffer.store import HISTORY_DAYS, LeaseStore
from sniffer.tracker import Tracker, TrackerConfig
from sniffer.tshark import DEFAULT_PORTS
from sniffer.view import safe

app = typer.Typer(
    name="dhcp-hive-mind",
    help="Passive DHCPv4 lease tracker: mirrors the leases DHCP servers grant into Redis.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class Engine(StrEnum):
    tshark = "tshark"
    pyshark = "pyshark"


# ---- shared options --------------------------------------------------------------------------

RedisUrl = Annotated[
    str | None,
    typer.Option(
        "--redis-url",
        metavar="URL",
        envvar="REDIS_URL",
        help="redis://, rediss:// or unix:// URL, or "
        "redis+sentinel://host:port[,host:port...]/<master-name>[/db] (rediss+sentinel:// for "
        "TLS). Without it, an embedded Redis persisted under the user's state directory.",
        show_default=False,
    ),
]
RedisPasswordFile = Annotated[
    Path | None,
    typer.Option(
        "--redis-password-file", metavar="FILE", envvar="REDIS_PASSWORD_FILE",
        help="Read the Redis password (of the ACL user in the URL, or requirepass) from this "
        "file. REDIS_PASSWORD in the environment works too; a password in --redis-url is "
        "visible to other users while the program starts.", show_default=False),
]
RedisCa = Annotated[
    Path | None,
    typer.Option("--redis-ca", metavar="FILE", envvar="REDIS_TLS_CA",
                 help="rediss://: the CA certificates that signed the server's certificate "
                 "(default: the system's).", show_default=False),
]
RedisCert = Annotated[
    Path | None,
    typer.Option("--redis-cert", metavar="FILE", envvar="REDIS_TLS_CERT",
                 help="rediss://: a client certificate (with --redis-key), for servers that "
                 "check their clients' (tls-auth-clients).", show_default=False),
]
RedisKey = Annotated[
    Path | None,
    typer.Option("--redis-key", metavar="FILE", envvar="REDIS_TLS_KEY",
                 help="rediss://: the private key of --redis-cert.", show_default=False),
]
KeyPrefix = Annotated[
    str,
    typer.Option("--key-prefix", envvar="HIVE_KEY_PREFIX", metavar="PREFIX",
                 help="Prefix of the seed hash keys (empty: the bare IP)."),
]
Namespace = Annotated[
    str,
    typer.Option("--namespace", envvar="HIVE_NAMESPACE", metavar="NAME",
                 help="Namespace of every other key dhcp-hive-mind keeps."),
]
WriterId = Annotated[str | None, typer.Option(
    "--writer-id", metavar="ID", help="This writer's id, unique among those writing into one "
    "store; a second writer with the id of a running one refuses to start [default: the host "
    "name, then the interfaces (sniff) or the files (replay)]", show_default=False)]
MaxClockSkew = Annotated[float, typer.Option(
    "--max-clock-skew", min=0, metavar="SECONDS", help="Warn when this host's clock and "
    "Redis's differ by more (checked at start and every few seconds).")]
EngineOpt = Annotated[
    Engine,
    typer.Option("--engine", help="tshark: tshark's field output (fast); pyshark: pyshark's "
                 "FileCapture in EK mode (slow, a cross-check)."),
]

# The tracker's options (the configuration of docs/tracking.md), shared by replay and sniff.

AllowServers = Annotated[list[str] | None, typer.Option(
    "--allow-server", metavar="IP", help="A DHCP server whose replies are trusted "
    "(repeatable). Without any, every server is trusted.", show_default=False)]
StrictSource = Annotated[bool, typer.Option(
    "--strict-source", help="Replies must also come from an allowed server's or a trusted "
    "relay's IP address.")]
TrustedRelays = Annotated[list[str] | None, typer.Option(
    "--trusted-relay", metavar="IP", help="A relay whose copies of replies are trusted under "
    "--strict-source (repeatable).", show_default=False)]
Supersede = Annotated[bool, typer.Option(
    "--supersede/--no-supersede", help="A new lease deletes the same client's other leases on "
    "the same subnet.")]
PrefixLen = Annotated[int, typer.Option(
    "--prefix-len", min=0, max=32, metavar="BITS", help="Subnet prefix length when an ACK "
    "carries no subnet mask.")]
Bootp = Annotated[bool, typer.Option("--bootp/--no-bootp",
                                     help="Track BOOTP replies (infinite leases).")]
HistoryDays = Annotated[float, typer.Option(
    "--history-days", min=0.001, metavar="DAYS", help="Keep each address's history this long "
    "(at most 1000 events an address).")]


def _tracker_config(allow_server: list[str] | None, strict_source: bool,
                    trusted_relay: list[str] | None, supersede: bool, prefix_len: int,
                    bootp: bool, capture_clock: bool) -> TrackerConfig:
    return TrackerConfig(
        allowed_servers=ipv4_set(allow_server or (), "--allow-server"),
        strict_source=strict_source,
        trusted_relays=ipv4_set(trusted_relay or (), "--trusted-relay"),
        supersede_same_subnet=supersede,
        default_prefix_len=prefix_len,
        track_bootp=bootp,
        capture_clock=capture_clock,
        end_unknown_bindings=True,
    )


def _existing_files(files: list[Path], engine: Engine) -> list[Path]:
    """The files, each one there; `-` (standard input) at most once, and readable by `engine`."""
    if [str(path) for path in files].count(STDIN) > 1:
        raise UsageProblem("standard input (-) can be read only once")
    for path in files:
        if str(path) == STDIN:
            stdin_size(engine.value)
            continue
        if not path.exists():
            raise UsageProblem(f"{path}: no such file")
        if not path.is_file():
            raise UsageProblem(f"{path}: not a file")
    return files


def _redis_options(password_file: Path | None, ca: Path | None, cert: Path | None,
                   key: Path | None) -> RedisOptions:
    # Taken out of the environment: tcpdump and tshark need not inherit it.
    password = os.environ.pop("REDIS_PASSWORD", None) or None
    sentinel_password = os.environ.pop("REDIS_SENTINEL_PASSWORD", None) or None
    if password_file is not None:
        if password is not None:
            raise UsageProblem("REDIS_PASSWORD and --redis-password-file both give a Redis "
                               "password: keep one")
        try:
            password = password_file.read_text().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not text"
            raise UsageProblem(f"Redis password file {password_file}: {reason}") from None
        if not password:
            raise UsageProblem(f"Redis password file {password_file} is empty")
    return RedisOptions(password=password, sentinel_password=sentinel_password, ca_file=ca,
                        cert_file=cert, key_file=key)


@contextmanager
def _store(redis_url: str | None, key_prefix: str, namespace: str, capture_clock: bool,
           options: RedisOptions, writer: str | None = None,
           history_days: float = HISTORY_DAYS) -> Iterator[LeaseStore]:
    client, description = open_redis(redis_url, options=options)
    if redis_url is None:
        err.print(Text(f"Using the {description} (set --redis-url or REDIS_URL for a server)."))
    try:
        store = LeaseStore(client, Keys(key_prefix, namespace), capture_clock=capture_clock,
                           writer=writer, history_days=history_days)
        if writer is not None:  # a command that writes: its user's rights checked first
            store.check_writes()
        yield store
    finally:
        close_redis(client)


def _print_version(value: bool) -> None:
    if value:
        out.print(f"dhcp-hive-mind {__version__}")
        raise typer.Exit(0)


@app.callback()
@reports_errors
def _main(
    ctx: typer.Context,
    config_path: Annotated[Path | None, typer.Option(
        "--config", metavar="FILE", envvar="HIVE_CONFIG", help="Settings file (TOML) "
        f"[default: {config_file.DEFAULT_PATH}, if it exists]", show_default=False)] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    # Eager, with its own callback: the group's callback never runs without a command.
    version: Annotated[bool, typer.Option(
        "--version", help="Print the version and exit.", is_eager=True,
        callback=_print_version)] = False,
) -> None:
    settings.debug = debug
    # Click takes an option's value from the default_map after the command line and the
    # environment, before the option's default: the file's place in the precedence.
    loaded = config_file.load(config_path, config_file.commands_of(ctx.command))
    ctx.default_map, ctx.obj = loaded.defaults, loaded


# ---- replay ----------------------------------------------------------------------------------

@app.command()
@reports_errors
def replay(
    files: Annotated[list[Path], typer.Argument(
        help="pcap or pcapng files, replayed in order; - reads standard input.", metavar="FILE",
        show_default=False)],
    redis_url: RedisUrl = None,
    redis_password_file: RedisPasswordFile = None,
    redis_ca: RedisCa = None,
    redis_cert: RedisCert = None,
    redis_key: RedisKey = None,
    key_prefix: KeyPrefix = "",
    namespace: Namespace = "dhcp-hive-mind",
    engine: EngineOpt = Engine.tshark,
    pace: Annotated[Pace, typer.Option("--pace", help="fast, or realtime to keep the capture's "
                                       "timing.")] = Pace.fast,
    as_captured: Annotated[bool, typer.Option(
        "--as-captured", help="Capture clock: leases expire when they did in the capture "
        "(EXPIREAT), and leases already over are not written. Default: the replay clock, "
        "TTL = lease time from now.")] = False,
    allow_server: AllowServers = None,
    strict_source: StrictSource = False,
    trusted_relay: TrustedRelays = None,
    supersede: Supersede = True,
    prefix_len: PrefixLen = 24,
    bootp: Bootp = True,
    writer_id: WriterId = None,
    max_clock_skew: MaxClockSkew = SKEW_ALLOWED,
    history_days: HistoryDays = HISTORY_DAYS,
) -> None:
    """Replay capture files into Redis, as if the traffic were live.

    A damaged file (cut short, corrupt, not a capture) is a warning: what it held before the
    damage is replayed, the next files too, and the exit code is 1."""
    options = _redis_options(redis_password_file, redis_ca, redis_cert, redis_key)
    _existing_files(files, engine)
    config = _tracker_config(allow_server, strict_source, trusted_relay, supersede, prefix_len,
                             bootp, capture_clock=as_captured)
    if not config.allowed_servers:
        err.print(Text("warning: no --allow-server given: replies from every DHCP server are "
                       "trusted, rogue servers included."))
    writer = check_writer_id(writer_id or replay_writer_id(files))
    with _store(redis_url, key_prefix, namespace, as_captured, options=options,
                writer=writer, history_days=history_days) as store, \
            registered(store.client, store.keys, writer, allowed=max_clock_skew,
                       warn=lambda warning: err.print(safe(f"warning: {warning}"))):
        tracker = Tracker(config)
        tracker.restore(store.load())
        collect_young_only()
        pipeline = Pipeline(tracker, store)
        started = time.monotonic()
        try:
            damaged = replay_files(pipeline, [str(path) for path in files], engine.value, pace,
                                   lambda warning: err.print(safe(f"warning: {warning}")),
                                   progress_on=err if err.is_terminal else None)
        finally:
            # What was read before an interrupt or a fatal error stays written.
            pipeline.flush()
    out.print(summary(len(files), pipeline.stats,
                      {reason: tracker.counters[reason] for reason in RejectReason},
                      time.monotonic() - started))
    if pipeline.rogue:
        servers = ", ".join(f"{server} ({count:,})" for server, count
                            in pipeline.rogue.most_common())
        out.print(f"rogue DHCP servers (replies rejected, not written): {servers}")
    left_to_exit(tracker)  # the command's last use of it
    if damaged:
        raise typer.Exit(1)


# ---- leases ----------------------------------------------------------------------------------

@app.command()
@reports_errors
def leases(
    redis_url: RedisUrl = None,
    redis_password_file: RedisPasswordFile = None,
    redis_ca: RedisCa = None,
    redis_cert: RedisCert = None,
    redis_key: RedisKey = None,
    key_prefix: KeyPrefix = "",
    namespace: Namespace = "dhcp-hive-mind",
    as_json: Annotated[bool, typer.Option(
        "--json", help="A JSON array, one object per lease, written as the leases are read.")
    ] = False,
    as_jsonl: Annotated[bool, typer.Option("--jsonl", help="JSON Lines: one object a line.")
                        ] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV, with a header row.")] = False,
    ip: Annotated[str | None, typer.Option(
        "--ip", metavar="IP|PREFIX", help="Only this address, or the addresses in this prefix "
        "(10.1.0.0/16).", show_default=False)] = None,
    mac: Annotated[str | None, typer.Option("--mac", help="Only this MAC address.",
                                            show_default=False)] = None,
    hostname: Annotated[str | None, typer.Option(
        "--hostname", help="Only hostnames containing this text (case-insensitive).",
        show_default=False)] = None,
    sort: Annotated[SortKey, typer.Option("--sort", help="Sort order.")] = SortKey.ip,
    reverse: Annotated[bool, typer.Option("--reverse", help="Reverse the sort order.")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Keep the table on screen, read again "
                                        "every --interval seconds, until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option("--interval", min=0.2, help="Seconds between reads "
                                            "with --watch.")] = 2.0,
) -> None:
    """List the current leases: a table on a terminal, plain columns in a pipe, or JSON, JSON
    Lines or CSV."""
    options = _redis_options(redis_password_file, redis_ca, redis_cert, redis_key)
    formats = [fmt for fmt, chosen in ((Format.json, as_json), (Format.jsonl, as_jsonl),
                                       (Format.csv, as_csv)) if chosen]
    if len(formats) > 1:
        raise UsageProblem("--json, --jsonl and --csv each choose the output: give one")
    if watch and formats:
        raise UsageProblem(f"--watch shows a table; it cannot be combined with --{formats[0]}")
    query = Query(network=network(ip) if ip is not None else None,
                  mac=normal_mac(mac) if mac is not None else None, hostname=hostname,
                  sort=sort, reverse=reverse)
    with _store(redis_url, key_prefix, namespace, capture_clock=True, options=options) as store:
        if watch:
            watch_leases(store, query, interval)
        elif formats or not out.is_terminal:
            fmt = formats[0] if formats else Format.plain
            # Strings from Redis are escaped already; a terminal that cannot show the rest of
            # Unicode gets backslash escapes rather than an error.
            sys.stdout.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
            count = export.write(fmt, listing(store, query, export.LINES[fmt][0]), sys.stdout)
            if not count and fmt is Format.plain:
                err.print("No leases.")
        elif not table_pages(listing(store, query, same)):
            err.print("No leases.")
        if not watch and err.is_terminal:  # for a person: never in the data
            err.print(live_writers(store))


# ---- view and history ------------------------------------------------------------------------

@app.command()
@reports_errors
def view(
    redis_url: RedisUrl = None,
    redis_password_file: RedisPasswordFile = None,
    redis_ca: RedisCa = None,
    redis_cert: RedisCert = None,
    redis_key: RedisKey = None,
    key_prefix: KeyPrefix = "",
    namespace: Namespace = "dhcp-hive-mind",
) -> None:
    """Full-screen live view of the current leases and their changes (q quits)."""
    from sniffer.view.terminal import run_view

    options = _redis_options(redis_password_file, redis_ca, redis_cert, redis_key)
    with _store(redis_url, key_prefix, namespace, capture_clock=True, options=options) as store:
        run_view(store, source=_source(redis_url))


def _source(redis_url: str | None) -> str:
    return f"Redis at {mask_url(redis_url)}" if redis_url is not None else "embedded Redis"


TIME_HELP = "ISO 8601 (local time unless it carries a zone) or Unix seconds."


@app.command()
@reports_errors
def migrate(
    redis_url: RedisUrl = None,
    redis_password_file: RedisPasswordFile = None,
    redis_ca: RedisCa = None,
    redis_cert: RedisCert = None,
    redis_key: RedisKey = None,
    key_prefix: KeyPrefix = "",
    namespace: Namespace = "dhcp-hive-mind",
) -> None:
    """Move a store written by a version before the Redis Cluster layout to it (safe to repeat,
    and while sniffers run)."""
    options = _redis_options(redis_password_file, redis_ca, redis_cert, redis_key)
    with _store(redis_url, key_prefix, namespace, capture_clock=True, options=options) as store:
        counts = migrate_store(store)
    out.print(f"{counts['moved']:,} detail hashes moved to the cluster layout, "
              f"{counts['dropped']:,} older copies dropped, "
              f"{counts['macs']:,} MAC index and history keys moved.")


@app.command()
@reports_errors
def history(
    target: Annotated[str, typer.Argument(metavar="IP|MAC", help="An IPv4 address (who had it, "
                                          "and when) or a MAC address (the addresses the "
                                          "device held, and when).", show_default=False)],
    redis_url: RedisUrl = None,
    redis_password_file: RedisPasswordFile = None,
    redis_ca: RedisCa = None,
    redis_cert: RedisCert = None,
    redis_key: RedisKey = None,
    key_prefix: KeyPrefix = "",
    namespace: Namespace = "dhcp-hive-mind",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: an array; with --at one "
                                          "object, or null when nobody held the address."
                                          )] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many rows, the "
                                       "newest.")] = 50,
    at: Annotated[str | None, typer.Option(
        "--at", metavar="TIME", help="IP only: who held the address at TIME. " + TIME_HELP,
        show_default=False)] = None,
    since: Annotated[str | None, typer.Option(
        "--since", metavar="TIME", help="Only from TIME on. " + TIME_HELP,
        show_default=False)] = None,
    until: Annotated[str | None, typer.Option(
        "--until", metavar="TIME", help="Only up to TIME. " + TIME_HELP,
        show_default=False)] = None,
) -> None:
    """The history of an address (grants, renewals, reassignments, deletions and expiries,
    newest first; or who held it at a moment), or the addresses a device held over a period."""
    options = _redis_options(redis_password_file, redis_ca, redis_cert, redis_key)
    wanted = ip_or_mac(target)
    moment_at = parse_moment(at, "--at")
    start, end = parse_moment(since, "--since"), parse_moment(until, "--until")
    is_ip = ipv4_number(wanted) is not None
    if moment_at is not None and (since is not None or until is not None):
        raise UsageProblem("--at is one moment: it cannot be combined with --since or --until")
    if moment_at is not None and not is_ip:
        raise UsageProblem("--at takes an IP address; for a MAC address use --since and --until")
    with _store(redis_url, key_prefix, namespace, capture_clock=True, options=options) as store:
        ips = [wanted] if is_ip else store.mac_addresses(wanted, start)
        logs = store.address_logs(ips)
    now = time.time()
    histories = [address_history(ip, events, now) for ip, events in logs.items()]
    if moment_at is not None:
        print_holder(wanted, moment_at, histories[0].holder_at(moment_at), as_json)
    elif is_ip:
        print_events(wanted, histories[0].between(start, end)[:limit], as_json)
    else:
        print_holdings(wanted, holds_of(wanted, histories, start, end)[:limit], as_json)


# ---- decode ----------------------------------------------------------------------------------

@app.command("decode")
@reports_errors
def decode_files(
    files: Annotated[list[Path], typer.Argument(
        help="pcap or pcapng files; - reads standard input.", metavar="FILE",
        show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per DHCP message "
                                          "(JSON Lines).")] = False,
    engine: EngineOpt = Engine.tshark,
) -> None:
    """Print the DHCP messages in capture files, decoded as the tracker sees them."""
    _existing_files(files, engine)
    dropped = 0
    if not as_json:
        out.print(Text(DECODE_HEADER, style="bold"))
    for path in files:
        with FileCapture(path, engine=engine.value) as capture:
            for datagram in capture:
                try:
                    msg = decode(datagram)
                except Dropped:
                    dropped += 1
                    continue
                if as_json:
                    sys.stdout.write(json.dumps(msg.to_json()) + "\n")
                else:
                    out.print(decode_row(msg))
    if dropped:
        err.print(f"{dropped:,} packets on DHCP ports were not valid DHCP messages.")


# ---- sniff -----------------------------------------------------------------------------------

class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


@app.command()
@reports_errors
def sniff(
    interface: Annotated[list[str], typer.Option(
        "-i", "--interface", help="Interface to capture on (repeatable); any: all of them.",
        show_default=False)],
    redis_url: RedisUrl = None,
    redis_password_file: RedisPasswordFile = None,
    redis_ca: RedisCa = None,
    redis_cert: RedisCert = None,
    redis_key: RedisKey = None,
    key_prefix: KeyPrefix = "",
    namespace: Namespace = "dhcp-hive-mind",
    allow_server: AllowServers = None,
    strict_source: StrictSource = False,
    trusted_relay: TrustedRelays = None,
    supersede: Supersede = True,
    prefix_len: PrefixLen = 24,
    bootp: Bootp = True,
    port: Annotated[list[int] | None, typer.Option(
        "--port", min=1, max=65535, help="DHCP ports (repeatable) [default: 67 and 68]",
        show_default=False)] = None,
    buffer_size: Annotated[int, typer.Option(
        "--buffer-size", min=1, help="Kernel capture buffer per interface, in MiB (tcpdump -B): "
        "what absorbs a burst while the sniffer is busy.")] = BUFFER_MIB,
    restart_every: Annotated[float, typer.Option(
        "--restart-every", min=0, help="Seconds between scheduled restarts of tcpdump and "
        "tshark, which cap tshark's memory; no packet is lost or seen twice. 0: never.")
    ] = 3600.0,
    max_pending: Annotated[int, typer.Option(
        "--max-pending", min=1, metavar="N", help="Lease writes held while Redis is down or "
        "slow; past that the oldest are dropped, and logged as errors.")] = 100_000,
    reassert_seconds: Annotated[float, typer.Option(
        "--reassert-seconds", min=0, metavar="SECONDS", help="Writes Redis took in this "
        "many seconds are written again (with their original versions) when it may have lost "
        "them: a write or check failed, a restart or failover. A Redis that lost everything "
        "gets every current lease again.")] = REASSERT_SECONDS,
    metrics_port: Annotated[int | None, typer.Option(
        "--metrics-port", min=1, max=65535, help="Serve Prometheus metrics on this port "
        "(/metrics).", show_default=False)] = None,
    metrics_address: Annotated[str, typer.Option(
        "--metrics-address", help="Address the metrics server listens on.")] = "127.0.0.1",
    log_level: Annotated[LogLevel, typer.Option("--log-level", help="Least severe messages "
                                                "logged.")] = LogLevel.info,
    with_view: Annotated[bool, typer.Option(
        "--view", help="Show the full-screen live view while sniffing (q stops both).")
    ] = False,
    writer_id: WriterId = None,
    max_clock_skew: MaxClockSkew = SKEW_ALLOWED,
    history_days: HistoryDays = HISTORY_DAYS,
) -> None:
    """Capture DHCP traffic live and mirror the leases into Redis, until SIGINT or SIGTERM."""
    # Imported here: its metrics (prometheus_client) took 30 ms of every command's start-up.
    from sniffer.live import SniffConfig, Sniffer, run_sniffer, run_sniffer_with_view

    options = _redis_options(redis_password_file, redis_ca, redis_cert, redis_key)
    if redis_url is None and os.environ.get("HIVE_SERVICE"):
        raise UsageProblem(
            "the service needs a Redis URL (url in [redis] of the configuration file, or "
            "REDIS_URL): an embedded store would be private to the service (PrivateTmp, its "
            "own state directory), out of reach of leases, view and history run from a shell")
    configure_logging(log_level.value)
    # R-T-3: live sniffing always uses the capture clock.
    config = _tracker_config(allow_server, strict_source, trusted_relay, supersede, prefix_len,
                             bootp, capture_clock=True)
    sniff_config = SniffConfig(interfaces=tuple(interface), ports=tuple(port or DEFAULT_PORTS),
                               buffer_mib=buffer_size, restart_every=restart_every,
                               max_pending=max_pending, reassert_seconds=reassert_seconds)
    writer = check_writer_id(writer_id or sniff_writer_id(interface))
    with _store(redis_url, key_prefix, namespace, capture_clock=True, options=options,
                writer=writer, history_days=history_days) as store, \
            registered(store.client, store.keys, writer, allowed=max_clock_skew) as heartbeat:
        if not config.allowed_servers:
            log.warning("no --allow-server given: replies from every DHCP server are trusted, "
                        "rogue servers included")
        tracker = Tracker(config)
        tracker.restore(store.load())
        collect_young_only()
        sniffer = Sniffer(sniff_config, tracker, store)
        sniffer.metrics.clock_skew.set_function(lambda: heartbeat.skew)
        if with_view:
            from sniffer.view.terminal import run_view

            viewer = LeaseStore(store.client, store.keys, capture_clock=True)
            totals = run_sniffer_with_view(sniffer, lambda stop: run_view(
                viewer, stop, source=_source(redis_url)), metrics_port=metrics_port,
                metrics_address=metrics_address)
        else:
            totals = run_sniffer(sniffer, metrics_port=metrics_port,
                                 metrics_address=metrics_address)
    log.info("stopped: %s packets, %s leases written, %s deleted, %s replies rejected, "
             "%s malformed packets dropped", f"{totals['rx_packets']:,}",
             f"{totals['written']:,}", f"{totals['deleted']:,}", f"{totals['rejected']:,}",
             f"{totals['malformed']:,}")


# ---- config ----------------------------------------------------------------------------------

config_app = typer.Typer(name="config", help="The configuration file and the settings in effect.",
                         no_args_is_help=True, rich_markup_mode=None)
app.add_typer(config_app)


@config_app.command("show", context_settings={"ignore_unknown_options": True})
@reports_errors
def config_show(
    ctx: typer.Context,
    arguments: Annotated[list[str] | None, typer.Argument(
        metavar="ARGS", help="A command (sniff if none is given), then "
        "options as they would be given to it.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
) -> None:
    """The settings a command would run with (those the configuration file can hold), and where
    each comes from: flag, env, file or default. Secrets are masked."""
    args = list(arguments or ())
    command = args.pop(0) if args and not args[0].startswith("-") else "sniff"
    path, shown = config_file.effective(ctx, command, args)
    render = config_file.as_json if as_json else config_file.as_text
    sys.stdout.write(render(command, path, shown) + "\n")


def main() -> None:
    hide_url_passwords()
    # The name is fixed so that completion scripts work however it was started (python -m).
    app(prog_name="dhcp-hive-mind")
