"""Virtual environments as a machine image has them, made quickly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

UV = shutil.which("uv") or str(Path(sys.executable).parent / "uv")

_BUNDLED = "import ensurepip, os; print(os.path.join(os.path.dirname(ensurepip.__file__), '_bundled'))"


def venv_with_pip(dest: Path, env: Mapping[str, str], python: str = "python3") -> Path:
    """What ``python -m venv dest`` leaves (ensurepip's bundled pip, and setuptools where it bundles
    it), with the bundled wheels installed by uv: ensurepip runs pip to install them, seconds a venv."""
    subprocess.run([python, "-m", "venv", "--without-pip", str(dest)], check=True, env=dict(env))
    interpreter = dest / "bin" / "python"
    bundled = Path(subprocess.run([str(interpreter), "-c", _BUNDLED], check=True, env=dict(env),
                                  capture_output=True, text=True).stdout.strip())
    wheels = sorted(str(wheel) for wheel in bundled.glob("*.whl"))
    if not any(Path(wheel).name.startswith("pip-") for wheel in wheels):
        # Debian's python3 keeps ensurepip's wheels elsewhere (/usr/share/python-wheels): let it seed pip
        shutil.rmtree(dest)
        subprocess.run([python, "-m", "venv", str(dest)], check=True, env=dict(env))
        return dest
    subprocess.run([UV, "pip", "install", "--quiet", "--offline", "--no-cache", "--no-index", "--python",
                    str(interpreter), *wheels], check=True, env=dict(env))
    return dest


def without_virtualenv(root: Path) -> Path:
    """``root``, a folder to put first on ``PYTHONPATH``: there ``import virtualenv`` finds one whose
    ``cli_run`` raises, so a layerenv that still makes a venv with virtualenv fails. Its version and its
    bundled seed wheels (the pip that project venvs share) are the real ones."""
    import importlib.util

    spec = importlib.util.find_spec("virtualenv")
    assert spec is not None and spec.submodule_search_locations is not None
    real = Path(next(iter(spec.submodule_search_locations)))
    shadow = root / "virtualenv"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("def cli_run(*args, **kwargs):\n    raise RuntimeError('virtualenv ran')\n")
    (shadow / "version.py").write_bytes((real / "version.py").read_bytes())
    (shadow / "seed").symlink_to(real / "seed")
    return root


def project_without_virtualenv(tmp_path: Path, env: Mapping[str, str]) -> Path:
    """``tmp_path/app``, made a project by ``layerenv project`` (which must succeed) while virtualenv cannot run
    (:func:`without_virtualenv`): its venv can only be a copy of a template (the base's venv or the store's shape)."""
    from tests.support.cli import run_layerenv

    no_virtualenv = without_virtualenv(tmp_path / "no-virtualenv")
    project = tmp_path / "app"
    project.mkdir()
    made = run_layerenv(["project", str(project)],
                        {**env, "PYTHONPATH": os.pathsep.join([str(no_virtualenv), env["PYTHONPATH"]])}, tmp_path)
    assert made.returncode == 0, made.stderr
    return project
