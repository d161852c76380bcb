"""`layerenv run python -c pass` against `.venv/bin/python -c pass`, and `uv run --no-sync` as the peer.

Issue 19 target: what `layerenv run` adds to a command is <= 20 ms (uv run --no-sync adds about 20 ms).
Builds a fake cu128 base and one project layered on it (uv, local index), then times each command as a
fresh process, runs interleaved, medians. `layerenv` runs as its console script does, not `-m`: pip's
(pipx, the install script; it imports `re`) and uv's (`uv tool install`).
Run: python benchmarks/run.py [--runs 30] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from _common import clean_env, console_script, fake_variant_index, interleaved_medians, layerenv, timed, uv

TARGET_OVERHEAD_MS = 20.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="layerenv-bench-run-"))
    try:
        template = fake_variant_index(scratch / "index", payload_mb=1)
        env = clean_env(
            scratch / "home",
            {"LAYERENV_INDEX_URL": template, "LAYERENV_VARIANT": "cu128", "LAYERENV_INSTALLER": "uv",
             "UV_CACHE_DIR": str(scratch / "uv-cache")},
        )
        project = scratch / "project"
        project.mkdir()
        timed(layerenv("project", str(project)), env)
        python = project / ".venv" / "bin" / "python"
        medians = interleaved_medians(
            {
                "python": [str(python), "-c", "pass"],
                "layerenv run": console_script("run", "python", "-c", "pass"),
                "layerenv run (pip>=25.2's script)": console_script("run", "python", "-c", "pass", writer="pip>=25.2"),
                "layerenv run (uv's script)": console_script("run", "python", "-c", "pass", writer="uv"),
                "uv run --no-sync": [uv(), "run", "--no-sync", "--no-project", "python", "-c", "pass"],
            },
            options.runs,
            env,
            cwd=project,
        )
        ms = {name: value * 1000 for name, value in medians.items()}
        overhead = ms["layerenv run"] - ms["python"]
        new_pip_overhead = ms["layerenv run (pip>=25.2's script)"] - ms["python"]
        uv_script_overhead = ms["layerenv run (uv's script)"] - ms["python"]
        uv_overhead = ms["uv run --no-sync"] - ms["python"]
        result = {
            "runs": options.runs,
            "median_ms": {name: round(value, 1) for name, value in ms.items()},
            "layerenv_run_overhead_ms": round(overhead, 1),
            "layerenv_run_pip_25_2_script_overhead_ms": round(new_pip_overhead, 1),
            "layerenv_run_uv_script_overhead_ms": round(uv_script_overhead, 1),
            "uv_run_overhead_ms": round(uv_overhead, 1),
            "ratio_layerenv_run_over_python": round(ms["layerenv run"] / ms["python"], 2),
            "target_overhead_ms": TARGET_OVERHEAD_MS,
            "met": overhead <= TARGET_OVERHEAD_MS,
            "met_with_pip_25_2_script": new_pip_overhead <= TARGET_OVERHEAD_MS,
        }
        if options.json:
            print(json.dumps(result, indent=2))
            return
        for name, value in ms.items():
            print(f"{name + ': python -c pass':<50} {value:7.1f} ms (median of {options.runs})")
        print(
            f"layerenv run adds {overhead:.1f} ms ({result['ratio_layerenv_run_over_python']:.2f}x python -c pass) "
            f"with pip<25.2's console script (imports re); {new_pip_overhead:.1f} ms with pip>=25.2's; "
            f"{uv_script_overhead:.1f} ms with uv's;\n"
            f"uv run --no-sync adds {uv_overhead:.1f} ms; target <= {TARGET_OVERHEAD_MS:.0f} ms: "
            f"{'met' if result['met'] else 'NOT met'} with pip<25.2's script, "
            f"{'met' if result['met_with_pip_25_2_script'] else 'NOT met'} with pip>=25.2's"
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
