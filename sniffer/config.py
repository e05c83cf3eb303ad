"""The configuration file: TOML settings that stand in for command-line options.

Sections: [redis] the Redis connection and key names (every command that uses Redis), [tracker]
the tracking rules (sniff and replay), [sniff] the rest of sniff's options. A key is its option's
long name (in [redis] without "redis-"), its value of the option's type; anything else is an
error, so a typo is never silently ignored. The file's values become click's `default_map`,
which click consults after the command line and the environment and before the option's own
default: flag > environment > file > default.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import json
import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

import typer
import typer.core
import typer.models

from sniffer.connection import mask_url
from sniffer.errors import HiveError

DEFAULT_PATH = Path("/etc/dhcp-hive-mind/config.toml")

# The command parameters of the shared sections; a command's other options go in a section of
# its own name, for the commands listed in OWN_SECTIONS.
REDIS = ("redis_url", "redis_password_file", "redis_ca", "redis_cert", "redis_key",
         "key_prefix", "namespace")
TRACKER = ("allow_server", "strict_source", "trusted_relay", "supersede", "prefix_len", "bootp")
OWN_SECTIONS = ("sniff",)
# Not an option (a password is not kept in files): the environment's, shown by `config show`.
PASSWORD_ENV = "REDIS_PASSWORD"

_SOURCES = {"COMMANDLINE": "flag", "ENVIRONMENT": "env", "DEFAULT_MAP": "file"}


class ConfigError(HiveError):
    """The configuration file cannot be read, or holds something no option takes."""


@dataclass(frozen=True)
class Setting:
    """One key of the file: the option it stands for and the values it takes."""

    section: str
    key: str
    param: str  # the command function's parameter (click's name of the option)
    option: str  # the long option, e.g. --redis-url
    kind: type  # bool, int, float or str: of each element when `many`
    many: bool
    envvar: str | None
    low: float | None
    high: float | None
    choices: tuple[str, ...]

    def describe(self) -> str:
        one = self._describe_one()
        if not self.many:
            return one
        if self.choices or self.low is not None:
            return f"a list, each {one}"
        return "a list of " + {bool: "booleans", int: "integers", float: "numbers"}.get(
            self.kind, "strings")

    def _describe_one(self) -> str:
        if self.choices:
            return "one of " + ", ".join(f'"{choice}"' for choice in self.choices)
        what = {bool: "true or false", int: "an integer", float: "a number"}.get(self.kind,
                                                                                "a string")
        if self.low is not None and self.high is not None:
            return f"{what} from {self.low:g} to {self.high:g}"
        if self.low is not None:
            return f"{what} of at least {self.low:g}"
        return what

    def fits(self, value: object) -> bool:
        if self.many:
            return isinstance(value, list) and all(self._fits_one(item) for item in value)
        return self._fits_one(value)

    def _fits_one(self, value: object) -> bool:
        if self.kind is bool or isinstance(value, bool):  # TOML's true is no integer here
            return self.kind is bool and isinstance(value, bool)
        if self.kind is str:
            return isinstance(value, str) and (not self.choices or value in self.choices)
        if not isinstance(value, int | float) or (self.kind is int and isinstance(value, float)):
            return False
        return ((self.low is None or value >= self.low)
                and (self.high is None or value <= self.high))


def settings_of(command: str, function: Callable[..., object]) -> list[Setting]:
    """The settings the file holds for a command, read from its function's options."""
    function = inspect.unwrap(function)
    hints = get_type_hints(function, include_extras=True)
    found = []
    for param in inspect.signature(function).parameters:
        hint = hints.get(param)
        if get_origin(hint) is not Annotated:
            continue
        base, *extras = get_args(hint)
        info = next((e for e in extras if isinstance(e, typer.models.OptionInfo)), None)
        section = ("redis" if param in REDIS else "tracker" if param in TRACKER
                   else command if command in OWN_SECTIONS else None)
        if info is None or section is None:
            continue
        option = _long_option(info, param)
        key = option.removeprefix("--")
        if section == "redis":
            key = key.removeprefix("redis-")
        kind, many, choices = _kind(base)
        found.append(Setting(section, key, param, option, kind, many, info.envvar
                             if isinstance(info.envvar, str) else None,
                             info.min, info.max, choices))
    return found


def _long_option(info: typer.models.OptionInfo, param: str) -> str:
    # Typer takes a string first argument of Option() as its first name, not a default.
    names = [info.default] if isinstance(info.default, str) else []
    names += list(info.param_decls or ())
    longs = [name.split("/")[0] for name in names if name.startswith("--")]
    return longs[0] if longs else "--" + param.replace("_", "-")


def _kind(annotation: Any) -> tuple[type, bool, tuple[str, ...]]:
    if get_origin(annotation) in (Union, UnionType):  # X | None: the None is "not given"
        annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
    many = get_origin(annotation) is list
    if many:
        annotation = get_args(annotation)[0]
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return str, many, tuple(str(member.value) for member in annotation)
    if annotation in (bool, int, float, str):
        return annotation, many, ()
    if annotation is Path:
        return str, many, ()
    raise TypeError(f"no configuration-file type for {annotation!r}")


@dataclass(frozen=True)
class Loaded:
    """The file in effect (None: none) and click's default_map made of it."""

    path: Path | None
    defaults: dict[str, dict[str, object]]


def commands_of(group: object) -> dict[str, Callable[..., object]]:
    """The command functions of the CLI's click group, by command name."""
    assert isinstance(group, typer.core.TyperGroup)
    return {name: command.callback for name, command in group.commands.items()
            if command.callback is not None}


def load(path: Path | None, commands: Mapping[str, Callable[..., object]]) -> Loaded:
    """Read and check the file: `path`, or DEFAULT_PATH if it exists, or none."""
    if path is None:
        if not DEFAULT_PATH.exists():
            return Loaded(None, {})
        path = DEFAULT_PATH
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"configuration file {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    per_command = {name: settings_of(name, function) for name, function in commands.items()}
    known: dict[str, dict[str, Setting]] = {}
    for settings in per_command.values():
        for setting in settings:
            known.setdefault(setting.section, {})[setting.key] = setting
    values = _checked(path, data, known)
    defaults: dict[str, dict[str, object]] = {}
    for name, settings in per_command.items():
        for setting in settings:
            if (setting.section, setting.key) not in values:
                continue
            # The environment's password outranks the file's password file.
            if setting.param == "redis_password_file" and os.environ.get(PASSWORD_ENV):
                continue
            defaults.setdefault(name, {})[setting.param] = values[setting.section, setting.key]
    return Loaded(path, defaults)


def _checked(path: Path, data: dict[str, Any],
             known: dict[str, dict[str, Setting]]) -> dict[tuple[str, str], object]:
    sections = ", ".join(f"[{name}]" for name in known)
    values: dict[tuple[str, str], object] = {}
    for section, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {section}: a setting outside any section (settings "
                              f"go in {sections})")
        if section not in known:
            raise ConfigError(f"{path}: [{section}]: unknown section (known: {sections})"
                              + _did_you_mean(section, known, "[{}]"))
        for key, value in table.items():
            setting = known[section].get(key)
            if setting is None:
                raise ConfigError(f"{path}: [{section}] {key}: unknown setting"
                                  + _did_you_mean(key, known[section]))
            if not setting.fits(value):
                raise ConfigError(f"{path}: [{section}] {key}: expected {setting.describe()}, "
                                  f"got {toml_value(value)}")
            values[section, key] = value
    return values


def _did_you_mean(word: str, choices: Iterable[str], form: str = "{}") -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {form.format(close[0])}?" if close else ""


def toml_value(value: object) -> str:
    """A value as TOML writes it (strings escaped to ASCII, so nothing in them is a control)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))


# ---- config show -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Shown:
    """A setting in effect: its value (None: not set) and where it came from."""

    section: str
    key: str
    value: object
    source: str  # flag, env, file or default
    variable: str | None = None  # the environment variable, for env
    required: bool = False


def effective(ctx: typer.Context, command: str,
              args: list[str]) -> tuple[Path | None, list[Shown]]:
    """The file in effect, and the settings `command` would run with if given `args`, as click
    resolves them (the root command's callback has loaded the file)."""
    root = ctx.find_root()
    group = root.command
    assert isinstance(group, typer.core.TyperGroup) and isinstance(root.obj, Loaded)
    target = group.commands.get(command)
    if target is None or target.callback is None or not settings_of(command, target.callback):
        raise ConfigError(f"{command}: no command with settings in the configuration file")
    # A copy that only parses: options only, none required (show what is missing instead).
    shadow = copy.copy(target)
    shadow.params = [_optional(param) for param in target.params
                     if param.param_type_name == "option"]
    parsed = shadow.make_context(command, list(args), parent=root)
    shown = []
    required = {param.name for param in target.params if param.required}
    settings = settings_of(command, target.callback)
    order = ["redis", "tracker", command]
    for setting in sorted(settings, key=lambda setting: order.index(setting.section)):
        value = parsed.params.get(setting.param)
        parameter_source = parsed.get_parameter_source(setting.param)
        source = _SOURCES.get(parameter_source.name if parameter_source else "", "default")
        if setting.param == "redis_url" and isinstance(value, str):
            value = _masked(value)
        shown.append(Shown(setting.section, setting.key, value, source,
                           setting.envvar if source == "env" else None,
                           setting.param in required))
        if setting.param == "redis_password_file" and os.environ.get(PASSWORD_ENV):
            shown.append(Shown("redis", "password", "***", "env", PASSWORD_ENV))
    return root.obj.path, shown


def _optional(param: Any) -> Any:
    param = copy.copy(param)
    param.required = False
    return param


def _masked(url: str) -> str:
    try:
        return mask_url(url)
    except ValueError:  # unparseable: it might hide a password anywhere
        return "***"


def _plain(value: object) -> object:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def as_json(command: str, path: Path | None, shown: list[Shown]) -> str:
    sections: dict[str, dict[str, dict[str, object]]] = {}
    for item in shown:
        entry: dict[str, object] = {"value": _plain(item.value), "source": item.source}
        if item.variable:
            entry["variable"] = item.variable
        sections.setdefault(item.section, {})[item.key] = entry
    document = {"command": command, "file": None if path is None else str(path),
                "settings": sections}
    return json.dumps(document, indent=2, ensure_ascii=True)


def as_text(command: str, path: Path | None, shown: list[Shown]) -> str:
    lines = [f"# settings of {command}; configuration file: "
             + (str(path) if path is not None else f"none ({DEFAULT_PATH} does not exist)")]
    width = max(len(item.key) for item in shown)
    value_width = max(len(_shown_value(item)) for item in shown)
    section = None
    for item in shown:
        if item.section != section:
            section = item.section
            lines.append(f"[{section}]")
        source = f"env {item.variable}" if item.variable else item.source
        lines.append(f"{item.key:<{width}}  {_shown_value(item):<{value_width}}  {source}")
    return "\n".join(lines)


def _shown_value(item: Shown) -> str:
    # A list option not given is empty: its default is applied by the command itself.
    if item.value is None or (item.value in ([], ()) and item.source == "default"):
        return "not set (required)" if item.required else "not set"
    return toml_value(item.value)
