"""What a torch variant name means: ``cu128`` is CUDA 12.8, ``rocm6.4`` is ROCm 6.4, ``cpu``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

VariantKind = Literal["cuda", "rocm", "cpu"]

_CUDA = re.compile(r"cu(\d{2,3})")
_ROCM = re.compile(r"rocm(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True, order=True)
class Variant:
    """A build flavour of torch, as the PyTorch index names it (``cu128``)."""

    name: str

    @property
    def kind(self) -> VariantKind:
        if self.name == "cpu":
            return "cpu"
        if _CUDA.fullmatch(self.name):
            return "cuda"
        return "rocm"

    @property
    def version(self) -> str | None:
        """``"12.8"`` for cu128, ``"6.4"`` for rocm6.4, ``None`` for cpu."""
        cuda = _CUDA.fullmatch(self.name)
        if cuda:
            digits = cuda.group(1)
            return f"{digits[:-1]}.{digits[-1]}"
        rocm = _ROCM.fullmatch(self.name)
        if rocm:
            return ".".join(part for part in rocm.groups() if part is not None)
        return None

    @property
    def sort_key(self) -> tuple[int, ...]:
        version = self.version
        return tuple(int(part) for part in version.split(".")) if version else ()

    def __str__(self) -> str:
        return self.name


def is_variant_name(name: str) -> bool:
    return name == "cpu" or bool(_CUDA.fullmatch(name)) or bool(_ROCM.fullmatch(name))


def parse_version_tuple(text: str) -> tuple[int, ...]:
    """``"580.159.04"`` -> ``(580, 159, 4)``; non-numeric tails are ignored (``"2.16.0.dev"``)."""
    parts: list[int] = []
    for piece in text.strip().split("."):
        digits = re.match(r"\d+", piece)
        if not digits:
            break
        parts.append(int(digits.group()))
    return tuple(parts)
