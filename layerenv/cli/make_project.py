"""``layerenv project``'s work, click-free: the click command and the console script's fast path for its
plain form (``layerenv project [PATH]``, :mod:`layerenv.cli.entry`) both run it, the fast path without
importing click (about a fifth of the command on an empty repo)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from layerenv.cli.exit import Invocation
from layerenv.cli.session import Session, rememberable, store_from_environment
from layerenv.cli.ui import Console
from layerenv.machine.interpreters import check_flag
from layerenv.project.create import KnownBase, ProjectRequest, check_project_dir, ensure_project, python_spec_for
from layerenv.venv.layout import VenvLayout

TYPE_CHECKING = False
if TYPE_CHECKING:
    from layerenv.project.create import ProjectResult

#: The remembered answer of a project's base lookup (:mod:`layerenv.cli.answers`): its id, and this machine's line.
BASE_FORM = "project-base"


@dataclass(frozen=True)
class ProjectFlags:
    """The command's options (the plain form: none given)."""

    python_spec: str | None = None
    installer: str | None = None
    extras: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    no_default_groups: bool = False
    no_install_project: bool = False
    system_site_packages: bool = False
    per_node: bool | None = None


def make_project(invocation: Invocation, path: str, flags: ProjectFlags) -> None:
    """Create or update PATH/.venv, say where it stands on stdout and how to activate it (the session it
    opens is the invocation's, for the exit boundary)."""
    from layerenv.cli import answers

    started = answers.clock()
    console = Console(invocation.verbosity)
    project_dir = check_project_dir(path)
    session = Session.open(os.environ, flags={"base.installer": flags.installer, "project.per_node": flags.per_node},
                           project_dir=project_dir, verbosity=invocation.verbosity)
    invocation.session = session
    session.store.ensure_writable()
    spec = python_spec_for(project_dir, check_flag(flags.python_spec), session.settings)
    interpreter = session.interpreter(spec)
    recalled: list[str] = []

    def remembered() -> KnownBase | None:
        known = _remembered_base(session, project_dir)
        recalled.extend([known.base_id] if known else [])
        return known

    request = ProjectRequest.from_settings(project_dir, session.settings, lambda: session.base_request(interpreter),
                                           extras=flags.extras, system_site_packages=flags.system_site_packages,
                                           groups=flags.groups, default_groups=not flags.no_default_groups,
                                           install_project=not flags.no_install_project,
                                           known_base=None if spec else remembered)
    result = ensure_project(request, session.store, console)
    if not spec and not result.base_built and result.manifest.base_id not in recalled:
        _remember_base(session, request, result, started)
    state = "updated" if result.changed else "up to date"
    on = f"base {result.manifest.base_id} (torch {result.manifest.torch_build})"
    if request.per_node:
        on = f"this node's base {result.manifest.base_id}; each node loads its own (per node)"
    console.result(f"{result.venv}: {state}, on {on}")
    console.result(f"activate with: source {VenvLayout.for_venv(result.venv).bin_dir / 'activate'}")
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
    from layerenv.store.nodes import record_paths

    if not rememberable(session):
        return
    store, manifest = session.store, result.manifest
    read = paths_read(store, request.base, manifest, layout=False)  # the store's layout: checked at every open
    read += [(str(path), False) for path in record_paths(store.home, store.node, manifest.python)]
    text = f"{manifest.base_id}\n{machine_line(session.detection)}\n"
    answers.remember(BASE_FORM, session.env, str(request.project_dir), text, "", started, read)
