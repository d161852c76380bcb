"""Shared fixtures: fake torch wheels and local indexes, and guards against leaking state."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.pytest_fixtures import *  # noqa: F403


@pytest.fixture(autouse=True)
def _guard_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees the developer's layerenv settings or leaks changes to os.environ or the cwd."""
    for name in list(os.environ):
        if name.startswith("LAYERENV_") or name in (
            "PYTORCH_FORCE_NIGHTLY",
            "PYTORCH_FORCE_STABLE",
            "CUDA_VISIBLE_DEVICES",
        ):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LAYERENV_USER_CONFIG", "/nonexistent/layerenv-user.toml")
    before_env = dict(os.environ)
    before_cwd = Path.cwd()
    yield
    assert Path.cwd() == before_cwd, "a test changed the working directory"
    leaked = {k for k in set(os.environ) ^ set(before_env)} | {
        k for k in before_env if k in os.environ and os.environ[k] != before_env[k]
    }
    leaked = {name for name in leaked if not name.startswith("PYTEST_")}
    assert not leaked, f"a test leaked environment changes: {sorted(leaked)}"
