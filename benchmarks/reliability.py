"""The load scenario of issue 8, once: 16 `layerenv base` + 16 `layerenv project` (16 repos) at once on one store.

Prints the wall time, how many times torch was downloaded and published (builds, want 1), how many
commands failed (want 0) and how many registry entries there are (want 16).
Run: python benchmarks/reliability.py [--json]

``--race`` (issue 15) instead starts at once, on a store holding the cpu base: ``--concurrency``
`layerenv project` runs on ONE directory, one `layerenv project` on a directory whose layerenv.toml pins
cu128 (so it builds that base), and as many `layerenv gc` runs; then checks that nothing failed but
what waited its turn, no traceback, both venvs import their torch, and a last gc keeps both bases;
then as many `layerenv rebase` runs at once onto cu126 (one build, every run relinks the same venvs).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.cli import layerenv_env, run_layerenv  # noqa: E402
from tests.support.index import isolated_installer_env, serve_index  # noqa: E402
from tests.support.pytest_fixtures import build_catalogue, write_index_tree  # noqa: E402

CPU_ID = "cp311-linux_x86_64-torch2.9.1-cpu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=16, help="bases and projects started at once, each")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--race", action="store_true", help="project runs on one directory and gc, at once")
    options = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="layerenv-bench-reliability-"))
    try:
        root = write_index_tree(scratch / "index", build_catalogue(scratch / "wheels"))
        with serve_index(root) as server:
            template = server.base_url + "/{variant}/simple"
            pypi = template.format(variant="pypi")
            base_env = {**isolated_installer_env(uv_cache_dir=scratch / "uv-cache"), "UV_INDEX_URL": pypi}
            env = layerenv_env(
                scratch / "home",
                base_env={**base_env, "PIP_INDEX_URL": pypi},
                machine="no-gpu",
                extra={"LAYERENV_INDEX_URL": template, "LAYERENV_INSTALLER": "uv"},
            )
            if options.race:
                figures = race(scratch, env, options.concurrency)
                print(json.dumps(figures, indent=2) if options.json else
                      "\n".join(f"{name:22} {value}" for name, value in figures.items()))
                return
            projects = []
            for index in range(options.concurrency):
                project = scratch / f"repo{index:02d}"
                project.mkdir()
                (project / "requirements.txt").write_text("plain-lib==1.0\n")
                projects.append(project)
            commands = [["base", "--json"]] * options.concurrency + [["project", str(p)] for p in projects]
            started = time.monotonic()
            with ThreadPoolExecutor(len(commands)) as pool:
                results = list(pool.map(lambda args: run_layerenv(args, env, scratch, timeout=300), commands))
            wall = time.monotonic() - started
            downloads = server.download_count("torch-2.9.1+cpu-py3-none-any.whl")
        figures = {
            "commands": len(commands),
            "failed": sum(1 for r in results if r.returncode != 0),
            "wall_s": round(wall, 2),
            "torch_downloads": downloads,
            "builds": sum(r.stderr.count(f"published {CPU_ID}") for r in results),
            "registry_entries": len(list((scratch / "home" / "registry").glob("*.json"))),
            "bases": sorted(p.name for p in (scratch / "home" / "bases").iterdir()),
        }
        if options.json:
            print(json.dumps(figures, indent=2))
        else:
            for name, value in figures.items():
                print(f"{name:18} {value}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def race(scratch: Path, env: dict[str, str], concurrency: int) -> dict[str, object]:
    import subprocess

    assert run_layerenv(["base"], env, scratch).returncode == 0
    shared, pinned = scratch / "shared", scratch / "pinned"
    shared.mkdir()
    pinned.mkdir()
    (shared / "requirements.txt").write_text("plain-lib==1.0\n")
    (pinned / "layerenv.toml").write_text('[torch]\nvariant = "cu128"\n')
    commands = ([["project", str(shared)]] * concurrency + [["project", str(pinned)]]
                + [["gc", "--json"]] * concurrency)
    started = time.monotonic()
    with ThreadPoolExecutor(len(commands)) as pool:
        results = list(pool.map(lambda args: run_layerenv(args, env, scratch, timeout=300), commands))
    wall = time.monotonic() - started

    def torch_of(venv: Path) -> str:
        ran = subprocess.run([str(venv / "bin" / "python"), "-c", "import torch; print(torch.__version__)"],
                             capture_output=True, text=True, check=False)
        return ran.stdout.strip() or ran.stderr.strip().splitlines()[-1]

    final_gc = json.loads(run_layerenv(["gc", "--json"], env, scratch).stdout)
    torch_before = {"shared_torch": torch_of(shared / ".venv"), "pinned_torch": torch_of(pinned / ".venv")}
    # then as many `layerenv rebase` runs at once onto a cu126 base none has built: one builds, all relink
    # the same two venvs
    moved_env = {**env, "LAYERENV_VARIANT": "cu126"}
    with ThreadPoolExecutor(concurrency) as pool:
        rebases = list(pool.map(lambda _: run_layerenv(["rebase", "--json"], moved_env, scratch, timeout=300),
                                range(concurrency)))
    outcomes = [json.loads(r.stdout) for r in rebases if r.returncode == 0 and r.stdout.startswith("{")]
    return {
        "commands": len(commands),
        "failed": sum(1 for r in results if r.returncode != 0),
        "tracebacks": sum(r.stderr.count("Traceback") + r.stderr.count("internal error") for r in results),
        "waited_turn": sum(r.stderr.count("waiting for the lock on") for r in results),
        "wall_s": round(wall, 2),
        **torch_before,
        "bases_removed_by_gc": sorted({r["id"] for res in results if res.stdout.startswith("{")
                                       for r in json.loads(res.stdout)["removed"]}
                                      | {r["id"] for r in final_gc["removed"]}),
        "registry_entries": len(list((scratch / "home" / "registry").glob("*.json"))),
        "leftovers": sorted(p.name for p in [*shared.iterdir(), *pinned.iterdir()] if ".layerenv-" in p.name),
        "rebases": len(rebases),
        "rebases_failed": sum(1 for r in rebases if r.returncode != 0),
        "rebase_tracebacks": sum(r.stderr.count("Traceback") + r.stderr.count("internal error") for r in rebases),
        "rebases_saying_built": sum(1 for o in outcomes if o.get("built")),
        "rebases_saying_reused": sum(1 for o in outcomes if o.get("reused")),
        "torch_after_rebases": [torch_of(shared / ".venv"), torch_of(pinned / ".venv")],
    }


if __name__ == "__main__":
    main()
