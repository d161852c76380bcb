"""The store, base reuse and project link on a Windows-shaped venv (``Scripts\\``, ``Lib\\site-packages``,
``pip.ini``), run on this Linux machine.

Windows is simulated where the code would meet it: venvs made on disk with Windows' layout (which
:meth:`VenvLayout.for_venv` reads from the disk, as it does there) and an ``os`` without ``uname``
(which Windows' has not). ``os.name`` stays as it is: nothing here may depend on it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import virtualenv.activation

from layerenv import __version__
from layerenv.base.current import find_current, usable_current
from layerenv.base.ensure import reuse_base
from layerenv.base.manifest import Manifest, PackageRecord
from layerenv.base.request import BaseRequest, SourceSettings
from layerenv.base.torch_check import TorchReport
from layerenv.choice.decide import Policy, choose
from layerenv.choice.detection import Detection
from layerenv.choice.table import load_matrix
from layerenv.lifecycle.shadows import find_shadows, stub_problems
from layerenv.lifecycle.status import status_document
from layerenv.machine.facts import Machine
from layerenv.machine.interpreters import Interpreter
from layerenv.project.link import PerNode, link, read_link, uv_environment
from layerenv.store.atomic import write_json
from layerenv.store.home import MANIFEST_NAME, Store
from layerenv.store.nodes import python_key
from layerenv.venv.layout import VenvLayout
from tests.support.reporter import Recorder
from tests.support.wheels import build_fake_torch, build_wheel

SERIES = f"{sys.version_info.major}.{sys.version_info.minor}"
TAG = f"cp{sys.version_info.major}{sys.version_info.minor}"
PYTHON = Interpreter(Path("C:/Python/python.exe"), "cpython", (sys.version_info.major, sys.version_info.minor, 1),
                     "win_amd64")
MACHINE = Machine("windows", "x86_64", f"{SERIES}.1")
BASE_ID = f"{TAG}-win_amd64-torch2.9.1-cpu"
TEMPLATES = Path(virtualenv.activation.__file__).parent


@pytest.fixture
def no_uname(monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows' ``os`` has no ``uname``: code that calls it fails there as it fails here."""
    monkeypatch.delattr(os, "uname")


def windows_venv(root: Path) -> VenvLayout:
    """An empty venv shaped as virtualenv makes it on Windows, with the real activation templates."""
    layout = VenvLayout(root, windows=True)
    layout.site_packages.mkdir(parents=True)
    layout.bin_dir.mkdir(exist_ok=True)
    layout.python.write_bytes(b"MZ")  # stands for the launcher; it is never started here
    (root / "pyvenv.cfg").write_text(f"home = C:\\Python\nimplementation = CPython\nversion_info = {SERIES}.1\n"
                                     "include-system-site-packages = false\n", encoding="utf-8")
    for template, name in (("bash/activate.sh", "activate"), ("powershell/activate.ps1", "activate.ps1"),
                           ("batch/activate.bat", "activate.bat")):
        (layout.bin_dir / name).write_bytes((TEMPLATES / template).read_bytes())
    return layout


def unpack(wheel: Path, site: Path) -> None:
    """Install a wheel as an installer would leave it in site-packages."""
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
        dist_info = next(name.split("/")[0] for name in archive.namelist() if ".dist-info/" in name)
    (site / dist_info / "INSTALLER").write_text("uv\n", encoding="utf-8")


def windows_base(store: Store, wheels: Path) -> Manifest:
    """A published base, made on disk as ``layerenv base`` leaves one on Windows."""
    root = store.base_dir(BASE_ID)
    layout = windows_venv(root)
    unpack(build_fake_torch(wheels, "2.9.1+cpu", cuda=None), layout.site_packages)
    unpack(build_wheel(wheels, "triton", "3.5.0", {
        "triton/__init__.py": "def main():\n    return 0\n",
        "triton-3.5.0.dist-info/entry_points.txt": "[console_scripts]\ntriton-hello = triton:main\n",
    }), layout.site_packages)
    manifest = Manifest(
        base_id=BASE_ID, path=str(root), created=time.time(), layerenv_version=__version__, python=PYTHON,
        variant="cpu", channel="stable", torch="2.9.1", torch_build="2.9.1+cpu", requested=("torch",),
        packages={"torch": PackageRecord("torch", "2.9.1+cpu", "", "uv"),
                  "triton": PackageRecord("triton", "3.5.0", "", "uv")},
        machine=MACHINE, decision=choose(MACHINE, Policy(), load_matrix()),
        verification=TorchReport(f"{SERIES}.1", str(layout.python), str(PYTHON.executable), "cpython",
                                 PYTHON.version, "win-amd64", version="2.9.1+cpu"),
    )
    write_json(root / MANIFEST_NAME, manifest.to_json())
    return manifest


def _id(manifest: Manifest | None) -> str | None:
    return manifest.base_id if manifest else None  # read back, its decision keeps only what the JSON holds




def windows_request() -> BaseRequest:
    return BaseRequest(PYTHON, Detection(MACHINE, choose(MACHINE, Policy(), load_matrix())), ("torch",), "uv",
                       SourceSettings(""))


# --------------------------------------------------------------------------- the layout itself


def test_windows_and_posix_layouts_name_what_each_platform_has(tmp_path: Path) -> None:
    windows = VenvLayout(tmp_path / "w", windows=True)
    assert windows.bin_dir == tmp_path / "w" / "Scripts"
    assert windows.python == tmp_path / "w" / "Scripts" / "python.exe"
    assert windows.script("pip") == tmp_path / "w" / "Scripts" / "pip.exe"
    assert windows.site_packages == tmp_path / "w" / "Lib" / "site-packages"
    assert windows.pip_config == tmp_path / "w" / "pip.ini"

    posix = tmp_path / "p"
    for series in ("3.12", "3.13t"):  # two Pythons' folders: pyvenv.cfg says which one is the venv's
        (posix / "lib" / f"python{series}" / "site-packages").mkdir(parents=True)
    (posix / "bin").mkdir()
    (posix / "pyvenv.cfg").write_text("version_info = 3.12.4\n", encoding="utf-8")
    layout = VenvLayout.for_venv(posix)
    assert not layout.windows
    assert (layout.python, layout.script("pip")) == (posix / "bin" / "python", posix / "bin" / "pip")
    assert layout.site_packages == posix / "lib" / "python3.12" / "site-packages"
    assert layout.pip_config == posix / "pip.conf"


def test_the_layout_is_read_from_the_disk_and_a_new_venv_gets_this_platforms(tmp_path: Path) -> None:
    assert VenvLayout.for_venv(windows_venv(tmp_path / "w").root).windows
    assert VenvLayout.for_venv(tmp_path / "not-made-yet").windows is (sys.platform == "win32")
    activation = {path.name for path in VenvLayout.for_venv(tmp_path / "w").activation_scripts}
    assert activation == {"activate", "activate.ps1", "activate.bat"}


# --------------------------------------------------------------------------- the store, base reuse, link


def test_store_opens_registers_and_lists_projects_without_uname(tmp_path: Path, no_uname: None) -> None:
    store = Store.open(str(tmp_path / "home"), {}, lock_mode="lease")
    store.ensure_writable()
    assert store.node  # the host name, from platform.node()
    with store.lock("windows-key", purpose="test"):  # a lease names its holder's host
        assert store.lock_exists("windows-key")
    manifest = windows_base(store, tmp_path / "wheels")
    project = windows_venv(tmp_path / "app" / ".venv").root
    store.register(project, BASE_ID, project.parent)
    assert [entry["venv"] for entry in store.projects()] == [str(project)]

    document = status_document(store, {BASE_ID}, with_sizes=True)
    assert [(b["id"], b["projects"]) for b in document["bases"]] == [(manifest.base_id, [str(project.parent)])]
    assert [p["problem"] for p in document["projects"]] == [None]  # its python is Scripts\python.exe


def test_a_published_windows_base_is_reused(tmp_path: Path, no_uname: None) -> None:
    store = Store.open(str(tmp_path / "home"), {})
    windows_base(store, tmp_path / "wheels")
    assert _id(find_current(store, windows_request())) == BASE_ID
    assert _id(usable_current(store, windows_request())) == BASE_ID  # reads its Scripts\ and Lib\site-packages
    reporter = Recorder()
    assert _id(reuse_base(windows_request(), store, reporter)) == BASE_ID  # and records it as this node's
    assert reporter.warnings == []
    site = (store.home / "nodes" / store.node / f"{python_key(PYTHON)}.txt").read_text(encoding="utf-8")
    assert f"site={store.base_dir(BASE_ID) / 'Lib' / 'site-packages'}\n" in site


def test_link_puts_every_file_where_windows_expects_it(tmp_path: Path, no_uname: None) -> None:
    store = Store.open(str(tmp_path / "home"), {})
    manifest = windows_base(store, tmp_path / "wheels")
    project = windows_venv(tmp_path / "app" / ".venv")
    batch = (project.bin_dir / "activate.bat").read_bytes()

    record = link(project.root, base_id=BASE_ID, base_venv=manifest.venv)

    site, base_site = project.site_packages, VenvLayout(manifest.venv, windows=True).site_packages
    assert record.base_site == base_site
    pth = (site / "_layerenv.pth").read_text(encoding="utf-8").splitlines()
    assert pth[0] == str(base_site) and pth[1].startswith("import _layerenv_boot;") and repr(str(base_site)) in pth[1]
    assert (site / "_layerenv_boot.py").is_file()
    stubs = {path.name for path in site.glob("*.dist-info") if (path / "LAYERENV_STUB").is_file()}
    assert stubs == {"torch-2.9.1+cpu.dist-info", "triton-3.5.0.dist-info"} == set(record.stubs)
    constraints = project.root / "layerenv-constraints.txt"
    assert "torch==2.9.1+cpu\n" in constraints.read_text(encoding="utf-8")
    assert (project.root / "pip.ini").read_text(encoding="utf-8") == f"[global]\nconstraint = {constraints}\n\n"
    assert f"$env:UV_CONSTRAINT = '{constraints}'" in (project.bin_dir / "activate.ps1").read_text(encoding="utf-8")
    assert "# >>> layerenv >>>" in (project.bin_dir / "activate").read_text(encoding="utf-8")
    assert (project.bin_dir / "activate.bat").read_bytes() == batch  # no block for cmd: left as it was
    assert record.scripts == () and not (project.bin_dir / "triton-hello").exists()  # .exe launchers only
    left = {path.relative_to(project.root).as_posix() for path in project.root.rglob("*") if path.is_file()}
    assert not {path for path in left if path.startswith(("bin/", "lib/")) or path == "pip.conf"}
    assert read_link(project.root) == record and find_shadows(project.root) == []
    assert stub_problems(project.root, record) == []  # doctor reads the stubs from Lib\site-packages
    assert uv_environment(project.root)["UV_CONSTRAINT"] == str(constraints)


def test_a_per_node_link_finds_this_nodes_windows_base_at_start_up(tmp_path: Path, no_uname: None) -> None:
    store = Store.open(str(tmp_path / "home"), {})
    manifest = windows_base(store, tmp_path / "wheels")
    assert _id(reuse_base(windows_request(), store, Recorder())) == BASE_ID
    project = windows_venv(tmp_path / "app" / ".venv")
    link(project.root, base_id=BASE_ID, base_venv=manifest.venv,
         per_node=PerNode(store.home, python_key(PYTHON), "python"))

    boot = project.site_packages / "_layerenv_boot.py"
    start = f"import os, runpy; del os.uname; print(runpy.run_path({str(boot)!r})['_SITE'])"  # as Windows' os
    env = {k: v for k, v in os.environ.items() if k != "LAYERENV_NODE"} | {"LAYERENV_RESOLVING": "1"}
    started = subprocess.run([sys.executable, "-c", start], env=env, capture_output=True, text=True, timeout=60,
                             check=False)
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == str(VenvLayout(manifest.venv, windows=True).site_packages), started.stderr
