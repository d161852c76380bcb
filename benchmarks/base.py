"""Base build time with pip and uv against plain venv+installer runs of the same wheel; reuse time.

Targets (issues 4 and 19): the uv build (plain `layerenv base`: uv is the default installer where found,
which the benchmark checks in each built base's manifest) within 1.2x of `uv venv && uv pip
install`, 200 MB fake torch; reuse under 200 ms and within 1.3x of `python -c pass` of the same
interpreter (the reused base's remembered answer: the base 2 s old, one call to remember it, then
--runs calls interleaved with the peer). Each build row is printed as a ratio against its peer,
run in the same process; layerenv runs with bytecode written (as installed), after one untimed build.
The uv build and its peers run ``--rounds`` times, interleaved (each in a fresh store / venv), so that a
busy machine's drift hits them all; every round is printed with its wall and CPU time (user + system of the
process and its children), the rows and ratios are the medians. Two uv peers: ``uv venv`` as typed, which
takes the first Python on PATH (here a pyenv shim, a bash script that adds ~130 ms to each run), and
``uv venv --python`` naming the interpreter layerenv builds for, the like-for-like floor. (Earlier code also
made a virtualenv-made venv shape for project venvs beside a uv build, and a fourth row left it out; a base uv
built is now its own template, so no build runs virtualenv.)
The fake index offers the release layerenv decides on for the variant (``layerenv detect``'s torch) with its
torchvision and, where the table gives the release one, its torchaudio, as the variant's real index does (before
2026-12-03's last session it held no torchaudio: layerenv's build then left it out, and the peers installed two
wheels, not three); ``--torch 2.9.1`` gives an index whose torch is older than the newest in range (so the
companions are resolved a second time, after torch).
Reuse is timed through the console script each installer writes: pip before 25.2 (this machine's 23.2) imports
``re`` in it, pip 25.2 and later and uv do not.
Run: python benchmarks/base.py [--payload-mb 200] [--runs 15] [--rounds 5] [--torch VERSION]; run it three
times and report every run.
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

from _common import clean_env, console_script, interleaved_medians, layerenv, timed, uv

from tests.support.index import file_url, write_simple_index
from tests.support.wheels import build_fake_companion, build_fake_torch

NEW_PIP_REUSE = "reuse (pip>=25.2's script) / python -c pass"
UV_REUSE = "reuse (uv's script) / python -c pass"
UV_ROWS = ("layerenv base (uv)", "uv venv && uv pip install", "uv venv --python && uv pip install")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--payload-mb", type=int, default=200, help="size of the fake torch's library")
    parser.add_argument("--runs", type=int, default=15, help="runs of the reuse measurement")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the uv build and its peer")
    parser.add_argument("--torch", help="the fake torch's release (default: the one layerenv decides on)")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="layerenv-bench-base-"))
    try:
        cache = {"UV_CACHE_DIR": str(scratch / "uv-cache")}
        version = options.torch or decided_torch(clean_env(scratch / "h-detect", {"LAYERENV_VARIANT": "cu128"}))
        template, requirements = variant_index(scratch / "index", version, options.payload_mb)
        index = template.replace("{variant}", "cu128")
        settings = {"LAYERENV_INDEX_URL": template, "LAYERENV_VARIANT": "cu128", **cache}

        for name in ("PYTHONDONTWRITEBYTECODE",):
            os.environ.pop(name, None)
        timed(layerenv("base"), clean_env(scratch / "h-warm", settings))  # bytecode written; uv's cache warm
        interpreter = built_for(scratch / "h-warm")
        # warm uv's cache once so both uv runs start from the same state
        timed([uv(), "venv", "-q", str(scratch / "warm")], clean_env(scratch, cache))
        timed(
            [uv(), "pip", "install", "-q", "--python", str(scratch / "warm"), "--index-url", index, *requirements],
            clean_env(scratch, cache),
        )

        rounds: list[dict[str, tuple[float, float]]] = []
        for number in range(options.rounds):
            rounds.append({
                "layerenv base (uv)": timed_cpu(layerenv("base"), clean_env(scratch / f"h-uv{number}", settings)),
                "uv venv && uv pip install": timed_cpu(
                    [
                        "sh",
                        "-c",
                        f"'{uv()}' venv -q '{scratch}/p-uv{number}' && '{uv()}' pip install -q "
                        f"--python '{scratch}/p-uv{number}' --index-url '{index}' " + " ".join(requirements),
                    ],
                    clean_env(scratch, cache),
                ),
                "uv venv --python && uv pip install": timed_cpu(
                    [
                        "sh",
                        "-c",
                        f"'{uv()}' venv -q --python '{interpreter}' '{scratch}/q-uv{number}' && '{uv()}' pip "
                        f"install -q --python '{scratch}/q-uv{number}' --index-url '{index}' " + " ".join(requirements),
                    ],
                    clean_env(scratch, cache),
                ),
            })
        uv_rows = UV_ROWS
        for number in range(options.rounds):
            if installed_by(scratch / f"h-uv{number}") != {"uv"}:
                raise SystemExit(f"`layerenv base` in h-uv{number} did not install with uv: the uv row would time pip")
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
            "layerenv base (reuse, pip>=25.2's script)": console_script("base", writer="pip>=25.2"),
            "layerenv base (reuse, uv's script)": console_script("base", writer="uv"),
            "python -c pass": [sys.executable, "-c", "pass"],
        }, options.runs, reuse_env)
        results.update(reuse)
        cpu = {row: statistics.median(run[row][1] for run in rounds) for row in uv_rows}
        each = [run["layerenv base (uv)"][0] / run["uv venv && uv pip install"][0] for run in rounds]
        named = [run["layerenv base (uv)"][0] / run["uv venv --python && uv pip install"][0] for run in rounds]
        ratios = {
            "uv build / uv venv+install": statistics.median(each),
            "uv build / uv venv --python+install": statistics.median(named),
            "pip build / venv+pip install": results["layerenv base (pip)"] / results["python -m venv && pip install"],
            "reuse / python -c pass": results["layerenv base (reuse)"] / results["python -c pass"],
            NEW_PIP_REUSE: results["layerenv base (reuse, pip>=25.2's script)"] / results["python -c pass"],
            UV_REUSE: results["layerenv base (reuse, uv's script)"] / results["python -c pass"],
        }
        if options.json:
            print(json.dumps({"seconds": results, "ratios": ratios, "payload_mb": options.payload_mb, "torch": version,
                              "cpu_seconds": cpu, "rounds": [{row: list(run[row]) for row in uv_rows}
                                                             for run in rounds]}, indent=2))
            return
        print(f"fake torch {version} with a {options.payload_mb} MB library, same wheel for every run")
        for number, run in enumerate(rounds, 1):
            print(f"  round {number}: " + "; ".join(
                f"{row} {wall * 1000:.0f} ms (CPU {used * 1000:.0f} ms)" for row, (wall, used) in run.items()
            ) + f"; {each[number - 1]:.2f}x, {named[number - 1]:.2f}x")
        for name, seconds in results.items():
            print(f"  {name:<40} {seconds * 1000:9.0f} ms")
        for name, used in cpu.items():
            print(f"  {name + ' CPU':<40} {used * 1000:9.0f} ms")
        for name, ratio in ratios.items():
            print(f"  {name:<40} {ratio:9.2f}x")
        named_met = ratios["uv build / uv venv --python+install"] <= 1.2
        print(
            f"  target uv build <= 1.2x: {'met' if ratios['uv build / uv venv+install'] <= 1.2 else 'NOT met'} "
            f"(against uv venv --python: {'met' if named_met else 'NOT met'}); "
            f"reuse < 200 ms: {'met' if results['layerenv base (reuse)'] < 0.2 else 'NOT met'}; "
            f"reuse <= 1.3x python -c pass: {'met' if ratios['reuse / python -c pass'] <= 1.3 else 'NOT met'} with "
            f"pip<25.2's console script (imports re), {'met' if ratios[NEW_PIP_REUSE] <= 1.3 else 'NOT met'} with "
            f"pip>=25.2's, {'met' if ratios[UV_REUSE] <= 1.3 else 'NOT met'} with uv's"
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def decided_torch(env: Mapping[str, str]) -> str:
    """The torch release layerenv decides on for the variant (what the variant's real index offers)."""
    found = subprocess.run(layerenv("detect", "--json"), env=dict(env), capture_output=True, text=True, check=True)
    return str(json.loads(found.stdout)["torch"])


def variant_index(root: Path, version: str, payload_mb: int) -> tuple[str, list[str]]:
    """``root/cu128/simple`` with torch ``version`` (``payload_mb`` of library bytes) and its companions, as the
    variant's real index offers them: torchvision, and torchaudio where the table says the release has one;
    the index URL template and the pins the raw uv peers install."""
    from layerenv.choice.decide import TableFacts
    from layerenv.choice.table import load_matrix
    from layerenv.choice.variant import Variant

    _, minor, patch = version.split(".")[:3]
    torch, vision = f"{version}+cu128", f"0.{int(minor) + 15}.{patch}+cu128"  # torchvision 0.(minor+15) pairs
    wheels = root / "wheels"
    built = [build_fake_torch(wheels, torch, cuda="12.8", payload_bytes=payload_mb * 1024 * 1024),
             build_fake_companion(wheels, "torchvision", vision, requires=(f"torch=={torch}",))]
    pins = [f"torch=={torch}", f"torchvision=={vision}"]
    if f"2.{minor}" in TableFacts.of(load_matrix(), "stable", Variant("cu128")).torchaudio_series:
        built.append(build_fake_companion(wheels, "torchaudio", torch, requires=(f"torch=={torch}",)))
        pins.append(f"torchaudio=={torch}")
    write_simple_index(root / "cu128", built)
    template = file_url(root / "cu128" / "simple").replace("/cu128/", "/{variant}/")
    return template, pins


def built_for(home: Path) -> str:
    """The interpreter the base in ``home`` was built for (its venv's ``bin/python`` resolved)."""
    return os.path.realpath(next((home / "bases").glob("*/bin/python")))


def installed_by(home: Path) -> set[str]:
    """The installers that filled the base built in ``home`` (its manifest's package records)."""
    manifest = json.loads(next((home / "bases").glob("*/layerenv-manifest.json")).read_text(encoding="utf-8"))
    return {str(record["installer"]) for record in manifest["packages"].values()}


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
