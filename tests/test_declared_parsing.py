"""What a project declares, parsed without installers: requirements files as pip reads them, PEP 735
dependency groups, poetry's tables and constraints, the project as a package, and the install plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerenv.errors import BadInput
from layerenv.project.poetry import pep440_specifier
from layerenv.project.requirements import dependency_groups, read_dependencies
from layerenv.project.requirements_file import read_requirements_files

HASH_A = "sha256:" + "a" * 64
HASH_B = "sha256:" + "b" * 64


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def package(path: Path) -> Path:
    write(path / "pyproject.toml", '[project]\nname = "local"\nversion = "1"\n')
    return path


def test_includes_are_relative_to_the_including_file_and_options_are_kept(tmp_path: Path) -> None:
    package(tmp_path / "libs" / "local")
    write(tmp_path / "reqs" / "base.txt", "plain-lib==1.0  # pinned\n-c constraints.txt\n")
    write(tmp_path / "reqs" / "constraints.txt", "needs-torch<2\ntorch==2.5.1\n")
    top = write(tmp_path / "requirements.txt", (
        "-r reqs/base.txt\n"
        "--index-url http://mirror.example/simple\n"
        "--extra-index-url https://download.pytorch.org/whl/cu121\n"
        "--find-links wheels\n"
        "-e ./libs/local\n"
        "needs-torch ; python_version >= '3'\n"
        "old-lib==1.0 ; python_version < '3'\n"
        "torch==2.9.1\n"
        "pkg @ https://example.com/pkg-1.0-py3-none-any.whl\n"
        "git+https://example.com/repo.git@v1#egg=Some_Pkg\n"
        "torchaudio @ https://download.pytorch.org/whl/cpu/torchaudio-2.9.1-py3-none-any.whl\n"
    ))
    parsed = read_requirements_files([top], tmp_path, {})
    by_text = {line.text: line for line in parsed.lines}
    assert [p.name for p in parsed.files] == ["requirements.txt", "base.txt", "constraints.txt"]
    assert by_text["plain-lib==1.0"].where == "reqs/base.txt:1" and by_text["plain-lib==1.0"].kind == "requirement"
    assert by_text["needs-torch<2"].kind == "constraint" and by_text["torch==2.5.1"].kind == "constraint"
    assert by_text[str(tmp_path / "libs" / "local")].kind == "editable"
    assert by_text["old-lib==1.0 ; python_version < '3'"].marker_applies is False
    assert by_text["torch==2.9.1"].name == "torch" and by_text["torch==2.9.1"].where == "requirements.txt:8"
    assert by_text["git+https://example.com/repo.git@v1#egg=Some_Pkg"].name == "some-pkg"
    assert by_text["pkg @ https://example.com/pkg-1.0-py3-none-any.whl"].name == "pkg"
    assert parsed.index.index_url == "http://mirror.example/simple"
    assert parsed.index.extra_index_urls == ()  # the PyTorch index is noted, not used
    assert parsed.family_indexes == (("https://download.pytorch.org/whl/cu121", "requirements.txt:3"),)
    assert parsed.index.find_links == (str(tmp_path / "wheels"),)
    deps = read_dependencies(tmp_path, (), (), ())
    assert "torchaudio" not in " ".join(deps.requirements) and "torch==2.9.1" not in deps.requirements
    assert ("torch==2.9.1", "requirements.txt:8") in deps.family_requirements
    assert any(note.startswith("requirements.txt:11: torchaudio @ ") for note in deps.notes)
    assert deps.editables == (str(tmp_path / "libs" / "local"),)
    assert deps.constraints == ("needs-torch<2",)


def test_hash_continuation_lines_as_pip_compile_writes_them(tmp_path: Path) -> None:
    top = write(tmp_path / "requirements.txt", (
        "# via pip-compile --generate-hashes\n"
        "plain-lib==1.0 \\\n"
        f"    --hash={HASH_A} \\\n"
        f"    --hash={HASH_B}\n"
        "    # via -r requirements.in\n"
        f"torch==2.9.1+cpu \\\n    --hash={HASH_A}\n"
    ))
    parsed = read_requirements_files([top], tmp_path, {})
    assert [(line.text, line.hashes, line.where) for line in parsed.lines] == [
        ("plain-lib==1.0", (HASH_A, HASH_B), "requirements.txt:2"),
        ("torch==2.9.1+cpu", (HASH_A,), "requirements.txt:6"),
    ]
    assert parsed.hashed
    deps = read_dependencies(tmp_path, (), (), ())
    assert deps.requirements == ("plain-lib==1.0",) and deps.require_hashes
    assert deps.family_requirements == (("torch==2.9.1+cpu", "requirements.txt:6"),)
    [step] = deps.steps(tmp_path / "c.txt")
    assert step.options == ("--require-hashes",)
    assert step.lines == (f"plain-lib==1.0 --hash={HASH_A} --hash={HASH_B}",)


def test_env_vars_expand_as_in_pip(tmp_path: Path) -> None:
    top = write(tmp_path / "requirements.txt", "--extra-index-url https://${TOKEN}@host/simple\nplain-lib\n")
    parsed = read_requirements_files([top], tmp_path, {"TOKEN": "secret"})
    assert parsed.index.extra_index_urls == ("https://secret@host/simple",)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"requirements.txt": "-r a.txt\n", "a.txt": "plain-lib\n-r requirements.txt\n"},
         "a.txt:2: including requirements.txt again makes a cycle (requirements.txt -> a.txt -> requirements.txt)"),
        ({"requirements.txt": "plain-lib\n--use-pep517\n"},
         "requirements.txt:2: '--use-pep517' is not supported in a requirements file here; allowed:"),
        ({"requirements.txt": "-r missing.txt\n"}, "requirements.txt:1: the requirements file it includes does not"),
        ({"requirements.txt": "-e ./nowhere\n"}, "requirements.txt:1: -e names a path that is not a directory"),
        ({"requirements.txt": "plain-lib --global-option=x\n"}, "requirements.txt:1: '--global-option' after"),
        ({"requirements.txt": "\n\nnot a requirement!!\n"}, "requirements.txt:3: not a valid requirement (Expected"),
    ],
)
def test_bad_requirements_files_are_one_line_errors(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    for name, text in files.items():
        write(tmp_path / name, text)
    with pytest.raises(BadInput) as caught:
        read_dependencies(tmp_path, ("requirements.txt",), (), ())
    assert caught.value.message.startswith(expected), caught.value.message
    assert "\n" not in caught.value.message


@pytest.mark.parametrize(
    ("poetry", "pep440"),
    [
        ("^1.2.3", ">=1.2.3,<2.0.0"),
        ("^1.2", ">=1.2,<2.0"),
        ("^0.2.3", ">=0.2.3,<0.3.0"),
        ("^0.0.3", ">=0.0.3,<0.0.4"),
        ("^0.0", ">=0.0,<0.1"),
        ("^0", ">=0,<1"),
        ("~1.2.3", ">=1.2.3,<1.3.0"),
        ("~1.2", ">=1.2,<1.3"),
        ("~1", ">=1,<2"),
        ("~=1.2", "~=1.2"),
        ("*", ""),
        ("1.2.3", "==1.2.3"),
        ("1.2.*", "==1.2.*"),
        ("=2.5.1", "==2.5.1"),
        (">= 1.0 < 2", ">=1.0,<2"),
        (">=1.0,<2.0,!=1.5", ">=1.0,<2.0,!=1.5"),
    ],
)
def test_poetry_constraints_become_pep440(poetry: str, pep440: str) -> None:
    assert pep440_specifier(poetry) == pep440


@pytest.mark.parametrize("bad", ["^1.0 || ^2.0", "^banana"])
def test_poetry_constraints_without_a_pep440_form_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=r"PEP 440|not a version"):
        pep440_specifier(bad)


def test_dependency_groups_expand_includes_and_refuse_cycles() -> None:
    document = {"dependency-groups": {
        "test": ["plain-lib"], "Dev": [{"include-group": "test"}, "needs-torch"], "all": [{"include-group": "dev"}],
    }}
    assert dependency_groups(document, "pyproject.toml") == {
        "test": ["plain-lib"], "Dev": ["plain-lib", "needs-torch"], "all": ["plain-lib", "needs-torch"],
    }
    with pytest.raises(BadInput, match=r"includes itself: a -> b -> a"):
        dependency_groups({"dependency-groups": {"a": [{"include-group": "b"}], "b": [{"include-group": "a"}]}}, "p")


def test_poetry_1_and_2_syntax_groups_and_defaults(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", """
[tool.poetry]
name = "app"
version = "1.0"
[tool.poetry.dependencies]
python = "^3.10"
plain-lib = "^1.0"
needs-torch = {version = "~1.0", markers = "sys_platform == 'linux'", python = ">=3.8"}
opt-lib = {version = "*", optional = true}
[tool.poetry.extras]
fancy = ["opt-lib"]
[tool.poetry.dev-dependencies]
lint-lib = "1.2"
[tool.poetry.group.docs]
optional = true
[tool.poetry.group.docs.dependencies]
docs-lib = ">=2"
[dependency-groups]
test = ["test-lib"]
""")
    deps = read_dependencies(tmp_path, (), (), ())
    assert deps.requirements == (
        "plain-lib>=1.0,<2.0",
        "needs-torch>=1.0,<1.1; (sys_platform == 'linux') and (python_full_version >= \"3.8\")",
        "lint-lib==1.2",
    )
    assert deps.groups == ("dev",)
    chosen = read_dependencies(tmp_path, (), (), ("fancy",), groups=("docs", "test"), default_groups=False)
    assert set(chosen.requirements) == {"plain-lib>=1.0,<2.0", deps.requirements[1], "opt-lib", "docs-lib>=2",
                                        "test-lib"}
    with pytest.raises(BadInput, match=r"--group 'nope': no such group .*known: dev, docs, test\)"):
        read_dependencies(tmp_path, (), (), (), groups=("nope",))


def test_a_torch_pin_in_any_table_is_kept_for_the_base_check(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", """
[project]
name = "app"
version = "1"
dependencies = ["plain-lib"]
[dependency-groups]
dev = ["torch==2.5.1"]
[tool.poetry.dependencies]
torch = {version = "2.4.0", source = "pytorch"}
[tool.poetry.group.gpu.dependencies]
torchvision = "^0.20"
""")
    deps = read_dependencies(tmp_path, (), (), ())
    assert deps.requirements == ("plain-lib",)
    assert set(deps.family_requirements) == {
        ("torch==2.5.1", "pyproject.toml [dependency-groups] dev"),
        ("torch==2.4.0", "pyproject.toml [tool.poetry.dependencies]"),
        ("torchvision>=0.20,<0.21", "pyproject.toml [tool.poetry.group.gpu]"),
    }


def test_the_project_is_a_package_when_it_can_be_built(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", '[project]\nname = "app"\nversion = "1"\n')
    assert read_dependencies(tmp_path, (), (), (), install_project=True).project is None  # uv: a virtual project
    write(tmp_path / "pyproject.toml", '[project]\nname = "app"\nversion = "1"\n'
                                       '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "x"\n')
    deps = read_dependencies(tmp_path, (), (), (), install_project=True)
    assert deps.project is not None and deps.project.build_isolation
    assert [step.lines for step in deps.steps(tmp_path / "c")] == [(f"-e {tmp_path}",)]
    assert read_dependencies(tmp_path, (), (), (), install_project=False).project is None
    write(tmp_path / "pyproject.toml", '[project]\nname = "app"\nversion = "1"\ndependencies = ["plain-lib"]\n'
                                       '[build-system]\nrequires = ["setuptools", "torch>=2"]\nbuild-backend = "x"\n')
    deps = read_dependencies(tmp_path, (), (), (), install_project=True)
    assert deps.project is not None and not deps.project.build_isolation
    assert any("without isolation" in note for note in deps.notes)
    steps = deps.steps(tmp_path / "c")
    assert [(step.lines, step.options) for step in steps] == [
        (("plain-lib", "setuptools"), ()), ((f"-e {tmp_path}",), ("--no-build-isolation",)),
    ]
    write(tmp_path / "pyproject.toml", '[tool.poetry]\npackage-mode = false\n'
                                       '[build-system]\nrequires = ["poetry-core"]\nbuild-backend = "x"\n')
    assert read_dependencies(tmp_path, (), (), (), install_project=True).project is None


def test_hash_checking_mode_installs_editables_afterwards_without_dependencies(tmp_path: Path) -> None:
    package(tmp_path / "local")
    write(tmp_path / "requirements.txt", f"plain-lib==1.0 --hash={HASH_A}\n-e ./local\n")
    deps = read_dependencies(tmp_path, (), (), ())
    assert [(step.lines, step.options) for step in deps.steps(tmp_path / "c")] == [
        ((f"plain-lib==1.0 --hash={HASH_A}",), ("--require-hashes",)),
        ((f"-e {tmp_path / 'local'}",), ("--no-deps",)),
    ]
