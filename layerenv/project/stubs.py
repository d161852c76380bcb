"""Stub ``*.dist-info`` folders that make pip, uv and poetry see the base's distributions as installed
in a project venv, and wrappers that run the torch family's console scripts with the project's python.

A stub carries the base distribution's METADATA, WHEEL and entry points, an ``INSTALLER`` of
``layerenv``, the ``LAYERENV_STUB`` marker, and a RECORD naming only the stub's own files (and its
wrappers), so that uninstalling a stub never touches the base.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import stat
from collections.abc import Collection, Iterable, Mapping
from functools import partial
from hashlib import sha256
from pathlib import Path

from layerenv import __version__
from layerenv.store.atomic import NOW, STAGED_PREFIX, Writer, remove_tree
from layerenv.venv.distinfo import Distribution, read_distributions
from layerenv.venv.layout import VenvLayout

__all__ = [
    "STUB_INSTALLER",
    "STUB_MARKER",
    "WRAPPER_MARK",
    "base_distributions",
    "is_stub",
    "remove_stale",
    "shebang",
    "write_stub",
    "write_wrappers",
]

STUB_MARKER = "LAYERENV_STUB"
STUB_INSTALLER = "layerenv"
WRAPPER_MARK = "# layerenv-wrapper"
_NOT_STUBBED = frozenset({"pip", "setuptools", "wheel", "distribute", "layerenv"})  # the project has its own
_ENTRY = re.compile(r"^\s*([\w.]+)\s*:\s*([\w.]+)\s*(\[[^\]]*\])?\s*$")

_WRAPPER = """{shebang}
{mark}: {dist} console script of the base, run by this venv's python
import sys
from {module} import {head}

if __name__ == "__main__":
    sys.exit({attr}())
"""


def is_stub(dist: Distribution) -> bool:
    """A stub: its marker, or (the marker lost) the INSTALLER layerenv writes, so linking again rewrites it."""
    return (dist.dist_info / STUB_MARKER).is_file() or dist.installer == STUB_INSTALLER


def _head(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            return handle.read(400).decode("utf-8", errors="replace")
    except OSError:
        return ""


def shebang(python: Path) -> str:
    text = str(python)
    if " " not in text and len(text) < 120:
        return f"#!{text}"
    return f"#!/bin/sh\n'''exec' \"{text}\" \"$0\" \"$@\"\n' '''"  # pip's trick for awkward paths


def write_wrappers(layout: VenvLayout, dist: Distribution, python: Path | None = None, *,
                   writer: Writer = NOW) -> dict[str, bytes]:
    """Console-script wrappers of a family dist, run by ``python`` (default: the venv's own); a script
    layerenv did not write is left alone.

    None on Windows, where a console script is an ``.exe`` launcher, not a text file.
    """
    written: dict[str, bytes] = {}
    for name, value in dist.console_scripts if not layout.windows else ():
        match, target = _ENTRY.match(value), layout.script(name)
        if not match or "/" in name or (target.exists() and WRAPPER_MARK not in _head(target)):
            continue
        text = _WRAPPER.format(shebang=shebang(python or layout.python), mark=WRAPPER_MARK, dist=dist.name,
                               module=match[1], head=match[2].split(".")[0], attr=match[2])
        writer.update_text(target, text, mode=0o755, durable=False)
        written[name] = text.encode()
    return written


def write_stub(site: Path, layout: VenvLayout, dist: Distribution, base_id: str, scripts: Mapping[str, bytes], *,
               writer: Writer = NOW, in_place: bool = False) -> str:
    """Build the stub in the venv (outside site-packages, so no scan of it ever sees a half-built one),
    then swap it in (``writer``'s step); RECORD names the stub's files only. ``in_place``: the venv is
    being staged, seen by no one until it is complete, so the stub is written where it belongs."""
    name = dist.dist_info.name
    files = _stub_files(dist, base_id, tuple((os.path.relpath(layout.script(script), site).replace(os.sep, "/"), data)
                                             for script, data in scripts.items()))
    folder = os.path.join(site, name)  # noqa: PTH118 - plain os: a few hundred stubs for a big base
    if in_place and not os.path.lexists(folder):
        os.mkdir(folder)  # noqa: PTH102
        _write_all(folder, files)
        return name
    staging = layout.root / f"{STAGED_PREFIX}new-{name}"
    graveyard = layout.root / f"{STAGED_PREFIX}old-{name}"
    remove_tree(staging)
    staging.mkdir()
    writer.scratch(staging)
    _write_all(str(staging), files)
    writer.then(partial(_swap_in, staging, site / name, graveyard))
    return name


def _write_all(folder: str, files: Mapping[str, bytes]) -> None:
    """New files in a new folder (a stub's: a few hundred of them for a big base, hence plain ``os``)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for name, data in files.items():
        descriptor = os.open(os.path.join(folder, name), flags, 0o644)  # noqa: PTH118
        try:
            os.write(descriptor, data)
        finally:
            os.close(descriptor)


_STUBS: dict[tuple[tuple[str, int, int], str, tuple[tuple[str, bytes], ...]], dict[str, bytes]] = {}


def _stub_files(dist: Distribution, base_id: str, wrappers: tuple[tuple[str, bytes], ...]) -> dict[str, bytes]:
    """A stub's files by name, RECORD last: the same for every project on the base but for the wrappers
    it lists, so made once per process (a rebase stubs the same distributions in every project)."""
    key = (install_of(dist), base_id, wrappers)
    cached = _STUBS.get(key)
    if cached is not None:
        return cached
    marker = {"base_id": base_id, "dist_info": str(dist.dist_info), "layerenv_version": __version__}
    files = {"INSTALLER": f"{STUB_INSTALLER}\n".encode(), STUB_MARKER: json.dumps(marker, indent=2).encode(),
             **_copied(dist)}
    name = dist.dist_info.name
    listed = [(f"{name}/{file}", data) for file, data in files.items()] + list(wrappers)
    record = io.StringIO()
    rows = csv.writer(record, lineterminator="\n")
    for rel, data in listed:
        rows.writerow([rel, "sha256=" + _b64(sha256(data).digest()), len(data)])
    rows.writerow([f"{name}/RECORD", "", ""])
    files["RECORD"] = record.getvalue().encode("utf-8")
    _STUBS[key] = files
    return files


def prime_stub(install: tuple[str, int, int], base_id: str, files: dict[str, bytes]) -> None:
    """Give this process the files of a wrapper-less stub made before (:mod:`layerenv.project.stub_cache`)."""
    _STUBS[(install, base_id, ())] = files


def kept_stub(install: tuple[str, int, int], base_id: str) -> dict[str, bytes] | None:
    """The files this process made for the wrapper-less stub of that install on ``base_id``, if it made them."""
    return _STUBS.get((install, base_id, ()))


def install_of(dist: Distribution) -> tuple[str, int, int]:
    """Which install of ``dist`` this is: its folder, whose inode and mtime a reinstall changes."""
    info = os.stat(dist.dist_info)  # noqa: PTH116
    return str(dist.dist_info), info.st_ino, info.st_mtime_ns


def _copied(dist: Distribution) -> dict[str, bytes]:
    """The files a stub copies from the base's ``dist``: METADATA as read, WHEEL (`uv pip check` wants
    it) and the entry points."""
    files = {"METADATA": dist.metadata_bytes}
    for name in ("WHEEL", "entry_points.txt"):
        try:
            with open(os.path.join(dist.dist_info, name), "rb") as handle:  # noqa: PTH118, PTH123
                files[name] = handle.read()
        except FileNotFoundError:
            continue
    return files


def _swap_in(staging: Path, final: Path, graveyard: Path) -> None:
    if final.exists():
        remove_tree(graveyard)
        final.replace(graveyard)
    staging.replace(final)
    remove_tree(graveyard)


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def remove_stale(layout: VenvLayout, project: Iterable[Distribution], stubs: Collection[str],
                 scripts: Collection[str], *, writer: Writer = NOW) -> None:
    """Remove the stubs and wrappers of an earlier link that this one did not write again (``writer``'s steps)."""
    for old in project:
        if is_stub(old) and old.dist_info.name not in stubs:
            writer.then(partial(remove_tree, old.dist_info))
    try:
        with os.scandir(layout.bin_dir) as entries:
            candidates = [Path(entry.path) for entry in entries if entry.name not in scripts and _may_be_wrapper(entry)]
    except OSError:  # no bin/ (yet)
        return
    for path in candidates:
        if WRAPPER_MARK in _head(path):
            writer.then(partial(path.unlink, missing_ok=True))


#: No wrapper is larger: its shebang names a path (at most PATH_MAX, 4096 bytes) once, the rest is a few lines.
_WRAPPER_MAX = 8192


def _may_be_wrapper(entry: os.DirEntry[str]) -> bool:
    """A file that could be a wrapper, judged from its stat alone: executable and no larger than one
    (a bin/ holds interpreters and activation scripts that need not be opened)."""
    try:
        info = entry.stat()
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and bool(info.st_mode & 0o111) and info.st_size <= _WRAPPER_MAX


_BASE_CACHE: dict[tuple[Path, int], list[Distribution]] = {}


def prime_base(base_site: Path, dists: list[Distribution]) -> None:
    """Give this process the distributions to stub read before (:mod:`layerenv.project.stub_cache`)."""
    _BASE_CACHE[(base_site, base_site.stat().st_mtime_ns)] = dists


def base_distributions(base_site: Path) -> list[Distribution]:
    """The base's distributions to stub, read once per process while the base is unchanged.

    ``rebase`` links many projects to one base; parsing its RECORDs once is most of the saving.
    """
    key = (base_site, base_site.stat().st_mtime_ns)
    cached = _BASE_CACHE.get(key)
    if cached is None:
        seeded = {p.name.removesuffix(".virtualenv") for p in base_site.glob("*.virtualenv")}
        cached = [
            d for d in read_distributions(base_site)
            if d.name not in _NOT_STUBBED and d.installer != STUB_INSTALLER
            and d.dist_info.name.removesuffix(".dist-info") not in seeded
        ]
        _BASE_CACHE[key] = cached
    return cached
