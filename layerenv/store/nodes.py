"""Which base each node of a shared store uses: the per-node answer read at interpreter start.

``layerenv base``, ``project`` and ``rebase`` record, for the node they run on, the base chosen for
each Python::

    $LAYERENV_HOME/nodes/<node>/<python-tag>-<platform>.txt   boot=<boot id> base=<id> site=<path>
    $LAYERENV_HOME/nodes/<node>/node.json                      what status shows: machine, bases, when

The ``.txt`` file is what a per-node project's boot module reads when its interpreter starts (no GPU
probing, no json): a line per key, valid while the node's boot id is the one it was written in. After
a reboot (new driver, new GPU) the boot module asks ``layerenv base`` once to answer again.

A node is named by ``LAYERENV_NODE`` or else the host name.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerenv.errors import LayerenvError
from layerenv.machine.interpreters import Interpreter
from layerenv.store.identity import boot_id, host_name

NODES_DIR = "nodes"


@dataclass(frozen=True)
class NodeBase:
    """One line of a node's answer: on ``python`` (tag-platform), this node uses ``base_id``."""

    python: str
    base_id: str
    site: str
    boot_id: str

    def render(self) -> str:
        return f"boot={self.boot_id}\nbase={self.base_id}\nsite={self.site}\n"

    @classmethod
    def parse(cls, python: str, text: str) -> NodeBase | None:
        fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        if not fields.get("base") or not fields.get("site"):
            return None
        return cls(python, fields["base"], fields["site"], fields.get("boot", ""))


def python_key(python: Interpreter) -> str:
    return f"{python.tag}-{python.platform}"


def node_dir(home: Path, node: str) -> Path:
    return home / NODES_DIR / node


def record_paths(home: Path, node: str, python: Interpreter) -> list[Path]:
    """The files :func:`record` keeps for ``python`` on ``node``, and their folder."""
    directory = node_dir(home, node)
    return [directory, directory / f"{python_key(python)}.txt", directory / "node.json"]


def record(home: Path, node: str, *, python: Interpreter, base_id: str, site: Path,
           variant: str, machine: str) -> bool:
    """Record that ``node`` uses ``base_id`` for ``python``; False when the store cannot be written.

    Unchanged files are not rewritten: on a shared filesystem every write is a round trip.
    """
    from layerenv.store.atomic import write_text

    directory = node_dir(home, node)
    key = python_key(python)
    answer = NodeBase(key, base_id, str(site), boot_id())
    path = directory / f"{key}.txt"
    try:
        if _read(path) != answer.render():
            directory.mkdir(parents=True, exist_ok=True)
            write_text(path, answer.render(), durable=False)
        summary = directory / "node.json"
        document = _load_json(summary)
        recorded = document.get("bases")
        bases: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
        entry = {"base_id": base_id, "variant": variant}
        if bases.get(key) != entry or document.get("boot_id") != answer.boot_id or document.get("machine") != machine:
            bases[key] = entry
            document = {"node": node, "host": host_name(), "boot_id": answer.boot_id,
                        "machine": machine, "bases": bases, "updated": time.time()}
            write_text(summary, json.dumps(document, indent=2, sort_keys=True) + "\n", durable=False)
    except OSError:
        return False
    return True


def lookup(home: Path, node: str, python_key_: str) -> NodeBase | None:
    text = _read(node_dir(home, node) / f"{python_key_}.txt")
    return NodeBase.parse(python_key_, text) if text else None


def answer_problem(home: Path, node: str, answer: NodeBase, trust_problem: Callable[[Path], str | None]) -> str | None:
    """Why a per-node venv must not load ``answer`` (``node``'s record in the store at ``home``), or None.

    Trusted like a base (README "Trust model"): the record and its directory pass ``trust_problem``
    (:meth:`layerenv.store.home.Store.trust_problem`), and the ``site`` it names lies in the base it
    names, in this store's ``bases/``, which passes it too. The boot module applies the same rule.
    """
    record = node_dir(home, node) / f"{answer.python}.txt"
    if not _in_base(home, answer):
        return f"{record} names {answer.site}, which is no base of this store"
    for path in (record.parent, record, home / "bases" / answer.base_id, Path(answer.site)):
        found = trust_problem(path)
        if found is not None:
            return f"{path} {found}"
    return None


def _in_base(home: Path, answer: NodeBase) -> bool:
    """Whether ``answer.site`` lies in the base it names, in the store at ``home`` (seen, maybe, through
    another mount of it: the node wrote its own path)."""
    from layerenv.store.identity import check_name

    try:
        base_id = check_name(answer.base_id, "base id")
    except LayerenvError:
        return False
    head, inside, _ = os.path.normpath(answer.site).partition(f"{os.sep}bases{os.sep}{base_id}{os.sep}")
    try:
        return bool(inside) and Path(head, "bases", base_id).samefile(home / "bases" / base_id)
    except OSError:
        return False


@dataclass(frozen=True)
class NodeRecord:
    node: str
    host: str
    boot_id: str
    machine: str
    bases: dict[str, dict[str, str]]  # python key -> {"base_id", "variant"}
    updated: float

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "host": self.host, "boot_id": self.boot_id, "machine": self.machine,
                "bases": self.bases, "updated": self.updated}


def list_nodes(home: Path) -> list[NodeRecord]:
    """Every node that recorded an answer in this store (unreadable records are skipped)."""
    root = home / NODES_DIR
    if not root.is_dir():
        return []
    nodes = []
    for directory in sorted(root.iterdir()):
        document = _load_json(directory / "node.json")
        bases = document.get("bases")
        if not isinstance(bases, dict):
            continue
        nodes.append(NodeRecord(
            node=directory.name,
            host=str(document.get("host", "")),
            boot_id=str(document.get("boot_id", "")),
            machine=str(document.get("machine", "")),
            bases={str(k): {"base_id": str(v.get("base_id", "")), "variant": str(v.get("variant", ""))}
                   for k, v in bases.items() if isinstance(v, dict)},
            updated=float(document.get("updated", 0) or 0),
        ))
    return nodes


def bases_used_by_nodes(home: Path, *, besides: str = "") -> dict[str, list[str]]:
    """base id -> the nodes (other than ``besides``) whose answer names it.

    gc keeps these: those nodes may be down now. For the node gc runs on, what counts is the base
    that fits it now, not what it recorded earlier.
    """
    used: dict[str, list[str]] = {}
    root = home / NODES_DIR
    for path in sorted(root.glob("*/*.txt")) if root.is_dir() else ():
        if path.parent.name == besides:
            continue
        answer = NodeBase.parse(path.stem, _read(path) or "")
        if answer is not None:
            used.setdefault(answer.base_id, []).append(path.parent.name)
    return used


def _read(path: Path) -> str | None:
    """A record's text, never through a link (see :func:`layerenv.store.atomic.read_plain_text`)."""
    from layerenv.store.atomic import read_plain_text

    try:
        return read_plain_text(path)
    except (OSError, UnicodeDecodeError):
        return None


def _load_json(path: Path) -> dict[str, Any]:
    text = _read(path)
    try:
        document = json.loads(text) if text else {}
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}
