"""The manifest's facts are typed, read back what earlier releases wrote, and refuse a newer schema."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from layerenv.base.manifest import SCHEMA, Manifest, NewerManifest, read_manifest, refuse_newer
from layerenv.base.torch_check import TorchReport, judge
from layerenv.choice.variant import Variant
from layerenv.errors import OperationFailed
from layerenv.machine.interpreters import Interpreter, current

FIXTURES = Path(__file__).parent / "fixtures"
WRITTEN_BEFORE = [FIXTURES / name for name in (  # by the previous release: see manifests/README.md, h100/README.md
    "manifests/built-h100-cu130.json", "manifests/built-gtx1080-cu130-left-out.json",
    "h100/adopt-manifest.json", "h100/walkthrough-adopted-manifest.json")]


def written(document: dict[str, Any]) -> str:
    """The bytes ``layerenv.store.atomic.write_json`` puts on disk."""
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize("path", WRITTEN_BEFORE, ids=lambda path: path.name)
def test_a_manifest_written_by_the_previous_release_writes_back_unchanged(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    document = json.loads(text)
    again = Manifest.from_json(document).to_json()
    if "baseline" not in document:  # adopt-manifest.json predates it; the previous release wrote {} too
        assert again.pop("baseline") == {}
    else:
        assert written(again) == text, "byte for byte"
    assert again == document


def test_the_facts_read_back_typed() -> None:
    built = Manifest.from_json(json.loads((FIXTURES / "manifests" / "built-h100-cu130.json").read_text()))
    assert built.python.tag == "cp311" and built.python.version == (3, 11, 7)
    assert built.python.executable == Path("/root/.pyenv/versions/3.11.7/bin/python3.11")
    assert built.machine.gpus[0].compute_capability is not None and built.machine.gpus[0].compute_capability.sm == "sm_90"
    assert built.decision.variant == Variant("cu130") and built.decision.served == built.machine.gpus
    assert built.decision.torch_series[-1] == "2.9" and not built.decision.conflict
    assert built.verification.archs[:2] == ("sm_75", "sm_80") and built.verification.kernel is None
    assert built.verification.variant == Variant("cu130") and built.verification.fake

    adopted = Manifest.from_json(json.loads((FIXTURES / "h100" / "adopt-manifest.json").read_text()))
    assert adopted.verification.kernel is True and adopted.verification.devices is not None
    assert adopted.verification.devices[0].capability == "9.0"
    assert adopted.verification.interpreter == adopted.python, "the probe names the interpreter the manifest records"


def test_a_gpu_left_out_comes_back_with_its_reason() -> None:
    path = FIXTURES / "manifests" / "built-gtx1080-cu130-left-out.json"
    manifest = Manifest.from_json(json.loads(path.read_text()))
    decision = manifest.decision
    assert decision.conflict and not decision.served
    (left_out,) = decision.unserved
    assert left_out.gpu == manifest.machine.gpus[0]
    assert left_out.why == "cu130 no sm_6x kernels <= sm_61 and no PTX <= 6.1 (has sm_75 sm_80 sm_86 sm_90 sm_100 sm_120)"


def test_interpreter_round_trip() -> None:
    here = current()
    assert Interpreter.from_json(here.to_json()) == here
    assert set(here.to_json()) == {"tag", "platform", "version", "implementation", "executable"}
    short = {**here.to_json(), "version": "3.12"}
    assert Interpreter.from_json(short).version == (3, 12, 0)
    with pytest.raises(ValueError):
        Interpreter.from_json({**here.to_json(), "version": "3"})


PROBE_BASE = {"python": "3.11.7", "executable": "/v/bin/python", "base_executable": "/usr/bin/python3.11",
              "implementation": "cpython", "version_info": [3, 11, 7], "platform": "linux-x86_64"}
IMPORTED = {"file": "/v/torch/__init__.py", "version": "2.9.1+cu128", "cuda": "12.8", "hip": None, "fake": False}


@pytest.mark.parametrize("printed", [
    {**PROBE_BASE, "error": "import torch failed: ModuleNotFoundError: No module named 'torch'"},
    {**PROBE_BASE, **IMPORTED, "cuda_error": "RuntimeError: no driver"},
    {**PROBE_BASE, **IMPORTED, "available": False, "cuda_error": "RuntimeError: arch list"},
    {**PROBE_BASE, **IMPORTED, "available": True, "arch_list": ["sm_90"],
     "devices": [{"index": 0, "name": "H100", "capability": "9.0"}], "kernel": False},
], ids=["no-torch", "cuda-error-first", "cuda-error-later", "kernel-wrong"])
def test_torch_report_keeps_exactly_the_keys_the_probe_printed(printed: dict[str, Any]) -> None:
    report = TorchReport.from_json(printed)
    assert report.to_json() == printed
    problems = judge(report, variant=Variant("cu128"), version="2.9.1", gpus=[])
    assert problems == ([printed["error"]] if "error" in printed else [])


def test_judge_reads_the_typed_report() -> None:
    from layerenv.machine.facts import ComputeCapability, Gpu

    h100 = Gpu("nvidia", 0, "H100", ComputeCapability(9, 0))
    report = TorchReport.from_json({**PROBE_BASE, **IMPORTED, "available": True, "arch_list": ["sm_90"],
                                    "devices": [], "kernel": False, "cuda_error": "RuntimeError: boom"})
    assert judge(report, variant=Variant("cu128"), version="2.9.1", gpus=[h100]) == [
        "a test kernel on the GPU gave a wrong result", "CUDA error: RuntimeError: boom"]
    assert judge(replace(report, kernel=True, cuda_error=None), variant=Variant("cu130"), version="2.10.0",
                 gpus=[h100]) == ["torch.__version__ is 2.9.1+cu128, expected 2.10.0",
                                  "torch is a cu128 build (torch.version.cuda='12.8', hip=None), expected cu130"]


def store_manifest(tmp_path: Path, **changes: Any) -> Path:
    document = {**json.loads((FIXTURES / "manifests" / "built-h100-cu130.json").read_text()), **changes}
    path = tmp_path / "bases" / document["base_id"] / "layerenv-manifest.json"
    path.parent.mkdir(parents=True)
    path.write_text(written(document))
    return path


def test_a_newer_schema_is_one_clear_line(tmp_path: Path) -> None:
    path = store_manifest(tmp_path, schema=SCHEMA + 1)
    with pytest.raises(NewerManifest) as raised:
        read_manifest(path)
    assert raised.value.message == (
        f"{path}: written by a newer layerenv (schema {SCHEMA + 1} > {SCHEMA}); upgrade layerenv")
    assert raised.value.exit_code == 1 and isinstance(raised.value, OperationFailed)
    with pytest.raises(NewerManifest):
        refuse_newer(path)


@pytest.mark.parametrize("schema", [0, "1", None, True, 1.0])
def test_a_schema_that_is_not_a_number_is_unreadable_not_newer(tmp_path: Path, schema: object) -> None:
    path = store_manifest(tmp_path, schema=schema)
    with pytest.raises(OperationFailed) as raised:
        read_manifest(path)
    assert not isinstance(raised.value, NewerManifest)
    assert raised.value.message.startswith(f"{path}: unreadable manifest (ValueError: schema ")
    refuse_newer(path)  # a broken manifest may be replaced


def test_the_current_schema_reads_and_moves_with_the_store(tmp_path: Path) -> None:
    path = store_manifest(tmp_path)
    assert read_manifest(path).path == str(path.parent), "a built base is where its manifest is"
    refuse_newer(path)
    refuse_newer(tmp_path / "nothing-here.json")
