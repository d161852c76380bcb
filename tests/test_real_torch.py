"""End to end with the machine's real CPU torch wheel: a base, a project with a real torch dependency.

The wheel is looked up in pip's configured find-links (``/opt/wheels`` on the CI image) and torch's own
dependencies come from pip's configured index, as on an offline machine with a local mirror.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.cli import run_layerenv
from tests.support.real_torch import REAL_TORCH_GROUP, TAG, WHEELS, RealBase

pytestmark = [pytest.mark.slow, REAL_TORCH_GROUP]

REAL = sorted(WHEELS.glob(f"torch-*+cpu-{TAG}-{TAG}-*.whl")) if WHEELS.is_dir() else []


@pytest.mark.skipif(not REAL, reason=f"no real CPU torch wheel for {TAG} in {WHEELS} (set LAYERENV_TEST_TORCH_WHEELS)")
def test_real_cpu_torch_base_and_project(tmp_path: Path, real_cpu_base: Callable[[str], RealBase]) -> None:
    version = REAL[-1].name.split("-")[1]
    store = real_cpu_base(version.split("+")[0])  # built once a session: test_real_workflows shares it
    base, env = store.built, store.env
    assert base.returncode == 0, base.stderr
    summary = json.loads(base.stdout)
    assert summary["packages"]["torch"] == version and summary["variant"] == "cpu"
    assert "unreachable" in base.stderr

    project = tmp_path / "repo"
    project.mkdir()
    (project / "requirements.txt").write_text("torchmetrics\n")
    result = run_layerenv(["project", str(project)], env, tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr
    venv = project / ".venv"
    code = (
        "import torch, torchmetrics, importlib.metadata as m\n"
        "x = torch.arange(6, dtype=torch.float32).reshape(2, 3)\n"
        "print(torch.__version__, m.version('torch'), float((x @ x.T).sum()),"
        " float(torchmetrics.functional.mean_squared_error(x, x + 1)), torch.__file__)\n"
    )
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True)
    torch_version, dist_version, product, mse, torch_file = out.stdout.split()
    assert torch_version == version and dist_version == version
    assert (float(product), float(mse)) == (83.0, 1.0)  # [[5, 14], [14, 50]]
    assert torch_file.startswith(str(store.home / "bases"))
    site = next((venv / "lib").glob("python*/site-packages"))
    real_torch = [p for p in site.glob("torch-*.dist-info") if (p / "INSTALLER").read_text().strip() != "layerenv"]
    assert real_torch == [], "the project venv must not hold a second torch"
    assert (site / "torchmetrics").is_dir()
