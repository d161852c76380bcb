"""Edges of issue 15: odd paths and bad input end in one line or just work, and nothing is lost.

One cpu base, built once for the module with uv from the local fake-wheel indexes; each test makes
its own project directories beside it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cli import layerenv_env, run_layerenv, tree_digest
from tests.support.index import isolated_installer_env
from tests.support.pytest_fixtures import VariantIndexes
from tests.support.reporter import Recorder


@dataclass(frozen=True)
class World:
    root: Path
    home: Path
    env: dict[str, str]
    base_id: str

    def run(self, *args: str, cwd: Path | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
        result = run_layerenv(list(args), {**self.env, **extra}, cwd or self.root, timeout=120)
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def project(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True)
        return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, variant_indexes: VariantIndexes) -> World:
    root = tmp_path_factory.mktemp("edges")
    installers = isolated_installer_env(uv_cache_dir=root / "uv-cache")
    env = layerenv_env(root / "home", base_env={**installers, "PIP_INDEX_URL": variant_indexes.pypi_url,
                                                 "UV_INDEX_URL": variant_indexes.pypi_url},
                       extra={"LAYERENV_INDEX_URL": variant_indexes.url_template, "LAYERENV_INSTALLER": "uv"})
    built = run_layerenv(["base", "--json"], env, root, timeout=120)
    assert built.returncode == 0, built.stderr
    return World(root, root / "home", env, json.loads(built.stdout)["base_id"])


def one_error_line(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    lines = result.stderr.splitlines()
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("layerenv: error: "), result.stderr
    return lines[0]


def torch_in(venv: Path) -> str:
    return subprocess.run([str(venv / "bin" / "python"), "-c", "import torch; print(torch.__version__)"],
                          capture_output=True, text=True, check=True).stdout.strip()


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("spec", ["/etc/passwd", "/bin/false", "", " "])
def test_python_that_is_not_a_python_is_bad_input_in_one_line(world: World, spec: str) -> None:
    before = tree_digest(world.home)
    line = one_error_line(world.run("base", "--python", spec))
    assert repr(spec) in line
    app = world.project(f"python-{abs(hash(spec))}")
    one_error_line(world.run("project", str(app), "--python", spec))
    assert not (app / ".venv").exists()
    assert tree_digest(world.home) == before


def test_an_empty_project_path_is_bad_input_not_the_current_directory(world: World) -> None:
    here = world.project("empty-arg")
    line = one_error_line(world.run("project", "", cwd=here))
    assert "project path '' is empty" in line
    assert not (here / ".venv").exists()


@pytest.mark.parametrize("command", [["status", "--json"], ["doctor"], ["gc"], ["verify"], ["rebase"]])
def test_a_store_that_is_a_regular_file_is_refused_by_name(world: World, command: list[str]) -> None:
    home = world.root / "home-is-a-file"
    home.write_text("not a store\n")
    line = one_error_line(world.run(*command, LAYERENV_HOME=str(home)))
    assert f"LAYERENV_HOME={home} is not a directory" in line
    assert home.read_text() == "not a store\n"


def test_a_string_for_a_list_of_dependencies_is_refused_when_it_is_no_requirement(world: World) -> None:
    app = world.project("deps-string")
    (app / "layerenv.toml").write_text('[project]\ndependencies = "a string"\n')
    assert "dependencies" in one_error_line(world.run("project", str(app)))
    packaged = world.project("deps-string-pyproject")
    (packaged / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1"\ndependencies = "a string"\n')
    assert "dependencies must be a list" in one_error_line(world.run("project", str(packaged)))
    assert not (app / ".venv").exists() and not (packaged / ".venv").exists()


# --------------------------------------------------------------------------- paths


def test_a_project_path_with_spaces_installs_and_keeps_torch_for_pip_and_uv(world: World) -> None:
    app = world.project("with space/app x")
    (app / "requirements.txt").write_text("plain-lib\n")
    made = world.run("project", str(app))
    assert made.returncode == 0, made.stderr
    venv = app / ".venv"
    assert torch_in(venv) == "2.9.1+cpu"
    # pip inside the venv reads its pip.conf (so no PIP_CONFIG_FILE), uv the activation's UV_CONSTRAINT
    pip_env = {k: v for k, v in world.env.items() if k != "PIP_CONFIG_FILE"}
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "pins-old-torch"],
                         env=pip_env, capture_output=True, text=True, check=False)
    assert pip.returncode != 0 and "pins-old-torch" in pip.stdout + pip.stderr, pip.stderr
    assert "No such file" not in pip.stderr and "Could not open requirements file" not in pip.stderr
    uv = subprocess.run(["sh", "-c", f'. "{venv}/bin/activate" && uv pip install pins-old-torch'],
                        env=world.env, capture_output=True, text=True, check=False)
    assert uv.returncode != 0 and "torch==2.5.1" in uv.stderr and "File not found" not in uv.stderr, uv.stderr
    assert torch_in(venv) == "2.9.1+cpu"


def test_a_non_ascii_project_path_is_layered(world: World) -> None:
    app = world.project("dé/app")
    made = world.run("project", str(app))
    assert made.returncode == 0, made.stderr
    assert torch_in(app / ".venv") == "2.9.1+cpu"


def test_a_directory_named_like_an_option_is_layered(world: World) -> None:
    world.project("-x")
    made = world.run("project", "--", "-x")
    assert made.returncode == 0, made.stderr
    config = (world.root / "-x" / ".venv" / "pyvenv.cfg").read_text()
    assert "\nprompt = -x\n" in config or "\nprompt = \"-x\"\n" in config, config  # uv's form, or virtualenv's


def test_a_reader_that_went_away_after_one_line_of_base_is_no_traceback(world: World) -> None:
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run([sys.executable, "-m", "layerenv", "base"], env=world.env, cwd=world.root, stdout=write,
                                stderr=subprocess.PIPE, text=True, check=False)
    finally:
        os.close(write)
    assert result.returncode == 1 and "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


# --------------------------------------------------------------------------- gc and the venvs that link a base


def gc_json(world: World, *args: str, **extra: str) -> dict[str, object]:
    done = world.run("gc", "--json", *args, **extra)
    assert done.returncode == 0, done.stderr
    document: dict[str, object] = json.loads(done.stdout)
    return document


def kept_ids(document: dict[str, object]) -> dict[str, str]:
    return {str(k["id"]): str(k["reason"]) for k in document["kept"]}  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def other_base(world: World) -> str:
    """A cu128 base: not current on this machine (it wants cpu), so only its users keep it."""
    built = world.run("base", "--variant", "cu128", "--json")
    assert built.returncode == 0, built.stderr
    return str(json.loads(built.stdout)["base_id"])


def test_gc_keeps_a_base_a_renamed_project_still_links_after_doctor_forgot_it(world: World, other_base: str) -> None:
    app = world.project("renamed/app")
    assert world.run("project", str(app), LAYERENV_VARIANT="cu128").returncode == 0
    moved = app.rename(app.parent / "app-v2")
    forgot = world.run("doctor", "--fix")
    assert f"forgot {app}" in forgot.stdout, forgot.stdout
    reason = kept_ids(gc_json(world))[other_base]
    assert f"linked by {moved / '.venv'}" in reason
    assert torch_in(moved / ".venv") == "2.9.1+cu128"


def test_gc_keeps_a_base_whose_registry_entry_was_garbled_and_pruned(world: World, other_base: str) -> None:
    app = world.project("garbled-entry")
    assert world.run("project", str(app), LAYERENV_VARIANT="cu128").returncode == 0
    entries = sorted((world.home / "registry").glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
    entries[-1].write_text('{"venv": "/tm')  # truncated
    assert world.run("doctor", "--fix").returncode in (0, 1)
    assert not entries[-1].exists()
    assert f"linked by {app / '.venv'}" in kept_ids(gc_json(world))[other_base]
    (app / ".venv" / "layerenv.json").write_text("{")  # the venv's own record garbled too: its .pth still counts
    assert f"linked by {app / '.venv'}" in kept_ids(gc_json(world, "--dry-run"))[other_base]


def test_gc_keeps_a_base_while_a_project_run_makes_a_venv_on_it(world: World, other_base: str) -> None:
    from filelock import FileLock

    from layerenv.store.home import Store

    store = Store(world.home)
    venv = world.root / "alone" / "being-made" / ".venv"  # no sibling project links that base
    store.add_user(venv, other_base, venv.parent)  # what `layerenv project` notes before it links
    with FileLock(str(world.home / "locks" / f"{store.project_lock_name(venv)}.lock")):
        assert "is being made by" in kept_ids(gc_json(world))[other_base]


def test_two_project_runs_on_one_directory_take_turns(world: World) -> None:
    from filelock import FileLock

    from layerenv.store.home import Store

    app = world.project("turns")
    venv = app / ".venv"
    log = world.root / "turns.stderr"
    with FileLock(str(world.home / "locks" / f"{Store(world.home).project_lock_name(venv)}.lock")):
        with log.open("w") as stderr:
            second = subprocess.Popen([sys.executable, "-m", "layerenv", "project", str(app)], env=world.env,
                                      cwd=world.root, stdout=subprocess.DEVNULL, stderr=stderr, text=True)
        for _ in range(600):
            if "waiting for the lock on" in log.read_text() or second.poll() is not None:
                break
            subprocess.run(["sleep", "0.05"], check=True)
        assert "waiting for the lock on" in log.read_text(), log.read_text()
        assert second.poll() is None and not venv.exists()
    assert second.wait(timeout=120) == 0, log.read_text()
    assert torch_in(venv) == "2.9.1+cpu"


# --------------------------------------------------------------------------- the test run itself


CARELESS_TEST = """
import os, shutil, subprocess
from tests.support.wheels import build_plain_package

def test_installs_the_way_a_careless_test_would(tmp_path):
    wheel = build_plain_package(tmp_path, "plain-lib", "1.0")
    uv = shutil.which("uv")
    # no --python: uv installs into $VIRTUAL_ENV (or $UV_PYTHON) when the run inherited one
    subprocess.run([uv, "pip", "install", "--no-index", "--find-links", str(wheel.parent), "plain-lib"],
                   env=os.environ, cwd=tmp_path, check=False)
"""


def test_a_test_run_under_an_active_venv_installs_nothing_into_it(tmp_path: Path) -> None:
    """A developer runs pytest with a venv active and pip/uv settings aimed at it: a test that starts an
    installer with the run's own environment must not reach that venv (the session guard in conftest).
    A nested pytest session (about 3 s): the only way to see what a whole run inherits."""
    caller = tmp_path / "callers-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(caller)], check=True)
    before = tree_digest(caller)
    probe = tmp_path / "probe" / "test_careless.py"
    probe.parent.mkdir()
    probe.write_text(CARELESS_TEST)
    hostile = {"VIRTUAL_ENV": str(caller), "CONDA_PREFIX": str(caller), "UV_PYTHON": str(caller / "bin" / "python"),
               "PIP_PREFIX": str(caller), "POETRY_VIRTUALENVS_PATH": str(caller)}
    repo = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    inner = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest", "-n", "0",
         "--rootdir", str(probe.parent), "--basetemp", str(tmp_path / "t"), str(probe)],
        env={**env, **hostile, "PYTHONPATH": str(repo)}, cwd=repo, capture_output=True, text=True, check=False)
    assert inner.returncode == 0, inner.stdout[-3000:]
    assert tree_digest(caller) == before


# --------------------------------------------------------------------------- staging/ left by an interrupted build


def test_an_interrupted_builds_staging_dir_is_seen_by_status_and_doctor_and_removed_by_gc(world: World) -> None:
    from filelock import FileLock

    from layerenv.base.manifest import lock_key, read_manifest

    killed = world.run("base", "--rebuild", LAYERENV_FAULTS_ENABLED="1", LAYERENV_FAULT="base:after-install")
    assert killed.returncode == -9
    (left,) = (world.home / "staging").iterdir()
    status = json.loads(world.run("status", "--json").stdout)["staging"]
    assert [(s["path"], s["orphaned"]) for s in status] == [(str(left), True)] and status[0]["size_bytes"] > 10_000
    assert f"staging/{left.name}" in world.run("status").stdout
    doctor = world.run("doctor", "--json")
    assert doctor.returncode == 1
    assert [f["kind"] for f in json.loads(doctor.stdout)["findings"]
                                    if f["kind"].startswith("staging")] == ["staging-orphaned"]
    manifest = read_manifest(world.home / "bases" / world.base_id / "layerenv-manifest.json")
    with FileLock(str(world.home / "locks" / f"{lock_key(manifest)}.lock")):  # as a running build holds it
        held = gc_json(world)
        assert held["staging_removed"] == [] and [s["path"] for s in held["staging_kept"]] == [str(left)]  # type: ignore[union-attr]
        assert left.is_dir()
    done = gc_json(world)
    assert [s["path"] for s in done["staging_removed"]] == [str(left)]  # type: ignore[union-attr]
    assert not left.exists() and int(done["freed_bytes"]) >= status[0]["size_bytes"]  # type: ignore[call-overload]
    assert "staging" not in world.run("doctor").stdout


# --------------------------------------------------------------------------- rebase


def test_rebase_says_reused_for_a_base_another_process_built_after_it_planned(world: World) -> None:
    from layerenv.cli.session import Session
    from layerenv.lifecycle.rebase import execute, plan_rebase

    app = world.project("rebased")
    assert world.run("project", str(app)).returncode == 0
    env = {**world.env, "LAYERENV_VARIANT": "cu126"}
    session = Session.open(env)
    plan = plan_rebase(session.store, session.base_request, only=app)
    assert len(plan.builds) == 1  # no cu126 base yet: the plan builds one
    other = world.run("base", "--json", LAYERENV_VARIANT="cu126")  # another process builds it first
    assert other.returncode == 0, other.stderr
    outcome = execute(plan, session.store, Recorder())
    cu126 = json.loads(other.stdout)["base_id"]
    assert (outcome.built, outcome.reused) == ((), (cu126,))
    assert [move.project for move in outcome.moved] == [app] and torch_in(app / ".venv") == "2.9.1+cu126"


# --------------------------------------------------------------------------- a full disk


@pytest.mark.parametrize(("point", "swapped"), [("project:before-swap", False), ("project:after-swap", True)])
def test_a_full_disk_around_the_swap_never_leaves_a_venv_in_place_unregistered(
    world: World, point: str, swapped: bool
) -> None:
    from layerenv.store.home import Store

    app = world.project(f"full-disk-{swapped}")
    failed = world.run("project", str(app), LAYERENV_FAULTS_ENABLED="1", LAYERENV_FAULT=f"enospc:{point}")
    assert failed.returncode == 1 and failed.stderr.count("layerenv: error:") == 1, failed.stderr
    assert failed.stderr.splitlines()[-1].startswith("layerenv: error: no space left on device")
    assert (app / ".venv").is_dir() == swapped
    assert Store(world.home).registry_entry(app / ".venv").is_file() == swapped
    if swapped:
        assert torch_in(app / ".venv") == "2.9.1+cpu"


# --------------------------------------------------------------------------- doctor


def test_doctor_tells_a_project_pinning_an_unfit_variant_to_change_its_pin_from_any_directory(world: World) -> None:
    app = world.project("pinned")
    (app / "layerenv.toml").write_text('[torch]\nvariant = "cu129"\n')  # a base no other test's project uses
    assert world.run("project", str(app)).returncode == 0  # cu129 on a machine without a GPU: it does not fit
    reports = [world.run("doctor", "--json", cwd=where) for where in (world.root, app)]
    assert [report.returncode for report in reports] == [1, 1]
    documents = [json.loads(report.stdout) for report in reports]
    assert documents[0] == documents[1], "the verdict does not depend on the directory doctor runs in"
    (unfit,) = [f for f in documents[0]["findings"] if f["kind"] == "base-unfit" and "cu129" in f["subject"]]
    assert unfit["fix"] == (f"{app} pins torch.variant = 'cu129' in {app / 'layerenv.toml'}: change or remove that "
                            f"setting, then `layerenv project {app}`")
    (app / "layerenv.toml").unlink()  # the fix it names works: the project moves to a base that fits
    assert world.run("project", str(app)).returncode == 0 and torch_in(app / ".venv") == "2.9.1+cpu"
    assert not [f for f in json.loads(world.run("doctor", "--json").stdout)["findings"] if f["kind"] == "base-unfit"
                and str(app) in f["fix"]]


# --------------------------------------------------------------------------- reported before, guarded here


def test_a_truncated_manifest_is_reported_broken_by_id_in_status(world: World) -> None:
    broken = world.home / "bases" / "cp311-linux_x86_64-torch9.9.9-cu999"
    broken.mkdir()
    good = (world.home / "bases" / world.base_id / "layerenv-manifest.json").read_bytes()
    (broken / "layerenv-manifest.json").write_bytes(good[: len(good) // 3])
    try:
        status = world.run("status", "--json")
        assert status.returncode == 0, status.stderr
        (item,) = json.loads(status.stdout)["unreadable_bases"]
        assert item["id"] == broken.name and "unreadable manifest" in item["problem"]
        assert f"{broken.name}" in world.run("status").stdout
    finally:
        shutil.rmtree(broken)


def test_pip_gets_the_constraints_even_when_pip_config_file_hides_the_venvs_pip_conf(world: World) -> None:
    app = world.project("pip-config-file")
    (app / "requirements.txt").write_text("pins-old-torch\n")  # needs torch==2.5.1; the base has 2.9.1+cpu
    assert world.env["PIP_CONFIG_FILE"] == os.devnull  # so pip reads no pip.conf, the venv's included
    refused = world.run("project", str(app), LAYERENV_INSTALLER="pip")
    assert refused.returncode == 1 and "pins-old-torch" in refused.stderr.splitlines()[-1], refused.stderr
    assert not (app / ".venv").exists(), "a failed first install leaves no venv"
