"""Read the machine: GPUs, driver, ROCm, platform, into a :class:`~layerenv.machine.facts.Machine`.

``sysroot`` (or ``LAYERENV_SYSROOT``) replays a machine from a directory holding its ``/sys``,
``/proc`` and ``/opt/rocm`` files; NVML is only asked about the machine this runs on.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

from layerenv.machine.amd import apply_gfx_override, read_amd
from layerenv.machine.apple import read_apple
from layerenv.machine.facts import Gpu, Machine
from layerenv.machine.nvidia import read_mig_parents, read_nvidia
from layerenv.machine.nvml import default_library, read_nvml
from layerenv.machine.run_probe import CommandResult, ProbeFailed, Runner, run_command
from layerenv.machine.visible import filter_visible

__all__ = ["CommandResult", "ProbeFailed", "Runner", "normalize_arch", "read_machine", "run_command"]

SYSROOT_VARIABLE = "LAYERENV_SYSROOT"


def read_machine(
    *,
    sysroot: Path | None = None,
    env: Mapping[str, str] | None = None,
    run: Runner | None = None,
    which: Callable[[str], str | None] | None = None,
    system: str | None = None,
    arch: str | None = None,
    python: str | None = None,
    cuda_for_driver: Callable[[str], str | None] | None = None,
) -> Machine:
    """Everything the variant decision needs about this machine (or the one under ``sysroot``).

    ``cuda_for_driver`` names the newest CUDA a driver version supports (the release table's
    ``newest_cuda_for_driver``), for when neither NVML nor ``nvidia-smi`` says it.
    """
    env = os.environ if env is None else env
    if sysroot is None:
        sysroot = Path(env.get(SYSROOT_VARIABLE) or "/")
    system = (system or platform.system()).lower()
    arch = normalize_arch(arch or platform.machine(), system)
    live = sysroot.resolve() == Path("/").resolve()

    gpus: list[Gpu] = []
    notes: list[str] = []
    driver_version = cuda_driver = rocm_version = None
    if system in ("linux", "windows"):
        library = default_library(system)
        nvml = partial(read_nvml, library) if live and library is not None else None
        nvidia = read_nvidia(
            sysroot,
            run=run or run_command,
            which=which or _which,
            nvml=nvml,
            live=live,
        )
        if nvidia is not None:
            gpus.extend(nvidia.gpus)
            notes.extend(nvidia.notes)
            driver_version, cuda_driver = nvidia.driver_version, nvidia.cuda_driver
    if cuda_driver is None and driver_version is not None and cuda_for_driver is not None:
        cuda_driver = cuda_for_driver(driver_version)
    if system == "linux":
        amd_gpus, rocm_version = read_amd(sysroot)
        amd_gpus, override_notes = apply_gfx_override(amd_gpus, env)
        gpus.extend(amd_gpus)
        notes.extend(override_notes)
    gpus.extend(read_apple(system, arch))

    mig_parents: dict[str, str] = {}
    if any(entry.strip().upper().startswith("MIG-") for entry in env.get("CUDA_VISIBLE_DEVICES", "").split(",")):
        mig_parents = read_mig_parents(run or run_command, which or _which)
    visible, hidden, visibility_notes = filter_visible(gpus, env, mig_parents)
    return Machine(
        system=system,
        arch=arch,
        python=python or platform.python_version(),
        gpus=visible,
        driver_version=driver_version,
        cuda_driver=cuda_driver,
        rocm_version=rocm_version,
        hidden_gpus=hidden,
        notes=(*notes, *visibility_notes),
    )


def _which(name: str) -> str | None:
    import shutil  # deferred: only needed when NVML does not answer

    return shutil.which(name)


def normalize_arch(machine: str, system: str) -> str:
    """``platform.machine()`` as wheel tags spell it: ``AMD64`` -> ``x86_64``; ARM is
    ``arm64`` on macOS and Windows, ``aarch64`` on Linux."""
    lowered = machine.lower()
    if lowered in ("amd64", "x64", "x86_64"):
        return "x86_64"
    if lowered in ("arm64", "aarch64"):
        return "aarch64" if system == "linux" else "arm64"
    return lowered
