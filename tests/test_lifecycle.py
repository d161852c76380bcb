"""``layerenv doctor``, ``verify`` and ``gc`` on real stores built with uv from local indexes of fake wheels."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from layerenv.base.file_check import verify_base
from layerenv.base.manifest import PackageRecord, read_manifest
from layerenv.cli.session import Session
from layerenv.lifecycle.doctor import diagnose
from layerenv.lifecycle.status import project_states
from layerenv.reporter import format_size
from layerenv.store.home import Store as StoreHome
from layerenv.venv.layout import VenvLayout
from tests.support.cli import layerenv_env, run_layerenv, tree_digest
from tests.support.index import isolated_installer_env
from tests.support.pytest_fixtures import VariantIndexes, wheel_path

pytestmark = pytest.mark.slow
UV = shutil.which("uv", path="/tmp/dev/bin") or shutil.which("uv") or "uv"
PY = f"{sys.version_info.major}.{sys.version_info.minor}"
TAG = f"cp{sys.version_info.major}{sys.version_info.minor}"
CU130 = f"{TAG}-linux_x86_64-torch2.11.0-cu130"


@dataclass(frozen=True)
class Store:
    root: Path
    home: Path
    env: dict[str, str]  # h100-580, uv, variant cu130: the base CU130 is current
    base_id: str
    project: Path

    @property
    def site(self) -> Path:
        return next((self.home / "bases" / self.base_id / "lib").glob("python*/site-packages"))

    def with_(self, **extra: str) -> dict[str, str]:
        return {**self.env, **extra}


def layerenv(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    result = run_layerenv(args, env, cwd, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def as_json(args: list[str], env: dict[str, str], cwd: Path, code: int) -> Any:
    result = layerenv([*args, "--json"], env, cwd)
    assert result.returncode == code, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def python_says(venv: Path, code: str) -> str:
    return subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip()


def store_env(home: Path, root: Path, indexes: VariantIndexes, machine: str = "h100-580", **extra: str
              ) -> dict[str, str]:
    installers = isolated_installer_env(uv_cache_dir=root / "uv-cache")
    installers.pop("CUDA_VISIBLE_DEVICES", None)
    settings = {"LAYERENV_INDEX_URL": indexes.url_template, "LAYERENV_INSTALLER": "uv", **extra}
    return layerenv_env(home, base_env={**installers, "PIP_INDEX_URL": indexes.pypi_url}, machine=machine,
                        extra=settings)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, variant_indexes: VariantIndexes) -> Store:
    """A cu130 base built on the H100 replay, and one project layered on it; tests put back what they change."""
    root = tmp_path_factory.mktemp("lifecycle")
    env = store_env(root / "home", root, variant_indexes, LAYERENV_VARIANT="cu130")
    built = layerenv(["base"], env, root)
    assert built.returncode == 0, built.stderr
    project = root / "app"
    project.mkdir()
    layered = layerenv(["project", str(project)], env, root)
    assert layered.returncode == 0, layered.stderr
    return Store(root, root / "home", env, CU130, project)


@contextmanager
def restored(*paths: Path) -> Iterator[None]:
    saved = {path: path.read_bytes() for path in paths}
    try:
        yield
    finally:
        for path, data in saved.items():
            path.write_bytes(data)


# --------------------------------------------------------------------------- verify


def test_verify_clean_then_each_kind_of_tampering(store: Store) -> None:
    clean = layerenv(["verify"], store.env, store.root)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.startswith(f"{CU130}: ok (3 distribution(s), ")
    assert as_json(["verify", CU130], store.env, store.root, 0)["ok"] is True

    version_py = store.site / "torch" / "version.py"
    with restored(version_py):
        data = version_py.read_bytes()
        version_py.write_bytes(bytes([data[0] ^ 1]) + data[1:])  # one byte, same size
        result = layerenv(["verify", CU130], store.env, store.root)
        assert result.returncode == 1
        assert f"modified             {version_py}  [torch]" in result.stdout
        assert result.stdout.count("\n  ") == 1, result.stdout
        doctor = as_json(["doctor"], store.env, store.root, 1)
        assert [(f["kind"], f["subject"]) for f in doctor["findings"]] == [("base-modified", CU130)]
        assert str(version_py) in doctor["findings"][0]["message"]

    init = store.site / "torchvision" / "__init__.py"
    with restored(init):
        init.unlink()
        problems = as_json(["verify"], store.env, store.root, 1)["bases"][0]["problems"]
        assert problems == [{"kind": "missing", "distribution": "torchvision", "path": str(init)}]

    record = next(store.site.glob("torch-*.dist-info")) / "RECORD"
    with restored(record):
        record.write_text(record.read_text().replace("torch/version.py,sha256=", "torch/version.py,sha256=AAAA"))
        problems = as_json(["verify"], store.env, store.root, 1)["bases"][0]["problems"]
        assert {(p["kind"], Path(p["path"]).name) for p in problems} == {("record-modified", "RECORD"),
                                                                          ("modified", "version.py")}

    dist_info = next(store.site.glob("torchvision-*.dist-info"))
    dist_info.rename(store.root / "dist-info-aside")
    try:
        problems = as_json(["verify"], store.env, store.root, 1)["bases"][0]["problems"]
    finally:
        (store.root / "dist-info-aside").rename(dist_info)
    assert problems == [{"kind": "distribution-missing", "distribution": "torchvision", "path": "torchvision 0.26.0+cu130"}]
    assert layerenv(["verify"], store.env, store.root).returncode == 0


def test_verify_names_a_sitecustomize_dropped_into_a_base(store: Store) -> None:
    """No RECORD lists it, so hashing RECORD files alone never saw it; it ran in every project."""
    planted = store.site / "sitecustomize.py"
    planted.write_text("import os; os.system('id')\n")
    try:
        result = layerenv(["verify", CU130], store.env, store.root)
        report = as_json(["verify", CU130], store.env, store.root, 1)
    finally:
        planted.unlink()
    assert result.returncode == 1 and f"  unlisted             {planted}  (no RECORD lists it)" in result.stdout
    assert report["ok"] is False and report["bases"][0]["unlisted"] == [str(planted)]
    assert report["bases"][0]["problems"] == []
    assert as_json(["verify", CU130], store.env, store.root, 0)["bases"][0]["unlisted"] == []


def test_verify_checks_the_venv_files_no_record_hashes(store: Store) -> None:
    """pyvenv.cfg (its home = picks the interpreter) and bin/python are recorded when published."""
    base = store.home / "bases" / CU130
    cfg, python = base / "pyvenv.cfg", base / "bin" / "python"
    target = python.readlink()
    with restored(cfg):
        cfg.write_text(cfg.read_text().replace("include-system-site-packages = false",
                                               "include-system-site-packages = true"))
        python.unlink()
        python.symlink_to("/bin/sh")
        try:
            problems = as_json(["verify", CU130], store.env, store.root, 1)["bases"][0]["problems"]
        finally:
            python.unlink()
            python.symlink_to(target)
    assert problems == [{"kind": "modified", "distribution": "", "path": str(path)} for path in sorted([cfg, python])]
    assert layerenv(["verify", CU130], store.env, store.root).returncode == 0


def test_verify_of_a_base_published_before_venv_files_allows_only_virtualenv_names(tmp_path: Path) -> None:
    """Bases were all made by virtualenv before manifests kept ``venv_files`` (one uv fills is now made by
    ``uv venv``, and keeps them): in such a venv the names virtualenv writes pass, anything else is unlisted."""
    from layerenv.base.unlisted import scan
    from layerenv.machine.interpreters import current
    from layerenv.store.home import MANIFEST_NAME
    from layerenv.venv.create import BASE_PROMPT, create_virtualenv

    venv = tmp_path / "base"
    create_virtualenv(venv, current().executable, prompt=BASE_PROMPT, seed_pip=False)
    (venv / MANIFEST_NAME).write_text("{}\n")
    assert scan(venv, adopted=False, listed=set(), own=None).unlisted == ()
    planted = venv / "bin" / "torchrun-helper"
    planted.write_text("#!/bin/sh\n")
    assert scan(venv, adopted=False, listed=set(), own=None).unlisted == (str(planted),)


def test_verify_unknown_base_is_bad_input(store: Store) -> None:
    before = tree_digest(store.home)
    for name in ("no-such-base", "../bases"):
        result = layerenv(["verify", name], store.env, store.root)
        assert result.returncode == 2
        assert result.stderr.startswith("layerenv: error: base ") and f"published: {CU130}" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and not result.stdout
    assert tree_digest(store.home) == before


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def test_verify_puts_the_staging_path_back_into_relocated_scripts(tmp_path: Path) -> None:
    """Console scripts got the staging path in their shebang and were rewritten when published."""
    staging, final = tmp_path / "staging" / "key.1.abcd", tmp_path / "bases" / "demo"
    site = final / "lib" / "python3.11" / "site-packages"
    (site / "demo-1.0.dist-info").mkdir(parents=True)
    (final / "bin").mkdir()
    (final / "bin" / "python").touch()
    (final / "pyvenv.cfg").write_text("version_info = 3.11.7\n")
    (site / "demo-1.0.dist-info" / "METADATA").write_text("Name: demo\nVersion: 1.0\n")
    script = "#!{}/bin/python\nfrom demo import main\nmain()\n"
    (final / "bin" / "demo").write_text(script.format(final))
    module = b"def main(): pass\n"
    (site / "demo.py").write_bytes(module)
    rows = [f"demo.py,sha256={_b64(module)},17",
            f"../../../bin/demo,sha256={_b64(script.format(staging).encode())},99", "../../../../outside.txt,sha256=x,1"]
    record = "\n".join(rows) + "\ndemo-1.0.dist-info/METADATA,,\ndemo-1.0.dist-info/RECORD,,\n"
    (site / "demo-1.0.dist-info" / "RECORD").write_text(record)
    h100 = read_manifest(Path(__file__).parent / "fixtures" / "h100" / "adopt-manifest.json")
    manifest = replace(
        h100, base_id="demo", path=str(final), adopted=False, baseline={}, requested=("demo",),
        packages={"demo": PackageRecord("demo", "1.0", hashlib.sha256(record.encode()).hexdigest(), "uv")},
        verification=replace(h100.verification, executable=str(staging / "bin" / "python")),
    )
    check = verify_base(manifest)
    assert check.ok and check.files == 2, check.problems
    (final / "bin" / "demo").write_text(script.format(final) + "evil()\n")
    assert [(p.kind, p.path) for p in verify_base(manifest, workers=1).problems] == [
        ("modified", str(final / "bin" / "demo"))]


# --------------------------------------------------------------------------- doctor


def test_doctor_healthy_then_removes_a_shadowing_torch(store: Store, fake_wheels: Path) -> None:
    healthy = layerenv(["doctor"], store.env, store.root)
    assert healthy.returncode == 0, healthy.stdout
    assert healthy.stdout == "healthy: 1 project(s), 1 base(s), nothing to fix\n"
    venv = store.project / ".venv"
    # PIP_CONFIG_FILE=/dev/null skips the venv's pip.conf too, so its constraint no longer stops this.
    cpu = wheel_path(fake_wheels, "torch", "2.9.1+cpu")
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index", "--no-deps", str(cpu)],
                   env=isolated_installer_env(), check=True, capture_output=True)
    dist_info = next(VenvLayout.for_venv(venv).site_packages.glob("torch-2.9.1+cpu.dist-info"))
    found = layerenv(["doctor"], store.env, store.root)
    assert found.returncode == 1
    size = format_size(sum(path.lstat().st_size for path in (dist_info.parent / "torch").rglob("*")
                           if path.is_file()) + sum(path.lstat().st_size for path in dist_info.iterdir()))
    assert found.stdout.startswith(f"problem: {venv} has its own torch 2.9.1+cpu ({size}), shadowing base {CU130}")
    assert " -> fix: remove it and restore the base's stubs (`layerenv doctor --fix`)" in found.stdout
    report = as_json(["doctor"], store.env, store.root, 1)
    [distribution] = report["findings"][0].pop("distributions")
    assert report == {"healthy": False, "findings": [
        {"kind": "shadow", "subject": str(store.project), "message": found.stdout.split(" -> ")[0][9:],
         "fix": "remove it and restore the base's stubs (`layerenv doctor --fix`)", "fixed": False,
         "bytes": distribution["bytes"]}], "outlook": []}
    assert distribution == {"name": "torch", "version": "2.9.1+cpu", "kind": "distribution", "path": str(dist_info),
                            "bytes": distribution["bytes"]} and format_size(distribution["bytes"]) == size

    fixed = layerenv(["doctor", "--fix"], store.env, store.root)
    assert fixed.returncode == 0, fixed.stdout
    assert fixed.stdout.startswith("fixed: ") and f"-> removed torch 2.9.1+cpu from {venv}, freeing {size}" in fixed.stdout
    code = "import torch, importlib.metadata as m; print(torch.__version__, m.version('torch'), torch.__file__)"
    version, metadata, where = python_says(venv, code).split()
    assert (version, metadata) == ("2.11.0+cu130", "2.11.0+cu130") and where.startswith(str(store.site))
    assert layerenv(["doctor"], store.env, store.root).returncode == 0


UNACCOUNTED = "runs at every interpreter start; not installed by any package nor by layerenv"


def test_doctor_names_start_up_files_nobody_installed_and_fix_leaves_them(store: Store) -> None:
    site = VenvLayout.for_venv(store.project / ".venv").site_packages
    in_base, in_project = store.site / "sitecustomize.py", site / "zzz-hook.pth"
    listed = site / "legit-1.0.dist-info"
    listed.mkdir()
    (listed / "METADATA").write_text("Metadata-Version: 2.1\nName: legit\nVersion: 1.0\n")
    (listed / "RECORD").write_text("legit.pth,,\nlegit-1.0.dist-info/METADATA,,\nlegit-1.0.dist-info/RECORD,,\n")
    (site / "legit.pth").write_text("import os\n")
    (site / "_virtualenv.pth").write_text("import _virtualenv")
    in_base.write_text("print('owned')\n")
    in_project.write_text("import os; os.system('id')\n")
    try:
        text = layerenv(["doctor"], store.env, store.root)
        fixed = as_json(["doctor", "--fix"], store.env, store.root, 1)
    finally:
        for path in (in_base, in_project, site / "legit.pth", site / "_virtualenv.pth"):
            path.unlink()
        shutil.rmtree(listed)
    assert text.returncode == 1
    assert f"problem: {in_base} in base {CU130} {UNACCOUNTED}; it runs in 1 project(s) -> fix: remove it" in text.stdout
    assert f"problem: {in_project} {UNACCOUNTED} -> fix: remove it if you did not put it there, or reinstall" in (
        text.stdout)
    assert text.stdout.count("problem: ") == 2, text.stdout
    found = {f["subject"]: f for f in fixed["findings"]}
    assert set(found) == {str(in_base), str(in_project)}
    assert all(f["kind"] == "startup-file" and not f["fixed"] and "`--fix` leaves it alone" in f["fix"]
               for f in found.values())
    assert as_json(["doctor"], store.env, store.root, 0)["healthy"] is True


def test_doctor_fix_rewrites_a_changed_layerenv_pth_and_boot_module(store: Store) -> None:
    site = VenvLayout.for_venv(store.project / ".venv").site_packages
    pth, boot = site / "_layerenv.pth", site / "_layerenv_boot.py"
    originals = {pth: pth.read_text(), boot: boot.read_text()}
    for path, text in originals.items():
        path.write_text(text + "import os; os.system('id')\n")
    findings = as_json(["doctor"], store.env, store.root, 1)["findings"]
    assert sorted((f["kind"], f["subject"]) for f in findings) == [("boot-changed", str(pth)),
                                                                   ("boot-changed", str(boot))]
    report = as_json(["doctor", "--fix"], store.env, store.root, 0)
    assert [(f["kind"], f["fixed"]) for f in report["findings"]] == [("boot-changed", True)] * 2
    assert {path: path.read_text() for path in originals} == originals


def test_doctor_relinks_broken_link_files(store: Store) -> None:
    pth = next((store.project / ".venv" / "lib").glob("python*/site-packages")) / "_layerenv.pth"
    pth.unlink()
    findings = as_json(["doctor"], store.env, store.root, 1)["findings"]
    assert [(f["kind"], f["fixed"]) for f in findings] == [("link-broken", False)]
    report = as_json(["doctor", "--fix"], store.env, store.root, 0)
    assert report["healthy"] is True and [(f["kind"], f["fixed"]) for f in report["findings"]] == [
        ("link-broken", True)]
    assert pth.is_file() and python_says(store.project / ".venv", "import torch; print(torch.__version__)") == (
        "2.11.0+cu130")


# doctor's memory of healthy projects (layerenv.lifecycle.fingerprint): in process, the clock moved ahead
# so that the files a test just wrote count as settled; each test looks only at its own project.


def _look(store: Store, ahead_s: float = 10.0) -> list[str]:
    """One doctor look in this process: the kinds of the findings about ``store.project``."""
    session = Session.open(store.env)
    report = diagnose(session.store, session.detection, session.current_base(), store.env,
                      clock=lambda: time.time_ns() + int(ahead_s * 1e9))
    return [finding.kind for finding in report.findings if finding.subject == str(store.project)]


@contextmanager
def reads_counted(monkeypatch: pytest.MonkeyPatch, venv: Path) -> Iterator[list[Path]]:
    """The venvs whose stubs a look read (``stub_problems`` is what a full check of a project ends with)."""
    from layerenv.lifecycle import shadows

    real, calls = shadows.stub_problems, []

    def counted(project_venv: Path, record: Any) -> list[str]:
        if project_venv == venv:
            calls.append(project_venv)
        return real(project_venv, record)

    with monkeypatch.context() as patch:
        patch.setattr(shadows, "stub_problems", counted)
        yield calls


def test_doctor_remembers_a_healthy_project_and_reads_it_again_only_when_a_file_changed(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    venv = store.project / ".venv"
    assert _look(store) == []  # checked in full, and remembered
    with reads_counted(monkeypatch, venv) as reads:
        assert _look(store) == [] and reads == []  # nothing it watches changed: not read
        metadata = next(VenvLayout.for_venv(venv).site_packages.glob("torch-*.dist-info")) / "METADATA"
        with restored(metadata):
            before = metadata.stat()
            data = metadata.read_bytes()
            metadata.write_bytes(data[:-2] + (b"!!" if data[-2:] != b"!!" else b"??"))  # same size
            os.utime(metadata, ns=(before.st_atime_ns, before.st_mtime_ns))  # and its mtime put back
            assert (metadata.stat().st_size, metadata.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
            assert _look(store) == ["stub-broken"] and reads == [venv]  # its ctime moved: read, and seen
        assert _look(store) == [] and len(reads) == 2  # put back: read again, healthy, remembered
        assert _look(store) == [] and len(reads) == 2
        own = VenvLayout.for_venv(venv).site_packages / "triton-3.5.0.dist-info"  # installed over the stubs
        own.mkdir()
        try:
            (own / "METADATA").write_text("Metadata-Version: 2.1\nName: triton\nVersion: 3.5.0\n", encoding="utf-8")
            (own / "INSTALLER").write_text("pip\n", encoding="utf-8")
            assert _look(store) == ["shadow"] and len(reads) == 3
            states = project_states(StoreHome.open(str(store.home), store.env), {CU130: read_manifest(
                store.home / "bases" / CU130 / "layerenv-manifest.json")}, {})
            assert [state.state for state in states if state.project == str(store.project)] == ["shadowed"]
        finally:
            shutil.rmtree(own)
        assert _look(store) == [] and len(reads) == 4
        extra = metadata.parent / "extra.txt"  # a name added to a stub folder, whose files the memory lists
        extra.write_text("", encoding="utf-8")
        try:
            assert _look(store) == [] and len(reads) == 5
        finally:
            extra.unlink()


def test_doctor_does_not_remember_what_changed_within_a_timestamp_tick_of_the_look(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file written just before the look could change again within its timestamp tick, unseen by any
    stat: such a project is checked, and checked again by the next look; an unreadable memory forgets all."""
    venv = store.project / ".venv"
    pth = VenvLayout.for_venv(venv).site_packages / "_layerenv.pth"
    pth.write_bytes(pth.read_bytes())  # just changed
    with reads_counted(monkeypatch, venv) as reads:
        assert _look(store, ahead_s=0) == [] and reads == [venv]
        assert _look(store, ahead_s=0) == [] and len(reads) == 2  # not remembered: read again
        assert _look(store) == [] and len(reads) == 3  # settled now: remembered
        assert _look(store) == [] and len(reads) == 3
        (store.home / "cache" / "doctor.json").write_text("{not json", encoding="utf-8")
        assert _look(store) == [] and len(reads) == 4


def test_doctor_forgets_deleted_projects_and_unreadable_entries(store: Store) -> None:
    gone = store.root / "gone"
    gone.mkdir()
    assert layerenv(["project", str(gone)], store.env, store.root).returncode == 0
    shutil.rmtree(gone)
    garbage = store.home / "registry" / "0123456789abcdef01234567.json"
    garbage.write_text("{not json")
    try:
        found = layerenv(["doctor"], store.env, store.root)
        assert found.returncode == 1
        lines = found.stdout.splitlines()
        assert len(lines) == 2 and all(line.startswith("problem: ") and " -> fix: " in line for line in lines)
        assert f"registered project {gone} has no venv {gone / '.venv'} any more" in found.stdout
        assert f"registry entry {garbage} is unreadable" in found.stdout
        refused = layerenv(["gc"], store.env, store.root)  # an unreadable entry might name any base
        assert refused.returncode == 1 and "run `layerenv doctor --fix` first" in refused.stderr
        assert len(refused.stderr.splitlines()) == 1
    finally:
        fixed = layerenv(["doctor", "--fix"], store.env, store.root)
    assert fixed.returncode == 0, fixed.stdout
    assert f"forgot {gone}" in fixed.stdout and f"deleted the unreadable registry entry {garbage}" in fixed.stdout
    assert not garbage.exists()
    status = as_json(["status"], store.env, store.root, 0)
    assert [project["path"] for project in status["projects"]] == [str(store.project)]


def test_doctor_reports_a_gone_base_and_fixes_nothing_then(store: Store) -> None:
    base, aside = store.home / "bases" / CU130, store.root / "aside"
    venv_before = tree_digest(store.project / ".venv")
    base.rename(aside)
    try:
        report = as_json(["doctor", "--fix"], store.env, store.root, 1)
    finally:
        aside.rename(base)
    assert [(f["kind"], f["subject"], f["fixed"]) for f in report["findings"]] == [
        ("base-gone", str(store.project), False), ("python-no-base", f"Python {PY}", False)]
    assert report["findings"][0]["fix"] == f"`layerenv project {store.project}` layers it on a base that fits (building one)"
    assert report["findings"][1]["fix"] == f"`layerenv base --python {PY}`"
    assert tree_digest(store.project / ".venv") == venv_before


def test_a_base_a_newer_layerenv_wrote_is_named_and_left_alone(store: Store) -> None:
    manifest = store.home / "bases" / CU130 / "layerenv-manifest.json"
    reason = "written by a newer layerenv (schema 2 > 1); upgrade layerenv"
    with restored(manifest):
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "schema": 2}))
        bases_before = tree_digest(store.home / "bases")

        status = as_json(["status"], store.env, store.root, 0)
        assert status["bases"] == []
        assert status["unreadable_bases"] == [{"id": CU130, "manifest": str(manifest), "problem": reason, "newer": True,
                                           "untrusted": False}]
        assert [project["problem"] for project in status["projects"]] == [f"its base {CU130} cannot be read: {reason}"]
        assert f"\n  {CU130:<48} cannot be read: {reason}\n" in layerenv(["status"], store.env, store.root).stdout

        doctor = as_json(["doctor"], store.env, store.root, 1)
        assert doctor["findings"] == [{
            "kind": "manifest-newer", "subject": CU130, "fixed": False,
            "message": f"base {CU130}, which {store.project} use(s), was written by a newer layerenv "
                       "(manifest schema 2 > 1), so this one cannot check it",
            "fix": f"upgrade layerenv; this one leaves {manifest.parent} alone"}]

        verify = layerenv(["verify", CU130], store.env, store.root)
        assert (verify.returncode, verify.stderr) == (1, f"layerenv: error: {manifest}: {reason}\n")
        rebase = layerenv(["rebase", "--dry-run"], store.env, store.root)
        assert f"{store.project / '.venv'}: its base {CU130} cannot be read: {reason}" in rebase.stderr
        assert layerenv(["gc"], store.env, store.root).returncode == 0
        rebuild = layerenv(["base", "--rebuild"], store.env, store.root)  # same id: it would replace it
        assert (rebuild.returncode, rebuild.stderr.splitlines()[-1]) == (1, f"layerenv: error: {manifest}: {reason}")
        assert tree_digest(store.home / "bases") == bases_before
    assert as_json(["doctor"], store.env, store.root, 0)["healthy"] is True


def test_doctor_explains_a_machine_the_base_no_longer_fits(store: Store) -> None:
    env = {k: v for k, v in store.env.items() if k != "LAYERENV_VARIANT"}  # the machine decides
    for machine, driver in (("rtx5090-570", "570.153.02"), ("v100-535", "535.247.01")):
        replay = layerenv_env(store.home, base_env=env, machine=machine)
        report = as_json(["doctor"], replay, store.root, 1)
        assert [(f["kind"], f["subject"]) for f in report["findings"]] == [("base-unfit", CU130)]
        message = report["findings"][0]["message"]
        assert f"CUDA 13.0 needs NVIDIA driver >= 580.65.06, this machine has {driver}" in message
        assert report["findings"][0]["fix"].startswith(f"`layerenv project {store.project}` moves it to a base")


def test_doctor_sees_cuda_visible_devices_hiding_every_gpu(store: Store) -> None:
    result = layerenv(["doctor"], store.with_(CUDA_VISIBLE_DEVICES=""), store.root)
    assert result.returncode == 1
    assert result.stdout == ("problem: CUDA_VISIBLE_DEVICES='' hides all 1 GPU(s): torch will see none -> fix: unset "
                             "CUDA_VISIBLE_DEVICES, or set it to the GPUs to use (e.g. CUDA_VISIBLE_DEVICES=0)\n")
    assert layerenv(["doctor"], store.with_(CUDA_VISIBLE_DEVICES="0"), store.root).returncode == 0


# --------------------------------------------------------------------------- gc


def test_gc_removes_only_unused_bases_that_are_not_current(tmp_path: Path, variant_indexes: VariantIndexes) -> None:
    from filelock import FileLock

    from layerenv.lifecycle.gc import lock_key

    home = tmp_path / "home"
    env = store_env(home, tmp_path, variant_indexes)
    for variant in ("cu128", "cu126", "cpu"):
        assert layerenv(["base", "--variant", variant], env, tmp_path).returncode == 0
    app = tmp_path / "app"
    app.mkdir()
    assert layerenv(["project", str(app)], {**env, "LAYERENV_VARIANT": "cpu"}, tmp_path).returncode == 0
    existing = tmp_path / "existing"
    subprocess.run([UV, "venv", "-q", "--python", sys.executable, str(existing)], env=env, check=True)
    subprocess.run([UV, "pip", "install", "-q", "--python", str(existing / "bin" / "python"), "--index-url",
                    variant_indexes.url("cu130"), "torch==2.11.0+cu130"], env=env, check=True)
    adopted = as_json(["base", "--adopt", str(existing)], env, tmp_path, 0)["base_id"]
    cu126, cu128, cpu = (f"{TAG}-linux_x86_64-torch2.9.1-{v}" for v in ("cu126", "cu128", "cpu"))
    env["LAYERENV_VARIANT"] = "cu128"  # the current base

    before = tree_digest(home / "bases"), tree_digest(home / "registry")
    dry = layerenv(["gc", "--dry-run"], env, tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[:2] == [
        f"would remove {adopted} (its manifest only; the adopted environment {existing} is left alone)",
        f"would remove {cu126} ({dry.stdout.split(cu126 + ' (')[1].split(')')[0]})"]
    assert f"kept {cu128}: current" in dry.stdout and f"kept {cpu}: used by 1 project(s): {app}" in dry.stdout
    assert dry.stdout.splitlines()[-1].startswith("would free ")
    assert (tree_digest(home / "bases"), tree_digest(home / "registry")) == before

    with FileLock(str(home / "locks" / f"{lock_key(read_manifest(home / 'bases' / cu126 / 'layerenv-manifest.json'))}"
                      ".lock")):
        locked = as_json(["gc", "--dry-run"], env, tmp_path, 0)
    assert {"id": cu126, "reason": "locked by another layerenv process"} in locked["kept"]
    assert [r["id"] for r in locked["removed"]] == [adopted]

    done = as_json(["gc"], env, tmp_path, 0)
    assert done["dry_run"] is False and sorted(r["id"] for r in done["removed"]) == sorted([adopted, cu126])
    assert done["freed_bytes"] > 100_000
    assert sorted(path.name for path in (home / "bases").iterdir()) == [cpu, cu128]
    assert (existing / "bin" / "python").exists() and not any((home / "graveyard").iterdir())
    assert python_says(app / ".venv", "import torch; print(torch.__version__)") == "2.9.1+cpu"
    again = as_json(["gc"], env, tmp_path, 0)
    assert again["removed"] == [] and again["freed_bytes"] == 0
