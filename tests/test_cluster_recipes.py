"""The Slurm and Kubernetes recipes in docs/clusters, run as far as this machine allows.

``srun`` is a stand-in that runs its command once per simulated node (each with its own
``LAYERENV_NODE`` and replayed machine); the Kubernetes manifest's containers are run in order per
simulated node, with the shared volume mapped to a temporary directory. layerenv, uv and the
indexes are real.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.cli import FIXTURE_MACHINES, REPO, layerenv_env
from tests.support.index import isolated_installer_env
from tests.support.pytest_fixtures import VariantIndexes

pytestmark = pytest.mark.slow

FAKE_SRUN = """#!/usr/bin/env bash
# srun stand-in: run the command once per node of $FAKE_NODES ("name=machine ..."), in parallel.
while [[ "${1:-}" == --* ]]; do shift; done
pids=()
for node in $FAKE_NODES; do
  LAYERENV_NODE="${node%%=*}" LAYERENV_SYSROOT="$FAKE_MACHINES/${node#*=}" "$@" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
"""

# One os.write per line: the nodes' tasks share one pipe, and a write under PIPE_BUF is never split.
SCRIPT = "import os, torch, plain_lib\nos.write(1, f\"{os.environ['LAYERENV_NODE']} {torch.__version__}\\n\".encode())\n"


def tools(directory: Path) -> Path:
    """A bin directory with ``layerenv`` (this checkout) and the ``srun`` stand-in."""
    directory.mkdir()
    (directory / "layerenv").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m layerenv "$@"\n')
    (directory / "srun").write_text(FAKE_SRUN)
    for tool in directory.iterdir():
        tool.chmod(0o755)
    return directory


def environment(tmp_path: Path, indexes: VariantIndexes, **extra: str) -> dict[str, str]:
    installers = isolated_installer_env(uv_cache_dir=tmp_path / "uv-cache")
    installers.pop("CUDA_VISIBLE_DEVICES", None)
    env = layerenv_env(tmp_path / "unused-home", base_env={**installers, "PIP_INDEX_URL": indexes.pypi_url,
                                                          "UV_INDEX_URL": indexes.pypi_url},
                       machine=None, extra={"LAYERENV_INDEX_URL": indexes.url_template,
                                            "LAYERENV_INSTALLER": "uv", **extra})
    env["PATH"] = f"{tools(tmp_path / 'bin')}{os.pathsep}{env['PATH']}"
    return env


def make_project(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "requirements.txt").write_text("plain-lib\n")
    (path / "train.py").write_text(SCRIPT)
    (path / "main.py").write_text(SCRIPT)
    return path


def test_slurm_job_script_runs_each_node_on_its_own_base(tmp_path: Path, variant_indexes: VariantIndexes) -> None:
    store = tmp_path / "shared" / "layerenv"
    project = make_project(tmp_path / "shared" / "projects" / "app")
    env = environment(tmp_path, variant_indexes, LAYERENV_HOME=str(store), LAYERENV_NODE="gpu-5090",
                      LAYERENV_SYSROOT=str(FIXTURE_MACHINES / "rtx5090-570"), FAKE_MACHINES=str(FIXTURE_MACHINES),
                      FAKE_NODES="gpu-5090=rtx5090-570 gpu-v100=v100-535 cpu-only=no-gpu")
    job = subprocess.run(["bash", str(REPO / "docs" / "clusters" / "slurm-job.sh"), str(project), "train.py"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert job.returncode == 0, job.stdout + job.stderr
    ran = sorted(line for line in job.stdout.splitlines() if line.startswith(("gpu-", "cpu-")))
    assert ran == ["cpu-only 2.9.1+cpu", "gpu-5090 2.9.1+cu129", "gpu-v100 2.9.1+cu126"]
    assert sorted(path.name.rsplit("-", 1)[-1] for path in (store / "bases").iterdir()) == ["cpu", "cu126", "cu129"]
    assert sorted(path.name for path in (store / "nodes").iterdir()) == ["cpu-only", "gpu-5090", "gpu-v100"]


def containers(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    spec = manifest["spec"]["template"]["spec"]
    return [*spec["initContainers"], *spec["containers"]]


def run_container(container: dict[str, Any], node: str, machine: str, shared: Path,
                  env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run one container's command as the kubelet would on ``node``, the volume at ``shared``."""
    def mapped(value: str) -> str:
        return str(shared) + value.removeprefix("/shared") if value.startswith("/shared") else value

    values = dict(env, LAYERENV_SYSROOT=str(FIXTURE_MACHINES / machine))
    for variable in container["env"]:
        if "valueFrom" in variable:
            assert variable["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
            values[variable["name"]] = node
        else:
            values[variable["name"]] = mapped(variable["value"])
    assert [mount["mountPath"] for mount in container["volumeMounts"]] == ["/shared"]
    command = [mapped(part) for part in container["command"]]
    return subprocess.run(command, env=values, cwd=mapped(container.get("workingDir", "/shared")),
                          capture_output=True, text=True, timeout=600, check=False)


def test_kubernetes_job_init_container_then_doctor_then_the_app(tmp_path: Path,
                                                                 variant_indexes: VariantIndexes) -> None:
    manifest = yaml.safe_load((REPO / "docs" / "clusters" / "kubernetes.yaml").read_text())
    assert manifest["kind"] == "Job"
    init, app = containers(manifest)
    shared = tmp_path / "volume"
    make_project(shared / "projects" / "app")
    env = environment(tmp_path, variant_indexes)
    created = subprocess.run(
        ["layerenv", "project", "--per-node", str(shared / "projects" / "app")],
        env=dict(env, LAYERENV_HOME=str(shared / "layerenv"), LAYERENV_NODE="node-a",
                 LAYERENV_SYSROOT=str(FIXTURE_MACHINES / "rtx5090-570")),
        capture_output=True, text=True, timeout=600, check=False)
    assert created.returncode == 0, created.stderr
    for node, machine, torch in (("node-a", "rtx5090-570", "2.9.1+cu129"), ("node-b", "v100-535", "2.9.1+cu126")):
        for container in (init, app):
            result = run_container(container, node, machine, shared, env)
            assert result.returncode == 0, (node, container["name"], result.stdout + result.stderr)
        assert result.stdout.splitlines()[-1] == f"{node} {torch}"

    # A pod whose init container did not run on a new node: doctor stops it before the app starts.
    stopped = run_container(app, "node-c", "gtx1080-580", shared, env)
    assert stopped.returncode == 1, stopped.stdout + stopped.stderr
    assert "no base recorded for node node-c" in stopped.stdout + stopped.stderr
    assert "node-c 2.9" not in stopped.stdout
    assert shlex.join(app["command"]).endswith("exec layerenv run -- python main.py'")


# The replayed machine standing for each (GPU product label, driver major) the manifest selects.
REPLAYS = {
    ("NVIDIA-GeForce-RTX-5090", "570"): "rtx5090-570",
    ("Tesla-V100-SXM2-32GB", "535"): "v100-535",
    ("NVIDIA-H100-80GB-HBM3", "580"): "h100-580",
}


def test_kubernetes_image_per_variant_matches_what_detect_chooses_on_each_node(tmp_path: Path) -> None:
    manifest = yaml.safe_load((REPO / "docs" / "clusters" / "kubernetes-per-variant.yaml").read_text())
    seen = []
    for deployment in manifest["items"]:
        pod = deployment["spec"]["template"]["spec"]
        selector = pod["nodeSelector"]
        machine = REPLAYS[(selector["nvidia.com/gpu.product"], selector["nvidia.com/cuda.driver.major"])]
        (container,) = pod["containers"]
        variant = container["image"].rsplit(":", 1)[1]
        assert "command" not in container  # the image's entrypoint, with its doctor check, runs first
        env = layerenv_env(tmp_path / "home", base_env=dict(os.environ), machine=machine)
        detected = subprocess.run([sys.executable, "-m", "layerenv", "detect", "--json"], env=env,
                                  capture_output=True, text=True, timeout=60, check=True)
        assert json.loads(detected.stdout)["variant"] == variant, (machine, variant)
        assert deployment["spec"]["template"]["metadata"]["labels"]["variant"] == variant
        assert f"--build-arg TORCH_VARIANT={variant} " in (REPO / "docs" / "clusters" /
                                                           "kubernetes-per-variant.yaml").read_text()
        seen.append(machine)
    assert sorted(seen) == sorted(REPLAYS.values())
