"""What a move to another torch does to each compiled extension, and doing it crash-safely.

:func:`plan_extension` is pure: an extension built for another torch than the new one is reinstalled
from a wheel a source offers for the new torch (its ``+ptXYcuZZZ`` label, or its own torch pin),
rebuilt from its source (an editable or local-directory install, an sdist) with build isolation off so
it compiles against the base's torch, or, when neither is possible, blocks the move with the reason.

:func:`apply_steps` runs the steps in a venv already linked to the new base (a rebuild must see the new
torch). Every file a step replaces is copied aside first; if any step fails, the steps done are undone
from those copies, so the caller can link the venv back to its old base and leave it as it worked.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from layerenv.errors import OperationFailed
from layerenv.installers import Installer, InstallerFailed, LayeredVenv, Log
from layerenv.project.extension_sources import Candidate
from layerenv.project.extensions import Extension, fits_torch, label_torch
from layerenv.venv.distinfo import canonical_name, record_paths
from layerenv.venv.layout import VenvLayout

__all__ = ["ExtensionStep", "apply_steps", "plan_extension", "wheel_fits"]

Action = Literal["reinstall", "rebuild", "blocked"]


@dataclass(frozen=True)
class ExtensionStep:
    """What a move does to one extension."""

    name: str
    version: str
    action: Action
    target: str  # reinstall: the wheel's URL; rebuild: the source directory or sdist URL; blocked: ""
    why: str  # what it is done with, or (blocked) why nothing can be
    editable: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "action": self.action, "target": self.target,
                "why": self.why}

    def describe(self) -> str:
        if self.action == "blocked":
            return f"{self.name} {self.version}: {self.why}"
        return f"{self.action} {self.name} {self.version} ({self.why})"


def _python_fits(tags: tuple[str, ...], python_tag: str) -> bool:
    return any(tag in (python_tag, "py3", f"py{python_tag[2:3]}") for tag in tags)


def _platform_fits(tags: tuple[str, ...], platform: str) -> bool:
    system, _, arch = platform.partition("_")
    linux = ("linux", "manylinux", "musllinux")
    return any(tag == "any" or (tag.endswith(arch) and (tag.startswith(linux) if system == "linux"
                                                         else tag.startswith(system))) for tag in tags)


def wheel_fits(candidate: Candidate, torch_build: str, python_tag: str, platform: str) -> bool:
    """Whether ``candidate`` installs here and was built for ``torch_build`` (label or torch pin)."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    if not (_python_fits(candidate.python_tags, python_tag) and _platform_fits(candidate.platform_tags, platform)):
        return False
    probe = Extension(candidate.name, candidate.version, "wheel", "", (), None)
    if label_torch(candidate.version) is not None:
        return fits_torch(probe, torch_build) is True
    if candidate.requires_torch is None:
        return False
    try:
        return SpecifierSet(candidate.requires_torch).contains(torch_build, prereleases=True) and "==" in \
            candidate.requires_torch
    except InvalidSpecifier:
        return False


def plan_extension(extension: Extension, old_torch: str, new_torch: str, candidates: Sequence[Candidate],
                   python_tag: str, platform: str, where: str) -> ExtensionStep | None:
    """What moving from ``old_torch`` to ``new_torch`` does to ``extension``; None: nothing (it fits
    already, or, with nothing recorded of it, the torch does not change). ``where``: the sources read."""
    known = extension.built_against is not None or extension.label_torch is not None
    # nothing recorded (installed by hand): presumed built against the torch it has been running with
    if fits_torch(extension if known else replace(extension, built_against=old_torch), new_torch):
        return None
    name, version = extension.name, extension.version
    if extension.source in ("editable", "local", "sdist"):
        if extension.source != "sdist" and not Path(extension.location).is_dir():
            return ExtensionStep(name, version, "blocked", "", f"its source {extension.location} is gone, so it "
                                 f"cannot be rebuilt against torch {new_torch}")
        how = "editable source" if extension.source == "editable" else "source"
        return ExtensionStep(name, version, "rebuild", extension.location,
                             f"{how} {extension.location}, against torch {new_torch}",
                             extension.source == "editable")
    from packaging.version import InvalidVersion, Version

    def key(candidate: Candidate) -> Version:
        try:
            return Version(candidate.version)
        except InvalidVersion:
            return Version("0")

    fitting = sorted((c for c in candidates if wheel_fits(c, new_torch, python_tag, platform)), key=key)
    if fitting:
        best = fitting[-1]
        return ExtensionStep(name, version, "reinstall", best.url, f"{best.name} {best.version}, built for "
                             f"torch {new_torch}")
    return ExtensionStep(name, version, "blocked", "", f"built for torch {old_torch}; no wheel built for torch "
                         f"{new_torch} on {where or 'its sources'}, and it was not built from source here")


def _site(venv: Path) -> Path:
    return VenvLayout.for_venv(venv).site_packages


def _dist_files(site: Path, name: str) -> list[Path]:
    """The files the installed distribution ``name`` owns, as its RECORD lists them (dist-info included)."""
    wanted = canonical_name(name)
    for dist_info in site.glob("*.dist-info"):
        if canonical_name(dist_info.name.partition("-")[0]) != wanted:
            continue
        try:
            paths = record_paths((dist_info / "RECORD").read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue
        return [site / path for path in paths if not path.startswith("..")] + [dist_info / "RECORD"]
    return []


@dataclass
class _Saved:
    """The files of one extension before its step: restored if a later step fails."""

    name: str
    files: list[tuple[Path, Path]]  # (where it was, its copy)


def _save(step: ExtensionStep, extension: Extension, site: Path, backup: Path) -> _Saved:
    files = _dist_files(site, step.name)
    files += [Path(path) for path in extension.objects if Path(path).is_absolute()]
    saved = _Saved(step.name, [])
    for number, path in enumerate(files):
        if path.is_file() and not path.is_symlink():
            copy = backup / step.name / str(number)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, copy)
            saved.files.append((path, copy))
    return saved


def _restore(saved: _Saved, site: Path) -> None:
    for path in _dist_files(site, saved.name):  # what the step installed
        path.unlink(missing_ok=True)
    for path, copy in saved.files:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(copy, path)


def _arguments(step: ExtensionStep) -> list[str]:
    if step.action == "reinstall":
        return ["--force-reinstall", "--no-deps", step.target]
    target = ["-e", step.target] if step.editable else [step.target]
    return ["--force-reinstall", "--no-deps", "--no-build-isolation", *target]


def apply_steps(venv: LayeredVenv, steps: Sequence[ExtensionStep], extensions: Sequence[Extension],
                installer: Installer, log: Log) -> list[str]:
    """Reinstall or rebuild each extension; rebuilds first (the likelier to fail). Returns the names done.
    Raises ``OperationFailed`` after undoing every step done when one fails."""
    site = _site(venv.path)
    by_name = {extension.name: extension for extension in extensions}
    ordered = sorted((step for step in steps if step.action != "blocked"), key=lambda step: step.action != "rebuild")
    done: list[_Saved] = []
    # in site-packages: a leftover of a killed run goes with the next link's leftovers (`.layerenv-*`)
    with tempfile.TemporaryDirectory(prefix=".layerenv-extensions-", dir=site) as backup:
        for step in ordered:
            saved = _save(step, by_name[step.name], site, Path(backup))
            try:
                installer.install_project(venv, _arguments(step), log)
            except InstallerFailed as failed:
                for earlier in [saved, *reversed(done)]:
                    _restore(earlier, site)
                lines = [line for line in (failed.stderr + failed.stdout).splitlines() if line.strip()]
                detail = next((line for line in lines if "error" in line.lower()), lines[-1] if lines else "failed")
                raise OperationFailed(f"could not {step.action} {step.name} for the new torch: {detail.strip()}"
                                      + (f" (log: {log.path})" if log.path else "")) from None
            done.append(saved)
    return [saved.name for saved in done]
