"""The one place an installer's subprocess runs: argv and output reach the log, the terminal and
error messages only with credentials redacted."""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from layerenv.installers.protocol import InstallerFailed, Log
from layerenv.store.atomic import open_log
from layerenv.urls import redact_text


@dataclass(frozen=True)
class Ran:
    """A finished installer run; ``stdout``/``stderr`` are already redacted."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run(argv: Sequence[str], log: Log, env: Mapping[str, str] | None = None) -> Ran:
    """Run ``argv`` (no stdin); the log gets ``$ argv`` first (so a killed run still names it), then
    the output and the exit status."""
    if log.path is not None:
        with open_log(log.path) as handle:
            handle.write(redact_text("$ " + " ".join(argv)) + "\n")
            handle.write(redact_text(_requirement_files(argv)))
    result = subprocess.run(
        list(argv),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        env=dict(env) if env is not None else None,
        check=False,
    )
    ran = Ran(result.returncode, redact_text(result.stdout), redact_text(result.stderr))
    if log.path is not None:
        with open_log(log.path) as handle:
            handle.write(ran.stdout + ran.stderr + f"[exit {ran.returncode}]\n")
    if log.verbose:
        import click

        click.echo(ran.output, err=True, nl=False)
    return ran


def _requirement_files(argv: Sequence[str]) -> str:
    """What each ``-r FILE`` given asks for, indented under the command line: the log then says what
    was installed, not only where the list was."""
    text = ""
    for flag, value in itertools.pairwise(argv):
        if flag in ("-r", "--requirement"):
            try:
                lines = Path(value).read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                continue
            text += "".join(f"  {value}: {line}\n" for line in lines if line.strip())
    return text


def failure_summary(ran: Ran) -> str:
    """The last line that looks like the reason (an error, no matching distribution), else the last line."""
    lines = [line.strip() for line in (ran.stderr + ran.stdout).splitlines() if line.strip()]
    interesting = [line for line in lines if "error" in line.lower() or "no matching" in line.lower()]
    return (interesting or lines or [f"exit {ran.returncode}"])[-1]


def failure(installer: str, ran: Ran, log: Log) -> InstallerFailed:
    """``pip failed: <reason> (log: <path>)``, carrying the redacted output for callers that explain it."""
    message = f"{installer} failed: {failure_summary(ran)} (log: {log.path})"
    return InstallerFailed(message, stdout=ran.stdout, stderr=ran.stderr, log=log.path)
