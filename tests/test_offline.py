"""The first run where PyTorch's index cannot be reached: said at once, with what would work here."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.cli import layerenv_env, run_layerenv
from tests.test_first_run import torch_env

pytestmark = pytest.mark.slow


@pytest.fixture
def offline_env(tmp_path: Path, installer_env: dict[str, str]) -> dict[str, str]:
    """An H100 machine whose cu132 index is a directory that does not exist, no find-links, pip's
    configuration isolated, and in the home directory a project venv with a fitting torch."""
    home = tmp_path / "user"
    torch_env(home / "work" / ".venv", "2.11.0+cu130")
    torch_env(home / "cpu-lab" / ".venv", "2.13.0+cpu")
    (tmp_path / "xdg").mkdir()
    base_env = {**installer_env, "HOME": str(home), "XDG_CONFIG_DIRS": str(tmp_path / "xdg")}
    base_env.pop("XDG_CONFIG_HOME", None)
    return layerenv_env(
        tmp_path / "store",
        base_env=base_env,
        machine="h100-580",
        extra={"LAYERENV_INDEX_URL": f"file://{tmp_path}/nowhere/{{variant}}", "LAYERENV_INSTALLER": "pip"},
    )


def test_nothing_else_to_try_fails_at_once_naming_what_would_work(tmp_path: Path, offline_env: dict[str, str]) -> None:
    started = time.monotonic()
    result = run_layerenv(["base"], offline_env, tmp_path)
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert elapsed < 10, f"{elapsed:.1f}s to say the index is unreachable"
    lines = result.stderr.splitlines()
    assert len(lines) <= 3, result.stderr
    error = lines[-1]
    index = f"{tmp_path}/nowhere/cu132"
    assert error.startswith(
        f"layerenv: error: the cu132 index file://{index} is unreachable ({index} is not a directory) and neither "
        "layerenv nor pip's configuration offers another source of cu132 builds; set "
        "LAYERENV_FIND_LINKS=<directory of wheels>, LAYERENV_INDEX_URL=<mirror>/{variant}, or "
        f"layerenv base --adopt {tmp_path}/user/work/.venv (torch 2.11.0+cu130: fits this machine) (log: "
    ), error
    assert "cpu-lab" not in result.stderr, "a torch that does not fit this machine is not suggested"
    log = Path(error.rsplit("(log: ", 1)[1].rstrip(")"))
    assert "cpu-lab/.venv (torch 2.13.0+cpu: a CPU build on a machine with GPUs)" in log.read_text()
    assert not any((tmp_path / "store" / "bases").iterdir()), "nothing was built"
    assert not any((tmp_path / "store" / "staging").iterdir()), "no virtualenv was left behind"


def test_the_installers_own_find_links_are_tried_and_the_final_error_names_the_options(
    tmp_path: Path, offline_env: dict[str, str]
) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    pip_conf = tmp_path / "pip.conf"
    pip_conf.write_text(f"[global]\nno-index = true\nfind-links = {wheels}\n")
    env = {**offline_env, "PIP_CONFIG_FILE": str(pip_conf)}
    result = run_layerenv(["base"], env, tmp_path)
    assert result.returncode == 1, result.stderr
    warning = next(line for line in result.stderr.splitlines() if line.startswith("warning:"))
    assert warning.startswith(f"warning: the cu132 index file://{tmp_path}/nowhere/cu132 is unreachable ("), warning
    assert "trying find-links and pip's own configuration (only +cu132 builds)" in warning
    assert "resolving torch for cu132" in result.stderr, "the installer's own find-links were tried"
    error = result.stderr.splitlines()[-1]
    assert error.startswith("layerenv: error: no torch"), error
    assert f"layerenv base --adopt {tmp_path}/user/work/.venv (torch 2.11.0+cu130: fits this machine)" in error
    assert "LAYERENV_FIND_LINKS=<directory of wheels>" in error and error.endswith(".log)"), error
    log = Path(error.rsplit("(log: ", 1)[1].rstrip(")"))
    assert "-m pip install" in log.read_text(), "pip was asked, with its own configuration"


def test_with_the_default_installer_pip_builds_the_base_where_only_pips_settings_offer_torch(
    tmp_path: Path, offline_env: dict[str, str]
) -> None:
    """The README's quick start on this kind of machine: uv is the default, the variant's index is
    unreachable, and only pip's find-links hold the build (uv reads no pip.conf)."""
    from layerenv.machine.uv import find_uv
    from tests.support.wheels import build_fake_torch

    if find_uv() is None:
        pytest.skip("no uv here: the default is pip already")
    wheels = tmp_path / "wheels"
    build_fake_torch(wheels, "2.15.0+cu132", cuda="13.2")
    pip_conf = tmp_path / "pip.conf"
    pip_conf.write_text(f"[global]\nno-index = true\nfind-links = {wheels}\n")
    env = {**offline_env, "PIP_CONFIG_FILE": str(pip_conf)}
    env.pop("LAYERENV_INSTALLER")
    result = run_layerenv(["base"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "only pip's configuration offers cu132 builds here (not uv's): this base is built with pip" in result.stderr
    assert "installing torch==2.15.0+cu132 with pip" in result.stderr
