"""pip in a project venv without a copy of it in each: virtualenv's bundled pip wheel, unpacked once
into the store, is put on the venv's ``sys.path`` by ``_layerenv_pip.pth``, and ``bin/pip`` runs it.

Run by the venv's python, that pip installs into the venv and reads its ``pip.conf`` (the base's
constraints) as a seeded one would; ``pip install -U pip`` puts the newer pip into the venv, where it
comes first on ``sys.path``, and leaves the shared one alone ("outside environment").
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

from layerenv.project.stubs import shebang
from layerenv.store.atomic import remove_tree
from layerenv.venv.layout import VenvLayout

__all__ = ["PTH_NAME", "bundled_pip", "share_pip"]

PTH_NAME = "_layerenv_pip.pth"  # after _layerenv.pth: a pip in the base's site-packages comes first

_LAUNCHER = """{shebang}
import re
import sys
from pip._internal.cli.main import main

if __name__ == "__main__":
    sys.argv[0] = re.sub(r"(-script\\.pyw|\\.exe)?$", "", sys.argv[0])
    sys.exit(main())
"""


def bundled_pip(version: tuple[int, int], shared: Path | None = None) -> Path | None:
    """The newest pip wheel virtualenv ships that supports Python ``version``; None when it ships none
    (some distributions' virtualenv packages leave the wheels out). ``shared``: where wheels are unpacked
    (:func:`unpacked`), whose metadata is read instead of the wheel's where it is there."""
    spec = importlib.util.find_spec("virtualenv")
    if spec is None or not spec.submodule_search_locations:
        return None
    embed = Path(next(iter(spec.submodule_search_locations))) / "seed" / "wheels" / "embed"
    for wheel in sorted(embed.glob("pip-*-py3-none-any.whl"), key=_release, reverse=True):
        if _supports(_requires_python(wheel, shared), version):
            return wheel
    return None


def _release(wheel: Path) -> tuple[int, ...]:
    """``pip-26.0.1-py3-none-any.whl`` -> (26, 0, 1)."""
    return tuple(int(part) for part in re.findall(r"\d+", wheel.name.split("-")[1])[:4])


def _supports(requires_python: str, version: tuple[int, int]) -> bool:
    """Whether ``Requires-Python`` admits ``version``; the usual ``>=X.Y`` without importing packaging."""
    simple = re.fullmatch(r"\s*>=\s*(\d+)\.(\d+)\s*", requires_python)
    if simple:
        return version >= (int(simple[1]), int(simple[2]))
    from packaging.specifiers import SpecifierSet

    return SpecifierSet(requires_python).contains(f"{version[0]}.{version[1]}")


def _requires_python(wheel: Path, shared: Path | None) -> str:
    """The wheel's ``Requires-Python``: from its copy unpacked in ``shared`` (a plain read) when there is
    one, else from the wheel (a zip to open)."""
    unpacked_metadata = [] if shared is None else list(
        (shared / wheel.name.removesuffix(".whl")).glob("pip-*.dist-info/METADATA"))
    if len(unpacked_metadata) == 1:
        text = unpacked_metadata[0].read_text(encoding="utf-8", errors="replace")
    else:
        import zipfile

        with zipfile.ZipFile(wheel) as archive:
            name = next((n for n in archive.namelist() if n.endswith(".dist-info/METADATA")), None)
            text = archive.read(name).decode("utf-8", errors="replace") if name else ""
    for line in text.splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        if key.lower() == "requires-python":
            return value.strip()
    return ""


def unpacked(wheel: Path, shared: Path) -> Path:
    """``shared/<wheel's name>``: the wheel unpacked there once (concurrent callers each unpack beside
    it and the first rename wins)."""
    target = shared / wheel.name.removesuffix(".whl")
    if target.is_dir():
        return target
    shared.mkdir(parents=True, exist_ok=True)
    staging = shared / f".{target.name}.{os.getpid()}-{os.urandom(3).hex()}"
    try:
        import zipfile

        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(staging)
        try:
            staging.rename(target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        remove_tree(staging)
    return target


def share_pip(venv: Path, wheel: Path, shared: Path) -> None:
    """Make ``pip`` (and ``python -m pip``) work in the POSIX ``venv`` from ``wheel``, unpacked in ``shared``."""
    pip_dir = unpacked(wheel, shared)
    layout = VenvLayout.for_venv(venv)
    version = layout.site_packages.parent.name.removeprefix("python").removeprefix("pypy")
    (layout.site_packages / PTH_NAME).write_text(f"{pip_dir}\n", encoding="utf-8")
    launcher = _LAUNCHER.format(shebang=shebang(layout.python))
    for name in ("pip", "pip3", f"pip{version}"):
        target = layout.script(name)
        target.write_text(launcher, encoding="utf-8")
        target.chmod(0o755)

