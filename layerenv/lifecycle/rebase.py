"""Moving registered projects onto the base that fits the machine now.

Plan first (pure over what is on disk), then: build the new base if needed (same lock and
crash-safety as ``layerenv base``), and move each project by relinking it. A relink replaces each
file atomically and the ``.pth`` last, so a kill at any moment leaves every project on its old or its
new base, both working; the registry is updated after the link, and the next rebase finishes the move.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from layerenv.base.current import published, usable_current
from layerenv.base.file_check import read_bases
from layerenv.base.manifest import Manifest
from layerenv.base.node_answer import remember_node
from layerenv.base.request import BaseRequest
from layerenv.choice.detection import Detection
from layerenv.choice.variant import parse_version_tuple
from layerenv.errors import BadInput, OperationFailed
from layerenv.faults import checkpoint
from layerenv.lifecycle.pacing import PROBE_PROJECTS, ThreadClock, workers_for
from layerenv.machine.interpreters import Interpreter
from layerenv.project.relink import Move, move_project, stage_move
from layerenv.reporter import Reporter
from layerenv.store.atomic import Batch, flush
from layerenv.store.home import Store
from layerenv.store.locking import Busy
from layerenv.venv.layout import VenvLayout

if TYPE_CHECKING:
    from layerenv.project.extension_moves import ExtensionStep
    from layerenv.project.extension_sources import Candidate, PackageSources

# projects staged before their files are flushed and renamed: bounds the locks held (a file each). Large, so
# that a chunk's new files are made before any old one is freed (on ext4 without a journal, a file made
# soon after many were removed costs a scan past each of them)
RELINK_CHUNK = 256


@dataclass(frozen=True)
class Target:
    """The base that projects on one interpreter should stand on."""

    interpreter: Interpreter
    manifest: Manifest | None  # None: it has to be built
    request: BaseRequest


@dataclass(frozen=True)
class Downgrade:
    """A move onto an older torch than the project has now, and what forces it."""

    venv: Path
    old_torch: str
    new_torch: str
    why: str


@dataclass(frozen=True)
class Plan:
    targets: tuple[Target, ...]
    moves: tuple[Move, ...]
    skipped: tuple[str, ...]
    downgrades: tuple[Downgrade, ...] = ()
    extensions: tuple[tuple[Path, tuple[ExtensionStep, ...]], ...] = ()  # per venv: what its extensions need
    force: bool = False  # move projects whose extensions cannot follow (they will break)

    def downgrade_of(self, move: Move) -> Downgrade | None:
        return next((downgrade for downgrade in self.downgrades if downgrade.venv == move.venv), None)

    def steps_of(self, move: Move) -> tuple[ExtensionStep, ...]:
        return next((steps for venv, steps in self.extensions if venv == move.venv), ())

    def blocked_by(self, move: Move) -> tuple[ExtensionStep, ...]:
        """The extensions that cannot follow ``move`` (it is held back unless ``force``)."""
        return tuple(step for step in self.steps_of(move) if step.action == "blocked")

    def held(self, move: Move) -> bool:
        return bool(self.blocked_by(move)) and not self.force

    def acts_on(self, move: Move) -> bool:
        """Whether executing the plan touches this project (a move, or extensions on the same base)."""
        return (move.changes or any(step.action != "blocked" for step in self.steps_of(move))) and not self.held(move)

    @property
    def builds(self) -> tuple[Target, ...]:
        return tuple(target for target in self.targets if target.manifest is None)

    @property
    def nothing_to_do(self) -> bool:
        return not self.builds and not any(move.changes or self.steps_of(move) for move in self.moves)


def _node_answer(store: Store, venv: Path) -> str | None:
    """For a per-node project: the base this node's record names ("" when none yet); else None."""
    from layerenv.project.link import read_link
    from layerenv.store.nodes import lookup

    try:
        record = read_link(venv) if venv.is_dir() else None
    except OperationFailed:
        return None
    if record is None or record.per_node is None:
        return None
    answer = lookup(record.per_node.store, store.node, record.per_node.python_key)
    return answer.base_id if answer else record.base_id


def downgrade_reason(old: Manifest, detection: Detection) -> str:
    """Why the base that fits now has an older torch than ``old``: what about ``old`` no longer fits."""
    from layerenv.base.current import fits_machine
    from layerenv.choice.coverage import serves
    from layerenv.choice.decide import driver_supports
    from layerenv.choice.table import load_matrix
    from layerenv.choice.variant import Variant

    machine, decision = detection.machine, detection.decision
    variant = Variant(old.variant)
    if variant.kind == "cuda" and machine.nvidia_gpus and not driver_supports(machine, variant, load_matrix()):
        return f"the driver {machine.driver_version or '(none)'} no longer supports {old.variant}"
    archs = old.verification.archs
    unserved = [gpu for gpu in decision.served if variant.kind != "cpu" and archs and not serves(archs, gpu)]
    if unserved:
        return f"GPU changed: {old.base_id} has no kernels for {', '.join(gpu.name for gpu in unserved)}"
    if variant.kind not in ("cpu", decision.variant.kind):
        return f"GPU changed: this machine now takes {decision.variant} builds, not {old.variant}"
    if not fits_machine(old, detection):
        return f"{old.base_id} no longer fits this machine"
    return f"the choice for this machine is {decision.variant} torch {decision.torch_series[0]}: {decision.reasons[-1]}"


def _older(new_torch: str, old_torch: str) -> bool:
    return parse_version_tuple(new_torch) < parse_version_tuple(old_torch)


def plan_rebase(
    store: Store,
    request_for: Callable[[Interpreter], BaseRequest],
    *,
    only: Path | None = None,
    onto: str | None = None,
    look_up: LookUp | None = None,
    env: Mapping[str, str] | None = None,
    force: bool = False,
) -> Plan:
    """Which base each registered project should move to; reads the store only. With ``look_up`` (which
    wheels of a package its sources offer), also what each compiled extension needs (``env``: the
    installers' variables, naming sources); ``force`` moves projects whose extensions cannot follow."""
    manifests, problems = read_bases(store)
    bases = {manifest.base_id: manifest for manifest in manifests}
    unreadable = {item.base_id: item.reason for item in problems}
    if onto is not None and onto not in bases:
        raise BadInput(f"--base {onto!r} is not a published base; known: {', '.join(sorted(bases)) or 'none'}")
    targets: dict[str, Target] = {}
    moves: list[Move] = []
    skipped: list[str] = []
    downgrades: list[Downgrade] = []
    for entry in store.projects():
        if "error" in entry:
            skipped.append(f"{entry['entry']}: unreadable registry entry (layerenv doctor --fix prunes it)")
            continue
        venv = Path(str(entry["venv"]))
        if only is not None and only not in (venv.parent, venv):
            continue
        per_node = _node_answer(store, venv)
        old_id = per_node or str(entry.get("base_id"))
        old = bases.get(old_id)
        if not VenvLayout.for_venv(venv).python.exists():
            skipped.append(f"{venv}: the project venv is gone (layerenv doctor --fix prunes it)")
            continue
        if old_id in unreadable:
            skipped.append(f"{venv}: its base {old_id} cannot be read: {unreadable[old_id]}")
            continue
        if old is None:
            skipped.append(f"{venv}: its base {entry.get('base_id')} is gone; run `layerenv project` there")
            continue
        if onto is not None:
            if bases[onto].python.tag != old.python.tag:
                raise BadInput(f"--base {onto} is for {bases[onto].python.tag}, {venv} uses {old.python.tag}")
            moves.append(Move(venv, Path(str(entry.get("project", venv.parent))), old.base_id, onto))
            if onto != old.base_id and _older(bases[onto].torch, old.torch):
                asked = f"asked for with --base {onto}"
                downgrades.append(Downgrade(venv, old.torch_build, bases[onto].torch_build, asked))
            continue
        key = f"{old.python.tag}-{old.python.platform}"
        if key not in targets:
            interpreter = old.python
            request = request_for(interpreter)
            targets[key] = Target(interpreter, usable_current(store, request), request)
        target = targets[key]
        new = target.manifest.base_id if target.manifest else None
        moves.append(Move(venv, Path(str(entry.get("project", venv.parent))), old.base_id, new, bool(per_node)))
        new_torch = target.manifest.torch_build if target.manifest else target.request.detection.decision.torch
        if new != old.base_id and _older(new_torch, old.torch):
            downgrades.append(
                Downgrade(venv, old.torch_build, new_torch, downgrade_reason(old, target.request.detection))
            )
    if only is not None and not moves:
        raise BadInput(f"--project {only} is not a registered project (run `layerenv project {only}` first)")
    steps = plan_extensions(moves, bases, targets, look_up, env or {}) if look_up is not None else ()
    return Plan(tuple(targets.values()), tuple(moves), tuple(skipped), tuple(downgrades), steps, force)


LookUp = Callable[[str, "PackageSources"], "list[Candidate]"]


def plan_extensions(moves: list[Move], bases: dict[str, Manifest], targets: dict[str, Target], look_up: LookUp,
                    env: Mapping[str, str]) -> tuple[tuple[Path, tuple[ExtensionStep, ...]], ...]:
    """Per project venv, what each compiled extension needs for the torch it moves to (or stays on)."""
    from layerenv.project.extensions import find_extensions, read_state
    from layerenv.project.link import read_link

    found: list[tuple[Path, tuple[ExtensionStep, ...]]] = []
    offers: dict[tuple[str, PackageSources], list[Candidate]] = {}
    for move in moves:
        old = bases[move.old_base]
        if move.per_node:
            continue  # moved by this node's record only: its venv (and what is built in it) is shared
        if move.new_base is not None:
            new_torch = bases[move.new_base].torch_build
        else:
            decision = targets[f"{old.python.tag}-{old.python.platform}"].request.detection.decision
            # the build it will be: the variant's index labels its wheels with the variant (2.15.0+cu132)
            new_torch = decision.torch if "+" in decision.torch else f"{decision.torch}+{decision.variant.name}"
        try:
            linked = read_link(move.venv)
        except OperationFailed:
            continue
        extensions = find_extensions(move.venv, read_state(move.venv), linked.stubs if linked else ())
        if not extensions:
            continue
        # imported where a project has extensions only: the index client (urllib, ssl) is ~50 ms of start-up
        from layerenv.project.extension_moves import plan_extension
        from layerenv.project.extension_sources import PackageSources

        sources = PackageSources.of_venv(move.venv, env, old.torch_build, new_torch)
        steps = []
        step_for = partial(plan_extension, old_torch=old.torch_build, new_torch=new_torch,
                           python_tag=old.python.tag, platform=old.python.platform, where=sources.describe())
        for extension in extensions:
            step = step_for(extension, candidates=[])
            if step is not None and step.action == "blocked" and extension.source == "wheel":  # a wheel may exist
                key = (extension.name, sources)
                if key not in offers:
                    offers[key] = look_up(extension.name, sources)
                step = step_for(extension, candidates=offers[key])
            if step is not None:
                steps.append(step)
        if steps:
            found.append((move.venv, tuple(steps)))
    return tuple(found)


@dataclass(frozen=True)
class Outcome:
    moved: tuple[Move, ...]
    reinstalled: dict[str, list[str]]
    failures: tuple[str, ...]
    built: tuple[str, ...]
    reused: tuple[str, ...] = ()  # bases the plan had to build, found built by another process meanwhile


def _build(plan: Plan, store: Store, reporter: Reporter, bases: dict[str, Manifest]
           ) -> tuple[list[str], list[str], dict[tuple[str, str], str]]:
    """Each base the plan needs (added to ``bases``): those built here, those another process had built
    meanwhile, and the base id for each (Python tag, platform)."""
    from layerenv.base.ensure import ensure_base  # the build pipeline: imported where a base is to be built

    built: list[str] = []
    reused: list[str] = []
    resolved: dict[tuple[str, str], str] = {}
    for target in plan.builds:
        result = ensure_base(target.request, store, reporter)  # which records this node's answer
        manifest = result.manifest
        bases[manifest.base_id] = manifest
        (reused if result.reused else built).append(manifest.base_id)
        resolved[(target.interpreter.tag, target.interpreter.platform)] = manifest.base_id
    return built, reused, resolved


def held_line(plan: Plan, move: Move) -> str:
    """Why a project stays where it is: the extensions that cannot follow it."""
    blocked = "; ".join(step.describe() for step in plan.blocked_by(move))
    return f"{move.venv}: not moved: {blocked} (`layerenv rebase --force` moves it anyway, and breaks them)"


def execute(plan: Plan, store: Store, reporter: Reporter) -> Outcome:
    """Build what the plan needs, record every target as this node's base, then move each project.

    One project's failure does not stop the rest. A plan with nothing to do only records this node's
    answer (a rebase after a reboot tells per-node projects the base again).
    """
    bases = {manifest.base_id: manifest for manifest in published(store)}
    built, reused, resolved = _build(plan, store, reporter, bases)
    for target in plan.targets:
        if target.manifest is not None:
            remember_node(store, target.manifest, target.request.detection, reporter)
    if plan.nothing_to_do:
        return Outcome((), {}, (), ())
    checkpoint("rebase:after-build")
    moved: list[Move] = []
    reinstalled: dict[str, list[str]] = {}
    failures = [held_line(plan, move) for move in plan.moves if plan.held(move)]
    relinks: list[tuple[int, Move]] = []
    for index, move in enumerate(plan.moves):
        new_id = move.new_base
        if new_id is None:
            old = bases[move.old_base]
            new_id = resolved[(old.python.tag, old.python.platform)]
        if plan.held(move) or (new_id == move.old_base and not plan.acts_on(move)):
            continue
        if move.per_node:  # this node's record, written above, moves it here; other nodes keep theirs
            checkpoint(f"rebase:project-{index}")
            moved.append(replace(move, new_base=new_id))
            reporter.step(f"moved {move.project} onto {new_id} on node {store.node} (per node)")
            continue
        relinks.append((index, replace(move, new_base=new_id)))

    for outcome in relink_all(plan, store, bases, relinks):
        move, result = outcome
        if isinstance(result, str):
            failures.append(result)
            continue
        moved.append(move)
        if result:
            reinstalled[str(move.venv)] = result
        reporter.step(f"moved {move.project} onto {move.new_base}")
        for step in plan.blocked_by(move):
            reporter.warn(f"moved {move.project} anyway (--force): {step.describe()}; it will fail to import")
    return Outcome(tuple(moved), reinstalled, tuple(failures), tuple(built), tuple(reused))


@dataclass
class _Prepared:
    """One project of a chunk after its first half: done (``result``), or staged in ``batch`` under its lock."""

    move: Move
    locked: ExitStack
    batch: Batch | None = None
    result: list[str] | str = field(default_factory=list)
    busy: bool = False  # another command held the venv's lock: moved whole once the chunk's locks are released


def relink_all(plan: Plan, store: Store, bases: Mapping[str, Manifest], relinks: list[tuple[int, Move]]
               ) -> Iterator[tuple[Move, list[str] | str]]:
    """Move each project, in order: what needed reinstalling, or the line saying why it failed.

    A chunk of projects at a time: each takes its venv's lock (another rebase or `layerenv project`
    changing the same venv goes first) and, when the move runs nothing, writes its new files beside the
    old ones; those of the whole chunk are fsynced at once (one wait, not one a file), then each
    project's files are renamed in place in link order and its lock released. A move that runs an
    installer is done whole in the first half. Interrupted (^C, a bug): the staged files not renamed
    yet are removed, so those projects stay where they were.

    The first chunk is small and done in this thread; how its time was spent decides how many threads
    the rest use (:func:`~layerenv.lifecycle.pacing.workers_for`).
    """
    workers, start = 1, 0
    while start < len(relinks):
        size = PROBE_PROJECTS if start == 0 else RELINK_CHUNK
        chunk, before = relinks[start:start + size], ThreadClock.now()
        prepared = _prepare_all(plan, store, bases, chunk, workers)
        if start == 0:  # the staging alone: the flush's waits on the disk are the same whatever the threads
            workers = workers_for(before, ThreadClock.now(), len(chunk))
        try:
            yield from _finish(prepared, workers)
        finally:
            for item in prepared:
                _release(item)
        for item in prepared:
            if item.busy:  # its turn now, waiting for its lock while holding no other
                yield item.move, _move_whole(plan, store, bases, item.move)
        start += len(chunk)


def _prepare_all(plan: Plan, store: Store, bases: Mapping[str, Manifest], chunk: list[tuple[int, Move]],
                 workers: int) -> list[_Prepared]:
    """The first half of each move in ``chunk``, ``workers`` at once; on an exception, none is left locked."""
    if workers == 1:
        done: list[_Prepared] = []
        try:
            for item in chunk:
                done.append(_prepare(plan, store, bases, item))
        except BaseException:
            for prepared in done:
                _release(prepared)
            raise
        return done
    pool = ThreadPoolExecutor(max_workers=min(workers, len(chunk)))
    futures = [pool.submit(_prepare, plan, store, bases, item) for item in chunk]
    try:
        return [future.result() for future in futures]
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        for future in futures:
            if future.done() and not future.cancelled() and future.exception() is None:
                _release(future.result())
        raise
    finally:
        pool.shutdown(wait=True)


def _finish(prepared: list[_Prepared], workers: int) -> Iterator[tuple[Move, list[str] | str]]:
    """Flush the staged files of a chunk at once, rename each project's in order, release its lock."""
    staged = [item for item in prepared if item.batch is not None]
    try:
        flush([path for item in staged if item.batch for path in item.batch.durable])
    except OSError as error:  # a full disk, an I/O error: none of the chunk moved
        for item in staged:
            item.result = f"{item.move.project}: not moved onto {item.move.new_base}: {error.strerror or error}"
            _release(item)
    checkpoint("rebase:after-stage")
    ready = [item for item in prepared if not item.busy]
    # each project's renames in order; with threads, the projects at once: replacing a file frees the old
    # one's blocks, a wait on the disk that overlaps with the others'
    pool = ThreadPoolExecutor(max_workers=min(workers, len(ready) or 1)) if workers > 1 else None
    try:
        for item, _ in zip(ready, (pool.map if pool else map)(_apply, ready), strict=True):
            yield item.move, item.result
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)  # before the caller releases what is left


def _apply(item: _Prepared) -> None:
    batch, item.batch = item.batch, None
    if batch is not None:
        item.result = _guarded(item.move, batch.apply) or item.result
    item.locked.close()


def _release(item: _Prepared) -> None:
    """Drop what ``item`` staged and not renamed, and release its lock."""
    if item.batch is not None:
        item.batch.discard()
        item.batch = None
    item.locked.close()


def _prepare(plan: Plan, store: Store, bases: Mapping[str, Manifest], item: tuple[int, Move]) -> _Prepared:
    """Under the venv's lock: stage the move, or (one that runs an installer) make it whole."""
    index, move = item
    checkpoint(f"rebase:project-{index}")
    prepared = _Prepared(move, ExitStack(), Batch())
    new, old, steps = bases[str(move.new_base)], bases.get(move.old_base), plan.steps_of(move)

    def first_half() -> list[str]:
        try:  # never waiting while holding other venvs' locks: two rebases could each wait for the other
            prepared.locked.enter_context(store.lock(store.project_lock_name(move.venv), blocking=False,
                                                     purpose=f"layerenv rebase {move.project}"))
        except Busy:
            prepared.busy, prepared.batch = True, None
            return []
        if prepared.batch is not None and stage_move(move, new, store, prepared.batch, steps=steps, old=old):
            return []
        prepared.batch = None  # nothing was staged
        return move_project(move, new, store, steps=steps, old=old)

    try:
        result = _guarded(move, first_half)
    except BaseException:
        _release(prepared)
        raise
    if isinstance(result, str):
        _release(prepared)  # nothing of it stays
    prepared.result = result or []
    return prepared


def _move_whole(plan: Plan, store: Store, bases: Mapping[str, Manifest], move: Move) -> list[str] | str:
    """One project's move, start to end, under its venv's lock (waiting for it)."""

    def whole() -> list[str]:
        with store.lock(store.project_lock_name(move.venv), purpose=f"layerenv rebase {move.project}"):
            return move_project(move, bases[str(move.new_base)], store, steps=plan.steps_of(move),
                                old=bases.get(move.old_base))

    return _guarded(move, whole) or []


def _guarded(move: Move, action: Callable[[], list[str] | None]) -> list[str] | str | None:
    """``action``'s result, or the line saying why this project could not be moved."""
    try:
        return action()
    except (OperationFailed, BadInput) as error:
        return error.message
    except OSError as error:  # the venv changed under us (deleted, moved): this project only
        return f"{move.project}: not moved onto {move.new_base}: {error.strerror or error} ({error.filename})"
