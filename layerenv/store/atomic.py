"""Filesystem steps that either happen whole or not at all."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def write_text(path: Path, text: str, *, mode: int = 0o644, durable: bool = True) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace``: readers see old or new.

    ``durable`` also fsyncs the data before the rename, so a power cut cannot leave an empty file;
    files that are only convenience (activation scripts, wrappers) skip it. Bytes that are not UTF-8,
    read with ``errors="surrogateescape"`` (virtualenv's ``activate.csh`` for a non-ASCII path), are
    written back as they were.
    """
    temporary = _write_beside(path, text, mode, prefix=f".{path.name}.", sync=durable)
    try:
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _write_beside(path: Path, text: str, mode: int, *, prefix: str, sync: bool) -> Path:
    """A new temporary file in ``path``'s directory holding ``text`` with ``mode`` (fsynced if ``sync``)."""
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    except FileNotFoundError:  # made only then: a relink writes a dozen files into folders that exist
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    temporary = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as handle:
            handle.write(text)
            handle.flush()
            if sync:
                os.fsync(handle.fileno())
        temporary.chmod(mode)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def holds(path: Path, text: str, mode: int) -> bool:
    """Whether ``path`` already holds ``text`` with ``mode``."""
    try:
        return path.stat().st_mode & 0o777 == mode and (
            path.read_text(encoding="utf-8", errors="surrogateescape") == text
        )
    except (OSError, ValueError):
        return False


def update_text(path: Path, text: str, *, mode: int = 0o644, durable: bool = True) -> bool:
    """:func:`write_text`, unless ``path`` already holds ``text`` with ``mode``; whether it wrote.

    Relinking a project rewrites a dozen small files of which a rebase changes half: reading one is
    far cheaper than a temporary file, an fsync and a rename.
    """
    if holds(path, text, mode):
        return False
    write_text(path, text, mode=mode, durable=durable)
    return True


class Writer(Protocol):
    """Where a sequence of file replacements goes: in place at once (:data:`NOW`), or into a :class:`Batch`."""

    def write_text(self, path: Path, text: str, *, mode: int = 0o644, durable: bool = True) -> None: ...

    def update_text(self, path: Path, text: str, *, mode: int = 0o644, durable: bool = True) -> bool: ...

    def then(self, step: Callable[[], object]) -> None:
        """Run ``step`` after the replacements asked for so far (at once, for :data:`NOW`)."""

    def scratch(self, path: Path) -> None:
        """``path`` was made for a later step to move into place: removed if the steps never run."""


class _Now:
    def write_text(self, path: Path, text: str, *, mode: int = 0o644, durable: bool = True) -> None:
        write_text(path, text, mode=mode, durable=durable)

    def update_text(self, path: Path, text: str, *, mode: int = 0o644, durable: bool = True) -> bool:
        return update_text(path, text, mode=mode, durable=durable)

    def then(self, step: Callable[[], object]) -> None:
        step()

    def scratch(self, path: Path) -> None:
        pass


NOW: Writer = _Now()

STAGED_PREFIX = ".layerenv-staged-"  # a batch's temporaries: a killed run's are removed by the next link


class Batch:
    """Replacements written now and put in place later, in the order asked for.

    Each file is written beside its place at once, without an fsync; :func:`flush` then fsyncs the
    temporaries of many batches together (the waits overlap: one wait, not one a file), and
    :meth:`apply` renames them in order, running the steps given to :meth:`then` between. So a file
    still never replaces another before its bytes are on disk, and a kill before :meth:`apply` leaves
    only temporaries beside the old files.
    """

    def __init__(self) -> None:
        self.durable: list[Path] = []  # temporaries whose bytes must be on disk before their rename
        self._temporaries: list[Path] = []
        self._steps: list[Callable[[], object]] = []

    def write_text(self, path: Path, text: str, *, mode: int = 0o644, durable: bool = True) -> None:
        temporary = _write_beside(path, text, mode, prefix=f"{STAGED_PREFIX}{path.name}.", sync=False)
        self._temporaries.append(temporary)
        if durable:
            self.durable.append(temporary)
        self._steps.append(lambda: temporary.replace(path))

    def update_text(self, path: Path, text: str, *, mode: int = 0o644, durable: bool = True) -> bool:
        if holds(path, text, mode):
            return False
        self.write_text(path, text, mode=mode, durable=durable)
        return True

    def then(self, step: Callable[[], object]) -> None:
        self._steps.append(step)

    def scratch(self, path: Path) -> None:
        self._temporaries.append(path)

    def apply(self) -> None:
        """Make the replacements and run the steps, in order; call after :func:`flush` of ``durable``."""
        steps, self._steps = self._steps, []
        try:
            for step in steps:
                step()
        except BaseException:
            self.discard()  # those not renamed yet
            raise
        self._temporaries = []

    def discard(self) -> None:
        """Remove the temporaries not applied (the files in place are left as they were)."""
        for temporary in self._temporaries:
            remove_tree(temporary)
        self._temporaries, self._steps = [], []


LOG_MODE = 0o640


def read_plain_text(path: str | os.PathLike[str]) -> str:
    """A small store file's text (a lock holder, a node record, a registry entry), never through a link.

    Raises ``OSError`` for a symlink (``ELOOP``), and for anything but a regular file (a FIFO planted
    there would block a plain ``open`` forever), as for a missing file: callers treat all alike.
    """
    import errno

    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    descriptor = os.open(path, flags)
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        data = handle.read()
    return data.decode("utf-8")


def open_log(path: Path, *, new: bool = False) -> IO[str]:
    """Open a log to append to, never through a link: logs have predictable names in a directory
    others may read, so a symlink (or a hard link to someone's file) planted there would make
    layerenv write into a file it does not own. ``new``: the file must not exist yet.

    Refused in one line (an :class:`~layerenv.errors.OperationFailed`): a symlink, anything but a
    regular file of the caller's with one link.
    """
    from layerenv.errors import OperationFailed

    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | (os.O_EXCL if new else 0)
    try:
        descriptor = os.open(path, flags, LOG_MODE)
    except OSError as error:
        if path.is_symlink():
            raise OperationFailed(f"{path} is a symbolic link, and layerenv never writes a log through one "
                                  "(someone may have planted it): remove it and run again") from None
        raise OperationFailed(f"cannot write the log {path} ({error.strerror})") from None
    info = os.fstat(descriptor)
    getuid = getattr(os, "getuid", None)
    mine = getuid is None or info.st_uid == getuid()
    if not (os.path.isfile(path) and info.st_nlink == 1 and mine):  # noqa: PTH113 - paired with the fstat above
        os.close(descriptor)
        raise OperationFailed(f"{path} is not a log of yours (owner uid {info.st_uid}, {info.st_nlink} link(s)), "
                              "and layerenv writes only its own: remove it and run again")
    return os.fdopen(descriptor, "a", encoding="utf-8")


def flush(paths: list[Path]) -> None:
    """fsync ``paths`` (files, and the directories whose new entries must last) all at once: the
    waits overlap (up to 16 at a time), so a staged tree written without fsyncs costs one wait, not one
    a file. Every path is synced; then the error of the first that failed, if any, is raised. Plain
    threads: ``concurrent.futures`` (and the ``logging`` it imports) would cost every project ~6 ms more."""
    import threading

    failed: dict[int, Exception] = {}

    def sync_every(start: int, step: int) -> None:
        for index in range(start, len(paths), step):
            try:
                descriptor = os.open(paths[index], os.O_RDONLY)
                try:
                    os.fsync(descriptor)
                finally:
                    os.close(descriptor)
            except Exception as error:  # raised in the caller's thread, below
                failed[index] = error

    workers = min(16, len(paths))
    threads = [threading.Thread(target=sync_every, args=(start, workers)) for start in range(1, workers)]
    for thread in threads:
        thread.start()
    if workers:
        sync_every(0, workers)
    for thread in threads:
        thread.join()
    if failed:
        raise failed[min(failed)]


def json_text(document: Any) -> str:
    """How layerenv writes every JSON file: indented, keys sorted, a final newline."""
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def write_json(path: Path, document: Any) -> None:
    write_text(path, json_text(document))


def _renameat2_exchange(first: Path, second: Path) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import ctypes.util

    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    if result == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: the filesystem cannot exchange
        return False
    raise OSError(errno, os.strerror(errno), str(first))


def swap_in(new: Path, final: Path, graveyard: Path) -> None:
    """Make ``new`` appear at ``final``; a directory already there moves into ``graveyard``.

    On Linux the two directories are exchanged in one ``renameat2`` call. Elsewhere two renames
    are used; a crash between them leaves ``final`` missing and the old one in ``graveyard``,
    which the next run puts back (see ``layerenv.project.create``).
    """
    if not final.exists() and not final.is_symlink():
        new.rename(final)
        return
    graveyard.parent.mkdir(parents=True, exist_ok=True)
    if _renameat2_exchange(new, final):
        new.rename(graveyard)
        return
    final.rename(graveyard)
    new.rename(final)


def remove_tree(path: Path) -> None:
    """Delete a directory we own, tolerating one that is already gone."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)
