"""``layerenv rebase``: after a driver or GPU change, move every project onto the base that fits now."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from layerenv.cli.options import open_session, verbosity_options
from layerenv.cli.options import verbosity as verbosity_of
from layerenv.cli.ui import Console
from layerenv.errors import EXIT_FAILURE, BadInput

if TYPE_CHECKING:
    from layerenv.choice.detection import Detection
    from layerenv.config import Settings
    from layerenv.lifecycle.rebase import Plan, Target
    from layerenv.project.extension_sources import Candidate, PackageSources
    from layerenv.project.relink import Move


def move_json(move: Move, plan: Plan, variant: str) -> dict[str, Any]:
    downgrade = plan.downgrade_of(move)
    document: dict[str, Any] = {"project": str(move.project), "from": move.old_base,
                                "to": move.new_base or f"(new {variant} base)", "downgrade": downgrade is not None}
    if downgrade is not None:
        document.update(from_torch=downgrade.old_torch, to_torch=downgrade.new_torch, why=downgrade.why)
    document["extensions"] = [step.to_json() for step in plan.steps_of(move)]
    document["held"] = plan.held(move)  # its extensions cannot follow and --force was not given: it stays
    return document


def move_lines(move: dict[str, Any]) -> list[str]:
    """A planned move in the text plan: the move, then what each compiled extension needs."""
    downgrade = (f"  [downgrade: torch {move['from_torch']} -> {move['to_torch']}, because {move['why']}]"
                 if move["downgrade"] else "")
    held = "  [not moved: its extensions cannot follow; --force moves it anyway]" if move["held"] else ""
    head = f"{move['from']} -> {move['to']}" if move["from"] != move["to"] else f"stays on {move['from']}"
    lines = [f"  {move['project']}: {head}{downgrade}{held}"]
    for step in move["extensions"]:
        if step["action"] == "blocked":
            lines.append(f"    {step['name']} {step['version']}: {'will break' if not move['held'] else 'blocks it'}: "
                         f"{step['why']}")
        else:
            lines.append(f"    {step['action']} {step['name']} {step['version']}: {step['why']}")
    return lines


def target_json(target: Target) -> dict[str, Any]:
    """The base projects on one Python stand on after the rebase (``base`` None: to be built)."""
    manifest = target.manifest
    decision = target.request.detection.decision
    return {"python": target.interpreter.tag, "base": manifest.base_id if manifest else None,
            "variant": manifest.variant if manifest else decision.variant.name,
            "torch": manifest.torch_build if manifest else decision.torch,
            "adopted": bool(manifest and manifest.adopted)}


def fitting(plan: Plan, detection: Detection) -> str:
    """``the base that fits: ID (cu128)``, and, where that is not this machine's own choice, which is."""
    decision = detection.decision
    used = [target.manifest for target in plan.targets if target.manifest is not None]
    if not used:
        return f"the base that fits ({decision.variant})"
    names = ", ".join(
        f"{m.base_id} ({'adopted, ' if m.adopted else ''}torch {m.torch_build})" for m in used
    )
    text = f"the base that fits: {names}"
    if any(m.variant != decision.variant.name or m.torch_series not in decision.torch_series for m in used):
        text += (f"; this machine's own choice is {decision.variant} torch {decision.torch_series[0]}"
                 " (`layerenv base --rebuild` builds it, then `layerenv rebase` moves the projects)")
    return text


def refuse_project_sources(settings: Settings) -> None:
    """rebase moves every registered project: the torch source of the project it runs in must not decide."""
    from layerenv.base.request import sources_chosen_by

    chosen = sources_chosen_by(settings)
    if chosen:
        raise BadInput(f"{chosen} chooses where torch comes from, but rebase moves every registered project; a "
                       "project's index never decides their base: run rebase outside it, or set LAYERENV_INDEX_URL "
                       "(LAYERENV_EXTRA_INDEX_URL, LAYERENV_FIND_LINKS) or your user config instead")


def _wheel_candidates(name: str, sources: PackageSources) -> list[Candidate]:
    """Which wheels of ``name`` the sources offer; the index client is imported only when asked."""
    from layerenv.project.extension_sources import wheel_candidates

    return wheel_candidates(name, sources)


@click.command("rebase")
@click.option("--dry-run", is_flag=True, help="Print the plan (old -> new base, why, which projects); change nothing.")
@click.option(
    "--project", "project_path", type=click.Path(path_type=Path), metavar="PATH", help="Move only this project."
)
@click.option("--base", "base_id", metavar="ID", help="Move onto this existing base (with --project: that one only).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan or the outcome as JSON.")
@click.option("--force", is_flag=True,
              help="Move projects whose compiled extensions can be neither reinstalled nor rebuilt (they will break).")
@verbosity_options
@click.pass_context
def command(
    ctx: click.Context,
    local_verbose: int,
    local_quiet: int,
    dry_run: bool,
    project_path: Path | None,
    base_id: str | None,
    as_json: bool,
    force: bool,
) -> None:
    """Re-detect; build the base that fits now if it changed; move registered projects onto it."""
    from layerenv.lifecycle.rebase import execute, plan_rebase

    verbosity = verbosity_of(ctx, local_verbose, local_quiet)
    console = Console(verbosity)
    session = open_session()
    refuse_project_sources(session.settings)
    store = session.store
    detection = session.detection
    only = project_path.resolve() if project_path is not None else None
    plan = plan_rebase(store, session.base_request, only=only, onto=base_id, look_up=_wheel_candidates,
                       env=os.environ, force=force)
    decision = detection.decision
    builds = [f"{t.interpreter.tag}: build {decision.variant} torch {decision.torch_series[0]}" for t in plan.builds]
    moves = [move_json(m, plan, decision.variant.name) for m in plan.moves if m.changes or plan.steps_of(m)]
    outcome = None if dry_run else execute(plan, store, console)
    if outcome is None or plan.nothing_to_do:
        document = {
            "changed": not plan.nothing_to_do,
            "variant": decision.variant.name,
            "builds": builds,
            "moves": moves,
            "skipped": list(plan.skipped),
            "reasons": list(decision.reasons),
            "targets": [target_json(t) for t in plan.targets],
        }
        if as_json:
            click.echo(json.dumps(document, indent=2))
        elif plan.nothing_to_do:
            click.echo(f"nothing changed: {len(plan.moves)} project(s) already on {fitting(plan, detection)}")
        else:
            click.echo(f"plan ({decision.variant}, because: {decision.reasons[-1]})")
            for line in builds:
                click.echo(f"  {line}")
            for move in moves:
                for line in move_lines(move):
                    click.echo(line)
        for line in plan.skipped:
            console.warn(line)
        return
    if as_json:
        click.echo(
            json.dumps(
                {
                    "built": list(outcome.built),
                    "reused": list(outcome.reused),
                    "moved": [str(m.project) for m in outcome.moved],
                    "reinstalled": outcome.reinstalled,
                    "failures": list(outcome.failures),
                },
                indent=2,
            )
        )
    else:
        for base in outcome.built:
            click.echo(f"built {base}")
        for base in outcome.reused:
            click.echo(f"reused {base} built by another process")
        click.echo(f"moved {len(outcome.moved)} project(s); old bases are kept until `layerenv gc`")
        for venv, names in outcome.reinstalled.items():
            click.echo(f"  {venv}: reinstalled {', '.join(names)} for the new torch")
    for line in [*plan.skipped, *outcome.failures]:
        console.warn(line)
    if outcome.failures:
        raise SystemExit(EXIT_FAILURE)
