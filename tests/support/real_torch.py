"""The machine's real CPU torch wheel (``/opt/wheels`` on the CI image): one base built from it per
test session, shared by the tests that prove layering with a real torch (they only read the base)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from .cli import layerenv_env, run_layerenv

__all__ = ["REAL_TORCH_GROUP", "TAG", "WHEELS", "RealBase", "real_cpu_base"]

WHEELS = Path(os.environ.get("LAYERENV_TEST_TORCH_WHEELS", "/opt/wheels"))
TAG = f"cp{sys.version_info.major}{sys.version_info.minor}"
#: the xdist group of every module using :func:`real_cpu_base`, so one worker builds the base once
REAL_TORCH_GROUP = pytest.mark.xdist_group("real-torch-base")


@dataclass(frozen=True)
class RealBase:
    """A store whose base was built from the real wheel; ``built`` is that ``layerenv base --json``."""

    home: Path
    env: dict[str, str]
    built: subprocess.CompletedProcess[str]


@pytest.fixture(scope="session")
def real_cpu_base(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], RealBase]:
    """``get(version)``: the store holding the base of the real torch ``version`` (e.g. ``2.13.0``), built
    on first use as on an offline machine with a local mirror: the wheel from find-links, torch's own
    dependencies from pip's configured index, a torch index URL that leads nowhere."""
    stores: dict[str, RealBase] = {}

    def get(version: str) -> RealBase:
        if version not in stores:
            root = tmp_path_factory.mktemp("real-torch-base")
            env = layerenv_env(root / "home", base_env=os.environ, machine="no-gpu", extra={
                "LAYERENV_INDEX_URL": f"file://{root}/unreachable/{{variant}}",
                "LAYERENV_FIND_LINKS": str(WHEELS),
                "LAYERENV_TORCH": version,
            })
            stores[version] = RealBase(root / "home", env, run_layerenv(["base", "--json"], env, root, timeout=900))
        return stores[version]

    return get
