"""Moving registered projects onto the base that fits the machine now.

Plan first (pure over what is on disk), then: build the new base if needed (same lock and
crash-safety as ``layerenv base``), and move each project by relinking it. A relink replaces each
file atomically and the ``.pth`` last, so a kill at any moment leaves every project on its old or its
new base, both working; the registry is updated after the link, and the next rebase finishes the move.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from layerenv.atomic import write_json
from layerenv.base import BaseRequest, Reporter, ensure_base, published, remember_node, usable_current
from layerenv.distinfo import canonical_name, is_family, read_distributions, site_packages_of
from layerenv.errors import BadInput, OperationFailed
from layerenv.faults import checkpoint
from layerenv.interpreters import Interpreter, venv_python
from layerenv.layering import STATE_FILE
from layerenv.manifest import Manifest
from layerenv.store import Store


@dataclass(frozen=True)
class Move:
    venv: Path
    project: Path
    old_base: str
    new_base: str | None  # None: the target base is still to be built
    per_node: bool = False  # moved by this node's record alone: its venv is not relinked

    @property
    def changes(self) -> bool:
        return self.new_base != self.old_base


@dataclass(frozen=True)
class Target:
    """The base that projects on one interpreter should stand on."""

    interpreter: Interpreter
    manifest: Manifest | None  # None: it has to be built
    request: BaseRequest


@dataclass(frozen=True)
class Plan:
    targets: tuple[Target, ...]
    moves: tuple[Move, ...]
    skipped: tuple[str, ...]

    @property
    def builds(self) -> tuple[Target, ...]:
        return tuple(target for target in self.targets if target.manifest is None)

    @property
    def nothing_to_do(self) -> bool:
        return not self.builds and not any(move.changes for move in self.moves)


def _node_answer(store: Store, venv: Path) -> str | None:
    """For a per-node project: the base this node's record names ("" when none yet); else None."""
    from layerenv.layering import read_link
    from layerenv.nodes import lookup

    try:
        record = read_link(venv) if venv.is_dir() else None
    except OperationFailed:
        return None
    if record is None or record.per_node is None:
        return None
    answer = lookup(record.per_node.store, store.node, record.per_node.python_key)
    return answer.base_id if answer else record.base_id


def interpreter_of(manifest: Manifest) -> Interpreter:
    version = tuple(int(part) for part in str(manifest.python["version"]).split(".")[:3])
    return Interpreter(
        executable=Path(str(manifest.python["executable"])),
        implementation=str(manifest.python.get("implementation", "cpython")),
        version=(version[0], version[1], version[2] if len(version) > 2 else 0),
        platform=str(manifest.python["platform"]),
    )


def plan_rebase(
    store: Store,
    request_for: Callable[[Interpreter], BaseRequest],
    *,
    only: Path | None = None,
    onto: str | None = None,
) -> Plan:
    """Which base each registered project should move to; reads the store only."""
    bases = {manifest.base_id: manifest for manifest in published(store)}
    if onto is not None and onto not in bases:
        raise BadInput(f"--base {onto!r} is not a published base; known: {', '.join(sorted(bases)) or 'none'}")
    targets: dict[str, Target] = {}
    moves: list[Move] = []
    skipped: list[str] = []
    for entry in store.projects():
        if "error" in entry:
            skipped.append(f"{entry['entry']}: unreadable registry entry (layerenv doctor --fix prunes it)")
            continue
        venv = Path(str(entry["venv"]))
        if only is not None and only not in (venv.parent, venv):
            continue
        per_node = _node_answer(store, venv)
        old = bases.get(per_node or str(entry.get("base_id")))
        if not venv_python(venv).exists():
            skipped.append(f"{venv}: the project venv is gone (layerenv doctor --fix prunes it)")
            continue
        if old is None:
            skipped.append(f"{venv}: its base {entry.get('base_id')} is gone; run `layerenv project` there")
            continue
        if onto is not None:
            if bases[onto].python.get("tag") != old.python.get("tag"):
                raise BadInput(
                    f"--base {onto} is for {bases[onto].python.get('tag')}, {venv} uses {old.python.get('tag')}"
                )
            moves.append(Move(venv, Path(str(entry.get("project", venv.parent))), old.base_id, onto))
            continue
        key = f"{old.python.get('tag')}-{old.python.get('platform')}"
        if key not in targets:
            interpreter = interpreter_of(old)
            request = request_for(interpreter)
            targets[key] = Target(interpreter, usable_current(store, request), request)
        target = targets[key]
        new = target.manifest.base_id if target.manifest else None
        moves.append(Move(venv, Path(str(entry.get("project", venv.parent))), old.base_id, new, bool(per_node)))
    if only is not None and not moves:
        raise BadInput(f"--project {only} is not a registered project (run `layerenv project {only}` first)")
    return Plan(tuple(targets.values()), tuple(moves), tuple(skipped))


def packages_needing_reinstall(venv: Path, manifest: Manifest) -> list[str]:
    """The project's own distributions whose torch-family requirements the new base does not meet."""
    from packaging.requirements import InvalidRequirement, Requirement

    needing = []
    for dist in read_distributions(site_packages_of(venv)):
        if dist.installer == "layerenv" or is_family(dist.name):
            continue
        for line in dist.metadata_text.splitlines():
            if not line.startswith("Requires-Dist:"):
                continue
            try:
                requirement = Requirement(line.split(":", 1)[1].strip())
            except InvalidRequirement:
                continue
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            have = manifest.packages.get(canonical_name(requirement.name))
            if have is not None and not requirement.specifier.contains(have.version, prereleases=True):
                needing.append(dist.name)
                break
    return needing


def move_project(move: Move, manifest: Manifest, store: Store) -> list[str]:
    """Relink one project onto ``manifest``'s base; reinstall only what the new torch requires."""
    from layerenv.layering import link

    link(move.venv, base_id=manifest.base_id, base_venv=manifest.venv)
    checkpoint("rebase:after-link")
    needing = packages_needing_reinstall(move.venv, manifest)
    if needing:
        result = subprocess.run(
            [
                str(venv_python(move.venv)),
                "-m",
                "pip",
                "install",
                "--no-input",
                "--disable-pip-version-check",
                "--upgrade",
                "--upgrade-strategy",
                "only-if-needed",
                *needing,
            ],
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
            errors="replace",
        )
        if result.returncode != 0:
            tail = (result.stderr.strip().splitlines() or ["pip failed"])[-1]
            raise OperationFailed(
                f"{move.venv}: {', '.join(needing)} need another torch and could not be "
                f"reinstalled ({tail}); it still runs on {manifest.base_id}"
            )
    record_base(move.venv, manifest.base_id)
    checkpoint("rebase:after-record")
    store.register(move.venv, manifest.base_id, move.project)
    checkpoint("rebase:after-register")
    return needing


def record_base(venv: Path, base_id: str) -> None:
    state_path = venv / STATE_FILE
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = {}
    if isinstance(state, dict):
        state["base_id"] = base_id
        write_json(state_path, state)


@dataclass(frozen=True)
class Outcome:
    moved: tuple[Move, ...]
    reinstalled: dict[str, list[str]]
    failures: tuple[str, ...]
    built: tuple[str, ...]


def execute(plan: Plan, store: Store, reporter: Reporter) -> Outcome:
    """Build what the plan needs, then move each project; one project's failure does not stop the rest."""
    bases = {manifest.base_id: manifest for manifest in published(store)}
    built: list[str] = []
    resolved: dict[tuple[str, str], str] = {}
    for target in plan.builds:
        manifest = ensure_base(target.request, store, reporter).manifest
        bases[manifest.base_id] = manifest
        built.append(manifest.base_id)
        resolved[(target.interpreter.tag, target.interpreter.platform)] = manifest.base_id
    for target in plan.targets:
        chosen = target.manifest or bases[resolved[(target.interpreter.tag, target.interpreter.platform)]]
        remember_node(store, chosen, target.request.detection)
    checkpoint("rebase:after-build")
    moved: list[Move] = []
    reinstalled: dict[str, list[str]] = {}
    failures: list[str] = []
    for index, move in enumerate(plan.moves):
        new_id = move.new_base
        if new_id is None:
            old = bases[move.old_base]
            new_id = resolved[(str(old.python.get("tag")), str(old.python.get("platform")))]
        if new_id == move.old_base:
            continue
        checkpoint(f"rebase:project-{index}")
        if move.per_node:  # this node's record, written above, moves it here; other nodes keep theirs
            moved.append(replace(move, new_base=new_id))
            reporter.step(f"moved {move.project} onto {new_id} on node {store.node} (per node)")
            continue
        try:
            needing = move_project(move, bases[new_id], store)
        except (OperationFailed, BadInput) as error:
            failures.append(error.message)
            continue
        moved.append(replace(move, new_base=new_id))
        if needing:
            reinstalled[str(move.venv)] = needing
        reporter.step(f"moved {move.project} onto {new_id}")
    return Outcome(tuple(moved), reinstalled, tuple(failures), tuple(built))
