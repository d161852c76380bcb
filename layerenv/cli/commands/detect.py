"""``layerenv detect``: read the machine and say which torch build it needs, and why."""

from __future__ import annotations

import click

from layerenv.cli.options import decision_flags, decision_options, open_session
from layerenv.cli.render import detect_json, render_candidates, render_summary


@click.command("detect")
@decision_options
@click.option("--explain", is_flag=True, help="Show every candidate build and why it was kept or dropped.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for other tools.")
@click.option("--fresh", is_flag=True,
              help="Read the machine now. (Plain `detect` and `detect --json` give a remembered answer while the "
                   "driver, GPUs, settings and environment are unchanged.)")
def command(
    variant: str | None,
    channel: str | None,
    torch_pin: str | None,
    strict: bool | None,
    explain: bool,
    as_json: bool,
    fresh: bool,
) -> None:
    """Read the GPUs and driver, and choose the torch variant for this machine."""
    result = open_session(flags=decision_flags(variant, channel, torch_pin, strict)).detection
    if as_json:
        click.echo(detect_json(result, explain=explain))
        return
    click.echo(render_summary(result.machine, result.decision, result.outlook))
    if explain:
        click.echo(render_candidates(result.decision))
    for warning in result.decision.warnings:
        click.echo(f"warning: {warning}", err=True)
