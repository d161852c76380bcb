"""Whether the ``poetry`` a project would be run with has layerenv's plugin, found without running it.

The poetry on ``PATH`` is a script whose ``#!`` line names the Python of poetry's own environment
(the official installer's venv, a pipx venv, any venv); that environment has the plugin when one of
its ``*.dist-info/entry_points.txt`` names :mod:`layerenv.integrations.poetry_plugin` under
``[poetry.application.plugin]``. Only a poetry outside any venv costs a Python start to ask.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from layerenv.errors import BadInput
from layerenv.venv.layout import VenvLayout

__all__ = ["PoetryInstall", "find_poetry", "has_plugin", "is_poetry_project", "plugin_hint", "read_interpreter"]

GROUP = "poetry.application.plugin"
PLUGIN_MODULE = "layerenv.integrations.poetry_plugin"
_TOOL_POETRY = re.compile(r"^\s*\[\s*tool\s*\.\s*poetry\b", re.MULTILINE)
_PROJECT_PLUGIN = re.compile(r"^\s*\[\s*tool\s*\.\s*poetry\s*\.\s*requires-plugins\s*\][^\[]*^\s*layerenv\b",
                             re.MULTILINE)
_SH_EXEC = re.compile(r"""^'''exec' "?([^"\s]+)"?""")  # pip's launcher for a long or spaced path
_ASK = ("import importlib.metadata as m; "
        f"print(any({PLUGIN_MODULE!r} in e.value for e in m.entry_points(group={GROUP!r})))")


@dataclass(frozen=True)
class PoetryInstall:
    """A poetry found on ``PATH`` and the environment it runs from."""

    script: Path
    python: Path | None  # the interpreter its ``#!`` line names
    venv: Path | None  # that interpreter's venv (None: a system Python)

    @property
    def pipx(self) -> bool:
        return self.venv is not None and ((self.venv / "pipx_metadata.json").is_file()
                                          or "pipx" in self.venv.parts)

    @property
    def install_line(self) -> str:
        return "pipx inject poetry layerenv" if self.pipx else "poetry self add layerenv"


def is_poetry_project(project_dir: Path) -> bool:
    """A ``poetry.lock``, or a ``[tool.poetry...]`` table in ``pyproject.toml``."""
    if (project_dir / "poetry.lock").is_file():
        return True
    try:
        return bool(_TOOL_POETRY.search((project_dir / "pyproject.toml").read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError):
        return False


def read_interpreter(script: Path) -> Path | None:
    """The Python a console script runs with: its ``#!`` line, or pip's ``/bin/sh`` launcher."""
    try:
        with script.open("rb") as handle:
            head = handle.read(1024).decode("utf-8", errors="replace").splitlines()
    except OSError:
        return None
    if not head or not head[0].startswith("#!"):
        return None
    words = head[0][2:].split()
    if words and Path(words[0]).name.startswith("python"):
        return Path(words[0])
    if words and Path(words[0]).name == "env" and len(words) > 1:
        found = shutil.which(words[1])
        return Path(found) if found else None
    match = _SH_EXEC.match(head[1]) if len(head) > 1 else None
    return Path(match[1]) if match else None


def find_poetry(environ: Mapping[str, str]) -> PoetryInstall | None:
    found = shutil.which("poetry", path=environ.get("PATH", os.defpath))
    if found is None:
        return None
    script = Path(found).resolve()  # ~/.local/bin/poetry links into its venv's bin/
    python = read_interpreter(script)
    venv = python.parent.parent if python is not None else None
    if venv is not None and not (venv / "pyvenv.cfg").is_file():
        venv = None
    return PoetryInstall(script, python, venv)


def _declares_plugin(site: Path) -> bool:
    for entry_points in site.glob("*.dist-info/entry_points.txt"):
        try:
            text = entry_points.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        section = text.partition(f"[{GROUP}]")[2].split("\n[", 1)[0]
        if PLUGIN_MODULE in section:
            return True
    return False


def has_plugin(poetry: PoetryInstall, project_dir: Path) -> bool | None:
    """Whether that poetry loads the plugin for this project (None: could not tell)."""
    if _declares_plugin(project_dir / ".poetry" / "plugins"):  # poetry 2's per-project plugin cache
        return True
    try:
        if _PROJECT_PLUGIN.search((project_dir / "pyproject.toml").read_text(encoding="utf-8")):
            return True  # poetry installs it for the project on its own
    except (OSError, UnicodeDecodeError):
        pass
    if poetry.venv is not None:
        try:
            return _declares_plugin(VenvLayout.for_venv(poetry.venv).site_packages)
        except BadInput:  # an odd venv: ask its Python instead
            pass
    if poetry.python is None:
        return None
    try:
        answer = subprocess.run([str(poetry.python), "-I", "-c", _ASK], capture_output=True, text=True,
                                timeout=20, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {"True": True, "False": False}.get(answer.stdout.strip())


def plugin_hint(project_dir: Path, environ: Mapping[str, str]) -> str | None:
    """The note ``layerenv project`` prints for a poetry project whose poetry lacks the plugin."""
    if not is_poetry_project(project_dir):
        return None
    poetry = find_poetry(environ)
    if poetry is None or has_plugin(poetry, project_dir) is not False:
        return None
    return (f"{poetry.script} has no layerenv plugin, so `poetry install` would put its own torch into this "
            f"project; run `{poetry.install_line}` once")
