"""Explaining an install that needs another torch family than the base's, in one message."""

from __future__ import annotations

import re

from packaging.requirements import InvalidRequirement, Requirement

from layerenv.project.link import LinkRecord
from layerenv.venv.distinfo import canonical_name

_SPEC = r"[<>=!~]{1,3}\s*[\w.*+!\-]+"
_DEPENDS = re.compile(  # pip: "X 1.0 depends on torch==2.5.1"; uv: "X==1.0 depends on", "X depend on"
    rf"(?P<pkg>[A-Za-z0-9][\w.\-]*)(?:==(?P<ver>[\w.+!\-]+)| (?P<ver2>\d[\w.+!\-]*))? depends? on "
    rf"(?P<req>[A-Za-z0-9][\w.\-]*(?:\[[^\]]*\])?(?:\s*{_SPEC}(?:\s*,\s*{_SPEC})*)?)"
)


def _requirements(text: str) -> list[tuple[str, str | None, str]]:
    """(package, version, requirement) found in installer output or in METADATA text."""
    found = [(m["pkg"], m["ver"] or m["ver2"], m["req"]) for m in _DEPENDS.finditer(text)]
    name = re.search(r"^Name:\s*(\S+)", text, re.M)
    version = re.search(r"^Version:\s*(\S+)", text, re.M)
    for req in re.findall(r"^Requires-Dist:\s*(.+)$", text, re.M):
        found.append((name[1] if name else "the package", version[1] if version else None, req.strip()))
    return found


def explain_conflict(requirement_text: str, base: LinkRecord) -> str:
    """One message naming the package, its torch-family requirement and the base's build.

    ``requirement_text`` is a failed installer's output (pip's "X 1.0 depends on torch==2.5.1",
    uv's "X==1.0 depends on torch==2.5.1") or a package's METADATA (``Requires-Dist`` lines).
    """
    clashes: list[str] = []
    for package, version, text in _requirements(requirement_text):
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        have = base.version_of(req.name)
        if have is None or canonical_name(package) == canonical_name(req.name):
            continue
        if (req.marker is None or "extra" not in str(req.marker)) and not req.specifier.contains(have, True):
            who = f"{package} {version}" if version else package
            clashes.append(
                f"{who} requires {req.name}{req.specifier}, but base {base.base_id} provides "
                f"{canonical_name(req.name)} {have}"
            )
    if not clashes:
        pins = ", ".join(f"{n} {v}" for n, v in base.family if n in ("torch", "torchvision", "torchaudio"))
        return (
            f"the install needs a torch family other than base {base.base_id}'s ({pins or 'none'}); "
            f"the project keeps the base's build ({base.constraints})"
        )
    return "; ".join(dict.fromkeys(clashes)) + (
        ". The project keeps the base's torch family: relax the "
        "requirement, or move the project to a base with a matching "
        "torch (layerenv rebase)."
    )
