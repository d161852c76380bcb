"""The one door to pip and uv: every installer run in layerenv goes through an :class:`Installer`.

``INSTALLERS`` is the registry, keyed by the names ``base.installer`` allows
(:data:`layerenv.config.INSTALLER_NAMES`, which also feeds the CLI's ``--installer`` choices);
"auto" (the default) is uv where one is found, else pip: :func:`layerenv.config.resolve_installer`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from layerenv.config import INSTALLER_NAMES
from layerenv.errors import BadInput
from layerenv.installers.pip import PipInstaller
from layerenv.installers.protocol import Installer, InstallerFailed, LayeredVenv, Log, Resolved, Sources, Wanted
from layerenv.installers.uv import UvInstaller
from layerenv.machine.uv import find_uv

__all__ = [
    "INSTALLERS",
    "Installer",
    "InstallerFailed",
    "LayeredVenv",
    "Log",
    "PipInstaller",
    "Resolved",
    "Sources",
    "UvInstaller",
    "Wanted",
    "find_uv",
    "get_installer",
]


def _uv() -> Installer:
    uv = find_uv()
    if uv is None:
        raise BadInput("installer 'uv' was asked for but uv is not installed (pip install uv, or use --installer pip)")
    return UvInstaller(uv)


def _auto() -> Installer:
    uv = find_uv()
    return PipInstaller() if uv is None else UvInstaller(uv)


_MAKERS: dict[str, Callable[[], Installer]] = {"auto": _auto, "pip": PipInstaller, "uv": _uv}
#: name -> how to make it; exactly the names the setting and the CLI accept (a name without a maker fails here)
INSTALLERS: Mapping[str, Callable[[], Installer]] = {name: _MAKERS[name] for name in INSTALLER_NAMES}


def get_installer(name: str) -> Installer:
    maker = INSTALLERS.get(name)
    if maker is None:
        raise BadInput(f"installer {name!r} is not one of: {', '.join(INSTALLERS)}")
    return maker()
