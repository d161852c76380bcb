"""Check a base's files against what its manifest captured when it was published.

The manifest keeps, per distribution, the sha256 of its ``RECORD``; ``RECORD`` keeps the sha256 of
every installed file. So a base is intact when each ``RECORD`` still hashes to the manifest's value
and each file listed with a ``sha256=`` hash still hashes to that. Files are streamed in 1 MiB
chunks on a few threads (``hashlib`` releases the GIL), so a torch base of ~15k files and several
GB is read once, never held in memory.

Console scripts under ``bin/`` had the staging path in their shebang when installed and were
rewritten on publishing (:func:`layerenv.venv.relocate.relocate_venv`); such a file is checked by putting
the staging path (from the manifest's verification) back before hashing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from layerenv.base.digest import CHUNK, b64, file_digest
from layerenv.base.manifest import Manifest, Unreadable, read_manifest
from layerenv.base.unlisted import listed_paths, scan
from layerenv.errors import BadInput, OperationFailed
from layerenv.store.home import Store
from layerenv.store.trust import NotUsable
from layerenv.venv.distinfo import Distribution, read_distributions
from layerenv.venv.layout import VenvLayout

__all__ = ["CHUNK", "BaseCheck", "FileProblem", "baseline_of", "file_digest", "read_bases", "select_bases",
           "verify_base", "verify_store"]

_RELOCATED_MAX = 4 * 1024 * 1024  # relocate_venv rewrites files up to this size only

ProblemKind = Literal["modified", "missing", "record-modified", "distribution-missing", "unreadable"]


@dataclass(frozen=True)
class FileProblem:
    kind: ProblemKind
    distribution: str  # "" when the problem is the base itself
    path: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "distribution": self.distribution, "path": self.path}


@dataclass(frozen=True)
class BaseCheck:
    """The outcome of checking one base."""

    base_id: str
    path: str
    adopted: bool
    distributions: int
    files: int  # files whose hash was checked
    problems: tuple[FileProblem, ...]
    unlisted: tuple[str, ...] = ()  # files in the base that no RECORD lists and layerenv did not record

    @property
    def ok(self) -> bool:
        return not self.problems and not self.unlisted

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.base_id,
            "path": self.path,
            "adopted": self.adopted,
            "ok": self.ok,
            "distributions": self.distributions,
            "files": self.files,
            "problems": [problem.to_json() for problem in self.problems],
            "unlisted": list(self.unlisted),
        }


@dataclass(frozen=True)
class _Expected:
    distribution: str
    path: str  # absolute, normalised: strings keep 15k rows cheap
    digest: str  # sha256, urlsafe base64, no padding
    size: int  # as RECORD says (0 when it does not): only to schedule the work


def _record_rows(text: str, site: Path, venv: Path, distribution: str) -> list[_Expected]:
    """The rows of a RECORD with a sha256; a path outside the venv is not the base's to check."""
    rows = []
    site_text, inside = str(site), str(venv) + os.sep
    for row in csv.reader(io.StringIO(text)):
        if len(row) < 2 or not row[0] or not row[1].startswith("sha256="):
            continue
        target = os.path.normpath(os.path.join(site_text, row[0].replace("\\", "/")))  # noqa: PTH118 - hot loop
        if target.startswith(inside):
            size = int(row[2]) if len(row) > 2 and row[2].isdigit() else 0
            rows.append(_Expected(distribution, target, row[1][len("sha256=") :], size))
    return rows


def _staging_prefix(manifest: Manifest) -> Path | None:
    """Where the base was built before it was moved into place, if it was moved."""
    executable = manifest.verification.executable
    if manifest.adopted or not executable:
        return None
    built_at = Path(executable).parent.parent
    return None if built_at == manifest.venv else built_at


def _check_file(expected: _Expected, context: _Context, buffer: memoryview) -> ProblemKind | None:
    path = Path(expected.path)
    try:
        if context.since is not None:
            status = path.stat()
            if status.st_mtime <= context.since and (not expected.size or status.st_size == expected.size):
                return None  # quick mode: unchanged since publishing by size and time; `verify` hashes all
        digest = file_digest(expected.path, buffer)
        if digest == expected.digest or context.baseline.get(expected.path) == digest:
            return None
        staging = context.staging
        if staging is not None and path.stat().st_size <= _RELOCATED_MAX:
            data = path.read_bytes()
            old, new = os.fsencode(str(staging)), os.fsencode(str(context.venv))
            if new in data and b64(hashlib.sha256(data.replace(new, old)).digest()) == expected.digest:
                return None
    except FileNotFoundError:
        return None if context.baseline.get(expected.path) == ABSENT else "missing"
    except OSError:
        return "modified" if path.exists() else "missing"
    return "modified"


ABSENT = ""  # baseline value of a file RECORD lists but that was already gone when adopted


def baseline_of(check: BaseCheck) -> dict[str, str]:
    """What an adopted environment's differing files look like now, to compare later checks with."""
    baseline: dict[str, str] = {}
    for problem in check.problems:
        if problem.kind == "modified":
            baseline[problem.path] = file_digest(problem.path)
        elif problem.kind == "missing":
            baseline[problem.path] = ABSENT
    return baseline


@dataclass(frozen=True)
class _Context:
    venv: Path
    staging: Path | None
    baseline: dict[str, str]
    since: float | None  # quick mode: files not touched after this time are taken as intact


def _check_files(batch: list[_Expected], context: _Context) -> list[FileProblem]:
    buffer = memoryview(bytearray(CHUNK))
    problems = []
    for item in batch:
        outcome = _check_file(item, context, buffer)
        if outcome is not None:
            problems.append(FileProblem(outcome, item.distribution, item.path))
    return problems


def _batches(expected: list[_Expected], most_bytes: int = 64 * CHUNK, most_files: int = 256) -> list[list[_Expected]]:
    """Largest files first, in batches the threads take as they come free: no thread is left with
    the one 1.5 GB library at the end, and 50k small files cost a few hundred hand-overs."""
    batches: list[list[_Expected]] = []
    batch: list[_Expected] = []
    size = 0
    for item in sorted(expected, key=lambda item: -item.size):
        batch.append(item)
        size += item.size
        if size >= most_bytes or len(batch) >= most_files:
            batches.append(batch)
            batch, size = [], 0
    return [*batches, batch] if batch else batches


def verify_base(
    manifest: Manifest,
    workers: int | None = None,
    *,
    quick: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> BaseCheck:
    """Check every distribution the manifest lists, and every hashed file of each; ``on_progress(done,
    total)`` hears the files checked so far as batches finish.

    ``quick`` (what ``doctor`` uses) hashes only files whose size differs from RECORD or whose mtime is
    newer than the manifest: a stat per file instead of reading gigabytes. ``layerenv verify`` hashes all.
    """
    venv = Path(os.path.normpath(manifest.venv))

    def result(problems: list[FileProblem], files: int = 0, unlisted: tuple[str, ...] = ()) -> BaseCheck:
        ordered = tuple(sorted(problems, key=lambda p: (p.path, p.kind)))
        return BaseCheck(manifest.base_id, manifest.path, manifest.adopted, len(manifest.packages), files, ordered,
                         unlisted)

    if not venv.is_dir():
        return result([FileProblem("missing", "", str(venv))])
    try:
        site = VenvLayout.for_venv(venv).site_packages
    except BadInput as error:
        return result([FileProblem("unreadable", "", f"{venv} ({error.message})")])
    installed: dict[str, list[Distribution]] = {}
    for found in read_distributions(site):
        installed.setdefault(found.name, []).append(found)
    problems: list[FileProblem] = []
    expected: list[_Expected] = []
    records: list[str] = []
    record_files: set[str] = set()
    for name, record in sorted(manifest.packages.items()):
        candidates = installed.get(name, [])
        dist = next((d for d in candidates if d.version == record.version), candidates[0] if candidates else None)
        if dist is None:
            problems.append(FileProblem("distribution-missing", name, f"{name} {record.version}"))
            continue
        record_file = dist.dist_info / "RECORD"
        if not record_file.is_file():
            if record.record_sha256:
                problems.append(FileProblem("missing", name, str(record_file)))
            continue
        if record.record_sha256 and dist.record_sha256 != record.record_sha256:
            problems.append(FileProblem("record-modified", name, str(record_file)))
        try:
            text = record_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            problems.append(FileProblem("unreadable", name, str(record_file)))
            continue
        expected.extend(_record_rows(text, site, venv, name))
        records.append(text)
        record_files.add(os.path.normpath(str(record_file)))
    context = _Context(venv, _staging_prefix(manifest), manifest.baseline, manifest.created if quick else None)
    count = max(1, workers or min(8, os.cpu_count() or 1))
    batches = _batches(expected)
    done = 0
    with ThreadPoolExecutor(max_workers=count) as pool:
        outcomes = pool.map(lambda batch: _check_files(batch, context), batches)
        for batch, batch_problems in zip(batches, outcomes, strict=True):
            problems.extend(batch_problems)
            done += len(batch)
            if on_progress is not None:
                on_progress(done, len(expected))
    listed = listed_paths(site, records) | record_files
    files = scan(venv, adopted=manifest.adopted, listed=listed, own=manifest.venv_files,
                 since=manifest.created if quick else None)
    problems += [FileProblem("modified", "", path) for path in files.modified]
    problems += [FileProblem("missing", "", path) for path in files.missing]
    return result(problems, len(expected), files.unlisted)


def read_bases(store: Store) -> tuple[list[Manifest], list[Unreadable]]:
    """Every published base's manifest, and the manifests that do not read (or are a newer layerenv's)."""
    manifests: list[Manifest] = []
    unreadable: list[Unreadable] = []
    for path, found in store.base_entries():
        if found is not None:  # unreadable, or not trusted: named by id, never used
            unreadable.append(Unreadable(path, NotUsable(path, path.parent, found)))
            continue
        try:
            manifests.append(read_manifest(path))
        except OperationFailed as error:
            unreadable.append(Unreadable(path, error))
    return manifests, unreadable


def select_bases(store: Store, wanted: str | None) -> list[Manifest]:
    """The bases to check: ``wanted`` alone (an unknown id is bad input), or every published one."""
    manifests, unreadable = read_bases(store)
    if wanted is None:
        return manifests
    chosen = [manifest for manifest in manifests if manifest.base_id == wanted]
    if chosen:
        return chosen
    for item in unreadable:
        if item.base_id == wanted and item.newer:
            raise item.error
        if item.base_id == wanted:
            raise OperationFailed(f"base {wanted}: its manifest is unreadable; `layerenv doctor` explains")
    known = ", ".join(sorted(m.base_id for m in manifests)) or "none (run `layerenv base`)"
    raise BadInput(f"base {wanted!r} is not published in {store.home}; published: {known}")


def verify_store(store: Store, wanted: str | None = None) -> list[BaseCheck]:
    """Check ``wanted`` or every published base; an unreadable manifest is a problem of its own."""
    checks = [verify_base(manifest) for manifest in select_bases(store, wanted)]
    if wanted is None:
        for item in read_bases(store)[1]:
            problem = FileProblem("unreadable", "", str(item.path))
            checks.append(BaseCheck(item.base_id, str(item.path.parent), False, 0, 0, (problem,)))
    return sorted(checks, key=lambda check: check.base_id)
