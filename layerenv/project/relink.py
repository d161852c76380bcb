"""Moving one project venv onto another base: relink, reinstall what the new torch requires, record."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from layerenv.base.manifest import Manifest
from layerenv.errors import OperationFailed
from layerenv.faults import checkpoint
from layerenv.project.link import STATE_FILE
from layerenv.store.atomic import NOW, Batch, Writer, json_text
from layerenv.store.home import Store
from layerenv.venv.distinfo import Distribution, canonical_name, is_family, read_distributions
from layerenv.venv.layout import VenvLayout

if TYPE_CHECKING:
    from layerenv.installers import Installer
    from layerenv.project.extension_moves import ExtensionStep
    from layerenv.project.extensions import Extension


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


def packages_needing_reinstall(venv: Path, manifest: Manifest, dists: Sequence[Distribution] | None = None
                               ) -> list[str]:
    """The project's own distributions whose torch-family requirements the new base does not meet
    (``dists``: the venv's, when already read)."""
    from packaging.requirements import InvalidRequirement, Requirement

    needing = []
    for dist in read_distributions(VenvLayout.for_venv(venv).site_packages) if dists is None else dists:
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


def move_project(move: Move, manifest: Manifest, store: Store, installer: Installer | None = None, *,
                 steps: Sequence[ExtensionStep] = (), old: Manifest | None = None) -> list[str]:
    """Relink one project onto ``manifest``'s base; reinstall or rebuild its compiled extensions as
    ``steps`` say (a failure links it back to ``old``, as it worked), then reinstall what the new torch
    requires, with ``installer`` (pip by default: every project venv has it, shared from the store or
    seeded, whichever filled it)."""
    from layerenv.installers import InstallerFailed, LayeredVenv, Log, PipInstaller  # runs an installer: imported here
    from layerenv.project.link import link

    moved = {step.name for step in steps if step.action != "blocked"}
    needing = packages_needing_reinstall(move.venv, manifest)  # before linking: the stubs are skipped anyway
    if moved or needing:  # either runs the project's own interpreter
        refuse_untrusted_interpreter(move.venv, store)
    link(move.venv, base_id=manifest.base_id, base_venv=manifest.venv)
    checkpoint("rebase:after-link")
    installer = installer or PipInstaller()
    extensions = _extensions(move.venv)
    # the rest keep the torch they were recorded with (a forced move, or `layerenv project` moving a venv)
    kept = {extension.name: extension.built_against or (old.torch_build if old else None)
            for extension in extensions if extension.name not in moved}
    if moved:
        _move_extensions(move, manifest, store, installer, steps, extensions, old)
        needing = packages_needing_reinstall(move.venv, manifest)  # the extension moves may change it
    done = sorted(moved)
    if needing:
        layered = LayeredVenv(move.venv, VenvLayout.for_venv(move.venv).python, _uv_environment(move.venv))
        try:
            installer.reinstall(layered, needing, Log(store.log_path(f"rebase-{move.project.name or 'root'}")))
        except InstallerFailed as failed:
            tail = (failed.stderr.strip().splitlines() or [f"{installer.name} failed"])[-1]
            raise OperationFailed(
                f"{move.venv}: {', '.join(needing)} need another torch and could not be "
                f"reinstalled ({tail}); it still runs on {manifest.base_id}"
            ) from None
    record_base(move.venv, manifest.base_id, manifest.torch_build, kept)
    checkpoint("rebase:after-record")
    store.register(move.venv, manifest.base_id, move.project)
    checkpoint("rebase:after-register")
    return done + needing


def stage_move(move: Move, manifest: Manifest, store: Store, batch: Batch, *, steps: Sequence[ExtensionStep] = (),
               old: Manifest | None = None) -> bool:
    """Write a move that runs nothing (no extension to move, nothing to reinstall) into ``batch``, in
    :func:`move_project`'s order (the link, the project's record, the registry), and say so; False
    (nothing written) for a move that must run an installer: :func:`move_project` does it whole."""
    from layerenv.project.extensions import find_extensions, read_state
    from layerenv.project.link import link, read_link

    if any(step.action != "blocked" for step in steps):
        return False
    dists = read_distributions(VenvLayout.for_venv(move.venv).site_packages)  # once, under the venv's lock
    if packages_needing_reinstall(move.venv, manifest, dists):
        return False
    before = read_link(move.venv)
    record = link(move.venv, base_id=manifest.base_id, base_venv=manifest.venv, writer=batch,
                  per_node=before.per_node if before else None, project_dists=dists)
    batch.then(partial(checkpoint, "rebase:after-link"))
    # the old link's stubs are still here (the batch removes them): neither set is the project's own
    stubs = {*record.stubs, *(before.stubs if before else ())}
    kept = {extension.name: extension.built_against or (old.torch_build if old else None)
            for extension in find_extensions(move.venv, read_state(move.venv), stubs)}
    record_base(move.venv, manifest.base_id, manifest.torch_build, kept, writer=batch, stubs=stubs)
    batch.then(partial(checkpoint, "rebase:after-record"))
    store.register(move.venv, manifest.base_id, move.project, writer=batch)
    batch.then(partial(checkpoint, "rebase:after-register"))
    return True


def refuse_untrusted_interpreter(venv: Path, store: Store) -> None:
    """Before running a project's own ``python`` (to reinstall or rebuild), make sure nobody but the caller or root
    (or the trusted group) could have made it run their code: the interpreter file it resolves to, the
    venv, its ``bin`` and its site-packages (whose ``.pth`` files run at start-up).

    Raises ``OperationFailed`` naming what and why: rebase skips that project and goes on.
    """
    layout = VenvLayout.for_venv(venv)
    for path in (layout.python.resolve(), venv, layout.bin_dir, layout.site_packages):
        found = store.trust_problem(path)
        if found is not None:
            raise OperationFailed(
                f"{venv}: not moved: moving it runs its interpreter, and {path} {found}, so running it "
                "could run someone else's code; its owner can run `layerenv rebase`"
            )


def _uv_environment(venv: Path) -> dict[str, str]:
    import os

    from layerenv.project.link import uv_environment

    return uv_environment(venv, os.environ)


def _extensions(venv: Path) -> list[Extension]:
    from layerenv.project.extensions import find_extensions, read_state
    from layerenv.project.link import read_link

    linked = read_link(venv)
    return find_extensions(venv, read_state(venv), linked.stubs if linked else ())


def _move_extensions(move: Move, manifest: Manifest, store: Store, installer: Installer,
                     steps: Sequence[ExtensionStep], extensions: Sequence[Extension], old: Manifest | None) -> None:
    from layerenv.installers import LayeredVenv, Log
    from layerenv.project.extension_moves import apply_steps
    from layerenv.project.link import link

    layered = LayeredVenv(move.venv, VenvLayout.for_venv(move.venv).python, _uv_environment(move.venv))
    try:
        apply_steps(layered, steps, extensions, installer, Log(store.log_path(f"rebase-{move.project.name or 'root'}")))
    except OperationFailed as failed:
        if old is None:
            raise OperationFailed(f"{move.venv}: {failed.message}") from None
        link(move.venv, base_id=old.base_id, base_venv=old.venv)
        raise OperationFailed(f"{move.venv}: {failed.message}; it stays on {old.base_id}, as it worked") from None
    checkpoint("rebase:after-extensions")


def record_base(venv: Path, base_id: str, torch_build: str | None = None,
                kept: Mapping[str, str | None] | None = None, *, writer: Writer = NOW,
                stubs: Iterable[str] | None = None) -> None:
    """The project's record names ``base_id``; with ``torch_build``, its compiled extensions are recorded
    as installed against it, except those ``kept`` names (each keeps its record, else the torch given).
    ``stubs``: the stub folders to skip (default: those the venv's link record names)."""
    from layerenv.project.extensions import record_extensions
    from layerenv.project.link import read_link

    state_path = venv / STATE_FILE
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = {}
    if isinstance(state, dict):
        state["base_id"] = base_id
        if torch_build is not None:
            if stubs is None:
                linked = read_link(venv)
                stubs = linked.stubs if linked else ()
            state = record_extensions(state, venv, torch_build, kept, skip=stubs)
        writer.write_text(state_path, json_text(state))
