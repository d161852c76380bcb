"""``doctor`` and ``status`` tell the truth about a project's torch family, and ``doctor --fix`` removes all
of it safely: a real store built with uv, a project layered on it, and PyPI-style torch, nvidia-* and
triton put into the project by real pip from a local index."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from layerenv.reporter import format_size
from tests.support.cli import layerenv_env, run_layerenv
from tests.support.index import isolated_installer_env, serve_index, write_simple_index
from tests.support.pytest_fixtures import VariantIndexes
from tests.support.wheels import build_fake_companion, build_wheel

pytestmark = pytest.mark.slow
TAG = f"cp{sys.version_info.major}{sys.version_info.minor}"
CU130 = f"{TAG}-linux_x86_64-torch2.11.0-cu130"
LINUX = "; platform_system == 'Linux'"
#: What PyPI's unlabelled torch pulls in on Linux, in small: (name, version, payload bytes).
PYPI_STACK = (("torch", "2.15.0", 300_000), ("nvidia-cublas-cu12", "12.8.4.1", 200_000),
              ("nvidia-cuda-runtime-cu12", "12.8.90", 50_000), ("triton", "3.5.0", 100_000))


@dataclass(frozen=True)
class Store:
    root: Path
    env: dict[str, str]  # the replayed H100, uv, variant cu130
    venv: Path  # the one project's venv
    base_site: Path
    index_url: str  # the PyPI-like index holding PYPI_STACK


def layerenv(args: list[str], store: Store, code: int) -> subprocess.CompletedProcess[str]:
    result = run_layerenv(args, store.env, store.root, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == code, (result.stdout, result.stderr)
    return result


def as_json(args: list[str], store: Store, code: int) -> Any:
    return json.loads(layerenv([*args, "--json"], store, code).stdout)


def site_of(venv: Path) -> Path:
    return next((venv / "lib").glob("python*/site-packages"))


def installer_env() -> dict[str, str]:
    """pip with no config file at all: the venv's pip.conf (and its torch pin) is skipped, as some
    tools' installs skip it."""
    env = isolated_installer_env()
    for name in [key for key in env if key.startswith("POETRY_")] + ["VIRTUAL_ENV", "CONDA_PREFIX"]:
        env.pop(name, None)
    return env


def pip(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / "python"), "-m", "pip", *args], env=installer_env(),
                          capture_output=True, text=True, check=True)


def python_says(venv: Path, code: str) -> str:
    return subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip()


def build_pypi_stack(dest: Path) -> list[Path]:
    """torch 2.15.0 as PyPI ships it for Linux (unlabelled, requiring the CUDA wheels and triton under
    a platform marker, a console script in bin/), and those wheels; each with a payload of its own."""
    name, version, size = PYPI_STACK[0]
    torch = build_wheel(
        dest, name, version,
        {"torch/__init__.py": f"__version__ = '{version}'\n",
         "torch/distributed/run.py": "def main():\n    return 0\n",
         "torch/lib/libtorch_payload.so": os.urandom(size),
         f"torch-{version}.dist-info/entry_points.txt": "[console_scripts]\ntorchrun = torch.distributed.run:main\n"},
        requires=[f"{n}=={v}{LINUX}" for n, v, _ in PYPI_STACK[1:]],
        uncompressed={"torch/lib/libtorch_payload.so"})
    return [torch, *(build_fake_companion(dest, n, v, payload_bytes=b) for n, v, b in PYPI_STACK[1:])]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, variant_indexes: VariantIndexes) -> Iterator[Store]:
    root = tmp_path_factory.mktemp("shadows")
    installers = isolated_installer_env(uv_cache_dir=root / "uv-cache")
    installers.pop("CUDA_VISIBLE_DEVICES", None)
    settings = {"LAYERENV_INDEX_URL": variant_indexes.url_template, "LAYERENV_INSTALLER": "uv",
                "LAYERENV_VARIANT": "cu130"}
    env = layerenv_env(root / "home", base_env={**installers, "PIP_INDEX_URL": variant_indexes.pypi_url},
                       machine="h100-580", extra=settings)
    project = root / "app"
    project.mkdir()
    write_simple_index(root / "pypi", build_pypi_stack(root / "wheels"))
    with serve_index(root / "pypi") as server:
        store = Store(root, env, project / ".venv", root / "home" / "bases" / CU130, server.url)
        layerenv(["base"], store, 0)
        layerenv(["project", str(project)], store, 0)
        yield replace(store, base_site=site_of(store.base_site))


def install_pypi_torch(store: Store) -> None:
    pip(store.venv, "install", "-q", "--index-url", store.index_url, "torch==2.15.0")


def record_bytes(dist_info: Path) -> int:
    """What a distribution takes: the files its RECORD lists that exist (lstat), as pip installed them."""
    site = dist_info.parent
    with (dist_info / "RECORD").open(newline="") as handle:
        paths = {os.path.normpath(site / row[0]) for row in csv.reader(handle) if row}
    return sum(os.lstat(path).st_size for path in paths if os.path.lexists(path))


def family_dist_infos(site: Path) -> dict[str, Path]:
    """Each real (not stub) torch-family dist-info in ``site`` by its folder name."""
    found = {}
    for folder in site.glob("*.dist-info"):
        stem = folder.name.split("-")[0].lower()
        family = stem in ("torch", "torchvision", "triton") or stem.startswith(("nvidia_", "cuda_"))
        if family and not (folder / "LAYERENV_STUB").exists():
            found[folder.name] = folder
    return found


def test_doctor_names_each_family_distribution_with_its_bytes_and_fix_removes_them_all(store: Store) -> None:
    site = site_of(store.venv)
    before = as_json(["status"], store, 0)["projects"]
    assert [(p["state"], p["ok"], p["shadowed"]) for p in before] == [("ok", True, [])]

    install_pypi_torch(store)
    own = family_dist_infos(site)
    assert sorted(own) == ["nvidia_cublas_cu12-12.8.4.1.dist-info", "nvidia_cuda_runtime_cu12-12.8.90.dist-info",
                           "torch-2.15.0.dist-info", "triton-3.5.0.dist-info"]
    assert (store.venv / "bin" / "torchrun").is_file() and (site / "nvidia" / "cublas").is_dir()
    sizes = {folder.name.split("-")[0].replace("_", "-"): record_bytes(folder) for folder in own.values()}
    total = sum(sizes.values())
    assert all(sizes[name] > payload for name, _, payload in PYPI_STACK), sizes

    # status: shadowed, never ok, read from folder names alone
    status = as_json(["status"], store, 0)["projects"]
    expected = [{"name": n, "version": v} for n, v, _ in sorted(PYPI_STACK)]
    assert [(p["state"], p["ok"], p["shadowed"]) for p in status] == [("shadowed", False, expected)]
    line = next(line for line in layerenv(["status"], store, 0).stdout.splitlines() if str(store.venv.parent) in line)
    assert line.endswith("shadowed by its own nvidia-cublas-cu12 12.8.4.1, nvidia-cuda-runtime-cu12 12.8.90, "
                         "torch 2.15.0, triton 3.5.0: `layerenv doctor --fix` removes them"), line

    # doctor: one finding naming each distribution with its bytes, and the total
    report = as_json(["doctor"], store, 1)
    assert [(f["kind"], f["subject"], f["fixed"]) for f in report["findings"]] == [
        ("shadow", str(store.venv.parent), False)]
    finding = report["findings"][0]
    assert {(d["name"], d["version"], d["bytes"]) for d in finding["distributions"]} == {
        (name, version, sizes[name]) for name, version, _ in PYPI_STACK}
    assert finding["bytes"] == total
    text = layerenv(["doctor"], store, 1).stdout
    for name, version, _ in PYPI_STACK:
        assert f"{name} {version} ({format_size(sizes[name])})" in text, text
    assert f": {format_size(total)} in all, shadowing base {CU130}'s torch 2.11.0+cu130 -> fix: remove them" in text

    # --fix: everything gone, the stubs back, the freed bytes said
    fixed = layerenv(["doctor", "--fix"], store, 0)
    assert fixed.stdout.startswith("fixed: ") and f"freeing {format_size(total)}, and linked it to base {CU130}" \
        in fixed.stdout, fixed.stdout
    assert family_dist_infos(site) == {}
    assert not (site / "nvidia").exists() and not (site / "triton").exists() and not (site / "torch").exists()
    assert not (store.venv / "bin" / "torchrun").exists()
    assert (site / "torch-2.11.0+cu130.dist-info" / "LAYERENV_STUB").is_file()
    code = "import torch, importlib.metadata as m; print(torch.__version__, m.version('torch'), torch.__file__)"
    version, metadata, where = python_says(store.venv, code).split()
    assert (version, metadata) == ("2.11.0+cu130", "2.11.0+cu130") and where.startswith(str(store.base_site))
    assert [p["state"] for p in as_json(["status"], store, 0)["projects"]] == ["ok"]
    layerenv(["doctor"], store, 0)


def test_fix_never_follows_a_link_out_of_the_venv_and_says_what_it_left(store: Store) -> None:
    site = site_of(store.venv)
    pip(store.venv, "install", "-q", "--no-deps", "--index-url", store.index_url, "triton==3.5.0")
    outside = store.root / "outside"
    outside.mkdir(exist_ok=True)
    for name in ("through-folder.bin", "through-file.bin"):
        (outside / name).write_text("not the venv's\n")
    escape = store.venv.parent / "beside-the-venv.txt"  # ../../../../ from site-packages: outside the venv
    escape.write_text("not the venv's either\n")
    (site / "triton_data").symlink_to(outside, target_is_directory=True)
    (site / "triton" / "through-file.bin").symlink_to(outside / "through-file.bin")
    record = next(site.glob("triton-3.5.0.dist-info")) / "RECORD"
    with record.open("a", newline="") as handle:
        csv.writer(handle).writerows([("triton_data/through-folder.bin", "", ""),
                                      ("triton/through-file.bin", "", ""),
                                      ("../../../../beside-the-venv.txt", "", "")])
    try:
        report = as_json(["doctor", "--fix"], store, 1)
        [finding] = report["findings"]
        assert (finding["kind"], finding["fixed"]) == ("shadow", False)
        left = {(Path(item["path"]).name, item["reason"]) for item in finding["not_removed"]}
        assert left == {("through-folder.bin", f"reached through the symlink {site / 'triton_data'}"),
                        ("beside-the-venv.txt", "outside the venv's site-packages and scripts folder")}
        assert f"left alone: {site / 'triton_data' / 'through-folder.bin'} (reached through the symlink" \
            in finding["change"]
        assert finding["freed_bytes"] > 100_000  # triton's own files did go
        for name in ("through-folder.bin", "through-file.bin"):
            assert (outside / name).read_text() == "not the venv's\n"
        assert escape.read_text() == "not the venv's either\n"
        assert not (site / "triton").exists() and not list(site.glob("triton-*.dist-info"))
        assert (site / "triton_data").is_symlink()  # not in the RECORD: not doctor's to remove
        text = layerenv(["doctor", "--fix"], store, 0)  # nothing is left to fix
        assert text.stdout.startswith("healthy: "), text.stdout
    finally:
        (site / "triton_data").unlink(missing_ok=True)


def test_doctor_finds_and_relinks_missing_and_garbled_stubs(store: Store) -> None:
    site = site_of(store.venv)
    torch_stub, vision_stub = site / "torch-2.11.0+cu130.dist-info", site / "torchvision-0.26.0+cu130.dist-info"
    vision_metadata = vision_stub / "METADATA"
    vision_metadata.write_bytes(vision_metadata.read_bytes()[:40])  # truncated
    shutil.rmtree(torch_stub)
    report = as_json(["doctor"], store, 1)
    assert [(f["kind"], f["subject"]) for f in report["findings"]] == [("stub-broken", str(store.venv.parent))]
    message = report["findings"][0]["message"]
    assert f"the stub {torch_stub} is missing (and 1 more)" in message, message
    assert as_json(["status"], store, 0)["projects"][0]["state"] == "ok"  # not shadowed: nothing of its own

    fixed = as_json(["doctor", "--fix"], store, 0)
    assert [(f["kind"], f["fixed"]) for f in fixed["findings"]] == [("stub-broken", True)]
    base_vision = next(store.base_site.glob("torchvision-*.dist-info")) / "METADATA"
    assert vision_metadata.read_bytes() == base_vision.read_bytes()
    assert (torch_stub / "LAYERENV_STUB").is_file()
    assert python_says(store.venv, "import importlib.metadata as m; print(m.version('torch'))") == "2.11.0+cu130"

    (torch_stub / "LAYERENV_STUB").unlink()  # its INSTALLER still says layerenv: a stub, not the project's torch
    report = as_json(["doctor"], store, 1)
    assert [f["kind"] for f in report["findings"]] == ["stub-broken"]
    assert f"{torch_stub / 'LAYERENV_STUB'} is missing" in report["findings"][0]["message"]
    as_json(["doctor", "--fix"], store, 0)
    assert (torch_stub / "LAYERENV_STUB").is_file()
