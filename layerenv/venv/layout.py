"""Where things are in a venv on disk, on POSIX and on Windows (after virtualenv's ``create/describe.py``).

::

    POSIX                                   Windows
    bin/python                              Scripts/python.exe
    bin/<script>                            Scripts/<script>.exe
    bin/activate, activate.fish, ...        Scripts/activate, activate.ps1, activate.bat, ...
    lib/pythonX.Y/site-packages             Lib/site-packages
    pip.conf                                pip.ini

Every path layerenv builds inside a venv comes from here, so the rest of the package never asks
which platform it runs on.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from layerenv.errors import BadInput
from layerenv.venv.distinfo import pyvenv_cfg

__all__ = ["ACTIVATION_SCRIPTS", "VenvLayout"]

#: The activation scripts virtualenv and the stdlib ``venv`` write, by file name.
ACTIVATION_SCRIPTS = (
    "activate", "activate.fish", "deactivate.csh", "activate.csh", "activate.nu", "activate.ps1", "Activate.ps1",
    "activate.bat",
)  # fmt: skip


@dataclass(frozen=True)
class VenvLayout:
    """The layout of the venv at ``root``: Windows (``Scripts``, ``Lib``) or POSIX (``bin``, ``lib``)."""

    root: Path
    windows: bool = sys.platform == "win32"

    @classmethod
    def for_venv(cls, root: Path) -> VenvLayout:
        """The layout of the venv at ``root`` as it is on disk (``bin/`` or ``Scripts/``); a venv not
        made yet gets this platform's."""
        if (root / "bin").is_dir():
            return cls(root, windows=False)
        if (root / "Scripts").is_dir():
            return cls(root, windows=True)
        return cls(root)

    @property
    def bin_dir(self) -> Path:
        """Where the interpreter, console scripts and activation scripts are."""
        return self.root / ("Scripts" if self.windows else "bin")

    @property
    def python(self) -> Path:
        return self.script("python")

    def script(self, name: str) -> Path:
        """The executable ``name`` in :attr:`bin_dir` (``name.exe`` on Windows)."""
        return self.bin_dir / (f"{name}.exe" if self.windows else name)

    @property
    def site_packages(self) -> Path:
        """The purelib site-packages: ``Lib/site-packages`` on Windows, else
        ``lib/<python|pypy>X.Y[t]/site-packages`` with X.Y from ``pyvenv.cfg`` (else the only one there)."""
        if self.windows:
            return self.root / "Lib" / "site-packages"
        cfg = pyvenv_cfg(self.root)
        version = cfg.get("version_info") or cfg.get("version") or ""
        impl = "pypy" if cfg.get("implementation", "").lower() == "pypy" else "python"
        match = re.match(r"(\d+)\.(\d+)", version)
        if match:
            for suffix in ("", "t"):
                candidate = self.root / "lib" / f"{impl}{match[1]}.{match[2]}{suffix}" / "site-packages"
                if candidate.is_dir():
                    return candidate
        found = sorted(self.root.glob("lib/py*/site-packages"))
        if len(found) == 1:
            return found[0]
        raise BadInput(f"{self.root}: cannot tell which site-packages is the venv's (found {len(found)})")

    @property
    def pip_config(self) -> Path:
        """The venv's "site" pip configuration file, which pip reads for every command run in it."""
        return self.root / ("pip.ini" if self.windows else "pip.conf")

    @property
    def activation_scripts(self) -> tuple[Path, ...]:
        """The activation (and csh deactivation) scripts the venv has; ``Activate.ps1`` is the stdlib
        ``venv``'s spelling."""
        return tuple(path for path in map(self.bin_dir.joinpath, ACTIVATION_SCRIPTS) if path.is_file())
