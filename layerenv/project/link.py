"""Link a project venv to a base: the base's torch family always loads, every other package the
project's own copy first, and pip/uv/poetry see the base's distributions as installed.

What :func:`link` leaves in the project venv (found again through ``layerenv.json``, the
``LAYERENV_STUB`` marker and the wrappers' mark, so linking again, to the same or another base,
replaces all of it and nothing else):

- ``_layerenv.pth``: the base's site-packages (after the project's own) and ``import _layerenv_boot``
  (given the base and the family's names), whose ``sys.meta_path`` finder answers the family's top-level
  names from the base only (:mod:`layerenv.project.boot`);
- a stub ``*.dist-info`` per base distribution (METADATA, WHEEL, entry points copied; RECORD naming
  only the stub's files) and wrappers for the family's console scripts (:mod:`layerenv.project.stubs`);
- ``layerenv-constraints.txt`` pinning the family, read by pip through ``<venv>/pip.conf`` (``pip.ini``
  on Windows) and by uv through ``UV_CONSTRAINT`` (set by the activation scripts and
  :func:`uv_environment`) (:mod:`layerenv.project.constraints`).

Where each of these goes in the venv (``bin``/``Scripts``, ``lib``/``Lib``) is :class:`VenvLayout`'s answer.
"""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from layerenv import __version__
from layerenv.errors import BadInput, OperationFailed
from layerenv.project.activation import patch_activation_scripts
from layerenv.project.boot import fixed_boot, per_node_boot, python_series, write_boot
from layerenv.project.constraints import write_constraints
from layerenv.project.run_env import RECORD_FILE, constraint_variables
from layerenv.project.stubs import base_distributions, is_stub, remove_stale, write_stub, write_wrappers
from layerenv.project.uv_wrapper import write_uv_shim
from layerenv.store.atomic import NOW, STAGED_PREFIX, Writer, json_text, remove_tree
from layerenv.venv.distinfo import Distribution, canonical_name, is_family, read_distributions
from layerenv.venv.layout import VenvLayout

__all__ = [
    "LinkRecord",
    "PerNode",
    "is_family",
    "is_per_node",
    "link",
    "read_link",
    "uv_environment",
]

STATE_FILE = "layerenv-project.json"  # what `layerenv project` installed, and onto which base


def _list(value: object) -> list[object]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {value!r}")
    return value


def _strings(value: object) -> tuple[str, ...]:
    return tuple(str(item) for item in _list(value))


class Keep(enum.Enum):
    """``link(per_node=KEEP)``: link the way the venv's last link did (per node or fixed)."""

    KEEP = "keep"


KEEP = Keep.KEEP


def layerenv_command() -> tuple[str, ...]:
    """How a project's boot module runs this layerenv: this interpreter, this copy of the package."""
    parent = str(Path(__file__).resolve().parent.parent)
    code = f"import sys; sys.path.insert(0, {parent!r}); from layerenv.entry import main; main()"
    return (sys.executable, "-c", code)


@dataclass(frozen=True)
class PerNode:
    """Link per node: the base comes from ``store``'s record for the node the interpreter starts on."""

    store: Path
    python_key: str  # "cp311-linux_x86_64", as recorded by layerenv.store.nodes
    base_python: str  # the interpreter `layerenv base --python` is given on a node with no answer yet
    layerenv: tuple[str, ...] = field(default_factory=layerenv_command)

    def to_json(self) -> dict[str, object]:
        return {"store": str(self.store), "python_key": self.python_key, "base_python": self.base_python,
                "layerenv": list(self.layerenv)}

    @classmethod
    def from_json(cls, data: object) -> PerNode:
        if not isinstance(data, dict):
            raise TypeError(f"per_node: expected a table, got {data!r}")
        return cls(Path(str(data["store"])), str(data["python_key"]), str(data["base_python"]),
                   _strings(data["layerenv"]))


@dataclass(frozen=True)
class LinkRecord:
    """What :func:`link` did to a project venv; stored as ``<venv>/layerenv.json``."""

    base_id: str
    base_venv: Path
    base_site: Path
    family: tuple[tuple[str, str], ...]  # (dist name, dist version from METADATA)
    family_modules: tuple[str, ...]
    stubs: tuple[str, ...]  # stub dist-info folder names in the project's site-packages
    scripts: tuple[str, ...]  # wrapper script names in the project's bin/
    constraints: Path
    layerenv_version: str = __version__
    per_node: PerNode | None = None  # set: the base is chosen per node at start-up

    def version_of(self, name: str) -> str | None:
        return dict(self.family).get(canonical_name(name))

    def to_json(self) -> dict[str, object]:
        document = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
        document["per_node"] = self.per_node.to_json() if self.per_node else None
        return document

    @property
    def boot_kind(self) -> str:
        return "per-node" if self.per_node else "fixed"

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> LinkRecord:
        pairs = [_strings(pair) for pair in _list(data["family"])]
        return cls(
            base_id=str(data["base_id"]),
            base_venv=Path(str(data["base_venv"])),
            base_site=Path(str(data["base_site"])),
            family=tuple((pair[0], pair[1]) for pair in pairs),
            family_modules=_strings(data["family_modules"]),
            stubs=_strings(data["stubs"]),
            scripts=_strings(data["scripts"]),
            constraints=Path(str(data["constraints"])),
            layerenv_version=str(data.get("layerenv_version", "")),
            per_node=PerNode.from_json(data["per_node"]) if data.get("per_node") else None,
        )


def link(project_venv: Path, *, base_id: str, base_venv: Path, per_node: PerNode | Keep | None = KEEP,
         durable: bool = True, final_venv: Path | None = None, writer: Writer = NOW,
         project_dists: Sequence[Distribution] | None = None) -> LinkRecord:
    """Layer ``project_venv`` on ``base_venv`` (again, or onto another base); returns the record.

    ``per_node``: a :class:`PerNode` makes the venv choose its base per node at start-up (the base
    given here is the primary one: its distributions are the stubs and the constraints); None makes
    it fixed on this base; ``KEEP`` (the default) keeps what the venv's last link chose.

    The project's own installs are left alone. Files are replaced atomically, the boot module and
    then the ``.pth`` last, so an interrupted link leaves ``import torch`` working with the old or
    the new base; ``layerenv.json`` follows them once everything is in place. ``durable=False`` skips
    the fsyncs, for a venv being staged that is flushed once before it is swapped in; ``final_venv``:
    where that staged venv will live, so the console-script wrappers (whose bytes the stubs' RECORDs
    hash) name its python there from the start and the move leaves them as recorded. ``writer``: a
    :class:`~layerenv.store.atomic.Batch` collects the replacements, in this order, to be made later.
    ``project_dists``: the project venv's distributions, when the caller has just read them.
    """
    venv, base = project_venv.absolute(), base_venv.absolute()
    layout = VenvLayout.for_venv(venv)
    final_python = final_venv.absolute() / layout.python.relative_to(venv) if final_venv is not None else layout.python
    site, base_site = layout.site_packages, VenvLayout.for_venv(base).site_packages
    if venv == base or not base_site.is_dir() or not site.is_dir():
        raise BadInput(f"cannot layer {venv} on {base}: not two venvs with site-packages")
    if None not in (ours := python_series(venv), theirs := python_series(base)) and ours != theirs:
        raise BadInput(f"{venv} runs Python {ours} but base {base_id} has Python {theirs}; they must match")
    if per_node is KEEP:
        previous = read_link(venv)
        per_node = previous.per_node if previous else None
    staged = [*venv.glob(f"{STAGED_PREFIX}*"), *layout.bin_dir.glob(f"{STAGED_PREFIX}*")]  # a killed rebase's
    for leftover in [*site.glob(".layerenv-*"), *staged]:  # of an interrupted link
        remove_tree(leftover)
    base_dists = base_distributions(base_site)
    family = [d for d in base_dists if is_family(d.name)]
    project = read_distributions(site) if project_dists is None else project_dists
    real = {d.name for d in project if not is_stub(d)}
    stubs: list[str] = []
    scripts: dict[str, bytes] = {}
    for dist in base_dists:
        if dist.name not in real:  # else the project's own copy (or a family shadow: lifecycle.shadows)
            wrappers = write_wrappers(layout, dist, python=final_python, writer=writer) if is_family(dist.name) else {}
            stubs.append(write_stub(site, layout, dist, base_id, wrappers, writer=writer,
                                    in_place=final_venv is not None))
            scripts.update(wrappers)
    remove_stale(layout, project, stubs, scripts, writer=writer)
    constraints = write_constraints(venv, base_id, family, layout.pip_config, durable=durable, writer=writer)
    patch_activation_scripts(layout.activation_scripts, constraints, writer=writer)
    write_uv_shim(venv, writer=writer)
    modules = tuple(sorted({m for d in family for m in d.top_level}))
    if per_node is None:
        boot = fixed_boot(base_id, base_site, modules)
    else:
        boot = per_node_boot(base_id, modules, store=per_node.store, python_key=per_node.python_key,
                             base_python=per_node.base_python, layerenv=per_node.layerenv)
    write_boot(venv, site, boot, durable=durable, writer=writer)
    record = LinkRecord(base_id, base, base_site, tuple((d.name, d.version) for d in family), modules,
                        tuple(stubs), tuple(sorted(scripts)), constraints,
                        per_node=per_node)
    writer.update_text(venv / RECORD_FILE, json_text(record.to_json()), durable=durable)
    return record


def read_link(project_venv: Path) -> LinkRecord | None:
    """The record of the last completed :func:`link`, or None for a venv never linked."""
    path = project_venv / RECORD_FILE
    try:
        return LinkRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise OperationFailed(f"{path} is unreadable ({exc}); link the project again") from exc


def is_per_node(project_venv: Path) -> bool:
    """Whether the venv chooses its base per node at start-up (an unreadable record: no)."""
    try:
        record = read_link(project_venv)
    except OperationFailed:
        return False
    return record is not None and record.per_node is not None


def uv_environment(project_venv: Path, base_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Variables that make ``uv pip`` act on ``project_venv`` and keep the base's torch family.

    ``UV_CONSTRAINT`` is a space-separated list for uv: one already in ``base_env`` is kept after
    ours. No ``UV_PYTHON``: ``VIRTUAL_ENV`` already selects the venv for ``uv pip``, and
    ``UV_PYTHON`` would also steer ``uv venv``/``uv run`` inside the user's command.
    """
    venv = project_venv.absolute()
    if read_link(venv) is None:
        raise BadInput(f"{venv} is not linked to a base")
    return constraint_variables(str(venv), base_env or {})
