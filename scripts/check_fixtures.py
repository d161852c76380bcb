#!/usr/bin/env python3
"""Validate the captures recorded on real GPU machines (tests/fixtures/<machine>/).

These files are evidence, not code under test: this script checks that each capture still says
what the README and the notes claim it says (the GPU, the driver, the adopted torch, a kernel ran,
no traceback), so a re-capture that went wrong is noticed. The test suite, in turn, runs layerenv's
parsers and decision over the same files. Prints one line per failed check; exit 1 if any failed.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def h100_checks() -> list[tuple[str, Callable[[], bool]]]:
    h100 = FIXTURES / "h100"
    detected = _json(h100 / "detect.json")
    manifest = _json(h100 / "adopt-manifest.json")
    verification = manifest["verification"]
    return [
        ("h100 detect.json: one H100 80GB HBM3, served, driver 580.159.04, CUDA 13.0, no conflict",
         lambda: [g["name"] for g in detected["gpus"]] == ["NVIDIA H100 80GB HBM3"]
         and detected["gpus"][0]["compute_capability"] == "9.0" and detected["gpus"][0]["served"] is True
         and detected["driver_version"] == "580.159.04" and detected["cuda_driver"] == "13.0"
         and detected["conflict"] is False and detected["warnings"] == []),
        ("h100 detect.json: a CUDA variant carrying sm_90",
         lambda: detected["variant"].startswith("cu") and "sm_90" in detected["archs"]),
        ("h100 adopt-manifest.json: adopted /opt/torch/.venv, torch 2.11.0+cu130, cp312",
         lambda: manifest["adopted"] is True and manifest["variant"] == "cu130" and manifest["torch"] == "2.11.0"
         and manifest["torch_build"] == "2.11.0+cu130"
         and manifest["base_id"] == "cp312-linux_x86_64-torch2.11.0-cu130-adopted"
         and manifest["path"] == "/opt/torch/.venv" and manifest["python"]["tag"] == "cp312"
         and manifest["packages"]["torch"]["version"] == "2.11.0"),
        ("h100 adopt-manifest.json: verification ran a kernel on the H100 with CUDA 13.0",
         lambda: "sm_90" in verification["arch_list"] and verification["kernel"] is True
         and verification["available"] is True and verification["cuda"] == "13.0"
         and verification["version"] == "2.11.0+cu130" and "cuda_error" not in verification
         and verification["devices"] == [{"capability": "9.0", "index": 0, "name": "NVIDIA H100 80GB HBM3"}]),
        ("h100 summary.txt: no Python traceback in any output",
         lambda: "no Python traceback in any output" in (h100 / "summary.txt").read_text(encoding="utf-8")),
    ]


def manifest_checks() -> list[tuple[str, Callable[[], bool]]]:
    """tests/fixtures/manifests/: written by layerenv 0.1.0 from fake wheels on replayed machines."""
    served = _json(FIXTURES / "manifests" / "built-h100-cu130.json")
    left_out = _json(FIXTURES / "manifests" / "built-gtx1080-cu130-left-out.json")
    return [
        ("manifests built-h100-cu130.json: a built cu130 base, schema 1, its H100 served, no kernel run (fake torch)",
         lambda: served["schema"] == 1 and served["adopted"] is False and served["variant"] == "cu130"
         and [g["served"] for g in served["decision"]["gpus"]] == [True] and served["decision"]["conflict"] is False
         and served["verification"]["fake"] is True and "kernel" not in served["verification"]),
        ("manifests built-gtx1080-cu130-left-out.json: its GTX 1080 left out, the reason in the warnings",
         lambda: left_out["schema"] == 1 and left_out["decision"]["conflict"] is True
         and [g["served"] for g in left_out["decision"]["gpus"]] == [False]
         and left_out["decision"]["warnings"][0].startswith("GPU 0 NVIDIA GeForce GTX 1080 (sm_61) is left out: ")),
    ]


def h200_checks() -> list[tuple[str, Callable[[], bool]]]:
    h200 = FIXTURES / "h200"
    first_run = (h200 / "first-run.txt").read_text(encoding="utf-8")
    adopt = (h200 / "adopt.txt").read_text(encoding="utf-8")
    summary = re.search(r"exit (\d+); first stderr line after ([\d.]+) s", first_run)
    return [
        ("h200 first-run.txt: offline first run ends at once (exit 1, within 10 s), naming find-links, a mirror"
         " and the preinstalled /opt/torch/.venv to adopt",
         lambda: summary is not None and summary.group(1) == "1" and float(summary.group(2)) < 10
         and "LAYERENV_FIND_LINKS" in first_run and "LAYERENV_INDEX_URL" in first_run
         and "layerenv base --adopt /opt/torch/.venv (torch 2.11.0+cu130: fits this machine)" in first_run),
        ("h200 adopt.txt: 16 concurrent adopts, one adoption, 15 reuses, all exit 0",
         lambda: re.search(r"^\s+16 exit 0$", adopt, re.MULTILINE) is not None
         and re.search(r"^\s+1 hashing the files of /opt/torch/.venv", adopt, re.MULTILINE) is not None
         and re.search(r"^\s+15 .*was adopted by another process", adopt, re.MULTILINE) is not None),
        ("h200 adopt.txt: the project on the adopted base ran a CUDA matmul on the H200, and doctor found it healthy",
         lambda: "NVIDIA H200 /opt/torch/.venv" in adopt and "matmul ok (4096, 4096)" in adopt
         and "healthy: 1 project(s), 1 base(s), nothing to fix" in adopt),
    ]


def main() -> int:
    failed = 0
    checks = h100_checks() + h200_checks() + manifest_checks()
    for name, check in checks:
        problem = ""
        try:
            ok = check()
        except (KeyError, IndexError, TypeError, OSError, ValueError) as error:
            ok, problem = False, f" ({error.__class__.__name__}: {error})"
        if not ok:
            failed += 1
            print(f"fixture check failed: {name}{problem}")
    print(f"{len(checks) - failed} fixture checks passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
