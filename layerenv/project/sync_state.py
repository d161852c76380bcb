"""What the last ``layerenv sync`` left in a project venv, and whether the project moved on since:
read on every ``uv run`` in the project, so standard library only."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

SYNC_STATE = "layerenv-sync.json"  # in the venv: what the last sync installed, from which lock
LOCK_FILES = ("uv.lock", "pylock.toml", "poetry.lock")  # the first present wins


def find_lock(project_dir: Path) -> Path | None:
    return next((project_dir / name for name in LOCK_FILES if (project_dir / name).is_file()), None)


def file_digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def read_state(venv: Path) -> dict[str, object]:
    try:
        data = json.loads((venv / SYNC_STATE).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def is_stale(venv: Path, project_dir: Path) -> bool:
    """Whether the project's lock or pyproject changed since the venv's last sync (or none was made)."""
    state = read_state(venv)
    lock = find_lock(project_dir)
    return (
        not state
        or lock is None
        or state.get("lock_sha256") != file_digest(lock)
        or state.get("pyproject_sha256") != file_digest(project_dir / "pyproject.toml")
    )


def portable_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment for uv's project commands: no ``UV_CONSTRAINT`` (``uv add``/``uv lock`` would
    add the base's labelled pin to the resolution, making ``torch>=2.0`` unsatisfiable from PyPI and
    the lock unportable)."""
    return {k: v for k, v in environ.items() if k not in ("UV_CONSTRAINT", "PIP_CONSTRAINT")}
