"""Shared pieces of the benchmarks: a fake-torch index of realistic size, timing, isolated envs."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.index import file_url, isolated_installer_env, write_simple_index  # noqa: E402
from tests.support.wheels import build_fake_companion, build_fake_torch  # noqa: E402


def fake_variant_index(root: Path, payload_mb: int) -> str:
    """``root/cu128/simple``: torch 2.9.1+cu128 with ``payload_mb`` of library bytes, and its family."""
    wheels = root / "wheels"
    torch = build_fake_torch(wheels, "2.9.1+cu128", cuda="12.8", payload_bytes=payload_mb * 1024 * 1024)
    vision = build_fake_companion(wheels, "torchvision", "0.24.1+cu128", requires=("torch==2.9.1+cu128",))
    write_simple_index(root / "cu128", [torch, vision])
    return file_url(root / "cu128" / "simple").replace("/cu128/", "/{variant}/")


def clean_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = isolated_installer_env(os.environ)
    env.update(
        {
            "LAYERENV_HOME": str(home),
            "LAYERENV_USER_CONFIG": str(home / "none.toml"),
            "LAYERENV_SYSROOT": str(REPO / "tests" / "fixtures" / "machines" / "h100-580"),
            "PYTHONPATH": str(REPO),
        }
    )
    env.update(extra or {})
    return env


def timed(argv: Sequence[str], env: Mapping[str, str], cwd: Path | None = None) -> float:
    started = time.perf_counter()
    result = subprocess.run(list(argv), env=dict(env), cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"benchmark step failed: {' '.join(argv)}\n{result.stdout}{result.stderr}")
    return elapsed


def median_of(runs: int, argv: Sequence[str], env: Mapping[str, str], cwd: Path | None = None) -> float:
    return statistics.median(timed(argv, env, cwd) for _ in range(runs))


def layerenv(*args: str) -> list[str]:
    return [sys.executable, "-m", "layerenv", *args]


def uv() -> str:
    from layerenv.installers import find_uv

    found = find_uv()
    if found is None:
        raise SystemExit("uv is not installed: pip install uv")
    return found


def du(path: Path) -> int:
    from layerenv.lifecycle.status import disk_usage

    return disk_usage(path)


CONSOLE_SCRIPTS = {
    # pip before 25.2 (the 23.2 of this machine's image) and pipx on it: distlib's script, which imports re
    "pip": "import re, sys; from layerenv.cli.entry import main; sys.exit(main())",
    # pip 25.2 and later (pypa/pip#13165; pip 26.3 writes this): no re
    "pip>=25.2": "import sys; from layerenv.cli.entry import main; sys.argv[0] = sys.argv[0].removesuffix('.exe'); "
                 "sys.exit(main())",
    # uv (astral-sh/uv#10627): no re
    "uv": "import sys; from layerenv.cli.entry import main; sys.exit(main())",
}


def console_script(*args: str, writer: str = "pip") -> list[str]:
    """``layerenv ARGS`` as users start it: the console script pip (or uv) writes; ``-m`` adds runpy's cost."""
    return [sys.executable, "-c", CONSOLE_SCRIPTS[writer], *args]


def interleaved_medians(
    commands: Mapping[str, Sequence[str]], runs: int, env: Mapping[str, str], cwd: Path | None = None
) -> dict[str, float]:
    """Median seconds of each command; one untimed warm-up each, then runs interleaved so drift hits all."""
    for argv in commands.values():
        timed(argv, env, cwd)
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            samples[name].append(timed(argv, env, cwd))
    return {name: statistics.median(values) for name, values in samples.items()}
