"""The poetry plugin, driven by the real poetry (with layerenv installed into poetry's own environment,
as `poetry self add` does) against a local index that mimics PyPI: an unlabelled torch whose metadata
asks for nvidia-* wheels and triton under platform markers, beside the base's labelled CPU build."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import virtualenv

from layerenv import tomlcompat
from layerenv.lifecycle.shadows import find_shadows
from layerenv.project.link import link
from layerenv.venv.distinfo import canonical_name, is_family, read_distributions
from layerenv.venv.layout import VenvLayout
from tests.support.cli import REPO
from tests.support.index import IndexServer, isolated_installer_env, serve_index, write_simple_index
from tests.support.wheels import build_fake_companion, build_fake_torch, build_plain_package, parse_wheel_filename

pytestmark = pytest.mark.slow
UV = shutil.which("uv") or "uv"
BASE_TORCH = "2.13.0+cpu"
BASE_ID = "cp311-linux_x86_64-torch2.13.0-cpu"
LINUX = "; platform_system == 'Linux'"
TORCH_DEPS = ("sympy>=1.13.3", "networkx", "typing-extensions>=4.10")

TORCH_PROBE = """
import importlib.metadata as md, json, torch
print(json.dumps({"file": torch.__file__, "version": torch.__version__, "dist": md.version("torch")}))
"""


def _site_packages(venv: Path) -> Path:
    return VenvLayout.for_venv(venv).site_packages


# --------------------------------------------------------------------------- helpers


def run(cmd: Sequence[str | Path], env: Mapping[str, str] | None = None, cwd: Path | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(c) for c in cmd], env=dict(env) if env is not None else None, cwd=cwd, check=False,
                          capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def make_venv(dest: Path, *, seed: bool = True) -> Path:
    args = [str(dest), "--no-periodic-update", "-p", sys.executable]
    args += ["--no-setuptools"] if seed else ["--no-seed"]
    virtualenv.cli_run(args, setup_logging=False)
    return dest


def python(venv: Path) -> Path:
    return venv / "bin" / "python"


def under(path: object, root: Path) -> bool:
    return Path(str(path)).resolve().is_relative_to(root.resolve())


# --------------------------------------------------------------------------- wheels, indexes, base


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """``pypi``: what a PyPI-like index serves; ``cpu``: the variant index with the labelled build;
    ``base``: what the base holds besides torch."""
    dest = tmp_path_factory.mktemp("poetry-wheels")
    common = [
        build_fake_companion(dest, "sympy", "1.14.0", ("mpmath>=1.1",)),
        build_fake_companion(dest, "mpmath", "1.3.0"),
        build_fake_companion(dest, "networkx", "3.4"),
        build_fake_companion(dest, "typing-extensions", "4.12.2"),
    ]
    pypi = [
        *common,
        build_fake_torch(dest, "2.15.0+cu132", dist_version="2.15.0", cuda="13.2", requires=(
            f"nvidia-cuda-runtime==13.2.51{LINUX}", f"nvidia-cudnn-cu13==9.13.0{LINUX}", f"triton==3.6.0{LINUX}",
            *TORCH_DEPS)),
        # An older PyPI torch pinned sympy exactly, below what the base's torch needs.
        build_fake_torch(dest, "2.13.0+cu130", dist_version="2.13.0", cuda="13.0", requires=(
            f"nvidia-cuda-runtime==13.0.96{LINUX}", f"triton==3.5.0{LINUX}", "sympy==1.13.1", "networkx",
            "typing-extensions>=4.10")),
        build_fake_companion(dest, "nvidia-cuda-runtime", "13.2.51"),
        build_fake_companion(dest, "nvidia-cuda-runtime", "13.0.96"),
        build_fake_companion(dest, "nvidia-cudnn-cu13", "9.13.0", (f"nvidia-cublas==13.1.0{LINUX}",)),
        build_fake_companion(dest, "nvidia-cublas", "13.1.0"),
        build_fake_companion(dest, "triton", "3.6.0"),
        build_fake_companion(dest, "triton", "3.5.0"),
        build_fake_companion(dest, "sympy", "1.13.1", ("mpmath>=1.1",)),
        build_fake_companion(dest, "typing-extensions", "4.15.0"),
        build_plain_package(dest, "torchmetrics", "1.0", ("torch>=2.0", "typing-extensions")),
        build_plain_package(dest, "torchmetrics", "1.1", ("torch>=2.0", "typing-extensions>=4.12")),
        build_plain_package(dest, "plain-lib", "1.0"),
        build_plain_package(dest, "needs-new-torch", "1.0", ("torch>=99",)),
    ]
    cpu = [build_fake_torch(dest / "cpu", BASE_TORCH, cuda=None, requires=TORCH_DEPS)]
    base = [*common, build_plain_package(dest, "base-extra", "1.0")]
    return {"pypi": pypi, "cpu": cpu, "base": base}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, wheels: dict[str, list[Path]]) -> Path:
    """torch 2.13.0+cpu with its dependencies, and one package no torch needs (base-extra)."""
    venv = make_venv(tmp_path_factory.mktemp("poetry-base") / "base", seed=False)
    links = venv.parent / "links"
    links.mkdir()
    for wheel in [*wheels["cpu"], *wheels["base"]]:
        shutil.copy(wheel, links)
    run([UV, "pip", "install", "--python", python(venv), "--no-index", "--find-links", links,
         "torch", "base-extra"], env=isolated_installer_env())
    return venv


@pytest.fixture
def index(tmp_path: Path, wheels: dict[str, list[Path]]) -> Iterator[IndexServer]:
    root = tmp_path / "index"
    write_simple_index(root / "pypi", wheels["pypi"])
    with serve_index(root) as server:
        yield server


def family_wheels(server: IndexServer) -> dict[str, int]:
    return {name: count for name, count in server.wheel_downloads().items()
            if is_family(parse_wheel_filename(name)[0])}


# --------------------------------------------------------------------------- poetry with the plugin


@pytest.fixture(scope="module")
def poetry_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Poetry's own environment with this checkout of layerenv installed into it as an editable
    distribution (its entry points read from pyproject.toml), as `poetry self add` would leave it."""
    home = make_venv(tmp_path_factory.mktemp("poetry-home") / "venv", seed=False)
    site = _site_packages(home)
    project = tomlcompat.loads((REPO / "pyproject.toml").read_text())["project"]
    groups = {"console_scripts": project["scripts"], **project["entry-points"]}
    entry_points = "".join(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in items.items()) + "\n"
                           for group, items in groups.items())
    from layerenv import __version__

    dist_info = site / f"layerenv-{__version__}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: layerenv\nVersion: {__version__}\n")
    (dist_info / "entry_points.txt").write_text(entry_points)
    (dist_info / "INSTALLER").write_text("pip\n")
    (dist_info / "RECORD").write_text("")
    poetry_site = Path(shutil.which("poetry") or "poetry").resolve().parent.parent
    dev_site = _site_packages(poetry_site)  # where the real poetry and its dependencies live
    (site / "_layerenv_editable.pth").write_text(f"{REPO}\nimport site; site.addsitedir({str(dev_site)!r})\n")
    script = home / "bin" / "poetry"
    script.write_text(f"#!{python(home)}\nimport sys\nfrom poetry.console.application import main\n"
                      "sys.exit(main())\n")
    script.chmod(0o755)
    return home


@pytest.fixture
def poetry_env(tmp_path: Path, poetry_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("POETRY_", "PIP_", "UV_", "LAYERENV_")) and k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(POETRY_VIRTUALENVS_IN_PROJECT="true", POETRY_CACHE_DIR=str(tmp_path / "poetry-cache"),
               POETRY_CONFIG_DIR=str(tmp_path / "poetry-config"), POETRY_DATA_DIR=str(tmp_path / "poetry-data"),
               POETRY_NO_INTERACTION="1", PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
               PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1",
               PATH=os.pathsep.join([str(poetry_home / "bin"), env.get("PATH", "")]))
    return env


def poetry(args: Sequence[str], env: Mapping[str, str], cwd: Path, check: bool = True
           ) -> subprocess.CompletedProcess[str]:
    return run(["poetry", *args], env=env, cwd=cwd, check=check)


def test_poetry_loads_the_plugin(poetry_env: dict[str, str], tmp_path: Path) -> None:
    out = run(["poetry", "self", "show", "plugins"], env=poetry_env, cwd=tmp_path).stdout
    assert "layerenv" in out and "1 application plugin" in out


# --------------------------------------------------------------------------- projects


def pyproject(index: IndexServer, dependencies: Sequence[str], *, table: str = "project") -> str:
    """A package-less poetry project; ``table="tool.poetry"`` declares them the poetry-1 way."""
    source = f"""
[[tool.poetry.source]]
name = "pypi-like"
url = "{index.url_for('pypi/simple')}/"
priority = "primary"
"""
    if table == "tool.poetry":
        listed = "".join(f'{name} = "{spec or "*"}"\n' for name, spec in
                         (d.partition("==")[::2] for d in dependencies))
        return ('[tool.poetry]\nname = "app"\nversion = "0.1.0"\ndescription = ""\nauthors = []\n'
                f'package-mode = false\n\n[tool.poetry.dependencies]\npython = ">=3.10"\n{listed}{source}')
    listed = ", ".join(json.dumps(d) for d in dependencies)
    return f"""\
[project]
name = "app"
version = "0.1.0"
requires-python = ">=3.10"
dependencies = [{listed}]

[tool.poetry]
package-mode = false
{source}"""


@dataclass(frozen=True)
class Pair:
    """The same project twice: layered on the base, and in a plain venv (the reference lock)."""

    layered: Path
    plain: Path

    @property
    def venv(self) -> Path:
        return self.layered / ".venv"

    def write(self, text: str, name: str = "pyproject.toml") -> None:
        (self.layered / name).write_text(text)
        (self.plain / name).write_text(text)

    def lock_bytes(self) -> tuple[bytes, bytes]:
        return (self.layered / "poetry.lock").read_bytes(), (self.plain / "poetry.lock").read_bytes()


@pytest.fixture
def pair(tmp_path: Path, base: Path) -> Pair:
    layered, plain = tmp_path / "layered" / "app", tmp_path / "plain" / "app"
    venv = make_venv(layered / ".venv")
    link(venv, base_id=BASE_ID, base_venv=base)
    make_venv(plain / ".venv")
    return Pair(layered, plain)


def assert_layered(pair: Pair, base: Path, server: IndexServer) -> None:
    """No torch-family wheel fetched or written; torch is the base's; installers see a clean venv."""
    assert family_wheels(server) == {}
    site = _site_packages(pair.venv)
    for dist in read_distributions(site):
        if is_family(dist.name):
            assert (dist.dist_info / "LAYERENV_STUB").is_file(), dist.dist_info
    assert find_shadows(pair.venv) == []
    assert not [p for p in site.iterdir() if p.name in ("torch", "triton", "nvidia")]
    info = json.loads(run([python(pair.venv), "-c", TORCH_PROBE]).stdout)
    assert under(info["file"], _site_packages(base)) and info["version"] == BASE_TORCH
    check = run([python(pair.venv), "-m", "pip", "check"], env=isolated_installer_env())
    assert check.stdout.startswith("No broken requirements")


def real_dists(venv: Path) -> dict[str, str]:
    return {d.name: d.version for d in read_distributions(_site_packages(venv))
            if not (d.dist_info / "LAYERENV_STUB").is_file() and d.name not in ("pip", "wheel", "setuptools")}


# --------------------------------------------------------------------------- one test per command


@pytest.mark.parametrize(("dependencies", "table"), [
    (["torchmetrics"], "project"), (["torch==2.13.0", "torchmetrics"], "project"),
    (["torch==2.13.0", "torchmetrics"], "tool.poetry")], ids=["torch-pulled", "torch-named", "poetry-1-table"])
def test_install(pair: Pair, base: Path, index: IndexServer, poetry_env: dict[str, str],
                 dependencies: list[str], table: str) -> None:
    """Whether torch is named (at the base's own release) or only pulled in by torchmetrics."""
    pair.write(pyproject(index, dependencies, table=table))
    poetry(["lock"], poetry_env, pair.plain)
    shutil.copy(pair.plain / "poetry.lock", pair.layered / "poetry.lock")
    index.reset()
    out = poetry(["install"], poetry_env, pair.layered).stdout
    assert "Installing torchmetrics (1.1)" in out and "torch (" not in out.replace("torchmetrics (", "")
    # torch, triton and 3 nvidia-* for 2.15.0; torch, triton, 1 nvidia-* and sympy 1.13.1 for 2.13.0 (the other
    # torch-only packages match the base's stubs: poetry skips them itself)
    skipped = 4 if "torch==2.13.0" in dependencies else 5
    assert (f"layerenv: skipping {skipped} operation(s) on the torch family and what only it needs: base {BASE_ID} "
            f"provides them (torch {BASE_TORCH})") in out.splitlines()
    # sympy, networkx, nvidia-*, triton: torch's only; typing-extensions: torchmetrics' too, as locked
    assert real_dists(pair.venv) == {"torchmetrics": "1.1", "typing-extensions": "4.15.0"}
    assert_layered(pair, base, index)
    layered, plain = pair.lock_bytes()
    assert layered == plain and b'name = "triton"' in layered and b"+cpu" not in layered
    again = poetry(["install"], poetry_env, pair.layered).stdout
    assert "No dependencies to install or update" in again


def test_install_keeps_the_base_copy_a_locked_downgrade_would_break(
        pair: Pair, base: Path, index: IndexServer, poetry_env: dict[str, str]) -> None:
    """The lock's torch pins sympy==1.13.1; the base's torch needs >=1.13.3: the project's own
    sympy requirement is met by the base's 1.14.0, so that copy stays the only one."""
    pair.write(pyproject(index, ["torch==2.13.0", "sympy", "typing-extensions>=4.15"]))
    poetry(["lock"], poetry_env, pair.plain)
    shutil.copy(pair.plain / "poetry.lock", pair.layered / "poetry.lock")
    index.reset()
    out = poetry(["install", "-v"], poetry_env, pair.layered).stdout
    assert "sympy (1.14.0 -> 1.13.1): Skipped for the following reason: the base's sympy 1.14.0 is kept" in out
    assert real_dists(pair.venv) == {"typing-extensions": "4.15.0"}  # the project's, as locked
    assert_layered(pair, base, index)
    code = "import sympy, json; print(json.dumps([sympy.__version__, sympy.__file__]))"
    version, where = json.loads(run([python(pair.venv), "-c", code]).stdout)
    assert version == "1.14.0" and under(where, _site_packages(base))


def test_sync_keeps_the_stubs(pair: Pair, base: Path, index: IndexServer, poetry_env: dict[str, str]) -> None:
    pair.write(pyproject(index, ["torchmetrics", "plain-lib"]))
    poetry(["lock"], poetry_env, pair.plain)
    shutil.copy(pair.plain / "poetry.lock", pair.layered / "poetry.lock")
    index.reset()
    poetry(["sync"], poetry_env, pair.layered)
    site = _site_packages(pair.venv)
    assert (site / "base_extra-1.0.dist-info" / "LAYERENV_STUB").is_file()  # in no lock, yet not removed
    assert real_dists(pair.venv) == {"torchmetrics": "1.1", "plain-lib": "1.0", "typing-extensions": "4.15.0"}
    assert_layered(pair, base, index)
    assert pair.lock_bytes()[0] == pair.lock_bytes()[1]


def test_add(pair: Pair, base: Path, index: IndexServer, poetry_env: dict[str, str]) -> None:
    pair.write(pyproject(index, ["plain-lib"]))
    poetry(["add", "torchmetrics", "--lock"], poetry_env, pair.plain)
    index.reset()
    out = poetry(["add", "torchmetrics"], poetry_env, pair.layered).stdout
    assert "Installing torchmetrics (1.1)" in out
    assert real_dists(pair.venv) == {"torchmetrics": "1.1", "plain-lib": "1.0", "typing-extensions": "4.15.0"}
    assert_layered(pair, base, index)
    assert pair.lock_bytes()[0] == pair.lock_bytes()[1]
    assert (pair.layered / "pyproject.toml").read_bytes() == (pair.plain / "pyproject.toml").read_bytes()


def test_update(pair: Pair, base: Path, index: IndexServer, poetry_env: dict[str, str]) -> None:
    pair.write(pyproject(index, ["torchmetrics"]))
    old = pyproject(index, ["torchmetrics==1.0"])
    (pair.layered / "pyproject.toml").write_text(old)
    poetry(["install"], poetry_env, pair.layered)  # torchmetrics 1.0
    pair.write(pyproject(index, ["torchmetrics"]))
    poetry(["update", "--lock"], poetry_env, pair.plain)
    index.reset()
    out = poetry(["update"], poetry_env, pair.layered).stdout
    assert "torchmetrics (1.0 -> 1.1)" in out
    assert real_dists(pair.venv) == {"torchmetrics": "1.1", "typing-extensions": "4.15.0"}
    assert_layered(pair, base, index)
    assert pair.lock_bytes()[0] == pair.lock_bytes()[1]


def test_lock(pair: Pair, base: Path, index: IndexServer, poetry_env: dict[str, str]) -> None:
    pair.write(pyproject(index, ["torchmetrics", "torch>=2.0"]))
    poetry(["lock"], poetry_env, pair.plain)
    index.reset()
    poetry(["lock"], poetry_env, pair.layered)
    assert real_dists(pair.venv) == {}
    assert_layered(pair, base, index)
    assert pair.lock_bytes()[0] == pair.lock_bytes()[1]


def test_run(pair: Pair, base: Path, index: IndexServer, poetry_env: dict[str, str]) -> None:
    pair.write(pyproject(index, ["torchmetrics"]))
    poetry(["install"], poetry_env, pair.layered)
    index.reset()
    code = TORCH_PROBE + "import os, torchmetrics; print(json.dumps(os.environ.get('UV_CONSTRAINT')))"
    lines = poetry(["run", "python", "-c", code], poetry_env, pair.layered).stdout.splitlines()
    info = json.loads(lines[-2])
    assert under(info["file"], _site_packages(base)) and info["version"] == BASE_TORCH
    assert json.loads(lines[-1]) == str(pair.venv / "layerenv-constraints.txt")
    assert index.wheel_downloads() == {}
    assert_layered(pair, base, index)


def test_a_torch_the_base_cannot_meet_stops_before_any_download(
        pair: Pair, base: Path, index: IndexServer, poetry_env: dict[str, str], tmp_path: Path) -> None:
    from tests.support.index import add_to_index

    add_to_index(index.root / "pypi", [build_fake_torch(tmp_path / "w", "99.0+cu132", dist_version="99.0",
                                                       cuda="13.2", requires=TORCH_DEPS)])
    pair.write(pyproject(index, ["plain-lib"]))
    poetry(["install"], poetry_env, pair.layered)
    before = (pair.layered / "pyproject.toml").read_bytes(), (pair.layered / "poetry.lock").read_bytes()
    index.reset()
    proc = poetry(["add", "needs-new-torch"], poetry_env, pair.layered, check=False)
    assert proc.returncode == 1
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "layerenv" in line]
    assert lines == [
        f"layerenv: error: needs-new-torch 1.0 requires torch>=99, but base {BASE_ID} (torch {BASE_TORCH}) has "
        f'torch {BASE_TORCH}; set [torch] version = ">=99" in layerenv.toml, then run `layerenv project` again']
    assert index.wheel_downloads() == {}
    assert ((pair.layered / "pyproject.toml").read_bytes(), (pair.layered / "poetry.lock").read_bytes()) == before
    assert real_dists(pair.venv) == {"plain-lib": "1.0"}


def test_a_plain_venv_is_left_alone(pair: Pair, index: IndexServer, poetry_env: dict[str, str]) -> None:
    pair.write(pyproject(index, ["torchmetrics"]))
    out = poetry(["install"], poetry_env, pair.plain).stdout
    assert "Installing torch (2.15.0)" in out and "Installing nvidia-cudnn-cu13 (9.13.0)" in out
    assert canonical_name("torch") in real_dists(pair.plain / ".venv")


# --------------------------------------------------------------------------- `layerenv project` says how to add the plugin


def fake_poetry(venv: Path, *, pipx: bool = False) -> Path:
    """A poetry console script in a venv without layerenv (it is only read, never run)."""
    make_venv(venv, seed=False)
    script = venv / "bin" / "poetry"
    script.write_text(f"#!{python(venv)}\nimport sys\nfrom poetry.console.application import main\nsys.exit(main())\n")
    script.chmod(0o755)
    if pipx:
        (venv / "pipx_metadata.json").write_text("{}")
    return venv / "bin"


def test_hint_names_the_line_for_the_poetry_on_path(tmp_path: Path, poetry_home: Path) -> None:
    from layerenv.integrations.poetry_hint import plugin_hint

    app = tmp_path / "app"
    app.mkdir()
    (app / "pyproject.toml").write_text('[project]\nname = "app"\n\n[tool.poetry.dependencies]\nplain-lib = "*"\n')
    bare = fake_poetry(tmp_path / "pypoetry" / "venv")
    assert plugin_hint(app, {"PATH": str(poetry_home / "bin")}) is None
    hint = plugin_hint(app, {"PATH": f"{bare}:{poetry_home / 'bin'}"})
    assert hint is not None and hint.startswith(f"{bare / 'poetry'} has no layerenv plugin")
    assert hint.endswith("run `poetry self add layerenv` once")
    pipx = fake_poetry(tmp_path / "pipx" / "venvs" / "poetry", pipx=True)
    link_dir = tmp_path / "local-bin"
    link_dir.mkdir()
    (link_dir / "poetry").symlink_to(pipx / "poetry")  # how pipx exposes it
    hint = plugin_hint(app, {"PATH": str(link_dir)})
    assert hint is not None and hint.endswith("run `pipx inject poetry layerenv` once")
    assert plugin_hint(app, {"PATH": str(tmp_path / "nowhere")}) is None  # no poetry at all
    (app / "pyproject.toml").write_text('[project]\nname = "app"\n')
    assert plugin_hint(app, {"PATH": str(bare)}) is None  # not a poetry project
    (app / "poetry.lock").write_text("")
    assert plugin_hint(app, {"PATH": str(bare)}) is not None  # a lock makes it one
    (app / "pyproject.toml").write_text('[project]\nname = "app"\n\n[tool.poetry.requires-plugins]\nlayerenv = ">=0.1"\n')
    assert plugin_hint(app, {"PATH": str(bare)}) is None  # poetry installs it for the project


def test_layerenv_project_prints_the_note(tmp_path: Path, installer_env: dict[str, str], variant_indexes,  # type: ignore[no-untyped-def]
                                          poetry_home: Path) -> None:
    from tests.support.cli import layerenv_env, run_layerenv

    app = tmp_path / "app"
    app.mkdir()
    (app / "pyproject.toml").write_text('[project]\nname = "app"\nversion = "0"\ndependencies = ["plain-lib"]\n\n'
                                        "[tool.poetry]\npackage-mode = false\n")
    bare = fake_poetry(tmp_path / "pypoetry" / "venv")
    env = layerenv_env(tmp_path / "home", base_env={**installer_env, "PIP_INDEX_URL": variant_indexes.pypi_url},
                       extra={"LAYERENV_INDEX_URL": variant_indexes.url_template})
    env["PATH"] = f"{bare}:{env['PATH']}"
    first = run_layerenv(["project", str(app)], env, tmp_path)
    assert first.returncode == 0, first.stderr
    notes = [line for line in first.stderr.splitlines() if line.startswith("note:")]
    assert notes == [f"note: {bare / 'poetry'} has no layerenv plugin, so `poetry install` would put its own torch "
                     "into this project; run `poetry self add layerenv` once"]
    env["PATH"] = f"{poetry_home / 'bin'}:{env['PATH']}"
    again = run_layerenv(["project", str(app)], env, tmp_path)
    assert again.returncode == 0 and "note:" not in again.stderr
    assert "note:" not in run_layerenv(["project", "-q", str(app)], {**env, "PATH": f"{bare}:{env['PATH']}"},
                                       tmp_path).stderr


def test_the_plugin_names_the_files_link_writes() -> None:
    """The plugin module loads in every poetry command, so it repeats two names rather than import link."""
    from layerenv.integrations import poetry_plugin
    from layerenv.project import constraints
    from layerenv.project import link as layering

    assert (poetry_plugin.RECORD_FILE, poetry_plugin.CONSTRAINTS_FILE) == (layering.RECORD_FILE,
                                                                           constraints.CONSTRAINTS_FILE)
    loaded = run([sys.executable, "-c", "import sys, layerenv.integrations.poetry_plugin; "
                  "print(sorted(m for m in sys.modules if m.startswith('layerenv.')))"], env={**os.environ}).stdout
    assert json.loads(loaded.replace("'", '"')) == ["layerenv.integrations", "layerenv.integrations.poetry_plugin"]


def test_an_unreadable_link_record_stops_before_installing(pair: Pair, index: IndexServer,
                                                           poetry_env: dict[str, str]) -> None:
    pair.write(pyproject(index, ["plain-lib"]))
    (pair.venv / "layerenv.json").write_text("{")
    proc = poetry(["install"], poetry_env, pair.layered, check=False)
    assert proc.returncode == 1
    assert [line for line in proc.stderr.splitlines() if line.startswith("layerenv:")] == [
        f"layerenv: error: {pair.venv / 'layerenv.json'} is unreadable (Expecting property name enclosed in "
        "double quotes: line 1 column 2 (char 1)); link the project again"]
    assert index.wheel_downloads() == {} and real_dists(pair.venv) == {}
