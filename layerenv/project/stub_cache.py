"""The base's distributions and their stubs' files, kept in the store once per base.

Every project made on a base stubs each of the base's distributions (~200 in an adopted venv): reading
their METADATA, INSTALLER, WHEEL and entry points and making the stub's files (marker, RECORD, hashes)
is the same work for every project, so the first project keeps the result
(``$LAYERENV_HOME/cache/stubs/``) and the next ones take it while every file it came from is unchanged.

It rests on the inode and ctime of each path read: the base's site-packages folder (a distribution
added or removed, a ``*.virtualenv`` marker), every ``*.dist-info`` folder in it (a file added, removed
or renamed in it) and its METADATA, INSTALLER, WHEEL and ``entry_points.txt`` (rewritten in place), and
the modules that shape a stub (an edit of layerenv). The kernel sets a ctime at every change of content,
mode, owner or links, and nothing sets it back. As with the remembered answers (:mod:`layerenv.cli.answers`),
nothing is kept that changed less than :data:`SETTLE_NS` before the reading began (a later change within
the same timestamp tick would not show), and a cache file is read only when it is this user's (or
root's) and no one else can write it. Anything else, and the base is read as before.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import sys
import time
from pathlib import Path

from layerenv import __version__
from layerenv.project import stubs
from layerenv.venv import distinfo
from layerenv.venv.distinfo import Distribution

#: A file changed less than this before the reading may change again within its timestamp tick unseen.
SETTLE_NS = 2_000_000_000
#: Cache files kept, one a base (the oldest go first).
KEEP = 16
_FORMAT = 1
_READ = ("METADATA", "INSTALLER", "WHEEL", "entry_points.txt")  # what reading a distribution and stubbing it open
_NO_FOLLOW: int = getattr(os, "O_NOFOLLOW", 0)
_FOLDER: int = getattr(os, "O_PATH", os.O_RDONLY) | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)

clock = time.time_ns  # the one clock the settle rule reads (tests move it ahead)

_Entry = tuple[str, str, str, str, bytes, str, tuple[str, int, int], "dict[str, bytes] | None"]


def cache_file(home: Path, base_site: Path, base_id: str) -> Path:
    """Where the stubs of ``base_id`` (its distributions in ``base_site``) are kept in the store at ``home``."""
    key = hashlib.sha256(f"{_FORMAT}\0{__version__}\0{base_id}\0{base_site}".encode()).hexdigest()[:32]
    return home / "cache" / "stubs" / key


def recall(path: Path, base_site: Path, base_id: str) -> bool:
    """Whether the kept distributions and stub files of the base were taken (into :mod:`layerenv.project.stubs`'s
    caches of this process, which :func:`layerenv.project.link.link` then reads): only if every path they
    rest on is unchanged."""
    if sys.platform == "win32":
        return False
    data = _read_owned(str(path)) if _trusted_folders(path.parent) else None
    if data is None:
        return False
    try:
        kept = marshal.loads(data)  # noqa: S302 - a file of this user's (or root's) in a store checked trusted
        form, site, base, names, witnessed, entries = kept
        if (form, site, base) != (_FORMAT, str(base_site), base_id) or _witness(base_site, names) != witnessed:
            return False
        dists = []
        for name, version, info, text, raw, installer, install, files in entries:
            dist = Distribution(name=name, version=version, dist_info=Path(info), metadata_text=text,
                                installer=installer, metadata_bytes=raw)
            dists.append(dist)
            if files is not None:  # a distribution stubbed with wrappers (the torch family's) is made again
                stubs.prime_stub(tuple(install), base_id, files)
        stubs.prime_base(base_site, dists)
    except (ValueError, TypeError, EOFError, OSError):  # a file this format does not describe: read the base
        return False
    return True


def keep(path: Path, base_site: Path, base_id: str, started_ns: int) -> bool:
    """Keep what this process read of the base (``started_ns``: when the reading began, by :data:`clock`)
    and the stubs it made of it; False (nothing kept) where something changed too recently or could not
    be read again as it was."""
    if sys.platform == "win32":
        return False
    try:
        names = sorted(entry.name for entry in os.scandir(base_site) if entry.name.endswith(".dist-info"))
        witnessed = _witness(base_site, names)
        if max(witnessed[1::2]) >= started_ns - SETTLE_NS:
            return False
        dists = stubs.base_distributions(base_site)
        entries: list[_Entry] = []
        for dist in dists:
            install = stubs.install_of(dist)
            files = stubs.kept_stub(install, base_id)
            entries.append((dist.name, dist.version, str(dist.dist_info), dist.metadata_text, dist.metadata_bytes,
                            dist.installer, install, files))
        body = marshal.dumps((_FORMAT, str(base_site), base_id, names, witnessed, entries))
        folder = path.parent
        folder.mkdir(mode=0o755, parents=True, exist_ok=True)
        if not _trusted_folders(folder):
            return False
        temporary = folder / f".{path.name}.{os.getpid()}.tmp"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NO_FOLLOW, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(body)
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        _prune(folder)
    except OSError:
        return False
    return True


def _code() -> list[str]:
    """The modules that shape what is kept: an edit of one (an upgrade, a checkout) reads the base again."""
    return [os.path.abspath(module.__file__ or "") for module in (stubs, distinfo, sys.modules[__name__])]


def _witness(base_site: Path, names: list[str]) -> list[int]:
    """Inode and ctime of every path the kept reading rests on (0s for one that is not there), each looked
    up from its folder's descriptor."""
    values: list[int] = []
    groups = [(str(base_site.parent), [base_site.name]), (str(base_site), names)]
    groups += [(os.path.join(base_site, name), list(_READ)) for name in names]
    groups += [(os.path.dirname(path), [os.path.basename(path)]) for path in _code()]
    for directory, entries in groups:
        try:
            descriptor = os.open(directory, _FOLDER)
        except OSError:
            values.extend((0, 0) * len(entries))
            continue
        try:
            for name in entries:
                try:
                    info = os.stat(name, dir_fd=descriptor, follow_symlinks=False)
                except OSError:
                    values.extend((0, 0))
                    continue
                values.extend((info.st_ino, info.st_ctime_ns))
        finally:
            os.close(descriptor)
    return values


def _owned(info: os.stat_result) -> bool:
    if sys.platform == "win32":  # nothing is kept there (recall, keep): this only keeps the types whole
        return False
    return info.st_uid in (os.geteuid(), 0) and not info.st_mode & 0o022


def _trusted_folders(folder: Path) -> bool:
    """The cache's folder and the store's ``cache`` folder: this user's or root's, writable by no one else."""
    for path in (folder, folder.parent):
        try:
            info = os.lstat(path)
        except OSError:
            return False
        if not _owned(info) or (info.st_mode & 0o170000) != 0o040000:
            return False
    return True


def _read_owned(path: str) -> bytes | None:
    """The file's bytes, if it is a regular file of this user's (or root's) that no one else can write."""
    try:
        descriptor = os.open(path, os.O_RDONLY | _NO_FOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        info = os.fstat(descriptor)
        if not _owned(info) or (info.st_mode & 0o170000) != 0o100000:
            return None
        with os.fdopen(os.dup(descriptor), "rb") as handle:
            return handle.read()
    except OSError:
        return None
    finally:
        os.close(descriptor)


def _prune(folder: Path) -> None:
    """Keep the :data:`KEEP` newest cache files (a removed base's is left behind only until then)."""
    kept = sorted((entry.stat().st_mtime_ns, entry.path) for entry in os.scandir(folder)
                  if not entry.name.startswith("."))
    for _, path in kept[:-KEEP]:
        os.unlink(path)
