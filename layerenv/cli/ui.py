"""How commands talk to a person: step lines on stderr, quiet with -q, detail with -v."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping

import click


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
