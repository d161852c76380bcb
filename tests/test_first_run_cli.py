"""The first run explains itself: a mistyped command gets 'did you mean', ``layerenv shell`` starts a shell."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import time
import venv as stdlib_venv
from pathlib import Path

import pytest

from layerenv.project.link import link
from tests.support.cli import REPO, layerenv_env, run_layerenv


def test_a_mistyped_command_gets_the_nearest_name(tmp_path: Path) -> None:
    env = layerenv_env(tmp_path / "home", base_env=os.environ)
    typo = run_layerenv(["stauts"], env, tmp_path)
    assert (typo.returncode, typo.stdout) == (2, "")
    assert typo.stderr == (
        "layerenv: error: no such command 'stauts'; did you mean 'status'? (see `layerenv --help`)\n"
    )
    far = run_layerenv(["frobnicate"], env, tmp_path)
    assert (far.returncode, far.stderr) == (2, "layerenv: error: no such command 'frobnicate' (see `layerenv --help`)\n")
    assert not (tmp_path / "home").exists(), "a refused command line touches nothing"


@pytest.fixture
def linked_project(tmp_path: Path) -> Path:
    """A project venv layered on a bare base venv: enough for `shell` (no installer needed)."""
    base, project = tmp_path / "base", tmp_path / "project" / ".venv"
    for venv in (base, project):
        stdlib_venv.create(venv, with_pip=False)
    link(project, base_id="test-base", base_venv=base)
    return project


def test_shell_prints_the_line_when_stdout_is_not_a_terminal(tmp_path: Path, linked_project: Path) -> None:
    env = layerenv_env(tmp_path / "home", base_env=os.environ, extra={"SHELL": "/bin/bash"})
    piped = run_layerenv(["shell"], env, linked_project.parent)
    assert (piped.returncode, piped.stdout) == (0, f"source {linked_project}/bin/activate\n")
    fish = run_layerenv(["shell", "--print"], {**env, "SHELL": "/usr/bin/fish"}, linked_project.parent)
    assert fish.stdout == f"source {linked_project}/bin/activate.fish\n"


def in_terminal(argv: list[str], env: dict[str, str], cwd: Path, typed: str, timeout: float = 60) -> tuple[int, str]:
    """Run ``argv`` with a pseudo-terminal as stdin/stdout/stderr, type ``typed``; its status and all it showed."""
    master, slave = os.openpty()
    process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd, start_new_session=True)
    os.close(slave)
    os.write(master, typed.encode())
    shown = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if not ready:
            if process.poll() is not None:
                break
            continue
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: every holder of the terminal is gone
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    try:
        return process.wait(timeout=10), shown.decode(errors="replace").replace("\r\n", "\n")
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.parametrize("shell", ["bash", "dash", "unknown"])
def test_shell_on_a_terminal_starts_an_activated_subshell_and_exits_with_its_status(
    tmp_path: Path, linked_project: Path, shell: str
) -> None:
    if shell == "unknown":  # a shell layerenv has no startup hook for: the variables alone
        found = shutil.which("dash") or shutil.which("bash")
        assert found is not None
        path = tmp_path / "bin" / "myshell"
        path.parent.mkdir()
        path.symlink_to(found)
        executable = str(path)
    else:
        which = shutil.which(shell)
        if which is None:
            pytest.skip(f"{shell} is not installed")
        executable = which
    home = tmp_path / "user-home"
    home.mkdir()
    env = layerenv_env(tmp_path / "home", base_env=os.environ, extra={
        "SHELL": executable, "HOME": str(home), "PIP_CONSTRAINT": "/etc/site-caps.txt", "PYTHONPATH": str(REPO)})
    env.pop("VIRTUAL_ENV", None)
    env.pop("UV_CONSTRAINT", None)
    typed = ('echo "VE=[$VIRTUAL_ENV]"; echo "UC=[$UV_CONSTRAINT]"; echo "PC=[$PIP_CONSTRAINT]"; '
             'echo "BIN=[$(command -v python)]"; echo "PS=[$PS1]"; exit 7\n')
    code, shown = in_terminal([sys.executable, "-m", "layerenv", "shell"], env, linked_project.parent, typed)
    constraints = linked_project / "layerenv-constraints.txt"
    assert code == 7, shown
    assert f"starting {executable} with {linked_project} activated" in shown
    assert f"VE=[{linked_project}]" in shown
    assert f"UC=[{constraints}]" in shown
    assert f"PC=[{constraints} /etc/site-caps.txt]" in shown
    assert f"BIN=[{linked_project}/bin/python]" in shown
    if shell != "unknown":
        assert "PS=[(.venv) " in shown or "PS=[(project) " in shown, shown  # the activate script's prompt prefix
