"""The lock readers and the plan, on lock files written by uv 0.13 and poetry 2.5 themselves
(tests/fixtures/locks, made against a PyPI-like index whose torch 2.5.1 needs an nvidia wheel on
Linux), and the routing of the project venv's ``uv`` command."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from layerenv import tomlcompat
from layerenv.errors import BadInput
from layerenv.project.locks import (
    FamilyNeed,
    Plan,
    Selection,
    _poetry_specifier,
    conflicts,
    plan,
    read_lock,
    read_poetry_lock,
    read_pylock,
    read_uv_lock,
)
from layerenv.project.sync_state import (
    SYNC_KEY,
    fingerprint,
    lock_python,
    lock_unchanged_since_sync,
    sync_key,
    unchanged_since_sync,
)
from layerenv.project.uv_fast import route, selection_text, sync_options

LOCKS = Path(__file__).parent / "fixtures" / "locks"
LINUX = {"sys_platform": "linux", "platform_system": "Linux", "python_version": "3.11",
         "python_full_version": "3.11.7", "os_name": "posix", "platform_machine": "x86_64",
         "implementation_name": "cpython", "platform_python_implementation": "CPython",
         "implementation_version": "3.11.7", "platform_release": "", "platform_version": ""}
WINDOWS = {**LINUX, "sys_platform": "win32", "platform_system": "Windows", "os_name": "nt"}
BASE = {"torch": "2.9.1+cpu", "torchvision": "0.24.1+cpu"}


def names(the_plan: Plan) -> list[str]:
    return [package.name for package in the_plan.install]


def test_uv_lock_reader() -> None:
    lock = read_lock(LOCKS / "uv.lock")
    assert lock.kind == "uv.lock" and lock.has_edges
    assert lock.project is not None and lock.project.name == "q" and lock.project.source == "virtual"
    torch = lock.named("torch")[0]
    assert (torch.version, torch.source, torch.index) == ("2.5.1", "registry", "http://127.0.0.1:8765/pypi/simple")
    assert len(torch.hashes) == 1 and torch.hashes[0].startswith("sha256:") and len(torch.hashes[0]) == 71
    assert [(d.name, d.marker) for d in torch.dependencies] == [("nvidia-cuda-runtime-cu12", "sys_platform == 'linux'")]
    assert [(d.name, d.marker) for d in lock.roots] == [("needs-torch", None), ("plain-lib", "sys_platform == 'win32'")]
    assert [d.name for d in lock.extras["vision"]] == ["torchvision"]
    assert [d.name for d in lock.groups["dev"]] == ["plain-lib"] and lock.default_groups == ("dev",)


def test_uv_plan_leaves_the_family_and_follows_markers_groups_and_extras() -> None:
    lock = read_lock(LOCKS / "uv.lock")
    default = plan(lock, LINUX, Selection(), BASE)
    assert names(default) == ["needs-torch", "plain-lib"]  # plain-lib through the dev group
    assert default.family == (FamilyNeed("torch", None, "needs-torch 1.0"),)
    assert default.locked_family == {"nvidia-cuda-runtime-cu12": "12.4.127", "torch": "2.5.1", "torchvision": "0.20.1"}
    assert conflicts(default, BASE) == []
    assert names(plan(lock, LINUX, Selection(no_default_groups=True), BASE)) == ["needs-torch"]
    assert names(plan(lock, WINDOWS, Selection(no_default_groups=True), BASE)) == ["needs-torch", "plain-lib"]
    vision = plan(lock, LINUX, Selection(extras=("vision",), no_default_groups=True), BASE)
    assert names(vision) == ["needs-torch"]
    assert {need.name for need in vision.family} == {"torch", "torchvision"}
    missing = conflicts(vision, {"torch": "2.9.1+cpu"})
    assert [c.describe("B") for c in missing] == ["the project requires torchvision, but base B has no torchvision"]
    with pytest.raises(BadInput, match=r"--extra 'gpu': uv.lock has no such extra \(known: vision\)"):
        plan(lock, LINUX, Selection(extras=("gpu",)), BASE)
    with pytest.raises(BadInput, match=r"--group 'docs': uv.lock has no such group \(known: dev\)"):
        plan(lock, LINUX, Selection(groups=("docs",)), BASE)


SHARED = """version = 1
revision = 3
requires-python = ">=3.11"

[[package]]
name = "app"
version = "0.1.0"
source = { editable = "." }
dependencies = [
    { name = "filelock" },
    { name = "torch" },
]

[package.metadata]
requires-dist = [
    { name = "filelock" },
    { name = "torch", specifier = ">=2.0" },
]

[[package]]
name = "filelock"
version = "3.20.0"
source = { registry = "https://pypi.org/simple" }
wheels = [{ url = "https://files.example/filelock-3.20.0-py3-none-any.whl", hash = "sha256:aa", size = 1 }]

[[package]]
name = "mpmath"
version = "1.3.0"
source = { registry = "https://pypi.org/simple" }
wheels = [{ url = "https://files.example/mpmath-1.3.0-py3-none-any.whl", hash = "sha256:bb", size = 1 }]

[[package]]
name = "sympy"
version = "1.14.0"
source = { registry = "https://pypi.org/simple" }
dependencies = [{ name = "mpmath" }]
sdist = { url = "https://files.example/sympy-1.14.0.tar.gz", hash = "sha256:cc", size = 1 }
wheels = [{ url = "https://files.example/sympy-1.14.0-py3-none-any.whl", hash = "sha256:dd", size = 1 }]

[[package]]
name = "torch"
version = "2.15.0"
source = { registry = "https://pypi.org/simple" }
dependencies = [
    { name = "filelock" },
    { name = "sympy" },
    { name = "triton", marker = "sys_platform == 'linux'" },
]

[[package]]
name = "triton"
version = "3.7.0"
source = { registry = "https://pypi.org/simple" }
"""


def test_what_only_the_family_needs_stays_out_and_what_the_project_shares_stays_in() -> None:
    lock = read_uv_lock(SHARED)
    the_plan = plan(lock, LINUX, Selection(), {})
    assert names(the_plan) == ["filelock"]  # the project's own; sympy and mpmath come only with torch
    assert the_plan.only_family == ("mpmath", "sympy")
    assert lock.named("sympy")[0].hashes == ("sha256:dd", "sha256:cc")
    assert the_plan.family == (FamilyNeed("torch", ">=2.0", "the project"),)
    # the base's local label never fails an unlabelled requirement; another release does
    assert conflicts(the_plan, {"torch": "2.13.0+cu128"}) == []
    old = conflicts(the_plan, {"torch": "1.13.1+cpu"})
    assert [c.describe("cp311-cpu") for c in old] == [
        "the project requires torch>=2.0, but base cp311-cpu has torch 1.13.1+cpu"]


def test_poetry_lock_reader_and_plan() -> None:
    pyproject = tomlcompat.loads((LOCKS / "poetry-pyproject.toml").read_text())
    lock = read_poetry_lock((LOCKS / "poetry.lock").read_text(), pyproject)
    nvidia = lock.named("nvidia-cuda-runtime-cu12")[0]
    assert nvidia.marker == 'platform_system == "Linux"' and nvidia.index == "http://127.0.0.1:8765/pypi/simple"
    the_plan = plan(lock, LINUX, Selection(), BASE)
    assert names(the_plan) == ["needs-torch", "plain-lib"]
    assert the_plan.family == (FamilyNeed("torch", ">=2.0", "needs-torch 1.0"),)
    assert conflicts(the_plan, BASE) == []
    assert [c.describe("B") for c in conflicts(the_plan, {"torch": "1.13.1+cpu"})] == [
        "needs-torch 1.0 requires torch>=2.0, but base B has torch 1.13.1+cpu"]
    assert lock.default_groups == ()  # the vision group is optional
    vision = plan(lock, LINUX, Selection(groups=("vision",)), BASE)
    assert {need.name for need in vision.family} == {"torch", "torchvision"}


def test_pylock_without_edges_keeps_what_the_base_lacks() -> None:
    lock = read_pylock((LOCKS / "pylock.toml").read_text())
    assert not lock.has_edges
    assert names(plan(lock, LINUX, Selection(), BASE)) == ["needs-torch", "plain-lib"]
    covered = plan(lock, LINUX, Selection(), {**BASE, "plain-lib": "1.0"})
    assert names(covered) == ["needs-torch"] and covered.only_family == ("plain-lib",)
    assert {need.name for need in covered.family} == {"torch", "torchvision"}  # --all-extras export
    assert conflicts(covered, BASE) == []


@pytest.mark.parametrize(("text", "message"), [
    ("version = 1\n[[package]\n", "uv.lock is not valid TOML"),
    ("version = 2\n", "uv.lock: version 2 is not one layerenv reads"),
    ('version = 1\n[[package]]\nname = "x"\nversion = "1"\nsource = { svn = "x" }\n', "source .* is none of"),
    ('version = 1\n[[package]]\nversion = "1"\nsource = { registry = "x" }\n', "name must be a non-empty string"),
])
def test_bad_uv_locks_are_one_line_bad_input(text: str, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        read_uv_lock(text)


def test_bad_pylock_version() -> None:
    with pytest.raises(BadInput, match=r"lock-version '2.0' is not one layerenv reads"):
        read_pylock('lock-version = "2.0"\n')


@pytest.mark.parametrize(("poetry", "pep440"), [
    ("^1.2", ">=1.2,<2"), ("^0.3", ">=0.3,<0.4"), ("~1.2", ">=1.2,<1.3"), ("1.0", "==1.0"),
    (">=2.0,<3", ">=2.0,<3"), ("*", None),
])
def test_poetry_constraints_as_pep440(poetry: str, pep440: str | None) -> None:
    assert _poetry_specifier(poetry) == pep440


def test_uv_command_routing() -> None:
    joined = route(["-q", "--directory=sub", "sync", "--frozen"])
    assert (joined.command, joined.position, joined.directory) == ("sync", 2, "sub")
    found = route(["-q", "--directory", "sub", "sync", "--frozen"])
    assert (found.command, found.position, found.directory) == ("sync", 3, "sub")
    assert route(["--version"]).command is None
    assert route(["pip", "install", "x"]).command == "pip"
    options = sync_options(["--group", "docs", "--extra=gpu", "--no-dev", "--frozen", "-q"])
    assert options == {"groups": ["docs"], "extras": ["gpu"], "no_default_groups": True, "frozen": True}
    with pytest.raises(BadInput, match=r"^uv sync --no-install-project: not available in a layered project"):
        sync_options(["--no-install-project"])


def test_sync_fingerprint_covers_selection_pyproject_interpreter_and_installs_but_no_absolute_path(
        tmp_path: Path) -> None:
    project = tmp_path / "one"
    site = project / ".venv" / "lib" / "python3.11" / "site-packages"
    (site / "plain_lib-1.0.dist-info").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    (project / ".venv" / "pyvenv.cfg").write_text(f"version = 3.11.7\ncommand = virtualenv {project / '.venv'}\n")
    (project / "uv.lock").write_text("version = 1\n")
    relative, everything = "lib/python3.11/site-packages", selection_text({})
    key = sync_key(relative, fingerprint(project / ".venv", project, relative, everything), project / "uv.lock")
    (project / ".venv" / SYNC_KEY).write_text(key)
    (site / "__pycache__").mkdir()  # Python's own, not an install
    assert unchanged_since_sync(project / ".venv", project, everything)
    moved = tmp_path / "two"
    project.rename(moved)  # `layerenv project` syncs a staging venv, then moves it into place
    venv, site = moved / ".venv", moved / ".venv" / relative
    (venv / "pyvenv.cfg").write_text(f"version = 3.11.7\ncommand = virtualenv {venv}\n")
    assert unchanged_since_sync(venv, moved, everything) and lock_unchanged_since_sync(venv, moved / "uv.lock")
    assert not unchanged_since_sync(venv, moved, selection_text({"groups": ["docs"]}))
    (moved / "uv.lock").write_text("version = 1\nrevision = 2\n")
    assert not lock_unchanged_since_sync(venv, moved / "uv.lock")
    (site / "plain_lib-1.1.dist-info").mkdir()
    assert not unchanged_since_sync(venv, moved, everything)
    (site / "plain_lib-1.1.dist-info").rmdir()
    (moved / "pyproject.toml").write_text("[project]\nname = 'demo'\ndependencies = ['x']\n")
    assert not unchanged_since_sync(venv, moved, everything)
    (moved / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    assert unchanged_since_sync(venv, moved, everything)
    (venv / "pyvenv.cfg").write_text(f"version = 3.11.9\ncommand = virtualenv {venv}\n")
    assert not unchanged_since_sync(venv, moved, everything)  # another interpreter
    (venv / SYNC_KEY).unlink()
    assert not unchanged_since_sync(venv, moved, everything)  # a sync by an older layerenv recorded none


def test_sync_selection_text_is_the_same_from_uv_sync_options_and_from_a_selection() -> None:
    from dataclasses import asdict

    options = sync_options(["--group", "docs", "--extra=gpu", "--group", "a", "--no-dev", "--frozen"])
    selection = Selection(extras=("gpu",), groups=("a", "docs"), no_default_groups=True)
    assert selection_text(options) == selection_text(asdict(selection))
    assert selection_text(options) != selection_text(asdict(Selection(extras=("gpu",), groups=("docs",))))


def test_uv_lock_runs_with_the_interpreter_the_venv_was_made_from(tmp_path: Path) -> None:
    venv = tmp_path / ".venv"
    venv.mkdir()
    fallback = venv / "bin" / "python"
    assert lock_python(venv, fallback) == str(fallback)  # no pyvenv.cfg
    (venv / "pyvenv.cfg").write_text(f"home = /nowhere\nexecutable = {sys.executable}\nversion = 3.11.7\n")
    assert lock_python(venv, fallback) == sys.executable
    (venv / "pyvenv.cfg").write_text("executable = /nowhere/python3.11\n")  # gone: uv queries the venv's own
    assert lock_python(venv, fallback) == str(fallback)
    real = os.path.realpath(sys.executable)
    (venv / "pyvenv.cfg").write_text(f"home = {os.path.dirname(real)}\nuv = 0.9.0\nversion_info = 3.11.7\n")
    assert lock_python(venv, fallback) == str(fallback)  # uv's form names no executable, and bin/python is missing
    fallback.parent.mkdir()
    fallback.symlink_to(real)
    assert lock_python(venv, fallback) == real  # its python links to the interpreter it was made from
    fallback.unlink()
    (venv / "python-copy").write_bytes(b"")
    fallback.symlink_to(venv / "python-copy")
    assert lock_python(venv, fallback) == str(fallback)  # a link inside the venv names no interpreter of its own
