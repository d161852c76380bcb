"""The two installers layerenv drives, pip and uv, behind one small interface."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TextIO

from layerenv.errors import BadInput, OperationFailed
from layerenv.urls import redact

INSTALLERS = ("pip", "uv")


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
    name: str
    version: str
    url: str | None


@dataclass
class Log:
    """Installer output goes to a log file, and to ``echo`` as well when verbose."""

    path: Path | None
    verbose: bool = False
    lines: list[str] = field(default_factory=list)

    def handle(self) -> TextIO | None:
        if self.path is None:
            return None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return self.path.open("a", encoding="utf-8")


class Installer(Protocol):
    name: str

    @property
    def seeds_pip(self) -> bool: ...

    def newest(self, python: Path, requirement: str, sources: Sources, log: Log) -> Resolved | None: ...

    def install(self, python: Path, requirements: Sequence[str], sources: Sources, log: Log) -> list[Resolved]: ...


def _run(argv: Sequence[str], log: Log, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    handle = log.handle()
    try:
        if handle is not None:
            handle.write("$ " + " ".join(redact(arg) for arg in argv) + "\n")
            handle.flush()
        result = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            env=dict(env) if env is not None else None,
            check=False,
        )
        if handle is not None:
            handle.write(result.stdout)
            handle.write(result.stderr)
            handle.write(f"[exit {result.returncode}]\n")
    finally:
        if handle is not None:
            handle.close()
    if log.verbose:
        import click

        click.echo(result.stdout + result.stderr, err=True, nl=False)
    return result


def _failure_summary(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    interesting = [line for line in lines if "error" in line.lower() or "no matching" in line.lower()]
    return (interesting or lines or [f"exit {result.returncode}"])[-1]


class PipInstaller:
    """pip inside the target environment (``python -m pip``); reads the machine's pip config."""

    name = "pip"

    @property
    def seeds_pip(self) -> bool:
        return True

    def _source_args(self, sources: Sources) -> list[str]:
        args: list[str] = []
        if sources.index_url:
            args += ["--index-url", sources.index_url]
        for url in sources.extra_index_urls:
            args += ["--extra-index-url", url]
        for link in sources.find_links:
            args += ["--find-links", link]
        return args

    def _report(
        self, python: Path, args: Sequence[str], log: Log
    ) -> tuple[subprocess.CompletedProcess[str], list[Resolved]]:
        with tempfile.TemporaryDirectory(prefix="layerenv-pip-") as scratch:
            report = Path(scratch) / "report.json"
            argv = [
                str(python),
                "-m",
                "pip",
                "install",
                "--no-input",
                "--disable-pip-version-check",
                "--report",
                str(report),
                *args,
            ]
            result = _run(argv, log)
            resolved: list[Resolved] = []
            if result.returncode == 0 and report.is_file():
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
            return result, resolved

    def newest(self, python: Path, requirement: str, sources: Sources, log: Log) -> Resolved | None:
        args = ["--dry-run", "--ignore-installed", "--no-deps", "--quiet", *self._source_args(sources), requirement]
        result, resolved = self._report(python, args, log)
        return resolved[0] if result.returncode == 0 and resolved else None

    def install(self, python: Path, requirements: Sequence[str], sources: Sources, log: Log) -> list[Resolved]:
        result, resolved = self._report(python, [*self._source_args(sources), *requirements], log)
        if result.returncode != 0:
            raise OperationFailed(f"pip failed: {_failure_summary(result)} (log: {log.path})")
        return resolved


def find_uv() -> str | None:
    found = shutil.which("uv")
    if found:
        return found
    try:
        from uv import find_uv_bin  # type: ignore[import-not-found,unused-ignore]

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        return None


class UvInstaller:
    """``uv pip`` against the target environment, the variant's index searched first."""

    name = "uv"

    def __init__(self, uv: str) -> None:
        self.uv = uv

    @property
    def seeds_pip(self) -> bool:
        return False

    def _source_args(self, sources: Sources) -> list[str]:
        indexes = ([sources.index_url] if sources.index_url else []) + list(sources.extra_index_urls)
        args = ["--index-strategy", "first-index"]
        for url in indexes[:-1]:
            args += ["--index", url]
        if indexes:
            args += ["--default-index", indexes[-1]]
        for link in sources.find_links:
            args += ["--find-links", link]
        return args

    def newest(self, python: Path, requirement: str, sources: Sources, log: Log) -> Resolved | None:
        with tempfile.TemporaryDirectory(prefix="layerenv-uv-") as scratch:
            requirements = Path(scratch) / "requirements.in"
            requirements.write_text(requirement + "\n", encoding="utf-8")
            argv = [
                self.uv,
                "pip",
                "compile",
                "--quiet",
                "--no-header",
                "--no-annotate",
                "--no-deps",
                "--python",
                str(python),
                *self._source_args(sources),
                str(requirements),
            ]
            result = _run(argv, log, env=_uv_env())
        if result.returncode != 0:
            return None
        for line in result.stdout.splitlines():
            name, sep, version = line.strip().partition("==")
            if sep:
                return Resolved(name=name.strip(), version=version.strip(), url=None)
        return None

    def install(self, python: Path, requirements: Sequence[str], sources: Sources, log: Log) -> list[Resolved]:
        argv = [self.uv, "pip", "install", "--python", str(python), *self._source_args(sources), *requirements]
        result = _run(argv, log, env=_uv_env())
        if result.returncode != 0:
            raise OperationFailed(f"uv failed: {_failure_summary(result)} (log: {log.path})")
        lock = python.parent.parent / ".lock"  # uv leaves its lock world-writable whatever the umask
        if lock.is_file():
            lock.chmod(0o644)
        return []


def _uv_env() -> dict[str, str]:
    """The environment of a base build's uv: indexes from the user's uv variables would be searched
    before the variant's (uv ranks ``UV_INDEX``/``UV_EXTRA_INDEX_URL`` above ``--default-index``),
    so they are dropped; layerenv's ``index.extra_urls`` is the way to add indexes to a build."""
    env = dict(os.environ)
    for name in ("VIRTUAL_ENV", "UV_CONSTRAINT", "UV_INDEX", "UV_EXTRA_INDEX_URL"):
        env.pop(name, None)
    return env


def get_installer(name: str) -> Installer:
    if name == "pip":
        return PipInstaller()
    if name == "uv":
        uv = find_uv()
        if uv is None:
            raise BadInput(
                "installer 'uv' was asked for but uv is not installed (pip install uv, or use --installer pip)"
            )
        return UvInstaller(uv)
    raise BadInput(f"installer {name!r} is not one of: {', '.join(INSTALLERS)}")
