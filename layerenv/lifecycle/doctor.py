"""Find what is wrong with the machine, the store and the registered projects, and repair what is safe.

:func:`diagnose` only reads. :func:`repair` applies the repairs that never touch a base or the
network: remove every torch-family distribution a project venv holds of its own and link it again,
link again a project whose link files or stubs are broken but whose base is there, forget registry
entries whose venv is gone or that do not read. Rebuilding a base or moving a project to another base
is left to the user: each finding names the command.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from layerenv.base.current import fits_machine
from layerenv.base.manifest import SCHEMA, Manifest, NewerManifest, Unreadable
from layerenv.choice.detection import Detection
from layerenv.errors import LayerenvError
from layerenv.lifecycle.shadows import Shadow, Skipped
from layerenv.reporter import format_size
from layerenv.store.atomic import remove_tree
from layerenv.store.home import Store
from layerenv.store.trust import NotUsable
from layerenv.venv.layout import VenvLayout

if TYPE_CHECKING:
    from layerenv.lifecycle.fingerprint import Healthy, Memory
    from layerenv.project.link import LinkRecord, PerNode
from layerenv.base.file_check import BaseCheck, read_bases, verify_base

VISIBILITY_VARIABLES = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")
_TAGS = {"cpython": "cp", "pypy": "pp", "graalpy": "gp"}


@dataclass(frozen=True)
class Repair:
    """What ``--fix`` does for a finding."""

    action: Literal["unshadow", "relink", "prune", "drop-entry", "drop-staging"]
    path: Path  # the project venv, the registry entry file for "drop-entry", the staging dir for "drop-staging"
    base_id: str = ""
    base_venv: Path | None = None
    project: Path | None = None


@dataclass(frozen=True)
class Outcome:
    """What ``--fix`` did for a finding; ``complete`` False: something was left that it must not touch
    or could not change, so the finding stays unfixed whatever the next look finds."""

    change: str
    complete: bool = True
    freed_bytes: int | None = None  # "unshadow": the bytes its removal freed
    skipped: tuple[Skipped, ...] = ()  # "unshadow": paths left alone, each with why

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"change": self.change}
        if self.freed_bytes is not None:
            document["freed_bytes"] = self.freed_bytes
            document["not_removed"] = [skipped.to_json() for skipped in self.skipped]
        return document


@dataclass(frozen=True)
class Finding:
    kind: str
    subject: str
    message: str
    fix: str
    repair: Repair | None = None
    fixed: bool = False
    outcome: Outcome | None = None  # what --fix did
    shadows: tuple[Shadow, ...] = ()  # "shadow": each torch-family distribution or module, with its bytes

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, self.subject

    @property
    def change(self) -> str:
        return self.outcome.change if self.outcome else ""

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"kind": self.kind, "subject": self.subject, "message": self.message,
                                    "fix": self.fix, "fixed": self.fixed}
        if self.shadows:
            document["distributions"] = [shadow.to_json() for shadow in self.shadows]
            document["bytes"] = sum(shadow.size_bytes for shadow in self.shadows)
        if self.outcome is not None:
            document.update(self.outcome.to_json())
        return document


@dataclass(frozen=True)
class Report:
    findings: tuple[Finding, ...]
    projects: int
    bases: int
    # what limits this machine's choice and what would lift it (Detection.outlook): information, not a
    # problem, so it never makes the report unhealthy
    outlook: tuple[str, ...] = ()

    @property
    def healthy(self) -> bool:
        return all(finding.fixed for finding in self.findings)

    def to_json(self) -> dict[str, Any]:
        return {"healthy": self.healthy, "findings": [finding.to_json() for finding in self.findings],
                "outlook": list(self.outlook)}


def _usable(manifest: Manifest | None) -> bool:
    return manifest is not None and VenvLayout.for_venv(manifest.venv).python.exists()


def _python_of(venv: Path) -> tuple[str, str] | None:
    """(tag, "3.12") of a venv, from its ``pyvenv.cfg``."""
    from layerenv.venv.distinfo import pyvenv_cfg

    cfg = pyvenv_cfg(venv)
    match = re.match(r"(\d+)\.(\d+)", cfg.get("version_info") or cfg.get("version") or "")
    if not match:
        return None
    prefix = _TAGS.get(cfg.get("implementation", "cpython").lower(), "cp")
    return f"{prefix}{match[1]}{match[2]}", f"{match[1]}.{match[2]}"


def unfit_reason(manifest: Manifest, detection: Detection) -> str:
    """Why a base that :func:`fits_machine` refuses does not fit, in one phrase."""
    from layerenv.choice.coverage import serves, why_not
    from layerenv.choice.decide import driver_supports
    from layerenv.choice.table import load_matrix
    from layerenv.choice.variant import Variant

    machine, gpus = detection.machine, detection.decision.served
    variant = Variant(manifest.variant)
    if variant.kind == "cpu":
        return f"it is a CPU-only build and this machine has {len(gpus)} GPU(s) torch could use"
    matrix = load_matrix()
    if variant.kind == "cuda" and not driver_supports(machine, variant, matrix):
        runtime = matrix.cuda.get(variant.version or "")
        needed = f">= {runtime.min_driver(machine.system)}" if runtime else "a driver layerenv knows"
        have = machine.driver_version or "none"
        return f"CUDA {variant.version} needs NVIDIA driver {needed}, this machine has {have}"
    archs = manifest.verification.archs
    missing = [f"{gpu.label}: {why_not(archs, gpu)}" for gpu in gpus if not serves(archs, gpu)]
    return "its build serves no kernels for " + "; ".join(missing)


def _machine_findings(detection: Detection, env: Mapping[str, str]) -> list[Finding]:
    machine = detection.machine
    if machine.hidden_gpus <= 0 or machine.gpus:
        return []
    names = [name for name in VISIBILITY_VARIABLES if name in env] or ["CUDA_VISIBLE_DEVICES"]
    shown = ", ".join(f"{name}={env.get(name, '')!r}" for name in names)
    return [Finding("gpus-hidden", names[0], f"{shown} hides all {machine.hidden_gpus} GPU(s): torch will see none",
                    f"unset {' '.join(names)}, or set it to the GPUs to use (e.g. {names[0]}=0)")]


def _project_findings(entries: list[dict[str, Any]], bases: dict[str, Manifest], newer: set[str],
                      used: dict[str, list[str]], pythons: dict[tuple[str, str], list[str]], memory: Memory,
                      now_ns: int) -> list[Finding]:
    """Each registered project's findings; one whose watched files are as when it was last found healthy
    (and whose base is still there) is healthy without a look inside (:mod:`layerenv.lifecycle.fingerprint`)."""
    from layerenv.lifecycle.fingerprint import snapshot

    usable_bases = {base_id for base_id, manifest in bases.items() if base_id not in newer and _usable(manifest)}
    sites: dict[str, bool] = {}

    def base_there(_venv: str, healthy: Healthy) -> bool:
        if healthy.base_site not in sites:
            sites[healthy.base_site] = Path(healthy.base_site).is_dir()
        return healthy.base_id in usable_bases and sites[healthy.base_site]

    unchanged = memory.recall([str(entry["venv"]) for entry in entries if "error" not in entry], base_there)
    findings: list[Finding] = []
    exports: dict[str, frozenset[str] | None] = {}  # per base: what its libtorch exports, read once
    for entry in entries:
        if "error" in entry:
            path = Path(entry["entry"])
            findings.append(Finding("registry-unreadable", str(path), f"registry entry {path} is unreadable "
                                    f"({entry['error']})", "delete it (`layerenv doctor --fix`); `layerenv project "
                                    "PATH` registers a project again", Repair("drop-entry", path)))
            continue
        venv = Path(str(entry["venv"]))
        project = str(entry.get("project", venv.parent))
        healthy = unchanged.get(str(entry["venv"]))
        if healthy is not None:
            used.setdefault(healthy.base_id, []).append(project)
            if healthy.python is not None:
                pythons.setdefault(healthy.python, []).append(project)
            continue
        shot = snapshot(venv)  # before any check reads a file: a change after it leaves another digest
        try:
            found = _check_project(venv, project, str(entry.get("base_id", "")), bases, newer, used, pythons,
                                   exports)
        except LayerenvError as error:
            findings.append(Finding("venv-broken", project, f"the venv {venv} cannot be read: {error.message}",
                                    f"`layerenv project {project}` builds it again"))
            continue
        findings += found
        if not found and shot is not None and not _has_extensions(venv, shot.stubs):
            memory.remember(str(entry["venv"]), shot, _python_of(venv), now_ns)
    return findings


def _has_extensions(venv: Path, stubs: tuple[str, ...]) -> bool:
    """Whether the project holds compiled extensions: whether they fit the base depends on files of its
    own distributions and of the base that doctor's memory does not watch, so such a project is never
    remembered (a distribution installed later adds a folder to site-packages, which the memory watches)."""
    from layerenv.project.extensions import find_extensions, read_state

    return bool(find_extensions(venv, read_state(venv), stubs))


def _check_project(venv: Path, project: str, base_id: str, bases: dict[str, Manifest], newer: set[str],
                   used: dict[str, list[str]], pythons: dict[tuple[str, str], list[str]],
                   exports: dict[str, frozenset[str] | None] | None = None) -> list[Finding]:
    from layerenv.lifecycle.shadows import find_shadows, stub_problems
    from layerenv.project.boot import PTH_NAME
    from layerenv.project.link import read_link

    if not venv.is_dir():
        return [Finding("project-gone", project, f"registered project {project} has no venv {venv} any more",
                        f"forget it (`layerenv doctor --fix`), or `layerenv project {project}` to create it again",
                        Repair("prune", venv))]
    layout = VenvLayout.for_venv(venv)
    if not layout.python.exists():
        return [Finding("venv-broken", project, f"the venv {venv} has no python",
                        f"`layerenv project {project}` builds it again")]
    python = _python_of(venv)
    if python is not None:
        pythons.setdefault(python, []).append(project)
    try:
        record, problem = read_link(venv), ""
    except LayerenvError as error:
        record, problem = None, error.message
    base_id = record.base_id if record is not None else base_id
    if record is not None and record.per_node is not None:
        answer, node = _node_answer(record.per_node)
        if answer is None:
            return [Finding("node-unresolved", project, f"per-node project {project} has no base recorded for node "
                            f"{node} ({record.per_node.python_key}) in {record.per_node.store}",
                            "run `layerenv base` on this node (its first Python start also does)")]
        base_id = answer  # the primary base may not fit this node; the node's own answer must
    used.setdefault(base_id, []).append(project)
    base = bases.get(base_id)
    if base_id in newer:
        return []  # the base's own finding names it, and this project
    if base is None or not _usable(base):
        return [Finding("base-gone", project, f"project {project} is layered on base {base_id}, which is gone",
                        f"`layerenv project {project}` layers it on a base that fits (building one)")]
    relink = Repair("relink", venv, base_id, base.venv, Path(project))
    if record is None:
        problem = problem or f"{venv / 'layerenv.json'} is missing"
    elif not record.base_site.is_dir():
        problem = f"the base site-packages it names, {record.base_site}, is missing"
    elif not (layout.site_packages / PTH_NAME).is_file():
        problem = f"{layout.site_packages / PTH_NAME} is missing"
    if problem:
        return [Finding("link-broken", project, f"the link of {venv} to base {base_id} is broken: {problem}",
                        "link it again (`layerenv doctor --fix`)", relink)]
    assert record is not None
    findings = []
    shadows = tuple(find_shadows(venv))
    if shadows:
        what = ", ".join(f"{shadow.describe()} ({format_size(shadow.size_bytes)})" for shadow in shadows)
        if len(shadows) > 1:
            what += f": {format_size(sum(shadow.size_bytes for shadow in shadows))} in all"
        them = "it" if len(shadows) == 1 else "them"
        findings.append(Finding("shadow", project, f"{venv} has its own {what}, shadowing base {base_id}'s torch "
                                f"{base.torch_build}", f"remove {them} and restore the base's stubs (`layerenv doctor "
                                "--fix`)", replace(relink, action="unshadow"), shadows=shadows))
    stubs = stub_problems(venv, record)
    if stubs:
        more = f" (and {len(stubs) - 1} more)" if len(stubs) > 1 else ""
        findings.append(Finding("stub-broken", project, f"{venv}: {stubs[0]}{more}; installers no longer see the "
                                f"base's distributions", "link it again (`layerenv doctor --fix`)", relink))
    findings += _startup_findings(layout.site_packages, record, relink, project)
    return findings + _extension_findings(venv, project, record.stubs, base, {} if exports is None else exports)


def _extension_findings(venv: Path, project: str, stubs: tuple[str, ...], base: Manifest,
                        exports: dict[str, frozenset[str] | None]) -> list[Finding]:
    """Compiled extensions built against another torch than the base's (by their record or version label),
    or needing c10/at/torch symbols the base's libraries no longer export (read for those not recorded)."""
    from layerenv.project.extensions import base_exports, find_extensions, read_state, stale_reason

    extensions = find_extensions(venv, read_state(venv), stubs)
    if not extensions:
        return []
    if any(extension.symbols for extension in extensions) and base.base_id not in exports:
        exports[base.base_id] = base_exports(VenvLayout.for_venv(base.venv).site_packages)
    reasons = [reason for extension in extensions
               if (reason := stale_reason(extension, base.torch_build, exports.get(base.base_id)))]
    if not reasons:
        return []
    them = "it" if len(reasons) == 1 else "them"
    return [Finding("extension-stale", project, f"{venv}: {'; '.join(reasons)}: importing {them} fails "
                    "(`undefined symbol` or a CUDA version error)", f"`layerenv rebase --project {project}` "
                    f"reinstalls {them} built for torch {base.torch_build} or rebuilds {them} against it")]


def _startup_findings(site: Path, record: LinkRecord, relink: Repair, project: str) -> list[Finding]:
    """A project's start-up files: its own layerenv boot as written, and nothing nobody accounts for."""
    from layerenv.lifecycle.startup_files import FIX, UNACCOUNTED, changed_boot_files, foreign_startup_files
    from layerenv.project.boot import BOOT_NAME, PTH_NAME

    findings = [
        Finding("boot-changed", str(path), f"{path} runs at every interpreter start and is no longer what layerenv "
                f"wrote for project {project}", "link it again (`layerenv doctor --fix` writes it anew)", relink)
        for path in changed_boot_files(site, record)
    ]
    findings += [Finding("startup-file", str(path), f"{path} {UNACCOUNTED}", FIX)
                 for path in foreign_startup_files(site, frozenset({PTH_NAME, BOOT_NAME}))]
    return findings


def _node_answer(per_node: PerNode) -> tuple[str | None, str]:
    """The base this node's record names for a per-node project, and the node's name."""
    import os

    from layerenv.store.identity import node_name
    from layerenv.store.nodes import lookup

    node = node_name(os.environ)
    answer = lookup(per_node.store, node, per_node.python_key)
    return (answer.base_id if answer else None), node


def _unreadable_finding(item: Unreadable, used: dict[str, list[str]]) -> Finding:
    if isinstance(item.error, NewerManifest):
        projects = sorted(used.get(item.base_id, []))
        users = f", which {', '.join(projects)} use(s)," if projects else ""
        return Finding("manifest-newer", item.base_id, f"base {item.base_id}{users} was written by a newer layerenv "
                       f"(manifest schema {item.error.schema} > {SCHEMA}), so this one cannot check it",
                       f"upgrade layerenv; this one leaves {item.path.parent} alone")
    if isinstance(item.error, NotUsable):  # an unreadable or untrusted directory: never layerenv's to remove
        kind = "base-untrusted" if item.error.untrusted else "base-unreadable"
        return Finding(kind, item.base_id, f"base {item.base_id} is not used: {item.reason}", item.error.advice)
    return Finding("manifest-unreadable", item.base_id, f"the manifest {item.path} is unreadable",
                   f"remove {item.path.parent} and run `layerenv base`")


def _base_findings(bases: dict[str, Manifest], unreadable: list[Unreadable], used: dict[str, list[str]],
                   current: Manifest | None, detection: Detection, cache: dict[str, BaseCheck]) -> list[Finding]:
    findings = [_unreadable_finding(item, used) for item in unreadable]
    wanted = set(used) | ({current.base_id} if current else set())
    for base_id in sorted(wanted & set(bases)):
        manifest = bases[base_id]
        projects = sorted(used.get(base_id, []))
        if not _usable(manifest):
            continue  # each of its projects already says "base-gone"
        is_current = current is not None and current.base_id == base_id
        them = "it" if len(projects) == 1 else "them"
        listed = ", ".join(projects)
        run = f"`layerenv project {listed}`" if len(projects) == 1 else f"`layerenv project PATH` for each of {listed}"
        if not fits_machine(manifest, detection):
            fix = (f"{run} moves {them} to a base that fits (building it)" if projects and not is_current else
                   "`layerenv detect --explain` names the build that fits; `layerenv base --variant NAME` builds it")
            if pins := [pin for project in projects if (pin := _pinned_by(Path(project)))]:
                # `layerenv project` would build the pinned variant again: the pin is what has to change
                again = f"`layerenv project {listed}`" if len(projects) == 1 else "`layerenv project PATH` for each"
                fix = "; ".join(pins) + f": change or remove that setting, then {again}"
            findings.append(Finding("base-unfit", base_id, f"base {base_id} (torch {manifest.torch_build}) no longer "
                                    f"fits this machine: {unfit_reason(manifest, detection)}", fix))
        check = cache.get(base_id) or cache.setdefault(base_id, verify_base(manifest, quick=True))
        findings += _unlisted_findings(manifest, check, projects)
        if check.problems:
            first = check.problems[0]
            again = "`layerenv base --rebuild` builds it again" if is_current or not projects else \
                f"{run} moves {them} to the current base"
            if manifest.adopted:  # its manifest keeps RECORD digests only: a change may predate adopting it
                again = f"reinstall those distributions in {manifest.path}, or `layerenv base --rebuild` builds a base"
            findings.append(Finding("base-modified", base_id, f"{len(check.problems)} file(s) of base {base_id} "
                                    f"differ from the hashes installed with them (first: {first.kind} {first.path})",
                                    f"`layerenv verify {base_id}` lists them; {again}"))
    return findings


def _unlisted_findings(manifest: Manifest, check: BaseCheck, projects: list[str]) -> list[Finding]:
    """Files in a base that no RECORD lists: each start-up file by name (it runs in every project on the
    base), the others together. Neither is removed by --fix (see layerenv.lifecycle.startup_files)."""
    from layerenv.lifecycle.startup_files import FIX, UNACCOUNTED, startup_in_base

    if not check.unlisted:
        return []
    base_id = manifest.base_id
    startup = startup_in_base(VenvLayout.for_venv(manifest.venv).site_packages, check.unlisted)
    users = f"{len(projects)} project(s)" if projects else "every project layered on it"
    findings = [Finding("startup-file", str(path), f"{path} in base {base_id} {UNACCOUNTED}; it runs in {users}",
                        f"{FIX}; or `layerenv base --rebuild`") for path in startup]
    others = [path for path in check.unlisted if Path(path) not in startup]
    if others:
        findings.append(Finding("base-unlisted", base_id, f"{len(others)} file(s) in base {base_id} are not installed "
                                f"by any package nor by layerenv (first: {others[0]})",
                                f"`layerenv verify {base_id}` lists them; remove them, or `layerenv base --rebuild`"))
    return findings


def _pinned_by(project: Path) -> str | None:
    """What in ``project``'s own files pins its torch build (``[torch] variant`` or ``version``), if anything."""
    from layerenv.config import load_settings

    try:
        settings = load_settings(project_dir=project, env={})
    except LayerenvError:
        return None
    pinned = [f"{key} = {settings.get(key)!r} in {source}" for key in ("torch.variant", "torch.version")
              if (source := settings.sources[key]) not in ("default", "command line")
              and Path(source).is_relative_to(project)]
    return f"{project} pins {' and '.join(pinned)}" if pinned else None


def _python_findings(pythons: dict[tuple[str, str], list[str]], bases: dict[str, Manifest],
                     on_newer: set[str]) -> list[Finding]:
    """Pythons that projects run with no base for them; a project on a newer layerenv's base has one."""
    tags = {manifest.python.tag for manifest in bases.values() if _usable(manifest)}
    return [
        Finding("python-no-base", f"Python {version}", f"no base is published for Python {version} ({tag}), which "
                f"{', '.join(sorted(projects))} run(s)", f"`layerenv base --python {version}`")
        for (tag, version), projects in sorted(pythons.items()) if tag not in tags and not set(projects) <= on_newer
    ]


def diagnose(store: Store, detection: Detection, current: Manifest | None, env: Mapping[str, str],
             cache: dict[str, BaseCheck] | None = None, clock: Callable[[], int] = time.time_ns) -> Report:
    """Every problem found, machine first; ``cache`` keeps base checks between runs (bases never change here).

    Projects found healthy are remembered in the store (``clock``: nanoseconds since the epoch, what
    tells a settled file from one that may still change unseen).
    """
    from layerenv.lifecycle.fingerprint import Memory

    now_ns = clock()
    memory = Memory.load(store)
    manifests, unreadable = read_bases(store)
    bases = {manifest.base_id: manifest for manifest in manifests}
    entries = store.projects()
    used: dict[str, list[str]] = {}
    pythons: dict[tuple[str, str], list[str]] = {}
    newer = {item.base_id for item in unreadable if item.newer}
    projects = _project_findings(entries, bases, newer, used, pythons, memory, now_ns)  # fills used and pythons
    memory.save()
    findings = _machine_findings(detection, env)
    findings += _base_findings(bases, unreadable, used, current, detection, {} if cache is None else cache)
    on_newer = {project for base_id in newer for project in used.get(base_id, [])}
    findings += projects + _python_findings(pythons, bases, on_newer) + _staging_findings(store)
    return Report(tuple(findings), len(entries), len(manifests), detection.outlook)


def _staging_findings(store: Store) -> list[Finding]:
    """Staging dirs that no running build holds: an interrupted build's, up to a whole base in size."""
    from layerenv.lifecycle.leftovers import staging_leftovers

    return [Finding("staging-orphaned", str(item.path), item.describe(), "remove it (`layerenv doctor --fix` or "
                    "`layerenv gc`)", Repair("drop-staging", item.path))
            for item in staging_leftovers(store) if item.orphaned]


def repair(store: Store, finding: Finding) -> Outcome:
    """Apply one finding's repair; returns what changed. Raises ``LayerenvError``/``OSError``."""
    from layerenv.lifecycle.shadows import remove_shadows
    from layerenv.project.link import link

    action = finding.repair
    if action is None:
        return Outcome("")
    if action.action == "drop-entry":
        action.path.unlink(missing_ok=True)
        return Outcome(f"deleted the unreadable registry entry {action.path}")
    if action.action == "drop-staging":
        from layerenv.lifecycle.leftovers import staging_leftovers

        if any(item.path == action.path and item.orphaned for item in staging_leftovers(store, with_sizes=False)):
            remove_tree(action.path)
        return Outcome(f"removed {action.path}")
    if action.action == "prune":
        store.unregister(action.path)
        return Outcome(f"forgot {finding.subject} (its venv {action.path} is gone)")
    assert action.base_venv is not None
    removal = remove_shadows(action.path) if action.action == "unshadow" else None
    link(action.path, base_id=action.base_id, base_venv=action.base_venv)
    store.register(action.path, action.base_id, action.project or action.path.parent)
    again = f"linked {action.path} to base {action.base_id} again"
    if removal is None or not removal.removed:
        return Outcome(again)
    removed = ", ".join(shadow.describe() for shadow in removal.removed)
    change = (f"removed {removed} from {action.path}, freeing {format_size(removal.freed_bytes)}, and linked it to "
              f"base {action.base_id} again")
    if removal.skipped:
        left = "; ".join(skipped.describe() for skipped in removal.skipped)
        change += f"; left alone: {left}"
    return Outcome(change, not removal.skipped, removal.freed_bytes, removal.skipped)


def doctor(store: Store, detection: Detection, current: Manifest | None, *, fix: bool,
           env: Mapping[str, str] | None = None) -> Report:
    """Diagnose; with ``fix``, repair what is safe, check again and mark what is gone as fixed."""
    env = os.environ if env is None else env
    cache: dict[str, BaseCheck] = {}
    first = diagnose(store, detection, current, env, cache)
    if not fix or not any(finding.repair for finding in first.findings):
        return first
    outcomes: dict[tuple[str, str], Outcome] = {}
    for finding in first.findings:
        if finding.repair is not None:
            try:
                outcomes[finding.key] = repair(store, finding)
            except (LayerenvError, OSError) as error:
                outcomes[finding.key] = Outcome(f"could not fix: {getattr(error, 'message', None) or error}", False)
    again = diagnose(store, detection, current, env, cache)
    remaining = {finding.key for finding in again.findings}
    findings = []
    for finding in first.findings:
        outcome = outcomes.get(finding.key)
        fixed = finding.key not in remaining and (outcome is None or outcome.complete)
        findings.append(replace(finding, fixed=fixed, outcome=outcome))
    seen = {finding.key for finding in first.findings}
    findings += [finding for finding in again.findings if finding.key not in seen]
    return Report(tuple(findings), again.projects, again.bases, again.outlook)
