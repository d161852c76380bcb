"""Files in the store that only this user (or root) could have written, and the stats they rest on: the
shared ground of the remembered answers (:mod:`layerenv.cli.answers`) and a base's kept stubs
(:mod:`layerenv.project.stub_cache`).

A kept file is taken only from a folder of this user's (or root's) that no one else can write, inside a
store ``cache`` folder alike; it is written beside its place and renamed in, readable by its owner only.
What it was worked out from is witnessed by the inode and ctime of each path: the kernel sets a ctime at
every change of content, mode, owner or links (of a folder: every entry added, removed or renamed), and
nothing sets it back. Nothing is kept that changed less than :data:`SETTLE_NS` before the reading began
(git's "racily clean" rule: a later change within the same timestamp tick would not show).

This module imports ``os`` and ``sys`` only: the console script's fast path goes through it.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:  # collections.abc costs the start-up path ~1-3 ms
    from collections.abc import Iterable, Sequence

#: A file changed less than this before a reading may change again within its timestamp tick unseen.
SETTLE_NS = 2_000_000_000

NO_FOLLOW: int = getattr(os, "O_NOFOLLOW", 0)
#: A folder opened only to look its entries up from (O_PATH: no read access needed, nothing read).
_FOLDER: int = getattr(os, "O_PATH", os.O_RDONLY) | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


def owned(info: os.stat_result) -> bool:
    """This user's or root's, and writable by no one else."""
    if sys.platform == "win32":  # nothing is kept there: this only keeps the types whole
        return False
    return info.st_uid in (os.geteuid(), 0) and not info.st_mode & 0o022


def trusted_folder(folder: str) -> bool:
    """``folder`` and the folder holding it (the store's ``cache``): both :func:`owned` folders."""
    for path in (folder, os.path.dirname(folder)):
        try:
            info = os.lstat(path)
        except OSError:
            return False
        if not owned(info) or (info.st_mode & 0o170000) != 0o040000:
            return False
    return True


def read_owned(path: str, limit: int | None = None) -> bytes | None:
    """The file's bytes, if it is a regular, :func:`owned` file (no link followed) of at most ``limit`` bytes."""
    try:
        descriptor = os.open(path, os.O_RDONLY | NO_FOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        info = os.fstat(descriptor)
        if not owned(info) or (info.st_mode & 0o170000) != 0o100000 or (limit is not None and info.st_size > limit):
            return None
        chunks = []
        while chunk := os.read(descriptor, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(descriptor)


def write_owned(folder: str, name: str, body: bytes) -> None:
    """``body`` as ``folder/name``, readable by its owner only: written beside it (``.name.<pid>.tmp``, which
    gc removes once stale) and renamed in."""
    temporary = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NO_FOLLOW, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(body)
        os.replace(temporary, os.path.join(folder, name))
    except BaseException:
        try:  # noqa: SIM105 - contextlib (and the collections it imports) would cost the answers' start-up
            os.unlink(temporary)
        except OSError:
            pass
        raise


def witness(groups: Iterable[tuple[str | bytes, bool, Sequence[str] | Sequence[bytes]]]) -> list[int]:
    """Every path's inode and ctime (0s for one that is not there), two numbers a path; ``groups``: (folder,
    whether its entries' links are followed, the entries' names). A kept reading may rest on thousands of
    paths, so each is looked up from its folder's descriptor, the fewest steps a stat of it can take."""
    values: list[int] = []
    stat, extend = os.stat, values.extend
    for directory, follow, names in groups:
        try:
            descriptor = os.open(directory, _FOLDER)
        except (OSError, ValueError):  # ValueError: a NUL, which only a bent answer file holds
            extend((0, 0) * len(names))
            continue
        try:
            for name in names:
                try:
                    info = stat(name, dir_fd=descriptor, follow_symlinks=follow)
                except (OSError, ValueError):
                    extend((0, 0))
                    continue
                extend((info.st_ino, info.st_ctime_ns))
        finally:
            os.close(descriptor)
    return values


def prune(folder: str, keep: int) -> None:
    """Keep the ``keep`` newest files in ``folder`` (temporaries, and anything not a plain file, aside)."""
    with os.scandir(folder) as entries:
        kept = [(entry.stat(follow_symlinks=False).st_mtime_ns, entry.path) for entry in entries
                if not entry.name.startswith(".") and entry.is_file(follow_symlinks=False)]
    for _, path in sorted(kept)[:-keep]:
        try:
            os.unlink(path)
        except OSError:  # another process pruned it first
            continue
