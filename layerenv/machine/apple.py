"""The GPU of an Apple silicon Mac, which torch reaches through MPS."""

from __future__ import annotations

from layerenv.machine.facts import Gpu


def read_apple(system: str, arch: str) -> tuple[Gpu, ...]:
    if system == "darwin" and arch == "arm64":
        return (Gpu(vendor="apple", index=0, name="Apple silicon GPU (MPS)", source="platform"),)
    return ()
