"""``layerenv base``: build or reuse the machine's torch base, or adopt an existing environment."""

from __future__ import annotations

from pathlib import Path

import click

from layerenv.base.manifest import Manifest
from layerenv.cli.make_base import build_or_reuse
from layerenv.cli.options import decision_flags, decision_options, open_session, verbosity_options
from layerenv.cli.options import verbosity as verbosity_of
from layerenv.cli.render import base_summary
from layerenv.cli.ui import Console
from layerenv.config import INSTALLER_NAMES
from layerenv.machine.interpreters import check_flag


@click.command("base")
@decision_options
@click.option("--python", "python_spec", metavar="SPEC", help="Interpreter: a version (3.12) or a path.")
@click.option("--installer", type=click.Choice(INSTALLER_NAMES),
              help="Installer to fill the base (default: auto, uv where found, else pip).")
@click.option(
    "--rebuild", is_flag=True, help="Build again even if a fitting base exists (with --adopt: inspect and hash again)."
)
@click.option(
    "--adopt",
    "adopt_path",
    type=click.Path(path_type=Path),
    metavar="PATH",
    help="Register an existing virtualenv holding a working torch as a base (reused if already adopted and unchanged).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the base's manifest summary as JSON.")
@verbosity_options
@click.pass_context
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
    flags.update({"base.python": check_flag(python_spec), "base.installer": installer})
    session = open_session(flags=flags)
    store = session.store
    detection = session.detection
    for warning in detection.decision.warnings:
        console.warn(warning)
    if adopt_path is not None:
        from layerenv.base.adopt import adopt

        _print(adopt(adopt_path, detection, store, console, again=rebuild), "adopted", as_json)
        return
    build_or_reuse(console, session.base_request(rebuild=rebuild), store, as_json=as_json)


def _print(manifest: Manifest, what: str, as_json: bool) -> None:
    click.echo(base_summary(manifest, what, as_json=as_json))
