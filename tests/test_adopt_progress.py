"""``layerenv base --adopt``: processes adopting one environment at once hash it once; long steps show
progress on a terminal and nothing elsewhere."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import layerenv_env, run_layerenv
from tests.support.pytest_fixtures import VariantIndexes
from tests.support.venvs import venv_with_pip
from tests.test_first_run_cli import in_terminal

pytestmark = pytest.mark.slow

PROGRESS = re.compile(r"\r\x1b\[K  hashing: (\d+)/(\d+) files, \d+\.\ds")


@pytest.fixture
def torch_venv(tmp_path: Path, installer_env: dict[str, str], variant_indexes: VariantIndexes) -> Path:
    """A virtualenv with a (fake) cu130 torch installed by pip, as a machine image would have it."""
    venv = tmp_path / "existing"
    venv_with_pip(venv, installer_env)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--index-url", variant_indexes.url("cu130")]
    subprocess.run([*pip, "torch==2.11.0+cu130"], check=True, env=installer_env)
    return venv


@pytest.fixture
def env(tmp_path: Path, installer_env: dict[str, str]) -> dict[str, str]:
    return layerenv_env(tmp_path / "home", base_env=installer_env, machine="h100-580")


def test_concurrent_adoptions_of_one_environment_hash_it_once(tmp_path: Path, torch_venv: Path, env: dict[str, str]) -> None:
    argv = [sys.executable, "-m", "layerenv", "base", "--adopt", str(torch_venv), "--json"]
    processes = [
        subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert [process.returncode for process in processes] == [0] * 6, [err for _, err in outputs]
    ids = {json.loads(out)["base_id"] for out, _ in outputs}
    assert len(ids) == 1 and ids.pop().endswith("-torch2.11.0-cu130-adopted")
    stderrs = [err for _, err in outputs]
    assert sum("hashing the files of" in err for err in stderrs) == 1, stderrs
    assert sum("inspecting torch in" in err for err in stderrs) == 1, "the waiters do not even import torch"
    assert sum("and is unchanged since; reusing it" in err for err in stderrs) == 5, stderrs
    assert len(list((tmp_path / "home" / "bases").iterdir())) == 1


def test_an_adopted_environment_that_changed_is_adopted_again(tmp_path: Path, torch_venv: Path, env: dict[str, str]) -> None:
    first = run_layerenv(["base", "--adopt", str(torch_venv)], env, tmp_path)
    assert first.returncode == 0, first.stderr
    again = run_layerenv(["base", "--adopt", str(torch_venv)], env, tmp_path)
    assert "adopted before as" in again.stderr and "hashing" not in again.stderr, again.stderr
    forced = run_layerenv(["base", "--adopt", str(torch_venv), "--rebuild"], env, tmp_path)
    assert forced.returncode == 0 and "hashing the files of" in forced.stderr, forced.stderr
    version_py = next((torch_venv / "lib").glob("python*/site-packages/torch/version.py"))
    with version_py.open("a") as handle:
        handle.write("# patched after adoption\n")
    changed = run_layerenv(["base", "--adopt", str(torch_venv)], env, tmp_path)
    assert changed.returncode == 0, changed.stderr
    assert "hashing the files of" in changed.stderr and "already differ from their RECORD" in changed.stderr


def test_hashing_shows_files_done_on_a_terminal_and_nothing_when_piped(
    tmp_path: Path, torch_venv: Path, env: dict[str, str]
) -> None:
    argv = [sys.executable, "-m", "layerenv", "base", "--adopt", str(torch_venv)]
    status, shown = in_terminal(argv, env, tmp_path, "")
    assert status == 0, shown
    counts = [(int(done), int(total)) for done, total in PROGRESS.findall(shown)]
    assert counts, shown
    assert counts[-1][0] == counts[-1][1] > 0, "the line ends with every file hashed"
    assert "  importing torch and running a kernel: " in shown

    quiet_status, quiet = in_terminal([*argv, "--rebuild", "-q"], env, tmp_path, "")
    assert quiet_status == 0 and "\r" not in quiet and "hashing:" not in quiet, quiet
    piped = run_layerenv(["base", "--adopt", str(torch_venv), "--rebuild"], env, tmp_path)
    assert piped.returncode == 0 and "hashing the files of" in piped.stderr, piped.stderr
    assert "\r" not in piped.stderr and "hashing:" not in piped.stderr, piped.stderr
