"""GPUs the runtime sees differently from the hardware list: MIG slices and ROCm's gfx override."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from layerenv.choice.decide import Policy, choose
from layerenv.choice.table import load_matrix, newest_cuda_for_driver
from layerenv.machine.amd import parse_gfx_override
from layerenv.machine.facts import ComputeCapability, Machine
from layerenv.machine.nvidia import parse_smi_list
from layerenv.machine.reader import read_machine
from tests.support.fake_smi import install_fixture_smi

MACHINES = Path(__file__).parent / "fixtures" / "machines"
H100_SLICE = "MIG-0b0b0b0b-2222-5eed-9999-000000000002"
A100_SLICE = "MIG-0a0a0a0a-1111-5eed-9999-000000000001"


def replay(machine: str, tmp_path: Path, env: dict[str, str], *, with_gpu_list: bool = True) -> Machine:
    sysroot = MACHINES / machine
    if not with_gpu_list:
        sysroot = tmp_path / "root"
        shutil.copytree(MACHINES / machine, sysroot)
        (sysroot / "nvidia-smi.list").unlink(missing_ok=True)
    bin_dir = tmp_path / "bin"
    install_fixture_smi(bin_dir, sysroot)
    return read_machine(sysroot=sysroot, env=env, which=lambda name: shutil.which(name, path=str(bin_dir)),
                        system="linux", arch="x86_64", python="3.12.3", cuda_for_driver=newest_cuda_for_driver)


def test_smi_list_maps_each_mig_instance_to_its_parent() -> None:
    text = (MACHINES / "a100-h100-mig-580" / "nvidia-smi.list").read_text()
    assert parse_smi_list(text) == {
        A100_SLICE.lower(): "gpu-a100a100-5800-5800-5800-a100a100a100",
        H100_SLICE.lower(): "gpu-c100c100-5800-5800-5800-c100c100c100",
        "mig-0b0b0b0b-2222-5eed-9999-000000000003": "gpu-c100c100-5800-5800-5800-c100c100c100",
    }
    assert parse_smi_list("No devices were found\n") == {}


@pytest.mark.parametrize(("slice_uuid", "gpu", "capability", "variant"), [
    (H100_SLICE, "NVIDIA H100 80GB HBM3", ComputeCapability(9, 0), "cu132"),
    (A100_SLICE, "NVIDIA A100-SXM4-80GB", ComputeCapability(8, 0), "cu132"),
])
def test_a_mig_slice_counts_as_its_parent_gpu(tmp_path: Path, slice_uuid: str, gpu: str,
                                            capability: ComputeCapability, variant: str) -> None:
    machine = replay("a100-h100-mig-580", tmp_path, {"CUDA_VISIBLE_DEVICES": slice_uuid})
    assert [(g.name, g.compute_capability) for g in machine.gpus] == [(gpu, capability)]
    assert machine.hidden_gpus == 1
    assert any("is a MIG instance: a slice of GPU" in note for note in machine.notes)
    decision = choose(machine, Policy(), load_matrix())
    assert (decision.variant.name, decision.served) == (variant, machine.gpus)


def test_the_old_mig_gpu_uuid_form_names_its_parent(tmp_path: Path) -> None:
    machine = replay("a100-h100-mig-580", tmp_path,
                     {"CUDA_VISIBLE_DEVICES": "MIG-GPU-c100c100-5800-5800-5800-c100c100c100/1/0"},
                     with_gpu_list=False)
    assert [g.name for g in machine.gpus] == ["NVIDIA H100 80GB HBM3"]


def test_an_unlisted_slice_on_gpus_of_one_capability_takes_that_capability(tmp_path: Path) -> None:
    machine = replay("v100-535", tmp_path, {"CUDA_VISIBLE_DEVICES": "MIG-ffffffff-0000-1111-2222-333344445555"})
    assert [g.compute_capability for g in machine.gpus] == [ComputeCapability(7, 0)]
    assert any("every GPU here is compute capability 7.0" in note for note in machine.notes)
    assert choose(machine, Policy(), load_matrix()).variant.kind == "cuda"


def test_an_unlisted_slice_on_mixed_gpus_is_not_guessed(tmp_path: Path) -> None:
    machine = replay("a100-h100-mig-580", tmp_path, {"CUDA_VISIBLE_DEVICES": H100_SLICE}, with_gpu_list=False)
    assert machine.gpus == ()
    assert any("MIG instance of an unidentified GPU" in note for note in machine.notes)
    assert choose(machine, Policy(), load_matrix()).variant.name == "cpu"


@pytest.mark.parametrize(("value", "target"), [
    ("10.3.0", "gfx1030"), ("11.0.0", "gfx1100"), ("9.0.6", "gfx906"), ("9.0.10", "gfx90a"),
    ("10.3", None), ("banana", None), ("0.0.0", None), ("10.16.0", None),
])
def test_parse_gfx_override(value: str, target: str | None) -> None:
    assert parse_gfx_override(value) == target


def test_a_gfx1031_card_runs_rocm_builds_under_the_override_and_the_reasons_say_so(tmp_path: Path) -> None:
    plain = read_machine(sysroot=MACHINES / "amd-gfx1031", env={}, which=lambda name: None,
                         system="linux", arch="x86_64", python="3.12.3")
    assert [g.gfx for g in plain.gpus] == ["gfx1031"]
    assert choose(plain, Policy(), load_matrix()).variant.name == "cpu"

    overridden = read_machine(sysroot=MACHINES / "amd-gfx1031", env={"HSA_OVERRIDE_GFX_VERSION": "10.3.0"},
                              which=lambda name: None, system="linux", arch="x86_64", python="3.12.3")
    assert [g.gfx for g in overridden.gpus] == ["gfx1030"]
    decision = choose(overridden, Policy(), load_matrix())
    assert decision.variant.kind == "rocm"
    assert decision.served == overridden.gpus
    assert any("the card is gfx1031, run as gfx1030 by HSA_OVERRIDE_GFX_VERSION=10.3.0" in reason
               for reason in decision.reasons)


def test_a_malformed_gfx_override_is_named_and_ignored() -> None:
    machine = read_machine(sysroot=MACHINES / "amd-gfx1031", env={"HSA_OVERRIDE_GFX_VERSION": "10.3"},
                           which=lambda name: None, system="linux", arch="x86_64", python="3.12.3")
    assert [g.gfx for g in machine.gpus] == ["gfx1031"]
    assert "HSA_OVERRIDE_GFX_VERSION='10.3' is not a version such as 10.3.0; ignored" in machine.notes
