"""Values given on the command line, checked and normalised; a bad one is a typer.BadParameter
that names its option."""

import ipaddress
from collections.abc import Iterable

import typer

from sniffer.history import parse_time


def ipv4_set(values: Iterable[str], option: str) -> frozenset[str]:
    addresses = set()
    for value in values:
        try:
            addresses.add(str(ipaddress.IPv4Address(value)))
        except ValueError:
            message = f"{value!r} is not an IPv4 address"
            raise typer.BadParameter(message, param_hint=option) from None
    return frozenset(addresses)


def network(value: str) -> ipaddress.IPv4Network:
    """An address (a /32) or a prefix; host bits in a prefix are ignored (10.1.2.3/16)."""
    try:
        return ipaddress.IPv4Network(value, strict=False)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an IPv4 address or prefix",
                                 param_hint="--ip") from None


def normal_mac(value: str) -> str:
    digits = value.lower().replace("-", "").replace(":", "").replace(".", "")
    try:
        raw = bytes.fromhex(digits)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a MAC address", param_hint="--mac") from None
    if not 1 <= len(raw) <= 16:
        raise typer.BadParameter(f"{value!r} is not a MAC address", param_hint="--mac")
    return ":".join(f"{b:02x}" for b in raw)


def ip_or_mac(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        pass
    try:
        return normal_mac(value)
    except typer.BadParameter:
        raise typer.BadParameter(f"{value!r} is neither an IPv4 nor a MAC address",
                                 param_hint="IP|MAC") from None


def parse_moment(value: str | None, option: str) -> float | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint=option) from None
