"""``scripts/install.sh`` for real: a fresh HOME, a private tool venv, a replayed machine, a fake torch index.

Installing layerenv's own dependencies into the private venv uses this machine's pip
configuration (its package registry); torch comes from the fake variant indexes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cli import FIXTURE_MACHINES, REPO

pytestmark = pytest.mark.slow

INSTALL_SH = REPO / "scripts" / "install.sh"
INSTALL_PS1 = REPO / "scripts" / "install.ps1"


def _installer() -> str:
    try:
        import uv  # noqa: F401
    except ImportError:
        return "pip"
    return "uv"


def _path_without_pipx() -> str:
    """/usr/bin:/bin plus this python's directory, refusing any directory that holds a pipx."""
    dirs = ["/usr/bin", "/bin", str(Path(sys.executable).parent)]
    with_pipx = [d for d in dirs if (Path(d) / "pipx").exists()]
    if with_pipx:
        pytest.skip(f"pipx is installed in {with_pipx}: cannot test the private-venv path")
    return os.pathsep.join(dirs)


@dataclass
class Setup:
    tmp: Path
    env: dict[str, str]

    @property
    def tool(self) -> Path:
        return self.tmp / "tool"

    @property
    def project(self) -> Path:
        return self.tmp / "repo"

    def run(self, *args: str, timeout: float = 240, source: bool = True) -> subprocess.CompletedProcess[str]:
        source_args = ["--source", str(REPO)] if source else []
        return subprocess.run(
            ["bash", str(INSTALL_SH), *source_args, "--project", str(self.project), *args],
            env=self.env,
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, variant_indexes) -> Setup:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("install-sh")
    (tmp / "home").mkdir()
    (tmp / "repo").mkdir()
    (tmp / "repo" / "requirements.txt").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAYERENV_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(
        HOME=str(tmp / "home"),
        PATH=_path_without_pipx(),
        LAYERENV_HOME=str(tmp / "store"),
        LAYERENV_TOOL_HOME=str(tmp / "tool"),
        LAYERENV_USER_CONFIG=str(tmp / "no-user-config.toml"),
        LAYERENV_SYSROOT=str(FIXTURE_MACHINES / "no-gpu"),
        LAYERENV_INDEX_URL=variant_indexes.url_template,
        LAYERENV_INSTALLER=_installer(),
    )
    env.pop("XDG_DATA_HOME", None)
    return Setup(tmp, env)


@pytest.fixture(scope="module")
def first_run(setup: Setup) -> subprocess.CompletedProcess[str]:
    return setup.run()


def test_first_run_installs_builds_and_layers(setup: Setup, first_run: subprocess.CompletedProcess[str]) -> None:
    assert first_run.returncode == 0, first_run.stdout + first_run.stderr
    version = subprocess.run(
        [str(setup.tool / "bin" / "layerenv"), "--version"], capture_output=True, text=True, check=False
    )
    assert version.returncode == 0 and "0." in version.stdout + version.stderr
    link = setup.tmp / "home" / ".local" / "bin" / "layerenv"
    assert link.is_symlink() and link.resolve() == (setup.tool / "bin" / "layerenv").resolve()
    torch = subprocess.run(
        [str(setup.project / ".venv" / "bin" / "python"), "-c", "import torch; print(torch.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert torch.stdout.strip() == "2.9.1+cpu", torch.stderr
    lines = first_run.stdout.strip().splitlines()
    assert lines[-1] == f"activate with: source {setup.project}/.venv/bin/activate"
    assert "is not on PATH" in first_run.stdout  # $HOME/.local/bin is not on the test's PATH


def test_second_run_changes_nothing(setup: Setup, first_run: subprocess.CompletedProcess[str]) -> None:
    assert first_run.returncode == 0
    stamp = (setup.tool / "bin" / "layerenv").stat().st_mtime_ns
    again = setup.run(timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already installed" in again.stdout
    assert "reused" in again.stdout and "up to date" in again.stdout
    assert (setup.tool / "bin" / "layerenv").stat().st_mtime_ns == stamp
    assert again.stdout.strip().splitlines()[-1].startswith("activate with: source ")


def test_default_source_is_the_checkout(setup: Setup, first_run: subprocess.CompletedProcess[str]) -> None:
    """Without --source, a script run from a checkout installs that checkout (so nothing is reinstalled here)."""
    assert first_run.returncode == 0
    again = setup.run("--no-project", timeout=60, source=False)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already installed" in again.stdout and "reused" in again.stdout
    assert again.stdout.strip().splitlines()[-1] == "layer a project on it with: layerenv project PATH"


def test_bad_argument_exits_2_with_one_line(setup: Setup) -> None:
    bad = setup.run("--bogus", timeout=30)
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("install.sh: error: ")


def test_missing_value_exits_2(setup: Setup) -> None:
    bad = setup.run("--variant", timeout=30)
    assert bad.returncode == 2 and bad.stderr.startswith("install.sh: error: ")


def test_unknown_variant_passes_layerenv_error_through(
    setup: Setup, first_run: subprocess.CompletedProcess[str]
) -> None:
    assert first_run.returncode == 0
    bad = setup.run("--variant", "cu999", timeout=60)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "layerenv: error:" in bad.stderr and "cu999" in bad.stderr


def test_help_exits_0() -> None:
    shown = subprocess.run(["bash", str(INSTALL_SH), "--help"], capture_output=True, text=True, check=False)
    assert shown.returncode == 0 and "--variant" in shown.stdout and "--no-project" in shown.stdout


def test_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    checked = subprocess.run([shellcheck, str(INSTALL_SH)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_install_ps1_parses() -> None:
    pwsh = shutil.which("pwsh")
    if pwsh is None:
        pytest.skip("PowerShell (pwsh) is not installed: install.ps1 is not even parsed")
    script = (
        "$errors = $null; "
        f"[System.Management.Automation.Language.Parser]::ParseFile('{INSTALL_PS1}', [ref]$null, [ref]$errors)"
        " | Out-Null; $errors | ForEach-Object { $_.ToString() }; exit $errors.Count"
    )
    parsed = subprocess.run([pwsh, "-NoProfile", "-Command", script], capture_output=True, text=True, check=False)
    assert parsed.returncode == 0, parsed.stdout + parsed.stderr
