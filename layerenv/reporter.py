"""How long-running library calls tell a person what they are doing (the CLI supplies one), and sizes
written for people."""

from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    def step(self, text: str) -> None: ...

    def warn(self, text: str) -> None: ...


def format_size(value: int) -> str:
    """Bytes for people: ``7565312`` -> ``7.2 MB``."""
    size = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"  # pragma: no cover
