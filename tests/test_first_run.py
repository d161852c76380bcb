"""The first run on a machine that cannot reach PyTorch's index: what would work here, found fast."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerenv.base.adoptable import candidate_prefixes, find_adoptable, torch_version_in
from layerenv.choice.decide import Policy, choose
from layerenv.choice.detection import Detection
from layerenv.choice.table import load_matrix
from layerenv.installers.settings import offers_other_sources, read_installer_settings
from layerenv.machine.facts import ComputeCapability, Gpu, Machine

MATRIX = load_matrix()


def detection(driver: str | None, *capabilities: str) -> Detection:
    gpus = tuple(Gpu("nvidia", i, f"GPU {c}", ComputeCapability.parse(c)) for i, c in enumerate(capabilities))
    cuda = MATRIX.newest_cuda_for_driver(driver) if driver else None
    machine = Machine("linux", "x86_64", "3.12.3", gpus, driver, cuda)
    return Detection(machine, choose(machine, Policy(), MATRIX))


def torch_env(prefix: Path, version: str, python: str = "python3.12") -> Path:
    dist_info = prefix / "lib" / python / "site-packages" / f"torch-{version.split('+', maxsplit=1)[0]}.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n\nbody\n")
    return prefix


def test_torch_version_in_reads_the_dist_info(tmp_path: Path) -> None:
    assert torch_version_in(torch_env(tmp_path / "venv", "2.11.0+cu130")) == "2.11.0+cu130"
    assert torch_version_in(tmp_path) is None


@pytest.mark.parametrize(("requirement", "label"), [
    ("nvidia-cuda-runtime==13.0.96; platform_system == \"Linux\"", "+cu130"),
    ("nvidia-cuda-runtime-cu12==12.8.90; platform_system == \"Linux\" and platform_machine == \"x86_64\"", "+cu128"),
    ("cuda-toolkit[cublas,cudart]==13.0.2; platform_system == \"Linux\"", "+cu130"),
    ("filelock", ""),
])
def test_an_unlabelled_pypi_torch_is_named_by_the_cuda_it_requires(tmp_path: Path, requirement: str,
                                                                    label: str) -> None:
    """PyPI's Linux torch (the preinstalled /opt/torch/.venv of the H200 is one) has no label."""
    prefix = torch_env(tmp_path / "venv", "2.11.0")
    metadata = next(prefix.glob("lib/*/site-packages/torch-*.dist-info")) / "METADATA"
    metadata.write_text(f"Metadata-Version: 2.1\nName: torch\nVersion: 2.11.0\nRequires-Dist: {requirement}\n\nbody\n")
    assert torch_version_in(prefix) == f"2.11.0{label}"
    if label == "+cu130":
        (install,) = find_adoptable(detection("580.159.04", "9.0"), MATRIX, {}, tmp_path, [prefix])
        assert install.fits and install.suggestion().startswith(f"layerenv base --adopt {prefix} (torch 2.11.0+cu130")


def test_each_install_is_judged_against_this_machine(tmp_path: Path) -> None:
    places = [
        torch_env(tmp_path / "opt-torch", "2.11.0+cu130"),
        torch_env(tmp_path / "cpu-env", "2.13.0+cpu"),
        torch_env(tmp_path / "pypi-env", "2.15.0"),
        torch_env(tmp_path / "old-cuda", "2.9.1+cu130"),
    ]
    h100 = find_adoptable(detection("580.159.04", "9.0"), MATRIX, {}, tmp_path, places)
    assert [(i.prefix.name, i.fits) for i in h100] == [
        ("opt-torch", True), ("old-cuda", True), ("cpu-env", False), ("pypi-env", False)]
    assert h100[0].suggestion() == f"layerenv base --adopt {places[0]} (torch 2.11.0+cu130: fits this machine)"
    assert h100[2].why == "a CPU build on a machine with GPUs"
    assert h100[3].why.startswith("no variant label")

    pascal = {i.prefix.name: i for i in find_adoptable(detection("580.95.05", "6.1"), MATRIX, {}, tmp_path, places)}
    assert not pascal["opt-torch"].fits
    assert pascal["opt-torch"].why == "no kernels for GPU 0 GPU 6.1 (sm_61)"

    old_driver = {i.prefix.name: i for i in find_adoptable(detection("535.247.01", "9.0"), MATRIX, {}, tmp_path, places)}
    assert old_driver["opt-torch"].why == "cu130 needs a newer driver than 535.247.01"

    no_gpu = {i.prefix.name: i for i in find_adoptable(detection(None), MATRIX, {}, tmp_path, places)}
    assert (no_gpu["cpu-env"].fits, no_gpu["cpu-env"].why) == (True, "fits: no GPU here")


def test_the_usual_places_are_looked_at(tmp_path: Path) -> None:
    home = tmp_path / "home"
    conda_env = torch_env(home / "miniconda3" / "envs" / "ml", "2.11.0+cu130")
    project_venv = torch_env(home / "work" / ".venv", "2.13.0+cpu")
    wrapper_env = torch_env(home / ".virtualenvs" / "lab", "2.9.1+cu128")
    places = candidate_prefixes({}, home)
    assert {conda_env, project_venv, wrapper_env} <= set(places)
    assert len(places) == len(set(places))


def test_installer_settings_come_with_their_source_and_no_credentials(tmp_path: Path) -> None:
    xdg = tmp_path / "xdg"
    (xdg / "pip").mkdir(parents=True)
    (xdg / "pip" / "pip.conf").write_text("[global]\nconstraint = /etc/caps.txt\n")
    home = tmp_path / "home"
    (home / ".config" / "pip").mkdir(parents=True)
    (home / ".config" / "pip" / "pip.conf").write_text(
        "[global]\nfind-links = /opt/wheels\nextra-index-url =\n  https://user:secret@mirror.example/simple\n")
    env = {"XDG_CONFIG_DIRS": str(xdg), "UV_INDEX_URL": "https://pypi.org/simple", "PIP_NO_INDEX": "1"}
    settings = read_installer_settings(env, home, prefix=tmp_path / "prefix")
    assert [s.describe() for s in settings] == [
        f"global.constraint = /etc/caps.txt ({xdg / 'pip' / 'pip.conf'})",
        f"global.extra-index-url = https://***@mirror.example/simple ({home / '.config' / 'pip' / 'pip.conf'})",
        f"global.find-links = /opt/wheels ({home / '.config' / 'pip' / 'pip.conf'})",
        "PIP_NO_INDEX = 1 (environment)",
        "UV_INDEX_URL = https://pypi.org/simple (environment)",
    ]
    assert offers_other_sources(settings, "pip") is True
    assert offers_other_sources(settings, "uv") is False  # PyPI only: no labelled torch there
    assert offers_other_sources(read_installer_settings({"XDG_CONFIG_DIRS": str(tmp_path / "none")}, tmp_path / "h",
                                                        prefix=tmp_path), "pip") is False


def test_pip_config_file_devnull_means_no_pip_config_at_all(tmp_path: Path) -> None:
    import os

    from layerenv.installers.settings import pip_config_files

    assert pip_config_files({"PIP_CONFIG_FILE": os.devnull}, tmp_path) == []
    assert Path("/etc/pip.conf") in pip_config_files({}, tmp_path)
