"""What a project venv holds of the torch family on its own, what that takes on disk, and its safe removal;
and the stubs a link left that are gone or no longer what layerenv wrote.

A *shadow* is a torch-family distribution (``layerenv.venv.distinfo.is_family``: torch, torchvision,
torchaudio, triton, pytorch-triton, ``nvidia-*``, ``cuda-*``) really installed into the project by
pip, uv or poetry, or a family module copied in without a dist-info. It never loads (the boot finder
answers the family from the base) but it takes gigabytes, and installers take it for the project's
torch. :func:`remove_shadows` deletes them through their RECORD, touching only regular files, links
themselves and then empty directories inside the venv's site-packages and scripts folder, never
anything reached through a symlinked directory.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from layerenv.project.link import LinkRecord, read_link
from layerenv.project.stubs import STUB_INSTALLER, STUB_MARKER
from layerenv.venv.distinfo import (
    Distribution,
    canonical_name,
    is_family,
    read_distributions,
    record_paths,
)
from layerenv.venv.layout import VenvLayout

__all__ = [
    "Removal",
    "Shadow",
    "Skipped",
    "find_shadows",
    "remove_shadows",
    "shadowed_names",
    "stub_problems",
]


@dataclass(frozen=True)
class Shadow:
    """A torch-family distribution or module really installed in the project venv."""

    name: str
    version: str | None
    path: Path  # its dist-info, or the module's file or folder
    kind: Literal["distribution", "module"]
    size_bytes: int = 0  # its files inside the venv (lstat), each counted once

    def describe(self) -> str:
        return f"{self.name} {self.version}" if self.kind == "distribution" else f"{self.name} ({self.path})"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "kind": self.kind, "path": str(self.path),
                "bytes": self.size_bytes}


@dataclass(frozen=True)
class Skipped:
    """A path a shadow's RECORD lists that removal must not touch, and why."""

    path: str
    reason: str

    def describe(self) -> str:
        return f"{self.path} ({self.reason})"

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class Removal:
    """What :func:`remove_shadows` did."""

    removed: tuple[Shadow, ...]
    freed_bytes: int
    skipped: tuple[Skipped, ...]


#: Every family name starts with one of these: a cheap test of a folder name before the exact one.
_MAYBE_FAMILY = re.compile(r"(?i)(?:torch|triton|nvidia|cuda|pytorch).*\.dist-info\Z").match


def is_stub_dir(dist_info: Path) -> bool:
    """Whether a dist-info is one of layerenv's stubs: its marker, or (marker lost) its INSTALLER."""
    if (dist_info / STUB_MARKER).is_file():
        return True
    try:
        return (dist_info / "INSTALLER").read_text(encoding="utf-8", errors="replace").strip() == STUB_INSTALLER
    except OSError:
        return False


def _dist_info_name(folder: str) -> tuple[str, str]:
    """``nvidia_cublas_cu12-12.8.4.1.dist-info`` -> (``nvidia-cublas-cu12``, ``12.8.4.1``)."""
    name, _, version = folder[: -len(".dist-info")].partition("-")
    return canonical_name(name), version


def shadowed_names(venv: Path) -> list[tuple[str, str]]:
    """(name, version) of each torch-family dist-info in the project that is not a stub, from folder
    names alone: no METADATA or RECORD is read, so ``layerenv status`` stays fast."""
    try:
        site = VenvLayout.for_venv(venv).site_packages
        names = os.listdir(site)  # noqa: PTH208 - names only: status reads hundreds of these
    except (OSError, ValueError):
        return []
    family = [name for name in names if _MAYBE_FAMILY(name) and is_family(_dist_info_name(name)[0])]
    return sorted(_dist_info_name(name) for name in family if not is_stub_dir(site / name))


class _Venv:
    """The places removal may touch: the venv by its real path, its site-packages and scripts folder."""

    def __init__(self, venv: Path) -> None:
        self.root = Path(os.path.realpath(venv))
        layout = VenvLayout.for_venv(self.root)
        self.site = layout.site_packages
        self.scripts = layout.bin_dir
        self._links: dict[Path, str | None] = {}

    def target(self, rel: str) -> Path:
        return Path(os.path.normpath(self.site / rel))

    def refusal(self, path: Path) -> str | None:
        """Why ``path`` must not be touched, or None: it lies outside site-packages and the scripts
        folder, is the venv's own interpreter or activation script, or is reached through a link."""
        inside = [area for area in (self.site, self.scripts) if path != area and path.is_relative_to(area)]
        if not inside:
            return "outside the venv's site-packages and scripts folder"
        if inside[0] == self.scripts and path.parent == self.scripts and path.name.startswith(("python", "activate")):
            return "the venv's own interpreter or activation script"
        return self._through_link(path.parent)

    def _through_link(self, directory: Path) -> str | None:
        """Why a walk from the venv root down to ``directory`` is unsafe (a link or a non-folder on the way)."""
        if directory == self.root:
            return None
        if directory not in self._links:
            reason = self._through_link(directory.parent)
            if reason is None:
                try:
                    mode = directory.lstat().st_mode
                except FileNotFoundError:
                    mode = stat.S_IFDIR  # nothing there to remove; its entries are skipped as missing
                except OSError as error:
                    reason = f"{directory} cannot be read ({error.strerror})"
                    mode = stat.S_IFDIR
                if stat.S_ISLNK(mode):
                    reason = f"reached through the symlink {directory}"
                elif not stat.S_ISDIR(mode):
                    reason = f"{directory} is not a folder"
            self._links[directory] = reason
        return self._links[directory]


def _leaf_size(path: Path, seen: set[tuple[int, int]]) -> int | None:
    """Bytes of a regular file or link at ``path`` (lstat), 0 when counted already, None when it is
    neither (missing, a folder, a device...)."""
    try:
        info = path.lstat()
    except OSError:
        return None
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode)):
        return None
    key = (info.st_dev, info.st_ino)
    if key in seen:
        return 0
    seen.add(key)
    return info.st_size


def _tree(path: Path) -> Iterator[tuple[Path, bool]]:
    """Every entry under a real folder, deepest first, without following links: (path, is_folder)."""
    for root, dirs, files in os.walk(path, topdown=False, followlinks=False):
        for name in files:
            yield Path(root, name), False
        for name in dirs:
            child = Path(root, name)
            yield child, not child.is_symlink()
    yield path, True


def _record_of(dist_info: Path) -> list[str]:
    try:
        return record_paths((dist_info / "RECORD").read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return []


def _measure(place: _Venv, shadow_path: Path, kind: str) -> int:
    seen: set[tuple[int, int]] = set()
    if kind == "distribution":
        paths: Iterable[Path] = (place.target(rel) for rel in _record_of(shadow_path))
        candidates = [path for path in paths if place.refusal(path) is None]
        if place.refusal(shadow_path) is None and not shadow_path.is_symlink():
            candidates += [entry for entry, folder in _tree(shadow_path) if not folder]
    elif shadow_path.is_dir() and not shadow_path.is_symlink():
        candidates = [entry for entry, folder in _tree(shadow_path) if not folder]
    else:
        candidates = [shadow_path]
    return sum(_leaf_size(path, seen) or 0 for path in candidates)


def _is_stub(dist: Distribution) -> bool:
    return is_stub_dir(dist.dist_info)


def find_shadows(project_venv: Path) -> list[Shadow]:
    """Every torch-family distribution really installed in the project (never a stub), and every
    module of the base's family (from the venv's link record) present in the project without a
    distribution owning it; each with the bytes its files inside the venv take."""
    place = _Venv(project_venv)
    record = read_link(place.root)
    present: dict[str, list[Path]] = {}  # family modules with files in the project: stat calls, no parsing
    for module in sorted(set(record.family_modules if record else ())):
        paths = [place.site / module, place.site / f"{module}.py", *place.site.glob(f"{module}.*.so"),
                 *place.site.glob(f"{module}.*.pyd")]
        if existing := [path for path in paths if os.path.lexists(path)]:
            present[module] = existing
    if not present and not shadowed_names(project_venv):
        return []  # the healthy project, most of them: no METADATA or RECORD read (doctor at 1,000 projects)
    real = [d for d in read_distributions(place.site) if not _is_stub(d)]
    found: list[tuple[str, str | None, Path, Literal["distribution", "module"]]] = [
        (d.name, d.version, d.dist_info, "distribution") for d in real if is_family(d.name)
    ]
    owned = {module for d in real for module in d.top_level} if present else set()
    for module in sorted(set(present) - owned):
        found += [(module, None, path, "module") for path in present[module]]
    return [Shadow(name, version, path, kind, _measure(place, path, kind)) for name, version, path, kind in found]


def remove_shadows(project_venv: Path) -> Removal:
    """Remove every shadow: a distribution's RECORD entries, then its dist-info; a module's file or
    folder. Only regular files and links (the link itself, never what it points to) inside the venv's
    site-packages and scripts folder are removed, then the folders left empty; an entry outside them
    or reached through a symlinked folder is skipped and reported. Link again afterwards to restore
    the family's stubs and wrappers."""
    place = _Venv(project_venv)
    seen: set[tuple[int, int]] = set()
    freed = 0
    skipped: list[Skipped] = []
    removed: list[Shadow] = []
    emptied: set[Path] = set()

    def remove(path: Path) -> None:
        nonlocal freed
        size = _leaf_size(path, seen)
        if size is None:
            if os.path.lexists(path):
                skipped.append(Skipped(str(path), "not a regular file"))
            return
        try:
            path.unlink()
        except OSError as error:  # go on: the rest goes, the stubs come back, and this is reported
            skipped.append(Skipped(str(path), f"cannot be removed: {error.strerror}"))
            return
        freed += size
        emptied.add(path.parent)

    def refused(path: Path) -> bool:
        reason = place.refusal(path)
        if reason is not None:
            skipped.append(Skipped(str(path), reason))
        return reason is not None

    for shadow in find_shadows(place.root):
        path = shadow.path
        for target in [place.target(rel) for rel in _record_of(path)] if shadow.kind == "distribution" else []:
            if not refused(target):
                remove(target)
        if refused(path):
            continue
        if path.is_dir() and not path.is_symlink():  # what its RECORD did not list, and the folders
            for entry, is_folder in _tree(path):
                if not is_folder:
                    remove(entry)
                elif not any(entry.iterdir()):
                    _rmdir(entry)
            emptied.add(path.parent)
        else:
            remove(path)
        removed.append(shadow)
    for folder in sorted(emptied, key=lambda p: len(p.parts), reverse=True):
        _prune_empty(folder, place)
    return Removal(tuple(removed), freed, tuple(skipped))


def _prune_empty(folder: Path, place: _Venv) -> None:
    """Remove ``folder`` and its parents while they are empty real folders (a ``__pycache__`` of
    regular files alone counts as empty), stopping at site-packages or the scripts folder."""
    while place.refusal(folder) is None and folder.is_dir() and not folder.is_symlink():
        entries = list(folder.iterdir())
        if [entry.name for entry in entries] == ["__pycache__"]:
            cache = entries[0]
            if cache.is_symlink() or not cache.is_dir():
                return
            files = list(cache.iterdir())
            if any(f.is_symlink() or not f.is_file() for f in files):
                return
            try:
                for file in files:
                    file.unlink()
            except OSError:
                return
            if not _rmdir(cache):
                return
        elif entries:
            return
        if not _rmdir(folder):
            return
        folder = folder.parent


def _rmdir(folder: Path) -> bool:
    """Remove an empty folder; False when it cannot go (a folder left is harmless, and seen again)."""
    try:
        folder.rmdir()
    except OSError:
        return False
    return True


def _sha256_b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")


def _stub_problem(folder: Path, venv_site: Path) -> str | None:
    """What is wrong with one stub folder, checked against the RECORD layerenv wrote for it (stubs are
    a few small files: hashing them is cheap)."""
    try:
        record = (folder / "RECORD").read_text(encoding="utf-8")
    except OSError:
        return f"{folder / 'RECORD'} is missing"
    rows = [row for row in csv.reader(io.StringIO(record)) if len(row) >= 3 and row[1].startswith("sha256=")]
    if not any(row[0] == f"{folder.name}/METADATA" for row in rows):
        return f"{folder / 'RECORD'} does not list its METADATA"
    for rel, digest, size in (row[:3] for row in rows):
        path = Path(os.path.normpath(venv_site / rel))
        try:
            data = path.read_bytes()
        except OSError:
            return f"{path} is missing"
        if str(len(data)) != size or f"sha256={_sha256_b64(data)}" != digest:
            return f"{path} is not what layerenv wrote (truncated or edited)"
    return None


def stub_problems(project_venv: Path, record: LinkRecord) -> list[str]:
    """The stubs ``record`` names that are gone (and not replaced by the project's own install of that
    distribution) or whose files differ from their RECORD: then installers no longer see the base's
    distributions, and an install needing torch fails or pulls another torch in."""
    site = VenvLayout.for_venv(project_venv).site_packages
    try:
        present = {entry.name for entry in os.scandir(site) if entry.name.endswith(".dist-info")}
    except OSError:
        present = set()
    installed = {_dist_info_name(name)[0] for name in present}
    problems = []
    for name in record.stubs:
        folder = site / name
        if name not in present:
            if _dist_info_name(name)[0] not in installed:
                problems.append(f"the stub {folder} is missing")
            continue
        if not is_stub_dir(folder) and (folder / "INSTALLER").is_file():
            continue  # pip, uv or poetry installed the project's own copy in its place
        problem = _stub_problem(folder, site)
        if problem is not None:
            problems.append(f"the stub {folder.name}: {problem}")
    return problems
