"""Time ``layerenv detect --json`` against what it replaces: ``nvidia-smi`` and ``import torch``.

Each command runs as a fresh subprocess (argument lists, a timeout each), timed with
``time.perf_counter``; one untimed warm-up run of each comes first so the page cache is warm.
Prints median/min/max in milliseconds, the ratios layerenv/nvidia-smi and layerenv/torch, and
whether the targets hold (layerenv detect under 150 ms, at most twice nvidia-smi, and at most 1.5x
the interpreter's own ``python -c pass``). ``layerenv detect --json`` gives the answer it remembered
(the warm-up run worked it out and kept it, in a fresh ``LAYERENV_HOME``); ``--fresh`` reads the
machine every time, as the first call after a change does.

    python benchmarks/detect.py [--runs 20] [--torch-runs 3] [--json]

nvidia-smi or torch missing: that row is skipped with a note; layerenv's time is still reported.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TARGET_MS = 150.0
TARGET_SMI_RATIO = 2.0
TARGET_STARTUP_RATIO = 1.5  # issue 19: the process costs at most 1.5x the interpreter's own start-up
SMI_QUERY = ("--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader")
# layerenv as users start it, not through -m (runpy's cost): the console script pip before 25.2 writes, as
# pipx on it does (it imports re), the one pip 25.2 and later writes, and the one `uv tool install` writes
PIP_SCRIPT = "import re, sys; from layerenv.cli.entry import main; sys.exit(main())"  # pip before 25.2
NEW_PIP_SCRIPT = ("import sys; from layerenv.cli.entry import main; sys.argv[0] = sys.argv[0].removesuffix('.exe'); "
                  "sys.exit(main())")  # pip 25.2 and later (pypa/pip#13165): no re
UV_SCRIPT = "import sys; from layerenv.cli.entry import main; sys.exit(main())"
TORCH_SNIPPET = "import torch; torch.cuda.get_device_capability()"


@dataclass
class Timing:
    name: str
    command: list[str]
    runs: int
    samples_ms: list[float] = field(default_factory=list)
    skipped: str | None = None
    error: str | None = None
    first_output: str = ""

    @property
    def ok(self) -> bool:
        return self.skipped is None and self.error is None and bool(self.samples_ms)

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples_ms) if self.ok else None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"command": self.command, "runs": len(self.samples_ms)}
        if self.ok:
            data.update(
                median_ms=round(statistics.median(self.samples_ms), 2),
                min_ms=round(min(self.samples_ms), 2),
                max_ms=round(max(self.samples_ms), 2),
                samples_ms=[round(sample, 2) for sample in self.samples_ms],
            )
        if self.skipped:
            data["skipped"] = self.skipped
        if self.error:
            data["error"] = self.error
        return data


def _child_env() -> dict[str, str]:
    """The caller's environment, with the repository importable (``-m layerenv`` from a checkout)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: byte-compiled (the warm-up run writes them)
    parts = [part for part in env.get("PYTHONPATH", "").split(os.pathsep) if part]
    if str(REPO) not in parts:
        parts.append(str(REPO))
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


def time_command(timing: Timing, timeout: float, env: dict[str, str]) -> Timing:
    """Run ``timing.command`` once untimed, then ``timing.runs`` times timed; stop at the first failure."""
    for attempt in range(timing.runs + 1):
        start = time.perf_counter()
        try:
            result = subprocess.run(
                timing.command,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                cwd=REPO,
                env=env,
            )
        except subprocess.TimeoutExpired:
            timing.error = f"timed out after {timeout:g} s"
            return timing
        except OSError as error:
            timing.error = f"could not start: {error}"
            return timing
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        if result.returncode != 0:
            detail = (result.stderr.strip() or result.stdout.strip()).splitlines()
            timing.error = f"exit status {result.returncode}" + (f": {detail[-1][:300]}" if detail else "")
            return timing
        if attempt == 0:
            timing.first_output = result.stdout
            continue  # warm-up
        timing.samples_ms.append(elapsed_ms)
    return timing


def _ratio(numerator: Timing, denominator: Timing) -> float | None:
    if numerator.median is None or denominator.median is None or denominator.median <= 0:
        return None
    return numerator.median / denominator.median


def benchmark(runs: int, torch_runs: int, timeout: float, python: str) -> dict[str, Any]:
    import tempfile

    env = _child_env()
    home = tempfile.mkdtemp(prefix="layerenv-bench-detect-")
    env["LAYERENV_HOME"] = home
    try:
        layerenv = time_command(
            Timing("layerenv detect --json", [python, "-c", PIP_SCRIPT, "detect", "--json"], runs), timeout, env
        )
        new_pip_script = time_command(
            Timing("layerenv detect --json (pip>=25.2's script)", [python, "-c", NEW_PIP_SCRIPT, "detect", "--json"],
                   runs), timeout, env)
        uv_script = time_command(
            Timing("layerenv detect --json (uv's script)", [python, "-c", UV_SCRIPT, "detect", "--json"], runs),
            timeout, env)
        fresh = time_command(
            Timing("layerenv detect --json --fresh", [python, "-c", PIP_SCRIPT, "detect", "--json", "--fresh"], runs),
            timeout, env)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    startup = time_command(Timing("python -c pass", [python, "-c", "pass"], runs), timeout, env)

    smi_path = shutil.which("nvidia-smi")
    smi = Timing("nvidia-smi --query-gpu", ["nvidia-smi", *SMI_QUERY], runs)
    if smi_path is None:
        smi.skipped = "nvidia-smi is not on PATH"
    else:
        smi.command[0] = smi_path
        time_command(smi, timeout, env)

    torch = Timing("import torch + get_device_capability", [python, "-c", TORCH_SNIPPET], torch_runs)
    if importlib.util.find_spec("torch") is None:
        torch.skipped = f"torch is not importable by {python}"
    else:
        time_command(torch, timeout * 4, env)

    detected: dict[str, Any] = {}
    if layerenv.ok:
        try:
            document = json.loads(layerenv.first_output)
            gpus = document.get("gpus", [])
            machine_gpus = document.get("machine", {}).get("gpus", [])
            detected = {
                "variant": document.get("variant"),
                "driver_version": document.get("driver_version"),
                "gpus": [f"{gpu.get('name')} ({gpu.get('compute_capability')})" for gpu in gpus],
                "sources": sorted({gpu.get("source", "") for gpu in machine_gpus}),
            }
        except (ValueError, AttributeError) as error:
            detected = {"error": f"unreadable JSON: {error}"}

    smi_ratio = _ratio(layerenv, smi)
    torch_ratio = _ratio(layerenv, torch)
    startup_ratio = _ratio(layerenv, startup)
    targets: dict[str, bool | None] = {
        f"layerenv_under_{TARGET_MS:g}ms": None if layerenv.median is None else layerenv.median < TARGET_MS,
        f"layerenv_at_most_{TARGET_SMI_RATIO:g}x_nvidia_smi": (
            None if smi_ratio is None else smi_ratio <= TARGET_SMI_RATIO
        ),
        f"layerenv_at_most_{TARGET_STARTUP_RATIO:g}x_python_c_pass": (
            None if startup_ratio is None else startup_ratio <= TARGET_STARTUP_RATIO
        ),
    }
    return {
        "python": python,
        "python_version": sys.version.split()[0],
        "runs": runs,
        "torch_runs": torch_runs,
        "timings": {t.name: t.to_json() for t in (layerenv, new_pip_script, uv_script, fresh, smi, torch, startup)},
        "ratios": {
            "layerenv/nvidia-smi": None if smi_ratio is None else round(smi_ratio, 3),
            "layerenv/torch": None if torch_ratio is None else round(torch_ratio, 3),
            "layerenv/python -c pass": None if startup_ratio is None else round(startup_ratio, 3),
            "layerenv (pip>=25.2's script)/python -c pass": None if _ratio(new_pip_script, startup) is None else round(
                _ratio(new_pip_script, startup) or 0.0, 3),
            "layerenv (uv's script)/python -c pass": None if _ratio(uv_script, startup) is None else round(
                _ratio(uv_script, startup) or 0.0, 3),
            "layerenv --fresh/python -c pass": None if _ratio(fresh, startup) is None else round(
                _ratio(fresh, startup) or 0.0, 3),
        },
        "targets": targets,
        "detected": detected,
    }


def _format_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:8.1f}"


def render(report: dict[str, Any]) -> str:
    lines = [
        f"python {report['python']} ({report['python_version']}); "
        f"{report['runs']} timed runs each (torch: {report['torch_runs']}), after one warm-up run",
        f"{'command':<40} {'median':>8} {'min':>8} {'max':>8}  ms",
    ]
    for name, data in report["timings"].items():
        if "skipped" in data:
            lines.append(f"{name:<40} skipped: {data['skipped']}")
        elif "error" in data:
            lines.append(f"{name:<40} FAILED: {data['error']}")
        else:
            lines.append(
                f"{name:<40} {_format_ms(data['median_ms'])} {_format_ms(data['min_ms'])} {_format_ms(data['max_ms'])}"
            )
    for name, value in report["ratios"].items():
        lines.append(f"ratio {name:<34} {'-' if value is None else f'{value:.2f}x'}")
    for name, held in report["targets"].items():
        verdict = "not measured" if held is None else ("holds" if held else "MISSED")
        lines.append(f"target {name:<33} {verdict}")
    if report["detected"]:
        lines.append(f"detected {json.dumps(report['detected'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs of layerenv and nvidia-smi (20)")
    parser.add_argument("--torch-runs", type=int, default=3, help="timed runs of the torch import (3)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per run (torch: 4x) (30)")
    parser.add_argument("--python", default=sys.executable, help="interpreter to run layerenv and torch")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.torch_runs < 1:
        parser.error("--runs and --torch-runs must be at least 1")
    report = benchmark(args.runs, args.torch_runs, args.timeout, args.python)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0 if "error" not in report["timings"]["layerenv detect --json"] else 1


if __name__ == "__main__":
    sys.exit(main())
