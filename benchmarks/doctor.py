"""`layerenv doctor` and `layerenv status` with 100 and 1,000 registered projects (issue 19: <= 1 s at 1,000).

Builds one fake cu128 base (torch, torchvision and --companions more distributions: a real CUDA base
gives a project about 25 stubs) and one project layered on it with uv, then copies that project's venv
--projects times (without its pip, as a uv-seeded venv has none), links and registers each. Registers
100 first and times; then the rest and times again. Each command is a fresh process, runs interleaved,
medians; `status` is the peer. `doctor (first look)` deletes doctor's memory (cache/doctor.json)
before each run: every project is read in full, as on the first look after an upgrade.
Run: python benchmarks/doctor.py [--projects 1000] [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from _common import clean_env, layerenv, timed

from layerenv.project.link import link
from layerenv.store.home import Store
from layerenv.venv.relocate import relocate_venv
from tests.support.index import file_url, write_simple_index
from tests.support.wheels import build_fake_companion, build_fake_torch

TARGET_S = 1.0
SIZES = (100, 1000)


def variant_index(root: Path, companions: int) -> str:
    wheels = root / "wheels"
    requires = tuple(f"nvidia-fake{index}-cu12==12.8.{index}" for index in range(companions))
    family = [
        build_fake_torch(wheels, "2.9.1+cu128", cuda="12.8", requires=requires),
        build_fake_companion(wheels, "torchvision", "0.24.1+cu128", requires=("torch==2.9.1+cu128",)),
        *(build_fake_companion(wheels, f"nvidia-fake{index}-cu12", f"12.8.{index}") for index in range(companions)),
    ]
    write_simple_index(root / "cu128", family)
    return file_url(root / "cu128" / "simple").replace("/cu128/", "/{variant}/")


def look(commands: dict[str, list[str]], env: dict[str, str], memory: Path, runs: int) -> dict[str, float]:
    """Median seconds of each command, interleaved; "first look" ones start with doctor's memory deleted."""
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for attempt in range(runs + 1):
        for name, argv in commands.items():
            if "first look" in name:
                memory.unlink(missing_ok=True)
            elapsed = timed(argv, env)
            if attempt:  # the first round warms the page cache and leaves doctor's memory
                samples[name].append(elapsed)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--projects", type=int, default=1000)
    parser.add_argument("--companions", type=int, default=23)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true", help="leave the scene (its path on stderr) for profiling")
    options = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="layerenv-bench-doctor-"))
    try:
        template = variant_index(scratch / "index", options.companions)
        env = clean_env(scratch / "home", {"LAYERENV_INDEX_URL": template, "LAYERENV_VARIANT": "cu128",
                                           "LAYERENV_INSTALLER": "uv", "UV_CACHE_DIR": str(scratch / "uv-cache")})
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: byte-compiled
        first = scratch / "projects" / "p0000"
        first.mkdir(parents=True)
        timed(layerenv("project", str(first)), env)
        store = Store(scratch / "home")
        base_id = json.loads((first / ".venv" / "layerenv.json").read_text())["base_id"]
        venvs = [first / ".venv"]
        for index in range(1, options.projects):
            target = scratch / "projects" / f"p{index:04d}"
            target.mkdir()
            shutil.copytree(first / ".venv", target / ".venv", symlinks=True,
                            ignore=shutil.ignore_patterns("pip", "pip-*", "pip3*"))
            relocate_venv(target / ".venv", first / ".venv", target / ".venv")
            link(target / ".venv", base_id=base_id, base_venv=store.base_dir(base_id))
            venvs.append(target / ".venv")
        stubs = len(json.loads((first / ".venv" / "layerenv.json").read_text())["stubs"])
        commands = {
            "doctor (first look)": layerenv("doctor"),
            "doctor": layerenv("doctor"),
            "status": layerenv("status"),
        }
        rows: dict[int, dict[str, float]] = {}
        registered = 1
        for size in [size for size in SIZES if size < options.projects] + [options.projects]:
            for venv in venvs[registered:size]:
                store.register(venv, base_id, venv.parent)
            registered = size
            rows[size] = look(commands, env, scratch / "home" / "cache" / "doctor.json", options.runs)
        result = {
            "runs": options.runs,
            "stubs_a_project": stubs,
            "median_s": {str(size): {name: round(value, 3) for name, value in row.items()}
                         for size, row in rows.items()},
            "doctor_over_status": {str(size): round(row["doctor"] / row["status"], 2) for size, row in rows.items()},
            "target_s": TARGET_S,
            "met": all(row["doctor"] <= TARGET_S and row["status"] <= TARGET_S for row in rows.values()),
        }
        if options.json:
            print(json.dumps(result, indent=2))
            return
        print(f"{stubs} stubs a project; medians of {options.runs} interleaved runs after one warm-up")
        print(f"{'projects':>8}  {'doctor (first look)':>20} {'doctor':>8} {'status':>8}  doctor/status")
        for size, row in rows.items():
            print(f"{size:>8}  {row['doctor (first look)']:>18.2f} s {row['doctor']:>6.2f} s {row['status']:>6.2f} s"
                  f"  {row['doctor'] / row['status']:.2f}")
        print(f"target: doctor and status <= {TARGET_S:.0f} s at {options.projects} projects: "
              f"{'met' if result['met'] else 'NOT met'}")
    finally:
        if options.keep:
            (scratch / "env.json").write_text(json.dumps(env), encoding="utf-8")
            print(f"scene kept: {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
