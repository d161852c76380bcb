"""``layerenv run``: it becomes the command (exec), with the project venv's variables, and says why not.

The project venv here holds only what ``run`` reads, the link record :func:`layerenv.project.link.link`
writes (``layerenv.json``); building a real one is ``tests/test_project.py``'s job, which runs ``run``
too. The command runs as users start it: the console script, as a process.
"""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from layerenv.project.link import LinkRecord

REPO = Path(__file__).resolve().parents[1]
CONSOLE_SCRIPT = "import sys; from layerenv.cli.entry import main; sys.exit(main())"  # what uv writes
SHOW_ENV = (
    "import json, os, sys; print(json.dumps({k: os environ.get(k) for k in "
    "('VIRTUAL_ENV', 'UV_CONSTRAINT', 'PIP_CONSTRAINT', 'PATH')}))"
).replace("os environ", "os.environ")


def linked_venv(project: Path) -> Path:
    venv = project / ".venv"
    (venv / "bin").mkdir(parents=True)
    base = project.parent / "store" / "bases" / "b1" / "venv"
    record = LinkRecord(
        base_id="b1",
        base_venv=base,
        base_site=base / "lib" / "python3.11" / "site-packages",
        family=(("torch", "2.9.1+cpu"),),
        family_modules=("torch",),
        stubs=("torch-2.9.1+cpu.dist-info",),
        scripts=(),
        constraints=venv / "layerenv-constraints.txt",
    )
    (venv / "layerenv.json").write_text(json.dumps(record.to_json()), encoding="utf-8")
    return venv


def clean_env(**extra: str) -> dict[str, str]:
    """No activated venv, no installer settings: what a fresh terminal gives."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONHOME", "CONDA_PREFIX") and not k.startswith(("PIP_", "UV_", "POETRY_"))
    }
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def layerenv_argv(*args: str) -> list[str]:
    return [sys.executable, "-c", CONSOLE_SCRIPT, *args]


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        layerenv_argv(*args), cwd=cwd, env=env or clean_env(), capture_output=True, text=True, timeout=60,
        check=False, **kwargs,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    project = tmp_path / "repo"
    (project / "src" / "deep").mkdir(parents=True)
    linked_venv(project)
    return project


def test_exit_code_passes_through_from_below_the_project(project: Path) -> None:
    result = run(["run", "sh", "-c", "exit 7"], project / "src" / "deep")
    assert (result.returncode, result.stderr) == (7, "")


def test_the_command_is_the_process_itself(project: Path) -> None:
    """exec, not a child: the command has layerenv's pid, and a signal that kills it is the caller's to see."""
    process = subprocess.Popen(
        layerenv_argv("run", "sh", "-c", "echo $$; kill -TERM $$"), cwd=project, env=clean_env(),
        stdout=subprocess.PIPE, text=True,
    )
    out, _ = process.communicate(timeout=60)
    assert out.strip() == str(process.pid)
    assert process.returncode == -signal.SIGTERM


def test_sigint_reaches_the_command(project: Path) -> None:
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGINT, lambda *a: sys.exit(42))\n"
        "print('ready', flush=True)\ntime.sleep(60)\n"
    )
    process = subprocess.Popen(
        layerenv_argv("run", sys.executable, "-c", code), cwd=project, env=clean_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n"
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 42
    assert process.stderr is not None and process.stderr.read() == ""  # no "layerenv: interrupted": not ours
    process.stdout.close()
    process.stderr.close()


def test_a_closed_pipe_ends_the_command_as_it_would_alone(project: Path) -> None:
    """Python ignores SIGPIPE; the command gets it back, so ``layerenv run yes | head -1`` ends."""
    process = subprocess.Popen(
        layerenv_argv("run", "yes"), cwd=project, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline() == b"y\n"
    process.stdout.close()
    assert process.wait(timeout=60) == -signal.SIGPIPE
    assert process.stderr.read() == b""
    process.stderr.close()


def test_stdin_is_the_commands(project: Path) -> None:
    result = run(["run", sys.executable, "-c", "import sys; print(sys.stdin.read().upper())"], project,
                 input="piped in\n")
    assert (result.returncode, result.stdout) == (0, "PIPED IN\n\n")


def test_the_terminal_is_the_commands(project: Path) -> None:
    leader, follower = pty.openpty()
    try:
        code = "import os, sys; print(os.isatty(0), os.isatty(1), os.ttyname(0) == os.ttyname(1))"
        process = subprocess.Popen(layerenv_argv("run", sys.executable, "-c", code), cwd=project,
                                   env=clean_env(), stdin=follower, stdout=follower, stderr=follower)
        os.close(follower)
        assert process.wait(timeout=60) == 0
        assert os.read(leader, 1024).decode().strip() == "True True True"
    finally:
        os.close(leader)


def test_without_an_activated_venv_the_command_gets_the_venvs_variables(project: Path) -> None:
    venv = project / ".venv"
    ours = str(venv / "layerenv-constraints.txt")
    env = clean_env(UV_CONSTRAINT="/theirs/uv.txt", PIP_CONSTRAINT="/theirs/pip.txt")
    result = run(["run", sys.executable, "-c", SHOW_ENV], project / "src", env)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["VIRTUAL_ENV"] == str(venv)
    assert seen["UV_CONSTRAINT"] == f"{ours} /theirs/uv.txt"
    assert seen["PIP_CONSTRAINT"] == f"{ours} /theirs/pip.txt"
    assert seen["PATH"] == f"{venv / 'bin'}{os.pathsep}{env['PATH']}"


def test_the_fast_path_and_the_click_command_give_the_same_environment(project: Path) -> None:
    fast = run(["run", "--", sys.executable, "-c", SHOW_ENV], project)
    click = subprocess.run(
        [sys.executable, "-c", "from layerenv.cli.main import main; main()", "run", sys.executable, "-c", SHOW_ENV],
        cwd=project, env=clean_env(), capture_output=True, text=True, timeout=60, check=False,
    )
    assert fast.returncode == click.returncode == 0, fast.stderr + click.stderr
    assert json.loads(fast.stdout) == json.loads(click.stdout)


def test_the_fast_path_imports_no_click_no_pathlib_no_typing(project: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", CONSOLE_SCRIPT, "run", "true"],
        cwd=project, env=clean_env(), capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "layerenv.project.run_env" in imported
    assert not imported & {"click", "pathlib", "typing", "json", "re", "enum", "packaging", "layerenv.project.link",
                           "collections", "warnings"}  # os.execvpe imports warnings; collections.abc, collections


def test_no_project_venv_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run(["run", "true"], tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        f"layerenv: error: no layerenv project venv at or above {tmp_path}; run `layerenv project` first\n"
    )


def test_a_missing_command_is_one_line_and_exit_2(project: Path) -> None:
    result = run(["run", "no-such-command-here", "--flag"], project)
    assert (result.returncode, result.stderr) == (2, "layerenv: error: command not found: no-such-command-here\n")


def test_a_file_that_cannot_run_is_one_line_and_exit_2(project: Path) -> None:
    (project / "notes.txt").write_text("not a program\n")
    result = run(["run", "./notes.txt"], project)
    assert (result.returncode, result.stderr) == (2, "layerenv: error: cannot run ./notes.txt: Permission denied\n")


def test_an_unreadable_record_is_named_by_the_full_reader(project: Path) -> None:
    record = project / ".venv" / "layerenv.json"
    record.write_text("{not json")
    result = run(["run", "true"], project)
    assert result.returncode == 1
    assert result.stderr.startswith(f"layerenv: error: {record} is unreadable (") and result.stderr.count("\n") == 1
    record.write_text(json.dumps({"base_id": "b1"}))  # JSON, but not a link record
    result = run(["run", "true"], project)
    assert result.returncode == 1 and f"{record} is unreadable (" in result.stderr


def test_help_and_a_missing_command_go_to_click(project: Path) -> None:
    helped = run(["run", "--help"], project)
    assert helped.returncode == 0 and "Run a command inside the project's layered venv" in helped.stdout
    bare = run(["run"], project)
    assert bare.returncode == 2 and bare.stderr.startswith("layerenv: error: Missing argument")
