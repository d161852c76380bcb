"""What the last ``layerenv sync`` left in a project venv, and whether the project moved on since:
read on every ``uv run`` and ``uv sync`` in the project, so standard library only."""

from __future__ import annotations

import hashlib
import os

from layerenv import __version__

# mypy takes it as true; json, typing, pathlib and collections.abc cost the venv's `uv` half its start-up
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path
    from typing import TypeAlias

    StrPath: TypeAlias = "str | os.PathLike[str]"
SYNC_STATE = "layerenv-sync.json"  # in the venv: what the last sync installed, from which lock
SYNC_KEY = "layerenv-sync.key"  # in the venv: what the last sync depended on, in three lines (see `sync_key`)
LOCK_FILES = ("uv.lock", "pylock.toml", "poetry.lock")  # the first present wins


def lock_file(project_dir: StrPath) -> str | None:
    """The project's lock (:data:`LOCK_FILES`), as a path string."""
    return next((path for name in LOCK_FILES if os.path.isfile(path := os.path.join(project_dir, name))), None)


def find_lock(project_dir: Path) -> Path | None:
    found = lock_file(project_dir)
    return None if found is None else project_dir / os.path.basename(found)


def file_digest(path: StrPath) -> str:
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return ""


def read_state(venv: StrPath) -> dict[str, object]:
    import json

    try:
        with open(os.path.join(venv, SYNC_STATE), encoding="utf-8") as handle:
            data = json.load(handle)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def is_stale(venv: StrPath, project_dir: StrPath) -> bool:
    """Whether the project's lock or pyproject changed since the venv's last sync (or none was made)."""
    state = read_state(venv)
    lock = lock_file(project_dir)
    return (
        not state
        or lock is None
        or state.get("lock_sha256") != file_digest(lock)
        or state.get("pyproject_sha256") != file_digest(os.path.join(project_dir, "pyproject.toml"))
    )


def fingerprint(venv: StrPath, project_dir: StrPath, site_packages: str, selection: str) -> str:
    """What a sync depends on besides its lock: its ``selection`` (extras and groups), the project's
    pyproject.toml and the venv's pyvenv.cfg (its own path aside) byte for byte, and the names in
    ``site-packages`` (``venv``-relative; each ``.dist-info`` carries its version, so an install,
    upgrade or removal by hand, a lost stub or another base's stubs change them). No absolute path
    goes in: ``layerenv project`` syncs a staging venv, then moves it into place."""
    pyproject = file_digest(os.path.join(project_dir, "pyproject.toml"))
    digest = hashlib.sha256(f"layerenv {__version__}\n{selection}\n{pyproject}\n".encode())
    try:  # its `command` line names the venv's own path, which the move rewrites
        with open(os.path.join(venv, "pyvenv.cfg"), "rb") as handle:
            config = handle.read().replace(os.fsencode(os.path.abspath(venv)), b"<venv>")
    except OSError:
        config = b""
    digest.update(config + b"\n")
    try:
        names = sorted(name for name in os.listdir(os.path.join(venv, site_packages)) if name != "__pycache__")
    except OSError:
        return ""
    digest.update("\0".join(names).encode())
    return digest.hexdigest()


def lock_python(venv: StrPath, fallback: StrPath) -> str:
    """The interpreter ``uv lock`` runs with: the one the venv was made from (its pyvenv.cfg), of the
    same version as the venv's and known to uv's cache across projects, where uv would otherwise
    query each new venv's interpreter (tens of ms, with the venv's boot ``.pth``); else ``fallback``."""
    try:
        with open(os.path.join(venv, "pyvenv.cfg"), encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, ValueError):
        return os.fspath(fallback)
    values = {key.strip(): value.strip() for key, _, value in (line.partition("=") for line in lines)}
    for key in ("base-executable", "executable"):
        found = values.get(key, "")
        if found and os.path.isfile(found):
            return found
    # uv's pyvenv.cfg names no executable: its python links to the interpreter it was made from
    linked = os.path.realpath(os.path.join(venv, "bin", "python"))
    inside = os.path.realpath(venv) + os.sep
    if "home" in values and not linked.startswith(inside) and os.path.isfile(linked):
        return linked
    return os.fspath(fallback)


def sync_key(site_packages: str, fingerprint_: str, lock: StrPath) -> str:
    """The :data:`SYNC_KEY` file's text: where site-packages is, the :func:`fingerprint`, and the
    lock's name and digest (apart: the venv's ``uv sync`` compares the lock after ``uv lock``)."""
    return f"{site_packages}\n{fingerprint_}\n{os.path.basename(lock)} {file_digest(lock)}\n"


def read_sync_key(venv: StrPath) -> tuple[str, str, str]:
    """The last sync's (site-packages, fingerprint, lock line); empty strings where none is recorded."""
    try:
        with open(os.path.join(venv, SYNC_KEY), encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, ValueError):
        return "", "", ""
    return (lines[0], lines[1], lines[2]) if len(lines) == 3 else ("", "", "")


def unchanged_since_sync(venv: StrPath, project_dir: StrPath, selection: str) -> bool:
    """Whether what :func:`fingerprint` covers is as the last sync left it, for the same ``selection``."""
    site, recorded, _ = read_sync_key(venv)
    return bool(recorded) and fingerprint(venv, project_dir, site, selection) == recorded


def lock_unchanged_since_sync(venv: StrPath, lock: StrPath) -> bool:
    return read_sync_key(venv)[2] == f"{os.path.basename(lock)} {file_digest(lock)}"


def portable_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment for uv's project commands: no ``UV_CONSTRAINT`` (``uv add``/``uv lock`` would
    add the base's labelled pin to the resolution, making ``torch>=2.0`` unsatisfiable from PyPI and
    the lock unportable)."""
    return {k: v for k, v in environ.items() if k not in ("UV_CONSTRAINT", "PIP_CONSTRAINT")}
