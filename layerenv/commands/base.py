"""``layerenv base``: build or reuse the machine's torch base, or adopt an existing environment."""

from __future__ import annotations

import os
from pathlib import Path

import click

from layerenv.base import ensure_base, remember_node, request_from_settings
from layerenv.cli import report_errors
from layerenv.commands.options import decision_flags, decision_options, verbosity_options
from layerenv.commands.options import verbosity as verbosity_of
from layerenv.commands.ui import Console
from layerenv.config import load_settings
from layerenv.interpreters import find
from layerenv.manifest import Manifest
from layerenv.policy import detect
from layerenv.render import base_summary
from layerenv.store import Store


@click.command("base")
@decision_options
@click.option("--python", "python_spec", metavar="SPEC", help="Interpreter: a version (3.12) or a path.")
@click.option("--installer", type=click.Choice(["pip", "uv"]), help="Installer to fill the base (default: pip).")
@click.option("--rebuild", is_flag=True, help="Build again even if a fitting base exists.")
@click.option(
    "--adopt",
    "adopt_path",
    type=click.Path(path_type=Path),
    metavar="PATH",
    help="Register an existing virtualenv holding a working torch as a base.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the base's manifest summary as JSON.")
@verbosity_options
@click.pass_context
@report_errors
def command(
    ctx: click.Context,
    local_verbose: int,
    local_quiet: int,
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
    verbosity = verbosity_of(ctx, local_verbose, local_quiet)
    console = Console(verbosity)
    flags = decision_flags(variant, channel, torch_pin, strict)
    flags.update({"base.python": python_spec, "base.installer": installer})
    settings = load_settings(flags=flags)
    store = Store.from_settings(settings, os.environ)
    detection = detect(settings)
    for warning in detection.decision.warnings:
        console.warn(warning)
    if adopt_path is not None:
        from layerenv.adopt import adopt

        manifest = adopt(adopt_path, detection, store, console)
        if unrecorded := remember_node(store, manifest, detection):
            console.warn(unrecorded)
        _print(manifest, "adopted", as_json)
        return
    request = request_from_settings(
        settings, detection, find(settings.text("base.python"), os.environ), rebuild=rebuild, verbose=verbosity > 0
    )
    result = ensure_base(request, store, console)
    if unrecorded := remember_node(store, result.manifest, detection):
        console.warn(unrecorded)
    _print(result.manifest, "reused" if result.reused else "built", as_json)


def _print(manifest: Manifest, what: str, as_json: bool) -> None:
    click.echo(base_summary(manifest, what, as_json=as_json))
