"""AMD GPUs from the amdkfd topology in sysfs, and the ROCm version from its install tree."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from layerenv.machine.facts import Gpu
from layerenv.machine.sysfs import read_text, under

KFD_NODES = "/sys/class/kfd/kfd/topology/nodes"
ROCM_VERSION = "/opt/rocm/.info/version"

# amdgpu names chips found by IP discovery (all RDNA3+, CDNA3+) just "ip discovery".
_UNINFORMATIVE_NAMES = frozenset({"", "ip discovery"})


def parse_kfd_properties(text: str) -> dict[str, int]:
    """A node's ``properties`` file (``key value`` lines) as integers; other lines are skipped."""
    properties: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            properties[parts[0]] = int(parts[1])
    return properties


def gfx_target(version: int) -> str | None:
    """``gfx_target_version`` as an LLVM target: 110000 -> ``gfx1100``, 90010 -> ``gfx90a``.

    The number is major * 10000 + minor * 100 + stepping; LLVM writes minor and stepping in hex.
    """
    if version <= 0:
        return None
    major, rest = divmod(version, 10000)
    minor, stepping = divmod(rest, 100)
    return f"gfx{major}{minor:x}{stepping:x}"


def parse_rocm_version(text: str) -> str | None:
    """``/opt/rocm/.info/version``: ``"6.4.1-120"`` -> ``"6.4.1"``."""
    lines = text.strip().splitlines()
    release = lines[0].strip().split("-")[0] if lines else ""
    parts = release.split(".")
    return release if len(parts) >= 2 and all(part.isdigit() for part in parts) else None


def pci_bus_id(properties: dict[str, int]) -> str | None:
    """The PCI address from kfd's ``domain`` and ``location_id`` (bus << 8 | device << 3 | function)."""
    location = properties.get("location_id")
    if not location:
        return None
    domain = properties.get("domain", 0)
    return f"{domain:04x}:{location >> 8 & 0xFF:02x}:{location >> 3 & 0x1F:02x}.{location & 0x7}"


def rocm_uuid(properties: dict[str, int]) -> str | None:
    """The UUID ROCm shows and ``ROCR_VISIBLE_DEVICES`` accepts: ``GPU-`` and kfd's ``unique_id`` in hex."""
    unique_id = properties.get("unique_id", 0)
    return f"GPU-{unique_id:016x}" if unique_id > 0 else None


def read_amd(sysroot: Path) -> tuple[tuple[Gpu, ...], str | None]:
    """The AMD GPUs kfd lists under ``sysroot`` (in node order) and the installed ROCm version."""
    gpus: list[Gpu] = []
    for node in _nodes(under(sysroot, KFD_NODES)):
        text = read_text(node / "properties")
        if text is None:
            continue
        properties = parse_kfd_properties(text)
        gfx = gfx_target(properties.get("gfx_target_version", 0))
        if gfx is None:
            continue
        name = (read_text(node / "name") or "").strip()
        gpus.append(
            Gpu(
                vendor="amd",
                index=len(gpus),
                name=name if name.lower() not in _UNINFORMATIVE_NAMES else f"AMD GPU {gfx}",
                gfx=gfx,
                pci_bus_id=pci_bus_id(properties),
                uuid=rocm_uuid(properties),
                source="kfd",
            )
        )
    rocm_text = read_text(under(sysroot, ROCM_VERSION))
    return tuple(gpus), parse_rocm_version(rocm_text) if rocm_text else None


def _nodes(nodes_dir: Path) -> list[Path]:
    try:
        return sorted(
            (entry for entry in nodes_dir.iterdir() if entry.name.isdigit()),
            key=lambda entry: int(entry.name),
        )
    except OSError:
        return []


GFX_OVERRIDE_VARIABLE = "HSA_OVERRIDE_GFX_VERSION"


def parse_gfx_override(value: str) -> str | None:
    """``HSA_OVERRIDE_GFX_VERSION``'s ``major.minor.stepping`` as a target: ``"10.3.0"`` -> ``gfx1030``."""
    parts = value.strip().split(".")
    if len(parts) != 3 or not all(part.isdigit() for part in parts):
        return None
    major, minor, stepping = (int(part) for part in parts)
    if major == 0 or minor > 15 or stepping > 15:
        return None
    return f"gfx{major}{minor:x}{stepping:x}"


def apply_gfx_override(gpus: tuple[Gpu, ...], env: Mapping[str, str]) -> tuple[tuple[Gpu, ...], tuple[str, ...]]:
    """The AMD GPUs as the ROCm runtime will run them: every one as the overriding target.

    ``HSA_OVERRIDE_GFX_VERSION=10.3.0`` is how gfx1031/gfx1032 cards run builds made for gfx1030;
    the decision must then look for gfx1030, and say why.
    """
    value = env.get(GFX_OVERRIDE_VARIABLE)
    if value is None or not gpus:
        return gpus, ()
    target = parse_gfx_override(value)
    if target is None:
        return gpus, (f"{GFX_OVERRIDE_VARIABLE}={value!r} is not a version such as 10.3.0; ignored",)
    overridden = tuple(
        replace(gpu, gfx=target, source=f"{gpu.source}: the card is {gpu.gfx}, run as {target} by "
                                        f"{GFX_OVERRIDE_VARIABLE}={value}")
        if gpu.gfx != target else gpu
        for gpu in gpus
    )
    return overridden, ()
