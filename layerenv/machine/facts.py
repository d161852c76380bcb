"""Facts about a machine, as frozen dataclasses with a JSON round trip.

Nothing here reads the machine: ``layerenv.machine.reader`` does that and returns these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Vendor = Literal["nvidia", "amd", "apple"]


@dataclass(frozen=True, order=True)
class ComputeCapability:
    """An NVIDIA compute capability such as 9.0 (``sm_90``)."""

    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> ComputeCapability:
        """Read ``"9.0"`` (nvidia-smi, JSON) into a capability; raises ``ValueError``."""
        major_text, sep, minor_text = text.strip().partition(".")
        if not sep or not major_text.isdigit() or not minor_text.isdigit():
            raise ValueError(f"not a compute capability: {text!r} (expected MAJOR.MINOR, e.g. 9.0)")
        return cls(int(major_text), int(minor_text))

    @property
    def sm(self) -> str:
        return f"sm_{self.major}{self.minor}"

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


@dataclass(frozen=True)
class Gpu:
    """One GPU as the machine reports it.

    ``index`` is the driver's enumeration order (what ``CUDA_VISIBLE_DEVICES`` indexes).
    NVIDIA GPUs carry ``compute_capability``; AMD GPUs carry ``gfx`` (``gfx1100``).
    ``source`` says which probe produced the entry, so a user can tell a guess from a reading.
    """

    vendor: Vendor
    index: int
    name: str
    compute_capability: ComputeCapability | None = None
    gfx: str | None = None
    pci_bus_id: str | None = None
    uuid: str | None = None
    source: str = ""

    @property
    def label(self) -> str:
        arch = self.compute_capability.sm if self.compute_capability else (self.gfx or "unknown arch")
        return f"GPU {self.index} {self.name} ({arch})"

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "vendor": self.vendor,
            "name": self.name,
            "compute_capability": str(self.compute_capability) if self.compute_capability else None,
            "gfx": self.gfx,
            "pci_bus_id": self.pci_bus_id,
            "uuid": self.uuid,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Gpu:
        capability = data.get("compute_capability")
        return cls(
            vendor=data["vendor"],
            index=int(data["index"]),
            name=str(data["name"]),
            compute_capability=ComputeCapability.parse(capability) if capability else None,
            gfx=data.get("gfx"),
            pci_bus_id=data.get("pci_bus_id"),
            uuid=data.get("uuid"),
            source=str(data.get("source", "")),
        )


@dataclass(frozen=True)
class Machine:
    """Everything the variant decision needs to know about one machine.

    ``gpus`` holds only the GPUs this process may use (``CUDA_VISIBLE_DEVICES`` applied);
    ``hidden_gpus`` counts the ones the environment hid, so a report can say so.
    ``cuda_driver`` is the newest CUDA the NVIDIA driver supports (``"13.0"``).
    """

    system: str  # "linux", "darwin", "windows"
    arch: str  # "x86_64", "aarch64", "arm64"
    python: str  # "3.11.7"
    gpus: tuple[Gpu, ...] = ()
    driver_version: str | None = None
    cuda_driver: str | None = None
    rocm_version: str | None = None
    hidden_gpus: int = 0
    notes: tuple[str, ...] = field(default=())

    @property
    def nvidia_gpus(self) -> tuple[Gpu, ...]:
        return tuple(gpu for gpu in self.gpus if gpu.vendor == "nvidia")

    @property
    def amd_gpus(self) -> tuple[Gpu, ...]:
        return tuple(gpu for gpu in self.gpus if gpu.vendor == "amd")

    @property
    def platform_tag(self) -> str:
        return f"{self.system}_{self.arch}"

    def to_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "arch": self.arch,
            "python": self.python,
            "driver_version": self.driver_version,
            "cuda_driver": self.cuda_driver,
            "rocm_version": self.rocm_version,
            "gpus": [gpu.to_json() for gpu in self.gpus],
            "hidden_gpus": self.hidden_gpus,
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Machine:
        return cls(
            system=str(data["system"]),
            arch=str(data["arch"]),
            python=str(data["python"]),
            gpus=tuple(Gpu.from_json(gpu) for gpu in data.get("gpus", [])),
            driver_version=data.get("driver_version"),
            cuda_driver=data.get("cuda_driver"),
            rocm_version=data.get("rocm_version"),
            hidden_gpus=int(data.get("hidden_gpus", 0)),
            notes=tuple(data.get("notes", [])),
        )
