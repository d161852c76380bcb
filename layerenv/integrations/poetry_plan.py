"""Which of poetry's install operations a layered project venv must not run, and which requirements
its base cannot meet: a pure function over plain facts (no poetry import), so it is tested alone.

The torch family always loads from the base, so every operation on it is skipped. So is every
package that only the family needs (``sympy``, ``networkx``, ... when nothing else asks for them):
a project copy would shadow the base's, which the base's torch was installed with. A package the
project needs too is installed as locked when the locked version also meets the base family's own
requirements on it; when it does not, the base's copy is kept if it meets every project requirer,
and otherwise nothing runs. A project requirement on the family that the base cannot meet stops the
command before anything is downloaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from layerenv.venv.distinfo import canonical_name, is_family

__all__ = ["BaseView", "Conflict", "Edge", "Locked", "Op", "Plan", "plan_operations"]

PROJECT = "the project"  # the requirer of the root's own dependencies


@dataclass(frozen=True)
class Edge:
    """One requirement that applies here (markers and extras already evaluated)."""

    name: str  # canonical
    specifier: str = ""  # PEP 440, "" = any version: ">=2.0", "==2.5.1"

    @property
    def text(self) -> str:
        return f"{self.name}{self.specifier}"


@dataclass(frozen=True)
class Locked:
    """A package the transaction keeps, with the requirements it brings."""

    name: str
    version: str
    requires: tuple[Edge, ...] = ()


@dataclass(frozen=True)
class Op:
    """One of poetry's operations, reduced to what the decision needs."""

    kind: Literal["install", "update", "uninstall"]
    name: str
    version: str  # the target version (the installed one for an uninstall)


@dataclass(frozen=True)
class BaseView:
    """What the project's base provides."""

    base_id: str
    versions: Mapping[str, str]  # every base distribution: canonical name -> version
    family_requires: Mapping[str, tuple[Edge, ...]] = field(default_factory=dict)  # family dist -> its requirements
    stubs: frozenset[str] = frozenset()  # names layerenv stubbed into the project venv

    @property
    def torch(self) -> str:
        return self.versions.get("torch", "(none)")


@dataclass(frozen=True)
class Conflict:
    """A requirement the base cannot meet; ``line`` says so, with the fix."""

    requirer: str  # "needs-torch 1.0" or "the project"
    requirement: str  # "torch>=99"
    line: str


@dataclass(frozen=True)
class Plan:
    skip: Mapping[int, str]  # index into the operations -> why it is skipped
    conflicts: tuple[Conflict, ...]


def _allows(specifier: str, version: str) -> bool:
    if not specifier:
        return True
    try:
        return SpecifierSet(specifier).contains(Version(version), prereleases=True)
    except (InvalidSpecifier, InvalidVersion):
        return False


def _project_needs(root: Iterable[Edge], locked: Mapping[str, Locked]) -> set[str]:
    """Packages reachable from the project without passing through the torch family."""
    seen: set[str] = set()
    todo = [edge.name for edge in root]
    while todo:
        name = todo.pop()
        if name in seen or is_family(name) or name not in locked:
            continue
        seen.add(name)
        todo.extend(edge.name for edge in locked[name].requires)
    return seen


def _family_fix(edge: Edge, base: BaseView) -> str:
    if edge.name == "torch" and edge.specifier:
        return f'set [torch] version = "{edge.specifier}" in layerenv.toml, then run `layerenv project` again'
    if edge.name not in base.versions:
        return f'add "{edge.name}" to [base] packages in layerenv.toml, then run `layerenv project` again'
    return "pin the torch release it needs with [torch] version in layerenv.toml, then run `layerenv project` again"


def _family_conflicts(requirer: str, edges: Iterable[Edge], base: BaseView) -> list[Conflict]:
    found = []
    for edge in edges:
        if not is_family(edge.name):
            continue
        have = base.versions.get(edge.name)
        if have is not None and _allows(edge.specifier, have):
            continue
        provides = f"{edge.name} {have}" if have else f"no {edge.name}"
        line = (f"{requirer} requires {edge.text}, but base {base.base_id} (torch {base.torch}) has {provides}; "
                f"{_family_fix(edge, base)}")
        found.append(Conflict(requirer, edge.text, line))
    return found


def _requirers(name: str, root: Iterable[Edge], locked: Mapping[str, Locked], needed: set[str]) -> list[Edge]:
    """The project side's requirements on ``name``: the root's and those of every package it needs."""
    edges = [edge for edge in root if edge.name == name]
    for other in needed:
        edges.extend(edge for edge in locked[other].requires if edge.name == name)
    return edges


def _shared_decision(op: Op, root: tuple[Edge, ...], locked: Mapping[str, Locked], needed: set[str],
                     base: BaseView) -> tuple[str | None, Conflict | None]:
    """A package both the project and the base's family need: (skip reason, conflict)."""
    family_edges = [(dist, edge) for dist, edges in base.family_requires.items() for edge in edges
                    if edge.name == op.name]
    broken = [(dist, edge) for dist, edge in family_edges if not _allows(edge.specifier, op.version)]
    if not broken:
        return None, None  # installed as locked: the base's family accepts it
    have = base.versions.get(op.name)
    project_side = _requirers(op.name, root, locked, needed)
    dist, edge = broken[0]
    if have is not None and all(_allows(e.specifier, have) for e in project_side):
        return (f"the base's {op.name} {have} is kept: the locked {op.version} would break the base's "
                f"{dist} (requires {edge.text})"), None
    wanted = ", ".join(sorted({e.text for e in project_side})) or op.name
    line = (f"the project needs {wanted} ({op.name} {op.version} locked), but base {base.base_id}'s {dist} "
            f"requires {edge.text}; relax the project's requirement or pin another torch with [torch] version "
            "in layerenv.toml, then run `layerenv project` again")
    return None, Conflict(PROJECT, wanted, line)


def plan_operations(root: tuple[Edge, ...], locked: Mapping[str, Locked], ops: tuple[Op, ...],
                    base: BaseView) -> Plan:
    """Decide, for a layered venv, which operations to skip and which requirements the base cannot meet.

    ``root``: the project's own requirements; ``locked``: every package the transaction keeps, by
    canonical name; ``ops``: poetry's operations in order (indexes key the result).
    """
    root = tuple(Edge(canonical_name(e.name), e.specifier) for e in root)
    needed = _project_needs(root, locked)
    conflicts = _family_conflicts(PROJECT, root, base)
    for name in sorted(needed):
        package = locked[name]
        conflicts.extend(_family_conflicts(f"{package.name} {package.version}", package.requires, base))
    skip: dict[int, str] = {}
    provided = f"provided by the layerenv base {base.base_id}"
    for index, op in enumerate(ops):
        name = canonical_name(op.name)
        if is_family(name):
            skip[index] = f"{provided} (torch {base.torch})"
        elif op.kind == "uninstall":
            if name in base.stubs:
                skip[index] = f"{provided}: layerenv's stub, not the project's"
        elif name not in needed:
            skip[index] = f"only the torch family needs it; {provided}"
        elif name in base.versions:
            reason, conflict = _shared_decision(Op(op.kind, name, op.version), root, locked, needed, base)
            if reason:
                skip[index] = reason
            if conflict:
                conflicts.append(conflict)
    return Plan(skip, tuple(dict.fromkeys(conflicts)))
