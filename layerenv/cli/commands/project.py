"""``layerenv project``, ``layerenv run`` and ``layerenv shell``: the project side."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from layerenv.cli.options import open_session, verbosity_options
from layerenv.cli.options import verbosity as verbosity_of
from layerenv.cli.ui import Console
from layerenv.config import INSTALLER_NAMES
from layerenv.machine.interpreters import check_flag
from layerenv.project.create import KnownBase, ProjectRequest, check_project_dir, ensure_project, python_spec_for
from layerenv.venv.layout import VenvLayout

TYPE_CHECKING = False
if TYPE_CHECKING:
    from layerenv.cli.session import Session
    from layerenv.project.create import ProjectResult

#: The remembered answer of a project's base lookup (:mod:`layerenv.cli.answers`): its id, and this machine's line.
BASE_FORM = "project-base"


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
    from layerenv.cli import answers

    started = answers.clock()
    verbosity = verbosity_of(ctx, local_verbose, local_quiet)
    console = Console(verbosity)
    project_dir = check_project_dir(path)
    session = open_session(
        project_dir=project_dir,
        flags={"base.installer": installer, "project.per_node": per_node},
    )
    session.store.ensure_writable()
    spec = python_spec_for(project_dir, check_flag(python_spec), session.settings)
    interpreter = session.interpreter(spec)
    recalled: list[str] = []

    def remembered() -> KnownBase | None:
        known = _remembered_base(session, project_dir)
        recalled.extend([known.base_id] if known else [])
        return known

    request = ProjectRequest.from_settings(project_dir, session.settings, lambda: session.base_request(interpreter),
                                           extras=tuple(extras), system_site_packages=system_site_packages,
                                           groups=tuple(groups), default_groups=not no_default_groups,
                                           install_project=not no_install_project,
                                           known_base=None if spec else remembered)
    result = ensure_project(request, session.store, console)
    if not spec and not result.base_built and result.manifest.base_id not in recalled:
        _remember_base(session, request, result, started)
    state = "updated" if result.changed else "up to date"
    on = f"base {result.manifest.base_id} (torch {result.manifest.torch_build})"
    if request.per_node:
        on = f"this node's base {result.manifest.base_id}; each node loads its own (per node)"
    click.echo(f"{result.venv}: {state}, on {on}")
    click.echo(f"activate with: source {VenvLayout.for_venv(result.venv).bin_dir / 'activate'}")
    if not any((project_dir / name).is_file() for name in ("poetry.lock", "pyproject.toml")):
        return  # no poetry project: the hint's module is not worth importing
    from layerenv.integrations.poetry_hint import plugin_hint

    if hint := plugin_hint(project_dir, session.env):
        console.note(hint)


def _remembered_base(session: Session, project_dir: Path) -> KnownBase | None:
    """The base this request's lookup chose before, while every input of that lookup is unchanged: the
    environment, the settings files (the project's among them), this machine, layerenv itself, the store's
    bases (their folders, manifests and interpreters), the trust-checked paths of the chosen one, and this
    node's record. Only for the interpreter running layerenv (no ``--python``, ``.python-version`` or
    ``base.python``) and a store the environment places."""
    from layerenv.cli import answers
    from layerenv.cli.entry import store_from_environment

    if not store_from_environment(session):
        return None
    remembered = answers.recall(BASE_FORM, session.env, str(project_dir))
    if remembered is None:
        return None
    base_id, _, machine = remembered[0].rstrip("\n").partition("\n")
    return KnownBase(base_id, machine) if base_id and "\n" not in machine else None


def _remember_base(session: Session, request: ProjectRequest, result: ProjectResult, started: int) -> None:
    """Keep the base the lookup chose (and the node recorded) for the next run; see :func:`_remembered_base`."""
    from layerenv.base.current import paths_read
    from layerenv.base.node_answer import machine_line
    from layerenv.cli import answers
    from layerenv.cli.entry import rememberable
    from layerenv.store.nodes import record_paths

    if not rememberable(session):
        return
    store, manifest = session.store, result.manifest
    read = paths_read(store, request.base, manifest, layout=False)  # the store's layout: checked at every open
    read += [(str(path), False) for path in record_paths(store.home, store.node, manifest.python)]
    text = f"{manifest.base_id}\n{machine_line(session.detection)}\n"
    answers.remember(BASE_FORM, session.env, str(request.project_dir), text, "", started, read)


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
