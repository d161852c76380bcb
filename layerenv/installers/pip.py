"""pip inside the target environment (``python -m pip``); it reads the machine's pip config, and a
project venv's ``pip.conf`` holds it to the base. Every install writes ``--report``: what came from where."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from layerenv.installers.protocol import LayeredVenv, Log, Resolved, Sources, Wanted
from layerenv.installers.run import Ran, failure, run

_PIP_INSTALL = ("-m", "pip", "install", "--no-input", "--disable-pip-version-check")


class PipInstaller:
    name = "pip"

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = environ  # the environment pip runs in; None: this process's

    def _env(self) -> Mapping[str, str]:
        return os.environ if self.environ is None else self.environ

    @property
    def seeds_pip(self) -> bool:
        return True

    def newest(self, python: Path, requirement: str, sources: Sources, log: Log) -> Resolved | None:
        args = ["--dry-run", "--ignore-installed", "--no-deps", "--quiet", *_source_args(sources), requirement]
        ran, resolved = _install_with_report(python, args, log, self.environ)
        return resolved[0] if ran.returncode == 0 and resolved else None

    def newest_each(
        self, python: Path, requirements: Sequence[str], sources: Sources, log: Log
    ) -> list[Resolved] | None:
        """Not in one run: a pip run takes seconds (its start, every index page parsed again), so a run that
        fails for one name (a companion a mirror lacks) would cost more than running one a name, side by side,
        saves; the caller asks each alone."""
        return None

    def install(
        self, python: Path, requirements: Sequence[str], sources: Sources, log: Log, *, sources_for: Wanted = None
    ) -> list[Resolved]:
        # pip's report names every source at no extra cost: sources_for has nothing to save
        return self._installed(python, [*_source_args(sources), *requirements], log)

    def install_project(self, venv: LayeredVenv, requirements: Sequence[str], log: Log) -> list[Resolved]:
        # PIP_CONSTRAINT would replace the venv's pip.conf constraint that keeps the base's torch family
        env = {name: value for name, value in self._env().items() if name != "PIP_CONSTRAINT"}
        return self._installed(venv.python, requirements, log, env)

    def reinstall(self, venv: LayeredVenv, names: Sequence[str], log: Log) -> list[Resolved]:
        return self._installed(venv.python, ["--upgrade", "--upgrade-strategy", "only-if-needed", *names], log)

    def _installed(
        self, python: Path, args: Sequence[str], log: Log, env: Mapping[str, str] | None = None
    ) -> list[Resolved]:
        ran, resolved = _install_with_report(python, args, log, self.environ if env is None else env)
        if ran.returncode != 0:
            raise failure(self.name, ran, log)
        return resolved


def _source_args(sources: Sources) -> list[str]:
    args: list[str] = []
    if sources.index_url:
        args += ["--index-url", sources.index_url]
    for url in sources.extra_index_urls:
        args += ["--extra-index-url", url]
    for link in sources.find_links:
        args += ["--find-links", link]
    return args


def _install_with_report(
    python: Path, args: Sequence[str], log: Log, env: Mapping[str, str] | None = None
) -> tuple[Ran, list[Resolved]]:
    """``pip install --report``: pip's own account of each distribution it installed and its URL."""
    with tempfile.TemporaryDirectory(prefix="layerenv-pip-") as scratch:
        report = Path(scratch) / "report.json"
        ran = run([str(python), *_PIP_INSTALL, "--report", str(report), *args], log, env)
        resolved: list[Resolved] = []
        if ran.returncode == 0 and report.is_file():
            document = json.loads(report.read_text(encoding="utf-8"))
            for item in document.get("install", []):
                metadata = item.get("metadata", {})
                resolved.append(
                    Resolved(
                        name=str(metadata.get("name", "")),
                        version=str(metadata.get("version", "")),
                        url=item.get("download_info", {}).get("url"),
                    )
                )
        return ran, resolved
