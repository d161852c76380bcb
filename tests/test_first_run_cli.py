"""The first run explains itself: a mistyped command gets 'did you mean', ``layerenv shell`` starts a shell."""

from __future__ import annotations

import json
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
from tests.support.pytest_fixtures import VariantIndexes
from tests.support.venvs import venv_with_pip


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


OUTLOOK_570 = ("driver 570.153.02 limits this machine to CUDA 12.8 -> torch 2.13; "
               "driver >= 580.65.06 gets torch 2.15 cu132")


def test_status_and_doctor_say_what_limits_the_choice_and_doctor_stays_healthy(tmp_path: Path) -> None:
    limited = layerenv_env(tmp_path / "home", base_env=os.environ, machine="rtx5090-570")
    status = run_layerenv(["status"], limited, tmp_path)
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[1] == f"outlook  {OUTLOOK_570}"
    assert json.loads(run_layerenv(["status", "--json"], limited, tmp_path).stdout)["outlook"] == [OUTLOOK_570]
    doctor = run_layerenv(["doctor"], limited, tmp_path)
    assert (doctor.returncode, doctor.stdout.splitlines()) == (
        0, ["healthy: 0 project(s), 0 base(s), nothing to fix", f"outlook: {OUTLOOK_570}"]), doctor.stderr
    report = run_layerenv(["doctor", "--json"], limited, tmp_path)
    assert report.returncode == 0 and json.loads(report.stdout) == {
        "healthy": True, "findings": [], "outlook": [OUTLOOK_570]}

    unlimited = layerenv_env(tmp_path / "home", base_env=os.environ, machine="rtx5090-580")
    assert "outlook" not in run_layerenv(["status"], unlimited, tmp_path).stdout
    assert run_layerenv(["doctor"], unlimited, tmp_path).stdout == "healthy: 0 project(s), 0 base(s), nothing to fix\n"
    assert json.loads(run_layerenv(["status", "--json"], unlimited, tmp_path).stdout)["outlook"] == []


@pytest.mark.slow
def test_an_adopted_base_is_named_as_used_and_the_machines_own_choice_beside_it(
    tmp_path: Path, variant_indexes: VariantIndexes, installer_env: dict[str, str]
) -> None:
    existing = tmp_path / "existing"
    venv_with_pip(existing, installer_env)
    subprocess.run([str(existing / "bin" / "python"), "-m", "pip", "install", "-q", "--index-url",
                    variant_indexes.url("cu130"), "torch==2.11.0+cu130"], check=True, env=installer_env)
    env = layerenv_env(tmp_path / "home", base_env={**installer_env, "PIP_INDEX_URL": variant_indexes.pypi_url},
                       machine="h100-580", extra={"LAYERENV_INDEX_URL": variant_indexes.url_template,
                                                  "LAYERENV_INSTALLER": "uv"})
    adopted = run_layerenv(["base", "--adopt", str(existing), "--json"], env, tmp_path)
    assert adopted.returncode == 0, adopted.stderr
    base_id = json.loads(adopted.stdout)["base_id"]
    project = tmp_path / "p"
    project.mkdir()
    made = run_layerenv(["project", str(project)], env, tmp_path)
    assert made.returncode == 0 and base_id in made.stdout, (made.stdout, made.stderr)

    status = run_layerenv(["status"], env, tmp_path)
    line = next(line for line in status.stdout.splitlines() if line.startswith(f"  {base_id}"))
    assert line.split()[2] == "adopted", line  # the size column: not measured, and saying so
    assert line.endswith(f"1 project(s)  (adopted {existing.resolve()}, not measured)"), line
    assert json.loads(run_layerenv(["status", "--json"], env, tmp_path).stdout)["bases"][0]["size_bytes"] is None

    rebase = run_layerenv(["rebase", "--dry-run"], env, tmp_path)
    assert rebase.returncode == 0, rebase.stderr
    assert rebase.stdout == (
        f"nothing changed: 1 project(s) already on the base that fits: {base_id} (adopted, torch 2.11.0+cu130); "
        "this machine's own choice is cu132 torch 2.15 (`layerenv base --rebuild` builds it, then "
        "`layerenv rebase` moves the projects)\n")
    plan = json.loads(run_layerenv(["rebase", "--dry-run", "--json"], env, tmp_path).stdout)
    assert plan["variant"] == "cu132" and plan["targets"] == [
        {"python": f"cp{sys.version_info.major}{sys.version_info.minor}", "base": base_id, "variant": "cu130",
         "torch": "2.11.0+cu130", "adopted": True}]


def test_config_shows_the_installer_settings_that_change_what_is_found_with_their_source(tmp_path: Path) -> None:
    xdg, user = tmp_path / "xdg", tmp_path / "user"
    (xdg / "pip").mkdir(parents=True)
    (xdg / "pip" / "pip.conf").write_text("[global]\nfind-links = /opt/wheels\n")
    (user / ".config" / "pip").mkdir(parents=True)
    (user / ".config" / "pip" / "pip.conf").write_text("[install]\nindex-url = https://me:token@mirror.example/simple\n")
    outside = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "XDG_"))}
    env = layerenv_env(tmp_path / "home", base_env=outside, extra={
        "HOME": str(user), "XDG_CONFIG_DIRS": str(xdg), "PIP_INDEX_URL": "https://pypi.example/simple",
        "UV_INDEX_URL": "https://bot:secret@uv.example/simple"})
    shown = run_layerenv(["config"], env, tmp_path)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    section = lines[lines.index("installer settings (outside layerenv; they change what pip and uv find)") + 1:]
    ours = [line for line in section if str(tmp_path) in line or "(environment)" in line]
    assert ours == [
        f"  pip  global.find-links = /opt/wheels ({xdg / 'pip' / 'pip.conf'})",
        f"  pip  install.index-url = https://***@mirror.example/simple ({user / '.config' / 'pip' / 'pip.conf'})",
        "  pip  PIP_INDEX_URL = https://pypi.example/simple (environment)",
        "  uv   UV_INDEX_URL = https://***@uv.example/simple (environment)",
    ]
    assert "token" not in shown.stdout and "secret" not in shown.stdout
    document = json.loads(run_layerenv(["config", "--json"], env, tmp_path).stdout)
    assert {"installer": "uv", "key": "UV_INDEX_URL", "value": "https://***@uv.example/simple",
            "source": "environment"} in document["installers"]
    assert {"installer": "pip", "key": "global.find-links", "value": "/opt/wheels",
            "source": str(xdg / "pip" / "pip.conf")} in document["installers"]
