"""Tiny compiled torch "extensions" for tests, built with the system C compiler.

A fake ``libc10.so`` per fake torch release exports ``c10::`` symbols by their mangled names (C does
not mangle, so ``int _ZN3c106legacyEv(void)`` is ``c10::legacy()`` to the loader); an extension's
``.so`` needs one of them and links ``libc10.so`` (``DT_NEEDED``), as a real extension links libtorch.
Its Python module loads torch's ``libc10.so`` globally and then its own object with ``ctypes``, so a
symbol the base's torch no longer has fails the import the way a real stale extension does.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

LEGACY = "_ZN3c106legacyEv"  # c10::legacy(): only the old fake torch has it
CORE = "_ZN3c104coreEv"  # c10::core(): every fake torch has it
CURRENT = "_ZN3c107currentEv"  # c10::current(): only the new one


def compiler() -> str | None:
    return shutil.which("gcc") or shutil.which("cc")


def compile_shared(output: Path, source: str, *, link_dir: Path | None = None, libraries: tuple[str, ...] = (),
                   soname: str | None = None) -> Path:
    """Compile C ``source`` into the shared object ``output`` (with ``soname``, so an object needing
    that name finds it once it is loaded from any path, as torch's libraries are)."""
    cc = compiler()
    assert cc is not None
    output.parent.mkdir(parents=True, exist_ok=True)
    source_file = output.with_suffix(".c")
    source_file.write_text(source, encoding="utf-8")
    argv = [cc, "-shared", "-fPIC", "-o", str(output), str(source_file)]
    if soname is not None:
        argv.append(f"-Wl,-soname,{soname}")
    if link_dir is not None:
        argv += [f"-L{link_dir}", *(f"-l{name}" for name in libraries)]
    subprocess.run(argv, check=True, capture_output=True)
    source_file.unlink()
    return output


def libc10_source(symbols: dict[str, int]) -> str:
    return "".join(f"int {name}(void) {{ return {value}; }}\n" for name, value in symbols.items())


def extension_source(symbol: str) -> str:
    """An object whose ``answer()`` returns what ``symbol`` (from libc10) returns."""
    return f"int {symbol}(void);\nint answer(void) {{ return {symbol}(); }}\n"


def loader_module(object_name: str) -> str:
    """The extension's ``__init__.py``: torch's libc10 first (as ``import torch`` does), then its object."""
    return (
        "import ctypes, os\n"
        "import torch\n"
        "ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), 'lib', 'libc10.so'), mode=ctypes.RTLD_GLOBAL)\n"
        f"_lib = ctypes.CDLL(os.path.join(os.path.dirname(__file__), {object_name!r}))\n"
        "def answer():\n"
        "    return _lib.answer()\n"
    )


# A PEP 517/660 backend kept in the project (``backend-path``), standing in for setuptools'
# CUDAExtension: it compiles ``ops.c`` against the libc10 of the torch it imports (the base's, build
# isolation being off), writes that torch's version beside it, and fails when ``break-build`` exists.
EDITABLE_BACKEND = r'''
import base64, hashlib, os, subprocess, sys, zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
NAME, VERSION = "myops", "0.1"


def _compile():
    if (ROOT / "break-build").exists():
        raise SystemExit("myops: compiling ops.c failed (break-build)")
    import torch
    lib = Path(torch.__file__).parent / "lib"
    subprocess.run([os.environ.get("CC", "cc"), "-shared", "-fPIC", "-o", str(ROOT / "myops" / "_ops.so.part"),
                    str(ROOT / "ops.c"), f"-L{lib}", "-lc10"], check=True)
    os.replace(ROOT / "myops" / "_ops.so.part", ROOT / "myops" / "_ops.so")
    (ROOT / "built_with.txt").write_text(torch.__version__)


def _wheel(directory, files):
    dist_info = f"{NAME}-{VERSION}.dist-info"
    files = dict(files)
    files[f"{dist_info}/METADATA"] = f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\n"
    files[f"{dist_info}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: py3-none-any\n"
    rows = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        rows.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist_info}/RECORD"] = "\n".join(rows + [f"{dist_info}/RECORD,,"]) + "\n"
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(Path(directory) / name, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return name


def get_requires_for_build_wheel(config_settings=None):
    return []


get_requires_for_build_editable = get_requires_for_build_wheel


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    _compile()
    return _wheel(wheel_directory, {"_myops_editable.pth": str(ROOT) + "\n"})


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _compile()
    return _wheel(wheel_directory, {"myops/__init__.py": (ROOT / "myops" / "__init__.py").read_text()})
'''


def write_editable_project(root: Path) -> Path:
    """A project whose package ``myops`` compiles ``ops.c`` (needing c10::core) against the base's torch."""
    (root / "myops").mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        '[project]\nname = "myops"\nversion = "0.1"\n\n'
        '[build-system]\nrequires = ["torch"]\nbuild-backend = "backend"\nbackend-path = ["."]\n',
        encoding="utf-8",
    )
    (root / "backend.py").write_text(EDITABLE_BACKEND, encoding="utf-8")
    (root / "ops.c").write_text(extension_source(CORE), encoding="utf-8")
    (root / "myops" / "__init__.py").write_text(loader_module("_ops.so"), encoding="utf-8")
    return root
