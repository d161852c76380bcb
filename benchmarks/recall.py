"""A remembered ``layerenv base`` answer that rests on thousands of paths, against ``python -c pass``.

A base adopted from a venv of ~200 distributions (the H200's ``/opt/torch/.venv``) is trusted by
reading ~2,600 folders and files, so its remembered answer rests on the stat of each. This builds a
base from a small fake torch (local index, uv), adds ``--witnesses`` empty folders to its ``torch``
package (the trust check reads each direct subfolder, as it reads an adopted venv's), lets it settle,
remembers the answer once, then times ``layerenv base`` (uv's console script) and ``python -c pass``
of the same interpreter, interleaved, ``--runs`` times each: wall and CPU (user + system) medians and
quartiles, the ratio (issue 19: at most 1.3x), and how many paths the answer rests on.

    python benchmarks/recall.py [--witnesses 2600] [--runs 41]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from _common import clean_env, console_script, fake_variant_index, layerenv, timed


def timed_cpu(argv: Sequence[str], env: Mapping[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of ``argv``, which must succeed."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stderr is not None
    with process.stderr:
        error = process.stderr.read()  # to its end, before the wait: a full pipe would hold the child
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{argv[-1]}: exit {process.returncode}: {error.decode(errors='replace')[-500:]}")
    return wall, usage.ru_utime + usage.ru_stime


def quartiles(values: list[float]) -> str:
    low, _, high = statistics.quantiles(values, n=4)
    return f"{low * 1000:.1f}-{high * 1000:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--witnesses", type=int, default=2600, help="empty folders added to the base's torch")
    parser.add_argument("--runs", type=int, default=41, help="interleaved runs of each command")
    options = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="layerenv-bench-recall-"))
    try:
        template = fake_variant_index(scratch / "index", 1)
        env = clean_env(scratch / "home", {"LAYERENV_INDEX_URL": template, "LAYERENV_VARIANT": "cu128",
                                           "UV_CACHE_DIR": str(scratch / "uv-cache")})
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        timed(layerenv("base", "--installer", "uv"), env)
        [torch] = (scratch / "home" / "bases").glob("*/lib/python*/site-packages/torch")
        for number in range(options.witnesses):
            (torch / f"_witness_{number:05d}").mkdir()
        time.sleep(2.1)  # remembered answers rest on files older than 2 s
        commands = {"layerenv base (reused, uv's script)": console_script("base", writer="uv"),
                    "python -c pass": [sys.executable, "-c", "pass"]}
        for argv in commands.values():  # the first works the answer out and keeps it
            timed_cpu(argv, env)
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(options.runs):
            for name, argv in commands.items():
                samples[name].append(timed_cpu(argv, env))
        [answer] = (scratch / "home" / "cache" / "answers").glob("base-*")
        lines = answer.read_bytes().split(b"\n", 2)[1]
        print(f"the answer file: {lines.decode()} lines ({answer.stat().st_size} bytes); "
              f"{options.witnesses} folders added to torch")
        medians = {}
        for name, runs in samples.items():
            walls, cpus = [wall for wall, _ in runs], [cpu for _, cpu in runs]
            medians[name] = statistics.median(walls), statistics.median(cpus)
            print(f"  {name:<36} wall {medians[name][0] * 1000:6.1f} ms (q1-q3 {quartiles(walls)}), "
                  f"CPU {medians[name][1] * 1000:6.1f} ms (median of {options.runs}, interleaved)")
        (wall, cpu), (peer_wall, peer_cpu) = medians.values()
        print(f"  reused base / python -c pass: wall {wall / peer_wall:.2f}x, CPU {cpu / peer_cpu:.2f}x "
              f"(+{(wall - peer_wall) * 1000:.1f} ms; target <= 1.3x)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
