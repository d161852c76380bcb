"""Lock files (``uv.lock``, ``poetry.lock``, ``pylock.toml``) read into typed packages, and the plan
of what a layered project installs from one: everything the lock pins for this interpreter and the
chosen groups, except the torch family and what only the torch family needs.

Pure: texts and dicts in, frozen dataclasses out; nothing here runs an installer or reads a venv.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from layerenv import tomlcompat
from layerenv.errors import BadInput
from layerenv.project.requirements_file import reason
from layerenv.venv.distinfo import canonical_name, is_family

#: Family members a project may name itself; the rest (triton, nvidia-*, ...) come with torch.
TOP_FAMILY = frozenset({"torch", "torchvision", "torchaudio"})

SourceKind = Literal["registry", "url", "path", "editable", "virtual", "git", "directory"]


@dataclass(frozen=True)
class Dependency:
    """An edge of the lock's graph: ``name`` (with ``extras``) when ``marker`` holds."""

    name: str
    marker: str | None = None
    extras: tuple[str, ...] = ()
    version: str | None = None  # uv names the version when the lock holds several of one package
    specifier: str | None = None  # the requirement's specifier, where the lock records it


@dataclass(frozen=True)
class LockedPackage:
    name: str  # PEP 503 normalised
    version: str
    source: SourceKind
    index: str | None = None  # the registry (a URL, or a path as uv writes local ones)
    url: str | None = None  # url/path/git/directory/editable sources
    hashes: tuple[str, ...] = ()  # "sha256:<hex>" of every artifact the lock lists
    marker: str | None = None  # when the package applies at all (pylock, poetry)
    dependencies: tuple[Dependency, ...] = ()
    extras: Mapping[str, tuple[Dependency, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Lock:
    kind: str  # the file name: "uv.lock", "poetry.lock", "pylock.toml"
    packages: tuple[LockedPackage, ...]
    roots: tuple[Dependency, ...]  # the project's own dependencies
    extras: Mapping[str, tuple[Dependency, ...]]  # the project's optional dependencies
    groups: Mapping[str, tuple[Dependency, ...]]  # the project's dependency groups
    default_groups: tuple[str, ...]
    has_edges: bool  # False for a lock without dependency edges (pylock.toml as uv writes it)
    project: LockedPackage | None = None  # the project itself, where the lock lists it

    def named(self, name: str) -> list[LockedPackage]:
        return [package for package in self.packages if package.name == canonical_name(name)]


@dataclass(frozen=True)
class Selection:
    """Which optional parts to install, as ``uv sync`` takes them."""

    extras: tuple[str, ...] = ()
    all_extras: bool = False
    groups: tuple[str, ...] = ()
    all_groups: bool = False
    no_default_groups: bool = False


@dataclass(frozen=True)
class FamilyNeed:
    """A torch-family package that a kept package (or the project) requires directly."""

    name: str
    specifier: str | None
    by: str  # "the project" or "name version"


@dataclass(frozen=True)
class Plan:
    install: tuple[LockedPackage, ...]
    family: tuple[FamilyNeed, ...]  # left to the base
    only_family: tuple[str, ...]  # non-family packages the lock pins only for the torch family
    locked_family: Mapping[str, str]  # family name -> version the lock resolved


@dataclass(frozen=True)
class Conflict:
    need: FamilyNeed
    base_version: str | None  # None: the base has no such package

    def describe(self, base: str) -> str:
        wanted = f"{self.need.name}{self.need.specifier or ''}"
        has = f"{self.need.name} {self.base_version}" if self.base_version else f"no {self.need.name}"
        return f"{self.need.by} requires {wanted}, but base {base} has {has}"


# --------------------------------------------------------------------------- readers


def _table(value: object, where: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise BadInput(f"{where} must be a table")
    return value


def _tables(value: object, where: str) -> list[dict[str, object]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadInput(f"{where} must be an array of tables")
    return [_table(item, where) for item in value]


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadInput(f"{where} must be a non-empty string")
    return value


def _optional_text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _strings(value: object) -> tuple[str, ...]:
    return tuple(item for item in value if isinstance(item, str)) if isinstance(value, list) else ()


def _parse_toml(text: str, where: str) -> dict[str, object]:
    try:
        document: dict[str, object] = tomlcompat.loads(text)
    except tomlcompat.TOMLDecodeError as error:
        raise BadInput(f"{where} is not valid TOML ({error}); restore it from version control") from None
    return document


def _uv_dependency(item: dict[str, object], where: str) -> Dependency:
    return Dependency(
        name=canonical_name(_text(item.get("name"), f"{where} name")),
        marker=_optional_text(item.get("marker")),
        extras=_strings(item.get("extra")),
        version=_optional_text(item.get("version")),
        specifier=_optional_text(item.get("specifier")),
    )


def _uv_hashes(package: dict[str, object]) -> tuple[str, ...]:
    artifacts = _tables(package.get("wheels"), "wheels")
    if isinstance(package.get("sdist"), dict):
        artifacts.append(_table(package["sdist"], "sdist"))
    return tuple(str(artifact["hash"]) for artifact in artifacts if isinstance(artifact.get("hash"), str))


_UV_SOURCES: tuple[SourceKind, ...] = ("registry", "url", "path", "editable", "virtual", "git", "directory")


def read_uv_lock(text: str, where: str = "uv.lock") -> Lock:
    """``uv.lock`` (version 1): every package with its source, hashes and edges; the project is the
    package whose source is ``editable``/``virtual`` ``"."``."""
    document = _parse_toml(text, where)
    if document.get("version") != 1:
        raise BadInput(f"{where}: version {document.get('version')!r} is not one layerenv reads (1)")
    packages: list[LockedPackage] = []
    project: LockedPackage | None = None
    project_groups: dict[str, tuple[Dependency, ...]] = {}
    for index, raw in enumerate(_tables(document.get("package"), f"{where} [[package]]")):
        at = f"{where} [[package]] #{index + 1}"
        source = _table(raw.get("source", {}), f"{at} source")
        kind = next((k for k in _UV_SOURCES if k in source), None)
        if kind is None:
            raise BadInput(f"{at}: source {source!r} is none of {', '.join(_UV_SOURCES)}")
        optional = _table(raw.get("optional-dependencies", {}), f"{at} optional-dependencies")
        package = LockedPackage(
            name=canonical_name(_text(raw.get("name"), f"{at} name")),
            version=str(raw.get("version", "")),
            source=kind,
            index=str(source[kind]) if kind == "registry" else None,
            url=str(source[kind]) if kind != "registry" else None,
            hashes=_uv_hashes(raw),
            dependencies=tuple(_uv_dependency(d, at) for d in _tables(raw.get("dependencies"), at)),
            extras={name: tuple(_uv_dependency(d, at) for d in _tables(deps, at)) for name, deps in optional.items()},
        )
        packages.append(package)
        if kind in ("editable", "virtual") and source[kind] == ".":
            project = package
            groups = _table(raw.get("dev-dependencies", {}), f"{at} dev-dependencies")
            project_groups = {g: tuple(_uv_dependency(d, at) for d in _tables(deps, at)) for g, deps in groups.items()}
    if project is not None:  # the specifiers the project asked for, kept for the torch check
        metadata = _table(next(p for p in _tables(document.get("package"), where)
                               if canonical_name(str(p.get("name"))) == project.name).get("metadata", {}), where)
        asked = {canonical_name(str(d.get("name"))): _optional_text(d.get("specifier"))
                 for d in _tables(metadata.get("requires-dist"), where)}
        roots = tuple(Dependency(d.name, d.marker, d.extras, d.version, asked.get(d.name))
                      for d in project.dependencies)
    else:
        roots = ()
    return Lock(
        kind="uv.lock",
        packages=tuple(packages),
        roots=roots,
        extras=dict(project.extras) if project else {},
        groups=project_groups,
        default_groups=("dev",),
        has_edges=True,
        project=project,
    )


def _pep508_dependency(text: str, where: str) -> Dependency:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        requirement = Requirement(text)
    except InvalidRequirement as error:
        raise BadInput(f"{where}: not a valid requirement ({reason(error)})") from None
    return Dependency(
        name=canonical_name(requirement.name),
        marker=str(requirement.marker) if requirement.marker else None,
        extras=tuple(sorted(requirement.extras)),
        specifier=str(requirement.specifier) or None,
    )


def _poetry_constraint(name: str, value: object) -> list[Dependency]:
    """One ``[package.dependencies]`` entry: ``"^1.0"``, a table, or a list of tables (per marker)."""
    entries = value if isinstance(value, list) else [value]
    found = []
    for entry in entries:
        if isinstance(entry, str):
            found.append(Dependency(canonical_name(name), specifier=_poetry_specifier(entry)))
        elif isinstance(entry, dict):
            marker = _optional_text(entry.get("markers"))
            python = _optional_text(entry.get("python"))
            if python and not marker:
                marker = _python_marker(python)
            found.append(Dependency(canonical_name(name), marker=marker, extras=_strings(entry.get("extras")),
                                    specifier=_poetry_specifier(str(entry.get("version", "*")))))
    return found


def _poetry_specifier(text: str) -> str | None:
    """Poetry's ``^``/``~`` and PEP 440 forms as a PEP 440 specifier (enough for the torch check)."""
    text = text.strip()
    if text in ("", "*"):
        return None
    parts = []
    for piece in re.split(r"\s*,\s*", text):
        if piece.startswith("^"):
            release = piece[1:].split(".")
            first = next((i for i, p in enumerate(release) if p != "0"), len(release) - 1)
            upper = [*release[: first], str(int(release[first]) + 1)]
            parts += [f">={piece[1:]}", f"<{'.'.join(upper)}"]
        elif piece.startswith("~") and not piece.startswith("~="):
            release = piece[1:].split(".")
            upper = [release[0], str(int(release[1]) + 1)] if len(release) > 1 else [str(int(release[0]) + 1)]
            parts += [f">={piece[1:]}", f"<{'.'.join(upper)}"]
        elif piece[:1].isdigit():
            parts.append(f"=={piece}")
        else:
            parts.append(piece)
    return ",".join(parts)


def _python_marker(constraint: str) -> str | None:
    specifier = _poetry_specifier(constraint)
    if not specifier:
        return None
    clauses = []
    for piece in specifier.split(","):
        operator = re.match(r"[<>=!~]+", piece)
        op = operator[0] if operator else "=="
        clauses.append(f'python_full_version {op} "{piece[len(op):]}"')
    return " and ".join(clauses)


def read_poetry_lock(text: str, pyproject: Mapping[str, object], where: str = "poetry.lock") -> Lock:
    """``poetry.lock`` (2.x): packages with hashes, sources and specifier edges; the project's own
    requirements come from ``pyproject`` (``[project]`` and ``[tool.poetry]``)."""
    document = _parse_toml(text, where)
    packages = []
    for index, raw in enumerate(_tables(document.get("package"), f"{where} [[package]]")):
        at = f"{where} [[package]] #{index + 1}"
        source = _table(raw.get("source", {}), f"{at} source")
        kind_text = str(source.get("type", "")) if source else ""
        kind: SourceKind = {"": "registry", "legacy": "registry", "url": "url", "file": "path",
                            "directory": "directory", "git": "git"}.get(kind_text, "registry")  # type: ignore[assignment]
        dependencies = [d for name, value in _table(raw.get("dependencies", {}), at).items()
                        for d in _poetry_constraint(name, value)]
        extras = {name: tuple(_pep508_dependency(t, at) for t in _strings(items))
                  for name, items in _table(raw.get("extras", {}), at).items()}
        markers = raw.get("markers")
        packages.append(LockedPackage(
            name=canonical_name(_text(raw.get("name"), f"{at} name")),
            version=str(raw.get("version", "")),
            source=kind,
            index=str(source["url"]) if kind == "registry" and source.get("url") else None,
            url=str(source.get("url")) if kind != "registry" and source.get("url") else None,
            hashes=tuple(str(f["hash"]) for f in _tables(raw.get("files"), at) if isinstance(f.get("hash"), str)),
            marker=markers if isinstance(markers, str) else None,
            dependencies=tuple(dependencies),
            extras=extras,
        ))
    roots, extras, groups, defaults = _poetry_roots(pyproject)
    return Lock("poetry.lock", tuple(packages), roots, extras, groups, defaults, has_edges=True)


Edges = tuple[Dependency, ...]


def _poetry_roots(pyproject: Mapping[str, object]) -> tuple[Edges, dict[str, Edges], dict[str, Edges], tuple[str, ...]]:
    where = "pyproject.toml"
    project = _table(pyproject.get("project", {}), f"{where} [project]")
    tool = _table(_table(pyproject.get("tool", {}), f"{where} [tool]").get("poetry", {}), f"{where} [tool.poetry]")
    roots = [_pep508_dependency(t, f"{where} [project] dependencies") for t in _strings(project.get("dependencies"))]
    for name, value in _table(tool.get("dependencies", {}), f"{where} [tool.poetry.dependencies]").items():
        if name != "python" and not any(d.name == canonical_name(name) for d in roots):
            roots += _poetry_constraint(name, value)
    extras = {name: tuple(_pep508_dependency(t, f"{where} [{name}]") for t in _strings(items))
              for name, items in _table(project.get("optional-dependencies", {}), where).items()}
    groups: dict[str, tuple[Dependency, ...]] = {}
    defaults: list[str] = []
    for name, group in _table(tool.get("group", {}), f"{where} [tool.poetry.group]").items():
        table = _table(group, f"{where} [tool.poetry.group.{name}]")
        deps = _table(table.get("dependencies", {}), where)
        groups[name] = tuple(d for n, v in deps.items() for d in _poetry_constraint(n, v))
        if not table.get("optional", False):
            defaults.append(name)
    for name, items in _table(pyproject.get("dependency-groups", {}), where).items():
        listed = tuple(_pep508_dependency(t, f"{where} [dependency-groups] {name}") for t in _strings(items))
        groups[name] = groups.get(name, ()) + listed
        if name not in defaults:
            defaults.append(name)
    return tuple(roots), extras, groups, tuple(defaults)


def read_pylock(text: str, where: str = "pylock.toml") -> Lock:
    """``pylock.toml`` (PEP 751): each package with its marker, index and hashes; edges only where
    ``dependencies`` lists them (uv's export has none)."""
    document = _parse_toml(text, where)
    version = str(document.get("lock-version", ""))
    if not version.startswith("1."):
        raise BadInput(f"{where}: lock-version {version!r} is not one layerenv reads (1.x)")
    packages = []
    edges = False
    for index, raw in enumerate(_tables(document.get("packages"), f"{where} [[packages]]")):
        at = f"{where} [[packages]] #{index + 1}"
        artifacts = _tables(raw.get("wheels"), at)
        if isinstance(raw.get("sdist"), dict):
            artifacts.append(_table(raw["sdist"], at))
        hashes = tuple(f"{algorithm}:{digest}" for artifact in artifacts
                       for algorithm, digest in _table(artifact.get("hashes", {}), at).items())
        kind: SourceKind = "registry"
        url = None
        sources: tuple[tuple[str, SourceKind], ...] = (("vcs", "git"), ("directory", "directory"), ("archive", "url"))
        for key, source_kind in sources:
            if isinstance(raw.get(key), dict):
                where_from = _table(raw[key], at)
                kind, url = source_kind, str(where_from.get("url") or where_from.get("path"))
        dependencies = tuple(Dependency(canonical_name(str(d.get("name"))), version=_optional_text(d.get("version")))
                             for d in _tables(raw.get("dependencies"), at))
        edges = edges or "dependencies" in raw
        packages.append(LockedPackage(
            name=canonical_name(_text(raw.get("name"), f"{at} name")),
            version=str(raw.get("version", "")),
            source=kind,
            index=_optional_text(raw.get("index")),
            url=url,
            hashes=hashes,
            marker=_optional_text(raw.get("marker")),
            dependencies=dependencies,
        ))
    return Lock("pylock.toml", tuple(packages), (), {}, {}, (), has_edges=edges)


def read_lock(path: Path, pyproject: Mapping[str, object] | None = None) -> Lock:
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.name == "uv.lock":
        return read_uv_lock(text, str(path))
    if path.name == "poetry.lock":
        return read_poetry_lock(text, pyproject or {}, str(path))
    return read_pylock(text, str(path))


# --------------------------------------------------------------------------- the plan


def marker_holds(marker: str | None, environment: Mapping[str, str], extras: Iterable[str] = ()) -> bool:
    """Whether ``marker`` holds here; one this packaging cannot evaluate counts as holding (keeping
    a package is safer than dropping one the project needs)."""
    if not marker:
        return True
    from packaging.markers import InvalidMarker, Marker, UndefinedComparison, UndefinedEnvironmentName

    try:
        parsed = Marker(marker)
        wanted = tuple(extras) or ("",)
        return any(parsed.evaluate({**environment, "extra": extra}) for extra in wanted)
    except (InvalidMarker, UndefinedComparison, UndefinedEnvironmentName):
        return True


def _roots(lock: Lock, selection: Selection) -> list[Dependency]:
    for extra in selection.extras:
        if extra not in lock.extras:
            known = ", ".join(sorted(lock.extras)) or "none"
            raise BadInput(f"--extra {extra!r}: {lock.kind} has no such extra (known: {known})")
    for group in selection.groups:
        if group not in lock.groups:
            known = ", ".join(sorted(lock.groups)) or "none"
            raise BadInput(f"--group {group!r}: {lock.kind} has no such group (known: {known})")
    roots = list(lock.roots)
    for extra in sorted(lock.extras) if selection.all_extras else selection.extras:
        roots += lock.extras[extra]
    groups = set(selection.groups)
    if selection.all_groups:
        groups |= set(lock.groups)
    if not selection.no_default_groups:
        groups |= {g for g in lock.default_groups if g in lock.groups}
    for group in sorted(groups):
        roots += lock.groups[group]
    return roots


def _pick(lock: Lock, dependency: Dependency, environment: Mapping[str, str]) -> LockedPackage | None:
    candidates = lock.named(dependency.name)
    if dependency.version:
        candidates = [p for p in candidates if p.version == dependency.version] or candidates
    fitting = [p for p in candidates if marker_holds(p.marker, environment)]
    chosen = fitting or candidates
    return chosen[0] if chosen else None


def plan(lock: Lock, environment: Mapping[str, str], selection: Selection,
         base_versions: Mapping[str, str]) -> Plan:
    """What the project venv installs from ``lock``: the packages reachable from the project's roots
    without passing through a torch-family package. A lock without edges (pylock.toml) keeps every
    package whose marker holds, except the family and those the base already has at the locked
    version (the base's own dependencies, whose stubs already stand in the project venv)."""
    locked_family = {p.name: p.version for p in lock.packages if is_family(p.name)}
    if not lock.has_edges:
        kept = [p for p in lock.packages if not is_family(p.name) and marker_holds(p.marker, environment)]
        wanted = [p for p in kept if _public(base_versions.get(p.name, "")) != _public(p.version)]
        covered = sorted(p.name for p in kept if p not in wanted)
        # The lock says which torch it resolved, not what asked for it: only presence is checked here.
        family = tuple(FamilyNeed(p.name, None, f"{lock.kind} ({p.name} {p.version})")
                       for p in lock.packages if p.name in TOP_FAMILY and marker_holds(p.marker, environment))
        return Plan(tuple(wanted), family, tuple(covered), locked_family)
    install: dict[str, LockedPackage] = {}
    needs: list[FamilyNeed] = []
    seen: set[tuple[str, tuple[str, ...]]] = set()
    stack: list[tuple[Dependency, str]] = [(d, "the project") for d in _roots(lock, selection)]
    while stack:
        dependency, by = stack.pop()
        if not marker_holds(dependency.marker, environment):
            continue
        if is_family(dependency.name):
            needs.append(FamilyNeed(dependency.name, dependency.specifier, by))
            continue
        package = _pick(lock, dependency, environment)
        if package is None or (package.name, dependency.extras) in seen:
            continue
        seen.add((package.name, dependency.extras))
        if package is not lock.project:
            install[package.name] = package
        who = f"{package.name} {package.version}"
        stack += [(d, who) for d in package.dependencies]
        for extra in dependency.extras:
            stack += [(d, who) for d in package.extras.get(extra, ())]
    only_family = _only_family(lock, set(install), environment)
    return Plan(tuple(install[name] for name in sorted(install)), tuple(needs), only_family, locked_family)


def _only_family(lock: Lock, kept: set[str], environment: Mapping[str, str]) -> tuple[str, ...]:
    """Non-family packages the lock pins for the torch family and nothing the project keeps."""
    stack = [d for p in lock.packages if is_family(p.name) for d in p.dependencies]
    reached: set[str] = set()
    while stack:
        dependency = stack.pop()
        if dependency.name in reached or is_family(dependency.name) or not marker_holds(dependency.marker, environment):
            continue
        reached.add(dependency.name)
        package = _pick(lock, dependency, environment)
        stack += list(package.dependencies) if package else []
    return tuple(sorted(reached - kept))


def _public(version: str) -> str:
    return version.split("+", 1)[0]


def conflicts(plan_: Plan, base_family: Mapping[str, str]) -> list[Conflict]:
    """Each family requirement of the kept packages that the base's builds do not meet. A local label
    (``+cpu``) never fails an unlabelled specifier: ``torch>=2.0`` holds for ``2.9.1+cpu``."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    found = []
    for need in plan_.family:
        version = base_family.get(need.name)
        if version is None:
            if need.name in TOP_FAMILY:
                found.append(Conflict(need, None))
            continue
        try:
            specifier = SpecifierSet(need.specifier or "")
        except InvalidSpecifier:
            continue
        if not any(specifier.contains(v, prereleases=True) for v in (version, _public(version))):
            found.append(Conflict(need, version))
    return found
