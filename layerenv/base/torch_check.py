"""Asking an interpreter what its torch is, and judging that against a machine and a variant."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerenv.choice.coverage import serves
from layerenv.choice.variant import Variant
from layerenv.errors import OperationFailed
from layerenv.machine.facts import Gpu

# Runs inside the target interpreter; prints one JSON line. A tiny kernel runs where CUDA is up.
_PROBE = r"""
import json, sys
import sysconfig
out = {"python": sys.version.split()[0], "executable": sys.executable,
       "implementation": sys.implementation.name, "version_info": list(sys.version_info[:3]),
       "platform": sysconfig.get_platform(),
       "base_executable": getattr(sys, "_base_executable", sys.executable)}
try:
    import torch
except Exception as error:
    out["error"] = "import torch failed: %s: %s" % (type(error).__name__, error)
    print(json.dumps(out)); sys.exit(0)
out["file"] = getattr(torch, "__file__", None)
out["version"] = str(torch.__version__)
out["cuda"] = getattr(torch.version, "cuda", None)
out["hip"] = getattr(torch.version, "hip", None)
out["fake"] = bool(getattr(torch, "_fake", False))
try:
    out["available"] = bool(torch.cuda.is_available())
    out["arch_list"] = list(torch.cuda.get_arch_list())
    out["devices"] = []
    if out["available"]:
        for index in range(torch.cuda.device_count()):
            major, minor = torch.cuda.get_device_capability(index)
            out["devices"].append({"index": index, "name": torch.cuda.get_device_name(index),
                                   "capability": "%d.%d" % (major, minor)})
        if "--kernel" in sys.argv and not out["fake"]:
            x = torch.ones(64, 64, device="cuda")
            out["kernel"] = float((x @ x).sum().item()) == 64.0 * 64 * 64
except Exception as error:
    out["cuda_error"] = "%s: %s" % (type(error).__name__, error)
print(json.dumps(out))
"""


@dataclass(frozen=True)
class TorchReport:
    data: dict[str, Any]

    @property
    def version(self) -> str | None:
        value = self.data.get("version")
        return str(value) if value is not None else None

    @property
    def arch_list(self) -> tuple[str, ...]:
        return tuple(self.data.get("arch_list") or ())

    @property
    def variant(self) -> Variant | None:
        """The build's variant read from ``torch.version`` (never from the distribution version)."""
        cuda = self.data.get("cuda")
        hip = self.data.get("hip")
        if cuda:
            major, minor = str(cuda).split(".")[:2]
            return Variant(f"cu{major}{minor}")
        if hip:
            major, minor = str(hip).split(".")[:2]
            return Variant(f"rocm{major}.{minor}")
        if self.version is not None:
            return Variant("cpu")
        return None


def inspect_torch(python: Path, *, timeout: float = 300.0, run_kernel: bool = True) -> TorchReport:
    """Run the probe in ``python`` (with a timeout: it touches the GPU)."""
    argv = [str(python), "-c", _PROBE] + (["--kernel"] if run_kernel else [])
    try:
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
            errors="replace",
        )
    except subprocess.TimeoutExpired:
        raise OperationFailed(f"{python}: inspecting torch took longer than {timeout:.0f} s") from None
    except OSError as error:
        raise OperationFailed(f"{python}: cannot run ({error.strerror})") from None
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        tail = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]
        raise OperationFailed(f"{python}: inspecting torch failed: {tail}")
    return TorchReport(json.loads(lines[-1]))


def judge(
    report: TorchReport,
    *,
    variant: Variant | None,
    version: str | None,
    gpus: Sequence[Gpu],
) -> list[str]:
    """Every reason this torch does not fit (empty when it does)."""
    if "error" in report.data:
        return [str(report.data["error"])]
    problems: list[str] = []
    if version is not None and report.version is not None:
        wanted = version.split("+")[0]
        if report.version.split("+")[0] != wanted:
            problems.append(f"torch.__version__ is {report.version}, expected {version}")
    if variant is not None and report.variant != variant:
        problems.append(
            f"torch is a {report.variant} build (torch.version.cuda={report.data.get('cuda')!r}, "
            f"hip={report.data.get('hip')!r}), expected {variant}"
        )
    gpus = [gpu for gpu in gpus if gpu.vendor in ("nvidia", "amd")]
    if gpus and report.variant is not None and report.variant.kind != "cpu":
        archs = report.arch_list
        if not archs:
            problems.append(
                "torch.cuda.get_arch_list() is empty: torch cannot use the GPU "
                f"({report.data.get('cuda_error') or 'torch.cuda.is_available() is False'})"
            )
        for gpu in gpus:
            if archs and serves(archs, gpu) is None:
                problems.append(f"{gpu.label} has no kernels in torch's arch list ({' '.join(archs)})")
        if report.data.get("kernel") is False:
            problems.append("a test kernel on the GPU gave a wrong result")
        if "cuda_error" in report.data:
            problems.append(f"CUDA error: {report.data['cuda_error']}")
    return problems
