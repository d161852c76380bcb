"""Base build time with pip and uv against plain venv+installer runs of the same wheel; reuse time.

Targets (issues 4 and 19): the uv build (uv is the default installer) within 1.2x of `uv venv && uv pip
install`, 200 MB fake torch; reuse under 200 ms. Each build row is printed as a ratio against its peer,
run in the same process; layerenv runs with bytecode written (as installed), after one untimed build.
Run: python benchmarks/base.py [--payload-mb 200] [--runs 5]; run it three times and report every run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from _common import clean_env, fake_variant_index, layerenv, median_of, timed, uv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--payload-mb", type=int, default=200, help="size of the fake torch's library")
    parser.add_argument("--runs", type=int, default=5, help="runs of the reuse measurement")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="layerenv-bench-base-"))
    try:
        template = fake_variant_index(scratch / "index", options.payload_mb)
        index = template.replace("{variant}", "cu128")
        requirements = ["torch==2.9.1+cu128", "torchvision==0.24.1+cu128"]
        cache = {"UV_CACHE_DIR": str(scratch / "uv-cache")}
        settings = {"LAYERENV_INDEX_URL": template, "LAYERENV_VARIANT": "cu128", **cache}

        for name in ("PYTHONDONTWRITEBYTECODE",):
            os.environ.pop(name, None)
        timed(layerenv("base"), clean_env(scratch / "h-warm", settings))  # bytecode written; uv's cache warm
        # warm uv's cache once so both uv runs start from the same state
        timed([uv(), "venv", "-q", str(scratch / "warm")], clean_env(scratch, cache))
        timed(
            [uv(), "pip", "install", "-q", "--python", str(scratch / "warm"), "--index-url", index, *requirements],
            clean_env(scratch, cache),
        )

        results = {
            "layerenv base (uv)": timed(layerenv("base", "--installer", "uv"), clean_env(scratch / "h-uv", settings)),
            "uv venv && uv pip install": timed(
                [
                    "sh",
                    "-c",
                    f"'{uv()}' venv -q '{scratch}/p-uv' && '{uv()}' pip install -q "
                    f"--python '{scratch}/p-uv' --index-url '{index}' " + " ".join(requirements),
                ],
                clean_env(scratch, cache),
            ),
            "layerenv base (pip)": timed(
                layerenv("base", "--installer", "pip"), clean_env(scratch / "h-pip", settings)
            ),
            "python -m venv && pip install": timed(
                [
                    "sh",
                    "-c",
                    f"'{sys.executable}' -m venv '{scratch}/p-pip' && '{scratch}/p-pip/bin/pip' install -q "
                    f"--no-cache-dir --index-url '{index}' " + " ".join(requirements),
                ],
                clean_env(scratch),
            ),
            "layerenv base (reuse)": median_of(options.runs, layerenv("base"), clean_env(scratch / "h-pip", settings)),
        }
        ratios = {
            "uv build / uv venv+install": results["layerenv base (uv)"] / results["uv venv && uv pip install"],
            "pip build / venv+pip install": results["layerenv base (pip)"] / results["python -m venv && pip install"],
        }
        if options.json:
            print(json.dumps({"seconds": results, "ratios": ratios, "payload_mb": options.payload_mb}, indent=2))
            return
        print(f"fake torch with a {options.payload_mb} MB library, same wheel for every run")
        for name, seconds in results.items():
            print(f"  {name:<32} {seconds * 1000:9.0f} ms")
        for name, ratio in ratios.items():
            print(f"  {name:<32} {ratio:9.2f}x")
        print(
            f"  target uv build <= 1.2x: {'met' if ratios['uv build / uv venv+install'] <= 1.2 else 'NOT met'}; "
            f"reuse < 200 ms: {'met' if results['layerenv base (reuse)'] < 0.2 else 'NOT met'}"
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
