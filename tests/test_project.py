"""``layerenv project`` / ``run`` / ``shell`` end to end, with real pip over local indexes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import layerenv_env, run_layerenv, tree_digest
from tests.support.index import isolated_installer_env
from tests.support.pytest_fixtures import fresh_installer_caches

# one worker runs the module (scripts/test.sh: --dist loadgroup), so builds its shared base once
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cpu-base-store:test_project")]


@pytest.fixture
def project_env(tmp_path: Path, installer_env: dict[str, str], variant_indexes):  # type: ignore[no-untyped-def]
    """A store, a replayed CPU machine, torch from the variant index, other packages from "PyPI"."""
    return layerenv_env(
        tmp_path / "home",
        base_env={**installer_env, "PIP_INDEX_URL": variant_indexes.pypi_url},
        machine="no-gpu",
        extra={"LAYERENV_INDEX_URL": variant_indexes.url_template},
    )


@pytest.fixture(scope="module")
def built_store(tmp_path_factory: pytest.TempPathFactory, variant_indexes) -> Path:  # type: ignore[no-untyped-def]
    """A store whose CPU base is built once for the module, for the tests that only read the base."""
    root = tmp_path_factory.mktemp("project-store")
    env = _env(root / "home", root / "caches", variant_indexes)
    built = run_layerenv(["base"], env, root)
    assert built.returncode == 0, built.stderr
    return root / "home"


@pytest.fixture
def shared_env(tmp_path: Path, built_store: Path, variant_indexes):  # type: ignore[no-untyped-def]
    """As ``project_env``, in the module's store with its base already built; this test's own empty
    installer caches."""
    return _env(built_store, tmp_path / "caches", variant_indexes)


def _env(home: Path, caches: Path, variant_indexes) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return layerenv_env(
        home,
        base_env={**isolated_installer_env(), **fresh_installer_caches(caches), "PIP_INDEX_URL": variant_indexes.pypi_url},
        machine="no-gpu",
        extra={"LAYERENV_INDEX_URL": variant_indexes.url_template},
    )


def imports(venv: Path, code: str) -> str:
    return subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_project_builds_base_then_layers_and_is_idempotent(tmp_path: Path, project_env) -> None:  # type: ignore[no-untyped-def]
    project = tmp_path / "repo"
    project.mkdir()
    (project / "requirements.txt").write_text("needs-torch\nplain-lib==1.0\n")
    first = run_layerenv(["project", str(project)], project_env, tmp_path)
    assert first.returncode == 0, first.stderr
    assert "building it first" in first.stderr and "updated" in first.stdout
    venv = project / ".venv"
    torch_file = imports(venv, "import torch; print(torch.__file__)")
    assert torch_file.startswith(str(tmp_path / "home" / "bases"))
    assert imports(venv, "import importlib.metadata as m; print(m.version('torch'))") == "2.9.1+cpu"
    assert imports(venv, "import plain_lib; print(plain_lib.__file__)").startswith(str(venv))
    listed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
        env=project_env,
    ).stdout
    assert {p["name"]: p["version"] for p in json.loads(listed)}["torch"] == "2.9.1+cpu"
    registry = list((tmp_path / "home" / "registry").glob("*.json"))
    assert len(registry) == 1 and json.loads(registry[0].read_text())["venv"] == str(venv)

    before = tree_digest(venv)
    again = run_layerenv(["project", str(project)], project_env, tmp_path)
    assert again.returncode == 0 and "up to date" in again.stdout
    assert tree_digest(venv) == before

    ran = run_layerenv(
        ["run", "python", "-c", "import torch, os; print(torch.__version__, os.environ['UV_CONSTRAINT'])"],
        project_env,
        project,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("2.9.1+cpu ") and "layerenv-constraints.txt" in ran.stdout
    shell = run_layerenv(["shell"], project_env, project)
    assert shell.stdout.strip() == f"source {venv}/bin/activate"


def test_conflicting_torch_requirement_changes_nothing(tmp_path: Path, shared_env) -> None:  # type: ignore[no-untyped-def]
    project = tmp_path / "repo"
    project.mkdir()
    (project / "requirements.txt").write_text("plain-lib\n")
    assert run_layerenv(["project", str(project)], shared_env, tmp_path).returncode == 0
    venv = project / ".venv"
    before = tree_digest(venv)
    (project / "requirements.txt").write_text("plain-lib\ntorch==2.5.1\n")
    result = run_layerenv(["project", str(project)], shared_env, tmp_path)
    assert result.returncode == 1
    assert "requirements.txt:2: torch==2.5.1 conflicts with the base" in result.stderr
    assert "2.9.1+cpu" in result.stderr and "Traceback" not in result.stderr
    assert tree_digest(venv) == before


def test_pip_in_the_project_refuses_another_torch(tmp_path: Path, shared_env) -> None:  # type: ignore[no-untyped-def]
    project = tmp_path / "repo"
    project.mkdir()
    assert run_layerenv(["project", str(project)], shared_env, tmp_path).returncode == 0
    venv = project / ".venv"
    env = {k: v for k, v in shared_env.items() if k != "PIP_CONFIG_FILE"}  # the venv's pip.conf must apply
    before = tree_digest(venv / "lib")
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "pins-old-torch"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode != 0 and "ResolutionImpossible" in result.stderr
    assert tree_digest(venv / "lib") == before
    needs = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "needs-torch"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert needs.returncode == 0 and "Successfully installed needs-torch-1.0" in needs.stdout
    assert "Installing collected packages: needs-torch\n" in needs.stdout, needs.stdout


@pytest.mark.parametrize("fault", ["project:after-install", "project:before-swap", "project:after-swap"])
def test_kill_9_while_updating_keeps_a_working_venv(tmp_path: Path, shared_env, fault: str) -> None:  # type: ignore[no-untyped-def]
    project = tmp_path / "repo"
    project.mkdir()
    (project / "requirements.txt").write_text("plain-lib\n")
    assert run_layerenv(["project", str(project)], shared_env, tmp_path).returncode == 0
    (project / "requirements.txt").write_text("plain-lib\nneeds-torch\n")
    killed = run_layerenv(
        ["project", str(project)], {**shared_env, "LAYERENV_FAULTS_ENABLED": "1", "LAYERENV_FAULT": fault}, tmp_path
    )
    assert killed.returncode == -9
    venv = project / ".venv"
    if venv.exists():
        assert imports(venv, "import torch, plain_lib; print(torch.__version__)") == "2.9.1+cpu"
    done = run_layerenv(["project", str(project)], shared_env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert imports(venv, "import torch, needs_torch; print(torch.__version__)") == "2.9.1+cpu"
    assert sorted(p.name for p in project.iterdir()) == [".venv", "requirements.txt"]


def test_bad_project_input(tmp_path: Path, project_env) -> None:  # type: ignore[no-untyped-def]
    file_path = tmp_path / "file.txt"
    file_path.write_text("x")
    project = tmp_path / "repo"
    project.mkdir()
    (project / "requirements.txt").write_text("plain-lib\nnot a requirement!!\n")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "pyproject.toml").write_text("[project\nname=")
    for args, expected in [
        (["project", str(file_path)], "is not a directory"),
        (["project", str(tmp_path / "missing")], "does not exist"),
        (["project", str(project)], "requirements.txt:2"),
        (["project", str(broken)], "not valid TOML"),
        (["project", str(project), "--extra", "gpu"], "requirements.txt:2"),
    ]:
        result = run_layerenv(args, project_env, tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (project / ".venv").exists() and not (broken / ".venv").exists()

    foreign = tmp_path / "foreign"
    (foreign / ".venv").mkdir(parents=True)
    (foreign / ".venv" / "keep.txt").write_text("the user's own venv")
    result = run_layerenv(["project", str(foreign)], project_env, tmp_path)
    assert result.returncode == 2 and "was not made by layerenv" in result.stderr
    assert (foreign / ".venv" / "keep.txt").read_text() == "the user's own venv"
    assert not (tmp_path / "home" / "bases").exists() or not any((tmp_path / "home" / "bases").iterdir())
