"""The Session every command opens: it reads only the environment it is given, and derives lazily."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerenv.cli.session import Session
from layerenv.errors import BadInput
from layerenv.machine.interpreters import current
from tests.support.cli import FIXTURE_MACHINES


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "LAYERENV_HOME": str(tmp_path / "home"),
        "LAYERENV_SYSROOT": str(FIXTURE_MACHINES / "h100-580"),
        "LAYERENV_USER_CONFIG": str(tmp_path / "no-user-config.toml"),
        "PATH": "/usr/bin:/bin",
        **extra,
    }


def test_a_session_reads_the_environment_it_is_given_not_the_process_one(tmp_path: Path) -> None:
    """The process has no LAYERENV_* variables (tests clear them): all of it comes from the mapping."""
    session = Session.open(_env(tmp_path, LAYERENV_VARIANT="cu128", LAYERENV_NODE="node-7"), project_dir=tmp_path)
    assert session.settings.sources["torch.variant"] == "LAYERENV_VARIANT"
    assert session.store.home == tmp_path / "home" and session.store.node == "node-7"
    assert session.detection.machine.gpus[0].name == "NVIDIA H100 80GB HBM3"
    assert session.detection.decision.variant.name == "cu128"
    assert session.detection is session.detection, "the machine is read once per session"
    assert session.store is session.store


def test_flags_are_strongest_and_the_base_request_follows_the_settings(tmp_path: Path) -> None:
    session = Session.open(_env(tmp_path, LAYERENV_VARIANT="cu128"), flags={"torch.variant": "cu126"},
                           project_dir=tmp_path, verbosity=1)
    request = session.base_request(rebuild=True)
    assert session.settings.sources["torch.variant"] == "command line"
    assert request.detection.decision.variant.name == "cu126"
    assert request.interpreter == current(), "no base.python: the Python running layerenv"
    assert request.rebuild and request.verbose


def test_the_store_is_opened_only_when_used(tmp_path: Path) -> None:
    """`layerenv detect` never needs the store, so a bad store setting does not stop it."""
    session = Session.open(_env(tmp_path, LAYERENV_LOCK_STALE_AFTER="soon"), project_dir=tmp_path)
    assert session.detection.decision.variant.name == "cu132"
    with pytest.raises(BadInput, match="LAYERENV_LOCK_STALE_AFTER='soon'"):
        _ = session.store


def test_no_base_is_current_in_an_empty_store_and_reading_writes_nothing(tmp_path: Path) -> None:
    session = Session.open(_env(tmp_path), project_dir=tmp_path)
    assert session.current_base() is None
    assert not (tmp_path / "home").exists()
    assert session.log_dir() is None, "no store on disk: an error log goes elsewhere"
