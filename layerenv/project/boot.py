"""The boot module of a layered venv: ``_layerenv_boot.py``, whose ``sys.meta_path`` finder answers
the torch family's top-level names from the base only, and ``_layerenv.pth``, which puts the base's
site-packages after the project's own and imports it at start-up (a fixed link's ``.pth`` also hands it
the base and the family's names; a per-node module finds its base itself).
"""

from __future__ import annotations

import py_compile
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from layerenv.faults import checkpoint
from layerenv.store.atomic import NOW, Writer
from layerenv.venv.distinfo import pyvenv_cfg

__all__ = ["BOOT_NAME", "PTH_NAME", "Boot", "fixed_boot", "legacy_fixed_boot", "per_node_boot", "python_series",
           "write_boot"]

PTH_NAME = "_layerenv.pth"  # neutral: a torch-like name makes poetry take torch for an editable install
BOOT_NAME = "_layerenv_boot.py"

_INSTALL_FINDER = '''
if _SITE is not None:
    if _SITE not in sys.path:
        sys.path.append(_SITE)
    # The interpreter's own PathFinder is on sys.meta_path already; importing importlib costs ~1 ms.
    _FINDER = next((f for f in sys.meta_path if getattr(f, "__name__", "") == "PathFinder"), None)
    if _FINDER is None:
        from importlib.machinery import PathFinder as _FINDER

    class LayerenvFamilyFinder:
        @staticmethod
        def find_spec(name, path=None, target=None):
            return _FINDER.find_spec(name, [_SITE]) if name in _NAMES else None

    if LayerenvFamilyFinder.__qualname__ not in {{getattr(f, "__qualname__", "") for f in sys.meta_path}}:
        sys.meta_path.insert(0, LayerenvFamilyFinder)
'''

# The fixed boot names no base: its ``.pth`` line passes the base's site-packages and the family's names,
# so moving a project to another base rewrites the ``.pth`` alone, and the module and its .pyc stay.
_BOOT = '''"""Written by layerenv: the torch family loads from the base that _layerenv.pth names. Do not edit."""
import sys

_SITE = None
_NAMES = frozenset()
_FINDER = None


class LayerenvFamilyFinder:
    @staticmethod
    def find_spec(name, path=None, target=None):
        return _FINDER.find_spec(name, [_SITE]) if name in _NAMES else None


def layer(site, names):
    """Called by _layerenv.pth: the family's top-level ``names`` load from ``site`` only."""
    global _SITE, _NAMES, _FINDER
    _SITE, _NAMES = site, frozenset(names)
    if site not in sys.path:
        sys.path.append(site)
    # The interpreter's own PathFinder is on sys.meta_path already; importing importlib costs ~1 ms.
    _FINDER = next((f for f in sys.meta_path if getattr(f, "__name__", "") == "PathFinder"), None)
    if _FINDER is None:
        from importlib.machinery import PathFinder as _FINDER
    if LayerenvFamilyFinder.__qualname__ not in {getattr(f, "__qualname__", "") for f in sys.meta_path}:
        sys.meta_path.insert(0, LayerenvFamilyFinder)
'''

# The .pth line calls ``layer`` only where the module has it: a link is interrupted between the two files
# with the new .pth beside the old module (an earlier layerenv's fixed boot, or a per-node one), which
# answers from the old base on its own (see :func:`write_boot`'s order).
_LAYER_LINE = "import _layerenv_boot; hasattr(_layerenv_boot, 'layer') and _layerenv_boot.layer({site!r}, {names!r})"

# what :func:`fixed_boot` wrote before the base moved into the .pth line: still a working venv, moved to the
# new form by its next link (doctor accepts the pair)
_LEGACY_BOOT = '''"""Written by layerenv for base {base_id}: the torch family loads from the base. Do not edit."""
import sys

_SITE = {site!r}
_NAMES = frozenset({names!r})
''' + _INSTALL_FINDER

_BOOT_PER_NODE = '''"""Written by layerenv (per-node project, primary base {base_id}): the torch family loads from the
base that `layerenv base` recorded for this node in {store}/nodes. Do not edit."""
import os
import sys

_STORE = {store!r}
_PYTHON_KEY = {python_key!r}
_BASE_PYTHON = {base_python!r}
_LAYERENV = {layerenv!r}
_NAMES = frozenset({names!r})


def _read(path):
    try:  # never through a link, never waiting on a FIFO
        handle = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        with open(handle, encoding="utf-8") as file:
            return file.read()
    except (OSError, UnicodeDecodeError):
        return ""


def _team():
    group = os.environ.get("LAYERENV_TRUSTED_GROUP", "").strip()
    if not group or group.isdigit():
        return (int(group),) if group else ()
    try:
        import grp

        return (grp.getgrnam(group).gr_gid,)
    except (ImportError, KeyError):
        return ()


def _untrusted(path, team):
    # layerenv.store.trust's rule: the caller's, root's or the trusted group's, written by no one else
    try:
        info = os.lstat(path)
    except OSError:
        return path + " cannot be read"
    grouped = info.st_gid in team
    if (info.st_uid not in (os.getuid(), 0) and not grouped) or info.st_mode & 0o002 or (
            info.st_mode & 0o020 and not grouped) or info.st_mode & 0o170000 == 0o120000:
        return path + " (owner uid %d, mode %04o) is not trusted" % (info.st_uid, info.st_mode & 0o7777)
    return None


def _safe(name):
    return name[:1].isalnum() and all(c.isalnum() or c in "._+-" for c in name) and ".." not in name and len(name) < 200


def _host():
    # layerenv.store.identity.host_name is platform.node(), which is uname's nodename where os has
    # uname; importing platform here would cost every start-up ~2 ms, so only Windows pays it.
    uname = getattr(os, "uname", None)
    if uname is not None:
        return uname().nodename
    import platform

    return platform.node()


def _node():
    name = os.environ.get("LAYERENV_NODE")
    if name:
        return name if _safe(name) else ".invalid"
    host = _host().split(".")[0] or "localhost"
    return host if _safe(host) else "host-" + host.encode().hex()[:32]


def _site():
    """(the recorded site-packages, None) when this boot's answer is usable; (None, why) when it is
    recorded but others could have changed it or it names no base of this store; (None, None) else."""
    record = _STORE + "/nodes/" + _node() + "/" + _PYTHON_KEY + ".txt"
    fields = dict(line.split("=", 1) for line in _read(record).splitlines() if "=" in line)
    boot = _read("/proc/sys/kernel/random/boot_id").strip()
    site, base = fields.get("site", ""), fields.get("base", "")
    if not (site and fields.get("boot", "") == boot and os.path.isdir(site)):
        return None, None
    base_dir = _STORE + "/bases/" + base
    # the node may see the store through another mount: the base it names must be this store's base
    head, inside, _ = os.path.normpath(site).partition("/bases/" + base + "/")
    try:
        same = _safe(base) and inside and os.path.samestat(os.stat(head + "/bases/" + base), os.stat(base_dir))
    except OSError:
        same = False
    if not same:
        return None, record + " names " + site + ", which is no base of this store"
    if not hasattr(os, "getuid"):
        return site, None
    team = _team()
    for path in (os.path.dirname(record), record, base_dir, site):
        why = _untrusted(path, team)
        if why is not None:
            return None, why
    return site, None


_SITE, _REFUSED = _site()
if _SITE is None and _REFUSED is None and not os.environ.get("LAYERENV_RESOLVING"):
    import subprocess

    sys.stderr.write("layerenv: no base recorded for node " + _node() + " in this boot; asking `layerenv base`\\n")
    _ENV = dict(os.environ, LAYERENV_HOME=_STORE, LAYERENV_RESOLVING="1")
    try:
        subprocess.run([*_LAYERENV, "base", "--python", _BASE_PYTHON, "--quiet"], env=_ENV, cwd=_STORE,
                       stdin=subprocess.DEVNULL, stdout=2, check=False)
    except OSError as error:
        sys.stderr.write("layerenv: could not run layerenv (" + str(error) + ")\\n")
    _SITE, _REFUSED = _site()
if _REFUSED is not None:
    sys.stderr.write("layerenv: not loading the base recorded for node " + _node() + ": " + _REFUSED
                     + "; `layerenv status` says more (torch will not import until it is fixed)\\n")
elif _SITE is None:
    sys.stderr.write("layerenv: node " + _node() + " has no base for " + _PYTHON_KEY + " in " + _STORE
                     + "; run `layerenv base` on it (torch will not import until then)\\n")
''' + _INSTALL_FINDER


@dataclass(frozen=True)
class Boot:
    """The two start-up files of a layered venv, as text."""

    module: str  # _layerenv_boot.py
    pth: str  # _layerenv.pth
    pth_first: bool = False  # the .pth names the base (written first); else the module does (written first)


def fixed_boot(base_id: str, base_site: Path, modules: Sequence[str]) -> Boot:
    """The family always loads from ``base_site``: named in the ``.pth``, so the module is the same for every base."""
    del base_id  # the record names it; the start-up files need not
    line = _LAYER_LINE.format(site=str(base_site), names=tuple(modules))
    return Boot(_BOOT, f"{base_site}\n{line}\n", pth_first=True)


def legacy_fixed_boot(base_id: str, base_site: Path, modules: Sequence[str]) -> Boot:
    """What :func:`fixed_boot` wrote before (the base in the module): such a venv works as it is, and its next
    link writes :func:`fixed_boot`'s form."""
    module = _LEGACY_BOOT.format(base_id=base_id, site=str(base_site), names=tuple(modules))
    return Boot(module, f"{base_site}\nimport _layerenv_boot\n")


def per_node_boot(base_id: str, modules: Sequence[str], *, store: Path, python_key: str, base_python: str,
                  layerenv: Sequence[str]) -> Boot:
    """The family loads from the base ``store`` records for the node the interpreter starts on."""
    module = _BOOT_PER_NODE.format(base_id=base_id, store=str(store), python_key=python_key,
                                   base_python=base_python, layerenv=list(layerenv), names=tuple(modules))
    return Boot(module, "import _layerenv_boot\n")


def write_boot(venv: Path, site: Path, boot: Boot, *, durable: bool = True, writer: Writer = NOW) -> None:
    """Each file replaced atomically, in the order that leaves an interrupted write a venv that starts with
    the old boot or the new one: a per-node module before its ``.pth`` (the new module beside the old
    ``.pth`` answers alone); a fixed boot's ``.pth`` before its module (the new ``.pth`` beside an old module
    without ``layer``, an earlier layerenv's or a per-node one, leaves that module to answer alone)."""
    if boot.pth_first:
        writer.update_text(site / PTH_NAME, boot.pth, durable=durable)
        writer.then(partial(checkpoint, "link:between-boot-files"))
    if writer.update_text(site / BOOT_NAME, boot.module, durable=durable) or not _boot_compiled(site / BOOT_NAME):
        writer.then(partial(_compile_boot, venv, site / BOOT_NAME))  # once the new module is in place
    if not boot.pth_first:
        writer.then(partial(checkpoint, "link:between-boot-files"))
        writer.update_text(site / PTH_NAME, boot.pth, durable=durable)


def python_series(venv: Path) -> str | None:
    """``"3.12"`` from the venv's ``pyvenv.cfg``, or None when it does not say."""
    cfg = pyvenv_cfg(venv)
    match = re.match(r"\d+\.\d+", cfg.get("version_info") or cfg.get("version") or "")
    return match[0] if match else None


def _boot_compiled(boot: Path) -> bool:
    return any((boot.parent / "__pycache__").glob("_layerenv_boot.*.pyc"))


def _compile_boot(venv: Path, boot: Path) -> None:
    """Drop cached bytecode of an older boot module (same size, same second would pass the mtime
    check) and, when this interpreter matches the venv's, write a source-hash-checked .pyc so that
    start-up needs no compile even where bytecode is not written (PYTHONDONTWRITEBYTECODE)."""
    for cached in (boot.parent / "__pycache__").glob("_layerenv_boot.*.pyc"):
        cached.unlink(missing_ok=True)
    cfg = pyvenv_cfg(venv)
    same = python_series(venv) == "{}.{}".format(*sys.version_info) and sys.implementation.name == "cpython"
    if same and cfg.get("implementation", "cpython").lower() == "cpython":
        py_compile.compile(str(boot), doraise=False, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
