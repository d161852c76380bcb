"""The Ray runtime_env plugin on a real two-node Ray cluster (``ray start`` twice on this host).

Each node is a different simulated machine (``LAYERENV_SYSROOT``, ``LAYERENV_NODE`` in the
environment of its ``ray start``), the store starts empty, and the project has no venv: the plugin
builds each node's base on first use and the first node creates the per-node project venv, with
``ray`` from PyPI at the cluster's version. Tasks pinned to each node must see that node's torch.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import REPO, layerenv_env
from tests.support.index import isolated_installer_env
from tests.support.pytest_fixtures import VariantIndexes

ray = pytest.importorskip("ray", reason="ray is not installed: `pip install -e '.[test]'` installs it")
from layerenv.integrations.ray_runtime_env import LayerenvPlugin, check_config  # noqa: E402

pytestmark = pytest.mark.slow
RAY_BIN = Path(sys.executable).parent / "ray"
PLUGINS = json.dumps([{"class": "layerenv.ray_plugin.LayerenvPlugin"}])


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("/app", 'runtime_env["layerenv"] must be a dict like {"project": "/path"}'),
        ({}, 'runtime_env["layerenv"]["project"] must be an absolute path, got None'),
        ({"project": "app"}, "must be an absolute path, got 'app'"),
        ({"project": "/app", "venv": "x"}, "unknown key(s) venv; allowed: project, python"),
        ({"project": "/app", "python": 3.11}, 'runtime_env["layerenv"]["python"] must be a string'),
    ],
)
def test_bad_runtime_env_config_is_named(config: object, message: str) -> None:
    with pytest.raises(ValueError, match=None) as raised:
        LayerenvPlugin.validate({"layerenv": config})
    assert message in str(raised.value)
    assert check_config({"project": "/app", "python": "3.11"}) == (Path("/app"), "3.11")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def ray_temp() -> Iterator[Path]:
    """A short temp dir: Ray's unix socket paths must stay under 108 bytes."""
    directory = Path(tempfile.mkdtemp(prefix="lr", dir="/tmp"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


DRIVER = textwrap.dedent("""
    import json, sys, time
    import ray

    ray.init(address=sys.argv[1], runtime_env={"layerenv": {"project": sys.argv[2]}}, logging_level="ERROR")

    @ray.remote(num_cpus=0)
    def where():
        import os, sys, torch
        return {"node": os.environ["LAYERENV_NODE"], "torch": torch.__version__, "python": sys.executable}

    for resource in ("node_a", "node_b", "node_a"):
        started = time.perf_counter()
        answer = ray.get(where.options(resources={resource: 1}).remote(), timeout=400)
        answer["seconds"] = round(time.perf_counter() - started, 2)
        print(json.dumps(answer), flush=True)
    ray.shutdown()
""")

FAILING_DRIVER = textwrap.dedent("""
    import sys
    import ray

    ray.init(address=sys.argv[1], runtime_env={"layerenv": {"project": sys.argv[2]}}, logging_level="ERROR")

    @ray.remote(num_cpus=0)
    def where():
        return 1

    try:
        ray.get(where.options(resources={"node_b": 1}).remote(), timeout=300)
    except Exception as error:
        print(type(error).__name__, str(error).replace("\\n", " "))
    ray.shutdown()
""")


def test_each_ray_node_runs_the_project_on_its_own_base(tmp_path: Path, ray_temp: Path,
                                                        variant_indexes: VariantIndexes) -> None:
    store, project = tmp_path / "store", tmp_path / "app"
    project.mkdir()
    (project / "requirements.txt").write_text(f"ray=={ray.__version__}\n")  # from PyPI, as the cluster runs
    installers = isolated_installer_env(uv_cache_dir=Path.home() / ".cache" / "layerenv-tests" / "uv")
    installers.pop("CUDA_VISIBLE_DEVICES", None)
    common = layerenv_env(store, base_env={**installers, "UV_INDEX_URL": variant_indexes.pypi_url,
                                           "UV_EXTRA_INDEX_URL": "https://pypi.org/simple"},
                          machine=None, extra={"LAYERENV_INDEX_URL": variant_indexes.url_template,
                                               "LAYERENV_INSTALLER": "uv", "RAY_RUNTIME_ENV_PLUGINS": PLUGINS,
                                               "RAY_USAGE_STATS_ENABLED": "0"})
    machines = REPO / "tests" / "fixtures" / "machines"
    node_a = {**common, "LAYERENV_NODE": "node-a", "LAYERENV_SYSROOT": str(machines / "rtx5090-570")}
    node_b = {**common, "LAYERENV_NODE": "node-b", "LAYERENV_SYSROOT": str(machines / "v100-535")}
    port = free_port()
    small = ["--num-cpus=1", "--object-store-memory=80000000", "--disable-usage-stats"]
    try:
        for env, args in (
            (node_a, ["--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={ray_temp}",
                      "--node-name=node-a", '--resources={"node_a": 1}']),
            (node_b, [f"--address=127.0.0.1:{port}", "--node-name=node-b", '--resources={"node_b": 1}',
                      f"--dashboard-agent-listen-port={free_port()}"]),
        ):
            started = subprocess.run([str(RAY_BIN), "start", *args, *small], env=env, capture_output=True,
                                     text=True, timeout=180, check=False)
            assert started.returncode == 0, started.stdout + started.stderr
        driver = subprocess.run([sys.executable, "-c", DRIVER, f"127.0.0.1:{port}", str(project)],
                                env=common, capture_output=True, text=True, timeout=500, check=False)
        assert driver.returncode == 0, driver.stdout[-3000:] + driver.stderr[-3000:]
        answers = [json.loads(line) for line in driver.stdout.splitlines() if line.startswith("{")]
        python = str(project / ".venv" / "bin" / "python")
        assert [(a["node"], a["torch"], a["python"]) for a in answers] == [
            ("node-a", "2.9.1+cu129", python), ("node-b", "2.9.1+cu126", python), ("node-a", "2.9.1+cu129", python)]
        logging.getLogger(__name__).info("first task per node: %s", [a["seconds"] for a in answers])

        no_ray = tmp_path / "no-ray"
        no_ray.mkdir()
        failed = subprocess.run([sys.executable, "-c", FAILING_DRIVER, f"127.0.0.1:{port}", str(no_ray)],
                                env=common, capture_output=True, text=True, timeout=400, check=False)
        assert failed.stdout.startswith("RuntimeEnvSetupError"), failed.stdout[-3000:] + failed.stderr[-3000:]
        assert (f"layerenv: {no_ray}/.venv has no ray, but this cluster runs ray {ray.__version__}; add "
                f"'ray=={ray.__version__}' to the project's requirements") in failed.stdout
    finally:
        subprocess.run([str(RAY_BIN), "stop", "--force"], env=common, capture_output=True, timeout=120,
                       check=False)
    bases = sorted(path.name for path in (store / "bases").iterdir())
    assert bases == [f"cp{sys.version_info.major}{sys.version_info.minor}-linux_x86_64-torch2.9.1-{v}"
                     for v in ("cu126", "cu129")]
    assert sorted(path.name for path in (store / "nodes").iterdir()) == ["node-a", "node-b"]
    assert os.path.isfile(project / ".venv" / "layerenv.json")


def test_a_project_venv_without_the_clusters_ray_is_refused_with_the_fix(tmp_path: Path) -> None:
    from layerenv.integrations.ray_runtime_env import _check_ray

    venv = tmp_path / "app" / ".venv"
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    site.mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text(f"version_info = {sys.version_info.major}.{sys.version_info.minor}.0\n")
    with pytest.raises(RuntimeError) as missing:
        _check_ray(venv, tmp_path / "app")
    assert f"{tmp_path}/app/.venv has no ray, but this cluster runs ray {ray.__version__}" in str(missing.value)
    assert f"add 'ray=={ray.__version__}' to the project's requirements" in str(missing.value)
    dist_info = site / "ray-0.0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: ray\nVersion: 0.0.1\n")
    with pytest.raises(RuntimeError, match=r"\.venv has ray 0\.0\.1, but this cluster runs ray"):
        _check_ray(venv, tmp_path / "app")
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: ray\nVersion: {ray.__version__}\n")
    _check_ray(venv, tmp_path / "app")  # the cluster's version: accepted
