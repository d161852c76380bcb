"""A project venv layered on a base, driven by the real pip, uv and poetry (local indexes only)."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
import virtualenv
from hypothesis import given, settings
from hypothesis import strategies as st

from layerenv.lifecycle.shadows import find_shadows, remove_shadows
from layerenv.lifecycle.startup_files import changed_boot_files
from layerenv.project.boot import fixed_boot, legacy_fixed_boot
from layerenv.project.conflicts import explain_conflict
from layerenv.project.link import LinkRecord, link, read_link, uv_environment
from layerenv.store import atomic
from layerenv.venv.distinfo import first_parts, is_family, read_distributions, top_level_of
from layerenv.venv.layout import VenvLayout
from tests.support.index import isolated_installer_env, serve_index, write_simple_index
from tests.support.pytest_fixtures import PYPI, VariantIndexes, wheel_path
from tests.support.wheels import build_fake_companion, build_fake_torch, build_plain_package, build_wheel

# fake_wheels and variant_indexes come from tests/support/pytest_fixtures.py through conftest.py.
pytestmark = pytest.mark.slow
UV = shutil.which("uv", path="/tmp/dev/bin") or shutil.which("uv") or "uv"
POETRY = shutil.which("poetry", path="/tmp/dev/bin") or shutil.which("poetry") or "poetry"
TORCH_A = "2.9.1+cu128"

_TRITON_TOOLS = """\
def main():
    import torch, triton
    print("triton-hello", triton.__file__, torch.__file__)
    return 0
"""


# --------------------------------------------------------------------------- helpers


def run(cmd: Sequence[str | Path], env: Mapping[str, str] | None = None, cwd: Path | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(c) for c in cmd], env=dict(env) if env is not None else None, cwd=cwd, check=False,
                          capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def site_packages_of(venv: Path) -> Path:
    return VenvLayout.for_venv(venv).site_packages


def python(venv: Path) -> Path:
    return venv / "bin" / "python"


def probe(venv: Path, code: str, env: Mapping[str, str] | None = None) -> object:
    return json.loads(run([python(venv), "-c", code], env=env).stdout.strip().splitlines()[-1])


TORCH_PROBE = """
import importlib.metadata as md, json, torch
print(json.dumps({"file": torch.__file__, "version": torch.__version__, "dist": md.version("torch")}))
"""


def make_venv(dest: Path, *, seed: bool = True) -> Path:
    args = [str(dest), "--no-periodic-update", "-p", sys.executable]
    args += ["--no-setuptools"] if seed else ["--no-seed"]
    virtualenv.cli_run(args, setup_logging=False)
    return dest


def entries(venv: Path) -> set[str]:
    return {p.name for p in site_packages_of(venv).iterdir() if p.name != "__pycache__"}


def under(path: object, root: Path) -> bool:
    return Path(str(path)).resolve().is_relative_to(root.resolve())


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def extra_wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wheels the catalogue lacks: a triton with a console script, plain-lib 2.0, a PyPI-style cu130."""
    dest = tmp_path_factory.mktemp("extra-wheels")
    build_wheel(dest, "triton", "3.5.0", {
        "triton/__init__.py": "__version__ = '3.5.0'\n",
        "triton/tools.py": _TRITON_TOOLS,
        "triton-3.5.0.dist-info/entry_points.txt": "[console_scripts]\ntriton-hello = triton.tools:main\n",
    })
    build_plain_package(dest, "plain-lib", "2.0")
    build_fake_torch(dest, "2.11.0+cu130", dist_version="2.11.0", cuda="13.0",
                     requires=("nvidia-cuda-runtime==13.0.96; platform_system == 'Linux'",))
    build_fake_companion(dest, "torchvision", "0.26.0", ("torch==2.11.0",))
    build_fake_companion(dest, "nvidia-cuda-runtime", "13.0.96")
    return dest


@pytest.fixture(scope="session")
def pip_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """No machine pip/uv config, but pip still reads the venv's own pip.conf (its "site" file).

    ``PIP_CONFIG_FILE=/dev/null`` would skip the site file too, so instead: the global files are
    looked up in an empty ``XDG_CONFIG_DIRS`` and an empty ``PIP_CONFIG_FILE`` hides the user's.
    """
    root = tmp_path_factory.mktemp("pip-env")
    (root / "empty.conf").write_text("")
    env = isolated_installer_env(uv_cache_dir=root / "uv-cache")
    env.update(PIP_CONFIG_FILE=str(root / "empty.conf"), XDG_CONFIG_DIRS=str(root / "xdg"),
               PIP_CACHE_DIR=str(root / "pip-cache"))
    return env


def _make_base(dest: Path, wheels: Sequence[Path], direct: Sequence[Path], seed: bool) -> Path:
    make_venv(dest, seed=seed)
    links = dest.parent / f"{dest.name}-links"
    links.mkdir()
    for wheel in wheels:
        shutil.copy(wheel, links)
    names = [w.name.split("-")[0] for w in wheels]
    env = isolated_installer_env()
    run([UV, "pip", "install", "--python", python(dest), "--no-index", "--find-links", links, *names], env=env)
    if direct:  # installed from a file path: the base's dist-info gets direct_url.json
        run([UV, "pip", "install", "--python", python(dest), "--no-index", "--no-deps", *direct], env=env)
    return dest


@pytest.fixture(scope="session")
def base_a(tmp_path_factory: pytest.TempPathFactory, fake_wheels: Path, extra_wheels: Path) -> Path:
    """torch 2.9.1+cu128 family + triton (console script, installed from a path) + plain-lib 1.0;
    seeded with pip, which must not be stubbed."""
    wheels = [wheel_path(fake_wheels, "torch", TORCH_A), wheel_path(fake_wheels, "torchvision", "0.24.1+cu128"),
              wheel_path(fake_wheels, "nvidia-cuda-runtime-cu12", "12.8.90"),
              wheel_path(fake_wheels, "plain-lib", "1.0")]
    return _make_base(tmp_path_factory.mktemp("bases") / "cu128", wheels,
                      [wheel_path(extra_wheels, "triton", "3.5.0")], seed=True)


@pytest.fixture(scope="session")
def base_b(tmp_path_factory: pytest.TempPathFactory, fake_wheels: Path, extra_wheels: Path) -> Path:
    """PyPI-style torch: dist version 2.11.0, ``torch.__version__`` 2.11.0+cu130."""
    wheels = [wheel_path(extra_wheels, "torch", "2.11.0"), wheel_path(extra_wheels, "torchvision", "0.26.0"),
              wheel_path(extra_wheels, "nvidia-cuda-runtime", "13.0.96"),
              wheel_path(fake_wheels, "plain-lib", "1.0")]
    return _make_base(tmp_path_factory.mktemp("bases") / "cu130", wheels, [], seed=False)


@pytest.fixture
def project(tmp_path: Path, base_a: Path) -> Path:
    venv = make_venv(tmp_path / "proj")
    link(venv, base_id="cu128-a", base_venv=base_a)
    return venv


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, base_a: Path) -> Path:
    """A linked project that tests only read."""
    venv = make_venv(tmp_path_factory.mktemp("shared") / "proj")
    link(venv, base_id="cu128-a", base_venv=base_a)
    return venv


def pypi(variant_indexes: VariantIndexes) -> str:
    return variant_indexes.url(PYPI)


def pip_install(venv: Path, env: Mapping[str, str], *args: str | Path, check: bool = True
                ) -> subprocess.CompletedProcess[str]:
    return run([python(venv), "-m", "pip", "install", *args], env=env, check=check)


# --------------------------------------------------------------------------- distinfo


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["torch", "functorch", "six.py", "torch-2.dist-info", "..", "a\\b", ""]),
                          st.sampled_from(["", "/x.py", "/y/z.so", "\\w.py"])), max_size=30),
       st.sampled_from(["\n", "\r\n"]))
def test_first_parts_of_a_record_are_those_of_each_line_however_its_lines_are_ordered(
    lines: list[tuple[str, str]], newline: str
) -> None:
    record = "".join(f"{first}{rest},sha256=x,1{newline}" for first, rest in lines)
    paths = [line.split(",", 1)[0].replace("\\", "/") for line in record.splitlines() if line]
    assert first_parts(record) == {path if "/" not in path else path.split("/", 1)[0] + "/" for path in paths}


def test_read_distributions_of_base(base_a: Path) -> None:
    dists = {d.name: d for d in read_distributions(site_packages_of(base_a))}
    assert set(dists) >= {"torch", "torchvision", "triton", "nvidia-cuda-runtime-cu12", "plain-lib", "pip"}
    assert dists["torch"].version == TORCH_A and dists["torch"].top_level == ("torch",)
    assert dists["nvidia-cuda-runtime-cu12"].top_level == ("nvidia",)
    assert dists["triton"].console_scripts == (("triton-hello", "triton.tools:main"),)
    assert dists["torch"].installer == "uv" and len(dists["torch"].record_sha256) == 64
    assert "Requires-Dist: nvidia-cuda-runtime-cu12==12.8.90" in dists["torch"].metadata_text
    assert [top_level_of(p) for p in ("torch/_C.py", "functorch/__init__.py", "six.py", "_C.cpython-311.so",
                                      "torch.libs/x.so", "../../../bin/torchrun", "torch-2.dist-info/RECORD",
                                      "__pycache__/x.pyc")] == ["torch", "functorch", "six", "_C", None,
                                                                None, None, None]
    assert all(map(is_family, ["torch", "TorchAudio", "pytorch-triton-rocm", "nvidia-cudnn-cu12",
                               "cuda-bindings", "triton"]))
    assert not any(map(is_family, ["torchmetrics", "sympy", "nvidiaish", "cudatext", "pip", "nvidia-ml-py",
                                   "nvidia_ml_py3"]))


# --------------------------------------------------------------------------- (a) (f) (h) (j) (k)


def test_import_torch_loads_the_base_build(shared: Path, base_a: Path) -> None:
    info = probe(shared, TORCH_PROBE)
    assert isinstance(info, dict)
    assert under(info["file"], site_packages_of(base_a))
    assert info["version"] == TORCH_A and info["dist"] == TORCH_A
    site = site_packages_of(shared)
    lines = (site / "_layerenv.pth").read_text().splitlines()
    assert lines[0] == str(site_packages_of(base_a)) and lines[1].startswith("import _layerenv_boot;")
    assert repr(str(site_packages_of(base_a))) in lines[1] and len(lines) == 2
    record = read_link(shared)
    assert record is not None and record.base_id == "cu128-a"
    assert record.family_modules == ("nvidia", "torch", "torchvision", "triton")
    assert dict(record.family) == {"torch": TORCH_A, "torchvision": "0.24.1+cu128",
                                   "nvidia-cuda-runtime-cu12": "12.8.90", "triton": "3.5.0"}
    assert LinkRecord.from_json(json.loads((shared / "layerenv.json").read_text())) == record
    stubs = {d.name: d for d in read_distributions(site) if (d.dist_info / "LAYERENV_STUB").exists()}
    assert set(stubs) == {"torch", "torchvision", "triton", "nvidia-cuda-runtime-cu12", "plain-lib"}
    triton = stubs["triton"].dist_info
    assert (site_packages_of(base_a) / triton.name / "direct_url.json").exists()  # the base has one
    assert sorted(p.name for p in triton.iterdir()) == ["INSTALLER", "LAYERENV_STUB", "METADATA", "RECORD",
                                                         "WHEEL", "entry_points.txt"]
    assert (triton / "INSTALLER").read_text() == "layerenv\n"
    assert json.loads((triton / "LAYERENV_STUB").read_text())["base_id"] == "cu128-a"
    listed = [line.split(",")[0] for line in (triton / "RECORD").read_text().splitlines()]
    assert all(p.startswith(triton.name + "/") or p == "../../../bin/triton-hello" for p in listed)
    assert (shared / "layerenv-constraints.txt").read_text().splitlines()[1:] == [
        "nvidia-cuda-runtime-cu12==12.8.90", f"torch=={TORCH_A}", "torchvision==0.24.1+cu128", "triton==3.5.0"]


def test_installers_list_and_check_the_base(shared: Path, pip_env: dict[str, str]) -> None:
    listed = {p["name"]: p["version"] for p in json.loads(
        run([python(shared), "-m", "pip", "list", "--format", "json"], env=pip_env).stdout)}
    assert listed["torch"] == TORCH_A and listed["plain-lib"] == "1.0"
    assert run([python(shared), "-m", "pip", "check"], env=pip_env).stdout.startswith("No broken requirements")
    uv_listed = {p["name"]: p["version"] for p in json.loads(
        run([UV, "pip", "list", "--python", python(shared), "--format", "json"], env=pip_env).stdout)}
    assert uv_listed["torch"] == TORCH_A and uv_listed["triton"] == "3.5.0"
    run([UV, "pip", "check", "--python", python(shared)], env=pip_env)  # needs the stubs' WHEEL file
    assert probe(shared, "import importlib.metadata as m, json; print(json.dumps(sorted("
                 "e.name for e in m.entry_points(group='console_scripts') if e.name.startswith('triton'))))"
                 ) == ["triton-hello"]


def test_global_site_packages_stay_invisible(shared: Path) -> None:
    assert "include-system-site-packages = false" in (shared / "pyvenv.cfg").read_text()
    home_python = Path(sys.base_prefix) / "bin" / "python3"
    global_site = Path(run([home_python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
                           ).stdout.strip())
    paths = probe(shared, "import json, sys; print(json.dumps(sys.path))")
    assert isinstance(paths, list) and not any(under(p, global_site) for p in paths if p)
    visible = entries(shared) | {p.name for p in site_packages_of(read_link(shared).base_venv).iterdir()}  # type: ignore[union-attr]
    only_global = sorted(p.name for p in global_site.glob("*") if (p / "__init__.py").is_file()
                         and p.name.isidentifier() and p.name not in visible)
    if only_global:
        assert probe(shared, f"import importlib.util, json; print(json.dumps("
                             f"importlib.util.find_spec({only_global[0]!r}) is None))") is True


def test_family_console_script_wrapper(shared: Path, base_a: Path) -> None:
    out = run([shared / "bin" / "triton-hello"]).stdout.split()
    assert out[0] == "triton-hello"
    assert under(out[1], site_packages_of(base_a)) and under(out[2], site_packages_of(base_a))
    assert (shared / "bin" / "triton-hello").read_text().startswith(f"#!{python(shared)}\n")


def test_startup_overhead_is_small(shared: Path, tmp_path: Path) -> None:
    plain = make_venv(tmp_path / "plain")

    def once(venv: Path) -> float:
        start = time.perf_counter()
        run([python(venv), "-c", "pass"])
        return time.perf_counter() - start

    linked, unlinked = [], []
    for _ in range(11):
        linked.append(once(shared))
        unlinked.append(once(plain))
    assert statistics.median(linked) - statistics.median(unlinked) < 0.050
    times = run([python(shared), "-X", "importtime", "-c", "pass"]).stderr
    boot_us = [int(line.split("|")[1]) for line in times.splitlines() if line.rstrip().endswith("_layerenv_boot")]
    assert boot_us and boot_us[0] < 10_000  # cumulative microseconds of the boot module's import


# --------------------------------------------------------------------------- (b) (c) pip and uv


def test_pip_and_uv_install_nothing_torch_related(project: Path, pip_env: dict[str, str],
                                                 variant_indexes: VariantIndexes) -> None:
    before = entries(project)
    out = pip_install(project, pip_env, "--index-url", pypi(variant_indexes), "needs-torch").stdout
    assert entries(project) - before == {"needs_torch", "needs_torch-1.0.dist-info"}
    assert before <= entries(project) and "Successfully installed needs-torch-1.0" in out
    run([UV, "pip", "uninstall", "--python", python(project), "needs-torch"], env=pip_env)
    assert entries(project) == before

    uv_env = {**pip_env, **uv_environment(project, pip_env)}
    assert uv_env["UV_CONSTRAINT"] == str(project / "layerenv-constraints.txt")
    proc = run([UV, "pip", "install", "--python", python(project), "--index-url", pypi(variant_indexes),
                "needs-torch"], env=uv_env)
    assert entries(project) - before == {"needs_torch", "needs_torch-1.0.dist-info"}
    assert "torch==" not in proc.stderr.replace("needs-torch==", "")
    assert probe(project, TORCH_PROBE)["version"] == TORCH_A  # type: ignore[index]


def test_a_different_torch_fails_before_changing_anything(project: Path, pip_env: dict[str, str],
                                                          variant_indexes: VariantIndexes) -> None:
    record = read_link(project)
    assert record is not None
    before = entries(project)
    proc = pip_install(project, pip_env, "--index-url", pypi(variant_indexes), "pins-old-torch", check=False)
    assert proc.returncode != 0 and entries(project) == before
    assert "ResolutionImpossible" in proc.stderr or "conflicting dependencies" in proc.stderr
    message = explain_conflict(proc.stdout + proc.stderr, record)
    assert "pins-old-torch 1.0" in message and "torch==2.5.1" in message and TORCH_A in message

    uv_env = {**pip_env, **uv_environment(project)}
    proc = run([UV, "pip", "install", "--python", python(project), "--index-url", pypi(variant_indexes),
                "pins-old-torch"], env=uv_env, check=False)
    assert proc.returncode != 0 and entries(project) == before
    message = explain_conflict(proc.stderr, record)
    assert "pins-old-torch" in message and "torch==2.5.1" in message and TORCH_A in message
    metadata = "Name: pins-old-torch\nVersion: 1.0\nRequires-Dist: torch==2.5.1\nRequires-Dist: plain-lib\n"
    assert explain_conflict(metadata, record).startswith(f"pins-old-torch 1.0 requires torch==2.5.1, but base "
                                                         f"cu128-a provides torch {TORCH_A}")
    assert "cu128-a" in explain_conflict("something else went wrong", record)


def test_machine_pip_config_does_not_defeat_the_venv_constraint(project: Path,
                                                                variant_indexes: VariantIndexes) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PIP_CONSTRAINT"}  # the real global + user config
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    before = entries(project)
    proc = pip_install(project, env, "--index-url", pypi(variant_indexes), "pins-old-torch", check=False)
    assert proc.returncode != 0 and entries(project) == before
    assert "The user requested (constraint) torch==2.9.1+cu128" in proc.stdout


# --------------------------------------------------------------------------- (d) shadows


def test_shadow_torch_never_loads_and_is_removed(project: Path, pip_env: dict[str, str],
                                                 fake_wheels: Path, base_a: Path) -> None:
    cpu = wheel_path(fake_wheels, "torch", "2.9.1+cpu")
    site = site_packages_of(project)
    # Through the venv's pip.conf, even a --no-deps install of a wheel file is refused.
    assert pip_install(project, pip_env, "--no-index", "--no-deps", cpu, check=False).returncode != 0
    assert not (site / "torch").exists()
    # An installer that skips the config (PIP_CONFIG_FILE=/dev/null) slips a second torch in.
    pip_install(project, isolated_installer_env(), "--no-index", "--no-deps", cpu)
    assert (site / "torch" / "__init__.py").is_file()
    info = probe(project, "import torch, json; print(json.dumps([torch.__file__, torch.__version__]))")
    assert isinstance(info, list) and under(info[0], site_packages_of(base_a)) and info[1] == TORCH_A
    assert [(s.name, s.version, s.kind) for s in find_shadows(project)] == [("torch", "2.9.1+cpu", "distribution")]
    removal = remove_shadows(project)
    assert [s.describe() for s in removal.removed] == ["torch 2.9.1+cpu"] and not removal.skipped
    assert not (site / "torch").exists() and find_shadows(project) == []
    link(project, base_id="cu128-a", base_venv=base_a)
    assert (site / f"torch-{TORCH_A}.dist-info" / "LAYERENV_STUB").is_file()

    # uv without UV_CONSTRAINT does the same; a hand-copied torch folder is a shadow too.
    run([UV, "pip", "install", "--python", python(project), "--no-index", "--no-deps", cpu], env=pip_env)
    assert probe(project, TORCH_PROBE)["file"].startswith(str(site_packages_of(base_a)))  # type: ignore[index]
    assert [s.describe() for s in find_shadows(project)] == ["torch 2.9.1+cpu"]
    remove_shadows(project)
    shutil.copytree(site_packages_of(base_a) / "torch", site / "torch")
    assert [(s.name, s.kind) for s in find_shadows(project)] == [("torch", "module")]
    remove_shadows(project)
    assert not (site / "torch").exists()
    link(project, base_id="cu128-a", base_venv=base_a)
    run([UV, "pip", "check", "--python", python(project)], env=pip_env)


# --------------------------------------------------------------------------- (e) poetry

_POETRY_PROJECT = """\
[project]
name = "layered-app"
version = "0.1.0"
requires-python = ">=3.10"
dependencies = ["needs-torch", "torch{torch}"]

[tool.poetry]
package-mode = false

[tool.poetry.dependencies]
torch = {{ source = "torch-index" }}

[[tool.poetry.source]]
name = "local"
url = "{main}"
priority = "primary"

[[tool.poetry.source]]
name = "torch-index"
url = "{torch_url}"
priority = "explicit"
"""


@pytest.fixture
def poetry_indexes(tmp_path: Path, fake_wheels: Path) -> Iterator[tuple[str, str]]:
    root = tmp_path / "poetry-indexes"
    plain = [wheel_path(fake_wheels, n, v) for n, v in (("needs-torch", "1.0"), ("pins-old-torch", "1.0"),
             ("plain-lib", "1.0"), ("nvidia-cuda-runtime-cu12", "12.8.90"), ("nvidia-cuda-runtime-cu12", "12.4.127"))]
    write_simple_index(root / "main", plain)
    write_simple_index(root / "torch", [wheel_path(fake_wheels, "torch", v) for v in (TORCH_A, "2.5.1")])
    with serve_index(root) as server:
        yield server.url_for("main/simple") + "/", server.url_for("torch/simple") + "/"


def test_poetry_keeps_the_base_torch(tmp_path: Path, base_a: Path, pip_env: dict[str, str],
                                     poetry_indexes: tuple[str, str]) -> None:
    app = tmp_path / "app"
    venv = make_venv(app / ".venv")
    link(venv, base_id="cu128-a", base_venv=base_a)
    env = {**pip_env, "POETRY_VIRTUALENVS_IN_PROJECT": "true", "POETRY_CACHE_DIR": str(tmp_path / "pc"),
           "POETRY_CONFIG_DIR": str(tmp_path / "pconf"), "POETRY_DATA_DIR": str(tmp_path / "pdata"),
           "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring", "POETRY_NO_INTERACTION": "1"}
    main, torch_url = poetry_indexes
    (app / "pyproject.toml").write_text(_POETRY_PROJECT.format(torch=">=2.0", main=main, torch_url=torch_url))
    # Poetry alone (--no-plugins: layerenv's plugin, tests/test_poetry_plugin.py, may be in its environment).
    out = run([POETRY, "install", "--no-plugins"], env=env, cwd=app).stdout
    assert "Installing needs-torch (1.0)" in out
    assert "1 install, 0 updates, 0 removals" in out and "torch (" not in out.replace("needs-torch (", "")
    assert find_shadows(venv) == [] and probe(venv, TORCH_PROBE)["dist"] == TORCH_A  # type: ignore[index]
    assert run([python(venv), "-m", "pip", "check"], env=pip_env).returncode == 0

    # A lock naming another torch: poetry (which ignores pip.conf) installs it; it never loads.
    (app / "pyproject.toml").write_text(_POETRY_PROJECT.format(torch="==2.5.1", main=main, torch_url=torch_url))
    run([POETRY, "lock", "--no-plugins"], env=env, cwd=app)
    run([POETRY, "install", "--no-plugins"], env=env, cwd=app, check=False)
    info = probe(venv, TORCH_PROBE)
    assert isinstance(info, dict) and under(info["file"], site_packages_of(base_a)) and info["version"] == TORCH_A
    assert ("torch", "2.5.1") in [(s.name, s.version) for s in find_shadows(venv)]


# --------------------------------------------------------------------------- (g) project first


def test_project_packages_come_before_the_base(project: Path, pip_env: dict[str, str], extra_wheels: Path,
                                               base_a: Path) -> None:
    site = site_packages_of(project)
    pip_install(project, pip_env, "--no-index", "--find-links", extra_wheels, "plain-lib==2.0")
    assert (site_packages_of(base_a) / "plain_lib" / "__init__.py").is_file()  # the stub went, not the base
    code = "import plain_lib, json; print(json.dumps([plain_lib.__file__, plain_lib.__version__]))"
    info = probe(project, code)
    assert isinstance(info, list) and under(info[0], site) and info[1] == "2.0"
    link(project, base_id="cu128-a", base_venv=base_a)  # relinking leaves the project's own install
    assert probe(project, code) == info and not (site / "plain_lib-1.0.dist-info").exists()
    run([python(project), "-m", "pip", "check"], env=pip_env)


# --------------------------------------------------------------------------- (i) relink, activation


def test_relink_to_another_base(project: Path, base_a: Path, base_b: Path, pip_env: dict[str, str],
                                variant_indexes: VariantIndexes) -> None:
    pip_install(project, pip_env, "--index-url", pypi(variant_indexes), "needs-torch")
    record = link(project, base_id="cu130-b", base_venv=base_b)
    assert record.version_of("torch") == "2.11.0"
    info = probe(project, TORCH_PROBE + "import torchvision; print(json.dumps(torchvision.__file__))")
    assert under(info, site_packages_of(base_b))
    info = probe(project, TORCH_PROBE)
    assert isinstance(info, dict) and (info["version"], info["dist"]) == ("2.11.0+cu130", "2.11.0")
    pins = (project / "layerenv-constraints.txt").read_text()
    assert "torch==2.11.0\n" in pins and "+cu130" not in pins and "nvidia-cuda-runtime==13.0.96" in pins
    site = site_packages_of(project)
    assert not (site / f"torch-{TORCH_A}.dist-info").exists() and not (project / "bin" / "triton-hello").exists()
    assert not list(site.glob("triton-*.dist-info")) and not list(site.glob("nvidia_cuda_runtime_cu12-*"))
    assert (site / "needs_torch-1.0.dist-info").is_dir()  # the project's own install stays
    run([python(project), "-m", "pip", "check"], env=pip_env)
    proc = pip_install(project, pip_env, "--index-url", pypi(variant_indexes), "pins-old-torch", check=False)
    assert proc.returncode != 0
    assert "torch 2.11.0" in explain_conflict(proc.stdout, record)
    link(project, base_id="cu128-a", base_venv=base_a)
    assert probe(project, TORCH_PROBE)["version"] == TORCH_A  # type: ignore[index]


def test_interrupted_relink_leaves_a_working_torch(project: Path, base_a: Path, base_b: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = atomic.write_text  # every file link() replaces goes through it (update_text included)
    state = {"calls": 0, "budget": 0}

    def failing(path: Path, text: str, *, mode: int = 0o644, durable: bool = True) -> None:
        state["calls"] += 1
        if state["calls"] > state["budget"]:
            raise KeyboardInterrupt  # as if killed before this file was replaced
        real_write(path, text, mode=mode, durable=durable)

    interrupted = 0
    for budget in range(40):  # kill the move to b before each of its file replacements in turn
        monkeypatch.setattr(atomic, "write_text", real_write)
        link(project, base_id="cu128-a", base_venv=base_a)  # from a, whole, each time: every file b changes
        monkeypatch.setattr(atomic, "write_text", failing)
        state.update(calls=0, budget=budget)
        try:
            link(project, base_id="cu130-b", base_venv=base_b)
        except KeyboardInterrupt:
            interrupted += 1
        else:
            break
        assert probe(project, TORCH_PROBE)["version"] in (TORCH_A, "2.11.0+cu130")  # type: ignore[index]
    assert interrupted >= 3  # at least the constraints, the .pth and the record (the boot module names no base)
    monkeypatch.setattr(atomic, "write_text", real_write)
    assert link(project, base_id="cu130-b", base_venv=base_b).base_id == "cu130-b"
    assert probe(project, TORCH_PROBE)["version"] == "2.11.0+cu130"  # type: ignore[index]
    assert not [p for p in site_packages_of(project).iterdir() if p.name.startswith(".layerenv")]


def _boot_files(venv: Path) -> dict[str, tuple[int, int]]:
    """The boot module and its bytecode, by inode and mtime: the same pair means not written again."""
    site = site_packages_of(venv)
    found = [site / "_layerenv_boot.py", *(site / "__pycache__").glob("_layerenv_boot.*.pyc")]
    return {path.name: (path.stat().st_ino, path.stat().st_mtime_ns) for path in found}


def _write_legacy_boot(venv: Path, base_id: str, base: Path) -> None:
    """The start-up files of a venv an earlier layerenv linked to ``base`` (the base named in the module)."""
    record = read_link(venv)
    assert record is not None
    old = legacy_fixed_boot(base_id, site_packages_of(base), record.family_modules)
    site = site_packages_of(venv)
    (site / "_layerenv_boot.py").write_text(old.module, encoding="utf-8")
    (site / "_layerenv.pth").write_text(old.pth, encoding="utf-8")
    for cached in (site / "__pycache__").glob("_layerenv_boot.*.pyc"):
        cached.unlink()


def test_relinking_onto_another_base_rewrites_the_pth_alone(project: Path, base_a: Path, base_b: Path) -> None:
    before = _boot_files(project)
    assert len(before) == 2  # the module and a .pyc of it

    link(project, base_id="cu130-b", base_venv=base_b)

    assert _boot_files(project) == before
    assert repr(str(site_packages_of(base_b))) in (site_packages_of(project) / "_layerenv.pth").read_text()
    info = probe(project, TORCH_PROBE)
    assert isinstance(info, dict) and info["version"] == "2.11.0+cu130" and under(info["file"], site_packages_of(base_b))
    link(project, base_id="cu128-a", base_venv=base_a)
    assert _boot_files(project) == before and probe(project, TORCH_PROBE)["version"] == TORCH_A  # type: ignore[index]


def test_a_venv_in_the_earlier_boot_form_is_accepted_and_its_next_link_moves_it(project: Path, base_a: Path,
                                                                               base_b: Path) -> None:
    site = site_packages_of(project)
    _write_legacy_boot(project, "cu128-a", base_a)
    record = read_link(project)
    assert record is not None
    assert probe(project, TORCH_PROBE)["version"] == TORCH_A  # type: ignore[index]
    assert changed_boot_files(site, record) == []  # doctor: the earlier form, as written, is healthy
    boot = site / "_layerenv_boot.py"
    boot.write_text(boot.read_text() + "import os\n")
    assert changed_boot_files(site, record) == [boot]  # and checked as that form

    moved = link(project, base_id="cu130-b", base_venv=base_b)

    new = fixed_boot("cu130-b", site_packages_of(base_b), moved.family_modules)
    assert boot.read_text() == new.module and (site / "_layerenv.pth").read_text() == new.pth
    assert list((site / "__pycache__").glob("_layerenv_boot.*.pyc")) and changed_boot_files(site, moved) == []
    assert probe(project, TORCH_PROBE)["version"] == "2.11.0+cu130"  # type: ignore[index]


def test_a_link_from_the_earlier_form_interrupted_at_each_file_leaves_a_working_torch(
        project: Path, base_a: Path, base_b: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The new .pth is written before the new module: beside the earlier module, whose base it does not call."""
    real_write = atomic.write_text
    state = {"calls": 0, "budget": 0}

    def failing(path: Path, text: str, *, mode: int = 0o644, durable: bool = True) -> None:
        state["calls"] += 1
        if state["calls"] > state["budget"]:
            raise KeyboardInterrupt
        real_write(path, text, mode=mode, durable=durable)

    seen = set()
    for budget in range(40):
        monkeypatch.setattr(atomic, "write_text", real_write)
        link(project, base_id="cu128-a", base_venv=base_a)
        _write_legacy_boot(project, "cu128-a", base_a)
        monkeypatch.setattr(atomic, "write_text", failing)
        state.update(calls=0, budget=budget)
        try:
            link(project, base_id="cu130-b", base_venv=base_b)
        except KeyboardInterrupt:
            pass
        else:
            break
        started = run([python(project), "-c", TORCH_PROBE])
        assert started.stderr == "", started.stderr  # no .pth line failed
        version = json.loads(started.stdout)["version"]
        pth_new = "layer(" in (site_packages_of(project) / "_layerenv.pth").read_text()
        module_new = "def layer(" in (site_packages_of(project) / "_layerenv_boot.py").read_text()
        seen.add((pth_new, module_new))
        assert version == (TORCH_A if not module_new else "2.11.0+cu130") if pth_new else version == TORCH_A
    assert (True, False) in seen  # the window between the two files was hit
    monkeypatch.setattr(atomic, "write_text", real_write)


def test_activation_exports_and_restores_uv_constraint(shared: Path) -> None:
    ours = str(shared / "layerenv-constraints.txt")
    script = (f'source "{shared}/bin/activate"; echo "A=$UV_CONSTRAINT"; deactivate; '
              'echo "D=${UV_CONSTRAINT-unset}"')
    env = {k: v for k, v in os.environ.items() if k != "UV_CONSTRAINT"}
    assert run(["bash", "-c", script], env=env).stdout.split() == [f"A={ours}", "D=unset"]
    assert run(["bash", "-c", script], env={**env, "UV_CONSTRAINT": "/x.txt"}).stdout.split() == [
        f"A={ours}", "/x.txt", "D=/x.txt"]
    for name in ("activate", "activate.fish", "activate.ps1", "activate.csh", "deactivate.csh"):
        text = (shared / "bin" / name).read_text()
        assert text.count("# >>> layerenv >>>") == (1 if name.endswith(".csh") else 2), name
    fish = (shared / "bin" / "activate.fish").read_text()
    assert fish.index("set -e _LAYERENV_UV_ACTIVE") < fish.index("deactivate nondestructive")
