"""Text and JSON renderings of layerenv's facts, shared by the click commands and the fast path."""

from __future__ import annotations

import json
from typing import Any

from layerenv.base.manifest import Manifest
from layerenv.choice.decide import Decision
from layerenv.choice.detection import Detection
from layerenv.machine.facts import Machine


def detect_json(result: Detection, *, explain: bool = False) -> str:
    document: dict[str, Any] = result.decision.to_json(result.machine)
    document["outlook"] = list(result.outlook)
    document["machine"] = result.machine.to_json()
    if explain:
        document["candidates"] = [candidate.to_json() for candidate in result.decision.candidates]
    return json.dumps(document, indent=2)


def render_summary(machine: Machine, decision: Decision, outlook: tuple[str, ...] = ()) -> str:
    lines = []
    if machine.driver_version:
        cuda = f" (CUDA {machine.cuda_driver})" if machine.cuda_driver else ""
        lines.append(f"driver   {machine.driver_version}{cuda}")
    for gpu in machine.gpus:
        arch = f"compute capability {gpu.compute_capability}" if gpu.compute_capability else (gpu.gfx or "")
        mark = "" if gpu in decision.served or gpu.vendor == "apple" else "  [not served]"
        lines.append(f"gpu {gpu.index}    {gpu.name}, {arch}{mark}".rstrip(", "))
    if not machine.gpus:
        lines.append("gpu      none visible")
    lines.append(f"variant  {decision.variant}")
    series = decision.torch_series
    span = f"{series[-1]} .. {series[0]}" if len(series) > 1 else series[0]
    lines.append(f"torch    {decision.torch} ({decision.channel}; releases {span} fit)")
    lines.append("why")
    lines.extend(f"  - {reason}" for reason in decision.reasons)
    if outlook:
        lines.append("outlook")
        lines.extend(f"  - {line}" for line in outlook)
    return "\n".join(lines)


def render_candidates(decision: Decision) -> str:
    rows = [("torch", "variant", "", "reason")]
    for candidate in decision.candidates:
        rows.append((candidate.series, candidate.variant, "kept" if candidate.kept else "dropped", candidate.reason))
    width = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(f"{row[0]:<{width[0]}}  {row[1]:<{width[1]}}  {row[2]:<{width[2]}}  {row[3]}" for row in rows)


SUMMARY_KEYS = ("base_id", "path", "variant", "torch", "torch_build", "python", "created", "adopted", "timings")


def base_summary(manifest: Manifest, what: str, *, as_json: bool) -> str:
    """What ``layerenv base`` prints: ``built``/``reused``/``adopted`` and where the base is."""
    if as_json:
        document = manifest.to_json()
        summary = {key: document[key] for key in SUMMARY_KEYS}
        summary["packages"] = {name: record.version for name, record in sorted(manifest.packages.items())}
        summary["status"] = what
        return json.dumps(summary, indent=2)
    return f"{what}: {manifest.base_id}\n  torch {manifest.torch_build} ({manifest.variant}) at {manifest.path}"
