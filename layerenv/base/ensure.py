"""Reuse the base that fits, or build one under the key's lock; either way it becomes this node's answer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from layerenv.base.current import usable_current
from layerenv.base.manifest import Manifest
from layerenv.base.node_answer import remember_node
from layerenv.base.request import BaseRequest, BaseResult, base_key
from layerenv.reporter import Reporter
from layerenv.store.atomic import remove_tree
from layerenv.store.home import Store

if TYPE_CHECKING:  # the reuse path imports no installer
    from layerenv.installers import Installer


def reuse_base(request: BaseRequest, store: Store, reporter: Reporter) -> Manifest | None:
    """The published base that fits ``request``, recorded as this node's; ``None`` when none fits.

    Needs no write access to the store (a shared read-only store still answers; the node record is
    then only warned about).
    """
    current = usable_current(store, request)
    if current is not None:
        remember_node(store, current, request.detection, reporter)
    return current


def ensure_base(
    request: BaseRequest, store: Store, reporter: Reporter, installer: Installer | None = None
) -> BaseResult:
    """Reuse the fitting base or build one, under the key's lock; publish atomically; record this node's.
    A build uses ``installer``, by default the one ``request.installer`` names."""
    store.ensure_writable()
    if not request.rebuild:
        current = reuse_base(request, store, reporter)
        if current is not None:
            return BaseResult(current, reused=True)
    key = base_key(request)

    def waiting(owner: str) -> None:
        reporter.step(f"waiting for the lock on {key}: held by {owner}")

    with store.lock(key, purpose=f"building base {key}", on_wait=waiting):
        if not request.rebuild:
            current = reuse_base(request, store, reporter)
            if current is not None:
                return BaseResult(current, reused=True)
        for orphan in store.orphaned_staging(key):
            reporter.step(f"removing {orphan.name}, left by an interrupted build")
            remove_tree(orphan)
        for replaced in store.graveyard.glob("*"):
            remove_tree(replaced)
        from layerenv.base.build import build

        result = build(request, store, key, reporter, installer)
    remember_node(store, result.manifest, request.detection, reporter)
    return result
