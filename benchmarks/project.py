"""`layerenv project` on an empty repo against its peers, the disk of 10 project venvs, import overhead.

Rows (issue 19), each printed with its peer measured in the same run:
  1. `layerenv project` on an empty repo, real CPU torch base: <= 0.3 s; beside it `uv venv
     --system-site-packages` and `python -m venv --system-site-packages` (the floor and the stdlib);
  2. the same against a warm-cache `uv venv && uv pip install torch`: <= 0.5x;
  3. disk of 10 project venvs, everything in `.venv` counted (allocated blocks, folders too): < 1 MB each,
     beside a `uv venv` (no seed packages);
  4. `import torch` in a project venv against the base: < 3% overhead;
  5. row 1 on an adopted base that uv made (`uv venv` + `uv pip install` of the real CPU torch, then
     `layerenv base --adopt`, as on the H200's /opt/torch/.venv), timed with the others (--no-adopted: skip);
     `--extra-dists N` adds N small pure-Python distributions to that venv before it is adopted (the H200's
     /opt/torch/.venv holds torch and 193 others: `--extra-dists 184` gives 194 with the real torch's own),
     and the row is given as a ratio to `python -c pass` of the same interpreter, timed in the same rounds,
     with the environment the H200 has (no torch pin, no index settings: those the CPU base needs are left out);
     `--adopted-only` times only that row and `python -c pass` (no CPU base built, no other peers);
     `--against DIR` beside them the same command run by the layerenv of another checkout (before/after);
     `--dest-dir DIR` makes the timed projects there (e.g. on tmpfs while the base stays on disk: this
     machine's journal-less ext4 makes file creation after deletions erratic).
The real CPU torch wheel is looked up in --real-wheels (default /opt/wheels); its dependencies come from
--deps-index. layerenv is started as its console script starts it, with bytecode written (as installed).
Run: python benchmarks/project.py [--runs 5] [--imports 15]; run it three times and report every run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, clean_env, console_script, timed, uv


def allocated(path: Path) -> int:
    """Bytes allocated under ``path``, every file, link and folder counted (``du -s``)."""
    total = path.lstat().st_blocks * 512
    for root, dirs, files in os.walk(path):
        total += sum(Path(root, name).lstat().st_blocks * 512 for name in [*dirs, *files])
    return total


def import_times(first: Path, second: Path, runs: int) -> tuple[float, float]:
    """Median wall time of ``python -c "import torch"`` in each, runs interleaved so drift hits both."""
    samples: dict[Path, list[float]] = {first: [], second: []}
    for _ in range(runs):
        for python in (first, second):
            started = time.perf_counter()
            subprocess.run([str(python), "-c", "import torch"], check=True, capture_output=True)
            samples[python].append(time.perf_counter() - started)
    return statistics.median(samples[first]), statistics.median(samples[second])


def interleaved(commands: dict[str, list[str]], runs: int, env: dict[str, str],
                fresh: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall seconds, and median CPU seconds (user + system, its processes together: what a busy
    machine inflates least), of each command making a new environment at ``{dest}``; runs interleaved."""
    samples: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    for number in range(runs + 1):  # the first round warms caches and writes bytecode: not counted
        for name, argv in commands.items():
            dest = fresh / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}-{number}"  # no character a shell must quote
            dest.mkdir(parents=True)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            seconds = timed([part.replace("{dest}", str(dest)) for part in argv], env)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if number:
                samples[name].append(seconds)
                cpu[name].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return ({name: statistics.median(values) for name, values in samples.items()},
            {name: statistics.median(values) for name, values in cpu.items()})


ADOPTED = "layerenv project (adopted uv-made base)"


PASS = "python -c pass"
#: what the CPU base's build needs and the H200's adopted base does not: a torch pin, its index settings
AS_ON_H200 = ("-u", "LAYERENV_TORCH", "-u", "LAYERENV_INDEX_URL", "-u", "LAYERENV_FIND_LINKS")


def extra_wheels(folder: Path, count: int) -> list[str]:
    """``count`` small pure-Python wheels in ``folder`` (a module, a few files, a METADATA with the
    headers a real one lists before its description); their requirement strings."""
    from tests.support.wheels import build_wheel

    classifiers = [f"Classifier: Programming Language :: Python :: 3.{minor}" for minor in range(8, 14)]
    names = []
    for number in range(count):
        name, module = f"bench-extra-{number:03d}", f"bench_extra_{number:03d}"
        build_wheel(folder, name, "1.0.0", {
            f"{module}/__init__.py": f"VERSION = '1.0.0'  # {name}\n",
            f"{module}/core.py": "def answer():\n    return 42\n" * 20,
            f"{module}/py.typed": "",
        }, extra_metadata={"Author": "layerenv benchmarks", "License": "MIT", "Requires-Python": ">=3.8",
                           "Home-page": f"https://example.invalid/{name}",
                           "Classifier": [line.split(": ", 1)[1] for line in classifiers]})
        names.append(f"{name}==1.0.0")
    return names


def adopted_store(scratch: Path, interpreter: str, deps: list[str], env: dict[str, str], extra: int = 0) -> Path:
    """A store whose base is adopted from a venv uv made with the real torch in it (as the H200's), and
    ``extra`` small distributions beside it; its home."""
    venv, home = scratch / "uv-torch-venv", scratch / "adopted-home"
    timed([uv(), "venv", "-q", "--python", interpreter, str(venv)], env)
    timed([uv(), "pip", "install", "-q", "--python", str(venv / "bin" / "python"), *deps], env)
    if extra:
        wheels = scratch / "extra-wheels"
        requirements = extra_wheels(wheels, extra)
        timed([uv(), "pip", "install", "-q", "--python", str(venv / "bin" / "python"), "--no-index",
               "--find-links", str(wheels), *requirements], env)
    timed(console_script("base", "--adopt", str(venv)), {**env, "LAYERENV_HOME": str(home)})
    return home


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each command (medians)")
    parser.add_argument("--imports", type=int, default=15, help="runs of each import measurement")
    parser.add_argument("--real-wheels", default="/opt/wheels", help="directory holding a real CPU torch wheel")
    parser.add_argument("--deps-index", default="file:///opt/pypi/simple", help="index for real torch's dependencies")
    parser.add_argument("--no-adopted", action="store_true", help="leave out row 5 (an adopted uv-made base)")
    parser.add_argument("--extra-dists", type=int, default=0, metavar="N",
                        help="row 5: N small distributions added to the adopted venv (184: the H200's 194)")
    parser.add_argument("--adopted-only", action="store_true",
                        help="time row 5 and python -c pass only (no CPU base, no other peers)")
    parser.add_argument("--against", metavar="DIR", help="with --adopted-only: also time another checkout's layerenv")
    parser.add_argument("--dest-dir", metavar="DIR", help="with --adopted-only: where the timed projects are made")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    real = sorted(Path(options.real_wheels).glob(f"torch-*+cpu-{tag}-{tag}-*.whl"))
    if not real:
        raise SystemExit(f"no real CPU torch wheel for {tag} in {options.real_wheels}")
    version = real[-1].name.split("-")[1]
    scratch = Path(tempfile.mkdtemp(prefix="layerenv-bench-project-"))
    try:
        cache = {"UV_CACHE_DIR": str(scratch / "uv-cache")}
        env = clean_env(scratch / "home", {
            "LAYERENV_VARIANT": "cpu", "LAYERENV_INDEX_URL": "file:///nonexistent/{variant}",
            "LAYERENV_FIND_LINKS": options.real_wheels, "LAYERENV_TORCH": version.split("+")[0], **cache})
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        plain = clean_env(scratch, cache)
        plain.pop("PYTHONDONTWRITEBYTECODE", None)
        deps = ["--find-links", options.real_wheels, "--index-url", options.deps_index, f"torch=={version}"]
        if options.adopted_only:
            adopted_only(options, scratch, env, deps)
            return
        timed(console_script("base"), env)
        base_python = next((scratch / "home" / "bases").glob("*/bin/python"))
        interpreter = os.path.realpath(base_python)
        uv_torch = (f"'{uv()}' venv -q --python '{interpreter}' '{{dest}}/.venv' && '{uv()}' pip install -q "
                    f"--python '{{dest}}/.venv' " + " ".join(deps))
        adopted = {} if options.no_adopted else {
            ADOPTED: ["env", *AS_ON_H200 * bool(options.extra_dists),
                      f"LAYERENV_HOME={adopted_store(scratch, interpreter, deps, env, options.extra_dists)}",
                      *console_script("project", "{dest}")]}
        seconds, cpu = interleaved({
            "layerenv project": console_script("project", "{dest}"),
            **adopted,
            **({PASS: [sys.executable, "-c", "pass"]} if adopted and options.extra_dists else {}),
            "uv venv --system-site-packages": [uv(), "venv", "-q", "--python", interpreter, "--system-site-packages",
                                               "{dest}/.venv"],
            "python -m venv --system-site-packages": [interpreter, "-m", "venv", "--system-site-packages",
                                                      "{dest}/.venv"],
            "uv venv && uv pip install torch (warm)": ["sh", "-c", uv_torch],
        }, options.runs, env, scratch / "runs")

        repos = [scratch / "ten" / f"repo{number}" for number in range(10)]
        for repo in repos:
            repo.mkdir(parents=True)
            timed(console_script("project", str(repo)), env)
        ten = sum(allocated(repo / ".venv") for repo in repos)
        timed([uv(), "venv", "-q", "--python", interpreter, str(scratch / "uv-empty")], plain)
        uv_empty = allocated(scratch / "uv-empty")
        shared_pip = allocated(scratch / "home" / "pip")

        project_python = repos[0] / ".venv" / "bin" / "python"
        import_times(base_python, project_python, 1)
        base_import, project_import = import_times(base_python, project_python, options.imports)
        project_s = seconds["layerenv project"]
        result = {
            "torch": version,
            "seconds": seconds,
            "cpu_seconds": cpu,
            "project_s": project_s,
            "project_vs_uv_venv": project_s / seconds["uv venv --system-site-packages"],
            "project_vs_python_venv": project_s / seconds["python -m venv --system-site-packages"],
            "project_vs_uv_torch_install": project_s / seconds["uv venv && uv pip install torch (warm)"],
            "project_venv_bytes": ten / 10,
            "uv_venv_bytes": uv_empty,
            "shared_pip_bytes_once": shared_pip,
            "import_torch_base_s": base_import,
            "import_torch_project_s": project_import,
            "import_overhead": project_import / base_import - 1,
        }
        if adopted:
            result["adopted_project_s"] = seconds[ADOPTED]
            peer = seconds["uv venv && uv pip install torch (warm)"]
            result["adopted_project_vs_uv_torch_install"] = seconds[ADOPTED] / peer
        if options.json:
            print(json.dumps(result, indent=2))
            return
        verdict = {True: "met", False: "NOT met"}
        print(f"real torch {version} base; medians of {options.runs} runs, interleaved")
        ours = cpu["layerenv project"]
        for name, value in seconds.items():
            print(f"  {name:<40} {value * 1000:7.0f} ms (cpu {cpu[name] * 1000:6.0f} ms)   "
                  f"layerenv project / this {project_s / value:6.2f}x (cpu {ours / cpu[name]:5.2f}x)")
        print(f"  row 1: layerenv project {project_s * 1000:.0f} ms, cpu {ours * 1000:.0f} ms "
              f"(target <= 300 ms: {verdict[project_s <= 0.3]})")
        ratio = result["project_vs_uv_torch_install"]
        print(f"  row 2: vs uv venv && uv pip install torch (warm) {ratio:.2f}x "
              f"(target <= 0.5x: {verdict[ratio <= 0.5]})")
        each = result["project_venv_bytes"]
        print(f"  row 3: 10 project venvs {ten / 1e6:.2f} MB, {each / 1e6:.2f} MB each, everything counted "
              f"(uv venv {uv_empty / 1e6:.2f} MB: {each / uv_empty:.1f}x; the store's one shared pip "
              f"{shared_pip / 1e6:.1f} MB) (target < 1 MB each: {verdict[each < 1e6]})")
        overhead = result["import_overhead"]
        print(f"  row 4: import torch, base {base_import * 1000:.0f} ms, project {project_import * 1000:.0f} ms, "
              f"overhead {100 * overhead:+.1f}% (target < 3%: {verdict[overhead < 0.03]})")
        if adopted:
            mine = seconds[ADOPTED]
            print(f"  row 5: layerenv project on an adopted uv-made base {mine * 1000:.0f} ms, cpu "
                  f"{cpu[ADOPTED] * 1000:.0f} ms (target <= 300 ms: {verdict[mine <= 0.3]}); vs uv venv && uv pip "
                  f"install torch (warm) {result['adopted_project_vs_uv_torch_install']:.2f}x")
            if PASS in seconds:
                print(f"  row 5 with {options.extra_dists} extra distributions: "
                      f"{mine / seconds[PASS]:.1f}x python -c pass ({seconds[PASS] * 1000:.1f} ms)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def adopted_only(options: argparse.Namespace, scratch: Path, env: dict[str, str], deps: list[str]) -> None:
    """Row 5 alone, beside ``python -c pass`` of the interpreter layerenv runs on, interleaved."""
    interpreter = os.path.realpath(sys.executable)
    home = adopted_store(scratch, interpreter, deps, env, options.extra_dists)
    time.sleep(2.1)  # a base adopted earlier, as on the H200: older than a remembered answer's settle window
    stubs = len(list(next(scratch.glob("uv-torch-venv/lib/python*/site-packages")).glob("*.dist-info")))
    against = {} if not options.against else {
        f"{ADOPTED}, {options.against}": ["env", *AS_ON_H200, f"LAYERENV_HOME={home}", "PYTHONSAFEPATH=1",
                                          f"PYTHONPATH={Path(options.against).resolve()}",
                                          *console_script("project", "{dest}")]}
    dest = Path(tempfile.mkdtemp(dir=options.dest_dir)) if options.dest_dir else scratch / "runs"
    try:
        seconds, cpu = interleaved({
            ADOPTED: ["env", *AS_ON_H200, f"LAYERENV_HOME={home}", "PYTHONSAFEPATH=1",  # not this folder's layerenv
                      *console_script("project", "{dest}")],
            **against,
            PASS: [sys.executable, "-c", "pass"],
        }, options.runs, env, dest)
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    ratio, cpu_ratio = seconds[ADOPTED] / seconds[PASS], cpu[ADOPTED] / cpu[PASS]
    if options.json:
        print(json.dumps({"distributions": stubs, "seconds": seconds, "cpu_seconds": cpu,
                          "adopted_project_vs_python_pass": ratio}, indent=2))
        return
    print(f"adopted base of {stubs} distributions (real torch + {options.extra_dists} small); medians of "
          f"{options.runs} runs, interleaved")
    for name, value in seconds.items():
        print(f"  {name:<40} {value * 1000:7.1f} ms (cpu {cpu[name] * 1000:6.1f} ms)  "
              f"{value / seconds[PASS]:5.1f}x python -c pass (cpu {cpu[name] / cpu[PASS]:4.1f}x)")
    print(f"  row 5: layerenv project {ratio:.1f}x python -c pass (cpu {cpu_ratio:.1f}x); on the H200 "
          f"<= 0.3 s asks for ~16x")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
