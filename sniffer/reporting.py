"""How a command's problems reach the person running it: a local mistake (HiveError) is one line
on stderr and exit code 1, with a traceback only under --debug."""

import functools
import os
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.text import Text

from sniffer.connection import redact
from sniffer.console import err
from sniffer.errors import HiveError
from sniffer.view import safe


class _Settings:
    debug = False


settings = _Settings()

P = ParamSpec("P")
R = TypeVar("R")


class UsageProblem(HiveError):
    """A local mistake in how the command was called (bad file, bad value)."""


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Local problems become one line on stderr and exit 1; tracebacks only with --debug."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except HiveError as problem:
            if settings.debug:
                raise
            err.print(safe(f"dhcp-hive-mind: error: {redact(str(problem))}"))
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print(Text("dhcp-hive-mind: interrupted"))
            raise typer.Exit(130) from None
        except BrokenPipeError:
            # The reader has gone (`leases | head`): stop quietly, as a command killed by SIGPIPE
            # would, and send what is still buffered nowhere.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(141) from None

    return wrapper
