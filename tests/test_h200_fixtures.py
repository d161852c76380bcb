"""Facts read off a real NVIDIA H200 machine (tests/fixtures/h200/, captured with docs/h200-walkthrough.sh).

The tests run layerenv's parsers and decision over what that machine said; what the captures
themselves say (one adoption among 16, the offline first run's line) is checked by
``scripts/check_fixtures.py``.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

from layerenv.choice.decide import Policy, choose
from layerenv.choice.table import load_matrix
from layerenv.machine.facts import ComputeCapability, Machine
from layerenv.machine.nvidia import parse_smi_list, parse_smi_query
from layerenv.machine.visible import filter_visible

FIXTURES = Path(__file__).parent / "fixtures" / "h200"


def _detected() -> dict[str, object]:
    data: dict[str, object] = json.loads((FIXTURES / "detect.json").read_text(encoding="utf-8"))
    return data


def _smi_lines(prefix: str) -> str:
    text = (FIXTURES / "detect.txt").read_text(encoding="utf-8")
    return "".join(line + "\n" for line in text.splitlines() if line.startswith(prefix))


def test_the_h200s_own_smi_query_line_parses() -> None:
    (row,) = parse_smi_query(_smi_lines("0, NVIDIA H200"))
    assert (row.name, row.compute_capability, row.driver_version) == ("NVIDIA H200", ComputeCapability(9, 0),
                                                                      "580.159.04")
    assert row.uuid is not None and row.uuid.startswith("GPU-")


def test_the_h200s_gpu_list_has_no_mig_slices() -> None:
    listing = _smi_lines("GPU 0: NVIDIA H200")
    assert listing and parse_smi_list(listing) == {}


def test_the_recorded_machine_round_trips_and_chooses_the_same_build() -> None:
    detected = _detected()
    machine = Machine.from_json(detected["machine"])  # type: ignore[arg-type]
    assert machine.to_json() == detected["machine"]
    decision = choose(machine, Policy(), load_matrix())
    assert decision.variant.name == detected["variant"]
    assert decision.served == machine.gpus and not decision.conflict


def test_cuda_visible_devices_replayed_gives_what_the_h200_chose() -> None:
    """Each CUDA_VISIBLE_DEVICES value the capture tried, replayed through the visibility filter and
    the decision, chooses what the real machine chose."""
    machine = Machine.from_json(_detected()["machine"])  # type: ignore[arg-type]
    text = (FIXTURES / "detect.txt").read_text(encoding="utf-8")
    sections = re.split(r"===== CUDA_VISIBLE_DEVICES='([^']*)' layerenv detect =====", text)[1:]
    recorded = {sections[i]: re.search(r"^variant\s+(\S+)", sections[i + 1], re.MULTILINE).group(1)  # type: ignore[union-attr]
                for i in range(0, len(sections), 2)}
    assert len(recorded) == 4
    for value, variant in recorded.items():
        visible, hidden, _notes = filter_visible(machine.gpus, {"CUDA_VISIBLE_DEVICES": value})
        replayed = replace(machine, gpus=visible, hidden_gpus=hidden)
        assert choose(replayed, Policy(), load_matrix()).variant.name == variant, value
