"""Files an interpreter runs at every start from a site-packages directory, and who put them there.

``site`` executes each ``*.pth`` line that starts with ``import`` and then imports ``sitecustomize``
and ``usercustomize`` (a module, a package or an extension of that name): whatever stands there runs
in every process of the environment, so each such file must come from an installed distribution
(its ``RECORD`` lists it) or from the tools that made the venv.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from pathlib import Path

from layerenv.venv.distinfo import read_distributions

STARTUP_MODULES = ("sitecustomize", "usercustomize")
VIRTUALENV_PTH = "_virtualenv.pth"
_VIRTUALENV_PTH_TEXT = b"import _virtualenv"  # what virtualenv (<3.10 targets, or older releases) and uv write


def is_startup_name(name: str) -> bool:
    """Whether a top-level entry of site-packages named ``name`` runs at interpreter start."""
    stem = name.split(".", 1)[0]
    return name.endswith(".pth") or stem in STARTUP_MODULES


def startup_entries(site: Path) -> list[Path]:
    """The top-level entries of ``site`` that run at interpreter start (links too, never followed)."""
    try:
        with os.scandir(site) as entries:
            return sorted(Path(entry.path) for entry in entries if is_startup_name(entry.name))
    except OSError:
        return []


def is_virtualenv_hook(path: Path) -> bool:
    """``_virtualenv.pth`` as virtualenv and uv write it: one line importing their patch module."""
    if path.name != VIRTUALENV_PTH or path.is_symlink():
        return False
    try:
        return path.read_bytes().strip() == _VIRTUALENV_PTH_TEXT
    except OSError:
        return False


def record_paths(site: Path, record_text: str, *, hashed_only: bool = False) -> set[str]:
    """Every path a ``RECORD`` lists (``hashed_only``: with a sha256), absolute and normalised against ``site``."""
    found = set()
    base = str(site)
    for row in csv.reader(io.StringIO(record_text)):
        if row and row[0] and (not hashed_only or (len(row) > 1 and row[1].startswith("sha256="))):
            found.add(os.path.normpath(os.path.join(base, row[0].replace("\\", "/"))))  # noqa: PTH118
    return found


def unlisted_by_records(site: Path, candidates: Iterable[Path]) -> list[Path]:
    """The ``candidates`` that no ``RECORD`` in ``site`` lists; RECORDs are read only while some remain."""
    left = {os.path.normpath(str(path)): path for path in candidates}
    for dist in read_distributions(site) if left else ():
        try:
            text = (dist.dist_info / "RECORD").read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for listed in record_paths(site, text) & left.keys():
            del left[listed]
        if not left:
            break
    return sorted(left.values())
