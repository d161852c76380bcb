"""Start-up files (``*.pth``, ``sitecustomize``, ``usercustomize``) that nobody accounts for, and
layerenv's own start-up files that are no longer what it wrote.

A start-up file runs in every interpreter of its environment, so one that no installed distribution's
``RECORD`` lists, that virtualenv did not write and that is not layerenv's is named by ``doctor``. It
is never removed by ``--fix``: an ``easy-install.pth`` of a ``setup.py develop`` or a file an admin
placed on purpose looks the same as a planted one, and only the user can tell. layerenv's own
``_layerenv.pth`` and ``_layerenv_boot.py`` are different: layerenv knows what they must say and
writing them again is what linking does, so a changed one is repaired by relinking.
"""

from __future__ import annotations

from pathlib import Path

from layerenv import __version__
from layerenv.project.boot import BOOT_NAME, PTH_NAME, Boot, fixed_boot, legacy_fixed_boot, per_node_boot
from layerenv.project.link import LinkRecord
from layerenv.venv.startup import (
    STARTUP_MODULES,
    is_startup_name,
    is_virtualenv_hook,
    startup_entries,
    unlisted_by_records,
)

UNACCOUNTED = "runs at every interpreter start; not installed by any package nor by layerenv"
FIX = ("remove it if you did not put it there, or reinstall the package that should own it (`--fix` leaves it "
       "alone: layerenv cannot tell a planted file from one placed on purpose)")


def is_shared_pip_pth(path: Path) -> bool:
    """Whether ``path`` is the ``_layerenv_pip.pth`` layerenv writes: one line naming the store's unpacked
    pip (``<store>/pip/pip-X-py3-none-any``), which only adds that folder to ``sys.path`` (no import line)."""
    from layerenv.project.shared_pip import PTH_NAME as PIP_PTH_NAME

    if path.name != PIP_PTH_NAME or path.is_symlink():
        return False
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return False
    if len(lines) != 1:
        return False
    named = Path(lines[0])
    return named.is_absolute() and named.parent.name == "pip" and named.name.startswith("pip-") and named.is_dir()


def foreign_startup_files(site: Path, ours: frozenset[str] = frozenset()) -> list[Path]:
    """Start-up files at the top of ``site`` that no RECORD lists, not virtualenv's hook, layerenv's shared
    pip, nor named in ``ours``."""
    candidates = [path for path in startup_entries(site)
                  if path.name not in ours and not is_virtualenv_hook(path) and not is_shared_pip_pth(path)]
    return unlisted_by_records(site, candidates) if candidates else []


def startup_in_base(site: Path, unlisted: tuple[str, ...]) -> list[Path]:
    """Of a base's unlisted files (``layerenv verify``'s), those that run at interpreter start."""
    found = []
    for text in unlisted:
        path = Path(text)
        try:
            parts = path.relative_to(site).parts
        except ValueError:
            continue
        # a .pth counts at the top only; sitecustomize may be a module, an extension or a package
        if parts and ((len(parts) == 1 and is_startup_name(parts[0])) or parts[0].split(".", 1)[0] in STARTUP_MODULES):
            found.append(path)
    return found


def expected_boot(record: LinkRecord) -> Boot:
    """The boot files :func:`layerenv.project.link.link` wrote for ``record``."""
    if record.per_node is None:
        return fixed_boot(record.base_id, record.base_site, record.family_modules)
    per_node = record.per_node
    return per_node_boot(record.base_id, record.family_modules, store=per_node.store, python_key=per_node.python_key,
                         base_python=per_node.base_python, layerenv=per_node.layerenv)


def changed_boot_files(site: Path, record: LinkRecord) -> list[Path]:
    """layerenv's start-up files in ``site`` that differ from what linking with ``record`` writes. The
    boot module's text is this layerenv's: a venv another version linked is compared by its ``.pth``. A
    fixed link in the earlier form (:func:`~layerenv.project.boot.legacy_fixed_boot`: the base in the
    module) is checked as that form, when its ``.pth`` is."""
    texts = {name: _text(site / name) for name in (PTH_NAME, BOOT_NAME)}
    boot = expected_boot(record)
    if record.per_node is None and texts[PTH_NAME] != boot.pth:
        legacy = legacy_fixed_boot(record.base_id, record.base_site, record.family_modules)
        boot = legacy if texts[PTH_NAME] == legacy.pth else boot
    files = [(PTH_NAME, boot.pth)]
    if record.layerenv_version == __version__:
        files.append((BOOT_NAME, boot.module))
    return [site / name for name, text in files if texts[name] != text]


def _text(path: Path) -> str | None:
    """A start-up file's text; None for a link, a missing or unreadable file."""
    try:
        return None if path.is_symlink() else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
