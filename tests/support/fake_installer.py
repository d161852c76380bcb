"""A fake :class:`layerenv.installers.Installer`: no subprocess, no index. It "resolves" from a table
of wheels you give it (built with :mod:`tests.support.wheels`) and "installs" by unpacking the chosen
wheels into the venv's site-packages, dist-info and RECORD included, so the venv's own python
imports what it installed (a fake torch whose arch list you chose) and layerenv reads its
distributions as it would after pip.

    installer = FakeInstaller([build_fake_torch(tmp, "2.16.0+cu130", cuda="13.0", arch_list=("sm_100",))])
    build(request, store, key, reporter, installer)
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

from layerenv.installers import LayeredVenv, Log, Resolved, Sources, Wanted
from layerenv.venv.distinfo import canonical_name
from layerenv.venv.layout import VenvLayout

from .index import file_url
from .wheels import parse_wheel_filename


class FakeInstaller:
    name = "fake"

    def __init__(self, wheels: Iterable[Path]) -> None:
        self.wheels = {
            (canonical_name(parse_wheel_filename(wheel.name)[0]), parse_wheel_filename(wheel.name)[1]): wheel
            for wheel in wheels
        }
        self.installed: list[str] = []  # "name==version" in the order they were unpacked

    @property
    def seeds_pip(self) -> bool:
        return False

    def newest(self, python: Path, requirement: str, sources: Sources, log: Log) -> Resolved | None:
        return self._choose(requirement)

    def newest_each(
        self, python: Path, requirements: Sequence[str], sources: Sources, log: Log
    ) -> list[Resolved] | None:
        found = [self.newest(python, requirement, sources, log) for requirement in requirements]
        return [item for item in found if item is not None] if all(found) else None

    def _choose(self, requirement: str) -> Resolved | None:
        wanted = Requirement(requirement)
        versions = [
            version
            for name, version in self.wheels
            if name == canonical_name(wanted.name) and wanted.specifier.contains(version, prereleases=True)
        ]
        if not versions:
            return None
        newest = max(versions, key=Version)
        return self._resolved(canonical_name(wanted.name), newest)

    def install(
        self, python: Path, requirements: Sequence[str], sources: Sources, log: Log, *, sources_for: Wanted = None
    ) -> list[Resolved]:
        return self._unpack(python.parent.parent, requirements)

    def install_project(self, venv: LayeredVenv, requirements: Sequence[str], log: Log) -> list[Resolved]:
        return self._unpack(venv.path, requirements)

    def reinstall(self, venv: LayeredVenv, names: Sequence[str], log: Log) -> list[Resolved]:
        return self._unpack(venv.path, names)

    def _resolved(self, name: str, version: str) -> Resolved:
        return Resolved(name, version, file_url(self.wheels[(name, version)]))

    def _unpack(self, venv: Path, requirements: Sequence[str]) -> list[Resolved]:
        site = VenvLayout.for_venv(venv).site_packages
        done = []
        for requirement in requirements:
            found = self._choose(requirement)
            if found is None:
                raise LookupError(f"the fake installer's table has no {requirement}")
            wheel = self.wheels[(found.name, found.version)]
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(site)
                dist_info = next(n.split("/")[0] for n in archive.namelist() if n.split("/")[0].endswith(".dist-info"))
            (site / dist_info / "INSTALLER").write_text(f"{self.name}\n", encoding="utf-8")
            self.installed.append(f"{found.name}=={found.version}")
            done.append(found)
        return done
