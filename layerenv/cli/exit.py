"""The one exit boundary: every way a ``layerenv`` process ends, as one line on stderr and an exit code.

Both the click CLI and the click-free fast path run their work inside :func:`exit_boundary`:

- a :class:`~layerenv.errors.LayerenvError`: ``layerenv: error: <message>``, its exit code (2 bad input);
- ``KeyboardInterrupt``: ``layerenv: interrupted``, 130;
- ``BrokenPipeError`` (``layerenv status | head -1``): nothing more written, 1 (as click does);
- anything else is a bug: ``layerenv: error: internal error: <Type>: <message> (details: <log>)``, 1,
  with the traceback written to a log in the store's ``logs/`` (a temporary file when there is no
  store) and printed too with ``-v``.

``SystemExit`` passes through: its exit code was chosen on purpose. Importing this module stays cheap
and click-free: the fast path goes through it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from layerenv.errors import EXIT_FAILURE, LayerenvError

if TYPE_CHECKING:
    from layerenv.cli.session import Session

EXIT_INTERRUPTED = 130


class Invocation:
    """What the boundary knows of the run it guards: how verbose it is and the session it opened.

    A plain class, not a dataclass: building one costs the fast path's start-up about a millisecond.
    """

    def __init__(self) -> None:
        self.verbosity = 0
        self.session: Session | None = None


@contextmanager
def exit_boundary(invocation: Invocation) -> Iterator[None]:
    """Run the block; an exception leaving it ends the process with its line and exit code."""
    try:
        yield
        sys.stdout.flush()  # inside the boundary: a reader that went away is seen here, not at shutdown
    except Exception as error:  # the boundary: every failure becomes one line
        sys.exit(exit_code_for(error, invocation))
    except KeyboardInterrupt as interrupt:
        sys.exit(exit_code_for(interrupt, invocation))


def exit_code_for(error: BaseException, invocation: Invocation) -> int:
    """Say on stderr what ended the run, in one line (and a log for a bug); the exit code."""
    if isinstance(error, LayerenvError):
        _say(f"layerenv: error: {error.message}")
        return error.exit_code
    if isinstance(error, KeyboardInterrupt):
        _say("layerenv: interrupted")
        return EXIT_INTERRUPTED
    if isinstance(error, BrokenPipeError):
        _silence_stdout()
        return EXIT_FAILURE
    return _internal_error(error, invocation)


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except UnicodeEncodeError:  # a path that is not valid in stderr's encoding: escaped, still one line
        print(line.encode("ascii", "backslashreplace").decode("ascii"), file=sys.stderr, flush=True)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's own flush at exit cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file behind stdout (a test's capture): nothing to flush later
        pass


def _internal_error(error: BaseException, invocation: Invocation) -> int:
    import traceback

    details = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    if invocation.verbosity > 0:
        sys.stderr.write(details)
    log = _write_log(details, invocation)
    text = " ".join(str(error).split())
    what = f"{type(error).__name__}: {text}" if text else type(error).__name__
    _say(f"layerenv: error: internal error: {what} (details: {log})")
    return EXIT_FAILURE


def _write_log(details: str, invocation: Invocation) -> str:
    """The traceback, with what was run, in the store's ``logs/`` or else a temporary file; its path."""
    import platform
    import time

    from layerenv import __version__

    text = (
        f"layerenv {__version__} on Python {platform.python_version()} ({sys.executable})\n"
        f"argv: {sys.argv!r}\ncwd: {Path.cwd()}\ntime: {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n\n{details}"
    )
    directory = _store_logs(invocation)
    if directory is not None:
        path = directory / f"internal-error-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
        from layerenv.store.atomic import open_log

        try:
            with open_log(path, new=True) as log:
                log.write(text)
            return str(path)
        except (OSError, LayerenvError):
            pass  # a read-only store, or a name someone took: the temporary directory below
    import tempfile

    try:
        handle, name = tempfile.mkstemp(prefix="layerenv-internal-error-", suffix=".log")
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
    except OSError as failure:
        return f"none written ({failure.strerror}); run again with -v for the traceback"
    return name


def _store_logs(invocation: Invocation) -> Path | None:
    if invocation.session is None:
        return None
    try:
        return invocation.session.log_dir()
    except (LayerenvError, OSError):  # the store itself is unusable (a bad LAYERENV_HOME): no store
        return None
