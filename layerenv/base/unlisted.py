"""Files in a base that no ``RECORD`` lists: each one is code or data no installed distribution owns.

A ``RECORD`` hashes what its distribution installed; the rest of a venv is what virtualenv and the
installer wrote around it (``pyvenv.cfg``, ``bin/python``, activation scripts, uv's ``.lock``) and
layerenv's manifest. When a base is published, :func:`capture_own_files` records each such file with
its sha256 (a link with its target) in the manifest's ``venv_files``, relative to the venv, so a later
check knows every file that belongs there: anything else found then is *unlisted*, and a recorded one
that changed is *modified*. Bytecode caches (``__pycache__/*.pyc``) are allowed: Python uses them only
for a source file beside them. A base published before ``venv_files`` existed is checked against the
names virtualenv writes instead.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from layerenv.base.digest import file_digest
from layerenv.store.home import MANIFEST_NAME
from layerenv.venv.distinfo import read_distributions
from layerenv.venv.layout import VenvLayout
from layerenv.venv.startup import VIRTUALENV_PTH, is_virtualenv_hook, record_paths

LINK = "->"  # venv_files value of a symbolic link: LINK + its target
_ROOT_FILES = frozenset({"pyvenv.cfg", "CACHEDIR.TAG", ".gitignore", MANIFEST_NAME})
_SCRIPT_PREFIXES = ("activate", "deactivate", "python", "pypy")


def walk_files(root: Path) -> Iterator[str]:
    """Every non-directory under ``root`` and every link (to a directory too), never following one;
    bytecode caches are left out."""
    for directory, dirs, files in os.walk(root):
        cache = directory.endswith(f"{os.sep}__pycache__")
        for name in files:
            if not (cache and name.endswith(".pyc")):
                yield os.path.join(directory, name)  # noqa: PTH118 - 15k files: strings stay cheap
        for name in dirs:
            path = os.path.join(directory, name)  # noqa: PTH118
            if os.path.islink(path):  # noqa: PTH114
                yield path


def fingerprint(path: str) -> str | None:
    """A link's target, a regular file's RECORD-style sha256; None for anything else (a fifo, a socket)."""
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode):
        return LINK + os.readlink(path)  # noqa: PTH115
    return file_digest(path) if stat.S_ISREG(mode) else None


def scan_root(venv: Path, adopted: bool) -> Path:
    """What belongs to a base: a built one's whole venv; of an adopted environment (a conda env, a
    system Python) only its site-packages, the rest is the environment's own business."""
    return VenvLayout.for_venv(venv).site_packages if adopted else venv


def hashed_paths(site: Path) -> set[str]:
    """Every file a RECORD in ``site`` hashes (so a check covers it), and every RECORD itself."""
    covered: set[str] = set()
    for dist in read_distributions(site):
        record = dist.dist_info / "RECORD"
        covered.add(os.path.normpath(str(record)))
        try:
            text = record.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        covered |= record_paths(site, text, hashed_only=True)
    return covered


def capture_own_files(venv: Path, *, adopted: bool = False) -> dict[str, str]:
    """What the manifest keeps as ``venv_files``: each file of the base that no RECORD hashes."""
    site = VenvLayout.for_venv(venv).site_packages
    covered = hashed_paths(site)
    captured = {}
    manifest = str(venv / MANIFEST_NAME)
    for path in walk_files(scan_root(venv, adopted)):
        if path in covered or path == manifest:
            continue
        value = fingerprint(path)
        if value is not None:
            captured[os.path.relpath(path, venv).replace(os.sep, "/")] = value
    return captured


@dataclass(frozen=True)
class Scan:
    unlisted: tuple[str, ...]  # absolute paths
    modified: tuple[str, ...]  # recorded in venv_files, and now different
    missing: tuple[str, ...]  # recorded in venv_files, and now gone


def scan(venv: Path, *, adopted: bool, listed: set[str], own: dict[str, str] | None,
         since: float | None = None) -> Scan:
    """Compare the files found with those the RECORDs list (``listed``: absolute, normalised) and the
    manifest's ``own`` files. ``since`` (doctor's quick mode): an own regular file not changed after
    that time by its mtime is taken as intact."""
    unlisted, modified = [], []
    seen: set[str] = set()
    prefix = str(venv) + os.sep
    for path in walk_files(scan_root(venv, adopted)):
        rel = path.removeprefix(prefix).replace(os.sep, "/")
        if path in listed and (own is None or rel not in own):  # listed with no hash: ours to check
            continue
        if rel == MANIFEST_NAME:
            continue
        if own is None:
            if not _written_by_virtualenv(rel, path, venv):
                unlisted.append(path)
            continue
        expected = own.get(rel)
        if expected is None:
            if not (rel == ".lock" and _empty(path)):  # uv creates it by touching the venv: no code, no data
                unlisted.append(path)
            continue
        seen.add(rel)
        if not _same(path, expected, since):
            modified.append(path)
    missing = [str(venv / rel) for rel in sorted(set(own or {}) - seen)]
    return Scan(tuple(sorted(unlisted)), tuple(sorted(modified)), tuple(missing))


def _same(path: str, expected: str, since: float | None) -> bool:
    try:
        if since is not None and not expected.startswith(LINK):
            status = os.lstat(path)
            if stat.S_ISREG(status.st_mode) and status.st_mtime <= since:
                return True
        return fingerprint(path) == expected
    except OSError:
        return False


def _empty(path: str) -> bool:
    try:
        status = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(status.st_mode) and status.st_size == 0


def _written_by_virtualenv(rel: str, path: str, venv: Path) -> bool:
    """A base published before ``venv_files``: the names virtualenv (and uv's ``.lock``) write."""
    parts = rel.split("/")
    if len(parts) == 1:
        return parts[0] in _ROOT_FILES or (parts[0] == ".lock" and _empty(path))
    layout = VenvLayout.for_venv(venv)
    if len(parts) == 2 and parts[0] == layout.bin_dir.name:
        return parts[1].startswith(_SCRIPT_PREFIXES)
    if Path(path).parent == layout.site_packages:
        if parts[-1] == VIRTUALENV_PTH:
            return is_virtualenv_hook(Path(path))
        return parts[-1] == "_virtualenv.py" and _virtualenv_patch(path)
    return False


def _virtualenv_patch(path: str) -> bool:
    """The patch module the installed virtualenv writes beside ``_virtualenv.pth``, byte for byte."""
    import importlib.util

    spec = importlib.util.find_spec("virtualenv")
    if spec is None or spec.origin is None:
        return False
    shipped = Path(spec.origin).parent / "create" / "via_global_ref" / "_virtualenv.py"
    try:
        return shipped.read_bytes() == Path(path).read_bytes()
    except OSError:
        return False


def listed_paths(site: Path, texts: list[str]) -> set[str]:
    """Every path the given RECORD texts list, absolute and normalised."""
    listed: set[str] = set()
    for text in texts:
        listed |= record_paths(site, text)
    return listed
