"""``uv pip`` against the target environment. uv writes no install report, so after each install
the distributions it installed are resolved again, pinned, with ``--emit-index-annotation``: uv's
own answer to where each one comes from (a direct URL is read from its ``direct_url.json``)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from layerenv.installers.protocol import LayeredVenv, Log, Resolved, Sources, Wanted
from layerenv.installers.run import failure, run
from layerenv.venv.distinfo import Distribution, read_distributions
from layerenv.venv.layout import VenvLayout


class UvInstaller:
    """``uv pip``; a base is filled from its sources only, the variant's index searched first."""

    name = "uv"

    def __init__(self, uv: str, environ: Mapping[str, str] | None = None) -> None:
        self.uv = uv
        self.environ = environ  # the environment uv runs in; None: this process's

    def _env(self) -> Mapping[str, str]:
        return os.environ if self.environ is None else self.environ

    @property
    def seeds_pip(self) -> bool:
        return False

    def create_venv(self, path: Path, python: Path, *, prompt: str, log: Log) -> None:
        """An empty venv for ``python`` at ``path`` (a base's: nothing seeded, uv fills it from outside),
        made by ``uv venv`` in a few milliseconds; no project's ``requires-python`` is consulted."""
        argv = [self.uv, "venv", "--quiet", "--no-project", "--python", str(python), "--prompt", prompt, str(path)]
        ran = run(argv, log, _venv_env(self._env()))
        if ran.returncode != 0:
            raise failure(self.name, ran, log)

    def newest(self, python: Path, requirement: str, sources: Sources, log: Log) -> Resolved | None:
        found = self._compile(python, [requirement], _source_args(sources), _build_env(self._env()), log)
        return found[0] if found else None

    def newest_each(
        self, python: Path, requirements: Sequence[str], sources: Sources, log: Log
    ) -> list[Resolved] | None:
        return self._compile(python, requirements, _source_args(sources), _build_env(self._env()), log)

    def install(
        self, python: Path, requirements: Sequence[str], sources: Sources, log: Log, *, sources_for: Wanted = None
    ) -> list[Resolved]:
        return self._installed(python, requirements, _source_args(sources), _build_env(self._env()), log, sources_for)

    def install_project(self, venv: LayeredVenv, requirements: Sequence[str], log: Log) -> list[Resolved]:
        return self._installed(venv.python, requirements, [], {**self._env(), **venv.uv_environment}, log)

    def reinstall(self, venv: LayeredVenv, names: Sequence[str], log: Log) -> list[Resolved]:
        upgrades = [arg for name in names for arg in ("--upgrade-package", name)]
        return self._installed(venv.python, [*upgrades, *names], [], {**self._env(), **venv.uv_environment}, log)

    def _installed(
        self,
        python: Path,
        args: Sequence[str],
        source_args: list[str],
        env: Mapping[str, str],
        log: Log,
        sources_for: Wanted = None,
    ) -> list[Resolved]:
        venv = python.parent.parent
        before = {dist.dist_info.name for dist in _uv_installed(venv)}
        ran = run([self.uv, "pip", "install", "--python", str(python), *source_args, *args], log, env)
        lock = venv / ".lock"  # uv leaves its lock world-writable whatever the umask
        if lock.is_file():
            lock.chmod(0o644)
        if ran.returncode != 0:
            raise failure(self.name, ran, log)
        added = [dist for dist in _uv_installed(venv) if dist.dist_info.name not in before]
        return self._sources_of(python, added, source_args, env, log, sources_for)

    def _sources_of(
        self,
        python: Path,
        dists: list[Distribution],
        source_args: list[str],
        env: Mapping[str, str],
        log: Log,
        sources_for: Wanted = None,
    ) -> list[Resolved]:
        """Each installed distribution with its source: a direct URL as uv recorded it, else the index
        or find-links location uv resolves that exact version from (``None`` when it cannot say, or
        when ``sources_for`` says it is not needed: then uv is not run again for it)."""
        direct = {dist.name: _direct_url(dist) for dist in dists}
        pins = [f"{dist.name}=={dist.version}" for dist in dists
                if direct[dist.name] is None and (sources_for is None or sources_for(dist.name, dist.version))]
        found = {item.name: item for item in self._compile(python, pins, source_args, env, log) or ()} if pins else {}
        return [
            Resolved(dist.name, dist.version, direct[dist.name] or getattr(found.get(dist.name), "url", None))
            for dist in dists
        ]

    def _compile(
        self, python: Path, requirements: Sequence[str], source_args: list[str], env: Mapping[str, str], log: Log
    ) -> list[Resolved] | None:
        """``uv pip compile --no-deps --emit-index-annotation``: each pin and the index it comes from;
        ``None`` when uv found no answer for one of them."""
        with tempfile.TemporaryDirectory(prefix="layerenv-uv-") as scratch:
            listed = Path(scratch) / "requirements.in"
            listed.write_text("".join(f"{line}\n" for line in requirements), encoding="utf-8")
            argv = [self.uv, "pip", "compile", "--quiet", "--no-header", "--emit-index-annotation", "--no-deps",
                    "--python", str(python), *source_args, str(listed)]
            ran = run(argv, log, env)
        return parse_compiled(ran.stdout) if ran.returncode == 0 else None


def parse_compiled(text: str) -> list[Resolved]:
    """``torch==2.9.1+cpu`` lines, each followed by indented comments, one ``# from <url>``."""
    resolved: list[Resolved] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# from ") and resolved:
            resolved[-1] = Resolved(resolved[-1].name, resolved[-1].version, stripped[len("# from ") :].strip())
            continue
        name, sep, version = stripped.partition("==")
        if sep and not line[:1].isspace():
            resolved.append(Resolved(name.strip(), version.split()[0].strip(), None))
    return resolved


def _uv_installed(venv: Path) -> list[Distribution]:
    site = VenvLayout.for_venv(venv).site_packages
    return [dist for dist in read_distributions(site) if dist.installer == "uv"] if site.is_dir() else []


def _direct_url(dist: Distribution) -> str | None:
    try:
        document = json.loads((dist.dist_info / "direct_url.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    url = document.get("url") if isinstance(document, dict) else None
    return str(url) if url else None


def _source_args(sources: Sources) -> list[str]:
    indexes = ([sources.index_url] if sources.index_url else []) + list(sources.extra_index_urls)
    args = ["--index-strategy", "first-index"]
    for url in indexes[:-1]:
        args += ["--index", url]
    if indexes:
        args += ["--default-index", indexes[-1]]
    for link in sources.find_links:
        args += ["--find-links", link]
    return args


def _venv_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of ``uv venv`` for a base: the user's ``UV_VENV_*`` settings (seed pip, clear,
    relocatable scripts) would make a base unlike the one layerenv means to build, so they are dropped."""
    return {name: value for name, value in _build_env(environ).items() if not name.startswith("UV_VENV_")}


def _build_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of a base build's uv: indexes from the user's uv variables would be searched
    before the variant's (uv ranks ``UV_INDEX``/``UV_EXTRA_INDEX_URL`` above ``--default-index``),
    so they are dropped; layerenv's ``index.extra_urls`` is the way to add indexes to a build."""
    env = dict(environ)
    for name in ("VIRTUAL_ENV", "UV_CONSTRAINT", "UV_INDEX", "UV_EXTRA_INDEX_URL"):
        env.pop(name, None)
    return env
