"""Empty venvs kept in the store as templates ("shapes") for bases that virtualenv did not make.

A project venv is made by copying a template venv's shape (:func:`layerenv.venv.create.clone_shape`): a few
small writes instead of starting virtualenv. A base layerenv built is its own template (``uv venv`` or
virtualenv made it with the base prompt); an adopted one (made by uv, ``python -m venv``, conda) is not, so an
empty venv that virtualenv makes for the base's interpreter with the base prompt is kept in ``shapes/<key>/``
and copied instead. The key names the
interpreter (real path, version) and the virtualenv that made the template, so a copy is what this
virtualenv would write; gc keeps a shape while a base of the store runs on its interpreter.

A shape is made in ``staging/shape-<key>.<pid>.<nonce>/`` under the lock ``shape-<key>``, its paths rewritten
for its place, flushed, then renamed into place: a crash leaves a staging leftover (gc and the next
maker remove it), never a half template under ``shapes/``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from pathlib import Path

from layerenv.faults import checkpoint
from layerenv.machine.interpreters import Interpreter
from layerenv.store.atomic import flush, remove_tree
from layerenv.store.home import Store
from layerenv.store.trust import refusal

_VERSION = re.compile(r"""^__version__\s*=\s*(?:version\s*=\s*)?['"]([0-9A-Za-z.+_-]+)['"]""", re.MULTILINE)


def interpreter_key(interpreter: Interpreter) -> str:
    """``cp312-<digest>``: one interpreter, by its real path and version (what gc matches bases by)."""
    facts = "\0".join((os.path.realpath(interpreter.executable), interpreter.implementation,
                       interpreter.version_text, interpreter.platform))
    return f"{interpreter.tag}-{hashlib.sha256(os.fsencode(facts)).hexdigest()[:16]}"


def shape_key(interpreter: Interpreter) -> str | None:
    """``<interpreter key>.virtualenv-<version>``; None where virtualenv or its version cannot be found."""
    version = _virtualenv_version()
    return None if version is None else f"{interpreter_key(interpreter)}.virtualenv-{version}"


def interpreter_key_of(name: str) -> str:
    """The interpreter key a shape folder's name starts with."""
    return name.partition(".")[0]


def template_for(store: Store, interpreter: Interpreter) -> Path | None:
    """The published shape for ``interpreter``, or None; refuses (one line) a shape others could change,
    as everything a shape holds is copied into every project venv made from it."""
    key = shape_key(interpreter)
    if key is None:
        return None
    shape = store.shapes / key
    if not (shape / "pyvenv.cfg").is_file():
        return None
    if store.trust is not None:  # a shape is a few dozen entries, all copied: each is checked, not only its folder
        for path in (store.shapes, shape, *sorted(shape.rglob("*"))):
            found = store.trust_problem(path)
            if found is not None:
                raise refusal(path, found)
    return shape


def ensure_shape(store: Store, interpreter: Interpreter) -> Path | None:
    """The shape for ``interpreter``, made first if there is none (under its lock: one maker at a time);
    None where no shape can be made (no virtualenv version to key it by, Windows)."""
    key = shape_key(interpreter)
    if key is None or os.name == "nt":
        return None
    found = template_for(store, interpreter)
    if found is not None:
        return found
    with store.lock(f"shape-{key}", purpose=f"making the venv shape for {interpreter.executable}"):
        found = template_for(store, interpreter)
        if found is not None:
            return found
        for leftover in store.orphaned_staging(f"shape-{key}"):
            remove_tree(leftover)
        return _make(store, interpreter, key)


def _make(store: Store, interpreter: Interpreter, key: str) -> Path:
    from layerenv.venv.create import BASE_PROMPT, create_virtualenv
    from layerenv.venv.relocate import relocate_venv

    shape = store.shapes / key
    staging = store.new_staging_dir(f"shape-{key}")
    try:
        create_virtualenv(staging, interpreter.executable, prompt=BASE_PROMPT, seed_pip=False)
        relocate_venv(staging, staging, shape)
        checkpoint("shape:before-flush")
        flush([*(path for path in staging.rglob("*") if not path.is_symlink()), staging])
        checkpoint("shape:before-publish")
        shape.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(shape)
        flush([shape.parent])
    finally:
        remove_tree(staging)
    return shape


def _virtualenv_version() -> str | None:
    """virtualenv's version, read from its ``version.py`` (importing virtualenv costs 0.2 s)."""
    spec = importlib.util.find_spec("virtualenv")
    if spec is None or not spec.submodule_search_locations:
        return None
    try:
        text = (Path(next(iter(spec.submodule_search_locations))) / "version.py").read_text(encoding="utf-8")
    except OSError:
        text = ""
    found = _VERSION.search(text)
    if found is not None and ".." not in found[1]:
        return found[1]
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = version("virtualenv")
    except PackageNotFoundError:
        return None
    return text if re.fullmatch(r"[0-9A-Za-z.+_-]+", text) and ".." not in text else None
