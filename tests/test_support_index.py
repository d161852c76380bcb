"""The test-support wheels and indexes work with the real pip and uv."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from tests.support.index import (
    add_to_index,
    file_url,
    isolated_installer_env,
    serve_index,
    write_find_links_dir,
    write_simple_index,
)
from tests.support.pytest_fixtures import (
    TORCH_BUILDS,
    VARIANTS,
    ServedIndexes,
    VariantIndexes,
    fake_wheel_families,
    fake_wheels,
    installer_env,
    pypi_like_index,
    served_indexes,
    torch_index,
    variant_indexes,
    wheel_path,
)
from tests.support.wheels import (
    build_fake_companion,
    build_fake_torch,
    build_plain_package,
    build_wheel,
    record_hash,
    verify_wheel_record,
)

__all__ = [  # fixtures imported for pytest
    "fake_wheel_families",
    "fake_wheels",
    "installer_env",
    "pypi_like_index",
    "served_indexes",
    "torch_index",
    "variant_indexes",
]

pytestmark = pytest.mark.slow  # runs the real pip and uv

_PROBE = """
import importlib.metadata, json, torch
out = {
    "fake": torch._fake,
    "version": torch.__version__,
    "dist_version": importlib.metadata.version("torch"),
    "cuda": torch.version.cuda,
    "hip": torch.version.hip,
    "available": torch.cuda.is_available(),
    "count": torch.cuda.device_count(),
    "archs": torch.cuda.get_arch_list(),
    "mps": torch.backends.mps.is_available(),
    "file": torch.__file__,
}
if out["available"]:
    out["capability"] = list(torch.cuda.get_device_capability(0))
    out["name"] = torch.cuda.get_device_name(0)
print(json.dumps(out))
"""


def _tool(name: str) -> str:
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which(name, path=path)
    if found is None:
        pytest.fail(f"{name} not found next to {sys.executable} or on PATH")
    return found


def _run(args: Sequence[str | Path], env: Mapping[str, str]) -> str:
    proc = subprocess.run([str(a) for a in args], env=dict(env), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _venv(where: Path, env: Mapping[str, str]) -> Path:
    _run([sys.executable, "-m", "venv", "--without-pip", where], env)
    return where / "bin" / "python"


def _probe(python: Path, env: Mapping[str, str], **extra: str) -> dict[str, object]:
    probe_env = {k: v for k, v in env.items() if not k.startswith("FAKE_TORCH_")}
    probe_env.update(extra)
    result: dict[str, object] = json.loads(_run([python, "-c", _PROBE], probe_env))
    return result


def _pip_install(python: Path, env: Mapping[str, str], *args: str) -> str:
    return _run([_tool("pip"), "--python", python, "install", "--no-cache-dir", *args], env)


def _uv_install(python: Path, env: Mapping[str, str], *args: str) -> str:
    return _run([_tool("uv"), "pip", "install", "--no-cache", "--python", python, *args], env)


# --------------------------------------------------------------------------- wheels


def test_build_wheel_is_valid_and_deterministic(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {
        "demo_pkg/__init__.py": "X = 1\n",
        "demo_pkg/data,with,commas.bin": b"\x00\x01",
    }
    first = build_wheel(tmp_path / "a", "Demo.Pkg", "1.0+local", files, requires=["plain-lib>=1"])
    second = build_wheel(tmp_path / "b", "Demo.Pkg", "1.0+local", files, requires=["plain-lib>=1"])
    assert first.name == "demo_pkg-1.0+local-py3-none-any.whl"
    assert hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(second.read_bytes()).digest()
    assert verify_wheel_record(first) == []
    with zipfile.ZipFile(first) as archive:
        metadata = archive.read("demo_pkg-1.0+local.dist-info/METADATA").decode()
        wheel_meta = archive.read("demo_pkg-1.0+local.dist-info/WHEEL").decode()
        record = archive.read("demo_pkg-1.0+local.dist-info/RECORD").decode().splitlines()
        assert all(info.date_time == (1980, 1, 1, 0, 0, 0) for info in archive.infolist())
    assert "Metadata-Version: 2.1\nName: Demo.Pkg\nVersion: 1.0+local\n" in metadata
    assert "Requires-Dist: plain-lib>=1" in metadata
    assert "Tag: py3-none-any" in wheel_meta
    init_hash = record_hash(b"X = 1\n")
    assert f"demo_pkg/__init__.py,{init_hash},6" in record
    assert record[-1] == "demo_pkg-1.0+local.dist-info/RECORD,,"


def test_fake_wheels_catalogue_records_verify(fake_wheels: Path) -> None:
    wheels = sorted(fake_wheels.glob("*.whl"))
    assert {w.name for w in wheels} >= {
        "torch-2.9.1+cu128-py3-none-any.whl",
        "torch-2.9.1+cu126-py3-none-any.whl",
        "torch-2.9.1+cpu-py3-none-any.whl",
        "torch-2.11.0+cu130-py3-none-any.whl",
        "torch-2.5.1+cu124-py3-none-any.whl",
        "torch-2.5.1-py3-none-any.whl",
        "torchvision-0.24.1+cu128-py3-none-any.whl",
        "needs_torch-1.0-py3-none-any.whl",
        "pins_old_torch-1.0-py3-none-any.whl",
        "plain_lib-1.0-py3-none-any.whl",
        "nvidia_cuda_runtime_cu12-12.8.90-py3-none-any.whl",
    }
    for wheel in wheels:
        assert verify_wheel_record(wheel) == [], wheel.name
    assert wheel_path(fake_wheels, "torch", "2.9.1+cu128").name == "torch-2.9.1+cu128-py3-none-any.whl"


def test_payload_bytes_and_record_tampering_detected(tmp_path: Path) -> None:
    wheel = build_fake_torch(tmp_path, payload_bytes=100_000)
    with zipfile.ZipFile(wheel) as archive:
        assert len(archive.read("torch/lib/libfake_payload.so")) == 100_000
    assert wheel.stat().st_size > 100_000  # stored, not compressed away
    tampered = tmp_path / "bad" / wheel.name
    tampered.parent.mkdir()
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tampered, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, b"# changed\n" if info.filename == "torch/version.py" else data)
    assert verify_wheel_record(tampered) == [
        "torch/version.py: hash mismatch",
        "torch/version.py: size mismatch",
    ]


def test_fake_torch_cpu_build_behaviour(fake_wheels: Path, tmp_path: Path) -> None:
    # A wheel is a zip: import it straight from sys.path, no install needed.
    cpu = wheel_path(fake_wheels, "torch", "2.9.1+cpu")
    env = isolated_installer_env()
    env["PYTHONPATH"] = str(cpu)
    script = (
        "import json, torch; print(json.dumps([torch.__version__, torch.version.cuda,"
        " torch.cuda.is_available(), torch.cuda.device_count(), torch.cuda.get_arch_list()]))"
    )
    env["FAKE_TORCH_CUDA_AVAILABLE"] = "1"  # a CPU build never sees a GPU
    assert json.loads(_run([sys.executable, "-c", script], env)) == ["2.9.1+cpu", None, False, 0, []]


# --------------------------------------------------------------------------- pip


def test_isolated_env_hides_machine_pip_config() -> None:
    env = isolated_installer_env(
        {"PATH": os.environ.get("PATH", ""), "PIP_FIND_LINKS": "/opt/x", "UV_INDEX": "y"}
    )
    assert "PIP_FIND_LINKS" not in env
    assert "UV_INDEX" not in env
    assert env["PIP_CONFIG_FILE"] == os.devnull
    assert env["UV_NO_CONFIG"] == "1"
    listed = _run([_tool("pip"), "config", "list"], env)
    for leaked in ("constraint", "find-links", "extra-index-url", "index-url"):
        assert leaked not in listed, listed


def test_pip_installs_fake_torch_from_file_index(
    torch_index: str, tmp_path: Path, installer_env: dict[str, str]
) -> None:
    python = _venv(tmp_path / "venv", installer_env)
    out = _pip_install(python, installer_env, "--index-url", torch_index, "torch==2.9.1+cu128")
    assert "Successfully installed" in out
    info = _probe(python, installer_env)
    assert info["fake"] is True
    assert info["version"] == "2.9.1+cu128"
    assert info["dist_version"] == "2.9.1+cu128"
    assert info["cuda"] == "12.8"
    assert info["hip"] is None
    assert info["archs"] == ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]
    assert info["available"] is False
    assert info["count"] == 0
    assert info["mps"] is False
    assert str(info["file"]).startswith(str(tmp_path / "venv"))
    # The runtime dependency came along, as an nvidia.* namespace package.
    runtime = _run([python, "-c", "import nvidia.cuda_runtime as m; print(m.__version__)"], installer_env)
    assert runtime.strip() == "12.8.90"


def test_pip_over_http_counts_one_download(
    served_indexes: ServedIndexes, tmp_path: Path, installer_env: dict[str, str]
) -> None:
    python = _venv(tmp_path / "venv", installer_env)
    _pip_install(python, installer_env, "--index-url", served_indexes.url("cu126"), "torchvision")
    assert _probe(python, installer_env)["version"] == "2.9.1+cu126"
    downloads = served_indexes.server.wheel_downloads()
    assert downloads == {
        "torch-2.9.1+cu126-py3-none-any.whl": 1,
        "torchvision-0.24.1+cu126-py3-none-any.whl": 1,
        "nvidia_cuda_runtime_cu12-12.6.77-py3-none-any.whl": 1,
    }
    assert "/cu126/simple/torch/" in served_indexes.requests


def test_split_dist_version_installs_as_plain_version(tmp_path: Path, installer_env: dict[str, str]) -> None:
    wheel = build_fake_torch(tmp_path / "wheels", "2.11.0+cu130", cuda="13.0", dist_version="2.11.0")
    assert wheel.name == "torch-2.11.0-py3-none-any.whl"
    simple = write_simple_index(tmp_path / "pypi", [wheel])
    python = _venv(tmp_path / "venv", installer_env)
    _pip_install(python, installer_env, "--index-url", file_url(simple), "torch==2.11.0")
    info = _probe(python, installer_env)
    assert info["dist_version"] == "2.11.0"
    assert info["version"] == "2.11.0+cu130"
    assert info["cuda"] == "13.0"


def test_pip_find_links_dir(tmp_path: Path, installer_env: dict[str, str]) -> None:
    wheels = [
        build_plain_package(tmp_path / "w", "plain-lib", "1.0"),
        build_plain_package(tmp_path / "w", "needs-plain", "2.0", ("plain-lib==1.0",)),
    ]
    links = write_find_links_dir(tmp_path / "links", wheels)
    python = _venv(tmp_path / "venv", installer_env)
    _pip_install(python, installer_env, "--no-index", "--find-links", str(links), "needs-plain")
    out = _run(
        [
            python,
            "-c",
            "import needs_plain, plain_lib; print(needs_plain.__version__, plain_lib.__version__)",
        ],
        installer_env,
    )
    assert out.split() == ["2.0", "1.0"]


# --------------------------------------------------------------------------- uv


def test_uv_installs_fake_torch_over_http_once(
    served_indexes: ServedIndexes, tmp_path: Path, installer_env: dict[str, str]
) -> None:
    python = _venv(tmp_path / "venv", installer_env)
    _uv_install(python, installer_env, "--index-url", served_indexes.url("cu128"), "torch==2.9.1+cu128")
    assert served_indexes.downloads["torch-2.9.1+cu128-py3-none-any.whl"] == 1
    info = _probe(
        python,
        installer_env,
        FAKE_TORCH_CUDA_AVAILABLE="1",
        FAKE_TORCH_DEVICE_COUNT="2",
        FAKE_TORCH_CAPABILITY="12.0",
    )
    assert info["version"] == "2.9.1+cu128"
    assert info["cuda"] == "12.8"
    assert info["available"] is True
    assert info["count"] == 2
    assert info["capability"] == [12, 0]
    assert info["name"] == "NVIDIA Fake GPU"
    assert info["archs"] == list(TORCH_BUILDS["cu128"].arch_list)
    # Real torch lists its archs only with a GPU; the fake can be told to do the same.
    assert _probe(python, installer_env, FAKE_TORCH_ARCH_LIST_NEEDS_GPU="1")["archs"] == []


def test_uv_installs_from_file_variant_index(
    variant_indexes: VariantIndexes, tmp_path: Path, installer_env: dict[str, str]
) -> None:
    assert variant_indexes.url("cu126") == file_url(variant_indexes.root) + "/cu126/simple"
    python = _venv(tmp_path / "venv", installer_env)
    _uv_install(python, installer_env, "--index-url", variant_indexes.url("cu126"), "torchvision")
    info = _probe(python, installer_env)
    assert info["version"] == "2.9.1+cu126"
    assert info["archs"] == list(TORCH_BUILDS["cu126"].arch_list)
    tv = _run(
        [python, "-c", "import torchvision; print(torchvision.__version__, torchvision.__file__)"],
        installer_env,
    )
    version, where = tv.split()
    assert version == "0.24.1+cu126"
    assert where.startswith(str(tmp_path / "venv"))


def test_uv_resolves_pypi_like_index(
    pypi_like_index: str, tmp_path: Path, installer_env: dict[str, str]
) -> None:
    python = _venv(tmp_path / "venv", installer_env)
    _uv_install(python, installer_env, "--index-url", pypi_like_index, "needs-torch", "plain-lib")
    info = _probe(python, installer_env)
    assert info["dist_version"] == "2.5.1"
    assert info["version"] == "2.5.1+cu124"
    assert info["cuda"] == "12.4"


def test_uv_sees_wheels_added_while_serving(
    served_indexes: ServedIndexes, tmp_path: Path, installer_env: dict[str, str]
) -> None:
    extra = [
        build_fake_torch(tmp_path / "new", "2.10.0+cu128", cuda="12.8"),
        build_fake_companion(tmp_path / "new", "triton", "3.5.0"),
    ]
    add_to_index(served_indexes.root / "cu128", extra)
    python = _venv(tmp_path / "venv", installer_env)
    _uv_install(
        python, installer_env, "--index-url", served_indexes.url("cu128"), "torch==2.10.0+cu128", "triton"
    )
    assert _probe(python, installer_env)["version"] == "2.10.0+cu128"
    assert served_indexes.server.download_count("torch-2.10.0+cu128-py3-none-any.whl") == 1
    assert served_indexes.server.download_count("torch-2.9.1+cu128-py3-none-any.whl") == 0


# --------------------------------------------------------------------------- server


def test_server_layout_redirects_and_content_types(served_indexes: ServedIndexes, tmp_path: Path) -> None:
    for variant in VARIANTS:
        with urllib.request.urlopen(served_indexes.url(variant) + "/torch") as response:  # no trailing slash
            assert response.url.endswith(f"/{variant}/simple/torch/")
            assert response.headers["Content-Type"].startswith("text/html")
            page = response.read().decode()
        version = TORCH_BUILDS[variant].torch_version.replace("+", "%2B")
        assert f'href="../../files/torch-{version}-py3-none-any.whl#sha256=' in page
    with urllib.request.urlopen(served_indexes.pypi_url + "/") as response:
        assert "needs-torch" in response.read().decode()
    wheel_url = f"{served_indexes.server.base_url}/cu128/files/torch-2.9.1%2Bcu128-py3-none-any.whl"
    with urllib.request.urlopen(wheel_url) as response:
        assert response.headers["Content-Type"] == "application/octet-stream"
        (tmp_path / "got.whl").write_bytes(response.read())
    assert verify_wheel_record(tmp_path / "got.whl") == []
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(served_indexes.server.base_url + "/cu128/files/")
    assert missing.value.code == 404
    assert served_indexes.downloads["torch-2.9.1+cu128-py3-none-any.whl"] == 1


def test_serve_index_single_tree(tmp_path: Path) -> None:
    root = tmp_path / "idx"
    write_simple_index(root, [build_plain_package(tmp_path / "w", "plain-lib", "1.0")])
    with serve_index(root) as server:
        assert server.url.startswith("http://127.0.0.1:") and server.url.endswith("/simple")
        with urllib.request.urlopen(server.url + "/") as response:
            assert '<a href="plain-lib/">plain-lib</a>' in response.read().decode()
        assert server.requests == ["/simple/"]
    with pytest.raises(OSError):
        urllib.request.urlopen(server.url + "/", timeout=2)
