"""Running a probe command: argument list, timeout, and a kill that reaches the whole process group."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import subprocess


class ProbeFailed(Exception):
    """A probe command could not be run or did not finish; the message is one line."""


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


class Runner(Protocol):
    def __call__(self, argv: Sequence[str], timeout: float) -> CommandResult: ...


def run_command(argv: Sequence[str], timeout: float) -> CommandResult:
    """Run ``argv`` (no shell) and return its decoded output; raise ``ProbeFailed`` on timeout or OSError."""
    import subprocess  # deferred: most runs answer from sysfs and NVML without a child process

    name = Path(argv[0]).name if argv else "?"
    try:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise ProbeFailed(f"could not run {name}: {exc.strerror or exc}") from None
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_session(process)
        raise ProbeFailed(f"{name} timed out after {timeout:.1f} s") from None
    except BaseException:
        _kill_session(process)
        raise
    return CommandResult(
        returncode=process.returncode,
        stdout=stdout.decode("utf-8", errors="replace"),
        stderr=stderr.decode("utf-8", errors="replace"),
    )


def _kill_session(process: subprocess.Popen[bytes]) -> None:
    # SIGKILL the whole group: the child may ignore SIGTERM, and grandchildren holding
    # our pipes would otherwise keep communicate() waiting for EOF.
    if sys.platform != "win32":
        import signal

        with contextlib.suppress(OSError):
            os.killpg(process.pid, signal.SIGKILL)
    process.kill()
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()
    process.wait()
