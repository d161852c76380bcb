"""How commands talk to a person: step lines on stderr, quiet with -q, detail with -v.

Click-free (plain writes, ANSI colours by hand), so that a command answered without click (the console
script's fast paths, :mod:`layerenv.cli.entry`) talks the same way."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TextIO

from layerenv.reporter import Progress

TICK = 0.5  # seconds between redraws of a progress line that counts nothing but time


class Console:
    """A :class:`layerenv.base.request.Reporter` for the terminal.

    On a TTY each step shows the seconds since the command started; elsewhere plain lines.
    ``NO_COLOR`` turns off colour.
    """

    def __init__(self, verbosity: int = 0, *, tty: bool | None = None, env: Mapping[str, str] | None = None) -> None:
        self.verbosity = verbosity
        self.started = time.monotonic()
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.color = self.tty and "NO_COLOR" not in (os.environ if env is None else env)

    def step(self, text: str) -> None:
        if self.verbosity < 0:
            return
        prefix = f"[{time.monotonic() - self.started:5.1f}s] " if self.tty else ""
        self._say(f"{prefix}{text}")

    def warn(self, text: str) -> None:
        if self.verbosity < -1:
            return
        self._say(f"{_YELLOW}warning:{_PLAIN} {text}" if self.color else f"warning: {text}")

    def note(self, text: str) -> None:
        if self.verbosity < 0:
            return
        self._say(f"{_CYAN}note:{_PLAIN} {text}" if self.color else f"note: {text}")

    def result(self, text: str) -> None:
        _write_line(sys.stdout, text, color=sys.stdout.isatty())

    def _say(self, line: str) -> None:
        _write_line(sys.stderr, line, color=self.color)

    @contextmanager
    def progress(self, title: str, unit: str) -> Iterator[Progress]:
        """On a terminal and neither ``-q`` nor ``-v`` (which shows the installers' own output): one line
        redrawn in place (``\\r``) with the counts and the seconds the step has taken, kept when it
        ends. Elsewhere nothing."""
        if not self.tty or self.verbosity != 0:
            yield _Silent()
            return
        line = _ProgressLine(title, unit)
        ticker = threading.Thread(target=line.tick, daemon=True)
        ticker.start()
        try:
            yield line
        finally:
            line.finish()
            ticker.join()


_YELLOW, _CYAN, _PLAIN = "\x1b[33m", "\x1b[36m", "\x1b[0m"


def _write_line(stream: TextIO, line: str, *, color: bool) -> None:
    """One line, flushed; without colour, any ANSI style the text carries (an installer's) is dropped, as
    ``click.echo`` drops it."""
    if not color and "\x1b" in line:
        import re

        line = re.sub(r"\x1b\[[;?0-9]*[a-zA-Z]", "", line)
    stream.write(line + "\n")
    stream.flush()


class _Silent:
    def update(self, done: int, total: int) -> None:
        pass


class _ProgressLine:
    """``  hashing: 1200/49208 files, 3.1s``, redrawn on each count (at most ten times a second) and
    every :data:`TICK` seconds, so a step that counts nothing (an installer run) still shows time."""

    def __init__(self, title: str, unit: str) -> None:
        self.title, self.unit = title, unit
        self.started = time.monotonic()
        self.counts: tuple[int, int] | None = None
        self.drawn = 0.0
        self.lock = threading.Lock()
        self.stopped = threading.Event()

    def update(self, done: int, total: int) -> None:
        with self.lock:
            self.counts = (done, total)
            if done >= total or time.monotonic() - self.drawn >= 0.1:
                self._draw()

    def tick(self) -> None:
        while not self.stopped.wait(TICK):
            with self.lock:
                self._draw()

    def finish(self) -> None:
        self.stopped.set()
        with self.lock:
            self._draw()
            sys.stderr.write("\n")
            sys.stderr.flush()

    def _draw(self) -> None:
        self.drawn = time.monotonic()
        counts = f"{self.counts[0]}/{self.counts[1]} {self.unit}, " if self.counts else ""
        sys.stderr.write(f"\r\x1b[K  {self.title}: {counts}{self.drawn - self.started:.1f}s")
        sys.stderr.flush()
