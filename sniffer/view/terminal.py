"""The view in a terminal: keys read unechoed, the refresh loop, and the terminal restored however
the view ends."""

from __future__ import annotations

import codecs
import os
import re
import select
import signal
import sys
import termios
import threading
import time
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console
from rich.live import Live

from sniffer.connection import StoreError
from sniffer.errors import HiveError
from sniffer.store import LeaseStore
from sniffer.view.feed import Feed
from sniffer.view.model import Sort, ViewModel
from sniffer.view.screen import ViewState, clamp, page_size, render

_SEQUENCE = re.compile(r"\[[0-9;?]*[ -/]*[@-~]|O[@-~]")
_SEQUENCES = {"[A": "up", "[B": "down", "OA": "up", "OB": "down", "[5~": "pageup",
              "[6~": "pagedown", "[H": "home", "[F": "end", "OH": "home", "OF": "end",
              "[1~": "home", "[4~": "end", "[7~": "home", "[8~": "end"}


def parse_keys(text: str) -> list[str]:
    """Terminal input as key names: single printable characters, or esc, enter, backspace,
    up, down, pageup, pagedown, home, end. Other sequences and controls are dropped."""
    keys: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        i += 1
        if char == "\x1b":
            match = _SEQUENCE.match(text, i)
            if match:
                i = match.end()
                if match.group() in _SEQUENCES:
                    keys.append(_SEQUENCES[match.group()])
            else:
                keys.append("esc")
        elif char in "\r\n":
            keys.append("enter")
        elif char in "\x7f\x08":
            keys.append("backspace")
        elif char.isprintable():
            keys.append(char)
    return keys


_SORTS = list(Sort)
# Seconds of work a step may do: a key pressed meanwhile waits for it, then for one draw, so
# that the screen answers within 100 ms (a draw of 200x40 takes 20 to 50 ms).
STEP_BUDGET = 0.025


def handle_key(state: ViewState, key: str, page: int) -> bool:
    """Apply one key to the state; True when it asks to quit. Typing any other character
    starts the filter, except s (sort) and q (quit) outside it."""
    if key in ("up", "down", "pageup", "pagedown", "home", "end"):
        steps = {"up": -1, "down": 1, "pageup": -page, "pagedown": page,
                 "home": -sys.maxsize, "end": sys.maxsize}
        state.offset = max(0, min(state.offset + steps[key], sys.maxsize))
        return False
    if state.editing:
        if key == "esc":
            state.filter, state.editing = "", False
        elif key == "enter":
            state.editing = False
        elif key == "backspace":
            state.filter = state.filter[:-1]
        elif len(key) == 1:
            state.filter += key
        state.offset = 0
        return False
    if key == "q":
        return True
    if key == "s":
        state.sort = _SORTS[(_SORTS.index(state.sort) + 1) % len(_SORTS)]
        state.offset = 0
    elif key == "esc":
        state.filter, state.offset = "", 0
    elif key == "/":
        state.editing = True
    elif len(key) == 1:
        state.editing, state.filter, state.offset = True, state.filter + key, 0
    return False


class ViewError(HiveError):
    """The view cannot run here (no terminal): a local problem, reported in one line."""


@contextmanager
def _keys_mode(fd: int) -> Iterator[None]:
    """Keys arrive one at a time and unechoed (cbreak; Ctrl-C still interrupts); the terminal
    is restored however the view ends."""
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextmanager
def _sigterm_exits() -> Iterator[None]:
    """SIGTERM unwinds like an exception, so the terminal is restored before the exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def exit_now(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, exit_now)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class _Keyboard:
    fd: int
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))

    def read(self, timeout: float) -> list[str] | None:
        """Keys typed within `timeout` seconds; None once the terminal has gone."""
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not ready:
            return []
        data = os.read(self.fd, 1024)
        return parse_keys(self.decoder.decode(data)) if data else None


def run_view(store: LeaseStore, stop: threading.Event | None = None, *, source: str = "",
             console: Console | None = None, refresh: float = 0.25) -> None:
    """The full-screen live view of current leases, in this thread, until `q`, Ctrl-C,
    SIGTERM (exits 143) or `stop` is set. Quitting sets `stop`, so a capture running in another
    thread can wait on the same event. Raises ViewError without a terminal."""
    console = console or Console(highlight=False)
    stop = stop or threading.Event()
    if not (sys.stdin.isatty() and console.is_terminal):
        raise ViewError("the view needs an interactive terminal")
    model, state = ViewModel(), ViewState(source=source)
    feed = Feed(store, model)
    keyboard = _Keyboard(sys.stdin.fileno())
    with _sigterm_exits(), _keys_mode(keyboard.fd), \
            Live(console=console, screen=True, auto_refresh=False, redirect_stdout=False,
                 redirect_stderr=False) as live:
        try:
            _loop(feed, state, keyboard, live, stop, refresh)
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            feed.close()


def _loop(feed: Feed, state: ViewState, keyboard: _Keyboard, live: Live,
          stop: threading.Event, refresh: float) -> None:
    model, console = feed.model, live.console

    def draw() -> None:
        page = page_size(console.size.height)
        state.offset = clamp(state.offset, len(model.matching(state.sort, state.filter)), page)
        size = console.size
        live.update(render(model, state, time.time(), size.height, size.width), refresh=True)

    next_step = next_draw = 0.0
    while not stop.is_set():
        keys = keyboard.read(0.0 if feed.busy else next_step - time.monotonic())
        if keys is None:
            return
        for key in keys:
            if handle_key(state, key, page_size(console.size.height)):
                return
        if keys:  # answered at once, before the next step's work
            draw()
        if time.monotonic() >= next_step or feed.busy:
            next_step = time.monotonic() + refresh
            try:
                feed.step(STEP_BUDGET)
            except StoreError as error:
                feed.busy = False
                model.status = f"{error}; retrying"
            # While the feed is busy (loading, catching up) it steps without pause: draw every
            # `refresh` seconds then, and leave it the time in between.
            if not feed.busy or time.monotonic() >= next_draw:
                next_draw = time.monotonic() + refresh
                draw()
