"""``layerenv base``: build or reuse the machine's torch base, or adopt an existing environment."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from layerenv.base import BaseRequest, SourceSettings, ensure_base, require_torch
from layerenv.cli import report_errors
from layerenv.commands.options import decision_flags, decision_options
from layerenv.commands.ui import Console
from layerenv.config import load_settings
from layerenv.interpreters import find
from layerenv.policy import detect
from layerenv.store import Store


@click.command("base")
@decision_options
@click.option("--python", "python_spec", metavar="SPEC", help="Interpreter: a version (3.12) or a path.")
@click.option("--installer", type=click.Choice(["pip", "uv"]), help="Installer to fill the base (default: pip).")
@click.option("--rebuild", is_flag=True, help="Build again even if a fitting base exists.")
@click.option("--adopt", "adopt_path", type=click.Path(path_type=Path), metavar="PATH",
              help="Register an existing virtualenv holding a working torch as a base.")
@click.option("--json", "as_json", is_flag=True, help="Print the base's manifest summary as JSON.")
@click.pass_context
@report_errors
def command(
    ctx: click.Context,
    variant: str | None,
    channel: str | None,
    torch_pin: str | None,
    strict: bool | None,
    python_spec: str | None,
    installer: str | None,
    rebuild: bool,
    adopt_path: Path | None,
    as_json: bool,
) -> None:
    """Build (or reuse) this machine's shared torch base virtualenv."""
    verbosity = ctx.find_root().obj["verbosity"] if ctx.find_root().obj else 0
    console = Console(verbosity)
    flags = decision_flags(variant, channel, torch_pin, strict)
    flags.update({"base.python": python_spec, "base.installer": installer})
    settings = load_settings(flags=flags)
    store = Store.open(settings.str("store.home"), os.environ)
    detection = detect(settings)
    for warning in detection.decision.warnings:
        console.warn(warning)
    if adopt_path is not None:
        from layerenv.adopt import adopt

        manifest = adopt(adopt_path, detection, store, console)
        _print(manifest.to_json(), manifest.base_id, "adopted", as_json)
        return
    request = BaseRequest(
        interpreter=find(settings.str("base.python"), os.environ),
        detection=detection,
        packages=require_torch(tuple(settings.list("base.packages"))),
        installer=settings.str("base.installer"),
        sources=SourceSettings(
            index_template=settings.str("index.url"),
            extra_index_urls=tuple(settings.list("index.extra_urls")),
            find_links=tuple(settings.list("index.find_links")),
        ),
        pin=settings.str("torch.version") or None,
        rebuild=rebuild,
        verbose=verbosity > 0,
    )
    result = ensure_base(request, store, console)
    _print(result.manifest.to_json(), result.manifest.base_id, "reused" if result.reused else "built", as_json)


def _print(document: dict[str, object], base_id: str, what: str, as_json: bool) -> None:
    if as_json:
        summary = {key: document[key] for key in ("base_id", "path", "variant", "torch", "torch_build",
                                                   "python", "created", "adopted", "timings")}
        summary["packages"] = {name: entry["version"]  # type: ignore[index]
                               for name, entry in document["packages"].items()}  # type: ignore[attr-defined]
        summary["status"] = what
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"{what}: {base_id}")
    click.echo(f"  torch {document['torch_build']} ({document['variant']}) at {document['path']}")
