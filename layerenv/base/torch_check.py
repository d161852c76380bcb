"""Asking an interpreter what its torch is, and judging that against a machine and a variant."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerenv.choice.coverage import serves
from layerenv.choice.variant import Variant
from layerenv.errors import OperationFailed
from layerenv.machine.facts import Gpu
from layerenv.machine.interpreters import Interpreter, platform_tag

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
class TorchDevice:
    """One GPU as torch sees it."""

    index: int
    name: str
    capability: str  # "9.0"

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "capability": self.capability}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TorchDevice:
        return cls(int(data["index"]), str(data["name"]), str(data["capability"]))


@dataclass(frozen=True)
class TorchReport:
    """What the probe says about an interpreter and its torch (the manifest's ``verification``).

    ``None`` marks what the probe did not get to: everything after ``error`` when ``import torch``
    failed, and the CUDA facts after a ``cuda_error``. The JSON keeps the probe's keys, and leaves out
    the ones it did not write, so that a manifest reads back and writes out unchanged.
    """

    python: str  # "3.12.3"
    executable: str  # the interpreter the probe ran in (a virtualenv's)
    base_executable: str  # the system interpreter behind it
    implementation: str  # "cpython"
    version_info: tuple[int, int, int]
    platform: str  # sysconfig.get_platform(): "linux-x86_64"
    error: str | None = None  # "import torch failed: ..."
    file: str | None = None
    version: str | None = None  # torch.__version__
    cuda: str | None = None  # torch.version.cuda
    hip: str | None = None  # torch.version.hip
    fake: bool = False  # the test suite's stand-in torch
    available: bool | None = None  # torch.cuda.is_available()
    arch_list: tuple[str, ...] | None = None  # torch.cuda.get_arch_list()
    devices: tuple[TorchDevice, ...] | None = None
    kernel: bool | None = None  # whether a test kernel gave the right result, where one ran
    cuda_error: str | None = None

    @property
    def archs(self) -> tuple[str, ...]:
        return self.arch_list or ()

    @property
    def interpreter(self) -> Interpreter:
        """The system interpreter the probed environment runs on."""
        return Interpreter(
            executable=Path(self.base_executable),
            implementation=self.implementation,
            version=self.version_info,
            platform=platform_tag(self.platform),
        )

    @property
    def variant(self) -> Variant | None:
        """The build's variant read from ``torch.version`` (never from the distribution version)."""
        if self.cuda:
            major, minor = self.cuda.split(".")[:2]
            return Variant(f"cu{major}{minor}")
        if self.hip:
            major, minor = self.hip.split(".")[:2]
            return Variant(f"rocm{major}.{minor}")
        if self.version is not None:
            return Variant("cpu")
        return None

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "python": self.python,
            "executable": self.executable,
            "base_executable": self.base_executable,
            "implementation": self.implementation,
            "version_info": list(self.version_info),
            "platform": self.platform,
        }
        if self.error is not None:
            document["error"] = self.error
            return document
        document.update(file=self.file, version=self.version, cuda=self.cuda, hip=self.hip, fake=self.fake)
        optional = {
            "available": self.available,
            "arch_list": None if self.arch_list is None else list(self.arch_list),
            "devices": None if self.devices is None else [device.to_json() for device in self.devices],
            "kernel": self.kernel,
            "cuda_error": self.cuda_error,
        }
        document.update((key, value) for key, value in optional.items() if value is not None)
        return document

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TorchReport:
        """Read what the probe printed (or a manifest kept); raises ``KeyError``/``TypeError``/``ValueError``."""
        major, minor, micro = (int(part) for part in data["version_info"])
        arch_list = data.get("arch_list")
        devices = data.get("devices")
        return cls(
            python=str(data["python"]),
            executable=str(data["executable"]),
            base_executable=str(data["base_executable"]),
            implementation=str(data["implementation"]),
            version_info=(major, minor, micro),
            platform=str(data["platform"]),
            error=_text(data.get("error")),
            file=_text(data.get("file")),
            version=_text(data.get("version")),
            cuda=_text(data.get("cuda")),
            hip=_text(data.get("hip")),
            fake=bool(data.get("fake", False)),
            available=_flag(data.get("available")),
            arch_list=None if arch_list is None else tuple(str(arch) for arch in arch_list),
            devices=None if devices is None else tuple(TorchDevice.from_json(device) for device in devices),
            kernel=_flag(data.get("kernel")),
            cuda_error=_text(data.get("cuda_error")),
        )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _flag(value: object) -> bool | None:
    return None if value is None else bool(value)


def inspect_torch(python: Path, *, timeout: float = 300.0, run_kernel: bool = True,
                  write_bytecode: bool = True) -> TorchReport:
    """Run the probe in ``python`` (with a timeout: it touches the GPU). ``write_bytecode=False``: the
    environment is not layerenv's (adopted), so importing torch there must not write a ``.pyc`` into it."""
    import subprocess  # here: reading a manifest on the reuse path starts no process

    argv = [str(python), *([] if write_bytecode else ["-B"]), "-c", _PROBE] + (["--kernel"] if run_kernel else [])
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
    try:
        return TorchReport.from_json(json.loads(lines[-1]))
    except (ValueError, KeyError, TypeError) as error:
        raise OperationFailed(f"{python}: inspecting torch printed what layerenv cannot read ({error})") from None


def judge(
    report: TorchReport,
    *,
    variant: Variant | None,
    version: str | None,
    gpus: Sequence[Gpu],
) -> list[str]:
    """Every reason this torch does not fit (empty when it does)."""
    if report.error is not None:
        return [report.error]
    problems: list[str] = []
    if version is not None and report.version is not None:
        wanted = version.split("+")[0]
        if report.version.split("+")[0] != wanted:
            problems.append(f"torch.__version__ is {report.version}, expected {version}")
    if variant is not None and report.variant != variant:
        problems.append(
            f"torch is a {report.variant} build (torch.version.cuda={report.cuda!r}, "
            f"hip={report.hip!r}), expected {variant}"
        )
    gpus = [gpu for gpu in gpus if gpu.vendor in ("nvidia", "amd")]
    if gpus and report.variant is not None and report.variant.kind != "cpu":
        archs = report.archs
        if not archs:
            problems.append(
                "torch.cuda.get_arch_list() is empty: torch cannot use the GPU "
                f"({report.cuda_error or 'torch.cuda.is_available() is False'})"
            )
        for gpu in gpus:
            if archs and serves(archs, gpu) is None:
                problems.append(f"{gpu.label} has no kernels in torch's arch list ({' '.join(archs)})")
        if report.kernel is False:
            problems.append("a test kernel on the GPU gave a wrong result")
        if report.cuda_error is not None:
            problems.append(f"CUDA error: {report.cuda_error}")
    return problems
