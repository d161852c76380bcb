"""The RECORD-style sha256 of a file: urlsafe base64 without padding, streamed in 1 MiB chunks."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

CHUNK = 1024 * 1024


def file_digest(path: str | Path, buffer: memoryview | None = None) -> str:
    """The RECORD-style sha256 of a file (urlsafe base64, no padding), streamed in 1 MiB chunks."""
    hasher = hashlib.sha256()
    view = memoryview(bytearray(CHUNK)) if buffer is None else buffer
    with open(path, "rb", buffering=0) as handle:  # noqa: PTH123 - the hot loop stays off pathlib
        while count := handle.readinto(view):
            hasher.update(view[:count])
    return b64(hasher.digest())


def b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
