"""``layerenv status``: the machine, its bases and its projects."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from layerenv.cli.options import open_session
from layerenv.reporter import format_size


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for other tools.")
def command(as_json: bool) -> None:
    """Show the bases (current or stale), registered projects (ok, shadowed or broken) and which node uses which base.

    A project is shadowed when torch, triton, nvidia-* or another torch-family distribution was
    installed into it over the base's stubs; `layerenv doctor --fix` removes them. `outlook` lines
    under the machine say what limits its choice of torch and what would lift it. An adopted base's
    size is not measured (it is not layerenv's, and walking it would slow status down).
    """
    from layerenv.lifecycle.leftovers import staging_leftovers
    from layerenv.lifecycle.status import status_document

    session = open_session()
    store = session.store
    fitting = session.current_base()
    detection = session.detection
    document = status_document(store, {fitting.base_id} if fitting else set())
    document["staging"] = [leftover.to_json() for leftover in staging_leftovers(store)]
    document["machine"] = detection.decision.to_json(detection.machine)
    document["outlook"] = list(detection.outlook)
    if as_json:
        click.echo(json.dumps(document, indent=2))
        return
    decision = detection.decision
    gpus = ", ".join(f"{g.name} ({g.compute_capability or g.gfx})" for g in detection.machine.gpus) or "no GPU"
    click.echo(f"machine  {gpus}; driver {detection.machine.driver_version or '-'}; wants {decision.variant}")
    for line in detection.outlook:
        click.echo(f"outlook  {line}")
    click.echo(f"store    {document['home']}")
    click.echo("bases")
    if not document["bases"] and not document["unreadable_bases"]:
        click.echo("  (none: run `layerenv base`)")
    for base in document["bases"]:
        state = "current" if base["current"] else "stale"
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(base["created"]))
        # an adopted environment is not layerenv's to size or free, and walking it would slow status down
        size = format_size(base["size_bytes"]) if base["size_bytes"] is not None else "adopted"
        adopted = f"  (adopted {base['path']}, not measured)" if base["adopted"] else ""
        click.echo(
            f"  {base['id']:<48} {base['torch']:<16} {size:>9}  {created}  {state}"
            f"  {len(base['projects'])} project(s){adopted}"
        )
    for unreadable in document["unreadable_bases"]:
        kind = "not trusted, not used" if unreadable["untrusted"] else "cannot be read"
        click.echo(f"  {unreadable['id']:<48} {kind}: {unreadable['problem']}")
    for leftover in document["staging"]:
        state = f"in use by {leftover['holder']}" if leftover["holder"] else "orphaned: `layerenv gc` removes it"
        click.echo(f"  staging/{Path(leftover['path']).name:<40} {format_size(leftover['size_bytes']):>9}  "
                   f"{leftover['age_seconds'] // 60} min old  {state}")
    click.echo("projects")
    if not document["projects"]:
        click.echo("  (none)")
    for project in document["projects"]:
        health = {"ok": "ok", "shadowed": project["problem"]}.get(project["state"], f"broken: {project['problem']}")
        per_node = " (per node)" if project.get("per_node") else ""
        click.echo(f"  {project['path']:<48} {project['base']:<44} {health}{per_node}")
    if document["nodes"]:
        click.echo("nodes")
    for node in document["nodes"]:
        here = "  (this node)" if node["node"] == document["node"] else ""
        for key, entry in node["bases"].items():
            missing = "" if entry["present"] else "  (base gone: run `layerenv base` there)"
            click.echo(f"  {node['node']:<20} {key:<22} {entry['base_id']:<44} {node['machine']}{here}{missing}")
