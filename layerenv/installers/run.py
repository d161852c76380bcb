"""The one place an installer's subprocess runs: argv and output reach the log, the terminal and
error messages only with credentials redacted."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from layerenv.installers.protocol import InstallerFailed, Log
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
        log.path.parent.mkdir(parents=True, exist_ok=True)
        with log.path.open("a", encoding="utf-8") as handle:
            handle.write(redact_text("$ " + " ".join(argv)) + "\n")
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
        with log.path.open("a", encoding="utf-8") as handle:
            handle.write(ran.stdout + ran.stderr + f"[exit {ran.returncode}]\n")
    if log.verbose:
        import click

        click.echo(ran.output, err=True, nl=False)
    return ran


def failure_summary(ran: Ran) -> str:
    """The last line that looks like the reason (an error, no matching distribution), else the last line."""
    lines = [line.strip() for line in (ran.stderr + ran.stdout).splitlines() if line.strip()]
    interesting = [line for line in lines if "error" in line.lower() or "no matching" in line.lower()]
    return (interesting or lines or [f"exit {ran.returncode}"])[-1]


def failure(installer: str, ran: Ran, log: Log) -> InstallerFailed:
    """``pip failed: <reason> (log: <path>)``, carrying the redacted output for callers that explain it."""
    message = f"{installer} failed: {failure_summary(ran)} (log: {log.path})"
    return InstallerFailed(message, stdout=ran.stdout, stderr=ran.stderr, log=log.path)
