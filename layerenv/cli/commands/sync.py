"""``layerenv sync``: install what the project's lock pins, the torch family left to the base."""

from __future__ import annotations

from pathlib import Path

import click

from layerenv.cli.options import open_session, verbosity_options
from layerenv.cli.options import verbosity as verbosity_of
from layerenv.cli.ui import Console
from layerenv.errors import BadInput


@click.command("sync")
@click.argument("path", type=click.Path(path_type=Path), default=None, required=False)
@click.option("--extra", "extras", multiple=True, metavar="NAME", help="Optional dependencies to install too.")
@click.option("--all-extras", is_flag=True, help="Install every optional-dependency group.")
@click.option("--group", "groups", multiple=True, metavar="NAME", help="Dependency group to install too.")
@click.option("--all-groups", is_flag=True, help="Install every dependency group.")
@click.option("--no-dev", "--no-default-groups", "no_default_groups", is_flag=True,
              help="Leave out the default groups (uv: dev).")
@click.option("--frozen", is_flag=True, help="Install the lock as it is; never run `uv lock` first.")
@click.option("--locked", is_flag=True, help="Fail if uv.lock is out of date instead of updating it.")
@verbosity_options
@click.pass_context
def command(ctx: click.Context, local_verbose: int, local_quiet: int, path: Path | None, extras: tuple[str, ...],
            all_extras: bool, groups: tuple[str, ...], all_groups: bool, no_default_groups: bool, frozen: bool,
            locked: bool) -> None:
    """Install exactly what uv.lock (or pylock.toml, poetry.lock) pins into the project's layered venv,
    with the lock's hashes; torch and what only torch needs come from the base, never downloaded."""
    from layerenv.cli.commands.project import find_project_venv
    from layerenv.installers import Log
    from layerenv.project.locks import Selection
    from layerenv.project.sync import SyncRequest, sync

    console = Console(verbosity_of(ctx, local_verbose, local_quiet))
    if path is not None and not path.is_dir():
        raise BadInput(f"project path {path} is not a directory")
    venv = find_project_venv((path or Path.cwd()).resolve())
    project_dir = venv.parent
    store = open_session(project_dir=project_dir).store
    request = SyncRequest(
        venv=venv,
        project_dir=project_dir,
        selection=Selection(extras=extras, all_extras=all_extras, groups=groups, all_groups=all_groups,
                            no_default_groups=no_default_groups),
        frozen=frozen,
        locked=locked,
    )
    result = sync(request, console, Log(store.log_path(f"sync-{project_dir.name or 'root'}")))
    for removed in result.removed:
        console.step(f"removed {removed}")
    state = "up to date" if result.unchanged else f"installed {len(result.installed)}, removed {len(result.removed)}"
    base = ", ".join(result.left_to_base) or "nothing"
    click.echo(f"{venv}: {state} from {result.lock.name}; from the base: {base}")
