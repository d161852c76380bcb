"""The console-script entry point.

``layerenv run CMD ...`` goes in front of every script, test run and notebook server, so it is answered
first and with the least: no click, no packaging, no store, not even pathlib; it finds the nearest project
venv, sets the variables and ``exec``s the command. A link record it cannot read plainly goes to the
click CLI, which names what is wrong.
``layerenv detect [--json]`` and ``layerenv base [--json]`` on a machine whose base exists are what
scripts, containers and shells call most, so those exact forms are answered without importing click
(about half of the process's start-up); so is the plain ``layerenv project [PATH]`` (no options), the
command users wait on when they make a project, and the plain ``layerenv base [--json]`` that has to
build (it goes on in the session its reuse attempt opened). Everything else goes through the click CLI.
Both end through the one exit boundary, :mod:`layerenv.cli.exit`.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a third of `layerenv run`'s start-up)
if TYPE_CHECKING:
    from layerenv.base.request import BaseRequest
    from layerenv.cli.exit import Invocation
    from layerenv.store.home import Store

_FORMS = {("detect",): "detect", ("detect", "--json"): "detect-json", ("base",): "base",
          ("base", "--json"): "base-json"}


def _detect(invocation: Invocation, as_json: bool) -> tuple[str, str] | None:
    """Print this machine's reading and choice; returns (stdout, stderr) when the answer may be remembered."""
    import os

    from layerenv.cli.render import detect_json, render_summary
    from layerenv.cli.session import Session, rememberable

    invocation.session = Session.open(os.environ)
    result = invocation.session.detection
    stdout = detect_json(result) if as_json else render_summary(result.machine, result.decision, result.outlook)
    stderr = "" if as_json else "".join(f"warning: {warning}\n" for warning in result.decision.warnings)
    print(stdout)
    sys.stderr.write(stderr)
    return (stdout + "\n", stderr) if rememberable(invocation.session) else None


class _Build:
    """What ``layerenv base`` goes on with where no base fits: the reuse attempt's request and store."""

    def __init__(self, request: BaseRequest, store: Store) -> None:
        self.request = request
        self.store = store


class _Warnings:
    """The fast path's reporter: a reused base has no steps to show, only warnings (kept to be remembered)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def step(self, text: str) -> None:
        pass

    def warn(self, text: str) -> None:
        self.lines.append(f"warning: {text}\n")


def _reuse_base(
    invocation: Invocation, as_json: bool
) -> tuple[str, str, list[tuple[str, bool]]] | _Build | None:
    """Answer ``layerenv base`` when a fitting base exists: (stdout, stderr, the paths the answer rests
    on, each with whether it is followed); the request to build when none fits; None sends the call to the
    full CLI."""
    import os

    from layerenv.base.current import paths_read
    from layerenv.base.ensure import reuse_base
    from layerenv.cli.render import base_summary
    from layerenv.cli.session import Session
    from layerenv.errors import LayerenvError
    from layerenv.store.nodes import record_paths

    reporter = _Warnings()
    try:
        invocation.session = session = Session.open(os.environ)
        if session.settings.text("base.python"):
            return None  # interpreter discovery and everything else: the full CLI
        request = session.base_request()
        manifest = reuse_base(request, session.store, reporter)
        if manifest is None:
            return _Build(request, session.store)
        read = paths_read(session.store, request, manifest)
    except LayerenvError:
        return None  # the full CLI reports it, with the same words
    stderr = "".join(f"warning: {warning}\n" for warning in request.detection.decision.warnings)
    stderr += "".join(reporter.lines)
    stdout = base_summary(manifest, "reused", as_json=as_json)
    print(stdout)
    sys.stderr.write(stderr)
    store = session.store
    read += [(str(path), False) for path in record_paths(store.home, store.node, request.interpreter)]
    return stdout + "\n", stderr, read


def _build_base(invocation: Invocation, build: _Build, as_json: bool) -> None:
    """``layerenv base`` where no base fits: built (or reused, if another process built it meanwhile) as
    the click command does (:mod:`layerenv.cli.make_base`), in the session the reuse attempt opened."""
    from layerenv.cli.make_base import build_or_reuse
    from layerenv.cli.ui import Console

    console = Console(invocation.verbosity)
    for warning in build.request.detection.decision.warnings:
        console.warn(warning)
    build_or_reuse(console, build.request, build.store, as_json=as_json)


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
    except Exception as error:  # layerenv.errors is imported only when it is needed: after a failure
        from layerenv.errors import LayerenvError

        if not isinstance(error, LayerenvError):
            raise
        from layerenv.cli.exit import Invocation, exit_code_for

        sys.exit(exit_code_for(error, Invocation()))


def _project_path(arguments: list[str]) -> str | None:
    """The PATH of the plain ``layerenv project [PATH]``; None for a form with options (the click CLI's)."""
    if not arguments or arguments[0] != "project" or len(arguments) > 2:
        return None
    if len(arguments) == 1:
        return "."
    return None if arguments[1].startswith("-") else arguments[1]


def _project(path: str) -> None:
    """``layerenv project [PATH]`` as the click command runs it (:mod:`layerenv.cli.make_project`), without
    importing click."""
    from layerenv.cli.exit import Invocation, exit_boundary
    from layerenv.cli.make_project import ProjectFlags, make_project

    invocation = Invocation()
    with exit_boundary(invocation):
        make_project(invocation, path, ProjectFlags())
    sys.exit(0)


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
    form = _FORMS.get(tuple(arguments))
    if form is not None:
        _answer(form)
    project_path = _project_path(arguments)
    if project_path is not None:
        _project(project_path)
    from layerenv.cli.main import main as click_main

    click_main()


def _answer(form: str) -> None:
    """Answer ``detect [--json]`` or a reused ``base [--json]``: remembered, else worked out (and kept);
    returns only when the full CLI must answer."""
    import os

    from layerenv.cli import answers

    try:
        cwd = os.getcwd()
    except FileNotFoundError:
        return  # the full CLI says the working directory is gone
    started = answers.clock()
    remembered = answers.recall(form, os.environ, cwd)
    if remembered is not None:
        try:
            sys.stdout.write(remembered[0])
            sys.stdout.flush()  # here, not at exit: a reader that went away ends the run quietly
        except BrokenPipeError as error:
            from layerenv.cli.exit import Invocation, exit_code_for

            sys.exit(exit_code_for(error, Invocation()))
        sys.stderr.write(remembered[1])
        sys.exit(0)
    from layerenv.cli.exit import Invocation, exit_boundary

    invocation = Invocation()
    as_json = form.endswith("-json")
    given: tuple[str, str] | None = None
    reused: tuple[str, str, list[tuple[str, bool]]] | None = None
    with exit_boundary(invocation):  # its end flushes stdout: the run must not leave it before that
        if form.startswith("detect"):
            given = _detect(invocation, as_json=as_json)
        else:
            outcome = _reuse_base(invocation, as_json=as_json)
            if outcome is None:
                return
            if isinstance(outcome, _Build):
                _build_base(invocation, outcome, as_json=as_json)
            else:
                reused = outcome
    if given is not None:
        answers.remember(form, os.environ, cwd, *given, started)
    session = invocation.session
    from layerenv.cli.session import store_from_environment

    if reused is not None and session is not None and store_from_environment(session):
        stdout, stderr, rests_on = reused
        answers.remember(form, os.environ, cwd, stdout, stderr, started, rests_on)
    sys.exit(0)
