"""The console-script entry point.

``layerenv run CMD ...`` goes in front of every script, test run and notebook server, so it is answered
first and with the least: no click, no packaging, no store, not even pathlib; it finds the nearest project
venv, sets the variables and ``exec``s the command. A link record it cannot read plainly goes to the
click CLI, which names what is wrong.
``layerenv detect [--json]`` and ``layerenv base [--json]`` on a machine whose base exists are what
scripts, containers and shells call most, so those exact forms are answered without importing click
(about half of the process's start-up); everything else, and a ``base`` that has to build, goes through
the click CLI. Both end through the one exit boundary, :mod:`layerenv.cli.exit`.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a third of `layerenv run`'s start-up)
if TYPE_CHECKING:
    from layerenv.cli.exit import Invocation

_FAST_DETECT = (["detect"], ["detect", "--json"])
_FAST_BASE = (["base"], ["base", "--json"])


def _detect(invocation: Invocation, as_json: bool) -> None:
    import os

    from layerenv.cli.render import detect_json, render_summary
    from layerenv.cli.session import Session

    invocation.session = Session.open(os.environ)
    result = invocation.session.detection
    if as_json:
        print(detect_json(result))
        return
    print(render_summary(result.machine, result.decision, result.outlook))
    for warning in result.decision.warnings:
        print(f"warning: {warning}", file=sys.stderr)


class _Warnings:
    """The fast path's reporter: a reused base has no steps to show, only warnings."""

    def step(self, text: str) -> None:
        pass

    def warn(self, text: str) -> None:
        print(f"warning: {text}", file=sys.stderr)


def _reuse_base(invocation: Invocation, as_json: bool) -> bool:
    """Answer ``layerenv base`` when a fitting base exists; False sends the call to the full CLI."""
    import os

    from layerenv.base.ensure import reuse_base
    from layerenv.cli.render import base_summary
    from layerenv.cli.session import Session
    from layerenv.errors import LayerenvError

    try:
        invocation.session = session = Session.open(os.environ)
        if session.settings.text("base.python"):
            return False  # interpreter discovery and everything else: the full CLI
        request = session.base_request()
        manifest = reuse_base(request, session.store, _Warnings())
    except LayerenvError:
        return False  # the full CLI reports it, with the same words
    if manifest is None:
        return False
    for warning in request.detection.decision.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(base_summary(manifest, "reused", as_json=as_json))
    return True


def _run_argv(arguments: list[str]) -> list[str] | None:
    """The command of ``layerenv run [--] CMD ...``; None for a form the click CLI answers (help, options)."""
    if len(arguments) < 2 or arguments[0] != "run":
        return None
    if arguments[1] == "--":
        return arguments[2:] or None
    return None if arguments[1].startswith("-") else arguments[1:]


def _run(argv: list[str]) -> None:
    """``exec`` ``argv`` in the nearest project venv; returns only when the full CLI should say why not."""
    import os

    from layerenv.errors import LayerenvError
    from layerenv.project.run_env import (
        base_plainly_trusted,
        exec_command,
        find_project_venv,
        plainly_linked,
        run_environment,
    )

    try:
        venv = find_project_venv(os.getcwd())
        if not plainly_linked(venv) or not base_plainly_trusted(venv):
            return
        exec_command(argv, run_environment(venv, os.environ))
    except FileNotFoundError:  # the working directory is gone: the full CLI reports it
        return
    except LayerenvError as error:
        from layerenv.cli.exit import Invocation, exit_code_for

        sys.exit(exit_code_for(error, Invocation()))


def _skip_last_collections() -> None:
    """Freeze every object at exit: the interpreter's last garbage collections would walk all that the
    command loaded (70-130 ms after a base build on a busy 2-core machine, 25-45 ms after the imports
    alone) only to free memory the process hands back anyway. The console script's process only: a
    library caller's interpreter is left alone."""
    import atexit
    import gc

    atexit.register(gc.freeze)


def main() -> None:
    arguments = sys.argv[1:]
    run_argv = _run_argv(arguments)
    if run_argv is not None:
        _run(run_argv)
    _skip_last_collections()
    if arguments in _FAST_DETECT or arguments in _FAST_BASE:
        from layerenv.cli.exit import Invocation, exit_boundary

        invocation = Invocation()
        with exit_boundary(invocation):
            if arguments in _FAST_DETECT:
                _detect(invocation, as_json=len(arguments) == 2)
                answered = True
            else:
                answered = _reuse_base(invocation, as_json=len(arguments) == 2)
        if answered:
            sys.exit(0)
    from layerenv.cli.main import main as click_main

    click_main()
