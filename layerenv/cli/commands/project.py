"""``layerenv project``, ``layerenv run`` and ``layerenv shell``: the project side."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from layerenv.cli.exit import Invocation
from layerenv.cli.make_project import ProjectFlags, make_project
from layerenv.cli.options import open_session, verbosity_options
from layerenv.cli.options import verbosity as verbosity_of
from layerenv.config import INSTALLER_NAMES
from layerenv.venv.layout import VenvLayout


@click.command("project")
@click.argument("path", type=click.Path(path_type=str), default=".", required=False)
@click.option("--python", "python_spec", metavar="SPEC", help="Interpreter (default: .python-version, then current).")
@click.option("--installer", type=click.Choice(INSTALLER_NAMES),
              help="Installer for the project's dependencies (default: auto, uv where found, else pip).")
@click.option("--extra", "extras", multiple=True, metavar="NAME", help="Optional-dependency group to install.")
@click.option("--group", "groups", multiple=True, metavar="NAME",
              help="Dependency group to install ([dependency-groups] or poetry's); repeatable. "
                   "`dev` (as uv) and poetry's non-optional groups are installed by default.")
@click.option("--no-default-groups", is_flag=True, help="Install only the groups named by --group.")
@click.option("--no-install-project", is_flag=True,
              help="Do not install the project itself (by default it is installed editable when it is a package).")
@click.option("--system-site-packages", is_flag=True, help="Let the venv see the interpreter's global packages.")
@click.option(
    "--per-node/--one-base",
    "per_node",
    default=None,
    help="Choose the base per node at interpreter start (a project on storage shared by different GPUs).",
)
@verbosity_options
@click.pass_context
def command(
    ctx: click.Context,
    local_verbose: int,
    local_quiet: int,
    path: str,
    python_spec: str | None,
    installer: str | None,
    extras: tuple[str, ...],
    groups: tuple[str, ...],
    no_default_groups: bool,
    no_install_project: bool,
    system_site_packages: bool,
    per_node: bool | None,
) -> None:
    """Create PATH/.venv layered on this machine's torch base, with the project's dependencies."""
    verbosity_of(ctx, local_verbose, local_quiet)  # made the invocation's, which the work reads
    flags = ProjectFlags(python_spec, installer, tuple(extras), tuple(groups), no_default_groups, no_install_project,
                         system_site_packages, per_node)
    make_project(ctx.ensure_object(Invocation), path, flags)


def find_project_venv(start: Path) -> Path:
    from layerenv.project import run_env

    return Path(run_env.find_project_venv(str(start)))


@click.command("run", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("argv", nargs=-1, type=click.UNPROCESSED, required=True)
def run_command(argv: tuple[str, ...]) -> None:
    """Run a command inside the project's layered venv (like `uv run`)."""
    from layerenv.project.run_env import exec_command
    from layerenv.project.subshell import run_environment

    venv = find_project_venv(Path.cwd())
    refuse_untrusted_base(venv)
    exec_command(list(argv), run_environment(venv, os.environ))


def refuse_untrusted_base(venv: Path) -> None:
    """Refuse to run in a venv whose fixed base others could change (layerenv.store.trust); a per-node
    venv's boot module checks the base it reads for the node at start-up."""
    from layerenv.project.link import read_link
    from layerenv.store.trust import Trust, check

    record = read_link(venv)
    if record is None or record.per_node is not None:
        return
    settings = open_session(project_dir=venv.parent).settings
    trust = Trust.for_caller(settings.text("store.trusted_group"), settings.sources["store.trusted_group"])
    check([record.base_venv, record.base_venv.parent, record.base_site], trust)


@click.command("shell")
@click.option("--print", "print_only", is_flag=True, help="Print the activation line, even on a terminal.")
def shell_command(print_only: bool) -> None:
    """Start $SHELL with the project's venv activated; exit leaves it (like `poetry shell`).

    On a terminal, the subshell gets what `source .venv/bin/activate` gives (VIRTUAL_ENV, PATH, the
    prompt prefix, UV_CONSTRAINT) plus PIP_CONSTRAINT as `layerenv run` sets it, and layerenv exits
    with its status. When stdout is not a terminal, or with --print, it only prints the
    `source .../activate` line, for `eval "$(layerenv shell)"` in this shell.
    """
    venv = find_project_venv(Path.cwd())
    shell = os.environ.get("SHELL") or "/bin/sh"
    if print_only or not sys.stdout.isatty():
        name = Path(shell).name
        script = {"fish": "activate.fish", "csh": "activate.csh", "tcsh": "activate.csh"}.get(name, "activate")
        click.echo(f"source {VenvLayout.for_venv(venv).bin_dir / script}")
        return
    from layerenv.project.subshell import start_subshell

    click.echo(f"starting {shell} with {venv} activated; `exit` leaves it (--print: only print the line)", err=True)
    raise SystemExit(start_subshell(shell, venv, os.environ))
