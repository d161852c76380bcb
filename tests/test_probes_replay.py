"""Whole machines replayed through read_machine: sysroot fixture trees and a fake nvidia-smi."""

from __future__ import annotations

import ctypes
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import layerenv.machine.reader
from layerenv.choice.table import newest_cuda_for_driver
from layerenv.machine.facts import ComputeCapability, Gpu, Machine
from layerenv.machine.nvml import NvmlDevice, NvmlReading, read_nvml, read_nvml_from
from layerenv.machine.reader import read_machine
from layerenv.machine.run_probe import CommandResult, ProbeFailed, run_command
from tests.support.fake_smi import install_fake_smi, install_fixture_smi

MACHINES = Path(__file__).parent / "fixtures" / "machines"
H100_UUID = "GPU-c8ea2d70-7899-0bb0-f1ff-006c6ba7f34d"
SMI_MISSING = "nvidia-smi not found; compute capability from the model-name table"

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="the fake nvidia-smi is a /bin/sh script")


def which_in(bin_dir: Path) -> Callable[[str], str | None]:
    return lambda name: shutil.which(name, path=str(bin_dir))


def replay(
    machine: str, tmp_path: Path, *, env: dict[str, str] | None = None, arch: str = "x86_64"
) -> Machine:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    install_fixture_smi(bin_dir, MACHINES / machine)
    return read_machine(
        sysroot=MACHINES / machine,
        env=env or {},
        which=which_in(bin_dir),
        system="linux",
        arch=arch,
        python="3.12.3",
        cuda_for_driver=newest_cuda_for_driver,
    )


def summary(gpu: Gpu) -> tuple[str, int, str, str | None, str]:
    arch = str(gpu.compute_capability) if gpu.compute_capability else gpu.gfx
    return (gpu.vendor, gpu.index, gpu.name, arch, gpu.source)


# machine -> (driver, rocm, GPUs as (vendor, index, name, arch, source), notes)
EXPECTED: dict[
    str, tuple[str | None, str | None, list[tuple[str, int, str, str | None, str]], tuple[str, ...]]
] = {
    "h100-580": ("580.159.04", None, [("nvidia", 0, "NVIDIA H100 80GB HBM3", "9.0", "nvidia-smi")], ()),
    "rtx5090-570": ("570.153.02", None, [("nvidia", 0, "NVIDIA GeForce RTX 5090", "12.0", "nvidia-smi")], ()),
    "rtx5090-580": ("580.95.05", None, [("nvidia", 0, "NVIDIA GeForce RTX 5090", "12.0", "nvidia-smi")], ()),
    "gtx1080-580": ("580.95.05", None, [("nvidia", 0, "NVIDIA GeForce GTX 1080", "6.1", "nvidia-smi")], ()),
    "v100-535": (
        "535.247.01",
        None,
        [
            ("nvidia", 0, "Tesla V100-SXM2-32GB", "7.0", "nvidia-smi"),
            ("nvidia", 1, "Tesla V100-SXM2-32GB", "7.0", "nvidia-smi"),
        ],
        (),
    ),
    "a100-470": (
        "470.256.02",
        None,
        [("nvidia", 0, "NVIDIA A100-SXM4-40GB", "8.0", "proc+name-table")],
        (
            'nvidia-smi exited with status 2 (Field "compute_cap" is not a valid field to query.); '
            "compute capability from the model-name table",
        ),
    ),
    "mixed-4090-5090-580": (
        "580.95.05",
        None,
        [
            ("nvidia", 0, "NVIDIA GeForce RTX 4090", "8.9", "nvidia-smi"),
            ("nvidia", 1, "NVIDIA GeForce RTX 5090", "12.0", "nvidia-smi"),
        ],
        (),
    ),
    "gtx750ti-470": (
        "470.256.02",
        None,
        [("nvidia", 0, "NVIDIA GeForce GTX 750 Ti", "5.0", "proc+pci-id")],
        (
            'nvidia-smi exited with status 2 (Field "compute_cap" is not a valid field to query.); '
            "compute capability from the PCI device id",
        ),
    ),
    "quadro-k620-sysfs": (
        "470.256.02",
        None,
        [("nvidia", 0, "Quadro K620", "5.0", "pci-id")],
        ("nvidia-smi not found; compute capability from the PCI device id",),
    ),
    "k80-470": (
        "470.256.02",
        None,
        [("nvidia", 0, "Tesla K80", "3.7", "pci-id"), ("nvidia", 1, "Tesla K80", "3.7", "pci-id")],
        ("nvidia-smi not found; compute capability from the PCI device id",),
    ),
    "a100-h100-mig-580": (
        "580.159.04",
        None,
        [
            ("nvidia", 0, "NVIDIA A100-SXM4-80GB", "8.0", "nvidia-smi"),
            ("nvidia", 1, "NVIDIA H100 80GB HBM3", "9.0", "nvidia-smi"),
        ],
        (),
    ),
    "amd-gfx1031": (None, "6.4.1", [("amd", 0, "navi22", "gfx1031", "kfd")], ()),
    "orin": ("540.4.0", None, [("nvidia", 0, "Orin (nvgpu)", "8.7", "proc+name-table")], (SMI_MISSING,)),
    "amd-gfx1100": (None, "6.4.1", [("amd", 0, "AMD GPU gfx1100", "gfx1100", "kfd")], ()),
    "amd-gfx906": (
        None,
        None,
        [("amd", 0, "vega20", "gfx906", "kfd"), ("amd", 1, "vega20", "gfx906", "kfd")],
        (),
    ),
    "no-gpu": (None, None, [], ()),
}


def test_every_fixture_machine_has_expectations() -> None:
    assert sorted(path.name for path in MACHINES.iterdir() if path.is_dir()) == sorted(EXPECTED)


@posix_only
@pytest.mark.parametrize("machine", sorted(EXPECTED))
def test_replay_machine(machine: str, tmp_path: Path) -> None:
    driver, rocm, gpus, notes = EXPECTED[machine]
    arch = "aarch64" if machine == "orin" else "x86_64"
    result = replay(machine, tmp_path, arch=arch)
    assert [summary(gpu) for gpu in result.gpus] == gpus
    assert result.driver_version == driver
    assert result.rocm_version == rocm
    assert result.notes == notes
    assert result.hidden_gpus == 0
    assert (result.system, result.arch, result.python) == ("linux", arch, "3.12.3")
    if driver is None:
        assert result.cuda_driver is None
    else:
        from layerenv.choice.table import newest_cuda_for_driver

        assert result.cuda_driver == newest_cuda_for_driver(driver)


@posix_only
def test_h100_replay_carries_uuid_bus_and_cuda_13(tmp_path: Path) -> None:
    result = replay("h100-580", tmp_path)
    (gpu,) = result.gpus
    assert gpu.uuid == H100_UUID
    assert gpu.pci_bus_id == "0000:00:06.0"
    assert gpu.compute_capability == ComputeCapability(9, 0)
    assert result.cuda_driver == "13.0"
    assert Machine.from_json(result.to_json()) == result


@posix_only
def test_amd_replay_carries_pci_address_and_uuid(tmp_path: Path) -> None:
    (gpu,) = replay("amd-gfx1100", tmp_path).gpus
    assert gpu.pci_bus_id == "0000:03:00.0"
    assert gpu.uuid == f"GPU-{13135916455462125105:016x}"
    first, second = replay("amd-gfx906", tmp_path / "906").gpus
    assert (first.pci_bus_id, second.pci_bus_id) == ("0000:23:00.0", "0000:43:00.0")


@posix_only
def test_layerenv_sysroot_and_path_drive_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    install_fixture_smi(bin_dir, MACHINES / "v100-535")
    calls: list[str] = []
    monkeypatch.setattr(layerenv.machine.reader, "read_nvml", calls.append)
    with monkeypatch.context() as patch:
        patch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
        patch.setenv("LAYERENV_SYSROOT", str(MACHINES / "v100-535"))
        patch.setenv("CUDA_VISIBLE_DEVICES", "1")
        result = read_machine(system="linux", arch="x86_64")

    assert calls == []  # NVML reads the live machine, never a sysroot
    assert [summary(gpu) for gpu in result.gpus] == [
        ("nvidia", 1, "Tesla V100-SXM2-32GB", "7.0", "nvidia-smi")
    ]
    assert result.gpus[0].uuid == "GPU-9f8e7d6c-0000-1111-2222-333344445555"
    assert result.hidden_gpus == 1
    assert result.driver_version == "535.247.01"


@posix_only
def test_layerenv_sysroot_in_a_given_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(layerenv.machine.reader, "read_nvml", calls.append)
    env = {"LAYERENV_SYSROOT": str(MACHINES / "orin")}
    result = read_machine(env=env, which=lambda name: None, system="linux", arch="aarch64")
    assert calls == []
    assert [summary(gpu) for gpu in result.gpus] == [("nvidia", 0, "Orin (nvgpu)", "8.7", "proc+name-table")]


@posix_only
def test_a_hung_nvidia_smi_times_out_and_the_name_table_answers(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    install_fake_smi(bin_dir, hang=True)
    started = time.monotonic()
    result = read_machine(
        sysroot=MACHINES / "h100-580", env={}, which=which_in(bin_dir), system="linux", arch="x86_64"
    )
    elapsed = time.monotonic() - started
    assert 2.5 < elapsed < 5.0
    assert [summary(gpu) for gpu in result.gpus] == [
        ("nvidia", 0, "NVIDIA H100 80GB HBM3", "9.0", "proc+name-table")
    ]
    assert result.gpus[0].uuid == H100_UUID
    assert result.notes == ("nvidia-smi timed out after 3.0 s; compute capability from the model-name table",)
    assert result.driver_version == "580.159.04"
    assert not _alive(int((bin_dir / "nvidia-smi.grandchild").read_text()))


@posix_only
def test_junk_from_nvidia_smi_falls_back_with_a_note(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    install_fake_smi(bin_dir, stdout=b"\xff\xfe\x00\x81garbage\nNVIDIA-SMI has failed\n\xc3\x28, , ,\n")
    result = read_machine(
        sysroot=MACHINES / "mixed-4090-5090-580",
        env={},
        which=which_in(bin_dir),
        system="linux",
        arch="x86_64",
    )
    assert [summary(gpu) for gpu in result.gpus] == [
        ("nvidia", 0, "NVIDIA GeForce RTX 4090", "8.9", "proc+name-table"),
        ("nvidia", 1, "NVIDIA GeForce RTX 5090", "12.0", "proc+name-table"),
    ]
    assert [gpu.pci_bus_id for gpu in result.gpus] == ["0000:01:00.0", "0000:02:00.0"]
    assert result.notes == ("nvidia-smi printed no GPU rows; compute capability from the model-name table",)


@posix_only
def test_smi_without_compute_capability_is_completed_from_the_name_table(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    install_fake_smi(
        bin_dir, stdout=b"0, Tesla V100-SXM2-32GB, [N/A], 535.247.01, 00000000:3B:00.0, GPU-0e1f\n"
    )
    result = read_machine(
        sysroot=MACHINES / "v100-535", env={}, which=which_in(bin_dir), system="linux", arch="x86_64"
    )
    assert [summary(gpu) for gpu in result.gpus] == [
        ("nvidia", 0, "Tesla V100-SXM2-32GB", "7.0", "nvidia-smi")
    ]
    assert result.notes == (
        "nvidia-smi gave no compute capability for GPU 0 Tesla V100-SXM2-32GB: 7.0 from the model-name table",
    )


@posix_only
def test_unknown_model_keeps_the_gpu_without_capability(tmp_path: Path) -> None:
    sysroot = tmp_path / "root"
    shutil.copytree(MACHINES / "h100-580", sysroot)
    information = sysroot / "proc/driver/nvidia/gpus/0000:00:06.0/information"
    information.write_text(information.read_text().replace("NVIDIA H100 80GB HBM3", "NVIDIA Graphics Device"))
    result = read_machine(sysroot=sysroot, env={}, which=lambda name: None, system="linux", arch="x86_64")
    (gpu,) = result.gpus
    assert (gpu.name, gpu.compute_capability, gpu.source) == (
        "NVIDIA Graphics Device",
        None,
        "proc+name-table",
    )
    assert result.notes == (
        SMI_MISSING,
        "GPU 0 NVIDIA Graphics Device: compute capability unknown (no known PCI device id, not in the model-name table)",
    )


@posix_only
def test_no_driver_in_the_sysroot_means_nvidia_smi_is_not_asked(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    install_fixture_smi(bin_dir, MACHINES / "h100-580")
    asked: list[str] = []

    def which(name: str) -> str | None:
        asked.append(name)
        return which_in(bin_dir)(name)

    result = read_machine(sysroot=MACHINES / "no-gpu", env={}, which=which, system="linux", arch="x86_64")
    assert (result.gpus, result.driver_version, result.notes, asked) == ((), None, (), [])


@posix_only
def test_cuda_visible_devices_through_read_machine(tmp_path: Path) -> None:
    result = replay("mixed-4090-5090-580", tmp_path, env={"CUDA_VISIBLE_DEVICES": "GPU-5090"})
    assert [summary(gpu) for gpu in result.gpus] == [
        ("nvidia", 1, "NVIDIA GeForce RTX 5090", "12.0", "nvidia-smi")
    ]
    assert (result.hidden_gpus, result.notes) == (1, ())

    result = replay("mixed-4090-5090-580", tmp_path / "again", env={"CUDA_VISIBLE_DEVICES": ""})
    assert (result.gpus, result.hidden_gpus) == ((), 2)
    assert result.driver_version == "580.95.05"


@posix_only
def test_rocr_visible_devices_through_read_machine(tmp_path: Path) -> None:
    result = replay("amd-gfx906", tmp_path, env={"ROCR_VISIBLE_DEVICES": "1"})
    assert [summary(gpu) for gpu in result.gpus] == [("amd", 1, "vega20", "gfx906", "kfd")]
    assert result.hidden_gpus == 1


def test_apple_silicon_machine() -> None:
    result = read_machine(
        sysroot=MACHINES / "no-gpu", env={}, which=lambda name: None, system="Darwin", arch="arm64"
    )
    assert (result.system, result.arch) == ("darwin", "arm64")
    assert [summary(gpu) for gpu in result.gpus] == [
        ("apple", 0, "Apple silicon GPU (MPS)", None, "platform")
    ]


# --- the live path (sysroot "/"), with NVML stood in ---------------------------------------------

H100_NVML = NvmlReading(
    driver_version="580.159.04",
    cuda_driver="13.0",
    devices=(NvmlDevice(0, "NVIDIA H100 80GB HBM3", ComputeCapability(9, 0), "00000000:00:06.0", H100_UUID),),
)


def test_live_machine_prefers_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layerenv.machine.reader, "read_nvml", lambda library: H100_NVML)
    asked: list[str] = []
    result = read_machine(env={}, which=asked.append, system="linux", arch="x86_64")
    assert [summary(gpu) for gpu in result.gpus] == [("nvidia", 0, "NVIDIA H100 80GB HBM3", "9.0", "nvml")]
    assert result.gpus[0].pci_bus_id == "0000:00:06.0"
    assert result.cuda_driver == "13.0"
    assert result.driver_version is not None
    assert asked == []  # NVML answered: no nvidia-smi


def test_live_machine_nvml_without_cuda_version_asks_the_matrix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layerenv.machine.reader, "read_nvml", lambda library: H100_NVML._replace(cuda_driver=None))
    result = read_machine(
        env={}, which=lambda name: None, system="linux", arch="x86_64", cuda_for_driver=newest_cuda_for_driver
    )
    assert result.cuda_driver == "13.0"
    unnamed = read_machine(env={}, which=lambda name: None, system="linux", arch="x86_64")
    assert unnamed.cuda_driver is None  # no table given: nothing guessed


def test_live_machine_without_nvml_smi_or_driver_has_no_nvidia(monkeypatch: pytest.MonkeyPatch) -> None:
    if Path("/sys/module/nvidia/version").exists() or Path("/proc/driver/nvidia/version").exists():
        pytest.skip("this machine has an NVIDIA driver")
    monkeypatch.setattr(layerenv.machine.reader, "read_nvml", lambda library: None)
    result = read_machine(env={}, which=lambda name: None, system="linux", arch="x86_64")
    assert (result.nvidia_gpus, result.driver_version, result.notes) == ((), None, ())


# --- NVML through ctypes, with a stand-in library ----------------------------------------------


class FakeNvml:
    """Answers like the H100 machine's libnvidia-ml.so.1; ``fail`` names a call that errors."""

    def __init__(self, fail: str = "") -> None:
        self.fail = fail
        self.shutdowns = 0

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)

    def _status(self, call: str) -> int:
        return 999 if call == self.fail else 0

    def nvmlInit_v2(self) -> int:
        return self._status("init")

    def nvmlShutdown(self) -> int:
        self.shutdowns += 1
        return 0

    def nvmlSystemGetDriverVersion(self, buffer: Any, length: Any) -> int:
        buffer.value = b"580.159.04"
        return self._status("driver")

    def nvmlSystemGetCudaDriverVersion_v2(self, pointer: Any) -> int:
        pointer.contents.value = 13000
        return self._status("cuda")

    def nvmlDeviceGetCount_v2(self, pointer: Any) -> int:
        pointer.contents.value = 1
        return self._status("count")

    def nvmlDeviceGetHandleByIndex_v2(self, index: Any, pointer: Any) -> int:
        pointer.contents.value = 0x1000 + index.value
        return self._status("handle")

    def nvmlDeviceGetName(self, handle: Any, buffer: Any, length: Any) -> int:
        buffer.value = b"NVIDIA H100 80GB HBM3"
        return self._status("name")

    def nvmlDeviceGetCudaComputeCapability(self, handle: Any, major: Any, minor: Any) -> int:
        major.contents.value, minor.contents.value = 9, 0
        return self._status("capability")

    def nvmlDeviceGetPciInfo_v3(self, handle: Any, pointer: Any) -> int:
        pointer.contents.busId = b"00000000:00:06.0"
        return self._status("pci")

    def nvmlDeviceGetUUID(self, handle: Any, buffer: Any, length: Any) -> int:
        buffer.value = H100_UUID.encode()
        return self._status("uuid")


def test_nvml_reading_of_an_h100() -> None:
    lib = FakeNvml()
    assert read_nvml_from(lib) == H100_NVML
    assert lib.shutdowns == 1


@pytest.mark.parametrize("call", ["driver", "count", "handle", "name", "capability"])
def test_nvml_failure_gives_none_and_still_shuts_down(call: str) -> None:
    lib = FakeNvml(fail=call)
    assert read_nvml_from(lib) is None
    assert lib.shutdowns == 1


def test_nvml_optional_calls_leave_fields_empty() -> None:
    reading = read_nvml_from(FakeNvml(fail="cuda"))
    assert reading is not None and reading.cuda_driver is None
    reading = read_nvml_from(FakeNvml(fail="pci"))
    assert reading is not None and reading.devices[0].pci_bus_id is None
    reading = read_nvml_from(FakeNvml(fail="uuid"))
    assert reading is not None and reading.devices[0].uuid is None


def test_nvml_init_failure_or_missing_symbol_gives_none() -> None:
    lib = FakeNvml(fail="init")
    assert read_nvml_from(lib) is None
    assert lib.shutdowns == 0
    assert read_nvml_from(object()) is None


def test_nvml_missing_library_gives_none() -> None:
    assert read_nvml("libnvidia-ml-that-does-not-exist.so.1") is None


def test_nvml_on_this_machine_reads_its_gpus() -> None:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        pytest.skip("no libnvidia-ml.so.1 here (no NVIDIA driver); the missing-library case is its own test")
    reading = read_nvml()
    assert reading is not None
    assert all(device.compute_capability.major >= 3 for device in reading.devices)


# --- run_command --------------------------------------------------------------------------------


@posix_only
def test_run_command_returns_status_and_decoded_output(tmp_path: Path) -> None:
    script = install_fake_smi(tmp_path, stdout=b"caf\xc3\xa9 \xff\n", exit_code=3)
    assert run_command([str(script)], 5.0) == CommandResult(3, "caf\u00e9 \ufffd\n", "")


def test_run_command_missing_program() -> None:
    with pytest.raises(ProbeFailed, match=r"^could not run no-such-program-xyz: "):
        run_command(["/nonexistent/no-such-program-xyz"], 1.0)


@posix_only
def test_run_command_kills_a_hung_child_and_its_grandchildren(tmp_path: Path) -> None:
    script = install_fake_smi(tmp_path, hang=True)
    started = time.monotonic()
    with pytest.raises(ProbeFailed, match=r"^nvidia-smi timed out after 0\.5 s$"):
        run_command([str(script)], 0.5)
    assert time.monotonic() - started < 3.0
    assert not _alive(int((tmp_path / "nvidia-smi.grandchild").read_text()))


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie awaiting its new parent's reaping counts as dead)."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        stat = Path(f"/proc/{pid}/stat")
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return False
        except (OSError, IndexError):
            return False
        time.sleep(0.05)
    return True
