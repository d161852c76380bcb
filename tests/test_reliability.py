"""Reliability under load and faults: concurrent commands on one store, kill -9 at every checkpoint,
a failing installer, a full disk, a read-only store, a lock left by a dead process, clock skew."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.cli import layerenv_env, run_layerenv
from tests.support.index import add_to_index, file_url, write_simple_index
from tests.support.wheels import build_fake_torch

pytestmark = pytest.mark.slow

OLD_ID = "cp311-linux_x86_64-torch2.9.1-cu129"
NEW_ID = "cp311-linux_x86_64-torch2.15.0-cu132"
CPU_ID = "cp311-linux_x86_64-torch2.9.1-cpu"

BASE_POINTS = [
    "base:after-venv",
    "base:after-resolve",
    "base:after-install",
    "base:after-verify",
    "base:after-relocate",
    "base:before-publish",
    "base:after-swap",
    "base:after-cleanup",
]
PROJECT_POINTS = [
    "project:after-venv",
    "project:after-link",
    "project:after-install",
    "project:after-relocate",
    "project:before-swap",
    "project:after-swap",
    "project:after-relink",
    "project:after-register",
]
REBASE_POINTS = [
    "rebase:after-build",
    "rebase:after-stage",
    "rebase:project-0",
    "rebase:project-1",
    "rebase:after-link",
    "rebase:after-record",
    "rebase:after-register",
]
FAULT_POINTS = BASE_POINTS + PROJECT_POINTS + REBASE_POINTS


def torch_version(venv: Path) -> str:
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import torch; print(torch.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"{venv}: import torch failed: {result.stderr}"
    return result.stdout.strip()


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("layerenv: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    return errors[0]


def faulty(env: dict[str, str], fault: str) -> dict[str, str]:
    return {**env, "LAYERENV_FAULTS_ENABLED": "1", "LAYERENV_FAULT": fault}




# --------------------------------------------------------------------------- load


def test_16_bases_and_16_projects_at_once_build_once(  # type: ignore[no-untyped-def]
    tmp_path: Path, installer_env, served_indexes
) -> None:
    env = layerenv_env(
        tmp_path / "home",
        base_env={**installer_env, "PIP_INDEX_URL": served_indexes.pypi_url, "UV_INDEX_URL": served_indexes.pypi_url},
        machine="no-gpu",
        extra={"LAYERENV_INDEX_URL": served_indexes.url_template, "LAYERENV_INSTALLER": "uv"},
    )
    projects = []
    for index in range(16):
        project = tmp_path / f"repo{index:02d}"
        project.mkdir()
        (project / "requirements.txt").write_text("plain-lib==1.0\n")
        projects.append(project)
    commands = [["base", "--json"]] * 16 + [["project", str(project)] for project in projects]
    started = time.monotonic()
    with ThreadPoolExecutor(len(commands)) as pool:
        results = list(pool.map(lambda args: run_layerenv(args, env, tmp_path, timeout=180), commands))
    wall = time.monotonic() - started
    failed = [(r.args, r.stderr) for r in results if r.returncode != 0]
    assert not failed, failed
    assert served_indexes.server.download_count("torch-2.9.1+cpu-py3-none-any.whl") == 1
    assert sum(r.stderr.count(f"published {CPU_ID}") for r in results) == 1
    assert {json.loads(r.stdout)["base_id"] for r in results[:16]} == {CPU_ID}
    home = tmp_path / "home"
    entries = [json.loads(path.read_text()) for path in (home / "registry").glob("*.json")]
    assert len(entries) == 16
    assert sorted(entry["venv"] for entry in entries) == sorted(str(p / ".venv") for p in projects)
    assert {entry["base_id"] for entry in entries} == {CPU_ID}
    assert [path.name for path in (home / "bases").iterdir()] == [CPU_ID]
    assert not any((home / "staging").iterdir())
    for project in projects:
        assert torch_version(project / ".venv") == "2.9.1+cpu"
    print(f"load: 32 commands in {wall:.1f}s, builds=1, registry entries={len(entries)}")


# --------------------------------------------------------------------------- kill -9


def _two_projects(tmp_path: Path, env: dict[str, str]) -> list[Path]:
    projects = []
    for name in ("p0", "p1"):
        project = tmp_path / name
        project.mkdir()
        (project / "requirements.txt").write_text("plain-lib==1.0\n")
        result = run_layerenv(["project", str(project)], env, tmp_path)
        assert result.returncode == 0, result.stderr
        projects.append(project)
    return projects


def _assert_clean(home: Path, projects: list[Path], base_id: str) -> None:
    assert not any((home / "staging").iterdir())
    assert not any(path.name.startswith(".venv.layerenv-") for p in projects for path in p.iterdir())
    entries = [json.loads(path.read_text()) for path in (home / "registry").glob("*.json")]
    assert sorted(entry["venv"] for entry in entries) == sorted(str(p / ".venv") for p in projects)
    assert {entry["base_id"] for entry in entries} == {base_id}


@pytest.mark.parametrize("area", ["base", "project", "rebase"])
def test_kill_9_at_each_point_keeps_everything_working(tmp_path: Path, driver_upgrade_env, area: str) -> None:  # type: ignore[no-untyped-def]
    """Every injection point of one command in turn, on one store: after each kill -9 every environment
    that worked still imports torch, and the same command without the fault then completes."""
    envs = {"old": driver_upgrade_env("rtx5090-570"), "new": driver_upgrade_env("rtx5090-580")}
    projects = _two_projects(tmp_path, envs["old"])
    home = tmp_path / "home"
    venvs = [home / "bases" / OLD_ID] + [project / ".venv" for project in projects]
    versions = {"old": "2.9.1+cu129", "new": "2.15.0+cu132"}
    points = {"base": BASE_POINTS, "project": PROJECT_POINTS, "rebase": REBASE_POINTS}[area]
    toward = "new"
    for number, fault in enumerate(points):
        if area == "base":
            args, env, after = ["base", "--rebuild"], envs["old"], "old"
        elif area == "project":
            extra = "needs-torch\n" if number % 2 == 0 else ""
            (projects[0] / "requirements.txt").write_text("plain-lib==1.0\n" + extra)
            args, env, after = ["project", str(projects[0])], envs["old"], "old"
        else:  # rebase back and forth between the 570 (cu129) and 580 (cu132) machines
            args, env, after = ["rebase"], envs[toward], toward
        killed = run_layerenv(args, faulty(env, fault), tmp_path)
        assert killed.returncode == -9, (fault, killed.returncode, killed.stderr)
        seen = {torch_version(venv) for venv in venvs}
        assert seen <= set(versions.values()), (fault, seen)
        again = run_layerenv(args, env, tmp_path)
        assert again.returncode == 0, (fault, again.stderr)
        _assert_clean(home, projects, OLD_ID if after == "old" else NEW_ID)
        assert {torch_version(venv) for venv in venvs[1:]} == {versions[after]}, fault
        assert torch_version(home / "bases" / OLD_ID) == "2.9.1+cu129"
        if area == "project" and number % 2 == 0:
            imported = subprocess.run(
                [str(projects[0] / ".venv" / "bin" / "python"), "-c", "import needs_torch"], check=False
            )
            assert imported.returncode == 0, fault
        toward = "old" if toward == "new" else "new"


# --------------------------------------------------------------------------- installer and disk failures


@pytest.fixture
def cpu_env(tmp_path: Path, installer_env: dict[str, str], variant_indexes) -> Callable[..., dict[str, str]]:  # type: ignore[no-untyped-def]
    def make(home: Path | None = None, **extra: str) -> dict[str, str]:
        settings = {"LAYERENV_INDEX_URL": variant_indexes.url_template, "LAYERENV_INSTALLER": "uv", **extra}
        return layerenv_env(
            home or tmp_path / "home",
            base_env={
                **installer_env,
                "PIP_INDEX_URL": variant_indexes.pypi_url,
                "UV_INDEX_URL": variant_indexes.pypi_url,
            },
            machine="no-gpu",
            extra=settings,
        )

    return make


def good_base_and_project(tmp_path: Path, env: dict[str, str]) -> tuple[Path, Path]:
    project = tmp_path / "repo"
    project.mkdir(exist_ok=True)
    result = run_layerenv(["project", str(project)], env, tmp_path)
    assert result.returncode == 0, result.stderr
    base = Path(env["LAYERENV_HOME"]) / "bases" / CPU_ID
    assert torch_version(base) == torch_version(project / ".venv") == "2.9.1+cpu"
    return base, project / ".venv"


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_corrupt_torch_wheel_fails_in_one_line_and_publishes_nothing(  # type: ignore[no-untyped-def]
    tmp_path: Path, cpu_env, installer: str
) -> None:
    base, venv = good_base_and_project(tmp_path, cpu_env())
    wheel = build_fake_torch(tmp_path / "wheels", "2.9.1+cpu", cuda=None, payload_bytes=64 * 1024)
    root = tmp_path / "corrupt-index"
    write_simple_index(root / "cpu", [wheel])
    served = root / "cpu" / "files" / wheel.name
    served.write_bytes(served.read_bytes()[: served.stat().st_size // 2])  # a truncated zip
    write_simple_index(root / "cpu", [])  # re-hash what is served now
    env = cpu_env(
        LAYERENV_INDEX_URL=file_url(root) + "/{variant}/simple",
        LAYERENV_INSTALLER=installer,
        UV_CACHE_DIR=str(tmp_path / "fresh-uv-cache"),
        PIP_CACHE_DIR=str(tmp_path / "fresh-pip-cache"),
    )
    manifest_before = (base / "layerenv-manifest.json").read_bytes()
    result = run_layerenv(["base", "--rebuild"], env, tmp_path)
    assert result.returncode == 1, result.stderr
    assert f"{installer} failed" in one_line_error(result)
    home = tmp_path / "home"
    assert [path.name for path in (home / "bases").iterdir()] == [CPU_ID]
    assert (base / "layerenv-manifest.json").read_bytes() == manifest_before
    assert not any((home / "staging").iterdir())
    assert torch_version(base) == torch_version(venv) == "2.9.1+cpu"


@pytest.mark.parametrize(
    ("command", "point"),
    [
        ("base", "base:after-install"),
        ("base", "base:after-relocate"),
        ("base", "base:before-publish"),
        ("project", "project:after-install"),
        ("project", "project:after-relocate"),
    ],
)
def test_injected_disk_full_fails_in_one_line_and_cleans_up(  # type: ignore[no-untyped-def]
    tmp_path: Path, cpu_env, command: str, point: str
) -> None:
    env = cpu_env()
    base, venv = good_base_and_project(tmp_path, env)
    if command == "base":
        args = ["base", "--rebuild"]
    else:
        (venv.parent / "requirements.txt").write_text("plain-lib==1.0\n")
        args = ["project", str(venv.parent)]
    result = run_layerenv(args, faulty(env, f"enospc:{point}"), tmp_path)
    assert result.returncode == 1, result.stderr
    assert "no space left on device" in one_line_error(result).lower()
    assert not any((tmp_path / "home" / "staging").iterdir())
    assert [path.name for path in venv.parent.iterdir() if path.name.startswith(".venv")] == [".venv"]
    assert torch_version(base) == torch_version(venv) == "2.9.1+cpu"
    again = run_layerenv(args, env, tmp_path)
    assert again.returncode == 0, again.stderr
    assert torch_version(base) == torch_version(venv) == "2.9.1+cpu"


@pytest.fixture
def tiny_tmpfs(tmp_path: Path):  # type: ignore[no-untyped-def]
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a 3 MiB tmpfs needs root; this run is not root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mountpoint)], capture_output=True, text=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"mount -t tmpfs was refused here: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_a_real_full_disk_fails_in_one_line_and_publishes_nothing(  # type: ignore[no-untyped-def]
    tmp_path: Path, cpu_env, tiny_tmpfs: Path, installer: str
) -> None:
    wheel = build_fake_torch(tmp_path / "wheels", "2.9.1+cpu", cuda=None, payload_bytes=10 * 1024 * 1024)
    root = tmp_path / "big-index"
    add_to_index(root / "cpu", [wheel])
    home = tiny_tmpfs / "home"
    env = cpu_env(home, LAYERENV_INDEX_URL=file_url(root) + "/{variant}/simple", LAYERENV_INSTALLER=installer)
    result = run_layerenv(["base"], env, tmp_path, timeout=120)
    assert result.returncode == 1, (result.returncode, result.stderr)
    one_line_error(result)
    assert list((home / "bases").iterdir()) == []
    assert not any((home / "staging").iterdir())


# --------------------------------------------------------------------------- read-only store, stale lock, clock skew


def test_read_only_store_fails_in_one_line_and_the_old_base_works(tmp_path: Path, cpu_env) -> None:  # type: ignore[no-untyped-def]
    env = cpu_env()
    base, venv = good_base_and_project(tmp_path, env)
    home = tmp_path / "home"
    if os.geteuid() == 0:
        bind = subprocess.run(["mount", "--bind", str(home), str(home)], capture_output=True, text=True, check=False)
        if bind.returncode != 0:
            pytest.skip(f"running as root, which ignores file modes, and a bind mount was refused: {bind.stderr}")
        remount = subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(home)], capture_output=True, text=True, check=False
        )
        if remount.returncode != 0:
            subprocess.run(["umount", str(home)], check=False)
            pytest.skip(
                f"running as root, which ignores file modes, and a read-only remount was refused: {remount.stderr}"
            )

        def undo() -> None:
            subprocess.run(["umount", str(home)], check=False)
    else:
        subprocess.run(["chmod", "-R", "a-w", str(home)], check=True)

        def undo() -> None:
            subprocess.run(["chmod", "-R", "u+w", str(home)], check=True)

    try:
        result = run_layerenv(["base", "--rebuild"], env, tmp_path)
        assert result.returncode in (1, 2), (result.returncode, result.stderr)
        one_line_error(result)
        assert torch_version(base) == torch_version(venv) == "2.9.1+cpu"
    finally:
        undo()
    assert torch_version(base) == "2.9.1+cpu"


def test_a_lock_left_by_a_dead_process_does_not_block(tmp_path: Path, cpu_env) -> None:  # type: ignore[no-untyped-def]
    dead = subprocess.Popen(["true"])
    dead.wait()
    locks = tmp_path / "home" / "locks"
    locks.mkdir(parents=True)
    key = "cp311-linux_x86_64-cpu"
    (locks / f"{key}.lock").write_text("")
    (locks / f"{key}.owner.json").write_text(
        json.dumps({"pid": dead.pid, "host": os.uname().nodename, "since": time.time() - 3600, "purpose": "dead"})
    )
    result = run_layerenv(["base", "--json"], cpu_env(), tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "built"
    assert torch_version(tmp_path / "home" / "bases" / CPU_ID) == "2.9.1+cpu"


def test_clock_skew_still_reuses_and_doctor_does_not_crash(tmp_path: Path, cpu_env) -> None:  # type: ignore[no-untyped-def]
    env = cpu_env()
    base, venv = good_base_and_project(tmp_path, env)
    future = time.time() + 10 * 365 * 86400
    manifest_path = base / "layerenv-manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["created"] = future
    manifest_path.write_text(json.dumps(manifest, indent=2))
    for path in [*base.rglob("*"), *venv.rglob("*")]:
        if not path.is_symlink():
            os.utime(path, (future, future))
    reused = run_layerenv(["base", "--json"], env, tmp_path)
    assert reused.returncode == 0, reused.stderr
    assert json.loads(reused.stdout) | {} and json.loads(reused.stdout)["status"] == "reused"
    doctor = run_layerenv(["doctor"], env, tmp_path)
    assert doctor.returncode in (0, 1), doctor.stderr
    assert "Traceback" not in doctor.stderr + doctor.stdout
    status = run_layerenv(["status"], env, tmp_path)
    assert status.returncode == 0 and "Traceback" not in status.stderr
    assert torch_version(venv) == "2.9.1+cpu"
