"""The project venv's ``uv`` (:mod:`uv_wrapper` writes the script calling :func:`main`): what needs no
layerenv is answered by :mod:`uv_fast`; the rest here, so that uv's project commands keep the base's torch.

- ``uv sync`` -> ``layerenv sync`` (same ``--group``/``--extra``/``--frozen``/``--locked``);
- ``uv run`` -> ``layerenv sync`` when the lock or pyproject changed since the last one, then the
  real ``uv run --no-sync``;
- ``uv add``/``uv remove`` -> the real one with ``--no-sync`` (pyproject and uv.lock exactly as uv
  writes them: no ``UV_CONSTRAINT``, so the lock stays portable), then ``layerenv sync``.
"""

from __future__ import annotations

from layerenv.errors import LayerenvError
from layerenv.project.sync_state import portable_env
from layerenv.project.uv_fast import answer, exec_uv, first_positional, run_options, sync_options, with_site_packages

TYPE_CHECKING = False  # mypy takes it as true; this module is imported on the venv's `uv` start-up path
if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path


def routed(venv: Path, real: str, head: Sequence[str], command: str, rest: Sequence[str],
           env: dict[str, str]) -> int:
    """uv's ``command`` (``sync``, ``run``, ``add``, ``remove``) in this venv's project, through ``layerenv sync``."""
    if command == "sync":
        _sync(venv, rest, command)
        return 0
    if command in ("add", "remove"):
        return _add_or_remove(venv, [real, *head, command, "--no-sync", *rest], portable_env(env), command)
    if command == "run":
        if "--no-sync" not in rest:
            own = rest[: first_positional(rest)]
            _sync(venv, [arg for arg in own if arg in ("--frozen", "--locked")], command)
        return exec_uv([real, *head, command, *run_options(rest)], env)
    return exec_uv([real, *head, command, *rest], env)


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


def main(venv_text: str, argv: Sequence[str]) -> int:
    """The venv's ``uv`` script: :func:`uv_fast.answer` where no layerenv work is needed, else :func:`routed`."""
    found = answer(venv_text, argv)
    if isinstance(found, int):
        return found
    with_site_packages()
    import sys
    from pathlib import Path

    try:
        return routed(Path(found.venv), found.real, found.head, found.command, found.rest, found.env)
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
