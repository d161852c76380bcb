"""Link a project venv to a base: the base's torch family always loads, every other package the
project's own copy first, and pip/uv/poetry see the base's distributions as installed.

What :func:`link` leaves in the project venv (all found again through ``layerenv.json`` or the
``LAYERENV_STUB`` marker, so linking again, to the same or another base, replaces it whole):

- ``_layerenv.pth``: the base's site-packages (after the project's own) and ``import _layerenv_boot``,
  whose ``sys.meta_path`` finder answers the family's top-level names from the base only;
- a stub ``*.dist-info`` per base distribution (METADATA and entry points copied, RECORD naming
  only the stub), wrappers for the family's console scripts;
- ``layerenv-constraints.txt`` pinning the family, read by pip through ``<venv>/pip.conf`` and by uv
  through ``UV_CONSTRAINT`` (activation scripts, :func:`uv_environment`); ``layerenv.json``.
"""

from __future__ import annotations

import base64
import configparser
import hashlib
import io
import json
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from packaging.requirements import InvalidRequirement, Requirement

from layerenv import __version__
from layerenv.atomic import remove_tree, write_json, write_text
from layerenv.distinfo import (
    Distribution,
    canonical_name,
    is_family,
    pyvenv_cfg,
    read_distributions,
    record_paths,
    site_packages_of,
)
from layerenv.errors import BadInput, OperationFailed

__all__ = [
    "LinkRecord",
    "Shadow",
    "explain_conflict",
    "find_shadows",
    "is_family",
    "link",
    "read_link",
    "site_packages_of",
    "unlink_shadows",
    "uv_environment",
]

PTH_NAME = "_layerenv.pth"
BOOT_NAME = "_layerenv_boot.py"
STUB_MARKER = "LAYERENV_STUB"
STUB_INSTALLER = "layerenv"
RECORD_FILE = "layerenv.json"
CONSTRAINTS_FILE = "layerenv-constraints.txt"
WRAPPER_MARK = "# layerenv-wrapper"
#: Seeded into every venv by virtualenv/uv (the project has its own), or layerenv itself.
_NOT_STUBBED = frozenset({"pip", "setuptools", "wheel", "distribute", "layerenv"})
_ENTRY = re.compile(r"^\s*([\w.]+)\s*:\s*([\w.]+)\s*(\[[^\]]*\])?\s*$")

_BOOT = '''"""Written by layerenv for base {base_id}: the torch family loads from the base. Do not edit."""
import sys
from importlib.machinery import PathFinder

_SITE = {site!r}
_NAMES = frozenset({names!r})


class LayerenvFamilyFinder:
    @staticmethod
    def find_spec(name, path=None, target=None):
        return PathFinder.find_spec(name, [_SITE]) if name in _NAMES else None


if LayerenvFamilyFinder.__qualname__ not in {{getattr(f, "__qualname__", "") for f in sys.meta_path}}:
    sys.meta_path.insert(0, LayerenvFamilyFinder)
'''

_WRAPPER = """{shebang}
{mark}: {dist} console script of the base, run by this venv's python
import sys
from {module} import {head}

if __name__ == "__main__":
    sys.exit({attr}())
"""


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

    def version_of(self, name: str) -> str | None:
        return dict(self.family).get(canonical_name(name))

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        return {key: str(value) if isinstance(value, Path) else value for key, value in data.items()}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> LinkRecord:
        def strings(key: str) -> tuple[str, ...]:
            return tuple(str(item) for item in data[key])  # type: ignore[attr-defined]

        family = tuple((str(n), str(v)) for n, v in data["family"])  # type: ignore[attr-defined]
        return cls(
            base_id=str(data["base_id"]),
            base_venv=Path(str(data["base_venv"])),
            base_site=Path(str(data["base_site"])),
            family=family,
            family_modules=strings("family_modules"),
            stubs=strings("stubs"),
            scripts=strings("scripts"),
            constraints=Path(str(data["constraints"])),
            layerenv_version=str(data.get("layerenv_version", "")),
        )


@dataclass(frozen=True)
class Shadow:
    """A torch-family distribution or module really installed in the project venv."""

    name: str
    version: str | None
    path: Path
    kind: Literal["distribution", "module"]

    def describe(self) -> str:
        return f"{self.name} {self.version}" if self.kind == "distribution" else f"{self.name} ({self.path})"


def _is_stub(dist: Distribution) -> bool:
    return (dist.dist_info / STUB_MARKER).is_file()


def _bin_dir(venv: Path) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin")


def _python_series(venv: Path) -> str | None:
    cfg = pyvenv_cfg(venv)
    match = re.match(r"\d+\.\d+", cfg.get("version_info") or cfg.get("version") or "")
    return match[0] if match else None


def _record_row(rel: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{rel},sha256={digest},{len(data)}\n"


def _shebang(python: Path) -> str:
    text = str(python)
    if " " not in text and len(text) < 120:
        return f"#!{text}"
    return f"#!/bin/sh\n'''exec' \"{text}\" \"$0\" \"$@\"\n' '''"  # pip's trick for awkward paths


def _write_wrappers(venv: Path, dist: Distribution) -> dict[str, bytes]:
    """Console-script wrappers of a family dist; never overwrites a script layerenv did not write."""
    written: dict[str, bytes] = {}
    if os.name == "nt":
        return written
    for name, value in dist.console_scripts:
        match, target = _ENTRY.match(value), _bin_dir(venv) / name
        if not match or "/" in name or (target.exists() and WRAPPER_MARK not in _head(target)):
            continue
        module, attr = match[1], match[2]
        text = _WRAPPER.format(
            shebang=_shebang(venv / "bin" / "python"),
            mark=WRAPPER_MARK,
            dist=dist.name,
            module=module,
            head=attr.split(".")[0],
            attr=attr,
        )
        write_text(target, text, mode=0o755)
        written[name] = text.encode()
    return written


def _head(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            return handle.read(400).decode("utf-8", errors="replace")
    except OSError:
        return ""


def _write_stub(site: Path, venv: Path, dist: Distribution, base_id: str, scripts: Mapping[str, bytes]) -> None:
    """Build the stub beside its place, then swap it in (readers never see a half-written one)."""
    final = site / dist.dist_info.name
    marker = {"base_id": base_id, "dist_info": str(dist.dist_info), "layerenv_version": __version__}
    files = {
        "METADATA": (dist.dist_info / "METADATA").read_bytes(),
        "INSTALLER": f"{STUB_INSTALLER}\n".encode(),
        STUB_MARKER: (json.dumps(marker, indent=2) + "\n").encode(),
    }
    for extra in ("WHEEL", "entry_points.txt"):  # uv pip check calls a dist-info without WHEEL broken
        if (dist.dist_info / extra).is_file():
            files[extra] = (dist.dist_info / extra).read_bytes()
    staging = site / f".layerenv-new-{final.name}"
    remove_tree(staging)
    staging.mkdir()
    record = io.StringIO()
    for name, data in files.items():
        (staging / name).write_bytes(data)
        record.write(_record_row(f"{final.name}/{name}", data))
    for name, data in scripts.items():
        record.write(_record_row(os.path.relpath(_bin_dir(venv) / name, site).replace(os.sep, "/"), data))
    record.write(f"{final.name}/RECORD,,\n")
    (staging / "RECORD").write_text(record.getvalue(), encoding="utf-8")
    graveyard = site / f".layerenv-old-{final.name}"
    if final.exists():
        remove_tree(graveyard)
        os.replace(final, graveyard)
    os.replace(staging, final)
    remove_tree(graveyard)


def _write_pip_conf(venv: Path, constraints: Path) -> None:
    """``<venv>/pip.conf`` (the venv's "site" config) gets our constraints file, other keys kept."""
    path = venv / ("pip.ini" if os.name == "nt" else "pip.conf")
    parser = configparser.ConfigParser(interpolation=None)
    if path.is_file():
        parser.read(path, encoding="utf-8")
    if not parser.has_section("global"):
        parser.add_section("global")
    others = [c for c in parser.get("global", "constraint", fallback="").split() if Path(c).name != CONSTRAINTS_FILE]
    parser.set("global", "constraint", " ".join([str(constraints), *others]))
    text = io.StringIO()
    parser.write(text)
    write_text(path, text.getvalue())


_BLOCK = re.compile(r"[ \t]*# >>> layerenv >>>\n.*?# <<< layerenv <<<\n", re.S)
_V, _OLD, _ON = "UV_CONSTRAINT", "_LAYERENV_OLD_UV_CONSTRAINT", "_LAYERENV_UV_ACTIVE"
# Per activation script: (where deactivate's body starts, code restoring UV_CONSTRAINT there,
# code exporting it on activation); "{q}" is the constraints path quoted for that shell.
_SHELLS: dict[str, tuple[str, str, str]] = {
    "activate": (
        r"^deactivate\s*\(\)\s*\{[^\n]*\n",
        f'if [ -n "${{{_ON}:-}}" ] ; then\n    if [ -n "${{{_OLD}+x}}" ] ; then\n        {_V}="${_OLD}"\n'
        f"        export {_V}\n        unset {_OLD}\n    else\n        unset {_V}\n    fi\n    unset {_ON}\nfi\n",
        f'if [ -n "${{{_V}+x}}" ] ; then\n    {_OLD}="${_V}"\nfi\n{_ON}=1\n'
        f'{_V}={{q}}"${{{_V}:+ ${_V}}}"\nexport {_V}\n',
    ),
    "activate.fish": (
        r"^function deactivate\b[^\n]*\n",
        f"if set -q {_ON}\n    if set -q {_OLD}\n        set -gx {_V} ${_OLD}\n        set -e {_OLD}\n"
        f"    else\n        set -e {_V}\n    end\n    set -e {_ON}\nend\n",
        f"if set -q {_V}\n    set -g {_OLD} ${_V}\n    set -gx {_V} (string join ' ' {{q}} ${_V})\n"
        f"else\n    set -gx {_V} {{q}}\nend\nset -g {_ON} 1\n",
    ),
    "deactivate.csh": (
        r"\A",
        f'if ($?{_ON}) then\n    if ($?{_OLD}) then\n        setenv {_V} "${_OLD}:q"\n        unset {_OLD}\n'
        f"    else\n        unsetenv {_V}\n    endif\n    unset {_ON}\nendif\n",
        "",
    ),
    "activate.csh": (
        "",
        "",
        f'if ($?{_V}) then\n    set {_OLD}="${_V}:q"\n    setenv {_V} {{q}}" ${_V}:q"\nelse\n'
        f"    setenv {_V} {{q}}\nendif\nset {_ON}=1\n",
    ),
    "activate.ps1": (
        r"^function global:deactivate\b[^\n]*\{[ \t]*\r?\n",
        f"if (Test-Path variable:{_ON}) {{\n    if (Test-Path variable:{_OLD}) {{\n"
        f"        $env:{_V} = $global:{_OLD}\n        Remove-Variable -Name {_OLD} -Scope Global\n"
        f"    }} else {{\n        Remove-Item env:{_V} -ErrorAction SilentlyContinue\n    }}\n"
        f"    Remove-Variable -Name {_ON} -Scope Global\n}}\n",
        f"if (Test-Path env:{_V}) {{\n    $global:{_OLD} = $env:{_V}\n    $env:{_V} = {{q}} + ' ' + $env:{_V}\n"
        f"}} else {{\n    $env:{_V} = {{q}}\n}}\n$global:{_ON} = $true\n",
    ),
}
_QUOTE: dict[str, Callable[[str], str]] = {
    "activate": lambda s: "'" + s.replace("'", "'\\''") + "'",
    "activate.fish": lambda s: "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'",
    "activate.csh": lambda s: "'" + s.replace("'", "'\\''").replace("!", "\\!") + "'",
    "activate.ps1": lambda s: "'" + s.replace("'", "''") + "'",
}


def _block(code: str, indent: str = "") -> str:
    lines = ["# >>> layerenv >>>", *code.splitlines(), "# <<< layerenv <<<"]
    return "".join(f"{indent}{line}\n" if line else "\n" for line in lines)


def _patch_activation_scripts(bin_dir: Path, constraints: Path) -> None:
    """Export UV_CONSTRAINT on activation and restore the previous value on deactivation.

    A script whose deactivate cannot be found (an unknown layout) is left alone. csh without
    ``deactivate.csh`` (stdlib venv) keeps deactivate in a one-line alias: not patched either.
    """
    for name, (anchor, restore, export) in _SHELLS.items():
        for path in (bin_dir / name, bin_dir / name.replace("activate.ps1", "Activate.ps1")):
            if not path.is_file() or (name == "activate.csh" and not (bin_dir / "deactivate.csh").is_file()):
                continue
            text = _BLOCK.sub("", path.read_text(encoding="utf-8"))
            if anchor:
                match = re.search(anchor, text, re.M)
                if match is None:
                    continue
                text = text[: match.end()] + _block(restore, "    " if match.end() else "") + text[match.end() :]
            if export:
                code = _block(export.replace("{q}", _QUOTE[name](str(constraints))))
                sig = text.find("# SIG # Begin signature block")
                text = text + code if sig < 0 else text[:sig] + code + text[sig:]
            write_text(path, text, mode=path.stat().st_mode & 0o777)
            break


def link(project_venv: Path, *, base_id: str, base_venv: Path) -> LinkRecord:
    """Layer ``project_venv`` on ``base_venv`` (again, or onto another base); returns the record.

    The project's own installs are left alone. Each file is replaced atomically, the boot module
    and then the ``.pth`` last, so an interrupted link leaves ``import torch`` working with the old
    or the new base; ``layerenv.json`` is written after them, once everything is in place.
    """
    venv, base = project_venv.absolute(), base_venv.absolute()
    site, base_site = site_packages_of(venv), site_packages_of(base)
    if not base_site.is_dir() or not site.is_dir():
        raise BadInput(f"not a venv with site-packages: {base if not base_site.is_dir() else venv}")
    if None not in (ours := _python_series(venv), theirs := _python_series(base)) and ours != theirs:
        raise BadInput(f"{venv} runs Python {ours} but base {base_id} is Python {theirs}; they must match")
    previous = read_link(venv)
    base_dists = [
        d for d in read_distributions(base_site) if d.name not in _NOT_STUBBED and d.installer != STUB_INSTALLER
    ]
    family = [d for d in base_dists if is_family(d.name)]
    project = read_distributions(site)
    real = {d.name for d in project if not _is_stub(d)}
    stubs, scripts = [], []
    for dist in base_dists:
        if dist.name in real:  # the project's own copy (or a family shadow: see find_shadows)
            continue
        wrappers = _write_wrappers(venv, dist) if is_family(dist.name) else {}
        _write_stub(site, venv, dist, base_id, wrappers)
        stubs.append(dist.dist_info.name)
        scripts.extend(wrappers)
    for old in project:
        if _is_stub(old) and old.dist_info.name not in stubs:
            remove_tree(old.dist_info)
    for name in set(previous.scripts if previous else ()) - set(scripts):
        if WRAPPER_MARK in _head(_bin_dir(venv) / name):
            (_bin_dir(venv) / name).unlink()
    constraints = venv / CONSTRAINTS_FILE
    pins = "".join(f"{d.name}=={d.version}\n" for d in family)
    write_text(constraints, f"# layerenv: the torch family of base {base_id}; installers must keep it.\n{pins}")
    _write_pip_conf(venv, constraints)
    _patch_activation_scripts(_bin_dir(venv), constraints)
    modules = tuple(sorted({m for d in family for m in d.top_level}))
    write_text(site / BOOT_NAME, _BOOT.format(base_id=base_id, site=str(base_site), names=modules))
    for cached in (site / "__pycache__").glob("_layerenv_boot.*.pyc"):  # same size, same second: stale
        cached.unlink(missing_ok=True)
    write_text(site / PTH_NAME, f"{base_site}\nimport _layerenv_boot\n")
    record = LinkRecord(
        base_id=base_id,
        base_venv=base,
        base_site=base_site,
        family=tuple((d.name, d.version) for d in family),
        family_modules=modules,
        stubs=tuple(stubs),
        scripts=tuple(scripts),
        constraints=constraints,
    )
    write_json(venv / RECORD_FILE, record.to_json())
    return record


def read_link(project_venv: Path) -> LinkRecord | None:
    """The record of the last completed :func:`link`, or None for a venv never linked."""
    path = project_venv / RECORD_FILE
    try:
        return LinkRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OperationFailed(f"{path} is unreadable ({exc}); run layerenv project again to relink") from exc


def uv_environment(project_venv: Path, base_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Variables that make ``uv pip`` act on ``project_venv`` and keep the base's torch family.

    ``UV_CONSTRAINT`` is a space-separated list for uv: a value already in ``base_env`` is kept
    after ours. ``UV_PYTHON`` is not set: ``VIRTUAL_ENV`` already selects the venv for ``uv pip``,
    and ``UV_PYTHON`` would also steer ``uv venv``/``uv run`` in the user's command.
    """
    venv = project_venv.absolute()
    if read_link(venv) is None:
        raise BadInput(f"{venv} is not linked to a base")
    ours = str(venv / CONSTRAINTS_FILE)
    prior = [item for item in (base_env or {}).get("UV_CONSTRAINT", "").split() if item != ours]
    return {"UV_CONSTRAINT": " ".join([ours, *prior]), "VIRTUAL_ENV": str(venv)}


def find_shadows(project_venv: Path) -> list[Shadow]:
    """Family distributions and modules really installed in the project (stubs excluded)."""
    site = site_packages_of(project_venv)
    record = read_link(project_venv)
    real = [d for d in read_distributions(site) if not _is_stub(d)]
    shadows = [Shadow(d.name, d.version, d.dist_info, "distribution") for d in real if is_family(d.name)]
    owned = {module for d in real for module in d.top_level}
    for module in record.family_modules if record else ():
        if module in owned:
            continue
        found = [site / module, site / f"{module}.py", *site.glob(f"{module}.*.so"), *site.glob(f"{module}.*.pyd")]
        shadows.extend(Shadow(module, None, path, "module") for path in found if path.exists())
    return shadows


def unlink_shadows(project_venv: Path) -> list[str]:
    """Remove every shadow (a distribution through its RECORD, only files inside the venv);
    returns what went. Link again afterwards to restore the family's stubs."""
    venv = Path(os.path.normpath(project_venv.absolute()))
    site = site_packages_of(venv)
    removed: list[str] = []
    for shadow in find_shadows(venv):
        parents: set[Path] = set()
        if shadow.kind == "distribution":
            record = shadow.path / "RECORD"
            for rel in record_paths(record.read_text(encoding="utf-8")) if record.is_file() else []:
                target = Path(os.path.normpath(site / rel))
                if target.is_relative_to(venv) and (target.is_file() or target.is_symlink()):
                    target.unlink()
                    parents.add(target.parent)
        remove_tree(shadow.path)
        _prune_empty(parents, site)
        removed.append(shadow.describe())
    return removed


def _prune_empty(directories: set[Path], site: Path) -> None:
    for directory in sorted(directories, key=lambda p: len(p.parts), reverse=True):
        while directory.is_relative_to(site) and directory != site and directory.is_dir():
            entries = list(directory.iterdir())
            if [e.name for e in entries] == ["__pycache__"]:
                shutil.rmtree(entries[0])
            elif entries:
                break
            directory.rmdir()
            directory = directory.parent


_DEPENDS = re.compile(
    r"(?P<pkg>[A-Za-z0-9][\w.\-]*)(?:==(?P<ver>[\w.+!\-]+)| (?P<ver2>\d[\w.+!\-]*))? depends? on (?P<req>[A-Za-z0-9][\w.\-]*"
    r"(?:\[[^\]]*\])?(?:\s*[<>=!~]{1,3}\s*[\w.*+!\-]+(?:\s*,\s*[<>=!~]{1,3}\s*[\w.*+!\-]+)*)?)"
)


def _requirements(text: str) -> list[tuple[str, str | None, str]]:
    """(package, version, requirement) found in installer output or in METADATA text."""
    found = [(m["pkg"], m["ver"] or m["ver2"], m["req"]) for m in _DEPENDS.finditer(text)]
    name = re.search(r"^Name:\s*(\S+)", text, re.M)
    version = re.search(r"^Version:\s*(\S+)", text, re.M)
    for req in re.findall(r"^Requires-Dist:\s*(.+)$", text, re.M):
        found.append((name[1] if name else "the package", version[1] if version else None, req.strip()))
    return found


def explain_conflict(requirement_text: str, base: LinkRecord) -> str:
    """One message naming the package, its torch-family requirement and the base's build.

    ``requirement_text`` is a failed installer's output (pip's "X 1.0 depends on torch==2.5.1", uv's
    "X==1.0 depends on torch==2.5.1") or a package's METADATA (``Requires-Dist`` lines).
    """
    clashes: list[str] = []
    for package, version, text in _requirements(requirement_text):
        try:
            req = Requirement(text.split(";")[0].strip())
        except InvalidRequirement:
            continue
        have = base.version_of(req.name)
        if have is None or canonical_name(package) == canonical_name(req.name):
            continue
        if not req.specifier.contains(have, prereleases=True):
            who = f"{package} {version}" if version else package
            clashes.append(f"{who} requires {req.name}{req.specifier}, but base {base.base_id} provides "
                           f"{canonical_name(req.name)} {have}")
    if not clashes:
        pins = ", ".join(f"{n} {v}" for n, v in base.family if n in ("torch", "torchvision", "torchaudio"))
        return (f"the install needs a torch family other than base {base.base_id}'s ({pins or 'none'}); "
                f"the project keeps the base's build ({base.constraints})")
    unique = list(dict.fromkeys(clashes))
    return "; ".join(unique) + ". The project keeps the base's torch family: relax the requirement, or " \
        "move the project to a base with a matching torch (layerenv rebase)."
