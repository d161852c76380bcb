"""GPUs that no driver tool describes: the compute capability from the PCI device id.

Replays of machines whose driver predates ``compute_cap`` in nvidia-smi (R470) or that show the GPU
only in sysfs, and checks of the device-id table itself.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from layerenv.choice.coverage import serves
from layerenv.choice.decide import Policy, choose
from layerenv.choice.table import load_matrix, newest_cuda_for_driver
from layerenv.machine.facts import ComputeCapability, Gpu
from layerenv.machine.pci import (
    CHIP_CAPABILITY,
    chip_family,
    describe_device,
    device_table,
    parse_hex,
    read_pci_gpus,
)
from layerenv.machine.reader import read_machine
from tests.support.fake_smi import install_fixture_smi

MACHINES = Path(__file__).parent / "fixtures" / "machines"


def replay(sysroot: Path, tmp_path: Path) -> object:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    install_fixture_smi(bin_dir, sysroot)
    return read_machine(
        sysroot=sysroot,
        env={},
        which=lambda name: shutil.which(name, path=str(bin_dir)),
        system="linux",
        arch="x86_64",
        python="3.11.7",
        cuda_for_driver=newest_cuda_for_driver,
    )


def test_parse_hex_and_chip_family() -> None:
    assert parse_hex("0x10de\n") == 0x10DE
    assert parse_hex("garbage") is None
    assert parse_hex(None) is None
    assert chip_family("GM107GL [Quadro K620]") == "GM107"
    assert chip_family("GK110B [GeForce GTX 780 Ti]") == "GK110"
    assert chip_family("GB10B [Jetson AGX Thor]") == "GB10B"
    assert chip_family("GB100 [B200]") == "GB100"
    assert chip_family("GB20B [GB10]") == "GB20B"
    assert chip_family("MCP79 SMBus") is None


@pytest.mark.parametrize(
    ("device_id", "chip", "capability"),
    [
        (0x1380, "GM107", "5.0"),  # GeForce GTX 750 Ti (Maxwell)
        (0x11C7, "GK106", "3.0"),  # GeForce GTX 750 Ti too, a Kepler: the name alone cannot tell
        (0x13BB, "GM107", "5.0"),  # Quadro K620
        (0x13BD, "GM107", "5.0"),  # Tesla M10
        (0x102D, "GK210", "3.7"),  # Tesla K80
        (0x1B80, "GP104", "6.1"),  # GeForce GTX 1080
        (0x1DB1, "GV100", "7.0"),  # Tesla V100 SXM2 16GB
        (0x2684, "AD102", "8.9"),  # GeForce RTX 4090
        (0x2330, "GH100", "9.0"),  # H100 SXM5 80GB
        (0x2B85, "GB202", "12.0"),  # GeForce RTX 5090
        (0x3182, "GB110", "10.3"),  # B300
        (0x2E12, "GB20B", "12.1"),  # GB10 (DGX Spark)
    ],
)
def test_known_devices(device_id: int, chip: str, capability: str) -> None:
    described = describe_device(device_id)
    assert (described.chip, described.compute_capability) == (chip, ComputeCapability.parse(capability))


def test_every_device_in_the_table_has_a_capability_the_arch_tables_judge() -> None:
    """Each id names a known chip; each chip's capability is served by some build in the release
    table, or is a Kepler the builds left behind: only the K80's GK210 (3.7) has sm_37 kernels, in
    the cu118 builds of torch 2.5-2.7; sm_30/sm_35 were never in these releases."""
    table = device_table()
    assert len(table) > 700
    built = {arch for release in load_matrix().releases for build in release.builds
             for arch in (*build.archs, *(build.aarch64_archs or ()))}
    for device_id, name in table.items():
        chip = chip_family(name)
        assert chip is not None, f"{device_id:04x} {name}"
        capability = ComputeCapability.parse(CHIP_CAPABILITY[chip])
        gpu = Gpu("nvidia", 0, name, capability)
        if capability.major >= 5 or capability == ComputeCapability(3, 7):
            assert serves(built, gpu) is not None, f"{device_id:04x} {name}: {capability} served by no build"
        else:
            assert serves(built, gpu) is None


def test_maxwell_on_an_r470_driver_is_identified_by_its_pci_id(tmp_path: Path) -> None:
    machine = replay(MACHINES / "gtx750ti-470", tmp_path)
    (gpu,) = machine.gpus  # type: ignore[attr-defined]
    assert (gpu.name, gpu.compute_capability, gpu.source) == (
        "NVIDIA GeForce GTX 750 Ti", ComputeCapability(5, 0), "proc+pci-id")
    decision = choose(machine, Policy(), load_matrix())  # type: ignore[arg-type]
    assert (decision.variant.name, decision.torch_series[0]) == ("cu118", "2.7")
    assert decision.served == machine.gpus  # type: ignore[attr-defined]
    assert any("compute capability 5.0 (from proc+pci-id)" in reason for reason in decision.reasons)


def test_without_the_pci_id_the_same_gpu_is_unknown_and_the_machine_gets_cpu(tmp_path: Path) -> None:
    sysroot = tmp_path / "root"
    shutil.copytree(MACHINES / "gtx750ti-470", sysroot)
    shutil.rmtree(sysroot / "sys" / "bus")
    machine = replay(sysroot, tmp_path)
    (gpu,) = machine.gpus  # type: ignore[attr-defined]
    assert gpu.compute_capability is None
    assert choose(machine, Policy(), load_matrix()).variant.name == "cpu"  # type: ignore[arg-type]


def test_a_gpu_seen_only_in_sysfs_is_listed_from_pci(tmp_path: Path) -> None:
    machine = replay(MACHINES / "quadro-k620-sysfs", tmp_path)
    assert [(g.name, g.compute_capability, g.pci_bus_id, g.source) for g in machine.gpus] == [  # type: ignore[attr-defined]
        ("Quadro K620", ComputeCapability(5, 0), "0000:02:00.0", "pci-id")
    ]  # the card's audio function (class 0x0403) is not a GPU
    decision = choose(machine, Policy(), load_matrix())  # type: ignore[arg-type]
    assert (decision.variant.name, decision.torch_series[0]) == ("cu118", "2.7")


def test_kepler_k80_on_an_r470_driver_gets_cu118_torch_2_7_through_sm_37(tmp_path: Path) -> None:
    machine = replay(MACHINES / "k80-470", tmp_path)
    assert [(g.name, g.compute_capability, g.pci_bus_id, g.source) for g in machine.gpus] == [  # type: ignore[attr-defined]
        ("Tesla K80", ComputeCapability(3, 7), "0000:05:00.0", "pci-id"),
        ("Tesla K80", ComputeCapability(3, 7), "0000:06:00.0", "pci-id"),
    ]  # one board, two GK210 GPUs behind its PCIe switch
    decision = choose(machine, Policy(), load_matrix())  # type: ignore[arg-type]
    assert (decision.variant.name, decision.torch_series) == ("cu118", ("2.7", "2.6", "2.5"))
    assert decision.served == machine.gpus and "sm_37" in decision.archs  # type: ignore[attr-defined]
    assert any("compute capability 3.7 (from pci-id)" in reason for reason in decision.reasons)
    assert "torch 2.7 cu118: the newest release, then the newest CUDA, that serves 2 of 2 GPU(s)" in decision.reasons


def test_the_same_k80_on_a_driver_too_old_for_cuda_11_8_gets_cpu_naming_kepler(tmp_path: Path) -> None:
    sysroot = tmp_path / "root"
    shutil.copytree(MACHINES / "k80-470", sysroot)
    (sysroot / "sys" / "module" / "nvidia" / "version").write_text("418.226.00\n")
    (sysroot / "proc" / "driver" / "nvidia" / "version").write_text(
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  418.226.00  Mon Jan  3 11:03:40 UTC 2022\n")
    machine = replay(sysroot, tmp_path)
    decision = choose(machine, Policy(), load_matrix())  # type: ignore[arg-type]
    assert decision.variant.name == "cpu" and len(decision.unserved) == 2
    assert all("Kepler: torch 2.7 cu118 is the newest build with sm_37 kernels (it needs driver >= 450.80.02)"
               in item.why for item in decision.unserved)


def test_read_pci_gpus_skips_other_vendors_and_unreadable_entries(tmp_path: Path) -> None:
    devices = tmp_path / "sys" / "bus" / "pci" / "devices"
    for bus, vendor, device, klass in [("0000:00:02.0", "0x8086", "0x9a49", "0x030000"),
                                       ("0000:01:00.0", "0x10de", "0x2684", "0x030000"),
                                       ("0000:02:00.0", "0x10de", "not-hex", "0x030200")]:
        (devices / bus).mkdir(parents=True)
        (devices / bus / "vendor").write_text(vendor)
        (devices / bus / "device").write_text(device)
        (devices / bus / "class").write_text(klass)
    (devices / "0000:03:00.0").mkdir()
    assert [(gpu.bus_id, gpu.chip) for gpu in read_pci_gpus(tmp_path)] == [("0000:01:00.0", "AD102")]
