"""Where a project's packages come from, and which wheels of one package a source offers.

The sources are those the project was installed from (the index lines of the requirements files
``layerenv project`` keeps in the venv) and the installer's environment (``PIP_INDEX_URL``,
``PIP_EXTRA_INDEX_URL``, ``PIP_FIND_LINKS`` and uv's ``UV_INDEX_URL``, ``UV_EXTRA_INDEX_URL``,
``UV_FIND_LINKS``); PyPI when none names an index. A find-links page whose address names the old
torch build (``.../torch-2.9.1+cu129.html``, as PyG publishes them) is also read for the new one.
Pages are PEP 503 HTML; a wheel's own torch pin comes from its PEP 658 ``.metadata`` file when the
page offers one (the wheel itself is never downloaded to find out).
"""

from __future__ import annotations

import html
import re
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from layerenv.urls import redact
from layerenv.venv.distinfo import canonical_name

__all__ = ["Candidate", "PackageSources", "wheel_candidates"]

PYPI = "https://pypi.org/simple"
TIMEOUT = 15.0
_ANCHOR = re.compile(r"<a\s([^>]*)>", re.IGNORECASE)
_ATTRIBUTE = re.compile(r"""([\w-]+)\s*=\s*("[^"]*"|'[^']*')""")
_OPTION = re.compile(r"^(--index-url|-i|--extra-index-url|--find-links|-f)[\s=]+(\S+)")


@dataclass(frozen=True)
class Candidate:
    """One wheel a source offers."""

    name: str
    version: str
    url: str
    python_tags: tuple[str, ...]
    platform_tags: tuple[str, ...]
    requires_torch: str | None = None  # its Requires-Dist on torch (the specifier), when its metadata was read


@dataclass(frozen=True)
class PackageSources:
    indexes: tuple[str, ...]
    find_links: tuple[str, ...]

    @classmethod
    def of_venv(cls, venv: Path, env: Mapping[str, str], old_torch: str, new_torch: str) -> PackageSources:
        indexes: list[str] = []
        links: list[str] = []
        for listing in sorted(venv.glob("layerenv-requirements-*.txt")):
            for line in listing.read_text(encoding="utf-8", errors="replace").splitlines():
                if found := _OPTION.match(line.strip()):
                    (links if found.group(1) in ("--find-links", "-f") else indexes).append(found.group(2))
        for name in ("PIP_INDEX_URL", "UV_INDEX_URL", "PIP_EXTRA_INDEX_URL", "UV_EXTRA_INDEX_URL"):
            indexes += env.get(name, "").split()
        for name in ("PIP_FIND_LINKS", "UV_FIND_LINKS"):
            links += env.get(name, "").replace(",", " ").split()
        links += [link.replace(old_torch, new_torch) for link in links if old_torch in link]
        return cls(tuple(dict.fromkeys(indexes or [PYPI])), tuple(dict.fromkeys(links)))

    def describe(self) -> str:
        return ", ".join([*map(redact, self.indexes), *(f"find-links {redact(link)}" for link in self.find_links)])


def _fetch(url: str) -> str | None:
    if not url.startswith(("http://", "https://", "file:")):
        url = Path(url).absolute().as_uri()
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:  # noqa: S310 -- the user's own sources
            data: bytes = response.read()
            return data.decode("utf-8", "replace")
    except (OSError, ValueError):
        return None


def _page_links(url: str) -> list[tuple[str, dict[str, str]]]:
    """(absolute href, attributes) of every anchor on a page; a local folder lists its files."""
    local = Path(urlsplit(url).path) if url.startswith("file:") else Path(url) if "://" not in url else None
    if local is not None and local.is_dir():
        return [(path.as_uri(), {}) for path in sorted(local.iterdir())]
    text = _fetch(url)
    if text is None:
        return []
    found = []
    for anchor in _ANCHOR.finditer(text):
        attributes = {key.lower(): html.unescape(value[1:-1]) for key, value in _ATTRIBUTE.findall(anchor.group(1))}
        if "href" in attributes:
            found.append((urljoin(url, attributes["href"]), attributes))
    return found


def _torch_pin(metadata: str) -> str | None:
    from packaging.requirements import InvalidRequirement, Requirement

    for line in metadata.splitlines():
        if line.startswith("Requires-Dist:"):
            try:
                requirement = Requirement(line.split(":", 1)[1].strip())
            except InvalidRequirement:
                continue
            if canonical_name(requirement.name) == "torch" and requirement.specifier:
                return str(requirement.specifier)
    return None


def wheel_candidates(name: str, sources: PackageSources) -> list[Candidate]:
    """Every wheel of ``name`` the sources list; each without a version label gets its torch pin read."""
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    wanted = canonical_name(name)
    pages = [f"{index.rstrip('/')}/{wanted}/" for index in sources.indexes] + list(sources.find_links)
    found: dict[str, Candidate] = {}
    for page in pages:
        for url, attributes in _page_links(page):
            filename = urlsplit(url).path.rsplit("/", 1)[-1]
            try:
                parsed_name, version, _, tags = parse_wheel_filename(urllib.request.url2pathname(filename))
            except InvalidWheelFilename:
                continue
            if canonical_name(parsed_name) != wanted or filename in found:
                continue
            pin = None
            offers_metadata = "data-core-metadata" in attributes or "data-dist-info-metadata" in attributes
            if "+" not in str(version) and offers_metadata:
                pin = _torch_pin(_fetch(url.split("#", 1)[0] + ".metadata") or "")
            found[filename] = Candidate(wanted, str(version), url.split("#", 1)[0],
                                        tuple(sorted({tag.interpreter for tag in tags})),
                                        tuple(sorted({tag.platform for tag in tags})), pin)
    return list(found.values())
