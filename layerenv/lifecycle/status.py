"""What the store holds: bases with their projects, and projects with their health. Read-only."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerenv.base.file_check import read_bases
from layerenv.base.manifest import Manifest, Unreadable
from layerenv.lifecycle.fingerprint import Memory
from layerenv.lifecycle.shadows import shadowed_names
from layerenv.project.link import is_per_node
from layerenv.store.home import Store
from layerenv.store.nodes import NodeRecord, bases_used_by_nodes, list_nodes
from layerenv.store.trust import NotUsable
from layerenv.venv.layout import VenvLayout


@dataclass(frozen=True)
class ProjectState:
    venv: str
    project: str
    base_id: str
    problem: str | None
    per_node: bool = False
    shadowed: tuple[tuple[str, str], ...] = ()  # (name, version): torch-family distributions of its own

    @property
    def state(self) -> str:
        """``ok``, ``shadowed`` (its own torch family installed over the base's stubs) or ``broken``."""
        return "broken" if self.problem is not None else "shadowed" if self.shadowed else "ok"

    def to_json(self) -> dict[str, Any]:
        problem = self.problem
        if problem is None and self.shadowed:
            own = ", ".join(f"{name} {version}" for name, version in self.shadowed)
            problem = f"shadowed by its own {own}: `layerenv doctor --fix` removes them"
        return {"path": self.project, "venv": self.venv, "base": self.base_id, "ok": self.state == "ok",
                "problem": problem, "per_node": self.per_node, "state": self.state,
                "shadowed": [{"name": name, "version": version} for name, version in self.shadowed]}


def disk_usage(path: Path) -> int:
    """Bytes used under ``path``, counting each hard-linked file once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                stat = Path(root, name).lstat()
            except OSError:
                continue
            if (stat.st_dev, stat.st_ino) in seen:
                continue
            seen.add((stat.st_dev, stat.st_ino))
            if sys.platform == "win32":  # no st_blocks there
                total += stat.st_size
            else:
                total += stat.st_blocks * 512
    return total


def project_states(store: Store, bases: dict[str, Manifest], unreadable: dict[str, Unreadable]) -> list[ProjectState]:
    """Each registered project's state; one ``doctor`` last found healthy whose watched files have not
    changed since is ``ok`` without a look inside (:mod:`layerenv.lifecycle.fingerprint`; status only reads it)."""
    entries = store.projects()
    registered = {str(entry["venv"]): str(entry.get("base_id", "?")) for entry in entries if "error" not in entry}
    unchanged = Memory.load(store).recall(
        list(registered), lambda venv, healthy: healthy.base_id in bases and healthy.base_id == registered[venv])
    states = []
    for entry in entries:
        if "error" in entry:
            states.append(ProjectState("?", "?", "?", f"unreadable registry entry {entry['entry']}"))
            continue
        venv = Path(str(entry["venv"]))
        base_id = str(entry.get("base_id", "?"))
        project = str(entry.get("project", venv.parent))
        if str(entry["venv"]) in unchanged:
            states.append(ProjectState(str(venv), project, base_id, None))
            continue
        problem = None
        if not venv.is_dir():
            problem = "the project venv is gone"
        elif not VenvLayout.for_venv(venv).python.exists():
            problem = "the project venv has no python"
        elif base_id in unreadable:
            problem = f"its base {base_id} cannot be read: {unreadable[base_id].reason}"
        elif base_id not in bases:
            problem = f"its base {base_id} is gone"
        per_node = problem is None and is_per_node(venv)
        if per_node:
            problem = node_answer_problem(store, venv)
        shadowed = tuple(shadowed_names(venv)) if problem is None else ()
        states.append(ProjectState(str(venv), project, base_id, problem, per_node, shadowed))
    return states


def node_answer_problem(store: Store, venv: Path) -> str | None:
    """Why this node's recorded answer for a per-node venv is not loaded (not trusted, no base of the
    store), or None: what its boot module refuses at start-up, said by status instead of "ok"."""
    from layerenv.project.link import read_link
    from layerenv.store.nodes import answer_problem, lookup

    record = read_link(venv)
    if record is None or record.per_node is None:
        return None
    answer = lookup(record.per_node.store, store.node, record.per_node.python_key)
    if answer is None:
        return None
    found = answer_problem(record.per_node.store, store.node, answer, store.trust_problem)
    return None if found is None else f"node {store.node}'s record is not loaded: {found}"


def status_document(store: Store, current_ids: set[str], with_sizes: bool = True) -> dict[str, Any]:
    manifests, problems = read_bases(store)
    bases = {manifest.base_id: manifest for manifest in manifests}
    unreadable = {item.base_id: item for item in problems}
    projects = project_states(store, bases, unreadable)
    by_node = bases_used_by_nodes(store.home)
    document_bases = []
    for base_id, manifest in sorted(bases.items()):
        document_bases.append(
            {
                "id": base_id,
                "path": manifest.path,
                "python": manifest.python.version_text,
                "variant": manifest.variant,
                "torch": manifest.torch_build,
                "packages": {name: record.version for name, record in sorted(manifest.packages.items())},
                "created": manifest.created,
                "adopted": manifest.adopted,
                "current": base_id in current_ids,
                "size_bytes": disk_usage(manifest.venv) if with_sizes and not manifest.adopted else None,
                "projects": [state.project for state in projects if state.base_id == base_id],
                "nodes": sorted(by_node.get(base_id, [])),
            }
        )
    return {
        "home": str(store.home),
        "node": store.node,
        "bases": document_bases,
        "unreadable_bases": [
            {"id": item.base_id, "manifest": str(item.path), "problem": item.reason, "newer": item.newer,
             "untrusted": isinstance(item.error, NotUsable) and item.error.untrusted}
            for item in problems
        ],
        "projects": [state.to_json() for state in projects],
        "nodes": [node_json(node, bases) for node in list_nodes(store.home)],
    }


def node_json(node: NodeRecord, bases: dict[str, Manifest]) -> dict[str, Any]:
    """A node of the store and the base it uses per Python (``present``: the base is still there)."""
    document = node.to_json()
    document["bases"] = {
        key: {**entry, "present": entry["base_id"] in bases} for key, entry in sorted(node.bases.items())
    }
    return document
