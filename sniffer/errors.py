"""The one base class of local problems: the CLI turns any of them into one line and exit 1."""

from __future__ import annotations


class HiveError(Exception):
    """A local mistake or missing resource (bad option, missing tshark, Redis unreachable, no
    terminal): never malformed network input, which is counted and skipped instead."""
