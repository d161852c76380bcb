"""A stand-in ``nvidia-smi``: an executable script that prints fixed bytes, exits with a fixed
status, or hangs the way a wedged driver makes the real one hang."""

from __future__ import annotations

import stat
from pathlib import Path


def install_fake_smi(
    bin_dir: Path, *, stdout: bytes = b"", exit_code: int = 0, hang: bool = False, gpu_list: bytes | None = None
) -> Path:
    """Write ``bin_dir/nvidia-smi`` and return its path; ``gpu_list`` is what ``nvidia-smi -L`` prints.

    A hanging one ignores SIGTERM and leaves a grandchild holding stdout open, so only a
    timeout that kills the whole process group gets the caller back.
    """
    bin_dir.mkdir(parents=True, exist_ok=True)
    data = bin_dir / "nvidia-smi.stdout"
    data.write_bytes(stdout)
    script = bin_dir / "nvidia-smi"
    if hang:
        body = f"trap '' TERM\nsleep 60 &\necho $! > '{bin_dir / 'nvidia-smi.grandchild'}'\nexec sleep 60\n"
    else:
        body = f"cat '{data}'\nexit {exit_code}\n"
        if gpu_list is not None:
            (bin_dir / "nvidia-smi.list").write_bytes(gpu_list)
            body = f"if [ \"$1\" = -L ]; then cat '{bin_dir / 'nvidia-smi.list'}'; exit 0; fi\n" + body
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def install_fixture_smi(bin_dir: Path, machine: Path) -> Path | None:
    """The fake ``nvidia-smi`` a fixture machine describes (``nvidia-smi.csv``, ``nvidia-smi.exit``,
    ``nvidia-smi.list`` for ``-L``), or ``None`` when that machine has no ``nvidia-smi``."""
    csv = machine / "nvidia-smi.csv"
    if not csv.exists():
        return None
    exit_file = machine / "nvidia-smi.exit"
    exit_code = int(exit_file.read_text().strip()) if exit_file.exists() else 0
    gpu_list = machine / "nvidia-smi.list"
    return install_fake_smi(bin_dir, stdout=csv.read_bytes(), exit_code=exit_code,
                            gpu_list=gpu_list.read_bytes() if gpu_list.exists() else None)
