"""Where this machine's uv is: on ``PATH``, else the binary the ``uv`` package from PyPI ships."""

from __future__ import annotations

import shutil


def find_uv() -> str | None:
    found = shutil.which("uv")
    if found:
        return found
    try:
        from uv import find_uv_bin  # type: ignore[import-not-found,unused-ignore]

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        return None
