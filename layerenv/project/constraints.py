"""The constraints that keep the base's torch family in a project venv: ``layerenv-constraints.txt``
pinning the family, named in the venv's pip config (``pip.conf``, ``pip.ini`` on Windows) so that every
``pip install`` in it reads them
(uv reads them through ``UV_CONSTRAINT``: the activation scripts and ``link.uv_environment``)."""

from __future__ import annotations

import configparser
import io
from collections.abc import Iterable
from pathlib import Path

from layerenv.project.run_env import CONSTRAINTS_FILE, constraint_reference
from layerenv.store.atomic import NOW, Writer
from layerenv.venv.distinfo import Distribution

__all__ = ["CONSTRAINTS_FILE", "write_constraints"]



def write_constraints(venv: Path, base_id: str, family: Iterable[Distribution], pip_config: Path, *,
                      durable: bool = True, writer: Writer = NOW) -> Path:
    """Pin ``family`` in ``<venv>/layerenv-constraints.txt`` and name that file in ``pip_config``."""
    constraints = venv / CONSTRAINTS_FILE
    pins = "".join(f"{d.name}=={d.version}\n" for d in family)
    writer.update_text(constraints, f"# layerenv: the torch family of base {base_id}; installs must keep it.\n{pins}",
                       durable=durable)
    _write_pip_conf(pip_config, constraints, durable=durable, writer=writer)
    return constraints


def _write_pip_conf(path: Path, constraints: Path, *, durable: bool, writer: Writer) -> None:
    """The venv's "site" pip config names our constraints; its other settings stay."""
    parser = configparser.ConfigParser(interpolation=None)
    if path.is_file():
        parser.read(path, encoding="utf-8")
    if not parser.has_section("global"):
        parser.add_section("global")
    current = parser.get("global", "constraint", fallback="").split()  # pip splits it on whitespace
    others = [item for item in current if Path(item).name != CONSTRAINTS_FILE]  # a path or a file: URL
    parser.set("global", "constraint", " ".join([constraint_reference(str(constraints)), *others]))
    text = io.StringIO()
    parser.write(text)
    writer.update_text(path, text.getvalue(), durable=durable)
