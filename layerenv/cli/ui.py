"""How commands talk to a person: step lines on stderr, quiet with -q, detail with -v."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import click

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
        click.echo(f"{prefix}{text}", err=True, color=self.color)

    def warn(self, text: str) -> None:
        if self.verbosity < -1:
            return
        label = click.style("warning:", fg="yellow") if self.color else "warning:"
        click.echo(f"{label} {text}", err=True, color=self.color)

    def note(self, text: str) -> None:
        if self.verbosity < 0:
            return
        label = click.style("note:", fg="cyan") if self.color else "note:"
        click.echo(f"{label} {text}", err=True, color=self.color)

    def result(self, text: str) -> None:
        click.echo(text)

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
