"""The start-up path of a project venv's ``uv`` (:mod:`uv_wrapper` writes the script, which calls
:func:`layerenv.project.uv_shim.main`, which asks :func:`answer` first): standard library only, so
what needs no layerenv work costs a Python start and a few file reads, against uv's own tens of
milliseconds.

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

from layerenv.errors import BadInput, LayerenvError
from layerenv.project.sync_state import (
    is_stale,
    lock_file,
    lock_python,
    lock_unchanged_since_sync,
    portable_env,
    unchanged_since_sync,
)

TYPE_CHECKING = False  # mypy takes it as true; pathlib, typing and collections.abc would slow this path
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from layerenv.project.sync_state import StrPath

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


def _value(argv: Sequence[str], index: int, eq: str, value: str) -> tuple[str, int]:
    """The value of the option at ``index`` (``--opt=value``, or ``--opt value`` from the next argument),
    and the index of the last argument it took."""
    if eq:
        return value, index
    return (argv[index + 1] if index + 1 < len(argv) else ""), index + 1


def route(argv: Sequence[str]) -> Route:
    """Find uv's subcommand behind its global options."""
    directory: str | None = None
    index = 0
    while index < len(argv):
        arg = argv[index]
        name, eq, value = arg.partition("=")
        if name in _GLOBAL_WITH_VALUE:
            value, index = _value(argv, index, eq, value)
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
            value, index = _value(arguments, index, eq, value)
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


def selection_text(options: Mapping[str, object]) -> str:
    """What a sync installs, from :func:`sync_options` or a ``Selection``'s fields, in one canonical line."""
    parts = []
    for field in ("extras", "groups"):
        names = options.get(field, ())
        parts.append(f"{field}={','.join(sorted(set(names))) if isinstance(names, (list, tuple)) else ''}")
    for flag in ("all_extras", "all_groups", "no_default_groups"):
        parts.append(f"{flag}={int(bool(options.get(flag)))}")
    return ";".join(parts)


def is_shim(path: StrPath) -> bool:
    try:
        with open(path, "rb") as handle:
            return SHIM_MARK.encode() in handle.read(600)
    except OSError:
        return False


def real_uv(skip: StrPath | None = None) -> str | None:
    """The uv a shim stands in front of: the first on PATH that is not a layerenv shim (``skip``: a
    directory not to look in), else the one the ``uv`` package installed."""
    skipped = os.path.realpath(skip) if skip else None
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or (skipped and os.path.realpath(directory) == skipped):
            continue
        candidate = os.path.join(directory, "uv.exe" if os.name == "nt" else "uv")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK) and not is_shim(candidate):
            return candidate
    with_site_packages()
    from layerenv.installers import find_uv

    found = find_uv()
    return found if found and not is_shim(found) else None


def serves(venv: StrPath, start: StrPath, environ: Mapping[str, str]) -> bool:
    """Whether uv, started in ``start``, would act on this venv's project."""
    ours = os.path.realpath(venv)
    if environ.get("UV_PROJECT_ENVIRONMENT") and os.path.realpath(environ["UV_PROJECT_ENVIRONMENT"]) != ours:
        return False
    directory, parent = os.path.abspath(start), ""
    while directory != parent:
        if os.path.isfile(os.path.join(directory, "pyproject.toml")):
            return os.path.realpath(os.path.join(directory, ".venv")) == ours
        directory, parent = os.path.dirname(directory), directory
    return False


def lock_command(uv: str, python: StrPath, *, locked: bool) -> list[str]:
    """``uv lock`` as ``uv sync`` runs it first (``python``: :func:`lock_python`)."""
    return [uv, "lock", "--python", os.fspath(python), *(["--locked"] if locked else [])]


def lock_env(environ: Mapping[str, str]) -> dict[str, str]:
    env = portable_env(environ)
    env.pop("VIRTUAL_ENV", None)
    return env


def sync_is_noop(venv: str, options: Mapping[str, object], uv: str, environ: Mapping[str, str]) -> bool:
    """Whether ``layerenv sync`` with ``options`` would find nothing to do: the same selection as the
    last sync, nothing under the project or in the venv changed since, and the lock, after the
    ``uv lock`` a sync runs first, still the one the last sync installed."""
    project = os.path.dirname(venv)
    lock = lock_file(project)
    if lock is None or not unchanged_since_sync(venv, project, selection_text(options)):
        return False
    name = os.path.basename(lock)
    if name == "uv.lock" and not options.get("frozen") and os.path.isfile(os.path.join(project, "pyproject.toml")):
        python = lock_python(venv, os.path.join(venv, "bin", "python"))
        argv = lock_command(uv, python, locked=bool(options.get("locked")))
        if _quiet_run([argv[0], "--directory", project, *argv[1:]], lock_env(environ)) != 0:
            return False  # the full sync runs it again and says why it failed
    return lock_unchanged_since_sync(venv, lock)


def with_site_packages() -> None:
    """The interpreter's site-packages on ``sys.path``, for the rest of layerenv and what it imports:
    the shim starts Python with ``-S``, whose ``site`` step costs this path a third of its start."""
    if sys.flags.no_site:
        import site

        site.main()


def _quiet_run(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """``argv``'s exit code, its output discarded (``os.posix_spawn``: ``subprocess`` alone would
    double this path's imports)."""
    if sys.platform == "win32":  # no venv wrapper is written there; kept correct all the same
        import subprocess

        return subprocess.call(list(argv), env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    devnull = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
    pid = os.posix_spawn(argv[0], list(argv), dict(env), file_actions=devnull)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def exec_uv(argv: Sequence[str], env: Mapping[str, str]) -> int:
    os.execve(argv[0], list(argv), dict(env))  # noqa: S606 - argument list, no shell
    return 127  # pragma: no cover - execve does not return


class Pending:
    """uv's project command that needs layerenv (:func:`layerenv.project.uv_shim.main` runs it)."""

    __slots__ = ("command", "env", "head", "real", "rest", "venv")

    def __init__(self, venv: str, real: str, head: list[str], command: str, rest: list[str],
                 env: dict[str, str]) -> None:
        self.venv, self.real, self.env = venv, real, env
        self.head, self.command, self.rest = head, command, rest  # argv: global options, command, its own


def answer(venv_text: str, argv: Sequence[str]) -> int | Pending:
    """The exit code where no layerenv work is needed (uv exec'd, or a sync with nothing to do), else
    the :class:`Pending` command."""
    venv = os.path.abspath(venv_text)
    real = real_uv(skip=os.path.join(venv, "bin"))
    if real is None:
        sys.stderr.write("layerenv: error: no uv found on PATH besides this project's wrapper (pip install uv)\n")
        return 127
    env = dict(os.environ)
    found = route(argv)
    start = os.path.abspath(found.directory) if found.directory else os.getcwd()
    if found.command not in ROUTED or not serves(venv, start, env):
        return exec_uv([real, *argv], env)
    head, command, rest = list(argv[: found.position]), argv[found.position], list(argv[found.position + 1 :])
    try:
        if command == "lock":
            return exec_uv([real, *argv], portable_env(env))
        if command == "sync" and sync_is_noop(venv, sync_options(rest), real, env):
            sys.stderr.write("layerenv: sync: up to date (the lock, pyproject and venv as the last sync left them)\n")
            return 0
        if command == "run" and ("--no-sync" in rest or not is_stale(venv, os.path.dirname(venv))):
            return exec_uv([real, *head, command, *run_options(rest)], env)
    except LayerenvError as error:
        sys.stderr.write(f"layerenv: error: {error.message}\n")
        return error.exit_code
    return Pending(venv, real, head, command, rest, env)


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
