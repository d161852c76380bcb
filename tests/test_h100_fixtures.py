"""Facts read off a real NVIDIA H100 machine (tests/fixtures/h100/, captured 2026-11-25).

These files are real outputs, not synthetic: ``detect.json`` is ``layerenv detect --json`` there,
``adopt-manifest.json`` the manifest ``layerenv base --adopt /opt/torch/.venv`` published, and
``smi.txt``/``raw.txt`` what ``nvidia-smi`` and the driver's files said. See the README beside them.
The tests here run layerenv's parsers, decision and round trips over them; what the captures
themselves say (the GPU, the adopted torch, a kernel ran) is checked by ``scripts/check_fixtures.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from layerenv.choice.coverage import serves
from layerenv.choice.decide import Policy, choose, driver_supports
from layerenv.choice.table import load_matrix
from layerenv.machine.facts import ComputeCapability, Machine
from layerenv.machine.nvidia import (
    parse_gpu_information,
    parse_module_version,
    parse_proc_version,
    parse_smi_query,
)

FIXTURES = Path(__file__).parent / "fixtures" / "h100"
DRIVER = "580.159.04"
GPU_NAME = "NVIDIA H100 80GB HBM3"
UUID = "GPU-d9ef7aab-2637-94de-7775-21180b68ce11"


def _json(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def detected() -> dict[str, Any]:
    return _json("detect.json")


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return _json("adopt-manifest.json")


@pytest.fixture(scope="module")
def machine(detected: dict[str, Any]) -> Machine:
    return Machine.from_json(detected["machine"])


def _sections(name: str) -> dict[str, str]:
    """``raw.txt``'s ``--- /path`` sections (shell trace lines, starting with ``+``, dropped)."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines():
        if line.startswith("+"):
            continue
        if line.startswith("--- "):
            current = sections.setdefault(line[4:].strip(), [])
        elif line.startswith("====="):
            current = None
        elif current is not None:
            current.append(line)
    return {path: "\n".join(lines) + "\n" for path, lines in sections.items()}


# detect --json on the H100


def test_detect_json_machine_came_from_nvml(machine: Machine) -> None:
    assert machine.system == "linux"
    assert machine.arch == "x86_64"
    assert machine.python == "3.12.3"
    assert machine.driver_version == DRIVER
    assert machine.cuda_driver == "13.0"
    assert machine.hidden_gpus == 0
    (gpu,) = machine.gpus
    assert gpu.vendor == "nvidia"
    assert gpu.compute_capability == ComputeCapability(9, 0)
    assert gpu.pci_bus_id == "0000:00:06.0"
    assert gpu.uuid == UUID
    assert gpu.source == "nvml"


def test_machine_json_round_trips(detected: dict[str, Any], machine: Machine) -> None:
    assert machine.to_json() == detected["machine"]


# the decision, recomputed from the real machine


def test_cu130_with_torch_2_11_serves_the_h100(machine: Machine) -> None:
    matrix = load_matrix()
    decision = choose(machine, Policy(variant="cu130", torch_pin="2.11.*"), matrix)
    assert decision.variant.name == "cu130"
    assert decision.torch_series[0] == "2.11"
    assert decision.torch.startswith("2.11.")
    assert decision.served == machine.gpus
    assert not decision.conflict
    assert decision.warnings == ()
    assert "sm_90" in decision.archs
    assert serves(decision.archs, machine.gpus[0]) == "sm_90"
    assert driver_supports(machine, decision.variant, matrix)


def test_automatic_choice_serves_the_h100(machine: Machine, detected: dict[str, Any]) -> None:
    matrix = load_matrix()
    decision = choose(machine, Policy(), matrix)
    assert decision.variant.kind == "cuda"
    assert decision.served == machine.gpus
    assert driver_supports(machine, decision.variant, matrix)
    # The table this capture ran with chose the same variant; a newer table may move on, never to CPU.
    assert decision.to_json(machine)["gpus"] == detected["gpus"]


def test_hiding_the_gpu_falls_back_to_cpu(machine: Machine) -> None:
    hidden = Machine(machine.system, machine.arch, machine.python, (), machine.driver_version,
                     machine.cuda_driver, hidden_gpus=1)
    decision = choose(hidden, Policy(), load_matrix())
    assert decision.variant.name == "cpu"
    assert "1 GPU(s) hidden by *_VISIBLE_DEVICES" in decision.reasons


# the adopted /opt/torch/.venv


def test_adopted_arch_list_serves_the_detected_gpu(manifest: dict[str, Any], machine: Machine) -> None:
    assert serves(tuple(manifest["verification"]["arch_list"]), machine.gpus[0]) == "sm_90"
    assert Machine.from_json(manifest["machine"]).gpus == machine.gpus


# the driver's own text, through layerenv's parsers


def test_real_nvidia_smi_query_line_parses() -> None:
    lines = [line for line in (FIXTURES / "smi.txt").read_text(encoding="utf-8").splitlines()
             if line.startswith("0, NVIDIA")]
    assert lines, "smi.txt lost its --query-gpu line"
    (row,) = parse_smi_query(lines[0] + "\n")
    assert row.index == 0
    assert row.name == GPU_NAME
    assert row.compute_capability == ComputeCapability(9, 0)
    assert row.driver_version == DRIVER
    assert row.uuid == UUID


def test_real_driver_files_parse() -> None:
    sections = _sections("raw.txt")
    assert parse_module_version(sections["/sys/module/nvidia/version"]) == DRIVER
    assert parse_proc_version(sections["/proc/driver/nvidia/version"]) == DRIVER
    information = parse_gpu_information(sections["/proc/driver/nvidia/gpus/0000:00:06.0/information"])
    assert information["Model"] == GPU_NAME
    assert information["GPU UUID"] == UUID
    assert information["Bus Location"] == "0000:00:06.0"
