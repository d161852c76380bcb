"""A remembered ``layerenv base`` answer on a base adopted from a venv as large as the H200's, vs ``python -c pass``.

The H200's ``/opt/torch/.venv`` holds torch and ~193 other distributions. This makes such a venv with uv
(the fake torch of a local index and ``--extra-dists`` small distributions, each package holding ``--entries``
subfolders and modules at its top, as real packages hold ~14), adopts it as the base, lets it settle,
remembers the answer once, then times ``layerenv base`` (uv's console script) and ``python -c pass`` of
the same interpreter, interleaved, ``--runs`` times each: wall and CPU (user + system) medians and
quartiles, the ratio (issue 19: at most 1.3x), and how many paths the answer rests on. The trust check
reads every package's folder, and the torch family's subfolders and top-level modules; before
2026-12-03 (21:20 UTC) it read every package's, ~2,800-3,000 paths for such a venv.
``--witnesses N`` adds N empty folders to torch (a family package: each is read), as this benchmark did before.

    python benchmarks/recall.py [--extra-dists 193] [--entries 13] [--witnesses 0] [--runs 41]
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

from _common import clean_env, console_script, fake_variant_index, timed, uv

from tests.support.wheels import build_wheel


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
    parser.add_argument("--extra-dists", type=int, default=193, help="small distributions beside torch")
    parser.add_argument("--entries", type=int, default=13, help="subfolders and modules atop each one's package")
    parser.add_argument("--witnesses", type=int, default=0, help="empty folders added to the venv's torch")
    parser.add_argument("--runs", type=int, default=41, help="interleaved runs of each command")
    options = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="layerenv-bench-recall-"))
    try:
        template = fake_variant_index(scratch / "index", 1)
        env = clean_env(scratch / "home", {"LAYERENV_VARIANT": "cu128", "UV_CACHE_DIR": str(scratch / "uv-cache")})
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        venv = scratch / "torch-venv"
        timed([uv(), "venv", "-q", "--python", sys.executable, str(venv)], env)
        wheels = scratch / "extra-wheels"
        extras = [extra_wheel(wheels, number, options.entries) for number in range(options.extra_dists)]
        timed([uv(), "pip", "install", "-q", "--python", str(venv / "bin" / "python"), "--index-url",
               template.replace("{variant}", "cu128"), "--find-links", str(wheels), "torch", *extras], env)
        timed(console_script("base", "--adopt", str(venv)), env)
        [torch] = venv.glob("lib/python*/site-packages/torch")
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
        print(f"the answer file: {lines.decode()} lines ({answer.stat().st_size} bytes); adopted venv of torch and "
              f"{options.extra_dists} others ({options.entries} entries atop each), {options.witnesses} folders "
              "added to torch")
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


def extra_wheel(folder: Path, number: int, entries: int) -> str:
    """A small distribution whose package holds ``entries`` subfolders and modules at its top; its pin."""
    name, module = f"bench-extra-{number:03d}", f"bench_extra_{number:03d}"
    files: dict[str, str] = {f"{module}/__init__.py": f"NAME = {name!r}\n"}
    for entry in range(entries - 1):
        files[f"{module}/part{entry:02d}/__init__.py" if entry % 2 else f"{module}/part{entry:02d}.py"] = "X = 1\n"
    build_wheel(folder, name, "1.0.0", files)
    return f"{name}==1.0.0"


if __name__ == "__main__":
    main()
