"""``layerenv project`` with what real projects declare, with real pip over a served local index whose
log proves no torch-family file is fetched: requirements files with pip options, hashes, dependency
groups and poetry tables, the project installed editable, packages installed by hand kept."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import layerenv_env, run_layerenv, tree_digest
from tests.support.index import isolated_installer_env
from tests.support.pytest_fixtures import CpuBaseStore, ServedIndexes, fresh_installer_caches
from tests.support.wheels import build_plain_package

# one worker runs the module (scripts/test.sh: --dist loadgroup), so builds its base once
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cpu-base-store:test_project_declared")]

FAMILY_PREFIXES = ("torch-", "torchvision-", "torchaudio-", "triton-", "nvidia", "cuda")

# A PEP 517/660 backend in the project itself (no setuptools on the local index): an editable
# install is a .pth naming the project directory; IMPORTS_TORCH makes the build need the base's torch.
BACKEND = '''
import base64, hashlib, os, zipfile

NAME, DEPENDS, IMPORTS_TORCH = {name!r}, {depends!r}, {imports_torch!r}


def _wheel(directory, files):
    if IMPORTS_TORCH:
        import torch  # the build itself needs torch: only the base can give it
        assert torch.__version__
    info = f"{{NAME}}-1.0.dist-info"
    files = dict(files)
    files[f"{{info}}/METADATA"] = "Metadata-Version: 2.1\\nName: " + NAME + "\\nVersion: 1.0\\n" + "".join(
        f"Requires-Dist: {{d}}\\n" for d in DEPENDS)
    files[f"{{info}}/WHEEL"] = "Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{{path}},sha256={{digest}},{{len(text.encode())}}")
    files[f"{{info}}/RECORD"] = "\\n".join(record + [f"{{info}}/RECORD,,"]) + "\\n"
    name = f"{{NAME}}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(directory, name), "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return name


def get_requires_for_build_wheel(config_settings=None):
    return []


get_requires_for_build_editable = get_requires_for_build_wheel


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return _wheel(wheel_directory, {{f"_{{NAME}}_editable.pth": os.path.dirname(os.path.abspath(__file__)) + "\\n"}})


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), NAME + ".py")
    return _wheel(wheel_directory, {{NAME + ".py": open(source).read()}})
'''


def local_package(path: Path, name: str, depends: tuple[str, ...] = (), build_requires: tuple[str, ...] = (),
                  extra: str = "") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "backend.py").write_text(BACKEND.format(name=name, depends=list(depends),
                                                    imports_torch=any(r.startswith("torch") for r in build_requires)))
    (path / f"{name}.py").write_text(f"WHERE = {name!r}\n")
    requires = ", ".join(f'"{r}"' for r in build_requires)
    (path / "pyproject.toml").write_text(
        f'[build-system]\nrequires = [{requires}]\nbuild-backend = "backend"\nbackend-path = ["."]\n'
        f'[project]\nname = "{name}"\nversion = "1.0"\ndependencies = {list(depends)!r}\n{extra}'
    )
    return path


@pytest.fixture
def served(cpu_base_store: CpuBaseStore) -> ServedIndexes:
    """The served indexes, their download log emptied for this test."""
    cpu_base_store.served.server.reset()
    return cpu_base_store.served


@pytest.fixture
def served_env(tmp_path: Path, cpu_base_store: CpuBaseStore, served: ServedIndexes) -> dict[str, str]:
    """A store with a built base, built once for the module (these tests only read it); this test's own
    empty installer caches."""
    return layerenv_env(
        cpu_base_store.home,
        base_env={**isolated_installer_env(), **fresh_installer_caches(tmp_path / "caches"),
                  "PIP_INDEX_URL": served.pypi_url},
        machine="no-gpu",
        extra={"LAYERENV_INDEX_URL": served.url_template},
    )


def family_downloads(served) -> list[str]:  # type: ignore[no-untyped-def]
    return [name for name in served.downloads if name.lower().startswith(FAMILY_PREFIXES)]


def python_in(venv: Path, code: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=check)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("layerenv: error:")]


def test_requirements_file_with_pip_options_and_the_project_itself(tmp_path: Path, served_env, served) -> None:  # type: ignore[no-untyped-def]
    project = local_package(tmp_path / "repo", "app", depends=("plain-lib",))
    local_package(project / "libs" / "local", "local", depends=("needs-torch",))
    (project / "reqs").mkdir()
    (project / "reqs" / "base.txt").write_text("-c constraints.txt\nplain-lib\n")
    (project / "reqs" / "constraints.txt").write_text("plain-lib==1.0\ntorch>=2\n")
    (project / "requirements.txt").write_text(
        f"--index-url {served.pypi_url}\n"
        "--extra-index-url https://download.pytorch.org/whl/cpu\n"
        "-r reqs/base.txt\n"
        "-e ./libs/local\n"
        "needs-torch ; python_version >= '3'   # a marker\n"
        "pins-old-torch ; python_version < '3'\n"
        "torch>=2.0\n"
    )
    # pip's own index is useless here: the file's --index-url must be the one used
    env = {**served_env, "PIP_INDEX_URL": "http://127.0.0.1:9/nothing/simple"}
    result = run_layerenv(["project", str(project)], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "requirements.txt:2: https://download.pytorch.org/whl/cpu serves the torch family" in result.stderr
    assert "and the project itself" in result.stderr
    venv = project / ".venv"
    shown = python_in(venv, "import torch, plain_lib, needs_torch, local, app; print(torch.__file__, local.__file__, "
                            "app.__file__)").stdout.split()
    assert shown[0].startswith(str(Path(served_env["LAYERENV_HOME"]) / "bases"))
    assert shown[1] == str(project / "libs" / "local" / "local.py")  # editable: the source itself
    assert shown[2] == str(project / "app.py")
    assert python_in(venv, "import pins_old_torch", check=False).returncode != 0  # its marker is false
    assert family_downloads(served) == []

    again = run_layerenv(["project", str(project), "--no-install-project"], env, tmp_path)
    assert again.returncode == 0, again.stderr
    assert python_in(venv, "import app", check=False).returncode != 0
    assert python_in(venv, "import local, plain_lib").returncode == 0


@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_hash_checking_mode_beside_the_base_constraints(tmp_path: Path, served_env, served, installer: str) -> None:  # type: ignore[no-untyped-def]
    files = served.root / "pypi" / "files"

    def sha(name: str) -> str:
        return "sha256:" + hashlib.sha256(next(files.glob(f"{name}-1.0-*.whl")).read_bytes()).hexdigest()

    project = tmp_path / "repo"
    project.mkdir()
    compiled = (  # as `pip-compile --generate-hashes` writes it, torch and its CUDA wheel included
        f"--index-url {served.pypi_url}\n"
        f"needs-torch==1.0 \\\n    --hash={sha('needs_torch')}\n    # via -r requirements.in\n"
        f"plain-lib==1.0 \\\n    --hash={sha('plain_lib')} \\\n    --hash=sha256:{'0' * 64}\n"
        f"torch==2.9.1+cpu \\\n    --hash=sha256:{'1' * 64}\n"
        f"nvidia-cuda-runtime-cu12==12.4.127 ; platform_system == 'Linux' \\\n    --hash=sha256:{'2' * 64}\n"
    )
    (project / "requirements.txt").write_text(compiled)
    served_env = {**served_env, "LAYERENV_INSTALLER": installer}
    result = run_layerenv(["project", str(project)], served_env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert python_in(project / ".venv", "import needs_torch, plain_lib, torch; print(torch.__version__)"
                     ).stdout.strip() == "2.9.1+cpu"
    assert family_downloads(served) == []

    (project / "requirements.txt").write_text(compiled.replace(sha("plain_lib"), "sha256:" + "3" * 64))
    before = tree_digest(project / ".venv")
    wrong = run_layerenv(["project", str(project)], served_env, tmp_path)
    assert wrong.returncode == 1, wrong.stderr
    [line] = error_lines(wrong.stderr)
    assert "hash" in line.lower(), line
    assert tree_digest(project / ".venv") == before


def test_dependency_groups_and_poetry_tables(tmp_path: Path, served_env, served) -> None:  # type: ignore[no-untyped-def]
    project = tmp_path / "repo"
    project.mkdir()
    pyproject = (
        '[tool.poetry]\nname = "app"\nversion = "1.0"\n'
        '[tool.poetry.dependencies]\npython = "^3.10"\nplain-lib = "^1.0"\n'
        '[tool.poetry.group.ml]\noptional = true\n'
        '[tool.poetry.group.ml.dependencies]\nneeds-torch = "~1.0"\n'
        '[dependency-groups]\ndev = [{include-group = "test"}]\ntest = ["pins-old-torch ; python_version < \'3\'"]\n'
    )
    (project / "pyproject.toml").write_text(pyproject)
    first = run_layerenv(["project", str(project)], served_env, tmp_path)
    assert first.returncode == 0, first.stderr
    venv = project / ".venv"
    assert python_in(venv, "import plain_lib").returncode == 0
    assert python_in(venv, "import needs_torch", check=False).returncode != 0  # an optional poetry group
    grouped = run_layerenv(["project", str(project), "--group", "ml"], served_env, tmp_path)
    assert grouped.returncode == 0, grouped.stderr
    assert python_in(venv, "import needs_torch, plain_lib").returncode == 0

    unknown = run_layerenv(["project", str(project), "--group", "docs"], served_env, tmp_path)
    assert unknown.returncode == 2 and error_lines(unknown.stderr) == [
        f"layerenv: error: --group 'docs': no such group in {project / 'pyproject.toml'} "
        "([dependency-groups] or [tool.poetry.group]; known: dev, ml, test)"
    ]

    before = tree_digest(venv)
    (project / "pyproject.toml").write_text(pyproject + '[tool.poetry.group.gpu.dependencies]\ntorch = "~2.5.1"\n')
    conflict = run_layerenv(["project", str(project)], served_env, tmp_path)
    assert conflict.returncode == 1
    assert error_lines(conflict.stderr) == [
        "layerenv: error: pyproject.toml [tool.poetry.group.gpu]: torch>=2.5.1,<2.6.0 conflicts with the base: it "
        "has torch 2.9.1+cpu (2.9.1+cpu, cpu); relax the requirement, or set [torch] version "
        '= ">=2.5.1,<2.6.0" in layerenv.toml and run `layerenv project` again'
    ], conflict.stderr
    assert "Traceback" not in conflict.stderr and tree_digest(venv) == before
    assert family_downloads(served) == []


def test_a_dependency_pinning_another_torch_stops_before_downloading_it(tmp_path: Path, served_env, served) -> None:  # type: ignore[no-untyped-def]
    project = tmp_path / "repo"
    project.mkdir()
    (project / "requirements.txt").write_text("-r more.txt\n")
    (project / "more.txt").write_text("plain-lib\npins-old-torch\n")
    result = run_layerenv(["project", str(project)], served_env, tmp_path)
    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert "pins-old-torch 1.0 requires torch==2.5.1" in line and "torch 2.9.1" in line, line
    assert family_downloads(served) == []
    assert not (project / ".venv").exists()


def test_a_torch_family_build_requirement_builds_against_the_base(tmp_path: Path, served_env, served) -> None:  # type: ignore[no-untyped-def]
    project = local_package(tmp_path / "repo", "app", build_requires=("torch>=2",))
    result = run_layerenv(["project", str(project)], served_env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "building it without isolation, against the base" in result.stderr
    assert python_in(project / ".venv", "import app; print(app.__file__)").stdout.strip() == str(project / "app.py")
    assert family_downloads(served) == []


def test_packages_installed_by_hand_are_kept_or_named(tmp_path: Path, served_env, served) -> None:  # type: ignore[no-untyped-def]
    project = tmp_path / "repo"
    project.mkdir()
    (project / "requirements.txt").write_text("plain-lib\n")
    assert run_layerenv(["project", str(project)], served_env, tmp_path).returncode == 0
    venv = project / ".venv"
    pip_env = {k: v for k, v in served_env.items() if k != "PIP_CONFIG_FILE"}
    wheel = build_plain_package(tmp_path / "gone", "hand-made", "1.0")
    for what in (["needs-torch"], [str(wheel)]):
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", *what], env=pip_env, check=True,
                       capture_output=True)
    wheel.unlink()  # hand-made cannot be installed again: layerenv must say it is gone

    (project / "requirements.txt").write_text("plain-lib==1.0\n")
    result = run_layerenv(["project", str(project)], served_env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "installing again 2 package(s) installed by hand: hand-made 1.0, needs-torch 1.0" in result.stderr
    assert "removed: hand-made 1.0 (installed by hand, could not be installed again; log: " in result.stderr
    assert "removed: needs-torch" not in result.stderr
    assert python_in(venv, "import needs_torch, plain_lib").returncode == 0
    assert python_in(venv, "import hand_made", check=False).returncode != 0
    assert family_downloads(served) == []
