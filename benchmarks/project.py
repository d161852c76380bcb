"""`layerenv project` against plain installs of torch; disk of 10 project venvs; import overhead.

Targets (issue 5): `layerenv project` on an empty repo <= 1.0x the warm-cache `uv venv && uv pip
install torch`; 10 project venvs add < 5% of one torch install on disk; `import torch` in a project
venv costs < 3% more than in the base.
The first three figures use a fake torch wheel with a large library (--payload-mb); the import
figure uses the machine's real CPU torch wheel when --real-wheels points at it (default /opt/wheels),
else the fake one.
Run: python benchmarks/project.py [--payload-mb 300] [--imports 15]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, clean_env, du, fake_variant_index, layerenv, timed, uv


def import_times(first: Path, second: Path, runs: int, env: dict[str, str]) -> tuple[float, float]:
    """Median wall time of ``python -c "import torch"`` in each, runs interleaved so drift hits both."""
    samples: dict[Path, list[float]] = {first: [], second: []}
    for _ in range(runs):
        for python in (first, second):
            started = time.perf_counter()
            subprocess.run([str(python), "-c", "import torch"], env=env, check=True, capture_output=True)
            samples[python].append(time.perf_counter() - started)
    return statistics.median(samples[first]), statistics.median(samples[second])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--payload-mb", type=int, default=300)
    parser.add_argument("--imports", type=int, default=15, help="runs of each import measurement")
    parser.add_argument("--real-wheels", default="/opt/wheels", help="directory holding a real CPU torch wheel")
    parser.add_argument("--deps-index", default="file:///opt/pypi/simple", help="index for real torch's dependencies")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="layerenv-bench-project-"))
    try:
        template = fake_variant_index(scratch / "index", options.payload_mb)
        index = template.replace("{variant}", "cu128")
        cache = {"UV_CACHE_DIR": str(scratch / "uv-cache")}
        env = clean_env(
            scratch / "home",
            {"LAYERENV_INDEX_URL": template, "LAYERENV_VARIANT": "cu128", "LAYERENV_INSTALLER": "uv", **cache},
        )
        timed(layerenv("base"), env)
        plain = clean_env(scratch, cache)
        timed([uv(), "venv", "-q", str(scratch / "warm")], plain)
        timed(
            [
                uv(),
                "pip",
                "install",
                "-q",
                "--python",
                str(scratch / "warm"),
                "--index-url",
                index,
                "torch==2.9.1+cu128",
            ],
            plain,
        )
        repos = []
        for index_number in range(10):
            repo = scratch / f"repo{index_number}"
            repo.mkdir()
            repos.append(repo)
        project_s = timed(layerenv("project", str(repos[0])), env)
        uv_s = timed(
            [
                "sh",
                "-c",
                f"'{uv()}' venv -q '{scratch}/uvp' && '{uv()}' pip install -q --python "
                f"'{scratch}/uvp' --index-url '{index}' torch==2.9.1+cu128",
            ],
            plain,
        )
        pip_s = timed(
            [
                "sh",
                "-c",
                f"'{sys.executable}' -m venv '{scratch}/pipp' && '{scratch}/pipp/bin/pip' "
                f"install -q --index-url '{index}' torch==2.9.1+cu128",
            ],
            plain,
        )
        for repo in repos[1:]:
            timed(layerenv("project", str(repo)), env)
        ten = sum(du(repo / ".venv") for repo in repos)
        empty = scratch / "empty-venv"
        timed([sys.executable, "-m", "virtualenv", "-q", "--no-setuptools", str(empty)], plain)
        added = ten - 10 * du(empty)
        torch_install = du(scratch / "pipp") - du(empty)

        real = sorted(Path(options.real_wheels).glob("torch-*+cpu-cp3*.whl")) if options.real_wheels else []
        import_env = dict(os.environ)
        if real:
            what = f"real {real[0].name}"
            real_env = {k: v for k, v in os.environ.items() if not k.startswith("LAYERENV_")}
            real_env.update(
                {
                    "LAYERENV_HOME": str(scratch / "real-home"),
                    "LAYERENV_VARIANT": "cpu",
                    "LAYERENV_INDEX_URL": "file:///nonexistent/{variant}",
                    "LAYERENV_FIND_LINKS": options.real_wheels,
                    "LAYERENV_USER_CONFIG": str(scratch / "none.toml"),
                    "PYTHONPATH": str(REPO),
                }
            )
            timed(layerenv("base"), real_env)
            (scratch / "real-repo").mkdir()
            (scratch / "real-repo2").mkdir()
            timed(layerenv("project", str(scratch / "real-repo")), real_env)
            real_project_s = timed(layerenv("project", str(scratch / "real-repo2")), real_env)
            version = real[0].name.split("-")[1]
            deps = ["--find-links", options.real_wheels, "--index-url", options.deps_index, f"torch=={version}"]
            timed([uv(), "venv", "-q", str(scratch / "real-warm")], plain)
            timed([uv(), "pip", "install", "-q", "--python", str(scratch / "real-warm"), *deps], plain)
            real_uv_s = timed(
                [
                    "sh",
                    "-c",
                    f"'{uv()}' venv -q '{scratch}/real-uv' && '{uv()}' pip install -q --python "
                    f"'{scratch}/real-uv' " + " ".join(deps),
                ],
                plain,
            )
            project_python = scratch / "real-repo" / ".venv" / "bin" / "python"
            base_python = next((scratch / "real-home" / "bases").glob("*/bin/python"))
        else:
            what = "fake torch"
            real_project_s = real_uv_s = float("nan")
            project_python = repos[0] / ".venv" / "bin" / "python"
            base_python = next((scratch / "home" / "bases").glob("*/bin/python"))
        import_times(base_python, project_python, 1, import_env)
        base_import, project_import = import_times(base_python, project_python, options.imports, import_env)
        result = {
            "layerenv_project_s": project_s,
            "uv_venv_install_warm_s": uv_s,
            "venv_pip_install_s": pip_s,
            "project_vs_uv": project_s / uv_s,
            "ten_projects_added_bytes": added,
            "one_torch_install_bytes": torch_install,
            "ten_projects_share_of_one_install": added / torch_install,
            "import_torch_base_s": base_import,
            "import_torch_project_s": project_import,
            "import_overhead": project_import / base_import - 1,
            "import_measured_with": what,
            "real_layerenv_project_s": real_project_s,
            "real_uv_venv_install_warm_s": real_uv_s,
            "real_project_vs_uv": real_project_s / real_uv_s,
        }
        if options.json:
            print(json.dumps(result, indent=2))
            return
        print(f"fake torch wheel with a {options.payload_mb} MB library")
        print(f"  layerenv project (empty repo)     {project_s * 1000:8.0f} ms")
        print(
            f"  uv venv && uv pip install (warm)  {uv_s * 1000:8.0f} ms   ratio {result['project_vs_uv']:.2f}x"
            f" (target <= 1.0x: {'met' if result['project_vs_uv'] <= 1.0 else 'NOT met'})"
        )
        print(f"  python -m venv && pip install     {pip_s * 1000:8.0f} ms")
        if real:
            ratio = result["real_project_vs_uv"]
            print(
                f"same with the real {real[0].name}: layerenv project {real_project_s * 1000:.0f} ms, "
                f"uv venv && uv pip install (warm) {real_uv_s * 1000:.0f} ms, ratio {ratio:.2f}x "
                f"(target <= 1.0x: {'met' if ratio <= 1.0 else 'NOT met'})"
            )
        print(
            f"  10 project venvs add {added / 1e6:.1f} MB = {100 * added / torch_install:.2f}% of one torch install"
            f" ({torch_install / 1e6:.0f} MB) (target < 5%: "
            f"{'met' if added / torch_install < 0.05 else 'NOT met'})"
        )
        print(
            f"  import torch ({what}): base {base_import * 1000:.0f} ms, project {project_import * 1000:.0f} ms,"
            f" overhead {100 * result['import_overhead']:+.1f}% (target < 3%: "
            f"{'met' if result['import_overhead'] < 0.03 else 'NOT met'})"
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
