"""Poetry's dependency tables as PEP 508 requirements (poetry 1.x and 2.x syntax), without poetry.

``^``/``~`` constraints become PEP 440 ranges the way poetry-core reads them (``^1.2.3`` is
``>=1.2.3,<2.0.0``, ``^0.2.3`` is ``>=0.2.3,<0.3.0``, ``~1.2`` is ``>=1.2,<1.3``); poetry-core is not a
dependency of layerenv, so this small converter stands in for its parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from layerenv.errors import BadInput

_OPERATOR_SPACE = re.compile(r"(>=|<=|!=|==|~=|>|<|\^|~|=)\s+")


def _bump(release: tuple[int, ...], index: int) -> str:
    upper = [*release[:index], release[index] + 1]
    return ".".join(str(part) for part in upper + [0] * (len(release) - index - 1))


def _range(operator: str, text: str) -> str:
    from packaging.version import InvalidVersion, Version

    try:
        release = Version(text).release
    except InvalidVersion:
        raise ValueError(f"{text!r} is not a version") from None
    if operator == "^":
        nonzero = [i for i, part in enumerate(release) if part != 0]
        index = nonzero[0] if nonzero else len(release) - 1
    else:
        index = 1 if len(release) >= 2 else 0
    return f">={text},<{_bump(release, index)}"


def pep440_specifier(constraint: str) -> str:
    """Poetry's version constraint as a PEP 440 specifier ("" for any version).

    >>> pep440_specifier("^1.2.3"), pep440_specifier("~1.2"), pep440_specifier(">= 1.0 < 2")
    ('>=1.2.3,<2.0.0', '>=1.2,<1.3', '>=1.0,<2')
    """
    text = constraint.strip()
    if "||" in text or " | " in text:
        raise ValueError("alternatives ('||') have no PEP 440 form; write one range")
    clauses: list[str] = []
    for clause in re.split(r"[\s,]+", _OPERATOR_SPACE.sub(r"\1", text)):
        if clause in ("", "*"):
            continue
        if clause.startswith("^"):
            clauses.append(_range("^", clause[1:]))
        elif clause.startswith("~") and not clause.startswith("~="):
            clauses.append(_range("~", clause[1:]))
        elif clause[0] in "<>!~" or clause.startswith("=="):
            clauses.append(clause)
        elif clause.startswith("="):
            clauses.append("=" + clause)
        else:
            clauses.append("==" + clause)
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    joined = ",".join(clauses)
    try:
        SpecifierSet(joined)
    except InvalidSpecifier:
        raise ValueError(f"{constraint!r} is not a version constraint") from None
    return joined


def _python_marker(constraint: str) -> str:
    from packaging.specifiers import SpecifierSet

    return " and ".join(f'python_full_version {spec.operator} "{spec.version}"'
                        for spec in SpecifierSet(pep440_specifier(constraint)))


@dataclass(frozen=True)
class PoetryDependency:
    """One entry of a poetry dependency table, as a PEP 508 requirement (or an editable path)."""

    requirement: str
    optional: bool = False
    editable: str | None = None  # an absolute path, for ``develop = true`` path dependencies


def _one(name: str, value: object, project_dir: Path) -> PoetryDependency:
    if isinstance(value, str):
        return PoetryDependency(f"{name}{pep440_specifier(value)}")
    if not isinstance(value, dict):
        raise ValueError("must be a version string or a table")
    extras = value.get("extras", [])
    head = f"{name}[{','.join(extras)}]" if isinstance(extras, list) and extras else name
    markers = [f"({value['markers']})"] if isinstance(value.get("markers"), str) else []
    if isinstance(value.get("python"), str):
        markers.append(f"({_python_marker(value['python'])})")
    tail = f"; {' and '.join(markers)}" if markers else ""
    optional = value.get("optional") is True
    if isinstance(value.get("path"), str):
        path = (project_dir / value["path"]).resolve()
        if value.get("develop") is True:
            return PoetryDependency(f"{head} @ {path.as_uri()}{tail}", optional, editable=str(path))
        return PoetryDependency(f"{head} @ {path.as_uri()}{tail}", optional)
    if isinstance(value.get("git"), str):
        url = value["git"] if value["git"].startswith("git+") else f"git+{value['git']}"
        ref = next((value[key] for key in ("rev", "tag", "branch") if isinstance(value.get(key), str)), None)
        url += f"@{ref}" if ref else ""
        url += f"#subdirectory={value['subdirectory']}" if isinstance(value.get("subdirectory"), str) else ""
        return PoetryDependency(f"{head} @ {url}{tail}", optional)
    if isinstance(value.get("url"), str):
        return PoetryDependency(f"{head} @ {value['url']}{tail}", optional)
    version = value.get("version", "*")
    if not isinstance(version, str):
        raise ValueError("version must be a string")
    return PoetryDependency(f"{head}{pep440_specifier(version)}{tail}", optional)


def poetry_table(table: object, origin: str, project_dir: Path) -> list[PoetryDependency]:
    """Every dependency of a ``[tool.poetry...dependencies]`` table (``python`` is not a package)."""
    if not isinstance(table, dict):
        raise BadInput(f"{origin} must be a table")
    found: list[PoetryDependency] = []
    for name, value in table.items():
        if name.lower() == "python":
            continue
        try:
            for item in value if isinstance(value, list) else [value]:
                found.append(_one(name, item, project_dir))
        except ValueError as error:
            raise BadInput(f"{origin} {name} = {value!r}: {error}") from None
    return found


def poetry_groups(poetry: dict[str, object], origin: str) -> dict[str, tuple[object, bool]]:
    """``{group: (dependency table, optional)}``: ``[tool.poetry.group.G]`` and 1.x ``dev-dependencies``."""
    groups: dict[str, tuple[object, bool]] = {}
    if "dev-dependencies" in poetry:
        groups["dev"] = (poetry["dev-dependencies"], False)
    declared = poetry.get("group", {})
    if not isinstance(declared, dict):
        raise BadInput(f"{origin} [tool.poetry.group] must be a table")
    for name, group in declared.items():
        if not isinstance(group, dict):
            raise BadInput(f"{origin} [tool.poetry.group.{name}] must be a table")
        groups[name] = (group.get("dependencies", {}), group.get("optional") is True)
    return groups
