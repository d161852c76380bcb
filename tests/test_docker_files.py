"""The Dockerfile and its entrypoint: what they reference exists, and the entrypoint's start-up check works.

No container engine runs here, so the image itself is not built; docker/entrypoint.sh is run for real,
with the real ``layerenv`` on PATH, against a store built for a forced variant on a replayed machine.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import REPO, layerenv_env, run_layerenv

DOCKERFILE = REPO / "Dockerfile"
ENTRYPOINT = REPO / "docker" / "entrypoint.sh"


def instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of the Dockerfile, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    result = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            word, _, rest = stripped.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def stages() -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for word, rest in instructions():
        if word == "FROM":
            image, _, name = rest.partition(" AS ")
            current = [("FROM", image.strip())]
            found[name.strip()] = current
        else:
            current.append((word, rest))
    return found


def test_dockerfile_stages_and_args() -> None:
    found = stages()
    assert list(found) == ["base", "app"]
    base, app = found["base"], found["app"]
    assert base[0] == ("FROM", "python:3.12-slim")
    assert app[0] == ("FROM", "base")
    assert ("ARG", "TORCH_VARIANT=cu128") in base
    assert ("COPY", ". /src") in base
    assert any(word == "RUN" and "pip install /src" in rest for word, rest in base)
    env = " ".join(rest for word, rest in base if word == "ENV")
    assert "LAYERENV_HOME=/opt/layerenv" in env and "LAYERENV_VARIANT=${TORCH_VARIANT}" in env
    assert ("RUN", 'layerenv base --variant "$TORCH_VARIANT"') in base
    assert ("ARG", "APP_DIR=examples/hello") in app
    assert ("COPY", "${APP_DIR} /app") in app
    assert ("RUN", "layerenv project /app") in app
    assert ("WORKDIR", "/app") in app
    assert ("ENTRYPOINT", '["layerenv-entrypoint"]') in app
    assert ("CMD", '["python", "main.py"]') in app


def test_dockerfile_references_files_that_exist() -> None:
    for word, rest in instructions():
        if word == "COPY":
            source = rest.split()[0].replace("${APP_DIR}", "examples/hello")
            assert (REPO / source).exists(), source
    assert (REPO / "examples" / "hello" / "main.py").is_file()
    assert ENTRYPOINT.is_file() and os.access(ENTRYPOINT, os.X_OK)
    # the variant named as the default is one layerenv knows
    from layerenv.choice.table import load_matrix

    assert "cu128" in load_matrix().variant_names
    assert (REPO / "docs" / "docker.md").is_file()


def test_entrypoint_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(ENTRYPOINT)], check=True)


# --- the entrypoint's logic, with a stub layerenv: exit codes and what runs ---


def _stub(bin_dir: Path, doctor_exit: int) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    log = bin_dir / "calls.log"
    stub = bin_dir / "layerenv"
    stub.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$*" >> {log}\n'
        'if [ "$1" = doctor ]; then echo "problem: base X no longer fits this machine -> fix: Y"; '
        f"exit {doctor_exit}; fi\n"
        'echo "ran: $*"\n'
    )
    stub.chmod(0o755)
    return log


def _entrypoint(bin_dir: Path, args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    return subprocess.run(["bash", str(ENTRYPOINT), *args], env=full, capture_output=True, text=True, check=False)


@pytest.mark.parametrize(
    ("doctor_exit", "mode", "code", "runs"),
    [
        (0, None, 0, True),
        (1, None, 1, False),
        (1, "strict", 1, False),
        (1, "warn", 0, True),
        (1, "off", 0, True),
        (2, None, 2, False),
    ],
)
def test_entrypoint_exit_codes_with_stub(
    tmp_path: Path, doctor_exit: int, mode: str | None, code: int, runs: bool
) -> None:
    log = _stub(tmp_path / "bin", doctor_exit)
    result = _entrypoint(tmp_path / "bin", [], {"LAYERENV_DOCTOR": mode} if mode else None)
    assert result.returncode == code, result.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == "doctor" or mode == "off"
    assert (calls[-1] == "run -- python main.py") is runs
    assert ("ran: run -- python main.py" in result.stdout) is runs
    if doctor_exit and mode != "off":
        assert "problem: base X no longer fits" in result.stderr
    if not runs:
        assert result.stderr.splitlines()[-1].startswith("layerenv: error: ")


def test_entrypoint_passes_arguments_and_refuses_bad_mode(tmp_path: Path) -> None:
    log = _stub(tmp_path / "bin", 0)
    result = _entrypoint(tmp_path / "bin", ["python", "-c", "print('a b')"])
    assert result.returncode == 0
    assert log.read_text().splitlines()[-1] == "run -- python -c print('a b')"
    bad = _entrypoint(tmp_path / "bin", [], {"LAYERENV_DOCTOR": "maybe"})
    assert bad.returncode == 2 and bad.stderr.startswith("layerenv: error: LAYERENV_DOCTOR='maybe'")


# --- for real: the image's steps against a replayed machine, then the entrypoint on two hosts ---


@pytest.mark.slow
def test_entrypoint_for_real_on_replayed_hosts(
    tmp_path: Path, installer_env: dict[str, str], variant_indexes
) -> None:  # type: ignore[no-untyped-def]
    """As in the image: base with a forced cu128 on a GPU-less builder, project, then the entrypoint."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    real = bin_dir / "layerenv"
    real.write_text(f"#!{sys.executable}\nfrom layerenv.entry import main\nmain()\n")
    real.chmod(0o755)
    build_env = layerenv_env(
        tmp_path / "store",
        base_env={**installer_env, "PIP_INDEX_URL": variant_indexes.pypi_url},
        machine="no-gpu",
        extra={"LAYERENV_INDEX_URL": variant_indexes.url_template, "LAYERENV_VARIANT": "cu128"},
    )
    build_env["PATH"] = f"{bin_dir}{os.pathsep}{build_env['PATH']}"
    built = run_layerenv(["base", "--variant", "cu128"], build_env, tmp_path)
    assert built.returncode == 0, built.stderr
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text("import torch\nprint('torch', torch.__version__)\n")
    (app / "requirements.txt").write_text("plain-lib\n")
    layered = run_layerenv(["project", str(app)], build_env, tmp_path)
    assert layered.returncode == 0, layered.stderr

    def start(machine: str, **extra: str) -> subprocess.CompletedProcess[str]:
        env = {**build_env, "LAYERENV_SYSROOT": str(REPO / "tests" / "fixtures" / "machines" / machine), **extra}
        return subprocess.run(["bash", str(ENTRYPOINT)], env=env, cwd=app, capture_output=True, text=True, check=False)

    on_h100 = start("h100-580")  # driver 580, sm_90: the cu128 build fits
    assert on_h100.returncode == 0, on_h100.stderr
    assert on_h100.stdout.strip() == "torch 2.9.1+cu128"
    on_v100 = start("v100-535")  # sm_70: the (fake) cu128 build carries sm_75 .. sm_120 only
    assert on_v100.returncode == 1 and on_v100.stdout == ""
    assert "its build serves no kernels for GPU 0" in on_v100.stderr, on_v100.stderr
    on_cpu_host = start("no-gpu")  # e.g. `docker run` without --gpus: no driver for a CUDA build
    assert on_cpu_host.returncode == 1
    assert "no longer fits this machine: CUDA 12.8 needs NVIDIA driver" in on_cpu_host.stderr, on_cpu_host.stderr
    assert on_cpu_host.stderr.splitlines()[-1].startswith("layerenv: error: ")
    assert on_cpu_host.stdout == ""
    warned = start("no-gpu", LAYERENV_DOCTOR="warn")
    assert warned.returncode == 0, warned.stderr
    assert warned.stdout.strip() == "torch 2.9.1+cu128" and "starting anyway" in warned.stderr
