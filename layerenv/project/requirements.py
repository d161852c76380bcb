"""A project's own dependencies: requirements files, ``pyproject.toml``, and layerenv's config."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from layerenv.config import read_toml, read_user_text
from layerenv.errors import BadInput
from layerenv.venv.distinfo import is_family


@dataclass(frozen=True)
class ProjectDependencies:
    """What the project venv installs; the torch family is left to the base."""

    requirements: tuple[str, ...]
    files: tuple[Path, ...]
    family_requirements: tuple[tuple[str, str], ...] = field(default=())  # (requirement, where it came from)


def _parse(text: str, origin: str) -> str:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        Requirement(text)
    except InvalidRequirement as error:
        raise BadInput(f"{origin}: {text!r} is not a valid requirement ({str(error).splitlines()[0]})") from None
    return text


def _requirements_file(path: Path, project_dir: Path) -> list[tuple[str, str]]:
    text = read_user_text(path)
    found: list[tuple[str, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        origin = f"{path.relative_to(project_dir) if path.is_relative_to(project_dir) else path}:{number}"
        if line.startswith("-"):
            raise BadInput(
                f"{origin}: pip options such as {line.split()[0]!r} are not supported here; "
                "list plain requirements (indexes belong in layerenv.toml [index])"
            )
        found.append((_parse(line, origin), origin))
    return found


def _pyproject(project_dir: Path, extras: tuple[str, ...]) -> list[tuple[str, str]]:
    path = project_dir / "pyproject.toml"
    if not path.is_file():
        if extras:
            raise BadInput(f"--extra {extras[0]!r}: {project_dir} has no pyproject.toml")
        return []
    document = read_toml(path)
    project = document.get("project", {})
    if not isinstance(project, dict):
        raise BadInput(f"{path}: [project] must be a table")
    listed = project.get("dependencies", [])
    if not isinstance(listed, list) or not all(isinstance(item, str) for item in listed):
        raise BadInput(f"{path}: [project] dependencies must be a list of strings")
    found = [(_parse(item, f"{path.name} [project] dependencies"), f"{path.name}") for item in listed]
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        group = optional.get(extra) if isinstance(optional, dict) else None
        if not isinstance(group, list):
            known = ", ".join(sorted(optional)) if isinstance(optional, dict) and optional else "none"
            raise BadInput(
                f"--extra {extra!r}: no such group in {path} [project.optional-dependencies] (known: {known})"
            )
        found += [(_parse(item, f"{path.name} [{extra}]"), f"{path.name} [{extra}]") for item in group]
    return found


def pyproject_requirements(project_dir: Path, extras: tuple[str, ...]) -> list[str]:
    """The requirements ``pyproject.toml`` names (``[project]`` dependencies and ``extras``)."""
    return [text for text, _ in _pyproject(project_dir, extras)]


def read_dependencies(
    project_dir: Path,
    requirement_files: tuple[str, ...],
    extra_dependencies: tuple[str, ...],
    extras: tuple[str, ...],
) -> ProjectDependencies:
    from packaging.requirements import Requirement

    files = (
        [project_dir / name for name in requirement_files]
        if requirement_files
        else sorted(project_dir.glob("requirements*.txt"))
    )
    for path in files:
        if not path.is_file():
            raise BadInput(f"requirements file {path} does not exist")
    found: list[tuple[str, str]] = []
    for path in files:
        found += _requirements_file(path, project_dir)
    found += _pyproject(project_dir, extras)
    found += [(_parse(item, "layerenv.toml [project] dependencies"), "layerenv.toml") for item in extra_dependencies]
    own: list[tuple[str, str]] = []
    family: list[tuple[str, str]] = []
    for text, origin in found:
        (family if is_family(Requirement(text).name) else own).append((text, origin))
    return ProjectDependencies(
        requirements=tuple(dict.fromkeys(text for text, _ in own)),
        files=tuple(files),
        family_requirements=tuple(family),
    )
