"""What the project venv's ``uv`` does (see :mod:`uv_wrapper`): uv's project commands keep the
base's torch, everything else is the real uv unchanged.

- ``uv sync`` -> ``layerenv sync`` (same ``--group``/``--extra``/``--frozen``/``--locked``);
- ``uv run`` -> ``layerenv sync`` when the lock or pyproject changed since the last one, then the
  real ``uv run --no-sync``;
- ``uv add``/``uv remove`` -> the real one with ``--no-sync`` (pyproject and uv.lock exactly as uv
  writes them: no ``UV_CONSTRAINT``, so the lock stays portable), then ``layerenv sync``;
- ``uv lock`` -> the real one without ``UV_CONSTRAINT``;
- anything else (``uv pip ...``), or a project other than this venv's -> the real uv as typed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from layerenv.errors import BadInput, LayerenvError
from layerenv.project.uv_wrapper import is_shim
from layerenv.venv.layout import VenvLayout

ROUTED = frozenset({"sync", "run", "add", "remove", "lock"})
_GLOBAL_WITH_VALUE = frozenset({"--directory", "--project", "--config-file", "--cache-dir", "--color",
                                "--python-preference", "--allow-insecure-host", "--trusted-host"})
_SYNC_FLAGS = {"--all-extras": "all_extras", "--all-groups": "all_groups", "--no-dev": "no_default_groups",
               "--no-default-groups": "no_default_groups", "--frozen": "frozen", "--locked": "locked"}
_SYNC_VALUES = {"--extra": "extras", "--group": "groups"}
_QUIET_FLAGS = frozenset({"-q", "--quiet", "-v", "--verbose", "--dev", "--inexact", "--no-progress"})


@dataclass(frozen=True)
class Route:
    command: str | None  # the uv subcommand, None when there is none
    position: int  # its index in argv
    directory: str | None  # --project or --directory, where uv looks for the project


def route(argv: Sequence[str]) -> Route:
    """Find uv's subcommand behind its global options."""
    directory: str | None = None
    index = 0
    while index < len(argv):
        arg = argv[index]
        name, eq, value = arg.partition("=")
        if name in _GLOBAL_WITH_VALUE:
            if not eq:
                index += 1
                value = argv[index] if index < len(argv) else ""
            if name in ("--directory", "--project"):
                directory = value
        elif not arg.startswith("-"):
            return Route(arg, index, directory)
        index += 1
    return Route(None, len(argv), directory)


def real_uv(venv: Path) -> str | None:
    """The uv this one stands in front of: the first on PATH that is not a layerenv shim."""
    ours = VenvLayout.for_venv(venv).bin_dir.resolve()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or Path(directory).resolve() == ours:
            continue
        found = shutil.which("uv", path=directory)
        if found and not is_shim(Path(found)):
            return found
    from layerenv.installers import find_uv

    found = find_uv()
    return found if found and not is_shim(Path(found)) else None


def serves(venv: Path, start: Path, environ: dict[str, str]) -> bool:
    """Whether uv, started in ``start``, would act on this venv's project."""
    if environ.get("UV_PROJECT_ENVIRONMENT") and Path(environ["UV_PROJECT_ENVIRONMENT"]).resolve() != venv.resolve():
        return False
    for directory in (start, *start.parents):
        if (directory / "pyproject.toml").is_file():
            return (directory / ".venv").resolve() == venv.resolve()
    return False


def sync_options(arguments: Sequence[str]) -> dict[str, object]:
    """``uv sync``'s options as :class:`SyncRequest` fields; one layerenv cannot honour is bad input."""
    options: dict[str, object] = {"extras": [], "groups": []}
    index = 0
    while index < len(arguments):
        arg = arguments[index]
        name, eq, value = arg.partition("=")
        if name in _SYNC_VALUES:
            if not eq:
                index += 1
                value = arguments[index] if index < len(arguments) else ""
            list_of = options[_SYNC_VALUES[name]]
            assert isinstance(list_of, list)
            list_of.append(value)
        elif arg in _SYNC_FLAGS:
            options[_SYNC_FLAGS[arg]] = True
        elif arg not in _QUIET_FLAGS:
            raise BadInput(
                f"uv sync {arg}: not available in a layered project, where `uv sync` runs `layerenv sync` "
                "(it takes --extra, --all-extras, --group, --all-groups, --no-dev, --frozen, --locked)"
            )
        index += 1
    return options


def _sync(venv: Path, arguments: Sequence[str], command: str) -> None:
    from layerenv.installers import Log
    from layerenv.project.locks import Selection
    from layerenv.project.sync import SyncRequest, sync

    options = sync_options(arguments)
    extras, groups = options["extras"], options["groups"]
    assert isinstance(extras, list) and isinstance(groups, list)
    request = SyncRequest(
        venv=venv,
        project_dir=venv.parent,
        selection=Selection(extras=tuple(extras), all_extras=bool(options.get("all_extras")), groups=tuple(groups),
                            all_groups=bool(options.get("all_groups")),
                            no_default_groups=bool(options.get("no_default_groups"))),
        frozen=bool(options.get("frozen")),
        locked=bool(options.get("locked")),
    )
    console = _Stderr()
    console.step(f"`uv {command}` in a layered project installs with `layerenv sync`: the lock's packages, "
                 "torch from the base")
    result = sync(request, console, Log(None))
    state = "up to date" if result.unchanged else f"installed {len(result.installed)}, removed {len(result.removed)}"
    console.step(f"sync: {state} from {result.lock.name}")


class _Stderr:
    """Progress lines on stderr, as uv prints its own."""

    def step(self, text: str) -> None:
        import sys

        sys.stderr.write(f"layerenv: {text}\n")

    def warn(self, text: str) -> None:
        self.step(f"warning: {text}")


def _exec(argv: Sequence[str], env: dict[str, str]) -> int:
    os.execve(argv[0], list(argv), env)  # noqa: S606 - argument list, no shell
    return 127  # pragma: no cover - execve does not return


def main(venv_text: str, argv: Sequence[str]) -> int:
    import sys

    from layerenv.project.sync_state import is_stale, portable_env

    venv = Path(venv_text)
    real = real_uv(venv)
    if real is None:
        sys.stderr.write("layerenv: error: no uv found on PATH besides this project's wrapper (pip install uv)\n")
        return 127
    env = dict(os.environ)
    found = route(argv)
    start = Path(found.directory).absolute() if found.directory else Path.cwd()
    if found.command not in ROUTED or not serves(venv, start, env):
        return _exec([real, *argv], env)
    head, command, rest = list(argv[: found.position]), argv[found.position], list(argv[found.position + 1 :])
    try:
        if command == "lock":
            return _exec([real, *argv], portable_env(env))
        if command == "sync":
            _sync(venv, rest, command)
            return 0
        if command in ("add", "remove"):
            return _add_or_remove(venv, [real, *head, command, "--no-sync", *rest], portable_env(env), command)
        # run
        if "--no-sync" not in rest:
            if is_stale(venv, venv.parent):
                own = rest[: _first_positional(rest)]
                _sync(venv, [arg for arg in own if arg in ("--frozen", "--locked")], command)
            rest = ["--no-sync", *[arg for arg in rest if arg not in ("--frozen", "--locked")]]
        return _exec([real, *head, command, *rest], env)
    except LayerenvError as error:
        sys.stderr.write(f"layerenv: error: {error.message}\n")
        return error.exit_code


def _add_or_remove(venv: Path, argv: Sequence[str], env: dict[str, str], command: str) -> int:
    """The real ``uv add --no-sync`` (pyproject and uv.lock as uv writes them), then ``layerenv sync``;
    when that sync fails, both files are put back, as uv itself does when its sync fails."""
    import subprocess

    project = venv.parent
    saved = {path: path.read_bytes() if path.is_file() else None
             for path in (project / "pyproject.toml", project / "uv.lock")}
    done = subprocess.run(list(argv), env=env, check=False)
    if done.returncode != 0:
        return done.returncode
    try:
        _sync(venv, ["--frozen"], command)
    except LayerenvError:
        for path, data in saved.items():
            if data is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(data)
        raise
    return 0


def _first_positional(arguments: Sequence[str]) -> int:
    """Where ``uv run``'s own options end (the command to run starts)."""
    for index, arg in enumerate(arguments):
        if not arg.startswith("-"):
            return index
    return len(arguments)
