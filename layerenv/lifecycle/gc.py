"""Removing bases nothing needs: not current, used by no registered project, not being built.

A base is kept when it is current (the one ``find_current`` picks for the caller), when a
registered project uses it (its registry entry or its venv's ``layerenv.json`` names it, even if
that venv is gone: ``layerenv doctor --fix`` prunes such entries first), or when its key's lock
(``locks/<key>.lock``, the one ``layerenv base`` holds while building or replacing a base of that
key, and ``--adopt`` while adopting) is held by another process. The lock is tried without waiting
and held while the base is moved away, so a build of that key cannot start meanwhile.

Staging dirs (``staging/``) of builds that were interrupted (their key's lock is free) are removed
too; those of a running build are kept (layerenv.lifecycle.leftovers).

Venv shapes (``shapes/<key>/``, layerenv.venv.shapes) of interpreters no published base runs on are
removed too, each under its lock and after reading the bases again there; while any manifest does not
read (a newer layerenv's, say) every shape is kept, as that base may need one.

Removal is crash-safe: the base's directory is renamed into ``graveyard/`` (one atomic rename
inside the store), then deleted; what an interrupted gc left there is deleted by the next gc or
build. For an adopted base only the store's manifest directory goes, never the environment.

Not covered: a ``layerenv project`` run by another process with other settings (another
``--python`` or variant) that is linking to a base this gc does not see as current.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerenv.base.manifest import Manifest, lock_key
from layerenv.errors import BadInput, OperationFailed
from layerenv.lifecycle.leftovers import Leftover, staging_leftovers
from layerenv.lifecycle.status import disk_usage
from layerenv.store.atomic import remove_tree
from layerenv.store.home import MANIFEST_NAME, Store


@dataclass(frozen=True)
class Removal:
    base_id: str
    path: str  # the directory removed from the store
    adopted: bool
    environment: str  # the venv: inside ``path``, or an adopted one left alone
    size_bytes: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.base_id, "path": self.path, "adopted": self.adopted,
                "environment": self.environment, "size_bytes": self.size_bytes}


@dataclass(frozen=True)
class Kept:
    base_id: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"id": self.base_id, "reason": self.reason}


@dataclass(frozen=True)
class ShapeRemoval:
    path: str  # shapes/<key>: an empty venv template of an interpreter no base uses
    size_bytes: int

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size_bytes": self.size_bytes}


@dataclass(frozen=True)
class GcResult:
    dry_run: bool
    removed: tuple[Removal, ...]  # would be removed, with ``dry_run``
    kept: tuple[Kept, ...]
    leftovers_bytes: int  # what interrupted removals had left in graveyard/
    staging: tuple[Leftover, ...] = ()  # staging/ dirs of interrupted builds, removed (or, dry, would be)
    staging_kept: tuple[Leftover, ...] = ()  # staging/ dirs of builds running now
    shapes: tuple[ShapeRemoval, ...] = ()  # shapes/ of interpreters no base uses, removed (or, dry, would be)
    temporaries: tuple[str, ...] = ()  # registry/, users/ and cache/stubs/ files a killed command staged, removed

    @property
    def freed_bytes(self) -> int:
        removed = sum(removal.size_bytes for removal in self.removed)
        shapes = sum(shape.size_bytes for shape in self.shapes)
        return removed + self.leftovers_bytes + sum(leftover.size_bytes for leftover in self.staging) + shapes

    def to_json(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "removed": [r.to_json() for r in self.removed],
                "kept": [k.to_json() for k in self.kept], "freed_bytes": self.freed_bytes,
                "staging_removed": [leftover.to_json() for leftover in self.staging],
                "staging_kept": [leftover.to_json() for leftover in self.staging_kept],
                "shapes_removed": [shape.to_json() for shape in self.shapes],
                "temporaries_removed": list(self.temporaries)}


def bases_in_use(store: Store) -> dict[str, list[str]]:
    """Base id -> the registered projects using it; an unreadable entry stops gc (it might use any)."""
    from layerenv.project.link import read_link

    used: dict[str, list[str]] = {}
    for entry in store.projects():
        if "error" in entry:
            raise OperationFailed(
                f"registry entry {entry['entry']} is unreadable, so gc cannot tell which bases are in use; "
                "run `layerenv doctor --fix` first"
            )
        venv = Path(str(entry["venv"]))
        names = {str(entry.get("base_id", ""))}
        try:
            record = read_link(venv) if venv.is_dir() else None
        except OperationFailed:
            record = None
        if record is not None:
            names.add(record.base_id)
        for name in names - {""}:
            used.setdefault(name, []).append(str(entry.get("project", venv.parent)))
    return used


@contextmanager
def try_lock(store: Store, key: str, *, hold: bool) -> Iterator[str | None]:
    """Yield None with ``key``'s lock held (or free, when only probing), else who holds it."""
    from layerenv.store.locking import Busy

    if not hold and not store.lock_exists(key):
        yield None
        return
    try:
        with store.lock(key, purpose="layerenv gc", blocking=False):
            yield None
    except Busy as busy:
        yield busy.owner


def collect(store: Store, current_ids: set[str], *, dry_run: bool) -> GcResult:
    """Remove (or, with ``dry_run``, list) every base that nothing needs."""
    from layerenv.base.file_check import read_bases
    from layerenv.store.nodes import bases_used_by_nodes

    manifests, _unreadable = read_bases(store)  # an unreadable manifest is doctor's, never gc's
    used = bases_in_use(store)
    recorded = bases_used_by_nodes(store.home, besides=store.node)  # other nodes may be down now
    removed: list[Removal] = []
    kept: list[Kept] = []
    for manifest in sorted(manifests, key=lambda m: m.base_id):
        reasons = ["current"] if manifest.base_id in current_ids else []
        if projects := sorted(used.get(manifest.base_id, [])):
            reasons.append(f"used by {len(projects)} project(s): {', '.join(projects)}")
        if nodes := sorted(recorded.get(manifest.base_id, [])):
            reasons.append(f"recorded by node(s) {', '.join(nodes)} (forget one: rm -r {store.home}/nodes/NODE)")
        if reasons:
            kept.append(Kept(manifest.base_id, "; ".join(reasons)))
            continue
        problem = _misplaced(store, manifest)
        if problem is not None:
            kept.append(Kept(manifest.base_id, problem))
            continue
        with try_lock(store, lock_key(manifest), hold=not dry_run) as holder:
            if holder is not None:
                kept.append(Kept(manifest.base_id, f"locked by {holder}"))
                continue
            if users := linked_users(store, manifest):  # read under the lock: see project.create._claim
                kept.append(Kept(manifest.base_id, "; ".join(users)))
                continue
            removed.append(_remove(store, manifest, dry_run=dry_run))
    gone = {removal.base_id for removal in removed}
    shapes = _orphan_shapes(store, [manifest for manifest in manifests if manifest.base_id not in gone],
                            dry_run=dry_run)
    leftovers = _sweep_graveyard(store, dry_run=dry_run)
    staging = staging_leftovers(store)
    orphans = tuple(item for item in staging if item.orphaned)
    for leftover in orphans if not dry_run else ():
        remove_tree(leftover.path)
    live = tuple(item for item in staging if not item.orphaned)
    temporaries = _stale_temporaries(store, dry_run=dry_run)
    return GcResult(dry_run, tuple(removed), tuple(kept), leftovers, orphans, live, shapes, temporaries)


#: A temporary older than this belongs to no running command: a rebase or a `layerenv project` renames what it
#: stages within seconds (a rebase's chunk on a slow network filesystem within minutes).
TEMPORARY_AGE_S = 3600


def _stale_temporaries(store: Store, *, dry_run: bool, now: float | None = None) -> tuple[str, ...]:
    """Remove (or list) the temporary files a killed command left beside the registry's entries, the
    base users' notes and the bases' kept stubs (``.<name>.<random>.tmp``): readers skip them, nothing
    else would remove them."""
    folders = [store.registry, store.home / "cache" / "stubs"]
    with suppress(OSError):
        folders += [store.users / name for name in sorted(os.listdir(store.users))]  # noqa: PTH208
    moment = time.time() if now is None else now
    found = []
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode) or moment - info.st_mtime < TEMPORARY_AGE_S:
                continue
            if not dry_run:
                try:
                    os.unlink(entry.path)  # noqa: PTH108
                except OSError:
                    continue
            found.append(entry.path)
    return tuple(sorted(found))


def _orphan_shapes(store: Store, manifests: list[Manifest], *, dry_run: bool) -> tuple[ShapeRemoval, ...]:
    """Remove (or list) the shapes no published base needs: each under its lock (a maker of it waits), the
    bases read again there (one published meanwhile keeps its shape)."""
    from layerenv.base.file_check import read_bases
    from layerenv.store.identity import check_name
    from layerenv.venv.shapes import interpreter_key, interpreter_key_of

    def needed() -> set[str] | None:  # None: some manifest does not read, so any shape may be needed
        published, unreadable = read_bases(store)
        if unreadable:
            return None
        return {interpreter_key(manifest.python) for manifest in published}

    try:
        names = sorted(os.listdir(store.shapes))  # noqa: PTH208
    except OSError:
        return ()
    if not names or needed() is None:
        return ()
    used = {interpreter_key(manifest.python) for manifest in manifests}  # the bases this gc keeps
    removed = []
    for name in names:
        try:
            check_name(f"shape-{name}", "lock name")
        except BadInput:
            continue  # not a name layerenv gives a shape: left alone
        path = store.shapes / name
        if interpreter_key_of(name) in used or path.is_symlink() or not path.is_dir():
            continue
        with try_lock(store, f"shape-{name}", hold=not dry_run) as holder:
            if holder is not None:
                continue
            if not dry_run and ((again := needed()) is None or interpreter_key_of(name) in again):
                continue
            size = disk_usage(path)
            if not dry_run:
                grave = store.graveyard_dir(f"shape-{name}")
                try:
                    store.graveyard.mkdir(parents=True, exist_ok=True)
                    path.rename(grave)  # whole: a project copying it sees it moved and makes its venv anew
                except OSError as error:
                    raise OperationFailed(f"cannot remove the venv shape {path}: {error.strerror}") from None
                remove_tree(grave)
            removed.append(ShapeRemoval(str(path), size))
    return tuple(removed)


def linked_users(store: Store, manifest: Manifest) -> list[str]:
    """Why a base's noted users (``users/<base-id>/``) still need it: a venv there links to it, a venv in a
    sibling directory does (the project was renamed), or a ``layerenv project`` run holds the venv's lock."""
    reasons = []
    for user in store.base_users(manifest.base_id):
        venv = Path(user["venv"])
        if venv.is_dir():
            if links_to(venv, manifest):
                reasons.append(f"linked by {venv}")
                continue
        elif moved := _moved(venv, manifest):
            reasons.append(f"linked by {moved} (moved from {venv.parent}?)")
            continue
        with try_lock(store, store.project_lock_name(venv), hold=False) as holder:
            if holder is not None:
                reasons.append(f"{venv} is being made by {holder}")
    return reasons


def links_to(venv: Path, manifest: Manifest) -> bool:
    """Whether ``venv`` links to this base (this store's: ids repeat between stores): its link record says
    so or, when that is unreadable, its ``.pth`` files name the base's environment."""
    from layerenv.project.link import read_link

    try:
        record = read_link(venv)
    except OperationFailed:
        record = None
    if record is not None:
        return record.base_id == manifest.base_id and record.base_venv == manifest.venv
    base = str(manifest.venv)
    for pth in venv.glob("lib*/python*/site-packages/*.pth"):
        try:
            if any(line.startswith(base + os.sep) for line in pth.read_text(encoding="utf-8").splitlines()):
                return True
        except (OSError, UnicodeDecodeError):
            continue
    return False


def _moved(venv: Path, manifest: Manifest, limit: int = 2000) -> Path | None:
    """A venv linking to this base in a sibling of ``venv``'s gone project directory (renamed, say)."""
    parent = venv.parent.parent
    try:
        siblings = sorted(parent.iterdir())[:limit] if parent.is_dir() else []
    except OSError:
        return None
    for sibling in siblings:
        candidate = sibling / venv.name
        if (candidate / "layerenv.json").is_file() and links_to(candidate, manifest):
            return candidate
    return None


def _misplaced(store: Store, manifest: Manifest) -> str | None:
    """Why removing this base's store directory would not remove exactly that base, if so."""
    try:
        directory = store.base_dir(manifest.base_id).resolve()
    except BadInput:
        return f"its id {manifest.base_id!r} is not a safe directory name; left alone"
    if not (directory / MANIFEST_NAME).is_file():
        return f"its manifest does not lie in {directory}; left alone"
    environment = Path(manifest.path).resolve()
    if manifest.adopted and environment.is_relative_to(directory):
        return f"its adopted environment {environment} lies inside {directory}; left alone"
    if not manifest.adopted and environment != directory:
        return f"its manifest points at {environment}, not at {directory}; left alone"
    return None


def _remove(store: Store, manifest: Manifest, *, dry_run: bool) -> Removal:
    directory = store.base_dir(manifest.base_id)
    size = disk_usage(directory)
    if not dry_run:
        grave = store.graveyard_dir(manifest.base_id)
        try:
            store.graveyard.mkdir(parents=True, exist_ok=True)
            directory.rename(grave)  # atomic: the base is published, or it is gone
        except OSError as error:
            raise OperationFailed(f"cannot remove base {manifest.base_id} ({directory}): {error.strerror}") from None
        remove_tree(grave)
        remove_tree(store.users / manifest.base_id)  # its users' notes: none of them links to it
    return Removal(manifest.base_id, str(directory), manifest.adopted, manifest.path, size)


def _sweep_graveyard(store: Store, *, dry_run: bool) -> int:
    """Delete what an interrupted gc or build left in graveyard/ (nothing there is published)."""
    freed = 0
    for leftover in sorted(store.graveyard.glob("*")) if store.graveyard.is_dir() else []:
        freed += disk_usage(leftover)
        if not dry_run:
            remove_tree(leftover)
    return freed


__all__ = ["GcResult", "Kept", "Removal", "ShapeRemoval", "bases_in_use", "collect", "linked_users", "links_to",
           "lock_key", "try_lock"]
