"""The load scenario of issue 8, once: 16 `layerenv base` + 16 `layerenv project` (16 repos) at once on one store.

Prints the wall time, how many times torch was downloaded and published (builds, want 1), how many
commands failed (want 0) and how many registry entries there are (want 16).
Run: python benchmarks/reliability.py [--json]
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


if __name__ == "__main__":
    main()
