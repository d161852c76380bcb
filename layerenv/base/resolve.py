"""Pinning the base's packages: the newest release the sources offer inside the decision's range."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from layerenv.choice.decide import normalize_pin
from layerenv.choice.variant import parse_version_tuple
from layerenv.installers import Resolved
from layerenv.side_calls import SideCalls
from layerenv.urls import without_credentials
from layerenv.venv.distinfo import canonical_name

MAX_REJECTIONS = 6


def series_specifier(series: tuple[str, ...], *, open_ended: bool, pin: str | None) -> str:
    """``("2.11", "2.9")`` -> ``">=2.9,<2.12,!=2.10.*"``, optionally without the upper bound."""
    keys = sorted(parse_version_tuple(item) for item in series)
    low, high = keys[0], keys[-1]
    clauses = [f">={low[0]}.{low[1]}"]
    if not open_ended:
        clauses.append(f"<{high[0]}.{high[1] + 1}")
    present = set(keys)
    clauses += [f"!={low[0]}.{minor}.*" for minor in range(low[1] + 1, high[1]) if (low[0], minor) not in present]
    if pin:
        clauses.append(normalize_pin(pin))
    return ",".join(clauses)


def local_label(version: str) -> str | None:
    return version.split("+", 1)[1] if "+" in version else None


@dataclass(frozen=True)
class Acceptance:
    """Which resolved wheels may enter a base: built for the variant, from a trusted place."""

    variant: str
    index_url: str | None
    find_links: tuple[str, ...]

    def needs_source(self, version: str) -> bool:
        """Whether :meth:`why_not` of a build with this version looks at where it came from: a build
        labelled with the variant is accepted from anywhere the sources name, so its place need not be asked."""
        return local_label(version) != self.variant

    def why_not(self, resolved: Resolved) -> str | None:
        label = local_label(resolved.version)
        if label == self.variant:
            return None
        # installers report sources without credentials: compare the index URL without them too
        trusted = [without_credentials(self.index_url)] if self.index_url else []
        if label is None and resolved.url and any(without_credentials(resolved.url).startswith(url) for url in trusted):
            return None
        return (
            f"{resolved.name} {resolved.version} is not a {self.variant} build from the variant's index"
            f" ({resolved.url or 'unknown source'})"
        )


def newest_acceptable(
    name: str,
    specifier: str,
    find_newest: Callable[[str], Resolved | None],
    acceptance: Acceptance,
    *,
    tries: int = MAX_REJECTIONS,
) -> tuple[Resolved | None, list[str]]:
    """Ask the installer for the newest ``name`` in ``specifier``, skipping unacceptable builds."""
    rejected: list[str] = []
    excluded: list[str] = []
    for _ in range(tries):
        clauses = ",".join([specifier, *excluded]) if specifier else ",".join(excluded)
        resolved = find_newest(f"{name}{clauses}")
        if resolved is None:
            return None, rejected
        reason = acceptance.why_not(resolved)
        if reason is None:
            return resolved, rejected
        rejected.append(reason)
        excluded.append(f"!={resolved.version}")
    return None, rejected


def newest_together(
    specifiers: Mapping[str, str],
    find_together: Callable[[Sequence[str]], list[Resolved] | None],
    find_newest: Callable[[str], Resolved | None],
    acceptance: Acceptance,
) -> dict[str, tuple[Resolved | None, list[str]]] | None:
    """:func:`newest_of_each` in one installer run, each name by itself (no dependencies considered): one
    run costs what one name alone does, where side by side each pays the installer's start and index reads.

    A name whose answer is not acceptable is asked again alone, without that release, as
    :func:`newest_acceptable` would. ``None`` when the run answered not every name (one had nothing in its
    range, which one run does not say): the caller asks each alone.
    """
    found = find_together([f"{name}{specifier}" for name, specifier in specifiers.items()])
    answered = {canonical_name(item.name): item for item in found or ()}
    if any(canonical_name(name) not in answered for name in specifiers):
        return None
    answers: dict[str, tuple[Resolved | None, list[str]]] = {}
    for name, specifier in specifiers.items():
        resolved = answered[canonical_name(name)]
        reason = acceptance.why_not(resolved)
        if reason is None:
            answers[name] = (resolved, [])
            continue
        without = ",".join(clause for clause in (specifier, f"!={resolved.version}") if clause)
        later, rejected = newest_acceptable(name, without, find_newest, acceptance, tries=MAX_REJECTIONS - 1)
        answers[name] = (later, [reason, *rejected])
    return answers


def newest_of_each(
    specifiers: Mapping[str, str],
    find_newest: Callable[[str], Resolved | None],
    acceptance: Acceptance,
) -> dict[str, tuple[Resolved | None, list[str]]]:
    """:func:`newest_acceptable` for each name with its specifier, the installer runs side by side (the
    companions of a torch release do not depend on each other)."""
    if len(specifiers) < 2:
        return {name: newest_acceptable(name, spec, find_newest, acceptance) for name, spec in specifiers.items()}
    with SideCalls("layerenv-resolve") as side:
        asked = {name: side.start(newest_acceptable, name, spec, find_newest, acceptance)
                 for name, spec in specifiers.items()}
        return {name: pending.result() for name, pending in asked.items()}


def companion_specifier(name: str, torch_version: str, torchaudio_series: Collection[str]) -> str | None:
    """The release series of a companion that pairs with ``torch_version``; ``None`` if none exists.

    torchvision 0.(minor+15) pairs with torch 2.minor; the table says which releases have a
    torchaudio (``torchaudio_series``), so a torch newer than the table gets none.
    """
    key = parse_version_tuple(torch_version)
    series = f"{key[0]}.{key[1]}"
    if name == "torchvision":
        return f"==0.{key[1] + 15}.*"
    if name == "torchaudio":
        return f"=={series}.*" if series in torchaudio_series else None
    return ""
