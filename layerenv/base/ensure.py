"""Reuse the base that fits, or build one under the key's lock."""

from __future__ import annotations

from layerenv.base.current import usable_current
from layerenv.base.request import BaseRequest, BaseResult, base_key
from layerenv.reporter import Reporter
from layerenv.store.atomic import remove_tree
from layerenv.store.home import Store


def ensure_base(request: BaseRequest, store: Store, reporter: Reporter) -> BaseResult:
    """Reuse the fitting base or build one, under the key's lock; publish atomically."""
    store.ensure_writable()
    if not request.rebuild:
        current = usable_current(store, request)
        if current is not None:
            return BaseResult(current, reused=True)
    key = base_key(request)

    def waiting(owner: str) -> None:
        reporter.step(f"waiting for the lock on {key}: held by {owner}")

    with store.lock(key, purpose=f"building base {key}", on_wait=waiting):
        if not request.rebuild:
            current = usable_current(store, request)
            if current is not None:
                return BaseResult(current, reused=True)
        for orphan in store.orphaned_staging(key):
            reporter.step(f"removing {orphan.name}, left by an interrupted build")
            remove_tree(orphan)
        for replaced in store.graveyard.glob("*"):
            remove_tree(replaced)
        from layerenv.base.build import build

        return build(request, store, key, reporter)
