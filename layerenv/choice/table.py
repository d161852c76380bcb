"""The release x variant x architecture x driver table, loaded from ``data/variants.toml``."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from layerenv.choice.variant import Variant, parse_version_tuple
from layerenv.tomlcompat import loads

Channel = Literal["stable", "nightly"]
Confidence = Literal["high", "medium", "low"]
CHANNELS: tuple[Channel, ...] = ("stable", "nightly")


@dataclass(frozen=True)
class CudaRuntime:
    version: str
    ships_with: str
    min_driver_linux: str
    min_driver_windows: str

    def min_driver(self, system: str) -> str:
        return self.min_driver_windows if system == "windows" else self.min_driver_linux


@dataclass(frozen=True)
class Build:
    """One release of torch in one variant: what it carries, and how sure the table is."""

    series: str
    variant: Variant
    archs: tuple[str, ...]
    aarch64_archs: tuple[str, ...] | None
    confidence: Confidence
    linux_only: bool = False  # built for Linux only (cu129 from 2.9 on): no Windows wheel

    def archs_for(self, arch: str, system: str = "linux") -> tuple[str, ...] | None:
        """The arch list on a CPU architecture and OS, ``None`` where no wheel exists for it."""
        if self.linux_only and system != "linux":
            return None
        if arch in ("aarch64", "arm64") and self.variant.kind != "cpu":
            return self.aarch64_archs
        return self.archs


@dataclass(frozen=True)
class Release:
    series: str  # "2.9"
    latest: str  # "2.9.1", the newest patch the table knows
    channel: Channel
    torchaudio: bool
    builds: tuple[Build, ...]

    @property
    def key(self) -> tuple[int, ...]:
        return parse_version_tuple(self.series)


@dataclass(frozen=True)
class Matrix:
    releases: tuple[Release, ...]
    cuda: dict[str, CudaRuntime]
    blackwell_min_major: int
    blackwell_min_driver: str
    index_templates: dict[str, str]

    @property
    def variant_names(self) -> tuple[str, ...]:
        names = {build.variant.name for release in self.releases for build in release.builds}
        return tuple(sorted(names, key=lambda name: (Variant(name).kind, Variant(name).sort_key)))

    def release(self, series: str) -> Release | None:
        return next((release for release in self.releases if release.series == series), None)

    def newest_cuda_for_driver(self, driver_version: str) -> str | None:
        driver = parse_version_tuple(driver_version)
        supported = [
            runtime.version for runtime in self.cuda.values() if parse_version_tuple(runtime.ships_with) <= driver
        ]
        return max(supported, key=parse_version_tuple, default=None)


def parse_matrix(data: dict[str, Any]) -> Matrix:
    """Build a :class:`Matrix` from the TOML document; raises ``KeyError``/``ValueError`` on bad data."""
    archsets: dict[str, list[str]] = data["archsets"]
    aarch64: dict[str, str] = data.get("aarch64", {})
    releases = []
    for entry in data["release"]:
        confidence: dict[str, Confidence] = entry.get("confidence", {})
        linux_only = frozenset(entry.get("linux_only", ()))
        builds = tuple(
            Build(
                series=entry["series"],
                variant=Variant(name),
                archs=tuple(archsets[archset]),
                aarch64_archs=tuple(archsets[aarch64[name]]) if name in aarch64 else None,
                confidence=confidence.get(name, "high"),
                linux_only=name in linux_only,
            )
            for name, archset in entry["variants"].items()
        )
        releases.append(
            Release(
                series=entry["series"],
                latest=entry["latest"],
                channel=entry.get("channel", "stable"),
                torchaudio=bool(entry.get("torchaudio", False)),
                builds=builds,
            )
        )
    cuda = {
        version: CudaRuntime(
            version=version,
            ships_with=row["ships_with"],
            min_driver_linux=row["min_driver_linux"],
            min_driver_windows=row["min_driver_windows"],
        )
        for version, row in data["cuda"].items()
    }
    return Matrix(
        releases=tuple(sorted(releases, key=lambda release: release.key)),
        cuda=cuda,
        blackwell_min_major=int(data["blackwell"]["min_major"]),
        blackwell_min_driver=str(data["blackwell"]["min_driver"]),
        index_templates=dict(data["index"]),
    )


@lru_cache(maxsize=1)
def load_matrix() -> Matrix:
    """The table shipped with layerenv."""
    text = (Path(__file__).parent / "data" / "variants.toml").read_text(encoding="utf-8")
    return parse_matrix(loads(text))


def newest_cuda_for_driver(driver_version: str) -> str | None:
    """The newest CUDA runtime a driver supports: ``"580.159.04"`` -> ``"13.0"``."""
    return load_matrix().newest_cuda_for_driver(driver_version)
