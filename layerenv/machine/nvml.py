"""NVIDIA facts from NVML (``libnvidia-ml``) through ctypes: in-process, about 20 ms, no subprocess.

Any failure (library missing, symbol missing, an NVML error code) yields ``None`` so the caller
can fall back to ``nvidia-smi``; nothing here raises.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import cache
from typing import Any, NamedTuple

from layerenv.machine.facts import ComputeCapability

NVML_SUCCESS = 0
_STRING_BUFFER = 96  # NVML_DEVICE_NAME_V2_BUFFER_SIZE, also enough for versions and UUIDs


@dataclass(frozen=True)
class NvmlDevice:
    index: int
    name: str
    compute_capability: ComputeCapability
    pci_bus_id: str | None
    uuid: str | None


class NvmlReading(NamedTuple):
    driver_version: str | None
    cuda_driver: str | None
    devices: tuple[NvmlDevice, ...]


class _NvmlError(Exception):
    pass


def format_cuda_driver_version(value: int) -> str | None:
    """NVML's integer CUDA version as ``MAJOR.MINOR``: 13000 -> ``"13.0"``, 12020 -> ``"12.2"``."""
    if value <= 0:
        return None
    return f"{value // 1000}.{value % 1000 // 10}"


def default_library(system: str) -> str | None:
    if system == "linux":
        return "libnvidia-ml.so.1"
    if system == "windows":
        return "nvml.dll"
    return None


def read_nvml(library: str = "libnvidia-ml.so.1") -> NvmlReading | None:
    """Load ``library`` and read the driver and every device, or ``None`` if anything fails."""
    import ctypes

    try:
        lib = ctypes.CDLL(library)
    except OSError:
        return None
    return read_nvml_from(lib)


def read_nvml_from(lib: Any) -> NvmlReading | None:
    """Read from an already loaded NVML library object (a ``ctypes.CDLL`` or a stand-in)."""
    try:
        if lib.nvmlInit_v2() != NVML_SUCCESS:
            return None
    except Exception:  # a foreign library: whatever goes wrong means "fall back"
        return None
    try:
        return _read(lib)
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            lib.nvmlShutdown()


def _check(code: int) -> None:
    if code != NVML_SUCCESS:
        raise _NvmlError(code)


def _read(lib: Any) -> NvmlReading:
    import ctypes

    version = ctypes.create_string_buffer(_STRING_BUFFER)
    _check(lib.nvmlSystemGetDriverVersion(version, ctypes.c_uint(_STRING_BUFFER)))
    cuda = ctypes.c_int(0)
    cuda_driver = None
    if lib.nvmlSystemGetCudaDriverVersion_v2(ctypes.pointer(cuda)) == NVML_SUCCESS:
        cuda_driver = format_cuda_driver_version(cuda.value)
    count = ctypes.c_uint(0)
    _check(lib.nvmlDeviceGetCount_v2(ctypes.pointer(count)))
    devices = tuple(_read_device(lib, index) for index in range(count.value))
    return NvmlReading(
        driver_version=_decode(version.value) or None,
        cuda_driver=cuda_driver,
        devices=devices,
    )


def _read_device(lib: Any, index: int) -> NvmlDevice:
    import ctypes

    handle = ctypes.c_void_p()
    _check(lib.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(index), ctypes.pointer(handle)))
    name = ctypes.create_string_buffer(_STRING_BUFFER)
    _check(lib.nvmlDeviceGetName(handle, name, ctypes.c_uint(_STRING_BUFFER)))
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    _check(lib.nvmlDeviceGetCudaComputeCapability(handle, ctypes.pointer(major), ctypes.pointer(minor)))
    pci = _pci_info_type()()
    bus_id = None
    if lib.nvmlDeviceGetPciInfo_v3(handle, ctypes.pointer(pci)) == NVML_SUCCESS:
        bus_id = _decode(pci.busId) or None
    uuid = ctypes.create_string_buffer(_STRING_BUFFER)
    uuid_text = None
    if lib.nvmlDeviceGetUUID(handle, uuid, ctypes.c_uint(_STRING_BUFFER)) == NVML_SUCCESS:
        uuid_text = _decode(uuid.value) or None
    return NvmlDevice(
        index=index,
        name=_decode(name.value),
        compute_capability=ComputeCapability(major.value, minor.value),
        pci_bus_id=bus_id,
        uuid=uuid_text,
    )


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").strip()


@cache
def _pci_info_type() -> type[Any]:
    """``nvmlPciInfo_t`` as filled by ``nvmlDeviceGetPciInfo_v3``, built on first use."""
    import ctypes

    class PciInfo(ctypes.Structure):
        _fields_ = [
            ("busIdLegacy", ctypes.c_char * 16),
            ("domain", ctypes.c_uint),
            ("bus", ctypes.c_uint),
            ("device", ctypes.c_uint),
            ("pciDeviceId", ctypes.c_uint),
            ("pciSubSystemId", ctypes.c_uint),
            ("busId", ctypes.c_char * 32),
        ]

    return PciInfo
