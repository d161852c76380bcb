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
from layerenv.store.owned import SETTLE_NS, prune, read_owned, trusted_folder, witness, write_owned
from layerenv.venv import distinfo
from layerenv.venv.distinfo import Distribution

#: Cache files kept, one a base (the oldest go first).
KEEP = 16
_FORMAT = 1
_READ = ("METADATA", "INSTALLER", "WHEEL", "entry_points.txt")  # what reading a distribution and stubbing it open

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
    data = read_owned(str(path)) if trusted_folder(str(path.parent)) else None
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
        if not trusted_folder(str(folder)):
            return False
        write_owned(str(folder), path.name, body)
        prune(str(folder), KEEP)
    except OSError:
        return False
    return True


def _code() -> list[str]:
    """The modules that shape what is kept: an edit of one (an upgrade, a checkout) reads the base again."""
    return [os.path.abspath(module.__file__ or "") for module in (stubs, distinfo, sys.modules[__name__])]


def _witness(base_site: Path, names: list[str]) -> list[int]:
    """Inode and ctime of every path the kept reading rests on (0s for one that is not there)."""
    groups: list[tuple[str, bool, list[str]]] = [(str(base_site.parent), False, [base_site.name]),
                                                 (str(base_site), False, names)]
    groups += [(os.path.join(base_site, name), False, list(_READ)) for name in names]
    groups += [(os.path.dirname(path), False, [os.path.basename(path)]) for path in _code()]
    return witness(groups)
