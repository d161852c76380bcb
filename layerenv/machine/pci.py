"""NVIDIA GPUs by PCI device id: the compute capability of a GPU that no driver tool describes.

Drivers before R510 have no ``compute_cap`` in ``nvidia-smi``, and some machines show the GPU only
in sysfs. The PCI device id (``/sys/bus/pci/devices/<bus>/device``) names the chip exactly (the
model name does not: a "GeForce GTX 750 Ti" is a Kepler GK106 or a Maxwell GM107), and the chip
fixes the compute capability. ``data/nvidia-pci-ids.tsv`` maps ids to chips (from pci.ids);
``CHIP_CAPABILITY`` maps chips to capabilities (NVIDIA's "CUDA GPUs" list, its architecture
whitepapers, and the Jetson module data sheets).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from layerenv.machine.facts import ComputeCapability
from layerenv.machine.sysfs import read_text, under

TABLE_PATH = Path(__file__).parent / "data" / "nvidia-pci-ids.tsv"
PCI_DEVICES = "/sys/bus/pci/devices"
NVIDIA_VENDOR = 0x10DE
DISPLAY_CLASS = 0x03  # PCI base class: VGA (0x0300) and 3D controllers (0x0302)

# chip -> compute capability; a device's chip is the longest key its pci.ids name starts with
CHIP_CAPABILITY: dict[str, str] = {
    # Kepler
    "GK104": "3.0", "GK106": "3.0", "GK107": "3.0",
    "GK110": "3.5", "GK180": "3.5", "GK208": "3.5",
    "GK210": "3.7",
    # Maxwell
    "GM107": "5.0", "GM108": "5.0",
    "GM200": "5.2", "GM204": "5.2", "GM206": "5.2",
    # Pascal
    "GP100": "6.0",
    "GP102": "6.1", "GP104": "6.1", "GP106": "6.1", "GP107": "6.1", "GP108": "6.1",
    # Volta
    "GV100": "7.0",
    # Turing
    "TU102": "7.5", "TU104": "7.5", "TU106": "7.5", "TU116": "7.5", "TU117": "7.5",
    # Ampere
    "GA100": "8.0",
    "GA102": "8.6", "GA103": "8.6", "GA104": "8.6", "GA106": "8.6", "GA107": "8.6",
    # Ada Lovelace
    "AD102": "8.9", "AD103": "8.9", "AD104": "8.9", "AD106": "8.9", "AD107": "8.9",
    # Hopper
    "GH100": "9.0",
    # Blackwell: datacenter, B300, Jetson Thor, GeForce/RTX PRO, GB10 (DGX Spark)
    "GB100": "10.0", "GB102": "10.0",
    "GB110": "10.3",
    "GB10B": "11.0",
    "GB202": "12.0", "GB203": "12.0", "GB205": "12.0", "GB206": "12.0", "GB207": "12.0",
    "GB20B": "12.1",
}  # fmt: skip
_CHIPS_LONGEST_FIRST = sorted(CHIP_CAPABILITY, key=len, reverse=True)


@dataclass(frozen=True)
class PciGpu:
    bus_id: str  # "0000:01:00.0"
    device_id: int
    chip: str | None
    name: str | None  # pci.ids' name, such as "GM107 [GeForce GTX 750 Ti]"
    compute_capability: ComputeCapability | None


def chip_family(name: str) -> str | None:
    """The chip a pci.ids name starts with: ``"GM107GL [Quadro K620]"`` -> ``"GM107"``."""
    return next((chip for chip in _CHIPS_LONGEST_FIRST if name.startswith(chip)), None)


def parse_hex(text: str | None) -> int | None:
    """A sysfs id file's value: ``"0x10de\\n"`` -> ``0x10de``."""
    try:
        return int(text.strip(), 16) if text else None
    except ValueError:
        return None


@cache
def device_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for line in TABLE_PATH.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            device, _, name = line.partition("\t")
            table[int(device, 16)] = name
    return table


def describe_device(device_id: int) -> PciGpu:
    name = device_table().get(device_id)
    chip = chip_family(name) if name else None
    capability = ComputeCapability.parse(CHIP_CAPABILITY[chip]) if chip else None
    return PciGpu("", device_id, chip, name, capability)


def read_pci_gpu(sysroot: Path, bus_id: str) -> PciGpu | None:
    """The NVIDIA display device at ``bus_id`` in sysfs, or ``None`` when sysfs does not show one."""
    device_dir = under(sysroot, PCI_DEVICES) / bus_id.lower()
    if parse_hex(read_text(device_dir / "vendor")) != NVIDIA_VENDOR:
        return None
    class_code = parse_hex(read_text(device_dir / "class"))
    device_id = parse_hex(read_text(device_dir / "device"))
    if device_id is None or class_code is None or class_code >> 16 != DISPLAY_CLASS:
        return None
    described = describe_device(device_id)
    return PciGpu(bus_id.lower(), device_id, described.chip, described.name, described.compute_capability)


def read_pci_gpus(sysroot: Path) -> tuple[PciGpu, ...]:
    """Every NVIDIA display device sysfs lists, in bus order."""
    try:
        bus_ids = sorted(entry.name for entry in under(sysroot, PCI_DEVICES).iterdir())
    except OSError:
        return ()
    found = (read_pci_gpu(sysroot, bus_id) for bus_id in bus_ids)
    return tuple(gpu for gpu in found if gpu is not None)
