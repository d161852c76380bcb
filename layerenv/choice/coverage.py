"""Whether a build's architecture list can run on a GPU: pure functions over arch names.

SASS for ``sm_XY`` runs on compute capability X.Z for Z >= Y within one family; the Tegra
parts (Jetson) form families of their own, so ``sm_86`` does not cover Orin's 8.7. Arch-specific
code (``sm_90a``) runs only on its exact capability. PTX (``compute_XY``) is JIT-compiled by the
driver for any capability >= X.Y.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from layerenv.machine.facts import ComputeCapability, Gpu

_ARCH = re.compile(r"(sm|compute)_(\d+)(\d)([af]?)")
_TEGRA = frozenset({(3, 2), (5, 3), (6, 2), (7, 2), (8, 7)})


def _parse_arch(arch: str) -> tuple[str, ComputeCapability, str] | None:
    match = _ARCH.fullmatch(arch)
    if not match:
        return None
    kind, major, minor, suffix = match.groups()
    return kind, ComputeCapability(int(major), int(minor)), suffix


def _sass_runs_on(built: ComputeCapability, suffix: str, gpu: ComputeCapability) -> bool:
    if suffix:  # arch-specific ("a"/"f") code: exact capability (or family, for "f")
        return built == gpu if suffix == "a" else built.major == gpu.major and built.minor <= gpu.minor
    if built.major != gpu.major or built.minor > gpu.minor:
        return False
    built_tegra = (built.major, built.minor) in _TEGRA
    gpu_tegra = (gpu.major, gpu.minor) in _TEGRA
    return built == gpu if (built_tegra or gpu_tegra) else True


def covering_arch(archs: Iterable[str], capability: ComputeCapability) -> str | None:
    """The entry of ``archs`` that runs on ``capability``: SASS preferred, then PTX."""
    ptx: str | None = None
    for arch in archs:
        parsed = _parse_arch(arch)
        if parsed is None:
            continue
        kind, built, suffix = parsed
        if kind == "sm" and _sass_runs_on(built, suffix, capability):
            return arch
        if kind == "compute" and built <= capability and ptx is None:
            ptx = arch
    return ptx


def serves(archs: Iterable[str], gpu: Gpu) -> str | None:
    """The arch (``sm_90``, ``compute_120``, ``gfx1100``) through which a build serves ``gpu``."""
    arch_list = tuple(archs)
    if gpu.vendor == "nvidia" and gpu.compute_capability is not None:
        return covering_arch(arch_list, gpu.compute_capability)
    if gpu.vendor == "amd" and gpu.gfx is not None:
        return gpu.gfx if gpu.gfx in arch_list else None
    return None


def why_not(archs: Iterable[str], gpu: Gpu) -> str:
    """One phrase saying why ``archs`` does not serve ``gpu``."""
    arch_list = [arch for arch in archs if arch.startswith(("sm_", "gfx"))]
    have = " ".join(arch_list) if arch_list else "no GPU kernels"
    if gpu.vendor == "nvidia" and gpu.compute_capability is None:
        return "its compute capability is unknown"
    if gpu.vendor == "nvidia" and gpu.compute_capability is not None:
        cap = gpu.compute_capability
        if (cap.major, cap.minor) in _TEGRA:
            return f"no {cap.sm} (Jetson) kernels and no PTX <= {cap} (has {have})"
        return f"no sm_{cap.major}x kernels <= {cap.sm} and no PTX <= {cap} (has {have})"
    return f"no {gpu.gfx or 'matching'} kernels (has {have})"
