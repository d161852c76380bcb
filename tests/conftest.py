"""Shared fixtures: fake torch wheels and local indexes, and guards against leaking state."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.support.pytest_fixtures import *  # noqa: F403
from tests.support.real_torch import real_cpu_base  # noqa: F401

# Hypothesis's timing checks (an example's deadline, slow generation) judge the machine, not the code: on two
# busy cores a draw can stall for seconds. What the properties assert stays as strict.
settings.register_profile("layerenv", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("layerenv")

#: what the caller's shell may have set that would steer an installer (or layerenv) into its environment
CALLER_ENVIRONMENT = ("VIRTUAL_ENV", "CONDA_PREFIX", "CONDA_DEFAULT_ENV")
CALLER_PREFIXES = ("PIP_", "UV_", "POETRY_")


@pytest.fixture(autouse=True, scope="session")
def _no_caller_environment() -> Iterator[None]:
    """The whole run forgets the caller's active venv and installer settings: nothing a test starts can
    install into them (restored at the end, for pytest's own teardown)."""
    saved = {name: value for name, value in os.environ.items()
             if name in CALLER_ENVIRONMENT or name.startswith(CALLER_PREFIXES)}
    for name in saved:
        del os.environ[name]
    yield
    os.environ.update(saved)


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
