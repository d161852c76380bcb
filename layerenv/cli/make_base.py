"""``layerenv base``'s build-or-reuse, click-free: the click command runs it, and so does the console
script's plain ``layerenv base [--json]`` (:mod:`layerenv.cli.entry`) when its reuse attempt finds no base
that fits, going on in that attempt's session: a first build neither imports click nor reads the machine
and chooses the build a second time."""

from __future__ import annotations

from layerenv.base.ensure import ensure_base
from layerenv.base.request import BaseRequest
from layerenv.cli.render import base_summary
from layerenv.cli.ui import Console
from layerenv.store.home import Store


def build_or_reuse(console: Console, request: BaseRequest, store: Store, *, as_json: bool) -> None:
    """Reuse the base that fits ``request`` or build it, and print its summary (``built`` or ``reused``)."""
    result = ensure_base(request, store, console)
    print(base_summary(result.manifest, "reused" if result.reused else "built", as_json=as_json))
