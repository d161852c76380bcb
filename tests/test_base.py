"""``layerenv base`` with real pip and uv against local indexes of fake torch wheels."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from layerenv.base.ensure import ensure_base
from layerenv.base.manifest import Manifest
from layerenv.base.request import BaseRequest, SourceSettings
from layerenv.choice.decide import Policy, choose
from layerenv.choice.detection import Detection
from layerenv.choice.table import load_matrix, newest_cuda_for_driver
from layerenv.errors import OperationFailed
from layerenv.installers import Log, Resolved, Sources, UvInstaller, find_uv
from layerenv.machine.interpreters import current
from layerenv.machine.reader import read_machine
from layerenv.store.home import Store
from tests.support.cli import FIXTURE_MACHINES, layerenv_env, run_layerenv, tree_digest
from tests.support.fake_installer import FakeInstaller
from tests.support.fake_smi import install_fixture_smi
from tests.support.index import add_to_index, file_url, write_find_links_dir, write_simple_index
from tests.support.reporter import Recorder
from tests.support.venvs import project_without_virtualenv, venv_with_pip
from tests.support.wheels import build_fake_torch

pytestmark = pytest.mark.slow


def base_python(home: Path, base_id: str) -> Path:
    return home / "bases" / base_id / "bin" / "python"


def torch_facts(python: Path) -> dict[str, object]:
    out = subprocess.run(
        [
            str(python),
            "-c",
            "import json, torch; print(json.dumps({'v': torch.__version__, "
            "'cuda': torch.version.cuda, 'file': torch.__file__}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


@pytest.fixture
def env_for(tmp_path: Path, installer_env: dict[str, str], variant_indexes):  # type: ignore[no-untyped-def]
    def make(machine: str = "h100-580", **extra: str) -> dict[str, str]:
        # uv keeps these tests fast; test_build_then_reuse_with_pip covers the pip path end to end
        settings = {"LAYERENV_INDEX_URL": variant_indexes.url_template, "LAYERENV_INSTALLER": "uv"}
        settings.update(extra)
        return layerenv_env(tmp_path / "home", base_env=installer_env, machine=machine, extra=settings)

    return make


def test_build_then_reuse_with_pip(tmp_path: Path, env_for) -> None:  # type: ignore[no-untyped-def]
    env = env_for(LAYERENV_VARIANT="cu128", LAYERENV_INSTALLER="pip")
    result = run_layerenv(["base", "--json"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["base_id"] == "cp311-linux_x86_64-torch2.9.1-cu128"
    assert summary["status"] == "built"
    assert summary["packages"]["torch"] == "2.9.1+cu128"
    assert summary["packages"]["torchvision"] == "0.24.1+cu128"
    assert "torchaudio" not in summary["packages"]
    home = tmp_path / "home"
    facts = torch_facts(base_python(home, summary["base_id"]))
    assert facts["v"] == "2.9.1+cu128" and facts["cuda"] == "12.8"
    assert str(home / "bases" / summary["base_id"]) in str(facts["file"])
    text = (home / "bases" / summary["base_id"] / "layerenv-manifest.json").read_text()
    manifest = json.loads(text)
    assert json.dumps(Manifest.from_json(manifest).to_json(), indent=2, sort_keys=True) + "\n" == text
    assert manifest["machine"]["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"
    assert manifest["verification"]["arch_list"][:1] == ["sm_75"]
    assert len(manifest["packages"]["torch"]["record_sha256"]) == 64
    assert set(manifest["timings"]) >= {"venv", "resolve", "install", "verify", "total"}
    assert not any((home / "staging").iterdir())
    dry_runs = [line.split() for log in (home / "logs").iterdir()
                for line in log.read_text(encoding="utf-8").splitlines() if line.startswith("$ ") and "--dry-run" in line]
    assert dry_runs and all(sum(word.startswith("torch") for word in run) == 1 for run in dry_runs), (
        "pip asks for each name alone (a run of several that fails costs a pip run of seconds)")

    logs_before = sorted((home / "logs").iterdir())
    started = time.monotonic()
    again = run_layerenv(["base", "--json"], env, tmp_path)
    elapsed = time.monotonic() - started
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["status"] == "reused"
    assert sorted((home / "logs").iterdir()) == logs_before, "reuse must not run an installer"
    assert elapsed < 5


def test_build_with_uv_over_http(tmp_path: Path, installer_env, served_indexes) -> None:  # type: ignore[no-untyped-def]
    env = layerenv_env(
        tmp_path / "home",
        base_env=installer_env,
        machine="h100-580",
        extra={"LAYERENV_INDEX_URL": served_indexes.url_template, "LAYERENV_VARIANT": "cu130"},
    )
    result = run_layerenv(["base", "--installer", "uv", "--json"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["base_id"] == "cp311-linux_x86_64-torch2.11.0-cu130"
    assert summary["packages"]["torch"] == "2.11.0+cu130"
    assert served_indexes.server.download_count("torch-2.11.0+cu130-py3-none-any.whl") == 1


def test_concurrent_requests_build_once(tmp_path: Path, installer_env, served_indexes) -> None:  # type: ignore[no-untyped-def]
    env = layerenv_env(
        tmp_path / "home",
        base_env=installer_env,
        machine="no-gpu",
        extra={"LAYERENV_INDEX_URL": served_indexes.url_template},
    )
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: run_layerenv(["base", "--json"], env, tmp_path), range(8)))
    assert [r.returncode for r in results] == [0] * 8, [r.stderr for r in results if r.returncode]
    statuses = sorted(json.loads(r.stdout)["status"] for r in results)
    assert statuses == ["built"] + ["reused"] * 7
    assert {json.loads(r.stdout)["base_id"] for r in results} == {"cp311-linux_x86_64-torch2.9.1-cpu"}
    assert served_indexes.server.download_count("torch-2.9.1+cpu-py3-none-any.whl") == 1
    assert any("waiting for the lock" in r.stderr for r in results)


@pytest.mark.parametrize(
    "fault", ["base:after-venv", "base:after-resolve", "base:after-install", "base:before-publish", "base:after-swap"]
)
def test_kill_9_during_rebuild_keeps_the_previous_base(tmp_path: Path, env_for, fault: str) -> None:  # type: ignore[no-untyped-def]
    env = env_for(machine="no-gpu")
    first = run_layerenv(["base", "--json"], env, tmp_path)
    assert first.returncode == 0, first.stderr
    base_id = json.loads(first.stdout)["base_id"]
    python = base_python(tmp_path / "home", base_id)
    killed = run_layerenv(
        ["base", "--rebuild"], {**env, "LAYERENV_FAULTS_ENABLED": "1", "LAYERENV_FAULT": fault}, tmp_path
    )
    assert killed.returncode == -9
    assert torch_facts(python)["v"] == "2.9.1+cpu", "the previous base must still work"
    after = run_layerenv(["base", "--rebuild", "--json"], env, tmp_path)
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout)["base_id"] == base_id
    assert not any((tmp_path / "home" / "staging").iterdir())
    assert not any((tmp_path / "home" / "graveyard").iterdir())
    assert torch_facts(python)["v"] == "2.9.1+cpu"


def test_kill_9_mid_install_of_the_installer_and_layerenv(tmp_path: Path, installer_env, env_for) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL the whole process group while pip is unpacking a large torch into staging."""
    root = tmp_path / "index"
    wheel = build_fake_torch(tmp_path / "wheels", "2.9.1+cpu", cuda=None, payload_bytes=80 * 1024 * 1024)
    add_to_index(root / "cpu", [wheel])
    env = env_for(machine="no-gpu", LAYERENV_INDEX_URL=f"file://{root}/{{variant}}/simple", LAYERENV_INSTALLER="pip")
    home = tmp_path / "home"
    process = subprocess.Popen(
        [sys.executable, "-m", "layerenv", "base"],
        env=env,
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if list((home / "staging").glob("*/lib/python*/site-packages/torch")):
                break
            time.sleep(0.01)
        assert process.poll() is None, "the build finished before it could be killed mid-install"
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert list((home / "staging").iterdir()), "the killed build left its staging dir behind"
    assert list((home / "bases").iterdir()) == []
    again = run_layerenv(["base", "--json"], env, tmp_path)
    assert again.returncode == 0, again.stderr
    assert "left by an interrupted build" in again.stderr
    assert not any((home / "staging").iterdir())
    assert torch_facts(base_python(home, json.loads(again.stdout)["base_id"]))["v"] == "2.9.1+cpu"


def test_kill_9_of_a_first_build_leaves_nothing_that_looks_published(tmp_path: Path, env_for) -> None:  # type: ignore[no-untyped-def]
    env = env_for(machine="no-gpu")
    killed = run_layerenv(
        ["base"], {**env, "LAYERENV_FAULTS_ENABLED": "1", "LAYERENV_FAULT": "base:after-install"}, tmp_path
    )
    assert killed.returncode == -9
    assert list((tmp_path / "home" / "bases").iterdir()) == []
    status = run_layerenv(["base", "--json"], env, tmp_path)
    assert status.returncode == 0 and json.loads(status.stdout)["status"] == "built", status.stderr


def test_failed_verification_publishes_nothing(tmp_path: Path, installer_env, variant_indexes) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "index"
    wheel = build_fake_torch(tmp_path / "wheels", "2.9.1+cu128", cuda="12.6")  # lies about its CUDA
    add_to_index(root / "cu128", [wheel])
    env = layerenv_env(
        tmp_path / "home",
        base_env=installer_env,
        machine="h100-580",
        extra={
            "LAYERENV_INDEX_URL": f"file://{root}/{{variant}}/simple",
            "LAYERENV_VARIANT": "cu128",
        },
    )
    result = run_layerenv(["base", "--json"], {**env, "LAYERENV_TORCH": "2.9.*"}, tmp_path)
    assert result.returncode == 1
    assert "failed verification" in result.stderr and "cu126" in result.stderr
    assert "Traceback" not in result.stderr
    assert list((tmp_path / "home" / "bases").iterdir()) == []
    assert not any((tmp_path / "home" / "staging").iterdir())


def test_wrong_build_on_another_index_does_not_win(tmp_path: Path, installer_env, variant_indexes) -> None:  # type: ignore[no-untyped-def]
    """A newer, unlabelled torch on an extra index must not replace the variant's build."""
    evil = build_fake_torch(tmp_path / "w", "2.14.0", cuda="12.4")
    extra = write_simple_index(tmp_path / "extra", [evil])
    env = layerenv_env(
        tmp_path / "home",
        base_env=installer_env,
        machine="no-gpu",
        extra={"LAYERENV_INDEX_URL": variant_indexes.url_template, "LAYERENV_EXTRA_INDEX_URL": file_url(extra)},
    )
    result = run_layerenv(["base", "--json"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["packages"]["torch"] == "2.9.1+cpu"


def test_bad_input_changes_nothing(tmp_path: Path, env_for) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    cases = [
        (["base", "--variant", "cu999"], {}, "is not known"),
        (["base", "--python", "/nonexistent/python9"], {}, "no Python matching"),
        (["base"], {"LAYERENV_INSTALLER": "conda"}, "LAYERENV_INSTALLER"),
        (["base"], {"LAYERENV_INDEX_URL": "ftp://example/{variant}"}, "LAYERENV_INDEX_URL"),
        (["base", "--adopt", str(tmp_path)], {}, "no Python"),
    ]
    for args, extra, expected in cases:
        result = run_layerenv(args, {**env_for(machine="no-gpu"), **extra}, tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        assert expected in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert tree_digest(home / "bases") == {}

    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o500)
    try:
        result = run_layerenv(
            ["base"], {**env_for(machine="no-gpu"), "LAYERENV_HOME": str(readonly / "store")}, tmp_path
        )
        if os.geteuid() != 0:
            assert result.returncode == 2 and "not writable" in result.stderr
    finally:
        readonly.chmod(0o700)


def test_adopt_registers_without_touching(tmp_path: Path, env_for, variant_indexes, installer_env) -> None:  # type: ignore[no-untyped-def]
    venv = tmp_path / "existing"
    venv_with_pip(venv, installer_env)
    subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--index-url",
            variant_indexes.url("cu130"),
            "torch==2.11.0+cu130",
        ],
        check=True,
        env=installer_env,
    )
    site = next((venv / "lib").glob("python*/site-packages"))
    with (site / "torch" / "version.py").open("a") as handle:
        handle.write("# edited by the machine image before layerenv saw it\n")
    before = tree_digest(venv)
    env = env_for()
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # importing torch with the edited version.py would rewrite its .pyc
    result = run_layerenv(["base", "--adopt", str(venv), "--json"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "already differ from their RECORD" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["base_id"].endswith("-torch2.11.0-cu130-adopted")
    assert summary["adopted"] is True and summary["path"] == str(venv.resolve())
    assert tree_digest(venv) == before
    status = json.loads(run_layerenv(["status", "--json"], env, tmp_path).stdout)
    recorded = [entry["base_id"] for node in status["nodes"] for entry in node["bases"].values()]
    assert recorded == [summary["base_id"]], "adopting records the adopted base as this node's answer"
    reuse = run_layerenv(["base", "--json"], env, tmp_path)
    assert reuse.returncode == 0, reuse.stderr
    assert json.loads(reuse.stdout)["base_id"] == summary["base_id"], "an adopted base that fits is current"
    assert run_layerenv(["verify"], env, tmp_path).returncode == 0, "the state at adoption is the baseline"
    assert run_layerenv(["doctor"], env, tmp_path).returncode == 0
    (site / "torch" / "__init__.py").write_text((site / "torch" / "__init__.py").read_text() + "# tampered\n")
    tampered = run_layerenv(["verify"], env, tmp_path)
    assert tampered.returncode == 1 and str(site / "torch" / "__init__.py") in tampered.stdout


# build() driven in-process with an installer passed in ----------------------------------------------




def replayed_detection(tmp_path: Path, machine: str) -> Detection:
    bin_dir = tmp_path / "smi"
    bin_dir.mkdir()
    install_fixture_smi(bin_dir, FIXTURE_MACHINES / machine)
    found = read_machine(
        sysroot=FIXTURE_MACHINES / machine,
        env={},
        which=lambda name: shutil.which(name, path=str(bin_dir)),
        system="linux",
        arch="x86_64",
        cuda_for_driver=newest_cuda_for_driver,
    )
    return Detection(found, choose(found, Policy(), load_matrix()))


def in_process_request(tmp_path: Path, detection: Detection, installer: str = "fake") -> BaseRequest:
    index = tmp_path / "variant-index"
    (index / detection.decision.variant.name).mkdir(parents=True)  # a reachable (empty) variant index
    return BaseRequest(
        interpreter=current(),
        detection=detection,
        packages=("torch",),
        installer=installer,
        sources=SourceSettings(index_template=file_url(index) + "/{variant}"),
    )


def test_a_newer_torch_that_fails_verification_falls_back_to_the_table(tmp_path: Path) -> None:
    """The newest torch the sources offer is past the table and lacks the H100's kernels: the build
    warns, plans again inside the table and publishes the table's release."""
    detection = replayed_detection(tmp_path, "h100-580")
    decision = detection.decision
    request = in_process_request(tmp_path, detection)
    newest_series = decision.table.newest_series
    assert decision.torch_series[0] == newest_series and decision.variant.kind == "cuda"
    major, minor = (int(part) for part in newest_series.split("."))
    variant, cuda = decision.variant.name, decision.variant.version
    wheels = tmp_path / "wheels"
    newer = build_fake_torch(wheels, f"{major}.{minor + 1}.0+{variant}", cuda=cuda, arch_list=("sm_100", "sm_120"))
    known = build_fake_torch(wheels, f"{newest_series}.0+{variant}", cuda=cuda, arch_list=("sm_80", "sm_90"))
    installer = FakeInstaller([newer, known])
    store = Store.open(str(tmp_path / "home"), {})
    steps = Recorder()

    result = ensure_base(request, store, steps, installer)

    assert result.manifest.torch == f"{newest_series}.0+{variant}"
    assert result.manifest.verification.arch_list == ("sm_80", "sm_90")
    assert installer.installed == [f"torch=={major}.{minor + 1}.0+{variant}", f"torch=={newest_series}.0+{variant}"]
    assert any("newer than the table" in text and "falling back" in text for text in steps.warnings), steps.warnings
    assert [path.name for path in store.bases.iterdir()] == [result.manifest.base_id]
    assert not any(store.staging.iterdir())


def test_a_torch_inside_the_table_that_fails_verification_does_not_fall_back(tmp_path: Path) -> None:
    detection = replayed_detection(tmp_path, "h100-580")
    request = in_process_request(tmp_path, detection)
    series, variant = detection.decision.table.newest_series, detection.decision.variant
    broken = build_fake_torch(tmp_path / "w", f"{series}.0+{variant}", cuda=variant.version, arch_list=("sm_100",))
    store = Store.open(str(tmp_path / "home"), {})
    steps = Recorder()
    with pytest.raises(OperationFailed, match=r"failed verification: .*no kernels"):
        ensure_base(request, store, steps, FakeInstaller([broken]))
    assert steps.warnings == []
    assert list(store.bases.iterdir()) == []


class ResolverThatDisagrees(UvInstaller):
    """Real uv installs; its resolution claims the variant's index serves an unlabelled torch, as an
    index that changed between resolving and installing would."""

    def __init__(self, uv: str, environ: dict[str, str], claimed: Resolved) -> None:
        super().__init__(uv, environ)
        self.claimed = claimed

    def newest(self, python: Path, requirement: str, sources: Sources, log: Log) -> Resolved | None:
        return self.claimed if requirement.startswith("torch") else None

    def newest_each(
        self, python: Path, requirements: Sequence[str], sources: Sources, log: Log
    ) -> list[Resolved] | None:
        found = [self.newest(python, requirement, sources, log) for requirement in requirements]
        return [item for item in found if item is not None] if all(found) else None


def test_a_uv_build_whose_torch_came_from_a_refused_place_fails(tmp_path: Path, installer_env: dict[str, str]) -> None:
    """uv's post-install report is real: the torch uv took from find-links, not from the variant's
    index the resolution named, is refused and nothing is published."""
    uv = find_uv()
    assert uv is not None
    detection = replayed_detection(tmp_path, "no-gpu")
    request = in_process_request(tmp_path, detection, installer="uv")
    variant = detection.decision.variant.name
    index = tmp_path / "variant-index" / variant
    write_simple_index(index, [build_fake_torch(tmp_path / "w", "2.9.1+cpu", cuda=None)])
    elsewhere = write_find_links_dir(tmp_path / "elsewhere", [build_fake_torch(tmp_path / "e", "2.14.0", cuda=None)])
    request = BaseRequest(
        interpreter=request.interpreter,
        detection=detection,
        packages=("torch",),
        installer="uv",
        sources=SourceSettings(index_template=file_url(tmp_path / "variant-index") + "/{variant}/simple",
                               find_links=(str(elsewhere),)),
    )
    claimed = Resolved("torch", "2.14.0", file_url(index / "simple") + "/torch/")
    store = Store.open(str(tmp_path / "home"), {})

    with pytest.raises(OperationFailed) as failed:
        ensure_base(request, store, Recorder(), ResolverThatDisagrees(uv, installer_env, claimed))

    assert "refusing the base: torch 2.14.0 is not a cpu build from the variant's index" in failed.value.message
    assert file_url(elsewhere) in failed.value.message
    assert list(store.bases.iterdir()) == []
    assert not any(store.staging.iterdir())


# a base uv builds: its venv made by uv with the base prompt, the template its project venvs copy ----------


def test_a_uv_build_killed_mid_way_leaves_no_staging_and_its_projects_copy_the_base_venv(  # type: ignore[no-untyped-def]
    tmp_path: Path, env_for
) -> None:
    """uv makes the base's venv (no seed, whatever the user's ``UV_VENV_SEED``) with the base prompt, so the
    base is the template its project venvs copy: the first project venv is what ``uv venv`` writes, and
    neither the build nor the project starts virtualenv (no store shape is made); a build killed after its
    venv was made leaves, after the next build, nothing in ``staging/``. One store for the three steps."""
    from layerenv.venv.create import is_template

    env = {**env_for(machine="no-gpu"), "UV_VENV_SEED": "1"}
    home = tmp_path / "home"
    killed = run_layerenv(["base"], {**env, "LAYERENV_FAULTS_ENABLED": "1", "LAYERENV_FAULT": "base:after-venv"},
                          tmp_path)
    assert killed.returncode == -9
    built = run_layerenv(["base", "--json"], env, tmp_path)
    assert built.returncode == 0 and json.loads(built.stdout)["status"] == "built", built.stderr
    assert "no venv shape" not in built.stderr
    assert not any((home / "staging").iterdir())
    base = home / "bases" / json.loads(built.stdout)["base_id"]
    config = (base / "pyvenv.cfg").read_text()
    assert "\nuv = " in config and "virtualenv" not in config and is_template(base), config
    assert not list(base.glob("lib/python*/site-packages/pip")), "the user's UV_VENV_SEED seeds nothing in a base"
    assert not (home / "shapes").is_dir() or not any((home / "shapes").iterdir()), "no virtualenv-made shape"

    project = project_without_virtualenv(tmp_path, env)
    config = (project / ".venv" / "pyvenv.cfg").read_text()
    assert "\nuv = " in config and "prompt = app\n" in config, config
    assert torch_facts(project / ".venv" / "bin" / "python")["v"] == "2.9.1+cpu"


class CountingInstaller(FakeInstaller):
    """The fake installer, counting what it is asked to resolve."""

    def __init__(self, wheels: list[Path]) -> None:
        super().__init__(wheels)
        self.asked: list[str] = []

    def newest(self, python: Path, requirement: str, sources: Sources, log: Log) -> Resolved | None:
        self.asked.append(requirement)
        return super().newest(python, requirement, sources, log)


@pytest.mark.parametrize("offered", ["newest", "older"])
def test_the_companions_pair_with_the_torch_found(tmp_path: Path, offered: str) -> None:
    """The companions are resolved beside torch for the newest series in range; where the sources'
    torch is of an older series, they are resolved again for it, and the base pairs with its torch."""
    from tests.support.wheels import build_fake_companion

    detection = replayed_detection(tmp_path, "h100-580")
    variant = detection.decision.variant
    newest, older = detection.decision.torch_series[:2]
    series = newest if offered == "newest" else older
    wheels = tmp_path / "wheels"
    torch = build_fake_torch(wheels, f"{series}.0+{variant}", cuda=variant.version, arch_list=("sm_80", "sm_90"))
    visions = {name: f"0.{int(name.split('.')[1]) + 15}.0+{variant}" for name in (newest, older)}
    installer = CountingInstaller([torch, *(build_fake_companion(wheels, "torchvision", version)
                                            for version in visions.values())])
    request = in_process_request(tmp_path, detection)
    request = BaseRequest(interpreter=request.interpreter, detection=detection, packages=("torch", "torchvision"),
                          installer="fake", sources=request.sources)
    store = Store.open(str(tmp_path / "home"), {})

    result = ensure_base(request, store, Recorder(), installer).manifest

    assert (result.torch, result.packages["torchvision"].version) == (f"{series}.0+{variant}", visions[series])
    asked = [requirement for requirement in installer.asked if requirement.startswith("torchvision")]
    assert len(asked) == (1 if offered == "newest" else 2), asked


@pytest.mark.parametrize("audio_offered", [True, False])
def test_a_uv_build_resolves_torch_and_its_companions_in_one_run(
    tmp_path: Path, installer_env: dict[str, str], audio_offered: bool
) -> None:
    """Real uv: torch and the companions paired with the newest series are resolved by one `uv pip compile`
    (labelled builds: no run asks where they came from); where one companion has no build in the sources,
    that run fails and each is asked alone, and the base leaves that companion out with a note."""
    from tests.support.wheels import build_fake_companion

    uv = find_uv()
    assert uv is not None
    replayed = replayed_detection(tmp_path, "h100-580")
    detection = Detection(replayed.machine, choose(replayed.machine, Policy(variant="cu128"), load_matrix()))
    variant = detection.decision.variant
    series = detection.decision.torch_series[0]
    assert series in detection.decision.table.torchaudio_series, "cu128's newest series has a torchaudio"
    torch = f"{series}.0+{variant}"
    wheels = [build_fake_torch(tmp_path / "w", torch, cuda=variant.version, arch_list=("sm_80", "sm_90")),
              build_fake_companion(tmp_path / "w", "torchvision", f"0.{int(series.split('.')[1]) + 15}.0+{variant}",
                                   requires=(f"torch=={torch}",))]
    if audio_offered:
        wheels.append(build_fake_companion(tmp_path / "w", "torchaudio", torch, requires=(f"torch=={torch}",)))
    write_simple_index(tmp_path / "index" / variant.name, wheels)
    request = in_process_request(tmp_path, detection, installer="uv")
    request = BaseRequest(
        interpreter=request.interpreter,
        detection=detection,
        packages=("torch", "torchvision", "torchaudio"),
        installer="uv",
        sources=SourceSettings(index_template=file_url(tmp_path / "index") + "/{variant}/simple"),
    )
    store = Store.open(str(tmp_path / "home"), {})
    reporter = Recorder()

    result = ensure_base(request, store, reporter, UvInstaller(uv, installer_env))

    packages = result.manifest.packages
    assert packages["torch"].version == torch
    assert ("torchaudio" in packages) is audio_offered
    assert result.log is not None
    ran = [line for line in result.log.read_text(encoding="utf-8").splitlines() if line.startswith("$ ")]
    compiles = [line for line in ran if " pip compile " in line]
    assert ran.index(compiles[-1]) < ran.index(next(line for line in ran if " pip install " in line))
    if audio_offered:
        assert len(compiles) == 1, compiles
    else:
        assert len(compiles) == 4, "the run of three fails; each is then asked alone"
        assert any(f"torchaudio=={series}.*: no {variant} build in the sources; left out" in line
                   for line in reporter.warnings), reporter.warnings
