"""What every installer offers, and the facts that go in and come out: sources, what was installed
from where, where its output is logged, and the failure that carries that output."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from layerenv.errors import OperationFailed
from layerenv.urls import redact


@dataclass(frozen=True)
class Sources:
    """Where packages come from. ``index_url`` is the variant's index: first for the torch family."""

    index_url: str | None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()

    def describe(self) -> list[str]:
        described = [redact(self.index_url)] if self.index_url else []
        described += [redact(url) for url in self.extra_index_urls]
        described += [f"find-links {redact(link)}" for link in self.find_links]
        return described or ["the installer's own configuration"]


@dataclass(frozen=True)
class Resolved:
    """One distribution an installer resolved or installed, and where it came from (no credentials:
    installers report a wheel's or an index's URL without them; ``None`` when unknown)."""

    name: str
    version: str
    url: str | None


@dataclass(frozen=True)
class LayeredVenv:
    """A project venv layered on a base. Its pip reads the base's constraints from the venv's
    ``pip.conf``; uv reads no ``pip.conf``, so it gets ``uv_environment`` (``UV_CONSTRAINT``,
    ``VIRTUAL_ENV``: see :func:`layerenv.project.link.uv_environment`)."""

    path: Path
    python: Path
    uv_environment: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Log:
    """Installer output goes to a log file (credentials redacted), and to stderr as well when verbose."""

    path: Path | None
    verbose: bool = False


# which installed distributions (name, version) a caller needs the source of; None: every one
Wanted = Callable[[str, str], bool] | None


class InstallerFailed(OperationFailed):
    """An installer exited non-zero; carries its (redacted) output for callers that explain it."""

    def __init__(self, message: str, *, stdout: str, stderr: str, log: Path | None) -> None:
        super().__init__(message)
        self.stdout = stdout
        self.stderr = stderr
        self.log = log


class Installer(Protocol):
    """The one door to an installer: every call runs it through :func:`layerenv.installers.run.run`."""

    @property
    def name(self) -> str: ...

    @property
    def seeds_pip(self) -> bool:
        """Whether a venv it fills needs pip seeded (pip runs inside the venv; uv from outside)."""
        ...

    def newest(self, python: Path, requirement: str, sources: Sources, log: Log) -> Resolved | None:
        """The newest release matching ``requirement`` in ``sources``, resolved without installing."""
        ...

    def newest_each(
        self, python: Path, requirements: Sequence[str], sources: Sources, log: Log
    ) -> list[Resolved] | None:
        """:meth:`newest` of each requirement in one run, each by itself (no dependencies considered);
        ``None`` when the run fails (one requirement had no match, say), or where runs are too slow for a
        run that may fail to be worth trying (pip): the caller then asks each alone."""
        ...

    def install(
        self, python: Path, requirements: Sequence[str], sources: Sources, log: Log, *, sources_for: Wanted = None
    ) -> list[Resolved]:
        """Install into a base's venv from ``sources`` only; report each installed distribution's source.
        ``sources_for(name, version)`` says which the caller needs the source of: an installer that must
        ask again where a distribution came from asks only for those (the others may carry no URL)."""
        ...

    def install_project(self, venv: LayeredVenv, requirements: Sequence[str], log: Log) -> list[Resolved]:
        """Install a project's requirements into its layered venv, held to the base by the constraints;
        sources are the installer's own configuration."""
        ...

    def reinstall(self, venv: LayeredVenv, names: Sequence[str], log: Log) -> list[Resolved]:
        """Upgrade the named distributions (their dependencies only if needed) after a rebase."""
        ...
