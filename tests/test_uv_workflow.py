"""uv's project commands (``uv add``, ``uv sync``, ``uv run``, ``uv lock``) and ``layerenv sync`` /
``layerenv project`` with each kind of lock, for real: uv and poetry from .venv-dev against a served
PyPI-like index whose torch is unlabelled (2.5.1, needing an ``nvidia-*`` wheel on Linux), beside the
base's labelled ``2.9.1+cpu``. Each test counts the index server's wheel downloads: no torch-family
wheel may be fetched, and the lock files must be byte for byte what the tool writes by itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from layerenv.venv.distinfo import canonical_name, is_family
from tests.support.cli import layerenv_env, run_layerenv, tree_digest
from tests.support.index import add_to_index, isolated_installer_env
from tests.support.pytest_fixtures import CpuBaseStore, ServedIndexes, fresh_installer_caches
from tests.support.wheels import build_plain_package

# one worker runs the module (scripts/test.sh: --dist loadgroup), so builds its base once
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cpu-base-store:test_uv_workflow")]

UV = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
POETRY = shutil.which("poetry") or str(Path(sys.executable).parent / "poetry")

PYPROJECT = """[project]
name = "demo"
version = "0.1.0"
requires-python = ">=3.10"
dependencies = {dependencies}

[dependency-groups]
dev = ["plain-lib"]

[[tool.uv.index]]
url = "{index}"
default = true
"""


def uv_project(directory: Path, index: str, dependencies: list[str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    deps = "[" + ", ".join(f'"{d}"' for d in dependencies) + "]"
    (directory / "pyproject.toml").write_text(PYPROJECT.format(dependencies=deps, index=index))
    return directory


def _world(home: Path, tmp_path: Path, served: ServedIndexes) -> dict[str, str]:
    base_env = {k: v for k, v in isolated_installer_env().items() if not k.startswith("POETRY_")}
    base_env.pop("VIRTUAL_ENV", None)
    base_env.update(fresh_installer_caches(tmp_path / "caches"), PIP_INDEX_URL=served.pypi_url,
                    UV_DEFAULT_INDEX=served.pypi_url, POETRY_VIRTUALENVS_CREATE="false")
    return layerenv_env(home, base_env=base_env, machine="no-gpu", extra={"LAYERENV_INDEX_URL": served.url_template})


@pytest.fixture
def world(tmp_path: Path, cpu_base_store: CpuBaseStore):  # type: ignore[no-untyped-def]
    """A CPU base (torch 2.9.1+cpu), built once for the module (projects only read it); project packages
    from the served PyPI-like index; this test's own empty pip/uv/poetry caches; the download log empty."""
    cpu_base_store.served.server.reset()
    return _world(cpu_base_store.home, tmp_path, cpu_base_store.served), cpu_base_store.served


@pytest.fixture
def own_world(tmp_path: Path, served_indexes: ServedIndexes):  # type: ignore[no-untyped-def]
    """As ``world``, in a store of this test's own: for a test that looks at the whole store (doctor)."""
    env = _world(tmp_path / "home", tmp_path, served_indexes)
    built = run_layerenv(["base"], env, tmp_path)
    assert built.returncode == 0, built.stderr
    served_indexes.server.reset()
    return env, served_indexes


def store(env: Mapping[str, str]) -> Path:
    """The store (LAYERENV_HOME) the test's layerenv commands use."""
    return Path(env["LAYERENV_HOME"])


def layered(project: Path, env: Mapping[str, str]) -> Path:
    made = run_layerenv(["project", str(project)], env, project.parent)
    assert made.returncode == 0, made.stderr
    return project / ".venv"


def activated(project: Path, command: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """``command`` in a bash that sourced the project's activate script, as a user types it."""
    return subprocess.run(["bash", "-c", f"source .venv/bin/activate && {command}"], cwd=project, env=dict(env),
                          capture_output=True, text=True, check=False, timeout=300)


def plain(argv: list[str], cwd: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """A tool as it runs with no layerenv around: no activation, no constraints, no venv."""
    clean = {k: v for k, v in env.items() if k not in ("VIRTUAL_ENV", "UV_CONSTRAINT", "PIP_CONSTRAINT")}
    return subprocess.run(argv, cwd=cwd, env=clean, capture_output=True, text=True, check=False, timeout=300)


def family_fetched(served) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(name for name in served.server.wheel_downloads() if is_family(canonical_name(name.split("-")[0])))


def assert_layered_clean(venv: Path, home: Path) -> None:
    """No torch-family files in the project but the stubs; ``import torch`` is the base's."""
    site = next((venv / "lib").glob("python*/site-packages"))
    for dist_info in site.glob("*.dist-info"):
        name = canonical_name(dist_info.name.rsplit("-", 1)[0])
        if is_family(name):
            assert (dist_info / "LAYERENV_STUB").is_file(), f"{dist_info.name} is a real install"
    for module in ("torch", "torchvision", "nvidia", "triton"):
        assert not (site / module).exists(), f"{site / module} was written into the project"
    torch = subprocess.run([str(venv / "bin" / "python"), "-c", "import torch; print(torch.__version__, torch.__file__)"],
                           capture_output=True, text=True, check=True).stdout.split()
    assert torch[0] == "2.9.1+cpu" and torch[1].startswith(str(home / "bases"))


def as_uv_writes_it(project: Path, env: Mapping[str, str], tmp: Path) -> bytes:
    """The uv.lock plain ``uv lock`` writes for the project's pyproject.toml, in a copy with no venv."""
    copy = tmp / "plain-copy"
    shutil.rmtree(copy, ignore_errors=True)
    copy.mkdir()
    shutil.copy(project / "pyproject.toml", copy / "pyproject.toml")
    done = plain([UV, "lock"], copy, env)
    assert done.returncode == 0, done.stderr
    return (copy / "uv.lock").read_bytes()


def installed(venv: Path) -> dict[str, str]:
    site = next((venv / "lib").glob("python*/site-packages"))
    stems = [d.name.removesuffix(".dist-info") for d in site.glob("*.dist-info") if not (d / "LAYERENV_STUB").is_file()]
    return {canonical_name(stem.rsplit("-", 1)[0]): stem.rsplit("-", 1)[1] for stem in stems}


# --------------------------------------------------------------------------- uv, activated


def test_uv_add_in_an_activated_shell(tmp_path: Path, world) -> None:  # type: ignore[no-untyped-def]
    env, served = world
    project = uv_project(tmp_path / "demo", served.pypi_url, [])
    venv = layered(project, env)
    twin = tmp_path / "twin"
    shutil.copytree(project, twin, ignore=shutil.ignore_patterns(".venv"))
    served.server.reset()
    done = activated(project, "uv add needs-torch", env)
    assert done.returncode == 0, done.stderr
    assert family_fetched(served) == []
    assert installed(venv)["needs-torch"] == "1.0"
    assert_layered_clean(venv, store(env))
    # pyproject.toml and uv.lock exactly as plain `uv add` writes them (no +cpu, no machine path)
    assert plain([UV, "add", "--no-sync", "needs-torch"], twin, env).returncode == 0
    assert (project / "pyproject.toml").read_bytes() == (twin / "pyproject.toml").read_bytes()
    assert (project / "uv.lock").read_bytes() == (twin / "uv.lock").read_bytes()
    assert b"+cpu" not in (project / "uv.lock").read_bytes()


def test_uv_add_a_package_needing_another_torch_stops_before_downloading(tmp_path: Path, world) -> None:  # type: ignore[no-untyped-def]
    env, served = world
    project = uv_project(tmp_path / "demo", served.pypi_url, ["plain-lib"])
    venv = layered(project, env)
    assert activated(project, "uv lock", env).returncode == 0
    before = {name: (project / name).read_bytes() for name in ("pyproject.toml", "uv.lock")}
    venv_before = tree_digest(venv / "lib")
    served.server.reset()
    done = activated(project, "uv add pins-old-torch", env)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("layerenv: error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr
    assert "pins-old-torch 1.0 requires torch==2.5.1" in errors[0] and "torch 2.9.1+cpu" in errors[0]
    assert "[torch] version" in errors[0] and "layerenv project" in errors[0]
    assert served.server.wheel_downloads() == {}
    assert {name: (project / name).read_bytes() for name in before} == before
    assert tree_digest(venv / "lib") == venv_before


def test_uv_sync_in_an_activated_shell_installs_the_lock_and_removes_what_it_dropped(tmp_path: Path, world) -> None:  # type: ignore[no-untyped-def]
    env, served = world
    project = uv_project(tmp_path / "demo", served.pypi_url, ["needs-torch"])
    venv = layered(project, env)  # the first layerenv project locks nothing: no uv.lock yet
    served.server.reset()
    done = activated(project, "uv sync", env)
    assert done.returncode == 0, done.stderr
    assert "layerenv sync" in done.stderr
    assert family_fetched(served) == []
    assert {"needs-torch", "plain-lib"} <= set(installed(venv))
    assert_layered_clean(venv, store(env))
    assert (project / "uv.lock").read_bytes() == as_uv_writes_it(project, env, tmp_path)

    # a package installed by hand stays; one the lock no longer pins goes, by name
    add_to_index(served.root / "pypi", [build_plain_package(tmp_path / "wheels", "hand-made", "1.0")])
    assert activated(project, "uv pip install hand-made", env).returncode == 0
    uv_project(project, served.pypi_url, [])
    again = activated(project, "uv sync", env)
    assert again.returncode == 0, again.stderr
    assert "removing needs-torch" in again.stderr
    assert "needs-torch" not in installed(venv) and {"plain-lib", "hand-made"} <= set(installed(venv))
    assert (project / "uv.lock").read_bytes() == as_uv_writes_it(project, env, tmp_path)
    assert_layered_clean(venv, store(env))


UP_TO_DATE = "layerenv: sync: up to date (the lock, pyproject and venv as the last sync left them)"


def test_uv_sync_with_nothing_changed_answers_at_once_and_anything_changed_syncs(tmp_path: Path, world) -> None:  # type: ignore[no-untyped-def]
    env, served = world
    locked = _make_lock("uv.lock", tmp_path / "locked", env, served.pypi_url)
    project = tmp_path / "demo"
    project.mkdir()
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy(locked.parent / name, project / name)
    venv = layered(project, env)  # synced in a staging venv, then moved into place
    lock, before = (project / "uv.lock").read_bytes(), tree_digest(venv)
    served.server.reset()
    for command in ("uv sync --frozen", "uv sync", "uv sync --locked"):
        done = activated(project, command, env)
        assert done.returncode == 0, done.stderr
        assert done.stderr.strip() == UP_TO_DATE, (command, done.stderr)
    assert tree_digest(venv) == before and (project / "uv.lock").read_bytes() == lock
    assert served.server.wheel_downloads() == {}

    # by hand: a locked package removed; then another selection: each a full sync
    assert activated(project, "uv pip uninstall plain-lib", env).returncode == 0
    repaired = activated(project, "uv sync", env)
    assert repaired.returncode == 0, repaired.stderr
    assert "installed 1, removed 0" in repaired.stderr and installed(venv)["plain-lib"] == "1.0"
    narrower = activated(project, "uv sync --no-dev", env)
    assert "removing plain-lib" in narrower.stderr and "plain-lib" not in installed(venv)
    assert activated(project, "uv sync --no-dev", env).stderr.strip() == UP_TO_DATE
    assert (project / "uv.lock").read_bytes() == lock and family_fetched(served) == []
    assert_layered_clean(venv, store(env))


def test_uv_sync_option_layerenv_cannot_honour_is_one_line(tmp_path: Path, world) -> None:  # type: ignore[no-untyped-def]
    env, served = world
    project = uv_project(tmp_path / "demo", served.pypi_url, [])
    layered(project, env)
    done = activated(project, "uv sync --inexact-nonsense", env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("layerenv: error: uv sync --inexact-nonsense: ")
    assert not (project / "uv.lock").exists()


def test_uv_run_in_an_activated_shell_syncs_first_then_runs_with_the_base_torch(tmp_path: Path, world) -> None:  # type: ignore[no-untyped-def]
    env, served = world
    project = uv_project(tmp_path / "demo", served.pypi_url, ["needs-torch"])
    venv = layered(project, env)
    served.server.reset()
    done = activated(project, "uv run python -c 'import torch, needs_torch; print(torch.__version__)'", env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2.9.1+cpu"
    assert family_fetched(served) == []
    assert_layered_clean(venv, store(env))
    assert (project / "uv.lock").read_bytes() == as_uv_writes_it(project, env, tmp_path)
    before = tree_digest(venv)
    second = activated(project, "uv run python -c 'print(1)'", env)  # nothing changed: no sync
    assert second.returncode == 0 and "layerenv" not in second.stderr
    assert tree_digest(venv) == before


def test_uv_lock_in_an_activated_shell_is_the_lock_uv_writes(tmp_path: Path, world) -> None:  # type: ignore[no-untyped-def]
    env, served = world
    project = uv_project(tmp_path / "demo", served.pypi_url, ["needs-torch"])
    layered(project, env)
    served.server.reset()
    done = activated(project, "uv lock", env)
    assert done.returncode == 0, done.stderr
    assert served.server.wheel_downloads() == {}
    text = (project / "uv.lock").read_bytes()
    assert text == as_uv_writes_it(project, env, tmp_path)
    assert b'name = "torch"\nversion = "2.5.1"' in text  # resolved from the index, not pinned to +cpu


# --------------------------------------------------------------------------- layerenv run


def test_uv_add_and_run_under_layerenv_run(tmp_path: Path, world) -> None:  # type: ignore[no-untyped-def]
    env, served = world
    project = uv_project(tmp_path / "demo", served.pypi_url, [])
    venv = layered(project, env)
    served.server.reset()
    added = run_layerenv(["run", "uv", "add", "needs-torch"], env, project)
    assert added.returncode == 0, added.stderr
    ran = run_layerenv(["run", "uv", "run", "python", "-c", "import torch, needs_torch; print(torch.__file__)"],
                       env, project)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip().startswith(str(store(env) / "bases"))
    assert family_fetched(served) == []
    assert_layered_clean(venv, store(env))


def test_uv_pip_still_reaches_the_real_uv_with_the_constraints(tmp_path: Path, world) -> None:  # type: ignore[no-untyped-def]
    env, served = world
    project = uv_project(tmp_path / "demo", served.pypi_url, [])
    venv = layered(project, env)
    served.server.reset()
    done = activated(project, "uv pip install needs-torch && uv --version", env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("uv ")
    assert installed(venv)["needs-torch"] == "1.0" and family_fetched(served) == []
    refused = activated(project, "uv pip install pins-old-torch", env)  # UV_CONSTRAINT as before
    assert refused.returncode != 0 and "pins-old-torch" not in installed(venv)


# --------------------------------------------------------------------------- no hook: caught after


def test_a_plain_uv_sync_outside_any_activation_is_caught_and_repaired(tmp_path: Path, own_world) -> None:  # type: ignore[no-untyped-def]
    env, served = own_world
    project = uv_project(tmp_path / "demo", served.pypi_url, ["needs-torch"])
    venv = layered(project, env)
    done = plain([UV, "sync"], project, env)  # uv has no hook here: it puts PyPI's torch into .venv
    assert done.returncode == 0, done.stderr
    assert family_fetched(served)
    doctor = run_layerenv(["doctor"], env, project)
    assert doctor.returncode == 1 and "torch 2.5.1" in doctor.stdout and "shadowing base" in doctor.stdout
    status = run_layerenv(["status", "--json"], env, project)
    assert '"state": "shadowed"' in status.stdout
    assert run_layerenv(["doctor", "--fix"], env, project).returncode == 0
    synced = run_layerenv(["sync"], env, project)
    assert synced.returncode == 0, synced.stderr
    assert_layered_clean(venv, store(env))
    assert run_layerenv(["doctor"], env, project).returncode == 0


# --------------------------------------------------------------------------- layerenv sync / project


def _make_lock(kind: str, project: Path, env: Mapping[str, str], index: str) -> Path:
    if kind == "poetry.lock":
        (project / "pyproject.toml").write_text(
            '[project]\nname = "demo"\nversion = "0.1.0"\nrequires-python = ">=3.10"\n'
            'dependencies = ["needs-torch", "plain-lib"]\n\n[tool.poetry]\npackage-mode = false\n\n'
            f'[[tool.poetry.source]]\nname = "local"\nurl = "{index}/"\npriority = "primary"\n'
        )
        done = plain([POETRY, "lock", "--no-interaction"], project, env)
    else:
        uv_project(project, index, ["needs-torch"])
        done = plain([UV, "lock"], project, env)
        if kind == "pylock.toml" and done.returncode == 0:
            done = plain([UV, "export", "--format", "pylock.toml", "-o", "pylock.toml", "--quiet"], project, env)
            (project / "uv.lock").unlink()
    assert done.returncode == 0, done.stderr
    return project / kind


@pytest.mark.parametrize("kind", ["uv.lock", "poetry.lock", "pylock.toml"])
def test_layerenv_project_installs_each_kind_of_lock_and_never_edits_it(tmp_path: Path, world, kind: str) -> None:  # type: ignore[no-untyped-def]
    env, served = world
    project = tmp_path / "demo"
    project.mkdir()
    lock = _make_lock(kind, project, env, served.pypi_url)
    before = lock.read_bytes()
    served.server.reset()
    venv = layered(project, env)
    assert family_fetched(served) == []
    assert {"needs-torch", "plain-lib"} <= set(installed(venv))
    assert_layered_clean(venv, store(env))
    assert lock.read_bytes() == before
    assert sorted(p.name for p in project.iterdir()) == sorted([".venv", "pyproject.toml", kind])


def test_layerenv_sync_checks_the_lock_hashes(tmp_path: Path, world) -> None:  # type: ignore[no-untyped-def]
    env, served = world
    project = tmp_path / "demo"
    project.mkdir()
    lock = _make_lock("uv.lock", project, env, served.pypi_url)
    venv = layered(project, env)
    uv_project(project, served.pypi_url, ["needs-torch", "pins-old-torch"])  # not locked: --frozen ignores it
    text = lock.read_text()
    digest = text.split('needs_torch-1.0-py3-none-any.whl", hash = "sha256:')[1][:64]
    lock.write_text(text.replace(digest, "0" * 64))
    for dist_info in next((venv / "lib").glob("python*/site-packages")).glob("needs_torch-*.dist-info"):
        shutil.rmtree(dist_info)
    done = run_layerenv(["sync", "--frozen"], env, project)
    assert done.returncode == 1 and "layerenv: error: installing the locked packages failed" in done.stderr
    assert "hash" in done.stderr.lower() and "needs-torch" not in installed(venv)


def test_layerenv_sync_with_groups_and_extras(tmp_path: Path, world) -> None:  # type: ignore[no-untyped-def]
    env, served = world
    project = uv_project(tmp_path / "demo", served.pypi_url, [])
    text = (project / "pyproject.toml").read_text().replace(
        "[dependency-groups]", '[project.optional-dependencies]\nextra-one = ["needs-torch"]\n\n[dependency-groups]')
    (project / "pyproject.toml").write_text(text)
    venv = layered(project, env)
    bad = run_layerenv(["sync", "--extra", "nope"], env, project)
    assert bad.returncode == 2 and "layerenv: error: --extra 'nope': " in bad.stderr
    assert "defines no such extra (known: extra-one)" in bad.stderr and not (project / "uv.lock").exists()
    none = run_layerenv(["sync", "--no-dev"], env, project)
    assert none.returncode == 0, none.stderr
    assert "needs-torch" not in installed(venv) and "plain-lib" not in installed(venv)
    both = run_layerenv(["sync", "--extra", "extra-one"], env, project)
    assert both.returncode == 0, both.stderr
    assert {"needs-torch", "plain-lib"} <= set(installed(venv))
    assert_layered_clean(venv, store(env))
    assert os.access(venv / "bin" / "uv", os.X_OK)
