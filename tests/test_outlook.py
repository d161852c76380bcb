"""detect says what limits the machine's choice and what would lift it (choice.outlook)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from layerenv.choice.decide import Policy, choose
from layerenv.choice.outlook import outlook
from layerenv.choice.table import load_matrix
from layerenv.machine.facts import ComputeCapability, Gpu, Machine
from tests.support.cli import layerenv_env, run_layerenv

MATRIX = load_matrix()


def nvidia(driver: str, name: str, capability: str, count: int = 1) -> Machine:
    gpus = tuple(Gpu("nvidia", index, name, ComputeCapability.parse(capability)) for index in range(count))
    return Machine("linux", "x86_64", "3.12.3", gpus, driver, MATRIX.newest_cuda_for_driver(driver))


def lines_for(machine: Machine, policy: Policy | None = None) -> tuple[str, ...]:
    policy = policy or Policy()
    return outlook(machine, choose(machine, policy, MATRIX), policy, MATRIX)


def test_an_old_driver_is_named_with_the_driver_that_lifts_it() -> None:
    assert lines_for(nvidia("570.153.02", "NVIDIA GeForce RTX 5090", "12.0")) == (
        "driver 570.153.02 limits this machine to CUDA 12.8 -> torch 2.13; "
        "driver >= 580.65.06 gets torch 2.15 cu132",
    )


def test_a_gpu_leaving_pytorchs_builds_is_named_once_per_model() -> None:
    assert lines_for(nvidia("580.95.05", "NVIDIA GeForce GTX 1080", "6.1", count=2)) == (
        "NVIDIA GeForce GTX 1080 (sm_61) is served only by cu126 builds; torch 2.15 has none, "
        "so this machine stays on torch 2.14",
    )


def test_both_limits_at_once() -> None:
    lines = lines_for(nvidia("470.256.02", "NVIDIA GeForce GTX 750 Ti", "5.0"))
    assert lines == (
        "driver 470.256.02 limits this machine to CUDA 11.4 -> torch 2.7; driver >= 525.60.13 gets torch 2.14 cu126",
        "NVIDIA GeForce GTX 750 Ti (sm_50) is served only by cu126 builds; torch 2.15 has none, "
        "so this machine stays on torch 2.14",
    )


def test_a_k80_stays_on_torch_2_7_and_no_driver_lifts_it() -> None:
    # only the cu118 builds of 2.5-2.7 carry sm_37; a newer driver reaches no build that serves it
    assert lines_for(nvidia("470.256.02", "Tesla K80", "3.7", count=2)) == (
        "Tesla K80 (sm_37) is served only by cu118 builds; torch 2.15 has none, so this machine stays on torch 2.7",
    )


@pytest.mark.parametrize("policy", [Policy(variant="cu128"), Policy(torch_pin="2.11.*")])
def test_nothing_is_said_when_the_user_pinned_the_choice(policy: Policy) -> None:
    assert lines_for(nvidia("570.153.02", "NVIDIA GeForce RTX 5090", "12.0"), policy) == ()


def test_nothing_limits_a_current_machine() -> None:
    assert lines_for(nvidia("580.159.04", "NVIDIA H100 80GB HBM3", "9.0")) == ()
    assert lines_for(Machine("linux", "x86_64", "3.12.3", ())) == ()


def test_detect_prints_the_outlook_in_its_summary_and_json(tmp_path: Path) -> None:
    env = layerenv_env(tmp_path / "home", base_env={"PATH": "/usr/bin:/bin"}, machine="rtx5090-570")
    summary = run_layerenv(["detect"], env, tmp_path)
    assert summary.returncode == 0, summary.stderr
    assert ("outlook\n  - driver 570.153.02 limits this machine to CUDA 12.8 -> torch 2.13; "
            "driver >= 580.65.06 gets torch 2.15 cu132") in summary.stdout
    document = json.loads(run_layerenv(["detect", "--json"], env, tmp_path).stdout)
    assert document["outlook"] == [
        "driver 570.153.02 limits this machine to CUDA 12.8 -> torch 2.13; driver >= 580.65.06 gets torch 2.15 cu132"
    ]
