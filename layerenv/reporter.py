"""How long-running library calls tell a person what they are doing (the CLI supplies one), and sizes
written for people."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol


class Reporter(Protocol):
    def step(self, text: str) -> None: ...

    def warn(self, text: str) -> None: ...


class Progress(Protocol):
    """A long step's counts as they grow (``done`` of ``total`` files, say)."""

    def update(self, done: int, total: int) -> None: ...


class ShowsProgress(Protocol):
    """A reporter that can show a long step as it runs (a terminal's updating line)."""

    def progress(self, title: str, unit: str) -> AbstractContextManager[Progress]: ...


class _Unseen:
    def update(self, done: int, total: int) -> None:
        pass


@contextmanager
def progress(reporter: object, title: str, unit: str = "files") -> Iterator[Progress]:
    """The step's progress, shown where ``reporter`` can show it (see :class:`ShowsProgress`), else
    nowhere: library callers and logs get the step lines only."""
    start = getattr(reporter, "progress", None)
    if start is None:
        yield _Unseen()
        return
    with start(title, unit) as shown:
        yield shown


def format_size(value: int) -> str:
    """Bytes for people: ``7565312`` -> ``7.2 MB``."""
    size = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"  # pragma: no cover
