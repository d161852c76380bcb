"""The ``uv`` command of a project venv: a small script that routes uv's project commands through
layerenv (:mod:`layerenv.project.uv_fast`, then :mod:`layerenv.project.uv_shim`), so an activated
shell or ``layerenv run`` never lets ``uv sync``/``uv run``/``uv add`` download a torch. Written by
``link``; never over a real ``uv``."""

from __future__ import annotations

import sys
from pathlib import Path

from layerenv.project.uv_fast import SHIM_MARK, is_shim
from layerenv.store.atomic import NOW, Writer
from layerenv.venv.layout import VenvLayout

_SHIM = """{shebang}
{mark}: uv's project commands in this layered venv go through layerenv; the rest reach the real uv
import sys

sys.path.insert(0, {parent!r})
from layerenv.project.uv_shim import main

sys.exit(main({venv!r}, sys.argv[1:]))
"""


def _shebang(python: str) -> str:
    # -S: no site-packages at start-up; uv_fast adds them only where layerenv has work to do
    if " " not in python and len(python) < 120:
        return f"#!{python} -S"
    return f"#!/bin/sh\n'''exec' \"{python}\" -S \"$0\" \"$@\"\n' '''"  # pip's trick for awkward paths


def write_uv_shim(venv: Path, *, writer: Writer = NOW) -> Path | None:
    """``<venv>/bin/uv``, run by layerenv's own interpreter; None where a real uv stands there (the
    project installed uv itself) or on Windows."""
    layout = VenvLayout.for_venv(venv)
    if layout.windows:
        return None
    target = layout.script("uv")
    if target.exists() and not is_shim(target):
        return None
    parent = str(Path(__file__).resolve().parents[2])
    text = _SHIM.format(shebang=_shebang(sys.executable), mark=SHIM_MARK, parent=parent, venv=str(venv))
    if not target.is_file() or target.read_text(encoding="utf-8", errors="replace") != text:
        writer.write_text(target, text, mode=0o755, durable=False)
    return target
