"""The start-up path of a project venv's ``uv`` (:mod:`uv_wrapper` writes the script that calls
:func:`main`): standard library only, so what needs no layerenv work costs a Python start and a few
file reads, against uv's own tens of milliseconds.

- uv's other commands, or another project than this venv's -> the real uv, exec'd at once;
- ``uv lock`` -> the real one without ``UV_CONSTRAINT``;
- ``uv run`` with the lock and pyproject unchanged since the last sync -> the real ``uv run --no-sync``;
- ``uv sync`` with the same options, the project (its pyproject, lock and venv) unchanged since the
  last sync -> after the real ``uv lock`` that ``layerenv sync`` runs first (``--locked`` as asked;
  none under ``--frozen``) leaves the lock as the last sync read it: nothing to install, exit 0;
- the rest (a sync with work to do, ``uv add``/``uv remove``) -> :mod:`uv_shim`, which runs ``layerenv sync``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from layerenv.errors import BadInput, LayerenvError
from layerenv.project.sync_state import (
    file_digest,
    find_lock,
    is_stale,
    portable_env,
    read_state,
    unchanged_since_sync,
)

SHIM_MARK = "# layerenv-uv-shim"
ROUTED = frozenset({"sync", "run", "add", "remove", "lock"})
_GLOBAL_WITH_VALUE = frozenset({"--directory", "--project", "--config-file", "--cache-dir", "--color",
                                "--python-preference", "--allow-insecure-host", "--trusted-host"})
_SYNC_FLAGS = {"--all-extras": "all_extras", "--all-groups": "all_groups", "--no-dev": "no_default_groups",
               "--no-default-groups": "no_default_groups", "--frozen": "frozen", "--locked": "locked"}
_SYNC_VALUES = {"--extra": "extras", "--group": "groups"}
_QUIET_FLAGS = frozenset({"-q", "--quiet", "-v", "--verbose", "--dev", "--inexact", "--no-progress"})


class Route:
    """Where uv's subcommand stands (a plain class: ``dataclasses`` costs this path more than the rest)."""

    __slots__ = ("command", "directory", "position")

    def __init__(self, command: str | None, position: int, directory: str | None) -> None:
        self.command = command  # the uv subcommand, None when there is none
        self.position = position  # its index in argv
        self.directory = directory  # --project or --directory, where uv looks for the project


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


def selection_key(options: Mapping[str, object]) -> dict[str, object]:
    """What a sync installs, from :func:`sync_options` (as ``layerenv sync`` records it)."""
    extras, groups = options.get("extras", ()), options.get("groups", ())
    return {"extras": sorted(set(extras)) if isinstance(extras, (list, tuple)) else [],
            "all_extras": bool(options.get("all_extras")),
            "groups": sorted(set(groups)) if isinstance(groups, (list, tuple)) else [],
            "all_groups": bool(options.get("all_groups")),
            "no_default_groups": bool(options.get("no_default_groups"))}


def is_shim(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return SHIM_MARK.encode() in handle.read(600)
    except OSError:
        return False


def real_uv(skip: Path | None = None) -> str | None:
    """The uv a shim stands in front of: the first on PATH that is not a layerenv shim (``skip``: a
    directory not to look in), else the one the ``uv`` package installed."""
    skipped = os.path.realpath(skip) if skip else None
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or (skipped and os.path.realpath(directory) == skipped):
            continue
        candidate = Path(directory, "uv.exe" if os.name == "nt" else "uv")
        if candidate.is_file() and os.access(candidate, os.X_OK) and not is_shim(candidate):
            return str(candidate)
    with_site_packages()
    from layerenv.installers import find_uv

    found = find_uv()
    return found if found and not is_shim(Path(found)) else None


def serves(venv: Path, start: Path, environ: Mapping[str, str]) -> bool:
    """Whether uv, started in ``start``, would act on this venv's project."""
    if environ.get("UV_PROJECT_ENVIRONMENT") and Path(environ["UV_PROJECT_ENVIRONMENT"]).resolve() != venv.resolve():
        return False
    for directory in (start, *start.parents):
        if (directory / "pyproject.toml").is_file():
            return (directory / ".venv").resolve() == venv.resolve()
    return False


def lock_command(uv: str, python: Path, *, locked: bool) -> list[str]:
    """``uv lock`` as ``uv sync`` runs it first, against the project venv's interpreter."""
    return [uv, "lock", "--python", str(python), *(["--locked"] if locked else [])]


def lock_env(environ: Mapping[str, str]) -> dict[str, str]:
    env = portable_env(environ)
    env.pop("VIRTUAL_ENV", None)
    return env


def sync_is_noop(venv: Path, options: Mapping[str, object], uv: str, environ: Mapping[str, str]) -> bool:
    """Whether ``layerenv sync`` with ``options`` would find nothing to do: the same selection as the
    last sync, nothing under the project or in the venv changed since, and the lock, after the
    ``uv lock`` a sync runs first, still the one the last sync installed."""
    state = read_state(venv)
    project = venv.parent
    lock = find_lock(project)
    if lock is None or state.get("selection") != selection_key(options):
        return False
    if not unchanged_since_sync(state, venv, project):
        return False
    if lock.name == "uv.lock" and not options.get("frozen") and (project / "pyproject.toml").is_file():
        argv = lock_command(uv, Path(venv, "bin", "python"), locked=bool(options.get("locked")))
        if _quiet_run([argv[0], "--directory", str(project), *argv[1:]], lock_env(environ)) != 0:
            return False  # the full sync runs it again and says why it failed
    return state.get("lock") == lock.name and state.get("lock_sha256") == file_digest(lock)


def with_site_packages() -> None:
    """The interpreter's site-packages on ``sys.path``, for the rest of layerenv and what it imports:
    the shim starts Python with ``-S``, whose ``site`` step costs this path a third of its start."""
    if sys.flags.no_site:
        import site

        site.main()


def _quiet_run(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """``argv``'s exit code, its output discarded (``os.posix_spawn``: ``subprocess`` alone would
    double this path's imports)."""
    devnull = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
    pid = os.posix_spawn(argv[0], list(argv), dict(env), file_actions=devnull)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def exec_uv(argv: Sequence[str], env: Mapping[str, str]) -> int:
    os.execve(argv[0], list(argv), dict(env))  # noqa: S606 - argument list, no shell
    return 127  # pragma: no cover - execve does not return


def main(venv_text: str, argv: Sequence[str]) -> int:
    venv = Path(venv_text)
    real = real_uv(skip=venv / "bin")
    if real is None:
        sys.stderr.write("layerenv: error: no uv found on PATH besides this project's wrapper (pip install uv)\n")
        return 127
    env = dict(os.environ)
    found = route(argv)
    start = Path(found.directory).absolute() if found.directory else Path.cwd()
    if found.command not in ROUTED or not serves(venv, start, env):
        return exec_uv([real, *argv], env)
    head, command, rest = list(argv[: found.position]), argv[found.position], list(argv[found.position + 1 :])
    try:
        if command == "lock":
            return exec_uv([real, *argv], portable_env(env))
        if command == "sync" and sync_is_noop(venv, sync_options(rest), real, env):
            sys.stderr.write("layerenv: sync: up to date (the lock, pyproject and venv as the last sync left them)\n")
            return 0
        if command == "run" and ("--no-sync" in rest or not is_stale(venv, venv.parent)):
            return exec_uv([real, *head, command, *run_options(rest)], env)
        with_site_packages()
        from layerenv.project.uv_shim import routed

        return routed(venv, real, head, command, rest, env)
    except LayerenvError as error:
        sys.stderr.write(f"layerenv: error: {error.message}\n")
        return error.exit_code


def first_positional(arguments: Sequence[str]) -> int:
    """Where ``uv run``'s own options end (the command to run starts)."""
    for index, arg in enumerate(arguments):
        if not arg.startswith("-"):
            return index
    return len(arguments)


def run_options(rest: Sequence[str]) -> list[str]:
    """``uv run``'s arguments once the sync is done: ``--no-sync``, and no lock checks left for it
    (as typed where they already say ``--no-sync``)."""
    if "--no-sync" in rest:
        return list(rest)
    return ["--no-sync", *[arg for arg in rest if arg not in ("--frozen", "--locked")]]
