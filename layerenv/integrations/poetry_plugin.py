"""A poetry application plugin: in a layerenv project venv, poetry treats the torch family as
provided by the base.

Poetry loads it from the ``poetry.application.plugin`` entry point of the layerenv distribution,
so installing layerenv into poetry's own environment (``poetry self add layerenv``, ``pipx inject
poetry layerenv``) is all it takes. It listens for cleo's ``console.command`` event, after poetry
has given the command its environment and installer, and acts only when that environment is a
layerenv project venv (it has ``layerenv.json``):

- install-type commands (``install``, ``sync``, ``add``, ``update``, ``remove``): the installer's
  operations are planned by :func:`layerenv.integrations.poetry_plan.plan_operations` before the
  executor runs any of them: operations on the torch family and on what only the family needs are
  marked skipped, and a requirement the base cannot meet stops the command (exit 1, one line)
  before anything is downloaded. What poetry resolves and writes to ``poetry.lock`` is untouched;
- ``run``: the command sees ``UV_CONSTRAINT`` and ``PIP_CONSTRAINT`` as under ``layerenv run``.

Nothing here runs for ``poetry self ...`` or in a venv layerenv did not make.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cleo.events.console_command_event import ConsoleCommandEvent
from cleo.events.console_events import COMMAND
from poetry.plugins.application_plugin import ApplicationPlugin

from layerenv.integrations.poetry_plan import BaseView, Edge, Locked, Op, plan_operations
from layerenv.project.link import CONSTRAINTS_FILE, LinkRecord, read_link
from layerenv.venv.distinfo import canonical_name, is_family, read_distributions

if TYPE_CHECKING:
    from cleo.events.event import Event
    from cleo.events.event_dispatcher import EventDispatcher
    from cleo.io.io import IO
    from poetry.console.application import Application
    from poetry.core.packages.dependency import Dependency
    from poetry.core.packages.package import Package
    from poetry.installation.operations.operation import Operation
    from poetry.packages.locker import Locker

__all__ = ["LayerenvPoetryPlugin"]

Execute = Callable[[list["Operation"]], int]


def _specifier(dependency: Dependency) -> str:
    """``>=2.0,<3.0`` for ``^2.0``; "" for any version."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return str(Requirement(dependency.to_pep_508(with_extras=False).split(";")[0]).specifier)
    except InvalidRequirement:
        return ""


def _applies(dependency: Dependency, marker_env: Mapping[str, Any], extra_deps: set[str]) -> bool:
    """An optional dependency applies when an extra asked of its package names it."""
    if dependency.is_optional() and canonical_name(dependency.name) not in extra_deps:
        return False
    return bool(dependency.marker.without_extras().validate(marker_env))


def _edges(package: Package | None, requires: list[Dependency], marker_env: Mapping[str, Any],
           extras: set[str]) -> tuple[Edge, ...]:
    extra_deps = {canonical_name(d.name) for d in requires if set(d.in_extras) & extras}
    if package is not None:
        extra_deps.update(canonical_name(d.name) for extra, deps in package.extras.items() if extra in extras
                          for d in deps)
    return tuple(Edge(canonical_name(d.name), _specifier(d)) for d in requires if _applies(d, marker_env, extra_deps))


def _requested_extras(root: list[Dependency], packages: list[Package]) -> dict[str, set[str]]:
    """Every extra some requirement asks of a package (a superset: fine for deciding what to keep)."""
    wanted: dict[str, set[str]] = {}
    for dependency in [*root, *(d for p in packages for d in p.requires)]:
        wanted.setdefault(canonical_name(dependency.name), set()).update(dependency.extras)
    return wanted


def _base_view(record: LinkRecord, marker_env: Mapping[str, Any]) -> BaseView:
    from packaging.markers import InvalidMarker, UndefinedEnvironmentName
    from packaging.requirements import InvalidRequirement, Requirement

    versions: dict[str, str] = {}
    family_requires: dict[str, tuple[Edge, ...]] = {}
    environment = {k: str(v) for k, v in marker_env.items() if isinstance(v, str)}
    for dist in read_distributions(record.base_site):
        versions[dist.name] = dist.version
        if not is_family(dist.name):
            continue
        edges = []
        for line in dist.metadata_text.splitlines():
            if not line.startswith("Requires-Dist:"):
                continue
            try:
                requirement = Requirement(line.partition(":")[2].strip())
                if requirement.marker is not None and not requirement.marker.evaluate({**environment, "extra": ""}):
                    continue
            except (InvalidRequirement, InvalidMarker, UndefinedEnvironmentName):
                continue
            edges.append(Edge(canonical_name(requirement.name), str(requirement.specifier)))
        family_requires[dist.name] = tuple(edges)
    stubs = frozenset(canonical_name(stub.removesuffix(".dist-info").rpartition("-")[0]) for stub in record.stubs)
    return BaseView(record.base_id, versions, family_requires, stubs)


_KINDS: dict[str, Literal["install", "update", "uninstall"]] = {
    "install": "install", "update": "update", "uninstall": "uninstall"}


def _op(operation: Operation) -> Op:
    return Op(_KINDS[operation.job_type], canonical_name(operation.package.name), operation.package.version.text)


class _Guard:
    """Wraps an executor's ``execute``: plan first, then run what is left, or stop."""

    def __init__(self, execute: Execute, io: IO, venv: Path, root: Callable[[], list[Dependency]],
                 lock: Callable[[], list[Package]], marker_env: Mapping[str, Any]) -> None:
        self._execute, self._io, self._venv, self._marker_env = execute, io, venv, marker_env
        self._root, self._lock = root, lock
        self._locked: dict[tuple[str, str], Package] | None = None

    def __call__(self, operations: list[Operation]) -> int:
        record = read_link(self._venv)
        if record is None:
            return self._execute(operations)
        base = _base_view(record, self._marker_env)
        root = self._root()
        # Installing from poetry.lock, the operations' packages carry no dependencies: read them there.
        kept = [self._with_dependencies(o.package) for o in operations if o.job_type != "uninstall"]
        extras = _requested_extras(root, kept)
        locked = {}
        for package in kept:
            name = canonical_name(package.name)
            edges = _edges(package, package.requires, self._marker_env, extras.get(name, set()))
            locked[name] = Locked(name, package.version.text, edges)
        root_edges = _edges(None, root, self._marker_env, set())
        plan = plan_operations(root_edges, locked, tuple(map(_op, operations)), base)
        if plan.conflicts:
            for conflict in plan.conflicts:
                self._io.write_error_line(f"<error>layerenv: error: {conflict.line}</error>")
            return 1
        for index, reason in plan.skip.items():
            operations[index].skip(reason)
        return self._execute(operations)

    def _with_dependencies(self, package: Package) -> Package:
        if package.requires:
            return package
        if self._locked is None:
            self._locked = {(p.name, p.version.text): p for p in self._lock()}
        return self._locked.get((package.name, package.version.text), package)


def _locked_packages(locker: Locker) -> list[Package]:
    return list(locker.locked_repository().packages) if locker.is_locked() else []


def _layered_venv(path: Path) -> bool:
    return (path / "layerenv.json").is_file()


class LayerenvPoetryPlugin(ApplicationPlugin):
    """``[project.entry-points."poetry.application.plugin"] layerenv = ...:LayerenvPoetryPlugin``."""

    def activate(self, application: Application) -> None:
        dispatcher = application.event_dispatcher
        if dispatcher is not None:
            # Added after poetry's own listeners at the same priority: the env and installer are set.
            dispatcher.add_listener(COMMAND, self.on_command)

    def on_command(self, event: Event, event_name: str, dispatcher: EventDispatcher) -> None:
        from poetry.console.commands.env_command import EnvCommand
        from poetry.console.commands.installer_command import InstallerCommand
        from poetry.console.commands.run import RunCommand
        from poetry.console.commands.self.self_command import SelfCommand

        if not isinstance(event, ConsoleCommandEvent):
            return
        command = event.command
        if not isinstance(command, EnvCommand) or isinstance(command, SelfCommand):
            return
        venv = Path(command.env.path)
        if not _layered_venv(venv):
            return
        if isinstance(command, RunCommand):
            _constrain(venv, os.environ)
        if isinstance(command, InstallerCommand):
            executor = command.installer.executor
            guard = _Guard(executor.execute, event.io, venv, lambda: list(command.poetry.package.all_requires),
                           lambda: _locked_packages(command.poetry.locker), command.env.marker_env)
            setattr(executor, "execute", guard)  # noqa: B010 - an instance attribute over the method


def _constrain(venv: Path, environ: MutableMapping[str, str]) -> None:
    """What ``layerenv run`` sets: pip and uv keep the base's torch family."""
    ours = str(venv / CONSTRAINTS_FILE)
    for name in ("UV_CONSTRAINT", "PIP_CONSTRAINT"):
        others = [item for item in environ.get(name, "").split() if item != ours]
        environ[name] = " ".join([ours, *others])
