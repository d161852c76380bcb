"""The console-script entry point.

``layerenv detect`` and ``layerenv detect --json`` are what scripts and other tools call most, so those
two exact forms are answered without importing click (about half of the process's start-up);
everything else, including every other flag of detect, goes through the click CLI.
"""

from __future__ import annotations

import sys

_FAST = (["detect"], ["detect", "--json"])


def _detect(as_json: bool) -> int:
    from layerenv.config import load_settings
    from layerenv.errors import LayerenvError
    from layerenv.policy import detect
    from layerenv.render import detect_json, render_summary

    try:
        result = detect(load_settings())
    except LayerenvError as error:
        print(f"layerenv: error: {error.message}", file=sys.stderr)
        return error.exit_code
    if as_json:
        print(detect_json(result))
        return 0
    print(render_summary(result.machine, result.decision))
    for warning in result.decision.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def main() -> None:
    arguments = sys.argv[1:]
    if arguments in _FAST:
        sys.exit(_detect(as_json=len(arguments) == 2))
    from layerenv.cli import main as click_main

    click_main()
