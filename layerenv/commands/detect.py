"""``layerenv detect``: read the machine and say which torch build it needs, and why."""

from __future__ import annotations

import json
from typing import Any

import click

from layerenv.cli import report_errors
from layerenv.commands.options import decision_flags, decision_options
from layerenv.config import load_settings
from layerenv.decide import Decision
from layerenv.machine import Machine
from layerenv.policy import detect


@click.command("detect")
@decision_options
@click.option("--explain", is_flag=True, help="Show every candidate build and why it was kept or dropped.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for other tools.")
@report_errors
def command(
    variant: str | None,
    channel: str | None,
    torch_pin: str | None,
    strict: bool | None,
    explain: bool,
    as_json: bool,
) -> None:
    """Read the GPUs and driver, and choose the torch variant for this machine."""
    settings = load_settings(flags=decision_flags(variant, channel, torch_pin, strict))
    result = detect(settings)
    if as_json:
        document: dict[str, Any] = result.decision.to_json(result.machine)
        document["machine"] = result.machine.to_json()
        if explain:
            document["candidates"] = [c.to_json() for c in result.decision.candidates]
        click.echo(json.dumps(document, indent=2))
        return
    click.echo(render_summary(result.machine, result.decision))
    if explain:
        click.echo(render_candidates(result.decision))
    for warning in result.decision.warnings:
        click.echo(f"warning: {warning}", err=True)


def render_summary(machine: Machine, decision: Decision) -> str:
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
    return "\n".join(lines)


def render_candidates(decision: Decision) -> str:
    rows = [("torch", "variant", "", "reason")]
    for candidate in decision.candidates:
        rows.append((candidate.series, candidate.variant, "kept" if candidate.kept else "dropped", candidate.reason))
    width = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(f"{row[0]:<{width[0]}}  {row[1]:<{width[1]}}  {row[2]:<{width[2]}}  {row[3]}" for row in rows)
