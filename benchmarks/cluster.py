"""Clusters (issue 9): builds per variant across N simulated nodes, per-node start-up cost, Ray first task.

1. N simulated nodes of three kinds (RTX 5090 on driver 570, V100, no GPU) run `layerenv base` at once
   on one store with lease locks, through two mounts of it when this runs as root (a bind mount);
   prints the builds per variant (want 1 each) and torch downloads per variant.
2. Interpreter start (``python -c pass``, median of --runs, interleaved): a per-node project vs the
   same project linked to one base, with the base venv's own python as the peer of both.
3. With ray installed: a two-node Ray cluster on this host, then the first task on each node of a
   new job with ``runtime_env={"layerenv": {...}}`` against the peer ``{"py_executable": <the
   project's python>}`` (the same fresh worker without the plugin) and no runtime_env.

Run: python benchmarks/cluster.py [--nodes 12] [--runs 20] [--no-ray] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.cli import FIXTURE_MACHINES, layerenv_env, run_layerenv  # noqa: E402
from tests.support.index import isolated_installer_env, serve_index  # noqa: E402
from tests.support.pytest_fixtures import build_catalogue, write_index_tree  # noqa: E402

KINDS = (("rtx5090-570", "cu128"), ("v100-535", "cu126"), ("no-gpu", "cpu"))


def bind_mount(source: Path, target: Path) -> bool:
    target.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True,
                          check=False).returncode == 0


def start_times(runs: int, pythons: dict[str, Path], env: dict[str, str]) -> dict[str, float]:
    """Median milliseconds of ``python -c pass`` per interpreter, runs interleaved."""
    samples: dict[str, list[float]] = {name: [] for name in pythons}
    for _ in range(runs):
        for name, python in pythons.items():
            started = time.perf_counter()
            subprocess.run([str(python), "-c", "pass"], env=env, check=True)
            samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) * 1000 for name, values in samples.items()}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


RAY_DRIVER = """
import json, sys, time
import ray
envs = json.loads(sys.argv[2])
out = {}
for name, runtime_env in envs.items():
    ray.init(address=sys.argv[1], runtime_env=runtime_env, logging_level="ERROR")
    @ray.remote(num_cpus=0)
    def ping():
        return 1
    for resource in ("node_a", "node_b"):
        started = time.perf_counter()
        ray.get(ping.options(resources={resource: 1}).remote(), timeout=600)
        out.setdefault(name, []).append(time.perf_counter() - started)
    ray.shutdown()
print(json.dumps(out))
"""


def ray_first_tasks(scratch: Path, env: dict[str, str], project: Path, rounds: int) -> dict[str, Any]:
    ray_bin = Path(sys.executable).parent / "ray"
    temp = Path(tempfile.mkdtemp(prefix="lrb", dir="/tmp"))
    port = free_port()
    plugins = json.dumps([{"class": "layerenv.ray_plugin.LayerenvPlugin"}])
    common = {**env, "RAY_RUNTIME_ENV_PLUGINS": plugins, "RAY_USAGE_STATS_ENABLED": "0"}
    small = ["--num-cpus=1", "--object-store-memory=80000000", "--disable-usage-stats"]
    nodes = (("node-a", "rtx5090-570", ["--head", f"--port={port}", "--include-dashboard=false",
                                         f"--temp-dir={temp}", '--resources={"node_a": 1}']),
             ("node-b", "v100-535", [f"--address=127.0.0.1:{port}", '--resources={"node_b": 1}',
                                      f"--dashboard-agent-listen-port={free_port()}"]))
    try:
        for node, machine, args in nodes:
            node_env = {**common, "LAYERENV_NODE": node, "LAYERENV_SYSROOT": str(FIXTURE_MACHINES / machine)}
            subprocess.run([str(ray_bin), "start", *args, f"--node-name={node}", *small], env=node_env,
                           capture_output=True, check=True, timeout=300)
        python = str(project / ".venv" / "bin" / "python")
        samples: dict[str, list[float]] = {}
        for round_ in range(rounds):
            # a new job each round, so each measures a fresh worker; the runtime_env differs per round
            # by an unused variable so Ray's agent does not hand back a cached environment
            tag = {"env_vars": {"BENCH_ROUND": str(round_)}}
            envs = {
                "layerenv plugin": {"layerenv": {"project": str(project)}, **tag},
                "py_executable peer": {"py_executable": python, **tag},
                "no runtime_env": tag,
            }
            ran = subprocess.run([sys.executable, "-c", RAY_DRIVER, f"127.0.0.1:{port}", json.dumps(envs)],
                                 env=common, capture_output=True, text=True, check=True, timeout=900)
            for name, values in json.loads(ran.stdout.splitlines()[-1]).items():
                samples.setdefault(name, []).extend(values)
    finally:
        subprocess.run([str(ray_bin), "stop", "--force"], env=common, capture_output=True, check=False)
        shutil.rmtree(temp, ignore_errors=True)
    medians = {name: round(statistics.median(values), 2) for name, values in samples.items()}
    medians["plugin / py_executable"] = round(medians["layerenv plugin"] / medians["py_executable peer"], 2)
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=12, help="simulated nodes, spread over three GPU kinds")
    parser.add_argument("--runs", type=int, default=20, help="interpreter starts per configuration")
    parser.add_argument("--ray-rounds", type=int, default=3, help="Ray jobs, each a first task per node")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray part")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="layerenv-bench-cluster-"))
    second = scratch / "store-b"
    figures: dict[str, Any] = {}
    mounted = False
    try:
        store = scratch / "store"
        store.mkdir()
        mounted = bind_mount(store, second)
        root = write_index_tree(scratch / "index", build_catalogue(scratch / "wheels"))
        with serve_index(root) as server:
            template = server.base_url + "/{variant}/simple"
            pypi = template.format(variant="pypi")
            installers = {**isolated_installer_env(uv_cache_dir=scratch / "uv-cache"), "UV_INDEX_URL": pypi,
                          "PIP_INDEX_URL": pypi}
            installers.pop("CUDA_VISIBLE_DEVICES", None)

            def env(node: str, machine: str, mount: Path = store, **extra: str) -> dict[str, str]:
                return layerenv_env(mount, base_env=installers, machine=machine,
                                    extra={"LAYERENV_INDEX_URL": template, "LAYERENV_INSTALLER": "uv",
                                           "LAYERENV_LOCK": "lease", "LAYERENV_NODE": node, **extra})

            nodes = [(f"node{i:02d}", *KINDS[i % len(KINDS)]) for i in range(options.nodes)]
            started = time.monotonic()
            with ThreadPoolExecutor(len(nodes)) as pool:
                results = list(pool.map(
                    lambda n: run_layerenv(["base", "--json"], env(n[0], n[1], second if mounted and
                                                                   int(n[0][4:]) % 2 else store), scratch),
                    nodes))
            wall = time.monotonic() - started
            outputs = [json.loads(r.stdout) for r in results if r.returncode == 0]
            figures["nodes"] = len(nodes)
            figures["mounts"] = 2 if mounted else 1
            figures["failed"] = len(nodes) - len(outputs)
            figures["builds_per_variant"] = {
                variant: sum(1 for o in outputs if o["variant"] == variant and o["status"] == "built")
                for _m, variant in KINDS}
            figures["torch_downloads_per_variant"] = {
                variant: sum(count for name, count in server.downloads.items()
                             if name.startswith("torch-") and f"+{variant}-" in name and name.endswith(".whl"))
                for _m, variant in KINDS}
            figures["wall_s"] = round(wall, 2)

            project = scratch / "project"
            project.mkdir()
            (project / "requirements.txt").write_text("plain-lib==1.0\n")
            fixed = scratch / "fixed-project"
            fixed.mkdir()
            for path, flag in ((project, "--per-node"), (fixed, "--one-base")):
                made = run_layerenv(["project", flag, str(path)], env("node00", KINDS[0][0]), scratch)
                assert made.returncode == 0, made.stderr
            node_env = env("node00", KINDS[0][0])
            base_python = next((store / "bases").glob("*-cu128")) / "bin" / "python"
            starts = start_times(options.runs, {
                "per-node": project / ".venv" / "bin" / "python",
                "one base": fixed / ".venv" / "bin" / "python",
                "base venv (peer)": base_python,
            }, node_env)
            figures["python_start_ms"] = {name: round(value, 1) for name, value in starts.items()}
            figures["per-node / one base"] = round(starts["per-node"] / starts["one base"], 3)

            if not options.no_ray:
                try:
                    import ray
                except ImportError:
                    figures["ray"] = "skipped: ray is not installed"
                else:
                    ray_project = scratch / "ray-project"
                    ray_project.mkdir()
                    (ray_project / "requirements.txt").write_text(f"ray=={ray.__version__}\n")
                    ray_env = {**node_env, "UV_INDEX_URL": "https://pypi.org/simple",
                               "UV_CACHE_DIR": str(Path.home() / ".cache" / "layerenv-tests" / "uv")}
                    made = run_layerenv(["project", "--per-node", str(ray_project)], ray_env, scratch)
                    assert made.returncode == 0, made.stderr
                    figures["ray_first_task_s"] = ray_first_tasks(scratch, ray_env, ray_project, options.ray_rounds)
        if options.json:
            print(json.dumps(figures, indent=2))
        else:
            for name, value in figures.items():
                print(f"{name:28} {value}")
    finally:
        if mounted:  # a bind mount of the same filesystem: Path.is_mount() cannot tell
            subprocess.run(["umount", "-l", str(second)], check=False)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
