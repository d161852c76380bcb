"""``tomllib`` where the standard library has it, ``tomli`` before Python 3.11."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    import tomllib as toml
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as toml  # type: ignore[import-not-found,unused-ignore]

loads = toml.loads
TOMLDecodeError = toml.TOMLDecodeError

__all__ = ["TOMLDecodeError", "loads"]
