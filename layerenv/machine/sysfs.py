"""Reading the small text files that sysfs and procfs expose, under a sysroot."""

from __future__ import annotations

from pathlib import Path


def read_text(path: Path) -> str | None:
    """The file's text with undecodable bytes replaced, or ``None`` when it cannot be read."""
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return None


def under(sysroot: Path, absolute: str) -> Path:
    """``absolute`` (``/sys/...``) as seen inside ``sysroot``."""
    return sysroot / absolute.lstrip("/")
