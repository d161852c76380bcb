"""Packages installed into a project venv by hand, so that rebuilding it keeps them.

layerenv records in the venv's state which distributions its own install left there; anything else
found in the old venv (not a stub, not pip's own seed) was put there by someone else and is
installed again, from where it came (``direct_url.json``), into the new venv.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from layerenv.project.stubs import STUB_INSTALLER, STUB_MARKER
from layerenv.venv.distinfo import Distribution, is_family, read_distributions
from layerenv.venv.layout import VenvLayout

#: Seeded into every venv by virtualenv: never counted as the project's.
SEED = frozenset({"pip", "setuptools", "wheel"})


@dataclass(frozen=True)
class Installed:
    """A distribution really installed in a project venv (stubs and seeds left out)."""

    name: str
    version: str
    spec: str  # how to install it again: "name==1.0", "name @ URL", "-e /path"


def _spec(dist: Distribution) -> str:
    """``direct_url.json`` (PEP 610) tells where a package came from; without it, an index."""
    try:
        direct = json.loads((dist.dist_info / "direct_url.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        direct = None
    if not isinstance(direct, dict) or not isinstance(direct.get("url"), str):
        return f"{dist.name}=={dist.version}"
    url = direct["url"]
    dir_info, vcs = direct.get("dir_info"), direct.get("vcs_info")
    if isinstance(dir_info, dict) and dir_info.get("editable") is True and url.startswith("file://"):
        from urllib.parse import unquote, urlsplit

        return f"-e {unquote(urlsplit(url).path)}"
    if isinstance(vcs, dict) and isinstance(vcs.get("vcs"), str) and isinstance(vcs.get("commit_id"), str):
        return f"{dist.name} @ {vcs['vcs']}+{url}@{vcs['commit_id']}"
    return f"{dist.name} @ {url}"


def installed(venv: Path) -> list[Installed]:
    """What the venv really holds (no stubs, no pip/setuptools/wheel), in name order."""
    found = read_distributions(VenvLayout.for_venv(venv).site_packages) if venv.is_dir() else []
    return [Installed(dist.name, dist.version, _spec(dist)) for dist in found
            if not ((dist.dist_info / STUB_MARKER).is_file() or dist.installer == STUB_INSTALLER)
            and dist.name not in SEED]


def by_hand(current: Iterable[Installed], recorded: Iterable[str]) -> list[Installed]:
    """What layerenv did not install (``recorded``: the names its last install left)."""
    ours = set(recorded)
    return [item for item in current if item.name not in ours]


def split_family(items: Iterable[Installed]) -> tuple[list[Installed], list[Installed]]:
    """(to carry over, torch family: never carried, the base provides it)."""
    keep: list[Installed] = []
    family: list[Installed] = []
    for item in items:
        (family if is_family(item.name) else keep).append(item)
    return keep, family
