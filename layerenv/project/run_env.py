"""What ``layerenv run`` needs, and nothing more: the nearest project venv and the variables to run under.

``layerenv run`` goes in front of every script, test run and notebook server, so this module is what
its start-up path imports: ``os`` only (no json, whose ``re`` costs more than the rest of the start-up;
no pathlib, no click, no packaging, no store). :mod:`layerenv.project.link` writes the record read here,
and reads it in full.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:  # collections.abc costs the start-up path about a millisecond
    from collections.abc import Mapping

RECORD_FILE = "layerenv.json"
CONSTRAINTS_FILE = "layerenv-constraints.txt"
# the keys :class:`layerenv.project.link.LinkRecord` cannot do without
RECORD_KEYS = frozenset(
    {"base_id", "base_venv", "base_site", "family", "family_modules", "stubs", "scripts", "constraints"}
)


def nearest_project_venv(start: str) -> str | None:
    """``.venv`` holding a link record, in ``start`` or the nearest directory above it."""
    directory = start
    while True:
        candidate = os.path.join(directory, ".venv")
        if os.path.isfile(os.path.join(candidate, RECORD_FILE)):
            return candidate
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent


def find_project_venv(start: str) -> str:
    """:func:`nearest_project_venv`, or the line that says there is none."""
    found = nearest_project_venv(start)
    if found is None:
        from layerenv.errors import BadInput

        raise BadInput(f"no layerenv project venv at or above {start}; run `layerenv project` first")
    return found


def plainly_linked(venv: str) -> bool:
    """Whether the venv's record reads, at a glance, as a link record: a JSON object with the link's keys.

    At a glance, not parsed: a record cut short, emptied or of another kind fails it, and the full reader
    (:func:`layerenv.project.link.read_link`, behind the click command) then names what is wrong.
    """
    try:
        with open(os.path.join(venv, RECORD_FILE), encoding="utf-8") as file:
            text = file.read().strip()
    except (OSError, ValueError):
        return False
    return text.startswith("{") and text.endswith("}") and all(f'"{key}":' in text for key in RECORD_KEYS)


def _record_string(text: str, key: str) -> str | None:
    """The value of ``"key": "..."`` in a record json wrote, when it holds no escape (else None)."""
    marker = f'"{key}": "'
    start = text.find(marker)
    end = text.find('"', start + len(marker)) if start >= 0 else -1
    value = text[start + len(marker) : end] if end >= 0 else ""
    return value if value and "\\" not in value else None


def base_plainly_trusted(venv: str) -> bool:
    """Whether the base the venv links to is, at a glance, the caller's or root's and written by no one else.

    Three ``lstat`` calls: the base, the directory holding it (``bases/``) and its site-packages.
    Anything else (a group-writable team store, a link, an escaped path, another owner) goes to the
    click CLI, which applies the whole rule of :mod:`layerenv.store.trust` with the user's settings
    and names what is wrong.
    """
    getuid = getattr(os, "getuid", None)
    if getuid is None:
        return True  # no owners to compare (Windows)
    try:
        with open(os.path.join(venv, RECORD_FILE), encoding="utf-8") as file:
            text = file.read()
    except (OSError, ValueError):
        return False
    base, site = _record_string(text, "base_venv"), _record_string(text, "base_site")
    if base is None or site is None:
        return False
    caller = getuid()
    for path in (base, os.path.dirname(base), site):
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue  # a base that is gone runs nothing: the command's own import error says so
        except OSError:
            return False
        if info.st_uid not in (caller, 0) or info.st_mode & 0o022 or (info.st_mode & 0o170000) == 0o120000:
            return False
    return True


def constraint_reference(path: str) -> str:
    """``path`` as an item of a whitespace-separated list (``UV_CONSTRAINT``, ``PIP_CONSTRAINT``, pip.conf's
    ``constraint``, all split on whitespace): as it is, or a ``file:`` URL (pip and uv both read one) when
    it holds whitespace, which would split it."""
    if "".join(path.split()) == path:  # no whitespace (str.split's, as pip and uv split)
        return path
    from pathlib import Path

    return Path(path).absolute().as_uri()


def constraint_variables(venv: str, environ: Mapping[str, str]) -> dict[str, str]:
    """``UV_CONSTRAINT`` (ours first, any already set kept after it) and ``VIRTUAL_ENV`` for ``venv``.

    No ``UV_PYTHON``: ``VIRTUAL_ENV`` already selects the venv for ``uv pip``, and ``UV_PYTHON`` would
    also steer ``uv venv``/``uv run`` inside the user's command.
    """
    venv = os.path.abspath(venv)
    ours = constraint_reference(os.path.join(venv, CONSTRAINTS_FILE))
    prior = [item for item in environ.get("UV_CONSTRAINT", "").split() if item != ours]
    return {"UV_CONSTRAINT": " ".join([ours, *prior]), "VIRTUAL_ENV": venv}


def pip_constraint(venv: str, environ: Mapping[str, str]) -> str:
    """``PIP_CONSTRAINT`` with the venv's constraints first, any the caller set kept after them."""
    ours = constraint_reference(os.path.join(os.path.abspath(venv), CONSTRAINTS_FILE))
    return " ".join([ours, *[c for c in environ.get("PIP_CONSTRAINT", "").split() if c != ours]])


def scripts_dir(venv: str) -> str:
    """``bin`` or ``Scripts``, as on disk (:meth:`layerenv.venv.layout.VenvLayout.for_venv`, without pathlib)."""
    for name in ("bin", "Scripts"):
        if os.path.isdir(os.path.join(venv, name)):
            return os.path.join(venv, name)
    return os.path.join(venv, "Scripts" if sys.platform == "win32" else "bin")


def run_environment(venv: str, environ: Mapping[str, str]) -> dict[str, str]:
    """What ``layerenv run`` (and a subshell without an activate hook) runs under: the venv's variables."""
    env = dict(environ)
    env.update(constraint_variables(venv, environ))
    env["PIP_CONSTRAINT"] = pip_constraint(venv, environ)
    env["PATH"] = os.pathsep.join([scripts_dir(venv), environ.get("PATH", "")])
    env.pop("PYTHONHOME", None)
    return env


def exec_command(argv: list[str], env: dict[str, str]) -> None:
    """Become ``argv``: its exit code, its signals and the terminal are the command's, as with ``uv run``.

    Python ignores SIGPIPE and SIGXFSZ for itself and an ignored signal stays ignored across exec, so
    they get their default back first (as :mod:`subprocess` does): ``layerenv run yes | head -1`` ends.
    """
    try:
        import _signal as signals  # type: ignore[import-not-found]  # `signal` is this plus an enum import
    except ImportError:  # pragma: no cover - another interpreter
        import signal as signals

    for name in ("SIGPIPE", "SIGXFSZ"):
        if hasattr(signals, name):
            signals.signal(getattr(signals, name), signals.SIG_DFL)
    try:
        _exec_on_path(argv, env)
    except OSError as error:
        from layerenv.errors import BadInput

        if isinstance(error, FileNotFoundError):
            raise BadInput(f"command not found: {argv[0]}") from None
        # not executable, not a program at all: the user's command, not a bug
        raise BadInput(f"cannot run {argv[0]}: {error.strerror}") from None


def _exec_on_path(argv: list[str], env: dict[str, str]) -> None:
    """``os.execvpe`` (the command looked up on ``env``'s ``PATH``, the first error that is not "no such
    file" kept), without the ``warnings`` import that its ``os.get_exec_path`` costs."""
    if os.path.dirname(argv[0]):
        os.execve(argv[0], argv, env)  # noqa: S606 - argument list, no shell
    first: OSError | None = None
    for folder in env.get("PATH", os.defpath).split(os.pathsep):
        try:
            os.execve(os.path.join(folder, argv[0]), argv, env)  # noqa: S606
        except (FileNotFoundError, NotADirectoryError) as error:
            last: OSError = error
        except OSError as error:
            last = error
            first = first or error
    raise first or last
