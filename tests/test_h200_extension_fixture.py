"""The compiled extension captured on the real H200 (tests/fixtures/h200-extension, docs/h200-extension.sh):
a setup.py CUDAExtension built by `layerenv project` against the adopted torch 2.11.0+cu130, replayed
through the record reader, the staleness judgement and the rebase planner."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from layerenv.project.extension_moves import plan_extension
from layerenv.project.extensions import Extension, from_record, stale_reason

CAPTURE = Path(__file__).parent / "fixtures" / "h200-extension"
BASE_TORCH = "2.11.0+cu130"


def _captured_extension() -> Extension:
    state = json.loads((CAPTURE / "layerenv-project.json").read_text(encoding="utf-8"))
    site = Path("/tmp/extdemo/.venv/lib/python3.12/site-packages")
    extension = from_record(state["extensions"]["extdemo"], "extdemo", site)
    assert extension is not None
    return extension


def test_the_recorded_extension_reads_back_as_built_against_the_base() -> None:
    extension = _captured_extension()
    assert (extension.source, extension.built_against, extension.cuda_only) == ("editable", BASE_TORCH, False)
    assert stale_reason(extension, BASE_TORCH, None) is None  # doctor.json: healthy, no finding


def test_a_record_naming_another_torch_gives_the_message_doctor_printed_on_the_h200() -> None:
    printed = json.loads(
        (CAPTURE / "doctor-stale.txt").read_text(encoding="utf-8").split("=====\n", 2)[1].split("\nwall")[0])
    finding = printed["findings"][0]
    reason = stale_reason(replace(_captured_extension(), built_against="2.9.1+cu128"), BASE_TORCH, None)
    assert finding["kind"] == "extension-stale" and reason is not None
    assert finding["message"].startswith(f"/tmp/extdemo/.venv: {reason}")


def test_a_move_to_torch_2_15_rebuilds_the_editable_extension_from_its_source(tmp_path: Path) -> None:
    extension = replace(_captured_extension(), location=str(tmp_path))
    assert stale_reason(extension, "2.15.0+cu132", None) is not None
    step = plan_extension(extension, BASE_TORCH, "2.15.0+cu132", [], "cp312", "linux_x86_64", "PyPI")
    assert step is not None and step.action == "rebuild" and step.target == str(tmp_path)
