"""Issue 14's proof, end to end with the machine's real ``torch 2.13.0+cpu``: a poetry project, a uv
project and a requirements file, each needing ``torchmetrics`` from PyPI, layered on one real base.

torch resolves, for the locks, from a local index served here that holds the real wheel (hard-linked
from /opt/wheels), declared as the project's explicit torch source the way real projects pin PyTorch's
CPU index; everything else comes from PyPI. The server's log proves no torch-family file was fetched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from layerenv.venv.distinfo import canonical_name, is_family
from tests.support.cli import run_layerenv
from tests.support.index import IndexServer, serve_index, write_simple_index
from tests.support.real_torch import REAL_TORCH_GROUP, TAG, WHEELS, RealBase
from tests.support.wheels import parse_wheel_filename
from tests.test_poetry_plugin import poetry_home  # noqa: F401 - the fixture: poetry with the plugin

pytestmark = [pytest.mark.slow, REAL_TORCH_GROUP]

REAL = sorted(WHEELS.glob(f"torch-2.13.0+cpu-{TAG}-{TAG}-*.whl")) if WHEELS.is_dir() else []
PYPI = "https://pypi.org/simple"
TORCH = "2.13.0+cpu"
UV = shutil.which("uv") or str(Path(sys.executable).parent / "uv")

METRIC = (
    "import json, torch, torchmetrics.functional as F\n"
    "x = torch.arange(6, dtype=torch.float32)\n"
    "print(json.dumps({'mse': float(F.mean_squared_error(x, x + 1)), 'file': torch.__file__,"
    " 'version': torch.__version__}))\n"
)


def _pypi_reachable() -> bool:
    try:
        with urllib.request.urlopen(f"{PYPI}/einops/", timeout=5) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _skip_reason() -> str | None:
    if not REAL:
        return f"no real torch {TORCH} wheel for {TAG} in {WHEELS} (set LAYERENV_TEST_TORCH_WHEELS)"
    if not _pypi_reachable():
        return f"PyPI ({PYPI}) is not reachable: torchmetrics comes from there"
    return None


@dataclass(frozen=True)
class RealWorld:
    """One store holding a real torch base; the served explicit torch index."""

    home: Path
    layerenv_env: dict[str, str]
    server: IndexServer

    @property
    def torch_index(self) -> str:
        return self.server.url_for("torch-cpu/simple") + "/"

    def family_fetched(self) -> list[str]:
        """Torch-family files (wheels or their PEP 658 metadata) fetched from the torch index."""
        with self.server.lock:
            names = [name for name in self.server.downloads if name.endswith((".whl", ".whl.metadata"))]
        return sorted(n for n in names if n.endswith(".whl") and is_family(parse_wheel_filename(n)[0]))


def installer_env(tmp: Path, env: Mapping[str, str]) -> dict[str, str]:
    """No installer configuration of this machine; caches inside ``tmp``; PyPI for the rest."""
    clean = {k: v for k, v in env.items()
             if not k.startswith(("PIP_", "UV_", "POETRY_")) and k not in ("VIRTUAL_ENV", "CONDA_PREFIX")}
    clean.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1",
                 PIP_INDEX_URL=PYPI, PIP_CACHE_DIR=str(tmp / "pip-cache"),
                 UV_NO_CONFIG="1", UV_PYTHON_DOWNLOADS="never", UV_CACHE_DIR=str(tmp / "uv-cache"),
                 POETRY_CACHE_DIR=str(tmp / "poetry-cache"), POETRY_CONFIG_DIR=str(tmp / "poetry-config"),
                 POETRY_DATA_DIR=str(tmp / "poetry-data"), POETRY_VIRTUALENVS_IN_PROJECT="true",
                 POETRY_NO_INTERACTION="1", PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring")
    return clean


@pytest.fixture(scope="module")
def real_world(tmp_path_factory: pytest.TempPathFactory,
               real_cpu_base: Callable[[str], RealBase]) -> Iterator[RealWorld]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("real-workflows")
    files = root / "index" / "torch-cpu" / "files"
    files.mkdir(parents=True)
    linked = files / REAL[-1].name
    try:
        os.link(REAL[-1], linked)
    except OSError:  # another file system: a symlink, still no 200 MB copy
        linked.symlink_to(REAL[-1])
    write_simple_index(root / "index" / "torch-cpu", [linked])
    # The base as test_real_torch builds it (the same one, once a session; the projects only read it)
    store = real_cpu_base("2.13.0")
    assert store.built.returncode == 0, store.built.stderr
    assert json.loads(store.built.stdout)["packages"]["torch"] == TORCH
    with serve_index(root / "index") as server:
        yield RealWorld(store.home, store.env, server)


def project_env(world: RealWorld, tmp: Path) -> dict[str, str]:
    """layerenv's settings (store, machine) over a clean installer environment."""
    layerenv_only = {k: v for k, v in world.layerenv_env.items()
                     if k.startswith("LAYERENV_") and k not in ("LAYERENV_FIND_LINKS", "LAYERENV_INDEX_URL")}
    return {**installer_env(tmp, world.layerenv_env), **layerenv_only}


def run(argv: list[str], cwd: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
    return done


def make_layered(project: Path, env: Mapping[str, str]) -> Path:
    made = run_layerenv(["project", str(project)], env, project.parent, timeout=900)
    assert made.returncode == 0, made.stderr
    return project / ".venv"


def assert_metric_on_the_base(world: RealWorld, venv: Path) -> None:
    """No torch-family file fetched; only stubs of the family in the venv; torch is the base's and
    torchmetrics computes with it."""
    assert world.family_fetched() == []
    site = next((venv / "lib").glob("python*/site-packages"))
    for dist_info in site.glob("*.dist-info"):
        if is_family(canonical_name(dist_info.name.rsplit("-", 1)[0])):
            assert (dist_info / "LAYERENV_STUB").is_file(), f"{dist_info.name} is a real install"
    assert not (site / "torch").exists()
    assert (site / "torchmetrics").is_dir()
    out = subprocess.run([str(venv / "bin" / "python"), "-c", METRIC], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert result["mse"] == 1.0
    assert result["version"] == TORCH and result["file"].startswith(str(world.home / "bases"))


def test_poetry_lock_and_install_with_the_plugin(real_world: RealWorld, tmp_path: Path,
                                                  poetry_home: Path) -> None:  # noqa: F811
    project = tmp_path / "app"
    project.mkdir()
    (project / "pyproject.toml").write_text(f"""\
[tool.poetry]
package-mode = false

[tool.poetry.dependencies]
python = ">=3.11,<3.12"
torch = {{version = "{TORCH}", source = "torch-cpu"}}
torchmetrics = "*"

[[tool.poetry.source]]
name = "torch-cpu"
url = "{real_world.torch_index}"
priority = "explicit"
""")
    env = project_env(real_world, tmp_path)
    venv = make_layered(project, env)
    poetry = {**env, "PATH": os.pathsep.join([str(poetry_home / "bin"), env.get("PATH", "")])}
    real_world.server.reset()
    run(["poetry", "lock"], project, poetry)
    run(["poetry", "install"], project, poetry)
    assert f'version = "{TORCH}"' in (project / "poetry.lock").read_text()
    assert_metric_on_the_base(real_world, venv)


def test_uv_lock_and_sync_through_the_wrapper(real_world: RealWorld, tmp_path: Path) -> None:
    project = tmp_path / "app"
    project.mkdir()
    (project / "pyproject.toml").write_text(f"""\
[project]
name = "app"
version = "0.1.0"
requires-python = ">=3.11,<3.12"
dependencies = ["torch=={TORCH}", "torchmetrics"]

[tool.uv]
environments = ["sys_platform == 'linux' and platform_machine == 'x86_64'"]

[[tool.uv.index]]
name = "torch-cpu"
url = "{real_world.torch_index}"
explicit = true

[tool.uv.sources]
torch = {{ index = "torch-cpu" }}
""")
    env = project_env(real_world, tmp_path)
    venv = make_layered(project, env)
    # As an activated shell: the venv's bin (its uv wrapper) first on PATH, the real uv after it.
    shell = {**env, "VIRTUAL_ENV": str(venv),
             "PATH": os.pathsep.join([str(venv / "bin"), str(Path(UV).parent), env.get("PATH", "")])}
    assert shutil.which("uv", path=shell["PATH"]) == str(venv / "bin" / "uv")
    real_world.server.reset()
    run(["uv", "lock"], project, shell)
    run(["uv", "sync"], project, shell)
    assert f'version = "{TORCH}"' in (project / "uv.lock").read_text()
    assert_metric_on_the_base(real_world, venv)


def test_layerenv_project_with_a_requirements_file(real_world: RealWorld, tmp_path: Path) -> None:
    project = tmp_path / "app"
    project.mkdir()
    (project / "requirements.txt").write_text("torchmetrics\n")
    env = {**project_env(real_world, tmp_path), "PIP_EXTRA_INDEX_URL": real_world.torch_index}
    real_world.server.reset()
    venv = make_layered(project, env)
    assert_metric_on_the_base(real_world, venv)
