"""The poetry plugin's adapter: poetry's operations, packages and dependencies in, the plan of
:mod:`layerenv.integrations.poetry_plan` applied to them out (imported only in a layered venv)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from layerenv.errors import LayerenvError
from layerenv.integrations.poetry_plan import BaseView, Edge, Locked, Op, plan_operations
from layerenv.project.link import LinkRecord, read_link
from layerenv.venv.distinfo import canonical_name, is_family, read_distributions

if TYPE_CHECKING:
    from cleo.io.io import IO
    from poetry.core.packages.dependency import Dependency
    from poetry.core.packages.package import Package
    from poetry.installation.operations.operation import Operation
    from poetry.packages.locker import Locker

__all__ = ["Guard", "locked_packages"]

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


class Guard:
    """Wraps an executor's ``execute``: plan first, then run what is left, or stop."""

    def __init__(self, execute: Execute, io: IO, venv: Path, root: Callable[[], list[Dependency]],
                 lock: Callable[[], list[Package]], marker_env: Mapping[str, Any]) -> None:
        self._execute, self._io, self._venv, self._marker_env = execute, io, venv, marker_env
        self._root, self._lock = root, lock
        self._locked: dict[tuple[str, str], Package] | None = None

    def __call__(self, operations: list[Operation]) -> int:
        try:
            record = read_link(self._venv)
            base = _base_view(record, self._marker_env) if record is not None else None
        except LayerenvError as error:  # an unreadable layerenv.json: say so, change nothing
            self._io.write_error_line(f"<error>layerenv: error: {error}</error>")
            return 1
        if base is None:
            return self._execute(operations)
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
        fresh = [index for index in plan.skip if not operations[index].skipped]
        for index, reason in plan.skip.items():
            operations[index].skip(reason)
        if fresh:  # printed at normal verbosity, not under -q
            self._io.write_line(f"layerenv: skipping {len(fresh)} operation(s) on the torch family and what only it "
                                f"needs: base {base.base_id} provides them (torch {base.torch})")
        return self._execute(operations)

    def _with_dependencies(self, package: Package) -> Package:
        if package.requires:
            return package
        if self._locked is None:
            self._locked = {(p.name, p.version.text): p for p in self._lock()}
        return self._locked.get((package.name, package.version.text), package)


def locked_packages(locker: Locker) -> list[Package]:
    return list(locker.locked_repository().packages) if locker.is_locked() else []
