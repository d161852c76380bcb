"""Base build time with pip and uv against plain venv+installer runs of the same wheel; reuse time.

Targets (issues 4 and 19): the uv build (uv is the default installer) within 1.2x of `uv venv && uv pip
install`, 200 MB fake torch; reuse under 200 ms and within 1.3x of `python -c pass` of the same
interpreter (the reused base's remembered answer: the base 2 s old, one call to remember it, then
--runs calls interleaved with the peer). Each build row is printed as a ratio against its peer,
run in the same process; layerenv runs with bytecode written (as installed), after one untimed build.
The uv build and its peer run ``--rounds`` times, interleaved (each in a fresh store / venv), so that a
busy machine's drift hits both; every round is printed with its wall and CPU time (user + system of the
process and its children), the rows and ratios are the medians.
Run: python benchmarks/base.py [--payload-mb 200] [--runs 15] [--rounds 5]; run it three times and report
every run.
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
from collections.abc import Mapping, Sequence
from pathlib import Path

from _common import clean_env, console_script, fake_variant_index, interleaved_medians, layerenv, timed, uv

UV_REUSE = "reuse (uv's script) / python -c pass"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--payload-mb", type=int, default=200, help="size of the fake torch's library")
    parser.add_argument("--runs", type=int, default=15, help="runs of the reuse measurement")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the uv build and its peer")
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

        rounds: list[dict[str, tuple[float, float]]] = []
        for number in range(options.rounds):
            rounds.append({
                "layerenv base (uv)": timed_cpu(
                    layerenv("base", "--installer", "uv"), clean_env(scratch / f"h-uv{number}", settings)
                ),
                "uv venv && uv pip install": timed_cpu(
                    [
                        "sh",
                        "-c",
                        f"'{uv()}' venv -q '{scratch}/p-uv{number}' && '{uv()}' pip install -q "
                        f"--python '{scratch}/p-uv{number}' --index-url '{index}' " + " ".join(requirements),
                    ],
                    clean_env(scratch, cache),
                ),
            })
        uv_rows = ("layerenv base (uv)", "uv venv && uv pip install")
        results = {
            **{row: statistics.median(run[row][0] for run in rounds) for row in uv_rows},
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
        }
        # reuse, as scripts call it again and again: the answer is remembered once the base is 2 s old;
        # layerenv started as its console script is (pip's imports re; uv's does not), not through -m
        reuse_env = clean_env(scratch / "h-pip", settings)
        time.sleep(2.1)
        reuse = interleaved_medians({
            "layerenv base (reuse)": console_script("base"),
            "layerenv base (reuse, uv's script)": console_script("base", writer="uv"),
            "python -c pass": [sys.executable, "-c", "pass"],
        }, options.runs, reuse_env)
        results.update(reuse)
        cpu = {row: statistics.median(run[row][1] for run in rounds) for row in uv_rows}
        each = [run["layerenv base (uv)"][0] / run["uv venv && uv pip install"][0] for run in rounds]
        ratios = {
            "uv build / uv venv+install": statistics.median(each),
            "pip build / venv+pip install": results["layerenv base (pip)"] / results["python -m venv && pip install"],
            "reuse / python -c pass": results["layerenv base (reuse)"] / results["python -c pass"],
            UV_REUSE: results["layerenv base (reuse, uv's script)"] / results[
                "python -c pass"],
        }
        if options.json:
            print(json.dumps({"seconds": results, "ratios": ratios, "payload_mb": options.payload_mb,
                              "cpu_seconds": cpu, "rounds": [{row: list(run[row]) for row in uv_rows}
                                                             for run in rounds]}, indent=2))
            return
        print(f"fake torch with a {options.payload_mb} MB library, same wheel for every run")
        for number, run in enumerate(rounds, 1):
            print(f"  round {number}: " + "; ".join(
                f"{row} {wall * 1000:.0f} ms (CPU {used * 1000:.0f} ms)" for row, (wall, used) in run.items()
            ) + f"; {each[number - 1]:.2f}x")
        for name, seconds in results.items():
            print(f"  {name:<32} {seconds * 1000:9.0f} ms")
        for name, used in cpu.items():
            print(f"  {name + ' CPU':<32} {used * 1000:9.0f} ms")
        for name, ratio in ratios.items():
            print(f"  {name:<32} {ratio:9.2f}x")
        print(
            f"  target uv build <= 1.2x: {'met' if ratios['uv build / uv venv+install'] <= 1.2 else 'NOT met'}; "
            f"reuse < 200 ms: {'met' if results['layerenv base (reuse)'] < 0.2 else 'NOT met'}; "
            f"reuse <= 1.3x python -c pass: {'met' if ratios['reuse / python -c pass'] <= 1.3 else 'NOT met'} with "
            f"pip's console script, {'met' if ratios[UV_REUSE] <= 1.3 else 'NOT met'} "
            "with uv's"
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def timed_cpu(argv: Sequence[str], env: Mapping[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system of the process and every process it waited for)."""
    started = time.perf_counter()
    process = subprocess.Popen(list(argv), env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)  # not Popen.wait: wait4 hands back the CPU time too
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    process.stdout.close()
    if process.returncode != 0:
        raise SystemExit(f"benchmark step failed: {' '.join(argv)}\n{output.decode(errors='replace')}")
    return elapsed, usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
