"""What ``doctor`` remembers of each healthy project, so that the next look re-reads only what changed.

A project found healthy is recorded (``$LAYERENV_HOME/cache/doctor.json``) with a digest of the
stat (inode, size, mtime, ctime; "missing" for a path that is not there) of every file its checks
read: the interpreter, ``pyvenv.cfg``, ``layerenv.json``, ``layerenv-project.json`` (the compiled
extensions recorded), the site-packages folder itself (an entry added or removed there: a shadowing
install, a family module copied in, a stub gone), ``_layerenv.pth``, ``_layerenv_boot.py``, each stub
folder with every file in it, and the family's console-script wrappers (the stubs' RECORDs list them).
The next look takes the same stats, of the files each stub folder held then (a name added, removed or
renamed over changes the folder's own stat), and opens no file; an equal digest means none of those
files changed since they were found healthy, so the project is healthy without reading them.
Anything else (no record, another digest, a per-node project, a project holding compiled extensions,
a base that is gone) is checked in full. What lies outside the project (its base, this node's
answer) is checked on every look.

Compiled extensions: whether one fits the base depends on its distribution's RECORD and objects, which
are not watched (a project may hold hundreds of distributions), so a project with any is never
remembered. One without gains one only through an installer, which adds a dist-info folder to
site-packages (a reinstall removes and writes it again): the site-packages folder's own stat shows it.
A RECORD edited in place by hand to list a torch-linked object is the one change that waits for a
look that reads the project (after any other change to it, or ``rm $LAYERENV_HOME/cache/doctor.json``).

Same size and same mtime: ctime and the inode are in the digest, so an edit whose size and mtime
were put back (``touch -r``, ``cp -p``, a tool keeping times) still shows: the kernel sets ctime on
every change and nothing sets it back. Two changes within one timestamp tick cannot be told apart by
any stat, so a project any of whose files changed less than :data:`SETTLE_NS` before the look is
checked but not recorded (git's "racily clean" rule): a later change then lands in a later tick and
shows. Clocks of a network filesystem's server and this node that differ by more than that window
weaken the rule; that is the one case where a same-size edit within one tick could go unseen.

A check added to ``doctor`` that reads another file of the project must add it to
:func:`watched_paths` (or run outside the memory) and bump :data:`CHECKS`, which forgets every record.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from array import array
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from layerenv import __version__
from layerenv.errors import LayerenvError
from layerenv.lifecycle.pacing import ThreadClock, waited_on_io
from layerenv.project.boot import BOOT_NAME, PTH_NAME
from layerenv.project.extensions import STATE_FILE as EXTENSIONS_STATE
from layerenv.project.link import read_link
from layerenv.project.run_env import RECORD_FILE
from layerenv.store.atomic import read_plain_text, write_json
from layerenv.store.home import Store
from layerenv.venv.layout import VenvLayout

__all__ = ["CHECKS", "SETTLE_NS", "Healthy", "Memory", "Snapshot", "snapshot", "watched_paths"]

#: Bumped whenever doctor's per-project checks read other files, or the same files differently.
CHECKS = 6  # 5: start-up files and changed boot files are part of a project's look; 6: digest of numbers
#: A file changed less than this before the look may change again within its timestamp tick unseen.
SETTLE_NS = 2_000_000_000
#: The first projects are checked in this thread; when their stats made it block, they wait on a disk or
#: a network filesystem, and the rest run in a pool (threads only slow a warm look down: the work is
#: then Python, under one lock).
_PROBE = 32
#: Stats that wait on I/O (a cold cache, a network filesystem) make this thread block: more than this
#: many times a project during the probe, and the rest are taken in threads. Preemption by other
#: processes on a busy machine is not such a wait (it is an involuntary switch), so it is not counted.
_WAITS_PER_PROJECT = 0.25
_WORKERS = 8


@dataclass(frozen=True)
class Healthy:
    """What a healthy project's full check found, reusable while its files' digest holds."""

    digest: str
    base_id: str
    base_site: str
    python: tuple[str, str] | None  # (tag, "3.12") from pyvenv.cfg
    site: str  # the venv's site-packages
    stubs: tuple[str, ...]  # stub folder names in site, from the link record the digest covers
    scripts: tuple[str, ...] = ()  # the family's console-script wrappers in bin/ (the stubs' RECORDs list them)
    # per stub, the names in its folder when the digest was taken, "/"-joined: a name added, removed or
    # renamed over changes the folder's own stat, so the next look stats these without listing the folder
    files: tuple[str, ...] = ()

    def to_json(self, name_sets: dict[str, int]) -> dict[str, object]:
        """``name_sets``: each distinct stub folder listing by its number (most stubs hold the same names)."""
        return {"digest": self.digest, "base_id": self.base_id, "base_site": self.base_site,
                "python": list(self.python) if self.python else None, "site": self.site, "stubs": list(self.stubs),
                "scripts": list(self.scripts),
                "files": [name_sets.setdefault(names, len(name_sets)) for names in self.files]}

    @classmethod
    def from_json(cls, data: dict[str, object], name_sets: list[str]) -> Healthy:
        python = data["python"]
        stubs, scripts, files = data["stubs"], data["scripts"], data["files"]
        if not all(isinstance(value, list) for value in (stubs, scripts, files)) or not isinstance(python, list | None):
            raise TypeError("stubs, scripts, files and python must be lists")
        assert isinstance(stubs, list) and isinstance(scripts, list) and isinstance(files, list)
        if len(files) != len(stubs):
            raise ValueError("one listing a stub")
        return cls(str(data["digest"]), str(data["base_id"]), str(data["base_site"]),
                   (str(python[0]), str(python[1])) if python else None, str(data["site"]),
                   tuple(str(stub) for stub in stubs), tuple(str(script) for script in scripts),
                   tuple(str(name_sets[int(index)]) for index in files))


@dataclass(frozen=True)
class Snapshot:
    """The stats of a project's watched files, taken before its link record was read."""

    digest: str
    newest_change_ns: int  # the latest ctime among them
    base_id: str
    base_site: str
    site: str
    stubs: tuple[str, ...]
    scripts: tuple[str, ...]
    files: tuple[str, ...]  # per stub, the names in its folder, "/"-joined
    per_node: bool

    def settled(self, now_ns: int) -> bool:
        """Whether every watched file last changed long enough ago that a later change shows."""
        return self.newest_change_ns < now_ns - SETTLE_NS


def watched_paths(venv: str, site: str, stubs: Iterable[str], scripts: Iterable[str]) -> list[str]:
    """The files and folders doctor's checks of one project read, stubs' contents aside."""
    sep = os.sep
    windows = site == f"{venv}{sep}Lib{sep}site-packages"  # POSIX: lib/pythonX.Y/site-packages
    bin_dir, exe = (f"{venv}{sep}Scripts", ".exe") if windows else (f"{venv}{sep}bin", "")
    return [f"{bin_dir}{sep}python{exe}", f"{venv}{sep}pyvenv.cfg", f"{venv}{sep}{RECORD_FILE}",
            f"{venv}{sep}{EXTENSIONS_STATE}", site,
            *(f"{site}{sep}{name}" for name in (PTH_NAME, BOOT_NAME, *stubs)),
            *(f"{bin_dir}{sep}{script}{exe}" for script in scripts)]


def _stat_values(paths: Iterable[str], values: list[int], folder: int | None = None) -> int:
    """Append each path's inode, size, mtime and ctime (four 0s for one that is not there) to ``values``;
    the newest ctime among them. ``folder``: an open folder the paths are relative to (the kernel then
    walks one name, not the whole path). Numbers, not text: a look takes ~150 stats a project."""
    newest = 0
    stat, extend = os.stat, values.extend
    for path in paths:
        try:
            info = stat(path, dir_fd=folder)
        except OSError:
            extend((0, 0, 0, 0))
            continue
        extend((info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns))
        if info.st_ctime_ns > newest:  # noqa: PLR1730 - cheaper than max(), 150,000 times a look
            newest = info.st_ctime_ns
    return newest


def _packed(values: list[int]) -> bytes:
    try:
        return array("Q", values).tobytes()
    except OverflowError:  # a time before 1970
        return str(values).encode()


def _digest(venv: str, site: str, stubs: Sequence[str], scripts: Sequence[str], first: Sequence[int] = (),
            files: Sequence[str] | None = None) -> tuple[str, int, tuple[str, ...]]:
    """(digest, newest ctime, listings) of the watched paths and every entry of each stub folder:
    ``files`` names those entries as a former look listed them (each folder's own stat, taken first,
    shows a name added or removed since), else each folder is listed now. ``first``: stat values taken
    before (the link record's)."""
    values = list(first)
    newest = _stat_values(watched_paths(venv, site, stubs, scripts), values)
    listings = []
    try:
        folder: int | None = os.open(site, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        folder = None
    try:
        for index, stub in enumerate(stubs):
            if files is not None:
                names = files[index].split("/") if files[index] else []
            else:
                try:
                    names = sorted(os.listdir(f"{site}{os.sep}{stub}"))  # noqa: PTH208 - names only
                except OSError:
                    names = []  # its own stat says missing
            listings.append("/".join(names))
            inside = [f"{stub}/{name}" if folder is not None else f"{site}{os.sep}{stub}{os.sep}{name}"
                      for name in names]
            newest = max(newest, _stat_values(inside, values, folder))
    finally:
        if folder is not None:
            os.close(folder)
    hashed = hashlib.blake2b(f"{venv}\0{site}\0{chr(1).join(listings)}\0".encode("utf-8", "surrogateescape"),
                             digest_size=16)
    hashed.update(_packed(values))
    return hashed.hexdigest(), newest, tuple(listings)


def snapshot(venv: Path) -> Snapshot | None:
    """The stats of ``venv``'s watched files, its link record read only after its own stat was taken
    (a record rewritten in between leaves a digest that no longer matches, never a stale one that
    does); None when the venv has no readable record."""
    record_values: list[int] = []
    record_changed = _stat_values([str(venv / RECORD_FILE)], record_values)
    try:
        record = read_link(venv)
        site = VenvLayout.for_venv(venv).site_packages
    except (LayerenvError, OSError):
        return None
    if record is None:
        return None
    digest, changed, files = _digest(str(venv), str(site), record.stubs, record.scripts, record_values)
    return Snapshot(digest, max(changed, record_changed), record.base_id, str(record.base_site), str(site),
                    record.stubs, record.scripts, files, record.per_node is not None)


class Memory:
    """The healthy projects a store's doctor recorded; loaded once a look, saved once after it."""

    def __init__(self, path: Path, healthy: dict[str, Healthy]) -> None:
        self.path = path
        self._before = healthy
        self._after: dict[str, Healthy] = {}

    @classmethod
    def load(cls, store: Store) -> Memory:
        path = store.home / "cache" / "doctor.json"
        if store.trust_problem(path) is not None:
            return cls(path, {})  # a memory someone else could write would say what doctor need not look at
        try:
            document = json.loads(read_plain_text(path))  # never through a link
            if document.get("checks") != CHECKS or document.get("layerenv") != __version__:
                return cls(path, {})
            name_sets = [str(names) for names in document["name_sets"]]
            return cls(path, {venv: Healthy.from_json(entry, name_sets)
                              for venv, entry in document["projects"].items()})
        except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
            return cls(path, {})  # none yet, or unreadable: every project is checked in full

    def recall(self, venvs: Sequence[str], usable: Callable[[str, Healthy], bool]) -> dict[str, Healthy]:
        """The projects of ``venvs`` whose watched files are as recorded, and whose record ``usable``
        accepts (its base still there); their stats are taken in parallel where they wait on I/O."""
        known = [(venv, self._before[venv]) for venv in venvs if venv in self._before]
        candidates = [(venv, healthy) for venv, healthy in known if usable(venv, healthy)]

        def same(item: tuple[str, Healthy]) -> bool:
            venv, healthy = item
            record_values: list[int] = []
            _stat_values([f"{venv}{os.sep}{RECORD_FILE}"], record_values)
            return _digest(venv, healthy.site, healthy.stubs, healthy.scripts, record_values,
                           healthy.files)[0] == healthy.digest

        before = ThreadClock.now()
        verdicts = [same(item) for item in candidates[:_PROBE]]
        rest = candidates[_PROBE:]
        blocked = waited_on_io(before, ThreadClock.now(), _PROBE, _WAITS_PER_PROJECT)
        if rest and not blocked:
            verdicts += [same(item) for item in rest]  # a warm cache: threads would only add switches
        elif rest:  # the stats wait on a disk or a network filesystem: let them overlap
            size = -(-len(rest) // (_WORKERS * 2))
            chunks = [rest[start:start + size] for start in range(0, len(rest), size)]
            with ThreadPoolExecutor(_WORKERS) as pool:
                verdicts += [ok for chunk in pool.map(lambda chunk: [same(item) for item in chunk], chunks)
                             for ok in chunk]
        found = {venv: healthy for (venv, healthy), ok in zip(candidates, verdicts, strict=True) if ok}
        self._after.update(found)
        return found

    def remember(self, venv: str, shot: Snapshot, python: tuple[str, str] | None, now_ns: int) -> None:
        """Record a project just found healthy, unless it is per node (its base is this node's answer,
        read on every look) or its files changed too recently for a later change to show."""
        if shot.per_node or not shot.settled(now_ns):
            return
        self._after[venv] = Healthy(shot.digest, shot.base_id, shot.base_site, python, shot.site, shot.stubs,
                                   shot.scripts, shot.files)

    def save(self) -> None:
        """Write what this look found healthy, when that differs from what it read; a store this user
        cannot write keeps its old record (the next look then checks more, never less)."""
        if self._after == self._before:
            return
        name_sets: dict[str, int] = {}
        projects = {venv: healthy.to_json(name_sets) for venv, healthy in sorted(self._after.items())}
        document = {"checks": CHECKS, "layerenv": __version__, "written": time.time(),
                    "name_sets": list(name_sets), "projects": projects}
        try:
            if not self.path.parent.is_dir():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.path.parent.chmod(0o755)
            write_json(self.path, document)
        except OSError:
            pass
