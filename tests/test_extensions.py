"""Compiled torch extensions: found from their ELF headers, recorded with the torch they were built
against, flagged by doctor when the base's torch is another, and moved by rebase (reinstalled or
rebuilt) or left where they work."""

from __future__ import annotations

import json
import subprocess
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from layerenv.project.extensions import (
    base_exports,
    find_extensions,
    label_torch,
    record_extensions,
    stale_reason,
)
from layerenv.venv.elf import is_torch_symbol, read_links
from tests.support.cli import run_layerenv
from tests.support.index import add_to_index
from tests.support.native import (
    CORE,
    CURRENT,
    LEGACY,
    compile_shared,
    compiler,
    extension_source,
    libc10_source,
    loader_module,
    write_editable_project,
)
from tests.support.wheels import build_fake_torch, build_wheel

needs_compiler = pytest.mark.skipif(compiler() is None, reason="no C compiler (gcc/cc) to build test extensions")


@dataclass(frozen=True)
class Native:
    """Everything compiled once per session."""

    old_libc10: Path  # exports c10::legacy and c10::core
    new_libc10: Path  # exports c10::core and c10::current
    old_ext: Path  # needs c10::legacy
    new_ext: Path  # needs c10::current
    plain: Path  # a shared object linking nothing of torch
    wheels: Path

    def torch(self, version: str, cuda: str) -> Path:
        """A fake torch wheel carrying the old (2.9) or new libc10."""
        library = self.old_libc10 if version.startswith("2.9") else self.new_libc10
        return build_fake_torch(self.wheels / version, version, cuda=cuda,
                                extra_files={"torch/lib/libc10.so": library.read_bytes()})

    def extension(self, name: str, version: str, obj: Path) -> Path:
        module = name.replace("-", "_")
        return build_wheel(self.wheels / version, name, version,
                           {f"{module}/__init__.py": loader_module("_ext.so"), f"{module}/_ext.so": obj.read_bytes()},
                           python_tag="cp311", abi_tag="cp311", platform_tag="linux_x86_64")


@pytest.fixture(scope="session")
def native(tmp_path_factory: pytest.TempPathFactory) -> Native:
    if compiler() is None:
        pytest.skip("no C compiler (gcc/cc) to build test extensions")
    root = tmp_path_factory.mktemp("native")
    old = compile_shared(root / "old" / "libc10.so", libc10_source({LEGACY: 29, CORE: 1}), soname="libc10.so")
    new = compile_shared(root / "new" / "libc10.so", libc10_source({CORE: 1, CURRENT: 215}), soname="libc10.so")
    return Native(
        old, new,
        compile_shared(root / "old_ext.so", extension_source(LEGACY), link_dir=old.parent, libraries=("c10",)),
        compile_shared(root / "new_ext.so", extension_source(CURRENT), link_dir=new.parent, libraries=("c10",)),
        compile_shared(root / "plain.so", "int plain(void) { return 0; }\n"),
        root / "wheels",
    )


def fake_venv(root: Path, wheels: list[Path]) -> Path:
    """A venv-shaped folder with ``wheels`` unpacked into its site-packages (no installer: a unit test)."""
    site = root / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (root / "pyvenv.cfg").write_text("version_info = 3.11.7\n")
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(site)
    return root


@needs_compiler
def test_elf_reader_names_the_libraries_and_symbols_an_object_links(native: Native) -> None:
    links = read_links(native.old_ext)
    assert links is not None
    assert links.needed == ("libc10.so",)
    assert LEGACY in links.undefined and "answer" in links.defined
    exports = read_links(native.old_libc10)
    assert exports is not None and {LEGACY, CORE} <= exports.defined and LEGACY not in exports.undefined
    assert read_links(native.plain) is not None and not read_links(native.plain).needed  # type: ignore[union-attr]
    assert read_links(native.wheels.parent / "missing.so") is None


def test_elf_reader_refuses_what_is_no_elf(tmp_path: Path) -> None:
    for name, data in (("text.so", b"not an object"), ("short.so", b"\x7fELF\x02\x01"),
                       ("garbled.so", b"\x7fELF\x02\x01" + b"\xff" * 120)):
        (tmp_path / name).write_bytes(data)
        assert read_links(tmp_path / name) is None, name


def test_torch_symbols_are_c10_at_and_torch_names() -> None:
    assert all(map(is_torch_symbol, [LEGACY, "_ZNK3c1010TensorImpl4sizeEv", "_ZN2at6native3addEv",
                                     "_ZN5torch8autograd4gradEv", "_ZTVN3c1011StorageImplE"]))
    assert not any(map(is_torch_symbol, ["answer", "_ZNSt6vectorIiE", "_ZN3foo3c10Ev", "malloc"]))


def test_version_labels_name_the_torch_a_wheel_was_built_for() -> None:
    assert label_torch("2.1.2+pt21cu121") == ("2.1", "cu121")
    assert label_torch("1.0+pt215cu132") == ("2.15", "cu132")
    assert label_torch("0.6.18+pt29cpu") == ("2.9", "cpu")
    assert label_torch("1.0") is None and label_torch("1.0+cu121") is None


@needs_compiler
def test_extensions_are_found_recorded_and_judged(native: Native, tmp_path: Path) -> None:
    plain_so = build_wheel(tmp_path / "w", "has-plain-so", "1.0", {"has_plain_so/_x.so": native.plain.read_bytes()})
    venv = fake_venv(tmp_path / "venv", [native.extension("scatterx", "1.0", native.old_ext), plain_so,
                                         build_wheel(tmp_path / "w", "pure", "1.0", {"pure/__init__.py": ""})])
    found = find_extensions(venv, {})
    assert [(e.name, e.objects, e.built_against, e.symbols) for e in found] == [
        ("scatterx", ("scatterx/_ext.so",), None, frozenset({LEGACY}))]

    state = record_extensions({"base_id": "old"}, venv, "2.9.1+cu129")
    assert state["base_id"] == "old" and state["extensions"]["scatterx"]["torch"] == "2.9.1+cu129"
    assert sorted(state["scanned"]) == ["has_plain_so-1.0.dist-info", "pure-1.0.dist-info"]
    again = find_extensions(venv, json.loads(json.dumps(state)))
    assert [(e.name, e.built_against) for e in again] == [("scatterx", "2.9.1+cu129")]

    assert stale_reason(again[0], "2.9.1+cu129", None) is None
    assert stale_reason(again[0], "2.15.0+cu132", None) == (
        "scatterx 1.0 was built for torch 2.9.1+cu129, the base has torch 2.15.0+cu132")
    new_exports = base_exports(fake_venv(tmp_path / "base", [native.torch("2.15.0+cu132", "13.2")])
                               / "lib" / "python3.11" / "site-packages")
    assert new_exports == frozenset({CORE, CURRENT})
    # not recorded (installed by hand): its symbols decide
    assert stale_reason(found[0], "2.15.0+cu132", new_exports) == (
        f"scatterx 1.0 needs {LEGACY}, which the base's torch 2.15.0+cu132 libraries no longer export")
    assert stale_reason(found[0], "2.15.0+cu132", frozenset({LEGACY})) is None

    # reinstalled (its RECORD changed): read again, and the torch it was recorded with is kept for the same version
    record = venv / "lib" / "python3.11" / "site-packages" / "scatterx-1.0.dist-info" / "RECORD"
    record.write_text(record.read_text() + "\n")
    assert [e.built_against for e in find_extensions(venv, state)] == ["2.9.1+cu129"]


@needs_compiler
def test_a_version_label_wins_over_the_record(native: Native, tmp_path: Path) -> None:
    venv = fake_venv(tmp_path / "venv", [native.extension("scatterx", "1.0+pt29cu129", native.old_ext)])
    state = record_extensions({}, venv, "2.15.0+cu132")  # installed by pin onto a newer base
    found = find_extensions(venv, state)
    assert stale_reason(found[0], "2.15.0+cu132", None) == (
        "scatterx 1.0+pt29cu129 was built for torch 2.9 cu129, the base has torch 2.15.0+cu132")
    assert stale_reason(found[0], "2.9.1+cu129", None) is None


# --------------------------------------------------------------------------- rebase and doctor, end to end

OLD_ID, NEW_ID = "cp311-linux_x86_64-torch2.9.1-cu129", "cp311-linux_x86_64-torch2.15.0-cu132"


def answer(venv: Path, module: str) -> subprocess.CompletedProcess[str]:
    """Import ``module`` in the project and print what its compiled object returns."""
    return subprocess.run([str(venv / "bin" / "python"), "-c", f"import {module}; print({module}.answer())"],
                          capture_output=True, text=True, check=False)


def torch_of(venv: Path) -> str:
    return subprocess.run([str(venv / "bin" / "python"), "-c", "import torch; print(torch.__version__)"],
                          capture_output=True, text=True, check=True).stdout.strip()


def findings(env: dict[str, str], cwd: Path, kind: str) -> dict[str, str]:
    report = json.loads(run_layerenv(["doctor", "--json"], env, cwd).stdout)
    return {item["subject"]: item["message"] for item in report["findings"] if item["kind"] == kind}


@needs_compiler
@pytest.mark.slow
def test_rebase_reinstalls_rebuilds_or_holds_each_extension(  # type: ignore[no-untyped-def]
        native: Native, tmp_path: Path, driver_upgrade_env, served_indexes) -> None:
    """scatterx has a +pt215cu132 wheel: reinstalled; myops is an editable build: rebuilt against the new
    torch (a failed rebuild leaves it on the old base, working); stuck has neither: its project stays
    until --force, then doctor names it, and a wheel pinned to the new torch fixes it in place."""
    old_env, new_env = driver_upgrade_env("rtx5090-570"), driver_upgrade_env("rtx5090-580")
    add_to_index(served_indexes.root / "cu129", [native.torch("2.9.1+cu129", "12.9")])
    add_to_index(served_indexes.root / "cu132", [native.torch("2.15.0+cu132", "13.2")])
    pypi = served_indexes.root / "pypi"
    add_to_index(pypi, [native.extension("scatterx", "1.0+pt29cu129", native.old_ext),
                        native.extension("stuck", "1.0", native.old_ext)])
    alpha, beta, gamma = (tmp_path / name for name in ("alpha", "beta", "gamma"))
    for project, requirement in ((alpha, "scatterx"), (gamma, "stuck")):
        project.mkdir()
        (project / "requirements.txt").write_text(f"{requirement}\n")
    write_editable_project(beta)
    for project in (alpha, beta, gamma):
        made = run_layerenv(["project", str(project)], old_env, tmp_path)
        assert made.returncode == 0, made.stderr
    venvs = {project.name: project / ".venv" for project in (alpha, beta, gamma)}
    assert [answer(venvs["alpha"], "scatterx").stdout, answer(venvs["gamma"], "stuck").stdout] == ["29\n", "29\n"]
    assert answer(venvs["beta"], "myops").stdout == "1\n"
    assert (beta / "built_with.txt").read_text() == "2.9.1+cu129"
    assert findings(old_env, tmp_path, "extension-stale") == {}
    add_to_index(pypi, [native.extension("scatterx", "1.0+pt215cu132", native.new_ext)])

    dry = run_layerenv(["rebase", "--dry-run", "--json"], new_env, tmp_path)
    assert dry.returncode == 0, dry.stderr
    plan = {Path(move["project"]).name: move for move in json.loads(dry.stdout)["moves"]}
    assert [(s["name"], s["action"]) for s in plan["alpha"]["extensions"]] == [("scatterx", "reinstall")]
    assert plan["alpha"]["extensions"][0]["target"].endswith("/scatterx-1.0%2Bpt215cu132-cp311-cp311-linux_x86_64.whl")
    assert [(s["name"], s["action"], s["target"]) for s in plan["beta"]["extensions"]] == [
        ("myops", "rebuild", str(beta))]
    assert [(s["name"], s["action"]) for s in plan["gamma"]["extensions"]] == [("stuck", "blocked")]
    assert "no wheel built for torch 2.15.0+cu132" in plan["gamma"]["extensions"][0]["why"]
    assert [plan[name]["held"] for name in ("alpha", "beta", "gamma")] == [False, False, True]
    text = run_layerenv(["rebase", "--dry-run"], new_env, tmp_path).stdout
    assert "reinstall scatterx 1.0+pt29cu129: scatterx 1.0+pt215cu132, built for torch 2.15.0+cu132" in text
    assert f"rebuild myops 0.1: editable source {beta}, against torch 2.15.0+cu132" in text
    assert "[not moved: its extensions cannot follow; --force moves it anyway]" in text
    assert {torch_of(venv) for venv in venvs.values()} == {"2.9.1+cu129"}, "--dry-run changed nothing"
    assert (beta / "built_with.txt").read_text() == "2.9.1+cu129"

    (beta / "break-build").write_text("")
    failed = run_layerenv(["rebase", "--json"], new_env, tmp_path)
    assert failed.returncode == 1
    outcome = json.loads(failed.stdout)
    assert outcome["moved"] == [str(alpha)] and outcome["reinstalled"] == {str(venvs["alpha"]): ["scatterx"]}
    assert answer(venvs["alpha"], "scatterx").stdout == "215\n" and torch_of(venvs["alpha"]) == "2.15.0+cu132"
    beta_failure = next(line for line in outcome["failures"] if line.startswith(str(venvs["beta"])))
    assert "could not rebuild myops" in beta_failure and f"it stays on {OLD_ID}, as it worked" in beta_failure
    assert torch_of(venvs["beta"]) == "2.9.1+cu129" and answer(venvs["beta"], "myops").stdout == "1\n"
    assert any(line.startswith(f"{venvs['gamma']}: not moved: stuck 1.0: built for torch 2.9.1+cu129")
               for line in outcome["failures"])
    assert torch_of(venvs["gamma"]) == "2.9.1+cu129" and answer(venvs["gamma"], "stuck").stdout == "29\n"

    (beta / "break-build").unlink()
    again = run_layerenv(["rebase", "--json"], new_env, tmp_path)
    assert again.returncode == 1, "gamma is still held"
    assert json.loads(again.stdout)["reinstalled"] == {str(venvs["beta"]): ["myops"]}
    assert (beta / "built_with.txt").read_text() == "2.15.0+cu132"
    assert torch_of(venvs["beta"]) == "2.15.0+cu132" and answer(venvs["beta"], "myops").stdout == "1\n"

    forced = run_layerenv(["rebase", "--force"], new_env, tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert "moved " + str(gamma) + " anyway (--force): stuck 1.0: built for torch 2.9.1+cu129" in forced.stderr
    broken = answer(venvs["gamma"], "stuck")
    assert broken.returncode != 0 and "undefined symbol: " + LEGACY in broken.stderr
    assert findings(new_env, tmp_path, "extension-stale") == {str(gamma): (
        f"{venvs['gamma']}: stuck 1.0 was built for torch 2.9.1+cu129, the base has torch 2.15.0+cu132: importing "
        "it fails (`undefined symbol` or a CUDA version error)")}

    add_to_index(pypi, [build_wheel(tmp_path / "stuck-new", "stuck", "1.1",
                                    {"stuck/__init__.py": loader_module("_ext.so"),
                                     "stuck/_ext.so": native.new_ext.read_bytes()},
                                    requires=("torch==2.15.0",), python_tag="cp311", abi_tag="cp311",
                                    platform_tag="linux_x86_64")])
    pinned = json.loads(run_layerenv(["rebase", "--dry-run", "--json", "--project", str(gamma)], new_env,
                                     tmp_path).stdout)["moves"]
    assert [(m["from"], m["to"], [(s["name"], s["action"]) for s in m["extensions"]]) for m in pinned] == [
        (NEW_ID, NEW_ID, [("stuck", "reinstall")])], "on its base already: the extension alone is planned"
    assert pinned[0]["extensions"][0]["target"].endswith("/stuck-1.1-cp311-cp311-linux_x86_64.whl")
    killed = run_layerenv(["rebase", "--project", str(gamma)],
                          {**new_env, "LAYERENV_FAULTS_ENABLED": "1", "LAYERENV_FAULT": "rebase:after-extensions"},
                          tmp_path)
    assert killed.returncode == -9 and torch_of(venvs["gamma"]) == "2.15.0+cu132"
    fixed = run_layerenv(["rebase", "--project", str(gamma), "--json"], new_env, tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert answer(venvs["gamma"], "stuck").stdout == "215\n"
    assert findings(new_env, tmp_path, "extension-stale") == {}
    assert run_layerenv(["rebase"], new_env, tmp_path).stdout.startswith("nothing changed: 3 project(s)")


def test_the_plan_for_each_kind_of_extension(tmp_path: Path) -> None:
    """Pure: what a move from torch 2.9.1+cu129 to 2.15.0+cu132 does to each kind of extension."""
    from layerenv.project.extension_moves import plan_extension
    from layerenv.project.extension_sources import Candidate
    from layerenv.project.extensions import Extension

    def plan(extension: Extension, *candidates: Candidate) -> tuple[str, str] | None:
        step = plan_extension(extension, "2.9.1+cu129", "2.15.0+cu132", candidates, "cp311", "linux_x86_64", "INDEX")
        return None if step is None else (step.action, step.target or step.why)

    def wheel(version: str, pin: str | None = None, python: str = "cp311", platform: str = "manylinux_2_28_x86_64"
              ) -> Candidate:
        return Candidate("ext", version, f"https://x/ext-{version}.whl", (python,), (platform,), pin)

    recorded = Extension("ext", "1.0", "wheel", "", ("ext/_C.so",), "2.9.1+cu129")
    assert plan(recorded, wheel("1.0+pt215cu132"), wheel("1.1+pt215cu132", platform="macosx_11_0_arm64"),
                wheel("1.2+pt29cu129"), wheel("0.9+pt215cu132")) == ("reinstall", "https://x/ext-1.0+pt215cu132.whl")
    assert plan(recorded, wheel("2.0", "==2.15.0")) == ("reinstall", "https://x/ext-2.0.whl")
    assert plan(recorded, wheel("2.0", ">=2.0"), wheel("2.1", "==2.15.0", python="cp312"),
                wheel("1.0+pt215cu130")) == ("blocked", "built for torch 2.9.1+cu129; no wheel built for torch "
                                              "2.15.0+cu132 on INDEX, and it was not built from source here")
    assert plan(Extension("ext", "1.0+pt215cu132", "wheel", "", (), None)) is None, "built for the new torch"
    unknown = Extension("ext", "1.0", "wheel", "", (), None)
    assert plan(unknown, wheel("1.0+pt215")) == ("reinstall", "https://x/ext-1.0+pt215.whl"), "presumed the old torch"
    assert plan_extension(unknown, "2.15.0+cu132", "2.15.0+cu132", [], "cp311", "linux_x86_64", "") is None
    source = tmp_path / "src"
    source.mkdir()
    assert plan(Extension("ext", "1.0", "editable", str(source), (), "2.9.1+cu129")) == ("rebuild", str(source))
    assert plan(Extension("ext", "1.0", "sdist", "https://x/ext-1.0.tar.gz", (), "2.9.1+cu129")) == (
        "rebuild", "https://x/ext-1.0.tar.gz")
    gone = plan(Extension("ext", "1.0", "local", str(tmp_path / "gone"), (), "2.9.1+cu129"))
    assert gone is not None and gone[0] == "blocked" and "is gone" in gone[1]


def test_sources_are_the_projects_and_the_installers(tmp_path: Path) -> None:
    """The index lines layerenv kept, the installer variables, and a find-links page named for the old torch
    read for the new one too (as PyG publishes them)."""
    from layerenv.project.extension_sources import PYPI, PackageSources

    (tmp_path / "layerenv-requirements-1.txt").write_text(
        "--index-url https://mirror/simple\n-f https://data.pyg.org/whl/torch-2.9.1+cu129.html\nscatterx\n")
    sources = PackageSources.of_venv(tmp_path, {"PIP_EXTRA_INDEX_URL": "https://extra/simple"},
                                     "2.9.1+cu129", "2.15.0+cu132")
    assert sources.indexes == ("https://mirror/simple", "https://extra/simple")
    assert sources.find_links == ("https://data.pyg.org/whl/torch-2.9.1+cu129.html",
                                  "https://data.pyg.org/whl/torch-2.15.0+cu132.html")
    assert PackageSources.of_venv(tmp_path / "none", {}, "a", "b").indexes == (PYPI,)


def test_an_object_linking_only_libcudart_breaks_only_with_the_cuda_major() -> None:
    from layerenv.project.extension_moves import plan_extension
    from layerenv.project.extensions import Extension

    cupy_like = Extension("cupy-cuda12x", "13.0", "wheel", "", ("cupy/_core.so",), "2.9.1+cu128", cuda_only=True)
    assert stale_reason(cupy_like, "2.9.1+cu129", None) is None
    assert stale_reason(cupy_like, "2.15.0+cu132", None) == (
        "cupy-cuda12x 13.0 was built for torch 2.9.1+cu128, the base has torch 2.15.0+cu132")
    unrecorded = replace(cupy_like, built_against=None)
    assert plan_extension(unrecorded, "2.9.1+cu128", "2.11.0+cu129", [], "cp311", "linux_x86_64", "") is None
    blocked = plan_extension(unrecorded, "2.9.1+cu128", "2.11.0+cu130", [], "cp311", "linux_x86_64", "")
    assert blocked is not None and blocked.action == "blocked"
