"""``layerenv rebase``: a driver upgrade moves every project onto the new base, crash-safely."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from layerenv.lifecycle.pacing import PROBE_PROJECTS
from layerenv.project.link import link
from layerenv.store.home import Store
from layerenv.venv.relocate import relocate_venv
from tests.support.cli import run_layerenv
from tests.support.pytest_fixtures import caps_torch_project

pytestmark = pytest.mark.slow


def torch_version(venv: Path) -> str:
    return subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import torch; print(torch.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()




def clone_project(source: Path, target: Path, base_id: str, base_venv: Path, store: Store) -> Path:
    """A registered project venv made by copying one `layerenv project` made (rebase only relinks)."""
    target.mkdir(parents=True)
    shutil.copytree(source / ".venv", target / ".venv", symlinks=True)
    relocate_venv(target / ".venv", source / ".venv", target / ".venv")
    link(target / ".venv", base_id=base_id, base_venv=base_venv)
    store.register(target / ".venv", base_id, target)
    return target / ".venv"


def test_driver_upgrade_moves_projects_to_a_new_cuda(tmp_path: Path, driver_upgrade_env) -> None:  # type: ignore[no-untyped-def]
    old_env, new_env = driver_upgrade_env("rtx5090-570"), driver_upgrade_env("rtx5090-580")
    projects = []
    for name in ("alpha", "beta"):
        project = tmp_path / name
        project.mkdir()
        result = run_layerenv(["project", str(project)], old_env, tmp_path)
        assert result.returncode == 0, result.stderr
        projects.append(project / ".venv")
    assert [torch_version(venv) for venv in projects] == ["2.9.1+cu129"] * 2
    old_id = "cp311-linux_x86_64-torch2.9.1-cu129"

    nothing = run_layerenv(["rebase"], old_env, tmp_path)
    assert nothing.returncode == 0 and nothing.stdout.startswith("nothing changed: 2 project(s)")

    dry = run_layerenv(["rebase", "--dry-run", "--json"], new_env, tmp_path)
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["changed"] and plan["variant"] == "cu132"
    assert sorted(move["project"] for move in plan["moves"]) == sorted(str(v.parent) for v in projects)
    assert all(move["from"] == old_id for move in plan["moves"])
    assert not any(move["downgrade"] for move in plan["moves"]), "a driver upgrade is no downgrade"
    assert [torch_version(venv) for venv in projects] == ["2.9.1+cu129"] * 2, "--dry-run changed nothing"
    assert not (tmp_path / "home" / "bases" / "cp311-linux_x86_64-torch2.15.0-cu132").exists()

    done = run_layerenv(["rebase", "--json"], new_env, tmp_path)
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["built"] == ["cp311-linux_x86_64-torch2.15.0-cu132"]
    assert sorted(outcome["moved"]) == sorted(str(v.parent) for v in projects)
    assert [torch_version(venv) for venv in projects] == ["2.15.0+cu132"] * 2
    assert (tmp_path / "home" / "bases" / old_id).is_dir(), "the old base is kept until gc"
    status = json.loads(run_layerenv(["status", "--json"], new_env, tmp_path).stdout)
    assert {p["base"] for p in status["projects"]} == {"cp311-linux_x86_64-torch2.15.0-cu132"}
    again = run_layerenv(["rebase"], new_env, tmp_path)
    assert again.returncode == 0 and again.stdout.startswith("nothing changed")
    new_id = "cp311-linux_x86_64-torch2.15.0-cu132"
    assert again.stdout == f"nothing changed: 2 project(s) already on the base that fits: {new_id} (torch 2.15.0+cu132)\n"

    # the driver goes back to 570: the plan moves both projects to an older torch, and says so and why
    down = run_layerenv(["rebase", "--dry-run", "--json"], old_env, tmp_path)
    assert down.returncode == 0, down.stderr
    down_moves = json.loads(down.stdout)["moves"]
    assert [(m["from"], m["to"], m["downgrade"], m["from_torch"], m["to_torch"]) for m in down_moves] == [
        (new_id, old_id, True, "2.15.0+cu132", "2.9.1+cu129")] * 2
    assert {m["why"] for m in down_moves} == {"the driver 570.153.02 no longer supports cu132"}
    down_text = run_layerenv(["rebase", "--dry-run"], old_env, tmp_path)
    assert down_text.stdout.count(
        "[downgrade: torch 2.15.0+cu132 -> 2.9.1+cu129, because the driver 570.153.02 no longer supports cu132]"
    ) == 2, down_text.stdout
    assert [torch_version(venv) for venv in projects] == ["2.15.0+cu132"] * 2, "--dry-run changed nothing"

    asked = run_layerenv(["rebase", "--dry-run", "--json", "--project", str(projects[0].parent), "--base", old_id],
                         new_env, tmp_path)
    assert [m["why"] for m in json.loads(asked.stdout)["moves"]] == [f"asked for with --base {old_id}"]
    back = run_layerenv(["rebase", "--project", str(projects[0].parent), "--base", old_id], new_env, tmp_path)
    assert back.returncode == 0, back.stderr
    assert [torch_version(venv) for venv in projects] == ["2.9.1+cu129", "2.15.0+cu132"]
    bad = run_layerenv(["rebase", "--base", "no-such-base"], new_env, tmp_path)
    assert bad.returncode == 2 and "no-such-base" in bad.stderr and len(bad.stderr.splitlines()) == 1


def test_a_dependency_the_new_torch_breaks_is_reinstalled(tmp_path: Path, driver_upgrade_env, served_indexes) -> None:  # type: ignore[no-untyped-def]
    """caps-torch 1.0 wants torch<2.10, 2.0 wants torch>=2.10: the move to torch 2.15 reinstalls it."""
    project, _, new_env = caps_torch_project(tmp_path, served_indexes, driver_upgrade_env)
    venv = project / ".venv"
    version_of = "import importlib.metadata as m; print(m.version('caps-torch'))"
    assert subprocess.run([str(venv / "bin" / "python"), "-c", version_of], capture_output=True, text=True,
                          check=True).stdout.strip() == "1.0"

    done = run_layerenv(["rebase", "--json"], new_env, tmp_path)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["reinstalled"] == {str(venv): ["caps-torch"]}
    assert subprocess.run([str(venv / "bin" / "python"), "-c", version_of], capture_output=True, text=True,
                          check=True).stdout.strip() == "2.0"
    assert torch_version(venv) == "2.15.0+cu132"


def test_kill_9_at_any_point_leaves_every_project_working(tmp_path: Path, driver_upgrade_env) -> None:  # type: ignore[no-untyped-def]
    old_env, new_env = driver_upgrade_env("rtx5090-570"), driver_upgrade_env("rtx5090-580")
    first = tmp_path / "p00"
    first.mkdir()
    assert run_layerenv(["project", str(first)], old_env, tmp_path).returncode == 0
    store = Store(tmp_path / "home")
    old_id = "cp311-linux_x86_64-torch2.9.1-cu129"
    base_venv = store.base_dir(old_id)
    venvs = [first / ".venv"] + [
        clone_project(first, tmp_path / f"p{i:02d}", old_id, base_venv, store) for i in range(1, 20)
    ]
    assert len(store.projects()) == 20
    def staged(venv: Path) -> list[Path]:
        site = next((venv / "lib").glob("python3.*/site-packages"))
        return [*venv.glob(".layerenv-staged-*"), *site.glob(".layerenv-*"), *site.glob(".*.tmp")]

    for fault in ("rebase:after-build", "rebase:after-stage", "rebase:project-5", "link:between-boot-files",
                  "rebase:after-link", "rebase:project-17"):
        killed = run_layerenv(
            ["rebase"], {**new_env, "LAYERENV_FAULTS_ENABLED": "1", "LAYERENV_FAULT": fault}, tmp_path
        )
        assert killed.returncode == -9, (fault, killed.stderr)
        versions = {torch_version(venv) for venv in venvs}
        assert versions <= {"2.9.1+cu129", "2.15.0+cu132"}, (fault, versions)
        if fault == "rebase:after-stage":  # the first chunk's new files written and flushed, none renamed yet
            assert versions == {"2.9.1+cu129"}
            assert sum(bool(staged(venv)) for venv in venvs) == PROBE_PROJECTS
    final = run_layerenv(["rebase"], new_env, tmp_path)
    assert final.returncode == 0, final.stderr
    assert {torch_version(venv) for venv in venvs} == {"2.15.0+cu132"}
    assert {entry["base_id"] for entry in store.projects()} == {"cp311-linux_x86_64-torch2.15.0-cu132"}
    assert not [path for venv in venvs for path in staged(venv)]  # the killed runs' leftovers are gone


def test_a_project_whose_venv_another_command_holds_moves_after_the_rest(tmp_path: Path, driver_upgrade_env) -> None:  # type: ignore[no-untyped-def]
    """rebase never waits for one venv's lock while holding others (two rebases would wait on each other):
    a busy venv is moved whole once the others are done and it is free."""
    old_env, new_env = driver_upgrade_env("rtx5090-570"), driver_upgrade_env("rtx5090-580")
    first = tmp_path / "p0"
    first.mkdir()
    assert run_layerenv(["project", str(first)], old_env, tmp_path).returncode == 0
    store = Store(tmp_path / "home")
    old_id, new_id = "cp311-linux_x86_64-torch2.9.1-cu129", "cp311-linux_x86_64-torch2.15.0-cu132"
    busy = clone_project(first, tmp_path / "p1", old_id, store.base_dir(old_id), store)

    def entry(venv: Path) -> str:
        return str(json.loads(store.registry_entry(venv).read_text())["base_id"])

    with store.lock(store.project_lock_name(busy), purpose="test: another command changing p1"):
        rebase = subprocess.Popen([sys.executable, "-m", "layerenv", "rebase"], env=new_env, cwd=tmp_path,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while entry(first / ".venv") != new_id and rebase.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert entry(first / ".venv") == new_id  # the free venv moved while p1's was held
        assert rebase.poll() is None and entry(busy) == old_id  # p1 waits for its lock, untouched
    _, err = rebase.communicate(timeout=120)
    assert rebase.returncode == 0, err
    assert entry(busy) == new_id and torch_version(busy) == torch_version(first / ".venv") == "2.15.0+cu132"
