"""Read the distributions of a site-packages directory from its ``*.dist-info`` folders.

Pure functions over paths, standard library only: nothing here imports or asks the running
interpreter (no ``importlib.metadata`` scan), so any venv can be read from any Python.
"""

from __future__ import annotations

import configparser
import hashlib
import io
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

__all__ = [
    "Distribution",
    "canonical_name",
    "is_family",
    "pyvenv_cfg",
    "read_distributions",
    "record_paths",
    "top_level_of",
]

#: Exact names of the torch family; every ``nvidia-*``, ``cuda-*`` and ``pytorch-triton*`` dist too.
FAMILY_NAMES = frozenset({"torch", "torchvision", "torchaudio", "triton"})
_FAMILY_PREFIXES = ("nvidia-", "cuda-", "pytorch-triton")
# NVIDIA's NVML bindings (pynvml), which monitoring tools install: no torch build needs or ships them
NOT_FAMILY = frozenset({"nvidia-ml-py", "nvidia-ml-py3"})
_NOT_MODULES = frozenset({"", ".", "..", "bin", "__pycache__"})


@dataclass(frozen=True)
class Distribution:
    """One installed distribution, as its ``.dist-info`` folder describes it."""

    name: str  # PEP 503 normalised
    version: str  # the distribution version from METADATA (``2.11.0``, not ``2.11.0+cu130``)
    dist_info: Path
    metadata_text: str
    installer: str  # contents of INSTALLER ("" when absent)
    metadata_bytes: bytes = field(default=b"", repr=False)  # METADATA as it is on disk (a stub copies it)

    @cached_property
    def record_sha256(self) -> str:
        """sha256 hex of the RECORD file's bytes ("" without RECORD); read on first use (a RECORD can be
        megabytes, and a relink never asks)."""
        try:
            return hashlib.sha256((self.dist_info / "RECORD").read_bytes()).hexdigest()
        except OSError:
            return ""

    @cached_property
    def console_scripts(self) -> tuple[tuple[str, str], ...]:
        """(script name, "module:attr") from ``entry_points.txt``; parsed on first use (a relink reads
        every distribution of a project, and wants the scripts of the base's torch family only)."""
        return _console_scripts(self.dist_info)

    @cached_property
    def top_level(self) -> tuple[str, ...]:
        """Top-level modules and packages, from RECORD (else ``top_level.txt``); parsed on first use."""
        record = _read_text(self.dist_info / "RECORD")
        if record is not None and '"' not in record:  # every wheel's: no csv module needed
            firsts = first_parts(record)
        else:
            paths = (record_paths(record) if record is not None else
                     [f"{line.strip()}/" for line in (_read_text(self.dist_info / "top_level.txt") or "").splitlines()])
            firsts = {_first_part(path) for path in paths}
        return tuple(sorted({top for top in map(top_level_of, firsts) if top}))


def _first_part(path: str) -> str:
    """What decides a path's top level: ``torch/nn/x.py`` -> ``torch/``, ``six.py`` -> ``six.py``."""
    return path if "/" not in path else path.split("/", 1)[0] + "/"


def first_parts(record: str) -> set[str]:
    """:func:`_first_part` of every path in a RECORD without quotes. torch's lists ~15,000 files in a few
    folders, each folder's files together: a run of lines sharing a folder is passed over at C speed
    (``str.rfind``/``str.count`` prove every line up to the folder's last one starts with it), so the
    lines read one by one are few. A folder whose lines are not together is read line by line."""
    text = "\n" + record.replace("\\", "/")
    firsts: set[str] = set()
    scattered: set[str] = set()
    start, length = 1, len(text)
    while start < length:
        end = text.find("\n", start)
        end = length if end == -1 else end
        line = text[start:end].rstrip("\r")
        first = _first_part(line.split(",", 1)[0])
        if line:
            firsts.add(first)
        if first.endswith("/") and first not in scattered:
            marker = "\n" + first
            last = text.rfind(marker, end)
            if last != -1 and text.count("\n", end, last + 1) == text.count(marker, end, last + len(marker)):
                found = text.find("\n", last + 1)
                end = length if found == -1 else found
            else:
                scattered.add(first)
        start = end + 1
    return firsts


def canonical_name(name: str) -> str:
    """PEP 503 normalised name: ``Torch_Audio`` -> ``torch-audio``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def is_family(name: str) -> bool:
    """Whether ``name`` belongs to the torch family, which always loads from the base."""
    norm = canonical_name(name)
    return norm in FAMILY_NAMES or (norm.startswith(_FAMILY_PREFIXES) and norm not in NOT_FAMILY)


_CFG_CACHE: dict[str, tuple[tuple[int, int, int], dict[str, str]]] = {}


def pyvenv_cfg(venv: Path) -> dict[str, str]:
    """The ``key = value`` pairs of ``venv/pyvenv.cfg`` (empty when the file is missing).

    Read again only when the file changed (inode, size, mtime): linking a project asks a dozen times.
    """
    path = os.path.join(venv, "pyvenv.cfg")  # noqa: PTH118 - a str path: this runs a dozen times a link
    try:
        info = os.stat(path)  # noqa: PTH116
        stamp = (info.st_ino, info.st_size, info.st_mtime_ns)
        cached = _CFG_CACHE.get(path)
        if cached is not None and cached[0] == stamp:
            return dict(cached[1])
        with open(path, encoding="utf-8") as handle:  # noqa: PTH123
            text = handle.read()
    except OSError:
        return {}
    pairs = (line.partition("=") for line in text.splitlines() if "=" in line)
    found = {key.strip().lower(): value.strip() for key, _, value in pairs}
    _CFG_CACHE[path] = (stamp, found)
    return dict(found)


def record_paths(record_text: str) -> list[str]:
    """The paths listed in a RECORD file (relative to site-packages, ``/``-separated)."""
    import csv  # only here: most RECORDs are read without it (:func:`first_parts`)

    return [row[0].replace("\\", "/") for row in csv.reader(io.StringIO(record_text)) if row and row[0]]


def top_level_of(path: str) -> str | None:
    """The importable top-level name a RECORD path provides, if any.

    ``torch/__init__.py`` -> ``torch``; ``six.py`` -> ``six``; ``_C.cpython-311-x86_64-linux-gnu.so``
    -> ``_C``; dist-info, ``.data``, ``bin/``, ``../`` and ``torch.libs`` style folders give None.
    """
    parts = path.split("/")
    first = parts[0]
    if first in _NOT_MODULES or first.endswith((".dist-info", ".data", ".egg-info")):
        return None
    if len(parts) == 1:
        if first.endswith(".py"):
            first = first[: -len(".py")]
        elif first.endswith((".so", ".pyd")):
            first = first.split(".", 1)[0]
        else:
            return None
    return first if first.isidentifier() else None


def _console_scripts(dist_info: Path) -> tuple[tuple[str, str], ...]:
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string((dist_info / "entry_points.txt").read_text(encoding="utf-8"))
    except (OSError, configparser.Error):
        return ()
    if not parser.has_section("console_scripts"):
        return ()
    return tuple(sorted((k.strip(), v.strip()) for k, v in parser.items("console_scripts")))


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _read_one(dist_info: Path) -> Distribution | None:
    try:
        with open(os.path.join(dist_info, "METADATA"), "rb") as handle:  # noqa: PTH123
            metadata = handle.read()
    except OSError:
        return None
    metadata_text = metadata.decode("utf-8", errors="replace")
    if "\r" in metadata_text:  # as read_text reads it: universal newlines
        metadata_text = metadata_text.replace("\r\n", "\n").replace("\r", "\n")
    headers = _headers(metadata_text, ("name", "version"))
    stem = dist_info.name[: -len(".dist-info")]
    dir_name, _, dir_version = stem.partition("-")
    name = canonical_name(headers.get("name") or dir_name)
    version = headers.get("version") or dir_version
    return Distribution(
        name=name,
        version=version,
        dist_info=dist_info,
        metadata_text=metadata_text,
        metadata_bytes=metadata,
        installer=(_read_text(dist_info / "INSTALLER") or "").strip(),
    )


def _headers(metadata_text: str, keys: tuple[str, ...]) -> dict[str, str]:
    """The first value of each of ``keys`` (lower case) among METADATA's headers: the lines before the
    first blank one (the description, often most of the file, is not looked at; the fields read here
    are never folded over several lines)."""
    found: dict[str, str] = {}
    end = metadata_text.find("\n\n")
    for line in (metadata_text if end < 0 else metadata_text[:end]).splitlines():
        key, colon, value = line.partition(":")
        key = key.strip().lower()
        if colon and key in keys and key not in found:
            found[key] = value.strip()
            if len(found) == len(keys):  # Name and Version come first; a wheel lists hundreds of headers after
                break
    return found


def read_distributions(site_packages: Path) -> list[Distribution]:
    """Every ``*.dist-info`` with a METADATA file in ``site_packages``, sorted by name."""
    if not site_packages.is_dir():
        return []
    found = (_read_one(path) for path in site_packages.glob("*.dist-info") if path.is_dir())
    return sorted((dist for dist in found if dist is not None), key=lambda d: (d.name, d.version))
