"""Build small, valid, deterministic wheels for tests (standard library only).

Everything here writes real PEP 427 wheels that ``pip`` and ``uv`` install
without complaint.  Output is byte-for-byte deterministic: the same inputs
always give a wheel with the same sha256 (fixed zip timestamps, fixed
permissions, sorted entries, fixed compression).

The fake ``torch`` built by :func:`build_fake_torch` imports in a fraction of a
millisecond and answers the handful of questions a tool asks a real torch
(``__version__``, ``torch.version.cuda``/``hip``, ``torch.cuda.*``,
``torch.backends.mps``).  ``torch._fake is True`` tells it apart from a real
torch.  Its GPU behaviour is steered at *call time* by environment variables:

``FAKE_TORCH_CUDA_AVAILABLE=1``
    ``torch.cuda.is_available()`` returns True (never for a CPU-only build).
``FAKE_TORCH_DEVICE_COUNT``
    ``torch.cuda.device_count()`` when available (default 1; 0 when not).
``FAKE_TORCH_CAPABILITY``
    ``"9.0"`` -> ``get_device_capability()`` returns ``(9, 0)`` (default ``"9.0"``).
``FAKE_TORCH_DEVICE_NAME``
    what ``get_device_name()`` returns (default ``"NVIDIA Fake GPU"``).
``FAKE_TORCH_ARCH_LIST_NEEDS_GPU=1``
    make ``get_arch_list()`` behave like real torch: ``[]`` unless available.
    By default the fake returns its compiled arch list even without a GPU, so
    that verification code can be exercised on GPU-less machines.

As in real torch, ``get_device_capability()`` and ``get_device_name()`` raise
``RuntimeError`` when CUDA is not available.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import random
import re
import zipfile
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

__all__ = [
    "DEFAULT_CUDA_ARCHS",
    "DEFAULT_HIP_ARCHS",
    "build_fake_companion",
    "build_fake_torch",
    "build_plain_package",
    "build_wheel",
    "companion_module_path",
    "escape_name",
    "normalize_name",
    "parse_wheel_filename",
    "record_hash",
    "verify_wheel_record",
    "wheel_filename",
]

DEFAULT_CUDA_ARCHS: tuple[str, ...] = ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120")
DEFAULT_HIP_ARCHS: tuple[str, ...] = ("gfx900", "gfx90a", "gfx942", "gfx1100")

# 1980-01-01 is the earliest timestamp a zip file can hold.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_GENERATOR = "layerenv-tests-wheels (1.0)"


def normalize_name(name: str) -> str:
    """PEP 503 normalised project name: ``Foo_Bar.baz`` -> ``foo-bar-baz``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def escape_name(name: str) -> str:
    """Distribution name as it appears in wheel and ``.dist-info`` names."""
    return re.sub(r"[-_.]+", "_", name).lower()


def _escape_version(version: str) -> str:
    # A local label's '+' stays; a '-' would break the filename's fields.
    return version.replace("-", "_")


def wheel_filename(
    name: str,
    version: str,
    python_tag: str = "py3",
    abi_tag: str = "none",
    platform_tag: str = "any",
) -> str:
    """``torch``, ``2.9.1+cu128`` -> ``torch-2.9.1+cu128-py3-none-any.whl``."""
    return f"{escape_name(name)}-{_escape_version(version)}-{python_tag}-{abi_tag}-{platform_tag}.whl"


def parse_wheel_filename(filename: str) -> tuple[str, str, str]:
    """Return ``(escaped_name, version, "py-abi-plat")`` for a ``.whl`` file name."""
    stem = Path(filename).name
    if not stem.endswith(".whl"):
        raise ValueError(f"not a wheel file name: {filename!r}")
    parts = stem[: -len(".whl")].split("-")
    if len(parts) not in (5, 6):
        raise ValueError(f"malformed wheel file name: {filename!r}")
    return parts[0], parts[1], "-".join(parts[-3:])


def record_hash(data: bytes) -> str:
    """RECORD-style digest: ``sha256=`` + urlsafe base64 without padding."""
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _as_bytes(content: str | bytes) -> bytes:
    return content.encode("utf-8") if isinstance(content, str) else content


def _metadata_text(
    name: str,
    version: str,
    requires: Sequence[str],
    extra_metadata: Mapping[str, str | Sequence[str]],
) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    if not any(key.lower() == "summary" for key in extra_metadata):
        lines.append(f"Summary: Fake {name} package for layerenv tests")
    for key, value in extra_metadata.items():
        values = [value] if isinstance(value, str) else list(value)
        lines.extend(f"{key}: {item}" for item in values)
    lines.extend(f"Requires-Dist: {req}" for req in requires)
    return "\n".join(lines) + "\n"


def _wheel_text(python_tag: str, abi_tag: str, platform_tag: str) -> str:
    purelib = "true" if platform_tag == "any" else "false"
    lines = ["Wheel-Version: 1.0", f"Generator: {_GENERATOR}", f"Root-Is-Purelib: {purelib}"]
    # Compressed tag sets (py2.py3) expand to one Tag line each.
    for py in python_tag.split("."):
        for abi in abi_tag.split("."):
            for plat in platform_tag.split("."):
                lines.append(f"Tag: {py}-{abi}-{plat}")
    return "\n".join(lines) + "\n"


def build_wheel(
    dest_dir: Path,
    name: str,
    version: str,
    files: Mapping[str, str | bytes],
    *,
    requires: Sequence[str] = (),
    python_tag: str = "py3",
    abi_tag: str = "none",
    platform_tag: str = "any",
    extra_metadata: Mapping[str, str | Sequence[str]] | None = None,
    uncompressed: Collection[str] = (),
) -> Path:
    """Write a valid wheel into ``dest_dir`` and return its path.

    ``files`` maps archive paths (``pkg/__init__.py``) to contents; ``str``
    is written as UTF-8.  ``requires`` become ``Requires-Dist`` lines (PEP 508
    strings, markers allowed).  ``extra_metadata`` adds METADATA headers (a
    sequence value gives one line per item, e.g. ``Provides-Extra``).  Paths
    in ``uncompressed`` are stored rather than deflated (fast for big blobs).
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dist_info = f"{escape_name(name)}-{_escape_version(version)}.dist-info"
    for path in files:
        if path.startswith(("/", "\\")) or ".." in Path(path).parts:
            raise ValueError(f"unsafe path in wheel: {path!r}")
        if path.startswith(dist_info + "/") and path.rsplit("/", 1)[-1] in {"METADATA", "WHEEL", "RECORD"}:
            raise ValueError(f"{path!r} is generated by build_wheel")

    entries: list[tuple[str, bytes]] = sorted((path, _as_bytes(data)) for path, data in files.items())
    entries.append(
        (f"{dist_info}/METADATA", _metadata_text(name, version, requires, extra_metadata or {}).encode())
    )
    entries.append((f"{dist_info}/WHEEL", _wheel_text(python_tag, abi_tag, platform_tag).encode()))

    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for path, data in entries:
        writer.writerow([path, record_hash(data), str(len(data))])
    record_path = f"{dist_info}/RECORD"
    writer.writerow([record_path, "", ""])
    entries.append((record_path, record.getvalue().encode()))

    target = dest_dir / wheel_filename(name, version, python_tag, abi_tag, platform_tag)
    tmp = target.with_name(target.name + ".part")
    with zipfile.ZipFile(tmp, "w") as archive:
        for path, data in entries:
            info = zipfile.ZipInfo(path, date_time=_ZIP_EPOCH)
            info.external_attr = 0o100644 << 16  # regular file, rw-r--r--
            info.create_system = 3  # unix, so the mode above is honoured
            if path in uncompressed:
                info.compress_type = zipfile.ZIP_STORED
                archive.writestr(info, data)
            else:
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, data, compresslevel=6)
    tmp.replace(target)
    return target


def verify_wheel_record(wheel: Path) -> list[str]:
    """Check a wheel's RECORD against its contents; return a list of problems (empty = fine)."""
    problems: list[str] = []
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        records = [n for n in names if n.endswith(".dist-info/RECORD") and n.count("/") == 1]
        if len(records) != 1:
            return [f"expected exactly one RECORD, found {records}"]
        record_name = records[0]
        rows = list(csv.reader(io.StringIO(archive.read(record_name).decode("utf-8"))))
        listed: set[str] = set()
        for row in rows:
            if not row:
                continue
            path, digest, size = row
            listed.add(path)
            if path == record_name:
                if digest or size:
                    problems.append("RECORD's own line must have empty hash and size")
                continue
            if path not in names:
                problems.append(f"{path}: listed in RECORD but missing")
                continue
            data = archive.read(path)
            if digest != record_hash(data):
                problems.append(f"{path}: hash mismatch")
            if size != str(len(data)):
                problems.append(f"{path}: size mismatch")
        problems.extend(
            f"{n}: not listed in RECORD" for n in names if n not in listed and not n.endswith("/")
        )
    return problems


# --------------------------------------------------------------------------- fake torch

_TORCH_INIT = '''"""Fake torch for layerenv tests. Not PyTorch."""

from torch import version as version
from torch.version import __version__ as __version__
from torch import backends as backends
from torch import cuda as cuda

_fake = True


class _FakeTensor(list):
    """A list that looks a little like a 1-d tensor."""

    @property
    def shape(self):
        return (len(self),)

    device = "cpu"

    def tolist(self):
        return list(self)

    def sum(self):
        return sum(self)


def zeros(n):
    return _FakeTensor([0.0] * int(n))


def ones(n):
    return _FakeTensor([1.0] * int(n))


def matmul(a, b):
    return sum(x * y for x, y in zip(a, b))
'''

_TORCH_VERSION = '''"""Build information of this fake torch (mirrors torch/version.py)."""

from typing import Optional

__all__ = ["__version__", "debug", "cuda", "git_version", "hip", "xpu"]
__version__ = {version!r}
debug = False
cuda: Optional[str] = {cuda!r}
git_version = {git_version!r}
hip: Optional[str] = {hip!r}
xpu: Optional[str] = None
'''

_TORCH_CUDA = '''"""Fake torch.cuda, steered by FAKE_TORCH_* environment variables at call time."""

import os

from torch import version as _version

_ARCH_LIST = {arch_list!r}


def _compiled_with_gpu():
    return _version.cuda is not None or _version.hip is not None


def is_available():
    return _compiled_with_gpu() and os.environ.get("FAKE_TORCH_CUDA_AVAILABLE") == "1"


def device_count():
    if not is_available():
        return 0
    return int(os.environ.get("FAKE_TORCH_DEVICE_COUNT", "1"))


def get_arch_list():
    if os.environ.get("FAKE_TORCH_ARCH_LIST_NEEDS_GPU") == "1" and not is_available():
        return []
    return list(_ARCH_LIST)


def _require_gpu():
    if not _compiled_with_gpu():
        raise AssertionError("Torch not compiled with CUDA enabled")
    if not is_available():
        raise RuntimeError("No CUDA GPUs are available")


def get_device_capability(device=None):
    _require_gpu()
    major, _, minor = os.environ.get("FAKE_TORCH_CAPABILITY", "9.0").partition(".")
    return (int(major), int(minor or 0))


def get_device_name(device=None):
    _require_gpu()
    default = "AMD Fake GPU" if _version.hip is not None else "NVIDIA Fake GPU"
    return os.environ.get("FAKE_TORCH_DEVICE_NAME", default)


def current_device():
    _require_gpu()
    return 0
'''

_TORCH_BACKENDS = '''"""Fake torch.backends."""

from torch.backends import mps as mps
'''

_TORCH_MPS = '''"""Fake torch.backends.mps: never available."""


def is_available():
    return False


def is_built():
    return False
'''


def _payload(seed: str, size: int) -> bytes:
    generator = random.Random(seed)
    chunk = 16 * 1024 * 1024  # randbytes() overflows past 256 MB in one call
    return b"".join(generator.randbytes(min(chunk, size - start)) for start in range(0, size, chunk))


def build_fake_torch(
    dest_dir: Path,
    version: str = "2.9.1+cu128",
    *,
    cuda: str | None = "12.8",
    hip: str | None = None,
    arch_list: Sequence[str] | None = None,
    requires: Sequence[str] = (),
    payload_bytes: int = 0,
    dist_version: str | None = None,
    python_tag: str = "py3",
    abi_tag: str = "none",
    platform_tag: str = "any",
    extra_files: Mapping[str, str | bytes] | None = None,
) -> Path:
    """Build a fake ``torch`` wheel; ``torch.__version__ == version``; ``extra_files`` adds files
    (e.g. a compiled ``torch/lib/libc10.so``).

    The wheel's distribution version is ``dist_version or version`` (PyPI's
    torch is dist ``2.11.0`` while reporting ``2.11.0+cu130``).
    ``arch_list=None`` means :data:`DEFAULT_CUDA_ARCHS` for a CUDA build,
    :data:`DEFAULT_HIP_ARCHS` for a ROCm build and ``[]`` for a CPU build.
    ``payload_bytes`` adds ``torch/lib/libfake_payload.so`` of that many
    deterministic pseudo-random bytes (stored uncompressed).
    """
    if arch_list is None:
        arch_list = DEFAULT_CUDA_ARCHS if cuda else DEFAULT_HIP_ARCHS if hip else ()
    git_version = hashlib.sha1(f"fake-torch {version}".encode()).hexdigest()
    files: dict[str, str | bytes] = {
        "torch/__init__.py": _TORCH_INIT,
        "torch/version.py": _TORCH_VERSION.format(
            version=version, cuda=cuda, hip=hip, git_version=git_version
        ),
        "torch/cuda/__init__.py": _TORCH_CUDA.format(arch_list=list(arch_list)),
        "torch/backends/__init__.py": _TORCH_BACKENDS,
        "torch/backends/mps/__init__.py": _TORCH_MPS,
    }
    files.update(extra_files or {})
    payload_path = "torch/lib/libfake_payload.so"
    if payload_bytes > 0:
        files[payload_path] = _payload(f"torch-{version}", payload_bytes)
    return build_wheel(
        dest_dir,
        "torch",
        dist_version or version,
        files,
        requires=requires,
        python_tag=python_tag,
        abi_tag=abi_tag,
        platform_tag=platform_tag,
        extra_metadata={"Requires-Python": ">=3.9"},
        uncompressed={payload_path},
    )


# --------------------------------------------------------------------------- companions


def companion_module_path(name: str) -> str:
    """Import path a companion wheel provides.

    ``torchvision`` -> ``torchvision``; ``nvidia-cuda-runtime-cu12`` ->
    ``nvidia.cuda_runtime`` (``nvidia`` is a namespace package, as in the
    real NVIDIA wheels, so several of them can be installed together).
    """
    norm = normalize_name(name)
    if norm.startswith("nvidia-"):
        rest = re.sub(r"-cu\d+$", "", norm[len("nvidia-") :])
        return "nvidia." + rest.replace("-", "_")
    return norm.replace("-", "_")


def _module_files(module: str, name: str, version: str, extra_body: str = "") -> dict[str, str | bytes]:
    init = (
        f'"""Fake {name} {version} for layerenv tests."""\n\n'
        f"__version__ = {version!r}\n"
        "_fake = True\n"
        f"{extra_body}"
    )
    return {module.replace(".", "/") + "/__init__.py": init}


def build_fake_companion(
    dest_dir: Path,
    name: str,
    version: str,
    requires: Sequence[str] = (),
    *,
    payload_bytes: int = 0,
    python_tag: str = "py3",
    abi_tag: str = "none",
    platform_tag: str = "any",
) -> Path:
    """Build an importable companion (``torchvision``, ``triton``, ``nvidia-*``...).

    The module (see :func:`companion_module_path`) has ``__version__ ==
    version`` and ``_fake = True``; its ``__file__`` shows where it loaded from.
    """
    module = companion_module_path(name)
    files = _module_files(module, name, version)
    payload_path = module.replace(".", "/") + "/lib/libfake_payload.so"
    if payload_bytes > 0:
        files[payload_path] = _payload(f"{name}-{version}", payload_bytes)
    return build_wheel(
        dest_dir,
        name,
        version,
        files,
        requires=requires,
        python_tag=python_tag,
        abi_tag=abi_tag,
        platform_tag=platform_tag,
        uncompressed={payload_path},
    )


def build_plain_package(
    dest_dir: Path,
    name: str,
    version: str,
    requires: Sequence[str] = (),
) -> Path:
    """Build an ordinary pure-Python package (module = name with ``-`` -> ``_``)."""
    module = normalize_name(name).replace("-", "_")
    return build_wheel(dest_dir, name, version, _module_files(module, name, version), requires=requires)
