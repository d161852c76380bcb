"""Compiled torch extensions: found from their ELF headers, recorded with the torch they were built
against, flagged by doctor when the base's torch is another, and moved by rebase (reinstalled or
rebuilt) or left where they work."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from layerenv.project.extensions import (
    base_exports,
    find_extensions,
    label_torch,
    record_extensions,
    stale_reason,
)
from layerenv.venv.elf import is_torch_symbol, read_links
from tests.support.native import (
    CORE,
    CURRENT,
    LEGACY,
    compile_shared,
    compiler,
    extension_source,
    libc10_source,
    loader_module,
)
from tests.support.wheels import build_fake_torch, build_wheel

needs_compiler = pytest.mark.skipif(compiler() is None, reason="no C compiler (gcc/cc) to build test extensions")


@dataclass(frozen=True)
class Native:
    """Everything compiled once per session."""

    old_libc10: Path  # exports c10::legacy and c10::core
    new_libc10: Path  # exports c10::core and c10::current
    old_ext: Path  # needs c10::legacy
    new_ext: Path  # needs c10::current
    plain: Path  # a shared object linking nothing of torch
    wheels: Path

    def torch(self, version: str, cuda: str) -> Path:
        """A fake torch wheel carrying the old (2.9) or new libc10."""
        library = self.old_libc10 if version.startswith("2.9") else self.new_libc10
        return build_fake_torch(self.wheels / version, version, cuda=cuda,
                                extra_files={"torch/lib/libc10.so": library.read_bytes()})

    def extension(self, name: str, version: str, obj: Path) -> Path:
        module = name.replace("-", "_")
        return build_wheel(self.wheels / version, name, version,
                           {f"{module}/__init__.py": loader_module("_ext.so"), f"{module}/_ext.so": obj.read_bytes()},
                           python_tag="cp311", abi_tag="cp311", platform_tag="linux_x86_64")


@pytest.fixture(scope="session")
def native(tmp_path_factory: pytest.TempPathFactory) -> Native:
    if compiler() is None:
        pytest.skip("no C compiler (gcc/cc) to build test extensions")
    root = tmp_path_factory.mktemp("native")
    old = compile_shared(root / "old" / "libc10.so", libc10_source({LEGACY: 29, CORE: 1}))
    new = compile_shared(root / "new" / "libc10.so", libc10_source({CORE: 1, CURRENT: 215}))
    return Native(
        old, new,
        compile_shared(root / "old_ext.so", extension_source(LEGACY), link_dir=old.parent, libraries=("c10",)),
        compile_shared(root / "new_ext.so", extension_source(CURRENT), link_dir=new.parent, libraries=("c10",)),
        compile_shared(root / "plain.so", "int plain(void) { return 0; }\n"),
        root / "wheels",
    )


def fake_venv(root: Path, wheels: list[Path]) -> Path:
    """A venv-shaped folder with ``wheels`` unpacked into its site-packages (no installer: a unit test)."""
    site = root / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (root / "pyvenv.cfg").write_text("version_info = 3.11.7\n")
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(site)
    return root


@needs_compiler
def test_elf_reader_names_the_libraries_and_symbols_an_object_links(native: Native) -> None:
    links = read_links(native.old_ext)
    assert links is not None
    assert links.needed == ("libc10.so",)
    assert LEGACY in links.undefined and "answer" in links.defined
    exports = read_links(native.old_libc10)
    assert exports is not None and {LEGACY, CORE} <= exports.defined and LEGACY not in exports.undefined
    assert read_links(native.plain) is not None and not read_links(native.plain).needed  # type: ignore[union-attr]
    assert read_links(native.wheels.parent / "missing.so") is None


def test_elf_reader_refuses_what_is_no_elf(tmp_path: Path) -> None:
    for name, data in (("text.so", b"not an object"), ("short.so", b"\x7fELF\x02\x01"),
                       ("garbled.so", b"\x7fELF\x02\x01" + b"\xff" * 120)):
        (tmp_path / name).write_bytes(data)
        assert read_links(tmp_path / name) is None, name


def test_torch_symbols_are_c10_at_and_torch_names() -> None:
    assert all(map(is_torch_symbol, [LEGACY, "_ZNK3c1010TensorImpl4sizeEv", "_ZN2at6native3addEv",
                                     "_ZN5torch8autograd4gradEv", "_ZTVN3c1011StorageImplE"]))
    assert not any(map(is_torch_symbol, ["answer", "_ZNSt6vectorIiE", "_ZN3foo3c10Ev", "malloc"]))


def test_version_labels_name_the_torch_a_wheel_was_built_for() -> None:
    assert label_torch("2.1.2+pt21cu121") == ("2.1", "cu121")
    assert label_torch("1.0+pt215cu132") == ("2.15", "cu132")
    assert label_torch("0.6.18+pt29cpu") == ("2.9", "cpu")
    assert label_torch("1.0") is None and label_torch("1.0+cu121") is None


@needs_compiler
def test_extensions_are_found_recorded_and_judged(native: Native, tmp_path: Path) -> None:
    plain_so = build_wheel(tmp_path / "w", "has-plain-so", "1.0", {"has_plain_so/_x.so": native.plain.read_bytes()})
    venv = fake_venv(tmp_path / "venv", [native.extension("scatterx", "1.0", native.old_ext), plain_so,
                                         build_wheel(tmp_path / "w", "pure", "1.0", {"pure/__init__.py": ""})])
    found = find_extensions(venv, {})
    assert [(e.name, e.objects, e.built_against, e.symbols) for e in found] == [
        ("scatterx", ("scatterx/_ext.so",), None, frozenset({LEGACY}))]

    state = record_extensions({"base_id": "old"}, venv, "2.9.1+cu129")
    assert state["base_id"] == "old" and state["extensions"]["scatterx"]["torch"] == "2.9.1+cu129"
    assert sorted(state["scanned"]) == ["has_plain_so-1.0.dist-info", "pure-1.0.dist-info"]
    again = find_extensions(venv, json.loads(json.dumps(state)))
    assert [(e.name, e.built_against) for e in again] == [("scatterx", "2.9.1+cu129")]

    assert stale_reason(again[0], "2.9.1+cu129", None) is None
    assert stale_reason(again[0], "2.15.0+cu132", None) == (
        "scatterx 1.0 was built for torch 2.9.1+cu129, the base has torch 2.15.0+cu132")
    new_exports = base_exports(fake_venv(tmp_path / "base", [native.torch("2.15.0+cu132", "13.2")])
                               / "lib" / "python3.11" / "site-packages")
    assert new_exports == frozenset({CORE, CURRENT})
    # not recorded (installed by hand): its symbols decide
    assert stale_reason(found[0], "2.15.0+cu132", new_exports) == (
        f"scatterx 1.0 needs {LEGACY}, which the base's torch 2.15.0+cu132 libraries no longer export")
    assert stale_reason(found[0], "2.15.0+cu132", frozenset({LEGACY})) is None

    # reinstalled (its RECORD changed): read again, and the torch it was recorded with is kept for the same version
    record = venv / "lib" / "python3.11" / "site-packages" / "scatterx-1.0.dist-info" / "RECORD"
    record.write_text(record.read_text() + "\n")
    assert [e.built_against for e in find_extensions(venv, state)] == ["2.9.1+cu129"]


@needs_compiler
def test_a_version_label_wins_over_the_record(native: Native, tmp_path: Path) -> None:
    venv = fake_venv(tmp_path / "venv", [native.extension("scatterx", "1.0+pt29cu129", native.old_ext)])
    state = record_extensions({}, venv, "2.15.0+cu132")  # installed by pin onto a newer base
    found = find_extensions(venv, state)
    assert stale_reason(found[0], "2.15.0+cu132", None) == (
        "scatterx 1.0+pt29cu129 was built for torch 2.9 cu129, the base has torch 2.15.0+cu132")
    assert stale_reason(found[0], "2.9.1+cu129", None) is None
