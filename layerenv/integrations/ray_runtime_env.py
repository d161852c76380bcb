"""A Ray runtime_env plugin: every worker runs in a layerenv project's venv, on its own node's base.

Enable it where each node's Ray starts (the plugin runs in every node's runtime-env agent, which
inherits the environment of ``ray start``), with layerenv installed in Ray's Python::

    export RAY_RUNTIME_ENV_PLUGINS='[{"class": "layerenv.ray_plugin.LayerenvPlugin"}]'
    ray start --head ...            # and on every other node: ray start --address ...

then, in the driver::

    ray.init(runtime_env={"layerenv": {"project": "/shared/projects/app"}})

On the first worker start of a node, the plugin detects the node, builds or reuses its base under the
store's lock and records the node's answer; if the project has no per-node venv yet, the first node
to get there creates it (once, under a lock), installing the project's dependencies, which must
include ``ray`` at the cluster's version. Workers then start with the project's Python, whose boot
module loads the node's base. The store (``LAYERENV_HOME``) and the project must be on storage every
node sees at the same path.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray._private.runtime_env.plugin import RuntimeEnvPlugin

NAME = "layerenv"
_KEYS = frozenset({"project", "python"})


@dataclass(frozen=True)
class Prepared:
    python: Path  # the project venv's interpreter
    node: str
    home: Path | None


def check_config(config: object) -> tuple[Path, str | None]:
    """The project path and optional interpreter spec, or ValueError naming what is wrong."""
    if not isinstance(config, dict):
        raise ValueError(f'runtime_env["layerenv"] must be a dict like {{"project": "/path"}}, got {config!r}')
    unknown = sorted(set(config) - _KEYS)
    if unknown:
        raise ValueError(f'runtime_env["layerenv"]: unknown key(s) {", ".join(unknown)}; allowed: project, python')
    project, python = config.get("project"), config.get("python")
    if not isinstance(project, str) or not Path(project).is_absolute():
        raise ValueError(f'runtime_env["layerenv"]["project"] must be an absolute path, got {project!r}')
    if python is not None and not isinstance(python, str):
        raise ValueError(f'runtime_env["layerenv"]["python"] must be a string such as "3.11", got {python!r}')
    return Path(project), python


class _LogReporter:
    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def step(self, text: str) -> None:
        self.logger.info("layerenv: %s", text)

    def warn(self, text: str) -> None:
        self.logger.warning("layerenv: %s", text)


def prepare(project: Path, python_spec: str | None, logger: logging.Logger) -> Prepared:
    """Ready this node: its base (built once per variant across the store) and the per-node project."""
    from layerenv.base.ensure import ensure_base
    from layerenv.cli.session import Session
    from layerenv.errors import LayerenvError
    from layerenv.project.create import ProjectRequest, check_project_dir, ensure_project, python_spec_for
    from layerenv.project.link import is_per_node
    from layerenv.venv.layout import VenvLayout

    reporter = _LogReporter(logger)
    try:
        project = check_project_dir(project)
        session = Session.open(os.environ, project_dir=project)
        store = session.store
        request = session.base_request(session.interpreter(python_spec_for(project, python_spec, session.settings)))
        ensure_base(request, store, reporter)
        venv = project / ".venv"
        if not is_per_node(venv):
            digest = hashlib.sha256(os.fsencode(str(project))).hexdigest()[:16]
            with store.lock(f"project-{digest}", purpose=f"creating {venv} for Ray"):
                if not is_per_node(venv):
                    reporter.step(f"creating the per-node venv {venv}")
                    ensure_project(ProjectRequest.from_settings(project, session.settings, request, per_node=True),
                                   store, reporter)
    except LayerenvError as error:
        raise RuntimeError(f"layerenv: {error.message}") from None
    _check_ray(venv, project)
    return Prepared(VenvLayout.for_venv(venv).python, store.node, store.home)


def _check_ray(venv: Path, project: Path) -> None:
    """Workers import ray from the project's venv: it must be there, at the cluster's version.

    Read from the venv's metadata in this process: starting its Python would cost ~0.1 s a job.
    """
    from importlib.metadata import distributions

    import ray

    from layerenv.venv.layout import VenvLayout

    site = str(VenvLayout.for_venv(venv).site_packages)
    have = next((dist.version for dist in distributions(path=[site]) if dist.metadata["Name"] == "ray"), None)
    if have != ray.__version__:
        state = f"has ray {have}" if have else "has no ray"
        raise RuntimeError(
            f"layerenv: {project}/.venv {state}, but this cluster runs ray {ray.__version__}; add "
            f"'ray=={ray.__version__}' to the project's requirements and run `layerenv project --per-node {project}`"
        )


class LayerenvPlugin(RuntimeEnvPlugin):  # type: ignore[misc,unused-ignore]  # Any where ray is absent
    """``runtime_env={"layerenv": {"project": PATH}}``: see the module docstring."""

    name = NAME
    priority = 90  # after Ray's own plugins (pip, conda, ...)

    def __init__(self) -> None:
        self._prepared: dict[tuple[str, str | None], Prepared] = {}

    @staticmethod
    def validate(runtime_env_dict: dict[str, Any]) -> None:
        check_config(runtime_env_dict.get(NAME))

    def get_uris(self, runtime_env: Any) -> list[str]:
        return []

    async def create(self, uri: str | None, runtime_env: Any, context: Any, logger: logging.Logger) -> float:
        project, python = check_config(runtime_env[NAME])
        prepared = await asyncio.to_thread(prepare, project, python, logger)
        self._prepared[(str(project), python)] = prepared
        return 0.0

    def modify_context(self, uris: list[str], runtime_env: Any, context: Any, logger: logging.Logger) -> None:
        project, python = check_config(runtime_env[NAME])
        prepared = self._prepared.get((str(project), python))
        if prepared is None:  # the agent restarted since create: what create found is on disk
            from layerenv.store.identity import node_name

            home = os.environ.get("LAYERENV_HOME")
            from layerenv.venv.layout import VenvLayout

            prepared = Prepared(VenvLayout.for_venv(project / ".venv").python, node_name(os.environ),
                                Path(home) if home else None)
        context.py_executable = str(prepared.python)
        context.env_vars["LAYERENV_NODE"] = prepared.node
        if prepared.home is not None:
            context.env_vars["LAYERENV_HOME"] = str(prepared.home)
        logger.info("layerenv: workers run %s on node %s", prepared.python, prepared.node)
