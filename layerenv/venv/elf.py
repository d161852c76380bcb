"""What a shared object links against, read from its ELF headers without loading it.

A small reader of the two tables that matter here: the dynamic section's ``DT_NEEDED`` entries (the
libraries it asks the loader for) and the dynamic symbol table (the symbols it needs from them, and
the ones it exports). Standard library only; it reads the section headers and those sections, never
the whole file (a ``libtorch_cpu.so`` is hundreds of MB), and never imports or runs anything.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = ["ElfLinks", "is_torch_symbol", "read_links"]

_SHT_DYNAMIC, _SHT_DYNSYM = 6, 11
_DT_NULL, _DT_NEEDED = 0, 1
_STB_GLOBAL, _STB_WEAK = 1, 2
# c10::, at::, torch:: names as the Itanium C++ ABI mangles them (also their vtables and typeinfo)
_TORCH_SYMBOL = re.compile(r"^_Z(?:T[VIS])?N[KVRO]*(?:3c10|2at|5torch)")
_LONGEST_NAME = 4096  # a library name longer than this is cut (a soname is a few dozen bytes)
_MAX_TABLE = 256 * 1024 * 1024  # a section claiming more is a garbled header, not a table to read


@dataclass(frozen=True)
class ElfLinks:
    """The dynamic linking facts of one shared object."""

    needed: tuple[str, ...]  # DT_NEEDED, in order
    undefined: frozenset[str]  # symbols it needs from elsewhere
    defined: frozenset[str]  # global and weak symbols it exports


def is_torch_symbol(name: str) -> bool:
    """Whether ``name`` is a mangled ``c10::``/``at::``/``torch::`` symbol."""
    return _TORCH_SYMBOL.match(name) is not None


def _read_at(handle: BinaryIO, offset: int, size: int) -> bytes:
    if size < 0 or size > _MAX_TABLE:
        raise ValueError(f"a section of {size} bytes")
    handle.seek(offset)
    data = handle.read(size)
    if len(data) != size:
        raise ValueError("truncated")
    return data


def _string(table: bytes, offset: int) -> str:
    end = table.find(b"\0", offset)
    return table[offset : end if end >= 0 else len(table)].decode("utf-8", "replace")


def _string_in(handle: BinaryIO, sections: list[tuple[int, int, int, int]], link: int, at: int) -> str:
    """One name from a string table, read alone (a big library's table runs to megabytes)."""
    if not 0 <= link < len(sections):
        raise ValueError("a string table index out of range")
    _, offset, size, _ = sections[link]
    if not 0 <= at < size:
        raise ValueError("a name outside its string table")
    return _string(_read_at(handle, offset + at, min(_LONGEST_NAME, size - at)), 0)


def read_links(path: Path, *, symbols: bool = True) -> ElfLinks | None:
    """The object's needed libraries and dynamic symbols (without ``symbols``: its needed libraries only,
    a few small reads); None when it is not a readable ELF file."""
    try:
        with path.open("rb") as handle:
            return _parse(handle, symbols)
    except (OSError, ValueError, struct.error):
        return None


def _parse(handle: BinaryIO, symbols: bool) -> ElfLinks | None:
    ident = handle.read(64)
    if len(ident) < 52 or ident[:4] != b"\x7fELF" or ident[4] not in (1, 2) or ident[5] not in (1, 2):
        return None
    wide, order = ident[4] == 2, "<" if ident[5] == 1 else ">"
    if wide:
        shoff, = struct.unpack_from(order + "Q", ident, 0x28)
        shentsize, shnum = struct.unpack_from(order + "HH", ident, 0x3A)
        header, header_size = order + "IIQQQQIIQQ", 64
    else:
        shoff, = struct.unpack_from(order + "I", ident, 0x20)
        shentsize, shnum = struct.unpack_from(order + "HH", ident, 0x2E)
        header, header_size = order + "IIIIIIIIII", 40
    if shoff == 0 or shnum == 0 or shentsize < header_size:
        return None
    table = _read_at(handle, shoff, shentsize * shnum)
    # (type, offset, size, link) of each section
    sections = [(fields[1], fields[4], fields[5], fields[6]) for fields in
                (struct.unpack_from(header, table, index * shentsize) for index in range(shnum))]

    def strings_of(link: int) -> bytes:
        if not 0 <= link < len(sections):
            raise ValueError("a string table index out of range")
        _, offset, size, _ = sections[link]
        return _read_at(handle, offset, size)

    needed: list[str] = []
    undefined: set[str] = set()
    defined: set[str] = set()
    for kind, offset, size, link in sections:
        if kind == _SHT_DYNAMIC:
            data = _read_at(handle, offset, size)
            entry = order + ("qQ" if wide else "iI")
            wanted = []
            for tag, value in struct.iter_unpack(entry, data[: len(data) - len(data) % struct.calcsize(entry)]):
                if tag == _DT_NULL:
                    break
                if tag == _DT_NEEDED:
                    wanted.append(value)
            needed += [_string_in(handle, sections, link, at) for at in wanted]
        elif kind == _SHT_DYNSYM and symbols:
            names, data = strings_of(link), _read_at(handle, offset, size)
            entry = order + ("IBBHQQ" if wide else "IIIBBH")
            width = struct.calcsize(entry)
            for start in range(width, len(data) - width + 1, width):  # entry 0 is the null symbol
                fields = struct.unpack_from(entry, data, start)
                name_at, info, shndx = (fields[0], fields[1], fields[3]) if wide else (fields[0], fields[3], fields[5])
                if name_at == 0:
                    continue
                name = _string(names, name_at)
                if shndx == 0:
                    undefined.add(name)
                elif info >> 4 in (_STB_GLOBAL, _STB_WEAK):
                    defined.add(name)
    return ElfLinks(tuple(needed), frozenset(undefined), frozenset(defined))
