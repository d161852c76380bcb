"""A poetry application plugin: in a layerenv project venv, poetry treats the torch family as
provided by the base.

Poetry loads it from the ``poetry.application.plugin`` entry point of the layerenv distribution,
so installing layerenv into poetry's own environment (``poetry self add layerenv``, ``pipx inject
poetry layerenv``) is all it takes. It listens for cleo's ``console.command`` event, after poetry
has given the command its environment and installer, and acts only when that environment is a
layerenv project venv (it has ``layerenv.json``):

- install-type commands (``install``, ``sync``, ``add``, ``update``, ``remove``): the executor's
  ``execute`` is wrapped (:class:`layerenv.integrations.poetry_guard.Guard`), so the operations are
  planned (:func:`layerenv.integrations.poetry_plan.plan_operations`) before any of them runs:
  those on the torch family and on what only the family needs are marked skipped, and a
  requirement the base cannot meet stops the command (exit 1, one line) before anything is
  downloaded. What poetry resolves and writes to ``poetry.lock`` is untouched;
- ``run``: the command sees ``UV_CONSTRAINT`` and ``PIP_CONSTRAINT`` as under ``layerenv run``.

Nothing here runs for ``poetry self ...`` or in a venv layerenv did not make.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING

from cleo.events.console_command_event import ConsoleCommandEvent
from cleo.events.console_events import COMMAND
from poetry.plugins.application_plugin import ApplicationPlugin

if TYPE_CHECKING:
    from cleo.events.event import Event
    from cleo.events.event_dispatcher import EventDispatcher
    from poetry.console.application import Application

# Poetry loads this module for every command it runs: layerenv's own modules load only in a layered venv.
RECORD_FILE = "layerenv.json"  # layerenv.project.link.RECORD_FILE
CONSTRAINTS_FILE = "layerenv-constraints.txt"  # layerenv.project.constraints.CONSTRAINTS_FILE

__all__ = ["LayerenvPoetryPlugin"]


def _constraint_reference(path: Path) -> str:
    """As ``layerenv.project.run_env.constraint_reference``: a ``file:`` URL when whitespace would split it."""
    return path.absolute().as_uri() if any(character.isspace() for character in str(path)) else str(path)


def _layered_venv(path: Path) -> bool:
    return (path / RECORD_FILE).is_file()


class LayerenvPoetryPlugin(ApplicationPlugin):
    """``[project.entry-points."poetry.application.plugin"] layerenv = ...:LayerenvPoetryPlugin``."""

    def activate(self, application: Application) -> None:
        dispatcher = application.event_dispatcher
        if dispatcher is not None:
            # Added after poetry's own listeners at the same priority: the env and installer are set.
            dispatcher.add_listener(COMMAND, self.on_command)

    def on_command(self, event: Event, event_name: str, dispatcher: EventDispatcher) -> None:
        from poetry.console.commands.env_command import EnvCommand
        from poetry.console.commands.installer_command import InstallerCommand
        from poetry.console.commands.run import RunCommand
        from poetry.console.commands.self.self_command import SelfCommand

        if not isinstance(event, ConsoleCommandEvent):
            return
        command = event.command
        if not isinstance(command, EnvCommand) or isinstance(command, SelfCommand):
            return
        venv = Path(command.env.path)
        if not _layered_venv(venv):
            return
        if isinstance(command, RunCommand):
            _constrain(venv, os.environ)
        if isinstance(command, InstallerCommand):
            from layerenv.integrations.poetry_guard import Guard, locked_packages

            executor = command.installer.executor
            guard = Guard(executor.execute, event.io, venv, lambda: list(command.poetry.package.all_requires),
                           lambda: locked_packages(command.poetry.locker), command.env.marker_env)
            setattr(executor, "execute", guard)  # noqa: B010 - an instance attribute over the method


def _constrain(venv: Path, environ: MutableMapping[str, str]) -> None:
    """What ``layerenv run`` sets: pip and uv keep the base's torch family."""
    ours = _constraint_reference(venv / CONSTRAINTS_FILE)
    for name in ("UV_CONSTRAINT", "PIP_CONSTRAINT"):
        others = [item for item in environ.get(name, "").split() if item != ours]
        environ[name] = " ".join([ours, *others])
