"""Pytest fixtures over fake torch wheels and local indexes.

Import them into a conftest (or a test module)::

    from tests.support.pytest_fixtures import *  # noqa: F403

Catalogue (see :data:`TORCH_BUILDS`, :data:`PYPI_WHEELS`): one "family" per
PyTorch variant, as on the real per-variant indexes (``.../whl/cu128``):

=======  ==============  =====  ========================  ===============================
variant  torch           cuda   torchvision               runtime dep of torch (Linux)
=======  ==============  =====  ========================  ===============================
cu124    2.5.1+cu124     12.4   0.20.1+cu124              nvidia-cuda-runtime-cu12 12.4.127
cu126    2.9.1+cu126     12.6   0.24.1+cu126              nvidia-cuda-runtime-cu12 12.6.77
cu128    2.9.1+cu128     12.8   0.24.1+cu128              nvidia-cuda-runtime-cu12 12.8.90
cu129    2.9.1+cu129     12.9   0.24.1+cu129              nvidia-cuda-runtime-cu12 12.9.79
cu130    2.11.0+cu130    13.0   0.26.0+cu130              nvidia-cuda-runtime 13.0.96
cpu      2.9.1+cpu       None   0.24.1+cpu                (none)
=======  ==============  =====  ========================  ===============================

Each torchvision requires its exact torch (``torch==2.9.1+cu128``).  The
"PyPI" family: torch ``2.5.1`` (dist version without local label, but
``torch.__version__ == "2.5.1+cu124"``, cuda 12.4, requiring
nvidia-cuda-runtime-cu12 12.4.127), torchvision ``0.20.1`` (requires
``torch==2.5.1``), ``needs-torch 1.0`` (requires ``torch>=2.0``),
``pins-old-torch 1.0`` (requires ``torch==2.5.1``) and ``plain-lib 1.0``.

Index layout (one tree, so one HTTP server serves every variant)::

    <root>/<variant>/simple/...   for variant in VARIANTS
    <root>/pypi/simple/...        the PyPI-like index
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .cli import layerenv_env, run_layerenv
from .index import (
    IndexServer,
    add_to_index,
    file_url,
    isolated_installer_env,
    serve_index,
    write_simple_index,
)
from .wheels import (
    build_fake_companion,
    build_fake_torch,
    build_plain_package,
    escape_name,
)

__all__ = [
    "PYPI",
    "PYPI_WHEELS",
    "TORCH_BUILDS",
    "VARIANTS",
    "CpuBaseStore",
    "FakeTorchBuild",
    "ServedIndexes",
    "VariantIndexes",
    "build_catalogue",
    "cpu_base_store",
    "driver_upgrade_env",
    "fake_wheel_families",
    "fake_wheels",
    "fresh_installer_caches",
    "installer_env",
    "pypi_like_index",
    "served_indexes",
    "torch_index",
    "variant_indexes",
    "wheel_path",
    "write_index_tree",
]

_OLD_ARCHS = ("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90")
_NEW_ARCHS = ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120")
_LINUX = "; platform_system == 'Linux'"


@dataclass(frozen=True)
class FakeTorchBuild:
    """One variant's torch family in the catalogue."""

    variant: str
    torch_version: str
    cuda: str | None
    arch_list: tuple[str, ...]
    torchvision_version: str
    runtime: tuple[str, str] | None  # (dist name, version) of torch's nvidia runtime dep

    @property
    def torch_requires(self) -> tuple[str, ...]:
        if self.runtime is None:
            return ()
        return (f"{self.runtime[0]}=={self.runtime[1]}{_LINUX}",)


TORCH_BUILDS: dict[str, FakeTorchBuild] = {
    b.variant: b
    for b in (
        FakeTorchBuild(
            "cu124",
            "2.5.1+cu124",
            "12.4",
            _OLD_ARCHS,
            "0.20.1+cu124",
            ("nvidia-cuda-runtime-cu12", "12.4.127"),
        ),
        FakeTorchBuild(
            "cu126",
            "2.9.1+cu126",
            "12.6",
            _OLD_ARCHS,
            "0.24.1+cu126",
            ("nvidia-cuda-runtime-cu12", "12.6.77"),
        ),
        FakeTorchBuild(
            "cu128",
            "2.9.1+cu128",
            "12.8",
            _NEW_ARCHS,
            "0.24.1+cu128",
            ("nvidia-cuda-runtime-cu12", "12.8.90"),
        ),
        FakeTorchBuild(
            "cu129",
            "2.9.1+cu129",
            "12.9",
            _NEW_ARCHS,
            "0.24.1+cu129",
            ("nvidia-cuda-runtime-cu12", "12.9.79"),
        ),
        FakeTorchBuild("cu130", "2.11.0+cu130", "13.0", _NEW_ARCHS, "0.26.0+cu130", ("nvidia-cuda-runtime", "13.0.96")),
        FakeTorchBuild("cpu", "2.9.1+cpu", None, (), "0.24.1+cpu", None),
    )
}
VARIANTS: tuple[str, ...] = tuple(TORCH_BUILDS)
PYPI = "pypi"
#: (dist name, version) of every wheel in the PyPI-like family.
PYPI_WHEELS: tuple[tuple[str, str], ...] = (
    ("torch", "2.5.1"),
    ("torchvision", "0.20.1"),
    ("nvidia-cuda-runtime-cu12", "12.4.127"),
    ("needs-torch", "1.0"),
    ("pins-old-torch", "1.0"),
    ("plain-lib", "1.0"),
)


def build_catalogue(dest_dir: Path) -> dict[str, list[Path]]:
    """Build every wheel of the catalogue into ``dest_dir``; return ``{family: wheels}``.

    Families are the :data:`VARIANTS` plus ``"pypi"``.
    """
    families: dict[str, list[Path]] = {}
    for build in TORCH_BUILDS.values():
        wheels = [
            build_fake_torch(
                dest_dir,
                build.torch_version,
                cuda=build.cuda,
                arch_list=build.arch_list,
                requires=build.torch_requires,
            ),
            build_fake_companion(
                dest_dir, "torchvision", build.torchvision_version, (f"torch=={build.torch_version}",)
            ),
        ]
        if build.runtime is not None:
            wheels.append(build_fake_companion(dest_dir, *build.runtime))
        families[build.variant] = wheels
    families[PYPI] = [
        build_fake_torch(
            dest_dir,
            "2.5.1+cu124",
            dist_version="2.5.1",
            cuda="12.4",
            arch_list=_OLD_ARCHS,
            requires=(f"nvidia-cuda-runtime-cu12==12.4.127{_LINUX}",),
        ),
        build_fake_companion(dest_dir, "torchvision", "0.20.1", ("torch==2.5.1",)),
        build_fake_companion(dest_dir, "nvidia-cuda-runtime-cu12", "12.4.127"),
        build_plain_package(dest_dir, "needs-torch", "1.0", ("torch>=2.0",)),
        build_plain_package(dest_dir, "pins-old-torch", "1.0", ("torch==2.5.1",)),
        build_plain_package(dest_dir, "plain-lib", "1.0"),
    ]
    return families


def write_index_tree(root: Path, families: dict[str, list[Path]]) -> Path:
    """Write ``root/<family>/simple`` for each family; return ``root``."""
    for family, wheels in families.items():
        write_simple_index(root / family, wheels)
    return root


def wheel_path(directory: Path, name: str, version: str) -> Path:
    """The one wheel of ``name`` at ``version`` in ``directory`` (e.g. ``fake_wheels``)."""
    matches = sorted(Path(directory).glob(f"{escape_name(name)}-{version}-*.whl"))
    if len(matches) != 1:
        raise LookupError(f"expected one wheel {name} {version} in {directory}, found {matches}")
    return matches[0]


@dataclass(frozen=True)
class VariantIndexes:
    """Per-variant ``file://`` indexes under one root."""

    root: Path
    url_template: str  # "file:///.../{variant}/simple"
    variants: tuple[str, ...]

    def url(self, variant: str) -> str:
        return self.url_template.format(variant=variant)

    def simple_dir(self, variant: str) -> Path:
        return self.root / variant / "simple"

    @property
    def pypi_url(self) -> str:
        return self.url(PYPI)


@dataclass(frozen=True)
class ServedIndexes:
    """The variant tree served over HTTP (a private copy: safe to ``add_to_index``)."""

    server: IndexServer
    root: Path
    url_template: str  # "http://127.0.0.1:PORT/{variant}/simple"
    variants: tuple[str, ...]

    def url(self, variant: str) -> str:
        return self.url_template.format(variant=variant)

    @property
    def pypi_url(self) -> str:
        return self.url(PYPI)

    @property
    def downloads(self) -> dict[str, int]:
        """Live GET counts per file name (wheels and ``.metadata`` files)."""
        return self.server.downloads

    @property
    def requests(self) -> list[str]:
        return self.server.requests


@pytest.fixture(scope="session")
def fake_wheel_families(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """Every catalogue wheel, grouped by family: ``{"cu128": [torch, torchvision, runtime], ...}``."""
    return build_catalogue(tmp_path_factory.mktemp("fake-wheels"))


@pytest.fixture(scope="session")
def fake_wheels(fake_wheel_families: dict[str, list[Path]]) -> Path:
    """Flat directory holding every catalogue wheel (usable as ``--find-links``)."""
    return next(iter(fake_wheel_families.values()))[0].parent


@pytest.fixture(scope="session")
def torch_index(fake_wheels: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """``file://`` simple index URL over *all* catalogue wheels (every variant + PyPI family)."""
    root = tmp_path_factory.mktemp("all-index")
    return file_url(write_simple_index(root, sorted(fake_wheels.glob("*.whl"))))


@pytest.fixture(scope="session")
def variant_indexes(
    fake_wheel_families: dict[str, list[Path]], tmp_path_factory: pytest.TempPathFactory
) -> VariantIndexes:
    """Read-only tree ``<root>/<variant>/simple`` (+ ``<root>/pypi/simple``) as ``file://`` URLs."""
    root = write_index_tree(tmp_path_factory.mktemp("variant-indexes"), fake_wheel_families)
    return VariantIndexes(root=root, url_template=file_url(root) + "/{variant}/simple", variants=VARIANTS)


@pytest.fixture(scope="session")
def pypi_like_index(variant_indexes: VariantIndexes) -> str:
    """``file://`` URL of the PyPI-like simple index (plain packages + torch 2.5.1)."""
    return variant_indexes.pypi_url


@contextlib.contextmanager
def _served_copy(variant_indexes: VariantIndexes, root: Path) -> Iterator[ServedIndexes]:
    shutil.copytree(variant_indexes.root, root)
    with serve_index(root) as server:
        yield ServedIndexes(
            server=server,
            root=root,
            url_template=server.base_url + "/{variant}/simple",
            variants=VARIANTS,
        )


@pytest.fixture
def served_indexes(variant_indexes: VariantIndexes, tmp_path: Path) -> Iterator[ServedIndexes]:
    """A fresh copy of the variant tree served on ``http://127.0.0.1:PORT/{variant}/simple``."""
    with _served_copy(variant_indexes, tmp_path / "served-indexes") as served:
        yield served


def fresh_installer_caches(directory: Path) -> dict[str, str]:
    """Private, empty pip, uv and poetry caches under ``directory``: what a test's installers fetch is
    fetched from its index (a cache filled by another test would hide a download)."""
    return {
        "PIP_CACHE_DIR": str(directory / "pip"),
        "UV_CACHE_DIR": str(directory / "uv"),
        "POETRY_CACHE_DIR": str(directory / "poetry"),
    }


@pytest.fixture
def installer_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """:func:`isolated_installer_env` with private, empty pip and uv caches for this test."""
    caches = tmp_path_factory.mktemp("installer-cache")
    env = isolated_installer_env(uv_cache_dir=caches / "uv")
    env["PIP_CACHE_DIR"] = str(caches / "pip")
    return env


@dataclass(frozen=True)
class CpuBaseStore:
    """A store (``home``) holding a CPU base (torch 2.9.1+cpu, built by pip from ``served``), the
    variant tree served over HTTP, and the environment the base was built with (``build_env``)."""

    home: Path
    served: ServedIndexes
    build_env: dict[str, str]


@pytest.fixture(scope="module")
def cpu_base_store(variant_indexes: VariantIndexes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CpuBaseStore]:
    """One built CPU base per test module: for tests about projects, which only read the base. A test
    that changes the base, or looks at the whole store (``doctor``, ``status``, the registry), needs
    its own store. Give each test :func:`fresh_installer_caches` and reset ``served.server`` first."""
    root = tmp_path_factory.mktemp("cpu-base-store")
    with _served_copy(variant_indexes, root / "served-indexes") as served:
        installers = {**isolated_installer_env(), **fresh_installer_caches(root / "build-caches"),
                      "PIP_INDEX_URL": served.pypi_url}
        for name in ("CUDA_VISIBLE_DEVICES", "PYTORCH_FORCE_NIGHTLY", "PYTORCH_FORCE_STABLE"):
            installers.pop(name, None)  # as tests/conftest.py clears them for every test
        env = layerenv_env(root / "home", base_env=installers, machine="no-gpu",
                           extra={"LAYERENV_INDEX_URL": served.url_template})
        built = run_layerenv(["base"], env, root)
        assert built.returncode == 0, built.stderr
        yield CpuBaseStore(home=root / "home", served=served, build_env=env)


@pytest.fixture
def driver_upgrade_env(tmp_path: Path, installer_env: dict[str, str], served_indexes: ServedIndexes):  # type: ignore[no-untyped-def]
    """``make(machine)``: an environment for one store, served cu129 (2.9.1) and cu132 (2.15.0) torch
    builds, project packages from the PyPI-like index (pip and uv), uv as installer; replay e.g.
    ``rtx5090-570`` then ``rtx5090-580`` for a driver upgrade."""
    cu132 = build_fake_torch(tmp_path / "wheels", "2.15.0+cu132", cuda="13.2")
    add_to_index(served_indexes.root / "cu132", [cu132])

    def make(machine: str) -> dict[str, str]:
        return layerenv_env(
            tmp_path / "home",
            base_env={
                **installer_env,
                "PIP_INDEX_URL": served_indexes.pypi_url,
                "UV_INDEX_URL": served_indexes.pypi_url,
            },
            machine=machine,
            extra={"LAYERENV_INDEX_URL": served_indexes.url_template, "LAYERENV_INSTALLER": "uv"},
        )

    return make


def caps_torch_project(tmp_path: Path, served_indexes: ServedIndexes, driver_upgrade_env) -> tuple[Path, dict[str, str], dict[str, str]]:  # type: ignore[no-untyped-def]
    """A project needing ``caps-torch`` (1.0 wants torch<2.10, 2.0 wants torch>=2.10), made on the
    replayed RTX 5090 with driver 570 (torch 2.9.1); (project, that environment, the one after the
    upgrade to driver 580, where the move to torch 2.15 must reinstall caps-torch)."""
    wheels = tmp_path / "caps"
    add_to_index(served_indexes.root / "pypi", [build_plain_package(wheels, "caps-torch", "1.0", ("torch<2.10",)),
                                                build_plain_package(wheels, "caps-torch", "2.0", ("torch>=2.10",))])
    old_env, new_env = driver_upgrade_env("rtx5090-570"), driver_upgrade_env("rtx5090-580")
    project = tmp_path / "gamma"
    project.mkdir()
    (project / "requirements.txt").write_text("caps-torch\n")
    made = run_layerenv(["project", str(project)], old_env, tmp_path)
    assert made.returncode == 0, made.stderr
    return project, old_env, new_env
