"""How a project venv is made: the base venv's shape copied (what virtualenv would write), pip shared
from the store instead of a copy in each venv, and the installer "auto" picks: uv where found, else pip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from layerenv.config import PIP_FALLBACK_NOTE, resolve_installer
from layerenv.store.home import Store
from layerenv.venv.create import BASE_PROMPT, clone_shape, create_virtualenv, is_template
from tests.support.cli import layerenv_env, run_layerenv
from tests.support.index import isolated_installer_env
from tests.support.venvs import project_without_virtualenv

PYTHON = Path(sys.executable).resolve()


def tree(root: Path) -> dict[str, bytes]:
    """Every entry under ``root``: a link's target, a file's bytes, b"<dir>" for a folder."""
    found: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        if "__pycache__" in path.parts:
            continue
        rel = str(path.relative_to(root))
        if path.is_symlink():
            found[rel] = os.readlink(path).encode()
        elif path.is_dir():
            found[rel] = b"<dir>"
        else:
            found[rel] = path.read_bytes()
    return found


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty venv made as a base is (virtualenv, the base prompt)."""
    base = tmp_path_factory.mktemp("shape") / "base"
    create_virtualenv(base, PYTHON, prompt=BASE_PROMPT, seed_pip=False)
    return base


@pytest.fixture(scope="module")
def store_shape(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The store's shape for this interpreter, as adopting an environment another tool made leaves it."""
    from layerenv.machine.interpreters import Interpreter
    from layerenv.venv.shapes import ensure_shape

    interpreter = Interpreter(PYTHON, "cpython", sys.version_info[:3], "linux_x86_64")
    shape = ensure_shape(Store(tmp_path_factory.mktemp("store") / "home"), interpreter)
    assert shape is not None
    return shape


@pytest.mark.parametrize("made_by", ["base", "store shape"])
def test_the_copied_shape_is_what_virtualenv_writes(tmp_path: Path, made_by: str, request: pytest.FixtureRequest) -> None:
    copy_from: Path = request.getfixturevalue("template" if made_by == "base" else "store_shape")
    venv = tmp_path / "proj" / ".venv.layerenv-new-1-ab"
    create_virtualenv(venv, PYTHON, prompt="proj", seed_pip=False, system_site_packages=True)
    expected = tree(venv)
    venv.rename(tmp_path / "made-by-virtualenv")
    assert clone_shape(copy_from, venv, prompt="proj", system_site_packages=True)
    copied = tree(venv)
    command = [line for line in expected.pop("pyvenv.cfg").decode().splitlines() if not line.startswith("command")]
    assert copied.pop("pyvenv.cfg").decode().splitlines() == command
    assert copied == expected
    ran = subprocess.run([str(venv / "bin" / "python"), "-c", "import sys; print(sys.prefix)"],
                         capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == str(venv)


def test_the_copied_shape_of_a_uv_made_base_is_what_uv_venv_writes(tmp_path: Path) -> None:
    """A base uv built is made by ``uv venv`` with the base prompt: a project venv copied from it is what ``uv
    venv`` writes for the project (its ``.gitignore`` and ``.lock`` aside: a project venv has neither), and runs."""
    from layerenv.machine.uv import find_uv

    uv = find_uv()
    if uv is None:
        pytest.skip("uv is not installed")
    env = isolated_installer_env(uv_cache_dir=tmp_path / "uv-cache")
    base = tmp_path / "base"
    venv = tmp_path / "proj" / ".venv.layerenv-new-1-ab"

    def uv_venv(path: Path, prompt: str, *extra: str) -> None:
        subprocess.run([uv, "venv", "--quiet", "--no-project", "--python", str(PYTHON), "--prompt", prompt, *extra,
                        str(path)], env=env, check=True, capture_output=True)

    uv_venv(base, BASE_PROMPT)
    assert is_template(base)
    uv_venv(venv, "proj", "--system-site-packages")
    expected = {rel: data for rel, data in tree(venv).items() if rel not in (".gitignore", ".lock")}
    venv.rename(tmp_path / "made-by-uv")
    assert clone_shape(base, venv, prompt="proj", system_site_packages=True)
    assert tree(venv) == expected
    assert b"\nuv = " in expected["pyvenv.cfg"] and b"prompt = proj\n" in expected["pyvenv.cfg"]
    ran = subprocess.run([str(venv / "bin" / "python"), "-c", "import sys; print(sys.prefix)"],
                         capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == str(venv)


@pytest.mark.parametrize("where", ["my proj", "it's"])
def test_a_path_a_shell_must_quote_is_left_to_virtualenv(tmp_path: Path, template: Path, where: str) -> None:
    venv = tmp_path / where / ".venv"
    assert not clone_shape(template, venv, prompt=where, system_site_packages=False)
    assert not venv.exists()


def test_a_venv_virtualenv_did_not_make_is_no_template(tmp_path: Path, template: Path) -> None:
    other = tmp_path / "other"
    create_virtualenv(other, PYTHON, prompt="someone-else", seed_pip=False)
    assert not clone_shape(other, tmp_path / "p" / ".venv", prompt="p", system_site_packages=False)
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize(
    ("asked", "uv", "expected"),
    [("auto", "/usr/bin/uv", ("uv", None)), ("auto", None, ("pip", PIP_FALLBACK_NOTE)),
     ("pip", "/usr/bin/uv", ("pip", None)), ("uv", None, ("uv", None))],
)
def test_auto_is_uv_where_found_else_pip_with_a_note(asked: str, uv: str | None,
                                                     expected: tuple[str, str | None]) -> None:
    assert resolve_installer(asked, uv) == expected


@pytest.fixture(scope="module")
def store_env(tmp_path_factory: pytest.TempPathFactory, variant_indexes) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """One store for the module, layerenv's default installer, packages from the local "PyPI" for pip and uv."""
    from tests.support.index import isolated_installer_env

    root = tmp_path_factory.mktemp("store")
    sources = {"PIP_INDEX_URL": variant_indexes.pypi_url, "UV_INDEX_URL": variant_indexes.pypi_url,
               "UV_CACHE_DIR": str(root / "uv-cache")}
    return layerenv_env(root / "home", base_env={**isolated_installer_env(), **sources}, installer=None,
                        extra={"LAYERENV_INDEX_URL": variant_indexes.url_template})


def installed_by(venv: Path, name: str) -> str:
    site = next((venv / "lib").glob("python*/site-packages"))
    return next(site.glob(f"{name}-*.dist-info")).joinpath("INSTALLER").read_text().strip()


def test_default_installer_is_uv_and_an_empty_project_venv_is_small(tmp_path: Path, store_env: dict[str, str]) -> None:
    project = tmp_path / "repo"
    project.mkdir()
    (project / "requirements.txt").write_text("plain-lib==1.0\n")
    made = run_layerenv(["project", str(project)], store_env, tmp_path)
    assert made.returncode == 0, made.stderr
    assert "with uv" in made.stderr and PIP_FALLBACK_NOTE not in made.stderr
    assert installed_by(project / ".venv", "plain_lib") == "uv"

    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_layerenv(["project", str(empty)], store_env, tmp_path).returncode == 0
    venv = empty / ".venv"
    used = sum(os.lstat(os.path.join(root, name)).st_blocks * 512
               for root, dirs, files in os.walk(venv) for name in [*dirs, *files])
    assert used < 1_000_000, f"{used} bytes"
    site = next((venv / "lib").glob("python*/site-packages"))
    assert not list(site.glob("pip*")), "pip is shared from the store, not copied"
    shared = Path(store_env["LAYERENV_HOME"]) / "pip"
    for command in ([str(venv / "bin" / "pip"), "--version"], [str(venv / "bin" / "python"), "-m", "pip", "--version"]):
        ran = subprocess.run(command, capture_output=True, text=True, check=True)
        assert ran.stdout.startswith("pip ") and str(shared) in ran.stdout


def test_without_uv_auto_falls_back_to_pip_with_one_note(tmp_path: Path, store_env: dict[str, str]) -> None:
    hidden = tmp_path / "no-uv"
    (hidden / "uv").mkdir(parents=True)
    (hidden / "uv" / "__init__.py").write_text("")  # shadows the uv package: no find_uv_bin
    env = {**store_env, "PATH": "/usr/bin:/bin", "PYTHONPATH": os.pathsep.join([str(hidden), store_env["PYTHONPATH"]])}
    project = tmp_path / "repo"
    project.mkdir()
    (project / "requirements.txt").write_text("plain-lib==1.0\n")
    made = run_layerenv(["project", str(project)], env, tmp_path)
    assert made.returncode == 0, made.stderr
    assert made.stderr.count(PIP_FALLBACK_NOTE) == 1 and "with pip" in made.stderr
    assert installed_by(project / ".venv", "plain_lib") == "pip"


def test_a_family_console_script_wrapper_is_as_its_stub_records_after_the_move_into_place(
    tmp_path: Path, store_env: dict[str, str]
) -> None:
    """The staged venv is linked, then moved to .venv: the wrapper of torch's `torchrun` names the final python
    from the start, so doctor finds the stub as layerenv wrote it (seen on the H200 with the real torch)."""
    from layerenv.machine.uv import find_uv
    from tests.support.wheels import build_fake_torch

    uv = find_uv()
    if uv is None:
        pytest.skip("no uv here to make the venv to adopt")
    wheel = build_fake_torch(tmp_path / "wheels", "2.9.1+cpu", cuda=None, extra_files={
        "torch-2.9.1+cpu.dist-info/entry_points.txt": "[console_scripts]\ntorchrun = torch.version:main\n"})
    existing = tmp_path / "existing"
    env = {**store_env, "LAYERENV_HOME": str(tmp_path / "home")}
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(existing)], env=env, check=True)
    subprocess.run([uv, "pip", "install", "-q", "--no-index", "--python", str(existing / "bin" / "python"),
                    str(wheel)], env=env, check=True)
    assert run_layerenv(["base", "--adopt", str(existing)], env, tmp_path).returncode == 0
    project = tmp_path / "app"
    project.mkdir()
    assert run_layerenv(["project", str(project)], env, tmp_path).returncode == 0
    wrapper = (project / ".venv" / "bin" / "torchrun").read_text(encoding="utf-8")
    assert wrapper.startswith(f"#!{project / '.venv' / 'bin' / 'python'}\n"), wrapper
    doctor = run_layerenv(["doctor"], env, tmp_path)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr


def test_on_an_adopted_uv_venv_project_venvs_are_copied_from_the_store_shape_gc_drops_it_with_the_base(
    tmp_path: Path, store_env: dict[str, str]
) -> None:
    """Adopting a venv uv made leaves an empty virtualenv-made venv for its interpreter in the store, so
    no project venv on it starts virtualenv; gc keeps that shape while a base runs on its interpreter."""
    import json

    from layerenv.machine.uv import find_uv
    from layerenv.venv.create import is_template
    from tests.support.wheels import build_fake_torch

    uv = find_uv()
    if uv is None:
        pytest.skip("no uv here to make the venv to adopt")
    home = tmp_path / "home"
    env = {**store_env, "LAYERENV_HOME": str(home)}
    existing = tmp_path / "existing"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(existing)], env=env, check=True)
    subprocess.run([uv, "pip", "install", "-q", "--no-index", "--python", str(existing / "bin" / "python"),
                    str(build_fake_torch(tmp_path / "wheels", "2.9.1+cpu", cuda=None))], env=env, check=True)
    adopted = run_layerenv(["base", "--adopt", str(existing), "--json"], env, tmp_path)
    assert adopted.returncode == 0, adopted.stderr
    base_id = json.loads(adopted.stdout)["base_id"]
    shapes = sorted((home / "shapes").iterdir())
    assert len(shapes) == 1 and is_template(shapes[0]) and not any((home / "staging").iterdir())

    project = project_without_virtualenv(tmp_path, env)
    ran = subprocess.run([str(project / ".venv" / "bin" / "python"), "-c", "import sys, torch; print(sys.prefix)"],
                         capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == str(project / ".venv")

    def gc() -> dict[str, object]:
        done = run_layerenv(["gc", "--json"], env, tmp_path)
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    assert gc()["shapes_removed"] == [] and shapes[0].is_dir(), "kept: its base is in use"
    subprocess.run(["rm", "-r", str(project), str(existing)], check=True)  # the project and the environment gone
    assert run_layerenv(["doctor", "--fix"], env, tmp_path).returncode in (0, 1)
    done = gc()
    assert [entry["id"] for entry in done["removed"]] == [base_id], done  # type: ignore[attr-defined]
    assert [entry["path"] for entry in done["shapes_removed"]] == [str(shapes[0])]  # type: ignore[attr-defined]
    assert not shapes[0].exists()


@pytest.mark.parametrize("point", ["shape:before-flush", "shape:before-publish"])
def test_a_shape_maker_killed_leaves_no_half_shape_and_the_next_one_clears_its_staging(
    tmp_path: Path, point: str
) -> None:
    from layerenv.machine.interpreters import Interpreter
    from layerenv.venv.create import is_template
    from layerenv.venv.shapes import ensure_shape

    interpreter = Interpreter(PYTHON, "cpython", sys.version_info[:3], "linux_x86_64")
    store = Store(tmp_path / "home")
    code = ("import sys; from pathlib import Path; from layerenv.store.home import Store; "
            "from layerenv.machine.interpreters import Interpreter; from layerenv.venv.shapes import ensure_shape; "
            f"ensure_shape(Store(Path({str(store.home)!r})), Interpreter(Path({str(PYTHON)!r}), 'cpython', "
            f"{tuple(sys.version_info[:3])!r}, 'linux_x86_64'))")
    env = {**os.environ, "LAYERENV_FAULTS_ENABLED": "1", "LAYERENV_FAULT": point}
    killed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert killed.returncode == -9, killed.stderr
    assert not (store.shapes.is_dir() and any(store.shapes.iterdir())), "nothing half made is published"
    assert len(list(store.staging.iterdir())) == 1
    shape = ensure_shape(store, interpreter)
    assert shape is not None and is_template(shape) and not any(store.staging.iterdir())


def test_a_shape_others_could_change_is_refused(tmp_path: Path) -> None:
    from layerenv.machine.interpreters import Interpreter
    from layerenv.store.trust import Trust, Untrusted
    from layerenv.venv.shapes import ensure_shape, template_for

    interpreter = Interpreter(PYTHON, "cpython", sys.version_info[:3], "linux_x86_64")
    store = Store(tmp_path / "home", trust=Trust.for_caller())
    shape = ensure_shape(store, interpreter)
    assert shape is not None and template_for(store, interpreter) == shape
    (shape / "bin" / "activate").chmod(0o666)  # anyone could add a line to every project's activate script
    with pytest.raises(Untrusted, match=r"activate is writable by others"):
        template_for(store, interpreter)
    (shape / "bin" / "activate").chmod(0o644)
    (shape / "bin").chmod(0o777)  # anyone could point bin/python elsewhere for every project copied from it
    with pytest.raises(Untrusted, match=r"bin is writable by others"):
        template_for(store, interpreter)
