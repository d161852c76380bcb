"""Recording which base this node uses, for per-node projects (``nodes/<node>/<python>.txt``)."""

from __future__ import annotations

from layerenv.base.manifest import Manifest
from layerenv.errors import OperationFailed
from layerenv.reporter import Reporter
from layerenv.store.home import Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from layerenv.choice.detection import Detection


def machine_line(detection: Detection) -> str:
    """One line naming the machine's GPUs and driver, for node records."""
    machine = detection.machine
    gpus = ", ".join(gpu.label for gpu in machine.gpus) or "no GPU"
    driver = f", driver {machine.driver_version}" if machine.driver_version else ""
    return f"{gpus}{driver}"


def remember_node(store: Store, manifest: Manifest, detection: Detection, reporter: Reporter) -> None:
    """Record that this node uses ``manifest``'s base (what per-node projects load here).

    Called wherever a base is chosen for use (reused, built, adopted, a project's, a rebase's target).
    Warns through ``reporter`` when the record could not be written to a store that per-node projects use.
    """
    record_node(store, manifest, machine_line(detection), reporter)


def record_node(store: Store, manifest: Manifest, machine: str, reporter: Reporter) -> None:
    """:func:`remember_node` with the machine's line (:func:`machine_line`) already known."""
    from layerenv.store.nodes import NODES_DIR, record
    from layerenv.venv.layout import VenvLayout

    if manifest.sources_tag:
        return  # built from a project's own sources: never what every per-node project on this node loads

    try:
        site = VenvLayout.for_venv(manifest.venv).site_packages
    except (OSError, OperationFailed):
        return
    if record(store.home, store.node, python=manifest.python, base_id=manifest.base_id, site=site,
              variant=manifest.variant, machine=machine):
        return
    if not (store.home / NODES_DIR).is_dir():
        return  # no per-node project uses this store: nothing to say
    reporter.warn(f"could not record node {store.node}'s base in {store.home / NODES_DIR} (read-only?): "
                  "per-node projects on this node will ask `layerenv base` again at every start")
