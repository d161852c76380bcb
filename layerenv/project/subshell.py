"""``layerenv shell`` on a terminal: the user's own shell, started with the project's venv activated.

As ``poetry shell`` and ``pipenv shell`` do it: the shell reads the user's usual startup file and then
the venv's activate script (so ``VIRTUAL_ENV``, ``PATH``, the prompt prefix, ``UV_CONSTRAINT`` and
``deactivate`` are what ``source .venv/bin/activate`` gives), plus ``PIP_CONSTRAINT`` as ``layerenv
run`` sets it. A shell with no startup hook layerenv knows gets the variables alone (no prompt prefix).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from layerenv.project import run_env
from layerenv.project.link import uv_environment
from layerenv.venv.layout import VenvLayout


@dataclass(frozen=True)
class Subshell:
    argv: tuple[str, ...]
    env: dict[str, str]
    files: dict[str, str]  # name -> text: startup files to write into a private directory first


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def run_environment(venv: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """What a subshell without an activate hook runs under: ``layerenv run``'s variables, the record checked."""
    env = run_env.run_environment(str(venv), environ)
    env.update(uv_environment(venv, environ))  # the same two variables; refuses a venv that is not linked
    return env


def pip_constraint(venv: Path, environ: Mapping[str, str]) -> str:
    return run_env.pip_constraint(str(venv), environ)


def plan_subshell(shell: str, venv: Path, environ: Mapping[str, str], private: Path) -> Subshell:
    """How to start ``shell`` with ``venv`` activated; startup files go to ``private`` (a fresh directory)."""
    venv = venv.absolute()
    activate = str(VenvLayout.for_venv(venv).bin_dir / "activate")
    name = Path(shell).name
    env = {key: value for key, value in environ.items() if key != "PYTHONHOME"}
    env["PIP_CONSTRAINT"] = pip_constraint(venv, environ)
    home = environ.get("HOME") or str(Path.home())
    if name == "bash":
        rc = f'[ -f {_sh_quote(home + "/.bashrc")} ] && . {_sh_quote(home + "/.bashrc")}\n. {_sh_quote(activate)}\n'
        return Subshell((shell, "--rcfile", str(private / "bashrc"), "-i"), env, {"bashrc": rc})
    if name == "zsh":
        user = environ.get("ZDOTDIR", home)
        env["ZDOTDIR"] = str(private)
        files = {
            ".zshenv": f'[ -f {_sh_quote(user + "/.zshenv")} ] && . {_sh_quote(user + "/.zshenv")}\n',
            ".zshrc": f"ZDOTDIR={_sh_quote(user)}\n"
            f'[ -f {_sh_quote(user + "/.zshrc")} ] && . {_sh_quote(user + "/.zshrc")}\n. {_sh_quote(activate)}\n',
        }
        return Subshell((shell, "-i"), env, files)
    if name == "fish":
        return Subshell((shell, "--init-command", f"source {_sh_quote(activate + '.fish')}"), env, {})
    if name in ("sh", "dash", "ksh", "mksh"):  # POSIX: an interactive shell reads $ENV
        user_env = environ.get("ENV")
        rc = f"[ -f {_sh_quote(user_env)} ] && . {_sh_quote(user_env)}\n" if user_env else ""
        rc += f". {_sh_quote(activate)}\n"
        env["ENV"] = str(private / "shrc")
        return Subshell((shell, "-i"), env, {"shrc": rc})
    return Subshell((shell,), run_environment(venv, environ), {})


def _ignore(signum: int, frame: FrameType | None) -> None:
    """^C and ^\\ belong to the subshell while it runs (a handler, not SIG_IGN: the shell gets the default)."""


def start_subshell(shell: str, venv: Path, environ: Mapping[str, str]) -> int:
    """Run ``shell`` with ``venv`` activated until it exits; its exit status (128 + N for a signal N)."""
    with tempfile.TemporaryDirectory(prefix="layerenv-shell-") as private:
        plan = plan_subshell(shell, venv, environ, Path(private))
        for name, text in plan.files.items():
            (Path(private) / name).write_text(text, encoding="utf-8")
        if sys.platform == "win32":  # no SIGQUIT there
            stops: tuple[signal.Signals, ...] = (signal.SIGINT,)
        else:
            stops = (signal.SIGINT, signal.SIGQUIT)
        previous = {signum: signal.signal(signum, _ignore) for signum in stops}
        try:
            try:
                completed = subprocess.run(plan.argv, env=plan.env, check=False)
            except OSError as error:
                from layerenv.errors import BadInput

                raise BadInput(f"cannot start the shell {shell!r} (from $SHELL): {error.strerror}") from None
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    code = completed.returncode
    return 128 - code if code < 0 else code
