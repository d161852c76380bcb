"""The console-script entry point.

``layerenv detect [--json]`` and ``layerenv base [--json]`` on a machine whose base exists are what
scripts, containers and shells call most, so those exact forms are answered without importing click
(about half of the process's start-up); everything else, and a ``base`` that has to build, goes through
the click CLI.
"""

from __future__ import annotations

import sys

_FAST_DETECT = (["detect"], ["detect", "--json"])
_FAST_BASE = (["base"], ["base", "--json"])


def _detect(as_json: bool) -> int:
    import os

    from layerenv.cli.render import detect_json, render_summary
    from layerenv.cli.session import Session
    from layerenv.errors import LayerenvError

    try:
        result = Session.open(os.environ).detection
    except LayerenvError as error:
        print(f"layerenv: error: {error.message}", file=sys.stderr)
        return error.exit_code
    if as_json:
        print(detect_json(result))
        return 0
    print(render_summary(result.machine, result.decision, result.outlook))
    for warning in result.decision.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


class _Warnings:
    """The fast path's reporter: a reused base has no steps to show, only warnings."""

    def step(self, text: str) -> None:
        pass

    def warn(self, text: str) -> None:
        print(f"warning: {text}", file=sys.stderr)


def _reuse_base(as_json: bool) -> int | None:
    """Answer ``layerenv base`` when a fitting base exists; ``None`` sends the call to the full CLI."""
    import os

    from layerenv.base.ensure import reuse_base
    from layerenv.cli.render import base_summary
    from layerenv.cli.session import Session
    from layerenv.errors import LayerenvError

    try:
        session = Session.open(os.environ)
        if session.settings.text("base.python"):
            return None  # interpreter discovery and everything else: the full CLI
        request = session.base_request()
        manifest = reuse_base(request, session.store, _Warnings())
    except LayerenvError:
        return None  # the full CLI reports it, with the same words
    if manifest is None:
        return None
    for warning in request.detection.decision.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(base_summary(manifest, "reused", as_json=as_json))
    return 0


def main() -> None:
    arguments = sys.argv[1:]
    if arguments in _FAST_DETECT:
        sys.exit(_detect(as_json=len(arguments) == 2))
    if arguments in _FAST_BASE:
        answered = _reuse_base(as_json=len(arguments) == 2)
        if answered is not None:
            sys.exit(answered)
    from layerenv.cli.main import main as click_main

    click_main()
