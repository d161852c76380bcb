"""Compiled torch extensions in a project venv: find them, record the torch each was built against,
and judge which no longer fit a base.

An extension is a distribution with a shared object that links ``libtorch*``, ``libc10*`` or
``libcudart*`` (its ELF ``DT_NEEDED``, read by :mod:`layerenv.venv.elf`: nothing is imported); the
``c10::``/``at::``/``torch::`` symbols it needs are read too. One linking ``libcudart`` alone (CuPy-like)
breaks only when the CUDA major version changes. Its objects are the ``.so`` files its RECORD lists, or
for an editable or local-directory install, those under its source directory.

What was found is recorded in the project's ``layerenv-project.json`` (``extensions``: per
distribution its version, where it came from, the torch build it was installed against and the
size and mtime of its RECORD and objects; ``scanned``: the same stamps of every other distribution
looked at). A look later reads only what changed since, so ``doctor`` stays a few stats per project.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from layerenv.venv.distinfo import canonical_name, is_family, record_paths
from layerenv.venv.elf import is_torch_symbol, read_links
from layerenv.venv.layout import VenvLayout

__all__ = [
    "Extension",
    "Source",
    "base_exports",
    "find_extensions",
    "label_torch",
    "read_state",
    "record_extensions",
    "stale_reason",
]

Source = Literal["wheel", "editable", "local", "sdist"]
Stamp = tuple[int, int]  # (mtime_ns, size)

_TORCH_LIBRARY = re.compile(r"^lib(?:torch|c10|cudart)")
_LINKS_TORCH = re.compile(r"^lib(?:torch|c10)")
_OBJECT = re.compile(r"\.so(?:\.[0-9.]+)?$")
_LABEL = re.compile(r"(?:^|[.])pt(\d)(\d+)(cu\d+|cpu|rocm[0-9.]+)?(?:$|[.])")
_SKIP_DIRS = frozenset({"build", "node_modules", "__pycache__", "site-packages"})
_MAX_SOURCE_FILES = 20_000  # a source tree larger than this is not walked whole
STATE_KEY, SCANNED_KEY = "extensions", "scanned"
STATE_FILE = "layerenv-project.json"  # as layerenv.project.link names it (that module imports far more)


@dataclass(frozen=True)
class Extension:
    """One distribution in a project venv that holds compiled code built against torch."""

    name: str
    version: str
    source: Source
    location: str  # editable/local: the source directory; sdist: its URL; wheel: ""
    objects: tuple[str, ...]  # its torch-linked shared objects (site-packages-relative, or absolute)
    built_against: str | None  # the torch build it was installed against, as recorded; None: not recorded
    symbols: frozenset[str] = frozenset()  # the c10/at/torch symbols it needs (known when just read)
    record: Stamp = (0, 0)
    stamps: tuple[Stamp, ...] = ()  # of each object, in order
    cuda_only: bool = False  # links libcudart but nothing of torch (CuPy-like): only a CUDA major change breaks it

    @property
    def label_torch(self) -> tuple[str, str | None] | None:
        """``("2.9", "cu129")`` from a ``+pt29cu129`` version label, as torch-scatter's wheels carry."""
        return label_torch(self.version)

    def describe(self) -> str:
        return f"{self.name} {self.version}"

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "source": self.source, "location": self.location,
                "objects": list(self.objects), "torch": self.built_against, "record": list(self.record),
                "stamps": [list(stamp) for stamp in self.stamps], "cuda_only": self.cuda_only}


def label_torch(version: str) -> tuple[str, str | None] | None:
    """The torch series (and build) a ``+ptXY[cuZZZ]`` local label names, else None."""
    label = version.partition("+")[2]
    found = _LABEL.search(label) if label else None
    return (f"{found.group(1)}.{found.group(2)}", found.group(3)) if found else None


def _series(torch_build: str) -> tuple[str, str]:
    """``2.15.0+cu132`` -> ``("2.15", "cu132")``."""
    release, _, local = torch_build.partition("+")
    return ".".join(release.split(".")[:2]), local


def fits_torch(extension: Extension, torch_build: str) -> bool | None:
    """Whether it was built for ``torch_build``: from its version label first, then the record; None: unknown."""
    label = extension.label_torch
    if label is not None:
        series, build = _series(torch_build)
        return label[0] == series and (label[1] is None or label[1] == build)
    if extension.built_against is not None:
        if extension.cuda_only:
            return _cuda_major(extension.built_against) == _cuda_major(torch_build)
        return extension.built_against == torch_build
    return None


def _cuda_major(torch_build: str) -> str:
    """``2.9.1+cu129`` -> ``12``, ``2.15.0+cu132`` -> ``13``; "" for a build without CUDA."""
    local = _series(torch_build)[1]
    return local[2:4] if re.fullmatch(r"cu\d{3}", local) else ""


def stale_reason(extension: Extension, torch_build: str, exports: frozenset[str] | None) -> str | None:
    """Why ``extension`` will not load on a base with ``torch_build`` (whose libtorch exports ``exports``,
    None when it has none to read); None when nothing says so."""
    fits = fits_torch(extension, torch_build)
    if fits is False:
        label = extension.label_torch
        was = (f"torch {label[0]}" + (f" {label[1]}" if label[1] else "")) if label else \
            f"torch {extension.built_against}"
        return f"{extension.describe()} was built for {was}, the base has torch {torch_build}"
    if exports and extension.symbols:
        missing = sorted(extension.symbols - exports)
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            return (f"{extension.describe()} needs {missing[0]}{more}, which the base's torch {torch_build} "
                    "libraries no longer export")
    return None


def _stamp(path: Path) -> Stamp | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size


def _origin(dist_info: Path) -> tuple[Source, str]:
    try:
        document = json.loads((dist_info / "direct_url.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "wheel", ""
    url = str(document.get("url", "")) if isinstance(document, dict) else ""
    directory = document.get("dir_info") if isinstance(document, dict) else None
    if isinstance(directory, dict):
        path = unquote(urlsplit(url).path) if url.startswith("file:") else url
        return ("editable" if directory.get("editable") else "local"), path
    if url and not urlsplit(url).path.endswith(".whl"):
        return "sdist", url
    return "wheel", ""


def _source_objects(root: Path) -> list[Path]:
    """Shared objects under an editable project's source directory (not its venvs, builds or hidden dirs)."""
    found: list[Path] = []
    seen = 0
    for directory, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in _SKIP_DIRS and
                   not (Path(directory) / d / "pyvenv.cfg").is_file()]
        seen += len(files)
        found += [Path(directory) / name for name in files if _OBJECT.search(name)]
        if seen > _MAX_SOURCE_FILES:
            break
    return found


def _read_extension(dist_info: Path, site: Path, record_stamp: Stamp) -> Extension | None:
    """The distribution as an extension, read from its files; None when it links no torch library."""
    try:
        text = (dist_info / "RECORD").read_text(encoding="utf-8", errors="replace")
        metadata = (dist_info / "METADATA").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    source, location = _origin(dist_info)
    if source in ("editable", "local") and location and Path(location).is_dir():
        candidates = _source_objects(Path(location))
    elif ".so" not in text:
        return None  # most distributions: no object at all, their RECORD left unparsed
    else:
        candidates = [site / path for path in record_paths(text) if _OBJECT.search(path) and not path.startswith("..")]
    objects: list[str] = []
    stamps: list[Stamp] = []
    symbols: set[str] = set()
    cuda_only = True
    for path in candidates:
        # what it links first (a few small reads): numpy's or ray's objects end there, unread further
        needed = read_links(path, symbols=False)
        if needed is None or not any(_TORCH_LIBRARY.match(name) for name in needed.needed):
            continue
        links, stamp = read_links(path), _stamp(path)
        if links is None or stamp is None:
            continue
        objects.append(str(path.relative_to(site)) if path.is_relative_to(site) else str(path))
        stamps.append(stamp)
        symbols |= {name for name in links.undefined if is_torch_symbol(name)}
        cuda_only = cuda_only and not any(_LINKS_TORCH.match(name) for name in links.needed)
    if not objects:
        return None
    headers = dict(line.split(": ", 1) for line in metadata.splitlines()[:20] if ": " in line)
    stem = dist_info.name[: -len(".dist-info")]
    name = canonical_name(headers.get("Name", stem.partition("-")[0]))
    version = headers.get("Version", stem.partition("-")[2])
    return Extension(name, version, source, location, tuple(objects), None, frozenset(symbols), record_stamp,
                     tuple(stamps), cuda_only and not symbols)


def from_record(data: Any, name: str, site: Path) -> Extension | None:
    """An extension as ``layerenv-project.json`` records it; None when the entry is not one layerenv wrote."""
    if not isinstance(data, dict):
        return None
    try:
        objects = tuple(str(item) for item in data["objects"])
        stamps = tuple((int(a), int(b)) for a, b in data["stamps"])
        record = (int(data["record"][0]), int(data["record"][1]))
        torch = data.get("torch")
        source = str(data["source"])
        if source not in ("wheel", "editable", "local", "sdist"):
            return None
        return Extension(name, str(data["version"]), source, str(data.get("location", "")),  # type: ignore[arg-type]
                         objects, str(torch) if torch else None, frozenset(), record, stamps,
                         bool(data.get("cuda_only", False)))
    except (KeyError, TypeError, ValueError, IndexError):
        return None


def _unchanged(extension: Extension, site: Path) -> bool:
    return len(extension.objects) == len(extension.stamps) and all(
        _stamp(site / path) == stamp for path, stamp in zip(extension.objects, extension.stamps, strict=True))


def find_extensions(venv: Path, state: Mapping[str, Any], skip: Iterable[str] = ()) -> list[Extension]:
    """The extensions in ``venv``: as recorded in ``state`` where their RECORD and objects are unchanged
    (no file read), else read again (``built_against`` then None). ``skip``: dist-info folder names
    not to look at (the link's stubs)."""
    site = VenvLayout.for_venv(venv).site_packages
    recorded = state.get(STATE_KEY) if isinstance(state.get(STATE_KEY), dict) else {}
    scanned = state.get(SCANNED_KEY) if isinstance(state.get(SCANNED_KEY), dict) else {}
    assert isinstance(recorded, dict) and isinstance(scanned, dict)
    skipped = set(skip)
    found: list[Extension] = []
    try:
        entries = sorted(entry.name for entry in os.scandir(site) if entry.name.endswith(".dist-info"))
    except OSError:
        return []
    for folder in entries:
        if folder in skipped or is_family(folder.partition("-")[0]):
            continue
        stamp = _stamp(site / folder / "RECORD")
        if stamp is None:
            continue
        if scanned.get(folder) == list(stamp):
            continue
        name = canonical_name(folder.partition("-")[0])
        known = from_record(recorded.get(name), name, site)
        if known is not None and known.record == stamp and _unchanged(known, site):
            found.append(known)
            continue
        extension = _read_extension(site / folder, site, stamp)
        if extension is not None:
            if known is not None and known.version == extension.version and known.built_against:
                # the same release installed again (a rebuild in place): still the torch it was recorded with
                extension = replace(extension, built_against=known.built_against)
            found.append(extension)
    return found


def scanned_stamps(venv: Path, skip: Iterable[str] = ()) -> dict[str, list[int]]:
    """The RECORD stamp of every distribution that is no extension (what :func:`find_extensions` skips)."""
    site = VenvLayout.for_venv(venv).site_packages
    skipped = set(skip)
    stamps: dict[str, list[int]] = {}
    try:
        entries = sorted(entry.name for entry in os.scandir(site) if entry.name.endswith(".dist-info"))
    except OSError:
        return {}
    for folder in entries:
        if folder in skipped or is_family(folder.partition("-")[0]):
            continue
        stamp = _stamp(site / folder / "RECORD")
        if stamp is not None:
            stamps[folder] = list(stamp)
    return stamps


def record_extensions(state: Mapping[str, Any], venv: Path, torch_build: str,
                      keep: Mapping[str, str | None] | None = None, skip: Iterable[str] = ()) -> dict[str, Any]:
    """``state`` with its extension record brought up to date: every extension found now was installed
    against ``torch_build``, except those named in ``keep`` (left on the torch recorded before, else the
    one ``keep`` names: a move forced past them). ``skip``: dist-info folder names not to look at."""
    kept, skip = dict(keep or {}), tuple(skip)
    previous = {key: value for key, value in state.items() if key not in (STATE_KEY, SCANNED_KEY)}
    extensions = find_extensions(venv, {STATE_KEY: state.get(STATE_KEY, {})}, skip)
    old = state.get(STATE_KEY) if isinstance(state.get(STATE_KEY), dict) else {}
    assert isinstance(old, dict)
    document: dict[str, Any] = {}
    for extension in extensions:
        torch: str | None = torch_build
        if extension.name in kept:
            before = old.get(extension.name)
            torch = before.get("torch") if isinstance(before, dict) and before.get("torch") else kept[extension.name]
        document[extension.name] = {**extension.to_json(), "torch": torch}
    scanned = {folder: stamp for folder, stamp in scanned_stamps(venv, skip).items()
               if canonical_name(folder.partition("-")[0]) not in document}
    return {**previous, STATE_KEY: document, SCANNED_KEY: scanned}


def read_state(venv: Path) -> dict[str, Any]:
    """The project's ``layerenv-project.json`` (empty when missing or unreadable)."""
    try:
        document = json.loads((venv / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def base_exports(base_site: Path) -> frozenset[str] | None:
    """The c10/at/torch symbols the base's ``torch/lib/libtorch*``/``libc10*`` export; None without any."""
    libraries = base_site / "torch" / "lib"
    try:
        paths = sorted(path for path in libraries.iterdir() if re.match(r"^lib(?:torch|c10)", path.name)
                       and _OBJECT.search(path.name))
    except OSError:
        return None
    exports: set[str] = set()
    for path in paths:
        links = read_links(path)
        if links is not None:
            exports |= {name for name in links.defined if is_torch_symbol(name)}
    return frozenset(exports) if paths else None
