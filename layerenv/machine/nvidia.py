"""NVIDIA GPUs and driver: pure parsers over the driver's text, and the reader that tries
sysfs, NVML, ``nvidia-smi`` and the model-name table in that order."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from layerenv.machine.facts import ComputeCapability, Gpu
from layerenv.machine.gpu_names import lookup_compute_capability
from layerenv.machine.nvml import NvmlDevice, NvmlReading
from layerenv.machine.pci import PCI_DEVICES, PciGpu, read_pci_gpu, read_pci_gpus
from layerenv.machine.run_probe import ProbeFailed, Runner
from layerenv.machine.sysfs import read_text, under

SMI_TIMEOUT_S = 3.0
SMI_QUERY = (
    "--query-gpu=index,name,compute_cap,driver_version,pci.bus_id,uuid",
    "--format=csv,noheader",
)
MODULE_VERSION = "/sys/module/nvidia/version"
PROC_VERSION = "/proc/driver/nvidia/version"
PROC_GPUS = "/proc/driver/nvidia/gpus"

_VERSION = re.compile(r"^\d+(?:\.\d+)+$")
_BANNER_VERSION = re.compile(r"Kernel Module\b.*?\s(\d+(?:\.\d+)+)(?=\s|$)")
_BUS_ID = re.compile(r"^([0-9a-fA-F]{4,8}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$")


@dataclass(frozen=True)
class SmiRow:
    """One line of ``nvidia-smi --query-gpu=index,name,compute_cap,driver_version,pci.bus_id,uuid``."""

    index: int
    name: str
    compute_capability: ComputeCapability | None
    driver_version: str | None
    pci_bus_id: str | None
    uuid: str | None


class NvidiaReading(NamedTuple):
    gpus: tuple[Gpu, ...]
    driver_version: str | None
    cuda_driver: str | None
    notes: tuple[str, ...] = ()


def parse_module_version(text: str) -> str | None:
    """``/sys/module/nvidia/version``: ``"580.159.04\\n"`` -> ``"580.159.04"``."""
    lines = text.strip().splitlines()
    first = lines[0].strip() if lines else ""
    return first if _VERSION.match(first) else None


def parse_proc_version(text: str) -> str | None:
    """The driver version in the ``NVRM version:`` banner of ``/proc/driver/nvidia/version``."""
    for line in text.splitlines():
        if line.startswith("NVRM version:"):
            match = _BANNER_VERSION.search(line)
            return match.group(1) if match else None
    return None


def parse_gpu_information(text: str) -> dict[str, str]:
    """``/proc/driver/nvidia/gpus/<bus>/information`` as ``{"Model": ..., "GPU UUID": ..., ...}``."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            fields[key.strip()] = value.strip()
    return fields


def normalize_bus_id(text: str) -> str | None:
    """A PCI address in the sysfs form ``0000:00:06.0`` (nvidia-smi and NVML print an 8-digit domain)."""
    match = _BUS_ID.match(text.strip())
    if not match:
        return None
    domain, bus, device, function = match.groups()
    if len(domain) > 4 and int(domain, 16) <= 0xFFFF:
        domain = domain[-4:]
    return f"{domain}:{bus}:{device}.{function}".lower()


def parse_smi_query(text: str) -> list[SmiRow]:
    """Rows of the ``nvidia-smi`` CSV query; lines that are not such a row are skipped."""
    rows = []
    for line in text.splitlines():
        row = _parse_smi_line(line)
        if row is not None:
            rows.append(row)
    return rows


_LIST_GPU = re.compile(r"^GPU \d+: .*\(UUID: (GPU-[0-9A-Fa-f-]+)\)\s*$")
_LIST_MIG = re.compile(r"^\s+MIG .*\(UUID: (MIG-[0-9A-Fa-f-]+)\)\s*$")


def parse_smi_list(text: str) -> dict[str, str]:
    """MIG instance UUID -> its parent GPU's UUID (lower case), from ``nvidia-smi -L``, which prints::

        GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77)
          MIG 1g.5gb      Device  0: (UUID: MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f)
    """
    parents: dict[str, str] = {}
    parent: str | None = None
    for line in text.splitlines():
        if gpu := _LIST_GPU.match(line):
            parent = gpu.group(1).lower()
        elif (mig := _LIST_MIG.match(line)) and parent is not None:
            parents[mig.group(1).lower()] = parent
    return parents


def read_mig_parents(run: Runner, which: Callable[[str], str | None]) -> dict[str, str]:
    """``nvidia-smi -L``'s MIG instances and their parents; empty when it cannot be asked."""
    path = which("nvidia-smi")
    if path is None:
        return {}
    try:
        result = run([path, "-L"], SMI_TIMEOUT_S)
    except ProbeFailed:
        return {}
    return parse_smi_list(result.stdout) if result.returncode == 0 else {}


def _parse_smi_line(line: str) -> SmiRow | None:
    fields = [field.strip() for field in line.split(",")]
    if len(fields) != 6:
        return None
    index_text, name, capability_text, driver, bus_id, uuid = (_value(field) for field in fields)
    if index_text is None or not index_text.isdigit() or name is None:
        return None
    capability = None
    if capability_text is not None:
        try:
            capability = ComputeCapability.parse(capability_text)
        except ValueError:
            return None
    return SmiRow(
        index=int(index_text),
        name=name,
        compute_capability=capability,
        driver_version=driver if driver is not None and _VERSION.match(driver) else None,
        pci_bus_id=normalize_bus_id(bus_id) if bus_id is not None else None,
        uuid=uuid,
    )


def _value(field: str) -> str | None:
    """nvidia-smi writes missing values as ``[N/A]``, ``N/A`` or ``[Not Supported]``."""
    if not field or field == "N/A" or (field.startswith("[") and field.endswith("]")):
        return None
    return field


def read_nvidia(
    sysroot: Path,
    *,
    run: Runner,
    which: Callable[[str], str | None],
    nvml: Callable[[], NvmlReading | None] | None,
    live: bool,
) -> NvidiaReading | None:
    """NVIDIA facts under ``sysroot``, or ``None`` when nothing says an NVIDIA driver is there.

    ``nvml`` is only given on the live machine (sysroot ``/``); ``live`` also allows asking
    ``nvidia-smi`` when no driver file is visible (Windows, some containers).
    """
    module_text = read_text(under(sysroot, MODULE_VERSION))
    proc_text = read_text(under(sysroot, PROC_VERSION))
    driver = (parse_module_version(module_text) if module_text else None) or (
        parse_proc_version(proc_text) if proc_text else None
    )
    evidence = module_text is not None or proc_text is not None
    if not evidence and not live:
        return None

    reading = nvml() if nvml is not None else None
    if reading is not None:
        driver = driver or reading.driver_version
        return NvidiaReading(
            gpus=tuple(_gpu_from_nvml(device) for device in reading.devices),
            driver_version=driver,
            cuda_driver=reading.cuda_driver,
        )

    rows, smi_problem = _ask_smi(run, which)
    if rows:
        gpus, notes = _gpus_from_smi(rows, sysroot)
        driver = driver or next((row.driver_version for row in rows if row.driver_version), None)
        return NvidiaReading(gpus, driver, None, notes)
    if not evidence:
        return None

    gpus, notes = _gpus_from_proc(sysroot, smi_problem)
    return NvidiaReading(gpus, driver, None, notes)


#: What a note says when ``nvidia-smi`` was there but failed (a hung or busy driver may answer next time),
#: as against a lasting fact such as "nvidia-smi not found".
_SMI_TROUBLE = ("could not run nvidia-smi", "nvidia-smi timed out", "nvidia-smi exited with status",
                "nvidia-smi printed no GPU rows")


def probe_troubled(notes: Sequence[str]) -> bool:
    """Whether a reading's notes say a probe failed this time (so another reading may differ)."""
    return any(note.startswith(_SMI_TROUBLE) for note in notes)


def _ask_smi(run: Runner, which: Callable[[str], str | None]) -> tuple[list[SmiRow], str]:
    """The parsed rows, or no rows and a phrase saying what went wrong."""
    path = which("nvidia-smi")
    if path is None:
        return [], "nvidia-smi not found"
    try:
        result = run([path, *SMI_QUERY], SMI_TIMEOUT_S)
    except ProbeFailed as exc:
        return [], str(exc)
    if result.returncode != 0:
        detail = _first_line(result.stdout) or _first_line(result.stderr)
        suffix = f" ({detail})" if detail else ""
        return [], f"nvidia-smi exited with status {result.returncode}{suffix}"
    rows = parse_smi_query(result.stdout)
    if not rows:
        return [], "nvidia-smi printed no GPU rows"
    return rows, ""


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")[:200]


def _gpu_from_nvml(device: NvmlDevice) -> Gpu:
    return Gpu(
        vendor="nvidia",
        index=device.index,
        name=device.name,
        compute_capability=device.compute_capability,
        pci_bus_id=normalize_bus_id(device.pci_bus_id) if device.pci_bus_id else None,
        uuid=device.uuid,
        source="nvml",
    )


def capability_without_driver_tools(
    sysroot: Path, name: str, bus_id: str | None
) -> tuple[ComputeCapability | None, str]:
    """The capability from the PCI device id, else from the model name; and where it came from."""
    pci = read_pci_gpu(sysroot, bus_id) if bus_id else None
    if pci is not None and pci.compute_capability is not None:
        return pci.compute_capability, f"PCI device id {pci.device_id:04x} ({pci.chip})"
    capability = lookup_compute_capability(name)
    return capability, "the model-name table" if capability is not None else ""


def _gpus_from_smi(rows: list[SmiRow], sysroot: Path) -> tuple[tuple[Gpu, ...], tuple[str, ...]]:
    gpus: list[Gpu] = []
    notes: list[str] = []
    for row in rows:
        capability = row.compute_capability
        if capability is None:
            capability, origin = capability_without_driver_tools(sysroot, row.name, row.pci_bus_id)
            found = f"{capability} from {origin}" if capability else "unknown"
            notes.append(f"nvidia-smi gave no compute capability for GPU {row.index} {row.name}: {found}")
        gpus.append(
            Gpu(
                vendor="nvidia",
                index=row.index,
                name=row.name,
                compute_capability=capability,
                pci_bus_id=row.pci_bus_id,
                uuid=row.uuid,
                source="nvidia-smi",
            )
        )
    return tuple(gpus), tuple(notes)


def _gpus_from_proc(sysroot: Path, smi_problem: str) -> tuple[tuple[Gpu, ...], tuple[str, ...]]:
    gpus_dir = under(sysroot, PROC_GPUS)
    try:
        entries = sorted(entry for entry in gpus_dir.iterdir() if entry.is_dir())
    except OSError:
        entries = []
    gpus: list[Gpu] = []
    notes: list[str] = []
    origins: set[str] = set()
    for entry in entries:
        text = read_text(entry / "information")
        if text is None:
            continue
        fields = parse_gpu_information(text)
        name = fields.get("Model") or "NVIDIA GPU"
        index = len(gpus)
        bus_id = normalize_bus_id(fields.get("Bus Location", "")) or normalize_bus_id(entry.name)
        capability, origin = capability_without_driver_tools(sysroot, name, bus_id)
        if capability is None:
            notes.append(f"GPU {index} {name}: compute capability unknown (no known PCI device id, "
                         "not in the model-name table)")
        origins.add("pci-id" if origin.startswith("PCI") else "name-table")
        gpus.append(
            Gpu(
                vendor="nvidia",
                index=index,
                name=name,
                compute_capability=capability,
                pci_bus_id=bus_id,
                uuid=fields.get("GPU UUID") or None,
                source="proc+pci-id" if origin.startswith("PCI") else "proc+name-table",
            )
        )
    if not gpus:
        gpus = [_gpu_from_pci(index, pci) for index, pci in enumerate(read_pci_gpus(sysroot))]
        origins = {"pci-id"} if gpus else set()
    if gpus:
        how = " and ".join(sorted({"pci-id": "the PCI device id", "name-table": "the model-name table"}[o]
                                  for o in origins))
        notes.insert(0, f"{smi_problem}; compute capability from {how}")
    else:
        notes.insert(0, f"{smi_problem}; no GPU listed under {PROC_GPUS} or {PCI_DEVICES}")
    return tuple(gpus), tuple(notes)


def _gpu_from_pci(index: int, pci: PciGpu) -> Gpu:
    name = pci.name.partition("[")[2].rstrip("]") if pci.name and "[" in pci.name else (pci.name or "NVIDIA GPU")
    return Gpu(
        vendor="nvidia",
        index=index,
        name=name,
        compute_capability=pci.compute_capability,
        pci_bus_id=pci.bus_id,
        uuid=None,
        source="pci-id",
    )
