"""Running the real ``layerenv`` command in a subprocess, as users and other tools do."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURE_MACHINES = REPO / "tests" / "fixtures" / "machines"


def layerenv_env(
    home: Path,
    *,
    base_env: Mapping[str, str],
    machine: str | None = "no-gpu",
    extra: Mapping[str, str] | None = None,
    installer: str | None = "pip",
) -> dict[str, str]:
    """An environment for a layerenv process: its own store, a replayed machine, no user config.

    ``installer``: ``LAYERENV_INSTALLER``; pip unless a test asks otherwise, since most tests give their
    sources in pip's terms (``PIP_INDEX_URL``, pip.conf); None leaves layerenv's default ("auto")."""
    env = {k: v for k, v in base_env.items() if not k.startswith("LAYERENV_")}
    if installer is not None:
        env["LAYERENV_INSTALLER"] = installer
    env["LAYERENV_HOME"] = str(home)
    env["LAYERENV_USER_CONFIG"] = str(home / "no-user-config.toml")
    env["PYTHONPATH"] = str(REPO)
    if machine is not None:
        env["LAYERENV_SYSROOT"] = str(FIXTURE_MACHINES / machine)
        env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p) or "/usr/bin:/bin"
    env.update(extra or {})
    return env


def run_layerenv(
    args: Sequence[str], env: Mapping[str, str], cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "layerenv", *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def tree_digest(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with size and mtime: to prove nothing on disk changed."""
    if not root.exists():
        return {}
    return {
        str(path.relative_to(root)): (path.lstat().st_size, path.lstat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
    }
