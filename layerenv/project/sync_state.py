"""What the last ``layerenv sync`` left in a project venv, and whether the project moved on since:
read on every ``uv run`` and ``uv sync`` in the project, so standard library only."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from layerenv import __version__

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


def fingerprint(venv: Path, project_dir: Path, site_packages: str) -> str:
    """What a sync depends on besides its lock and options: the project's pyproject.toml and the
    venv's pyvenv.cfg (its own path aside) byte for byte, and the names in ``site-packages`` (``venv``-relative; each
    ``.dist-info`` carries its version, so an install, upgrade or removal by hand, a lost stub or
    another base's stubs change them). No absolute path goes in: ``layerenv project`` syncs a staging
    venv, then moves it into place."""
    digest = hashlib.sha256(f"layerenv {__version__}\n{file_digest(project_dir / 'pyproject.toml')}\n".encode())
    try:  # its `command` line names the venv's own path, which the move rewrites
        config = (venv / "pyvenv.cfg").read_bytes().replace(bytes(venv.absolute()), b"<venv>")
    except OSError:
        config = b""
    digest.update(config + b"\n")
    try:
        names = sorted(entry.name for entry in (venv / site_packages).iterdir() if entry.name != "__pycache__")
    except OSError:
        return ""
    digest.update("\0".join(names).encode())
    return digest.hexdigest()


def unchanged_since_sync(state: Mapping[str, object], venv: Path, project_dir: Path) -> bool:
    """Whether what :func:`fingerprint` covers is as the sync that wrote ``state`` left it."""
    site, recorded = state.get("site_packages"), state.get("fingerprint")
    if not (isinstance(site, str) and isinstance(recorded, str) and recorded):
        return False
    return fingerprint(venv, project_dir, site) == recorded


def portable_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment for uv's project commands: no ``UV_CONSTRAINT`` (``uv add``/``uv lock`` would
    add the base's labelled pin to the resolution, making ``torch>=2.0`` unsatisfiable from PyPI and
    the lock unportable)."""
    return {k: v for k, v in environ.items() if k not in ("UV_CONSTRAINT", "PIP_CONSTRAINT")}
