"""Moving a venv: rewrite the absolute path of its old place where a venv keeps one."""

from __future__ import annotations

import os
from pathlib import Path

from layerenv.venv.layout import VenvLayout

_LARGEST = 4 * 1024 * 1024  # bigger files are binaries or data, never a script or a .pth


def relocate_venv(venv: Path, old_prefix: Path, new_prefix: Path) -> int:
    """Rewrite the absolute venv path baked into the venv's scripts (``bin/`` or ``Scripts/``), its
    own config files and the ``.pth``/``.py`` files at the top of its site-packages.

    Virtualenvs are not relocatable only because of script shebangs and activation scripts;
    site-packages holds no absolute venv paths for wheels installed from an index, and Python
    fixes ``co_filename`` of moved ``.pyc`` files on import. Returns the number of files changed.
    """
    pairs = [(os.fsencode(str(old_prefix)), os.fsencode(str(new_prefix)))]
    if old_prefix.is_absolute() and new_prefix.is_absolute():
        # a path with a space is written as a file: URL where lists split on whitespace (constraints)
        quoted = (old_prefix.as_uri().encode(), new_prefix.as_uri().encode())
        if quoted[0] != b"file://" + pairs[0][0]:
            pairs.append(quoted)
    layout = VenvLayout.for_venv(venv)
    changed = 0
    candidates: list[Path] = []
    for directory in (layout.bin_dir, venv):
        if directory.is_dir():
            candidates.extend(directory.iterdir())
    site = layout.site_packages
    candidates.extend(path for path in site.iterdir() if path.suffix in (".pth", ".py"))
    for entry in candidates:
        if entry.is_symlink() or not entry.is_file() or entry.stat().st_size > _LARGEST:
            continue
        data = entry.read_bytes()
        if not any(old in data for old, _new in pairs) or b"\0" in data[:1024]:
            continue
        mode = entry.stat().st_mode
        for old, new in pairs:
            data = data.replace(old, new)
        entry.write_bytes(data)
        Path(entry).chmod(mode)
        changed += 1
    return changed
