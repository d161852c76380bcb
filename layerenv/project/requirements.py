"""What a project declares, as one typed plan: requirements files, ``pyproject.toml`` (``[project]``,
PEP 735 ``[dependency-groups]``, poetry's tables), layerenv's config, and the project itself.

The torch family is never part of the plan: its requirements are kept apart to be checked against
the base, and its indexes are noted and left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from layerenv.config import read_toml
from layerenv.errors import BadInput
from layerenv.project.poetry import PoetryDependency, poetry_groups, poetry_table
from layerenv.project.requirements_file import IndexOptions, RequirementsFiles, read_requirements_files, reason
from layerenv.venv.distinfo import canonical_name, is_family

DEFAULT_GROUP = "dev"


@dataclass(frozen=True)
class ProjectPackage:
    """The project itself, installed editable as ``uv sync`` and ``poetry install`` do."""

    path: Path
    build_isolation: bool = True  # off only when its build needs the torch family (then built against the base)
    build_requirements: tuple[str, ...] = ()  # installed first when isolation is off (the family left out)


@dataclass(frozen=True)
class InstallStep:
    """One installer run: the lines of a requirements file layerenv writes, plus options."""

    what: str
    lines: tuple[str, ...]
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProjectDependencies:
    """What the project venv installs; the torch family is left to the base."""

    requirements: tuple[str, ...]
    files: tuple[Path, ...]
    family_requirements: tuple[tuple[str, str], ...] = field(default=())  # (requirement, where it came from)
    editables: tuple[str, ...] = ()  # absolute paths or VCS URLs
    constraints: tuple[str, ...] = ()  # from ``-c`` files, the family left out
    hashes: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (requirement, its --hash values)
    index: IndexOptions = field(default_factory=IndexOptions)
    require_hashes: bool = False
    notes: tuple[str, ...] = ()  # said once while installing: ignored torch indexes, build isolation off
    project: ProjectPackage | None = None
    groups: tuple[str, ...] = ()  # dependency groups installed

    @property
    def count(self) -> int:
        return len(self.requirements) + len(self.editables) + (self.project is not None)

    def steps(self, constraints_file: Path) -> list[InstallStep]:
        """The installer runs, in order. Hash-checking mode cannot take editables (nothing to hash), and
        a build without isolation needs its build requirements installed first: both go in a second run."""
        hashes = dict(self.hashes)
        head = self.index.lines() + ([f"-c {constraints_file}"] if self.constraints else [])
        main = [" ".join([text, *(f"--hash={value}" for value in hashes.get(text, ()))]) for text in self.requirements]
        editables = [f"-e {path}" for path in self.editables]
        project = [f"-e {self.project.path}"] if self.project is not None else []
        isolated = self.project is None or self.project.build_isolation
        if self.require_hashes:
            steps = [InstallStep("requirements (hash-checking mode)", tuple(head + main), ("--require-hashes",))]
            if later := editables + project:
                options = ("--no-deps",) if isolated else ("--no-deps", "--no-build-isolation")
                steps.append(InstallStep("editables (their dependencies: the hashed lines)", tuple(later), options))
            return steps if main else steps[1:]
        if isolated:
            first = main + editables + project
            return [InstallStep("requirements", tuple(head + first))] if first else []
        assert self.project is not None
        steps = []
        if first := main + editables + list(self.project.build_requirements):
            steps.append(InstallStep("requirements", tuple(head + first)))
        steps.append(InstallStep("the project, built against the base", tuple(head + project),
                                 ("--no-build-isolation",)))
        return steps


def _parse(text: str, origin: str) -> str:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        Requirement(text)
    except InvalidRequirement as error:
        raise BadInput(f"{origin}: an entry is not a valid requirement ({reason(error)})") from None
    return text


def _strings(value: object, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadInput(f"{what} must be a list of strings")
    return list(value)


def dependency_groups(document: Mapping[str, object], origin: str) -> dict[str, list[str]]:
    """PEP 735 ``[dependency-groups]`` with every ``{include-group = ...}`` expanded."""
    table = document.get("dependency-groups", {})
    if not isinstance(table, dict):
        raise BadInput(f"{origin}: [dependency-groups] must be a table")
    raw = {canonical_name(name): (name, value) for name, value in table.items()}

    def expand(key: str, stack: tuple[str, ...]) -> list[str]:
        if key in stack:
            raise BadInput(f"{origin}: [dependency-groups] includes itself: {' -> '.join((*stack, key))}")
        if key not in raw:
            raise BadInput(f"{origin}: [dependency-groups] {stack[-1]} includes {key!r}, which is not a group")
        name, value = raw[key]
        if not isinstance(value, list):
            raise BadInput(f"{origin}: [dependency-groups] {name} must be a list")
        found: list[str] = []
        for item in value:
            if isinstance(item, str):
                found.append(_parse(item, f"{origin} [dependency-groups] {name}"))
            elif isinstance(item, dict) and isinstance(item.get("include-group"), str) and len(item) == 1:
                found += expand(canonical_name(item["include-group"]), (*stack, key))
            else:
                raise BadInput(f"{origin}: [dependency-groups] {name}: an entry is neither a requirement "
                               "nor {include-group = \"NAME\"}")
        return found

    return {name: expand(key, ()) for key, (name, _) in raw.items()}


@dataclass
class _Gathered:
    found: list[tuple[str, str]] = field(default_factory=list)  # (requirement, origin)
    editables: list[str] = field(default_factory=list)
    family_only: list[tuple[str, str]] = field(default_factory=list)  # checked, never installed
    groups: list[str] = field(default_factory=list)


def _poetry(poetry: dict[str, object], document: Mapping[str, object], name: str, project_dir: Path,
            extras: tuple[str, ...], gathered: _Gathered) -> set[str]:
    """Poetry's main table (only when ``[project]`` lists no dependencies: poetry 2 then reads it only to
    enrich them, but a torch pin there is still checked) and poetry's extras; returns extras it served."""
    project = document.get("project", {})
    enriches = isinstance(project, dict) and "dependencies" in project
    declared: list[PoetryDependency] = poetry_table(poetry.get("dependencies", {}),
                                                    f"{name} [tool.poetry.dependencies]", project_dir)
    poetry_extras = poetry.get("extras", {})
    wanted = {canonical_name(item) for extra in extras
              for item in (poetry_extras.get(extra, []) if isinstance(poetry_extras, dict) else [])}
    for dependency in declared:
        from packaging.requirements import Requirement

        requirement = Requirement(dependency.requirement)
        if enriches:
            if is_family(requirement.name):
                gathered.family_only.append((dependency.requirement, f"{name} [tool.poetry.dependencies]"))
            continue
        if dependency.optional and canonical_name(requirement.name) not in wanted:
            continue
        _add_poetry(dependency, f"{name} [tool.poetry.dependencies]", gathered)
    return {extra for extra in extras if isinstance(poetry_extras, dict) and extra in poetry_extras}


def _add_poetry(dependency: PoetryDependency, origin: str, gathered: _Gathered) -> None:
    if dependency.editable is not None:
        gathered.editables.append(dependency.editable)
    else:
        gathered.found.append((dependency.requirement, origin))


def _groups(document: Mapping[str, object], name: str, project_dir: Path, groups: tuple[str, ...],
            default_groups: bool, gathered: _Gathered) -> None:
    pep735 = dependency_groups(document, name)
    tool = document.get("tool", {})
    poetry = tool.get("poetry", {}) if isinstance(tool, dict) else {}
    declared = poetry_groups(poetry, name) if isinstance(poetry, dict) else {}
    known = {canonical_name(group) for group in [*pep735, *declared]}
    chosen = [canonical_name(group) for group in groups]
    for group in chosen:
        if group not in known:
            listed = ", ".join(sorted(known)) or "none"
            raise BadInput(f"--group {group!r}: no such group in {project_dir / name} "
                           f"([dependency-groups] or [tool.poetry.group]; known: {listed})")
    if default_groups:  # uv installs `dev` by default; poetry every group not marked optional
        chosen += [DEFAULT_GROUP] if DEFAULT_GROUP in {canonical_name(g) for g in pep735} else []
        chosen += [canonical_name(g) for g, (_, optional) in declared.items() if not optional]
    for group in dict.fromkeys(chosen):
        gathered.groups.append(group)
        for pep_name, items in pep735.items():
            if canonical_name(pep_name) == group:
                gathered.found += [(item, f"{name} [dependency-groups] {pep_name}") for item in items]
        for poetry_name, (table, _) in declared.items():
            if canonical_name(poetry_name) == group:
                origin = f"{name} [tool.poetry.group.{poetry_name}]"
                for dependency in poetry_table(table, origin, project_dir):
                    _add_poetry(dependency, origin, gathered)


def _pyproject(project_dir: Path, extras: tuple[str, ...], groups: tuple[str, ...], default_groups: bool,
               gathered: _Gathered) -> Mapping[str, object]:
    path = project_dir / "pyproject.toml"
    if not path.is_file():
        if extras:
            raise BadInput(f"--extra {extras[0]!r}: {project_dir} has no pyproject.toml")
        if groups:
            raise BadInput(f"--group {groups[0]!r}: {project_dir} has no pyproject.toml")
        return {}
    document = read_toml(path)
    project = document.get("project", {})
    if not isinstance(project, dict):
        raise BadInput(f"{path}: [project] must be a table")
    listed = _strings(project.get("dependencies", []), f"{path}: [project] dependencies")
    gathered.found += [(_parse(item, f"{path.name} [project] dependencies"), f"{path.name}") for item in listed]
    tool = document.get("tool", {})
    poetry = tool.get("poetry") if isinstance(tool, dict) else None
    served = _poetry(poetry, document, path.name, project_dir, extras, gathered) if isinstance(poetry, dict) else set()
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        group = optional.get(extra) if isinstance(optional, dict) else None
        if extra in served and group is None:
            continue
        if not isinstance(group, list):
            known = sorted({*(optional if isinstance(optional, dict) else {}), *served})
            raise BadInput(
                f"--extra {extra!r}: no such group in {path} [project.optional-dependencies] "
                f"(known: {', '.join(known) or 'none'})"
            )
        gathered.found += [(_parse(item, f"{path.name} [{extra}]"), f"{path.name} [{extra}]") for item in group]
    _groups(document, path.name, project_dir, groups, default_groups, gathered)
    return document


def project_package(project_dir: Path, document: Mapping[str, object]) -> ProjectPackage | None:
    """The project as a package to install editable, or None when it is not one (no build system, or
    ``[tool.uv] package = false`` / ``[tool.poetry] package-mode = false``)."""
    tool = document.get("tool", {})
    tool = tool if isinstance(tool, dict) else {}
    uv, poetry = tool.get("uv", {}), tool.get("poetry", {})
    if (isinstance(uv, dict) and uv.get("package") is False) or (
        isinstance(poetry, dict) and poetry.get("package-mode") is False
    ):
        return None
    build = document.get("build-system")
    if not isinstance(build, dict):
        return ProjectPackage(project_dir) if (project_dir / "setup.py").is_file() else None
    requires = [item for item in build.get("requires", []) if isinstance(item, str)]
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        family = [item for item in requires if is_family(Requirement(item).name)]
    except InvalidRequirement as error:
        raise BadInput(f"{project_dir / 'pyproject.toml'}: [build-system] requires: {error}") from None
    if not family:
        return ProjectPackage(project_dir)
    return ProjectPackage(project_dir, build_isolation=False,
                          build_requirements=tuple(item for item in requires if item not in family))


def inside_project(what: str, path: Path, project_dir: Path) -> None:
    """Refuse a requirements file that is not inside the project once links are resolved (see
    layerenv.project.requirements_file: its lines would reach an index as package names)."""
    if not path.resolve().is_relative_to(project_dir.resolve()):
        raise BadInput(f"{what} must be a file inside the project {project_dir}, not an absolute path nor a path "
                       "or a link out of it")


def read_dependencies(
    project_dir: Path,
    requirement_files: tuple[str, ...],
    extra_dependencies: tuple[str, ...],
    extras: tuple[str, ...],
    *,
    groups: tuple[str, ...] = (),
    default_groups: bool = True,
    install_project: bool = False,
    from_pyproject: bool = True,
    env: Mapping[str, str] | None = None,
) -> ProjectDependencies:
    """Everything the project declares; ``from_pyproject=False`` leaves out ``pyproject.toml`` (what a lock
    file pins instead), keeping requirements files and ``layerenv.toml``."""
    import os

    paths = (
        [project_dir / name for name in requirement_files]
        if requirement_files
        else sorted(project_dir.glob("requirements*.txt"))
    )
    what = "[project] requirements: " if requirement_files else "requirements file "
    for name, path in zip(requirement_files or [p.name for p in paths], paths, strict=True):
        inside_project(f"{what}{name!r}", path, project_dir)
        if not path.is_file():
            raise BadInput(f"requirements file {path} does not exist")
    parsed: RequirementsFiles = read_requirements_files(paths, project_dir, os.environ if env is None else env)
    gathered = _Gathered()
    document = _pyproject(project_dir, extras, groups, default_groups, gathered) if from_pyproject else {}
    gathered.found += [(_parse(item, "layerenv.toml [project] dependencies"), "layerenv.toml")
                       for item in extra_dependencies]
    own: list[str] = []
    family: list[tuple[str, str]] = []
    constraints: list[str] = []
    editables: list[str] = []
    hashes: dict[str, tuple[str, ...]] = {}
    notes: list[str] = []
    for line in parsed.lines:
        if line.name is not None and is_family(line.name):
            if line.kind != "editable" and line.marker_applies and "://" not in line.text and "/" not in line.text:
                family.append((line.text, line.where))
            elif line.marker_applies:
                notes.append(f"{line.where}: {line.text} is torch family, which the base provides: not installed")
            continue
        if line.kind == "editable":
            editables.append(line.text)
            continue
        rendered = " ".join([line.text, *(f"--hash={value}" for value in line.hashes)])
        if line.kind == "constraint":
            constraints.append(rendered)
            continue
        own.append(line.text)
        if line.hashes:
            hashes[line.text] = line.hashes
    if gathered.found:  # packaging costs ~20 ms to import: not for a project that declares nothing
        from packaging.requirements import Requirement
    for text, origin in gathered.found:
        if is_family(Requirement(text).name):
            family.append((text, origin))
        else:
            own.append(text)
    family += gathered.family_only
    editables += gathered.editables
    notes += [f"{where}: {url} serves the torch family, which the base provides: not used"
              for url, where in parsed.family_indexes]
    package = project_package(project_dir, document) if install_project else None
    if package is not None and not package.build_isolation:
        notes.append(f"{project_dir} builds against torch: building it without isolation, against the base")
    if parsed.hashed and (editables or package is not None):
        notes.append("hash-checking mode: editables are installed after the hashed requirements, without "
                     "their dependencies")
    return ProjectDependencies(
        requirements=tuple(dict.fromkeys(own)),
        files=parsed.files,
        family_requirements=tuple(family),
        editables=tuple(dict.fromkeys(editables)),
        constraints=tuple(dict.fromkeys(constraints)),
        hashes=tuple(hashes.items()),
        index=parsed.index,
        require_hashes=parsed.hashed,
        notes=tuple(notes),
        project=package,
        groups=tuple(gathered.groups),
    )
