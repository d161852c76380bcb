"""Link a project venv to a base: the base's torch family always loads, every other package the
project's own copy first, and pip/uv/poetry see the base's distributions as installed.

What :func:`link` leaves in the project venv (found again through ``layerenv.json``, the
``LAYERENV_STUB`` marker and the wrappers' mark, so linking again, to the same or another base,
replaces all of it and nothing else):

- ``_layerenv.pth``: the base's site-packages (after the project's own) and ``import _layerenv_boot``,
  whose ``sys.meta_path`` finder answers the family's top-level names from the base only;
- a stub ``*.dist-info`` per base distribution (METADATA, WHEEL, entry points copied; RECORD naming
  only the stub's files) and wrappers for the family's console scripts;
- ``layerenv-constraints.txt`` pinning the family, read by pip through ``<venv>/pip.conf`` and by uv
  through ``UV_CONSTRAINT`` (set by the activation scripts and :func:`uv_environment`).
"""

from __future__ import annotations

import base64
import configparser
import csv
import enum
import io
import json
import os
import py_compile
import re
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from hashlib import sha256
from pathlib import Path

from layerenv import __version__
from layerenv.errors import BadInput, OperationFailed
from layerenv.project.activation import patch_activation_scripts
from layerenv.project.uv_wrapper import write_uv_shim
from layerenv.store.atomic import remove_tree, write_json, write_text
from layerenv.venv.distinfo import (
    Distribution,
    canonical_name,
    is_family,
    pyvenv_cfg,
    read_distributions,
    site_packages_of,
)

__all__ = [
    "LinkRecord",
    "PerNode",
    "is_family",
    "is_per_node",
    "link",
    "read_link",
    "site_packages_of",
    "uv_environment",
]

PTH_NAME = "_layerenv.pth"  # neutral: a torch-like name makes poetry take torch for an editable install
BOOT_NAME = "_layerenv_boot.py"
STUB_MARKER = "LAYERENV_STUB"
STUB_INSTALLER = "layerenv"
RECORD_FILE = "layerenv.json"
STATE_FILE = "layerenv-project.json"  # what `layerenv project` installed, and onto which base
CONSTRAINTS_FILE = "layerenv-constraints.txt"
WRAPPER_MARK = "# layerenv-wrapper"
_NOT_STUBBED = frozenset({"pip", "setuptools", "wheel", "distribute", "layerenv"})  # the project has its own
_ENTRY = re.compile(r"^\s*([\w.]+)\s*:\s*([\w.]+)\s*(\[[^\]]*\])?\s*$")

_INSTALL_FINDER = '''
if _SITE is not None:
    if _SITE not in sys.path:
        sys.path.append(_SITE)
    # The interpreter's own PathFinder is on sys.meta_path already; importing importlib costs ~1 ms.
    _FINDER = next((f for f in sys.meta_path if getattr(f, "__name__", "") == "PathFinder"), None)
    if _FINDER is None:
        from importlib.machinery import PathFinder as _FINDER

    class LayerenvFamilyFinder:
        @staticmethod
        def find_spec(name, path=None, target=None):
            return _FINDER.find_spec(name, [_SITE]) if name in _NAMES else None

    if LayerenvFamilyFinder.__qualname__ not in {{getattr(f, "__qualname__", "") for f in sys.meta_path}}:
        sys.meta_path.insert(0, LayerenvFamilyFinder)
'''

_BOOT = '''"""Written by layerenv for base {base_id}: the torch family loads from the base. Do not edit."""
import sys

_SITE = {site!r}
_NAMES = frozenset({names!r})
''' + _INSTALL_FINDER

_BOOT_PER_NODE = '''"""Written by layerenv (per-node project, primary base {base_id}): the torch family loads from the
base that `layerenv base` recorded for this node in {store}/nodes. Do not edit."""
import os
import sys

_STORE = {store!r}
_PYTHON_KEY = {python_key!r}
_BASE_PYTHON = {base_python!r}
_LAYERENV = {layerenv!r}
_NAMES = frozenset({names!r})


def _read(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return ""


def _safe(name):
    return name[:1].isalnum() and all(c.isalnum() or c in "._+-" for c in name) and ".." not in name and len(name) < 200


def _node():
    name = os.environ.get("LAYERENV_NODE")
    if name:
        return name if _safe(name) else ".invalid"
    host = os.uname().nodename.split(".")[0] or "localhost"
    return host if _safe(host) else "host-" + host.encode().hex()[:32]


def _site():
    text = _read(_STORE + "/nodes/" + _node() + "/" + _PYTHON_KEY + ".txt")
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    boot = _read("/proc/sys/kernel/random/boot_id").strip()
    site = fields.get("site", "")
    return site if site and fields.get("boot", "") == boot and os.path.isdir(site) else None


_SITE = _site()
if _SITE is None and not os.environ.get("LAYERENV_RESOLVING"):
    import subprocess

    sys.stderr.write("layerenv: no base recorded for node " + _node() + " in this boot; asking `layerenv base`\\n")
    _ENV = dict(os.environ, LAYERENV_HOME=_STORE, LAYERENV_RESOLVING="1")
    try:
        subprocess.run([*_LAYERENV, "base", "--python", _BASE_PYTHON, "--quiet"], env=_ENV, cwd=_STORE,
                       stdin=subprocess.DEVNULL, stdout=2, check=False)
    except OSError as error:
        sys.stderr.write("layerenv: could not run layerenv (" + str(error) + ")\\n")
    _SITE = _site()
if _SITE is None:
    sys.stderr.write("layerenv: node " + _node() + " has no base for " + _PYTHON_KEY + " in " + _STORE
                     + "; run `layerenv base` on it (torch will not import until then)\\n")
''' + _INSTALL_FINDER

_WRAPPER = """{shebang}
{mark}: {dist} console script of the base, run by this venv's python
import sys
from {module} import {head}

if __name__ == "__main__":
    sys.exit({attr}())
"""


def _list(value: object) -> list[object]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {value!r}")
    return value


def _strings(value: object) -> tuple[str, ...]:
    return tuple(str(item) for item in _list(value))


class Keep(enum.Enum):
    """``link(per_node=KEEP)``: link the way the venv's last link did (per node or fixed)."""

    KEEP = "keep"


KEEP = Keep.KEEP


def layerenv_command() -> tuple[str, ...]:
    """How a project's boot module runs this layerenv: this interpreter, this copy of the package."""
    parent = str(Path(__file__).resolve().parent.parent)
    code = f"import sys; sys.path.insert(0, {parent!r}); from layerenv.entry import main; main()"
    return (sys.executable, "-c", code)


@dataclass(frozen=True)
class PerNode:
    """Link per node: the base comes from ``store``'s record for the node the interpreter starts on."""

    store: Path
    python_key: str  # "cp311-linux_x86_64", as recorded by layerenv.store.nodes
    base_python: str  # the interpreter `layerenv base --python` is given on a node with no answer yet
    layerenv: tuple[str, ...] = field(default_factory=layerenv_command)

    def to_json(self) -> dict[str, object]:
        return {"store": str(self.store), "python_key": self.python_key, "base_python": self.base_python,
                "layerenv": list(self.layerenv)}

    @classmethod
    def from_json(cls, data: object) -> PerNode:
        if not isinstance(data, dict):
            raise TypeError(f"per_node: expected a table, got {data!r}")
        return cls(Path(str(data["store"])), str(data["python_key"]), str(data["base_python"]),
                   _strings(data["layerenv"]))


@dataclass(frozen=True)
class LinkRecord:
    """What :func:`link` did to a project venv; stored as ``<venv>/layerenv.json``."""

    base_id: str
    base_venv: Path
    base_site: Path
    family: tuple[tuple[str, str], ...]  # (dist name, dist version from METADATA)
    family_modules: tuple[str, ...]
    stubs: tuple[str, ...]  # stub dist-info folder names in the project's site-packages
    scripts: tuple[str, ...]  # wrapper script names in the project's bin/
    constraints: Path
    layerenv_version: str = __version__
    per_node: PerNode | None = None  # set: the base is chosen per node at start-up

    def version_of(self, name: str) -> str | None:
        return dict(self.family).get(canonical_name(name))

    def to_json(self) -> dict[str, object]:
        document = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
        document["per_node"] = self.per_node.to_json() if self.per_node else None
        return document

    @property
    def boot_kind(self) -> str:
        return "per-node" if self.per_node else "fixed"

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> LinkRecord:
        pairs = [_strings(pair) for pair in _list(data["family"])]
        return cls(
            base_id=str(data["base_id"]),
            base_venv=Path(str(data["base_venv"])),
            base_site=Path(str(data["base_site"])),
            family=tuple((pair[0], pair[1]) for pair in pairs),
            family_modules=_strings(data["family_modules"]),
            stubs=_strings(data["stubs"]),
            scripts=_strings(data["scripts"]),
            constraints=Path(str(data["constraints"])),
            layerenv_version=str(data.get("layerenv_version", "")),
            per_node=PerNode.from_json(data["per_node"]) if data.get("per_node") else None,
        )


def _is_stub(dist: Distribution) -> bool:
    """A stub: its marker, or (the marker lost) the INSTALLER layerenv writes, so linking again rewrites it."""
    return (dist.dist_info / STUB_MARKER).is_file() or dist.installer == STUB_INSTALLER


def _bin_dir(venv: Path) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin")


def _python_series(venv: Path) -> str | None:
    cfg = pyvenv_cfg(venv)
    match = re.match(r"\d+\.\d+", cfg.get("version_info") or cfg.get("version") or "")
    return match[0] if match else None


def _head(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            return handle.read(400).decode("utf-8", errors="replace")
    except OSError:
        return ""


def _shebang(python: Path) -> str:
    text = str(python)
    if " " not in text and len(text) < 120:
        return f"#!{text}"
    return f"#!/bin/sh\n'''exec' \"{text}\" \"$0\" \"$@\"\n' '''"  # pip's trick for awkward paths


def _write_wrappers(venv: Path, dist: Distribution) -> dict[str, bytes]:
    """Console-script wrappers of a family dist; a script layerenv did not write is left alone."""
    written: dict[str, bytes] = {}
    for name, value in dist.console_scripts if os.name != "nt" else ():
        match, target = _ENTRY.match(value), _bin_dir(venv) / name
        if not match or "/" in name or (target.exists() and WRAPPER_MARK not in _head(target)):
            continue
        text = _WRAPPER.format(shebang=_shebang(venv / "bin" / "python"), mark=WRAPPER_MARK, dist=dist.name,
                               module=match[1], head=match[2].split(".")[0], attr=match[2])
        write_text(target, text, mode=0o755, durable=False)
        written[name] = text.encode()
    return written


def _write_stub(site: Path, venv: Path, dist: Distribution, base_id: str, scripts: Mapping[str, bytes]) -> str:
    """Build the stub beside its place, then swap it in; RECORD names the stub's files only."""
    final = site / dist.dist_info.name
    marker = {"base_id": base_id, "dist_info": str(dist.dist_info), "layerenv_version": __version__}
    files = {"INSTALLER": f"{STUB_INSTALLER}\n".encode(), STUB_MARKER: json.dumps(marker, indent=2).encode()}
    for name in ("METADATA", "WHEEL", "entry_points.txt"):  # `uv pip check` wants WHEEL
        if (dist.dist_info / name).is_file():
            files[name] = (dist.dist_info / name).read_bytes()
    staging, graveyard = site / f".layerenv-new-{final.name}", site / f".layerenv-old-{final.name}"
    remove_tree(staging)
    staging.mkdir()
    listed = {f"{final.name}/{name}": data for name, data in files.items()}
    for name, data in files.items():
        (staging / name).write_bytes(data)
    for name, data in scripts.items():
        listed[os.path.relpath(_bin_dir(venv) / name, site).replace(os.sep, "/")] = data
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for rel, data in listed.items():
        digest = sha256(data).digest()
        writer.writerow([rel, "sha256=" + _b64(digest), len(data)])
    writer.writerow([f"{final.name}/RECORD", "", ""])
    (staging / "RECORD").write_text(record.getvalue(), encoding="utf-8")
    if final.exists():
        remove_tree(graveyard)
        final.replace(graveyard)
    staging.replace(final)
    remove_tree(graveyard)
    return final.name


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _write_pip_conf(venv: Path, constraints: Path) -> None:
    """``<venv>/pip.conf``, the venv's "site" config, names our constraints; other settings stay."""
    path = venv / ("pip.ini" if os.name == "nt" else "pip.conf")
    parser = configparser.ConfigParser(interpolation=None)
    if path.is_file():
        parser.read(path, encoding="utf-8")
    if not parser.has_section("global"):
        parser.add_section("global")
    current = parser.get("global", "constraint", fallback="").split()  # pip splits it on whitespace
    others = [item for item in current if Path(item).name != CONSTRAINTS_FILE]
    parser.set("global", "constraint", " ".join([str(constraints), *others]))
    text = io.StringIO()
    parser.write(text)
    write_text(path, text.getvalue())


def _compile_boot(venv: Path, boot: Path) -> None:
    """Drop cached bytecode of an older boot module (same size, same second would pass the mtime
    check) and, when this interpreter matches the venv's, write a source-hash-checked .pyc so that
    start-up needs no compile even where bytecode is not written (PYTHONDONTWRITEBYTECODE)."""
    for cached in (boot.parent / "__pycache__").glob("_layerenv_boot.*.pyc"):
        cached.unlink(missing_ok=True)
    cfg = pyvenv_cfg(venv)
    same = _python_series(venv) == "{}.{}".format(*sys.version_info) and sys.implementation.name == "cpython"
    if same and cfg.get("implementation", "cpython").lower() == "cpython":
        py_compile.compile(str(boot), doraise=False, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)


_BASE_CACHE: dict[tuple[Path, int], list[Distribution]] = {}


def _base_distributions(base_site: Path) -> list[Distribution]:
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


def link(project_venv: Path, *, base_id: str, base_venv: Path, per_node: PerNode | Keep | None = KEEP) -> LinkRecord:
    """Layer ``project_venv`` on ``base_venv`` (again, or onto another base); returns the record.

    ``per_node``: a :class:`PerNode` makes the venv choose its base per node at start-up (the base
    given here is the primary one: its distributions are the stubs and the constraints); None makes
    it fixed on this base; ``KEEP`` (the default) keeps what the venv's last link chose.

    The project's own installs are left alone. Files are replaced atomically, the boot module and
    then the ``.pth`` last, so an interrupted link leaves ``import torch`` working with the old or
    the new base; ``layerenv.json`` follows them once everything is in place.
    """
    venv, base = project_venv.absolute(), base_venv.absolute()
    site, base_site = site_packages_of(venv), site_packages_of(base)
    if venv == base or not base_site.is_dir() or not site.is_dir():
        raise BadInput(f"cannot layer {venv} on {base}: not two venvs with site-packages")
    if None not in (ours := _python_series(venv), theirs := _python_series(base)) and ours != theirs:
        raise BadInput(f"{venv} runs Python {ours} but base {base_id} has Python {theirs}; they must match")
    if per_node is KEEP:
        previous = read_link(venv)
        per_node = previous.per_node if previous else None
    for leftover in site.glob(".layerenv-*"):  # staging of an interrupted link
        remove_tree(leftover)
    base_dists = _base_distributions(base_site)
    family = [d for d in base_dists if is_family(d.name)]
    project = read_distributions(site)
    real = {d.name for d in project if not _is_stub(d)}
    stubs: list[str] = []
    scripts: dict[str, bytes] = {}
    for dist in base_dists:
        if dist.name not in real:  # else the project's own copy (or a family shadow: lifecycle.shadows)
            wrappers = _write_wrappers(venv, dist) if is_family(dist.name) else {}
            stubs.append(_write_stub(site, venv, dist, base_id, wrappers))
            scripts.update(wrappers)
    for old in project:
        if _is_stub(old) and old.dist_info.name not in stubs:
            remove_tree(old.dist_info)
    for path in _bin_dir(venv).iterdir() if _bin_dir(venv).is_dir() else ():
        if path.name not in scripts and path.is_file() and WRAPPER_MARK in _head(path):
            path.unlink()
    constraints = venv / CONSTRAINTS_FILE
    pins = "".join(f"{d.name}=={d.version}\n" for d in family)
    write_text(constraints, f"# layerenv: the torch family of base {base_id}; installs must keep it.\n{pins}")
    _write_pip_conf(venv, constraints)
    patch_activation_scripts(_bin_dir(venv), constraints)
    write_uv_shim(venv)
    modules = tuple(sorted({m for d in family for m in d.top_level}))
    if per_node is None:
        boot = _BOOT.format(base_id=base_id, site=str(base_site), names=modules)
        pth = f"{base_site}\nimport _layerenv_boot\n"
    else:
        boot = _BOOT_PER_NODE.format(base_id=base_id, store=str(per_node.store), python_key=per_node.python_key,
                                     base_python=per_node.base_python, layerenv=list(per_node.layerenv),
                                     names=modules)
        pth = "import _layerenv_boot\n"
    write_text(site / BOOT_NAME, boot)
    _compile_boot(venv, site / BOOT_NAME)
    write_text(site / PTH_NAME, pth)
    record = LinkRecord(base_id, base, base_site, tuple((d.name, d.version) for d in family), modules,
                        tuple(stubs), tuple(sorted(scripts)), constraints,
                        per_node=per_node)
    write_json(venv / RECORD_FILE, record.to_json())
    return record


def read_link(project_venv: Path) -> LinkRecord | None:
    """The record of the last completed :func:`link`, or None for a venv never linked."""
    path = project_venv / RECORD_FILE
    try:
        return LinkRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise OperationFailed(f"{path} is unreadable ({exc}); link the project again") from exc


def is_per_node(project_venv: Path) -> bool:
    """Whether the venv chooses its base per node at start-up (an unreadable record: no)."""
    try:
        record = read_link(project_venv)
    except OperationFailed:
        return False
    return record is not None and record.per_node is not None


def uv_environment(project_venv: Path, base_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Variables that make ``uv pip`` act on ``project_venv`` and keep the base's torch family.

    ``UV_CONSTRAINT`` is a space-separated list for uv: one already in ``base_env`` is kept after
    ours. No ``UV_PYTHON``: ``VIRTUAL_ENV`` already selects the venv for ``uv pip``, and
    ``UV_PYTHON`` would also steer ``uv venv``/``uv run`` inside the user's command.
    """
    venv = project_venv.absolute()
    if read_link(venv) is None:
        raise BadInput(f"{venv} is not linked to a base")
    ours = str(venv / CONSTRAINTS_FILE)
    prior = [item for item in (base_env or {}).get("UV_CONSTRAINT", "").split() if item != ours]
    return {"UV_CONSTRAINT": " ".join([ours, *prior]), "VIRTUAL_ENV": str(venv)}
