"""Choosing the torch build for a machine: ``choose(machine, policy, matrix) -> Decision``.

A pure function over facts and policy: no I/O, so every rule is testable without a machine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from layerenv.choice.coverage import serves, why_not
from layerenv.choice.table import CHANNELS, Build, Channel, Matrix, Release
from layerenv.choice.variant import Variant, is_variant_name, parse_version_tuple
from layerenv.errors import BadInput
from layerenv.machine.facts import ComputeCapability, Gpu, Machine

_CONFIDENCE_RANK = {"high": 2, "medium": 1, "low": 0}


@dataclass(frozen=True)
class Policy:
    """What the user asked for; ``sources`` says where each setting came from."""

    variant: str | None = None
    channel: Channel = "stable"
    torch_pin: str | None = None
    strict: bool = False
    sources: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Candidate:
    """One release x variant the decision looked at, and what became of it."""

    series: str
    variant: str
    kept: bool
    reason: str
    served: tuple[int, ...] = ()
    confidence: str = "high"

    def to_json(self) -> dict[str, Any]:
        return {
            "torch": self.series,
            "variant": self.variant,
            "kept": self.kept,
            "reason": self.reason,
            "serves_gpus": list(self.served),
            "confidence": self.confidence,
        }


@dataclass(frozen=True)
class Unserved:
    gpu: Gpu
    why: str


@dataclass(frozen=True)
class TableFacts:
    """What building a decision needs from the table, read once by :func:`choose`.

    Manifests do not record these: a decision read back from one has them empty.
    """

    index_template: str = ""  # the channel's official index, "{variant}" still to fill
    newest_series: str = ""  # the newest release series the table has the variant in
    torchaudio_series: tuple[str, ...] = ()  # the release series that have a torchaudio

    @classmethod
    def of(cls, matrix: Matrix, channel: Channel, variant: Variant) -> TableFacts:
        with_variant = [
            release
            for release in matrix.releases
            if release.channel == channel and any(build.variant == variant for build in release.builds)
        ]
        return cls(
            index_template=matrix.index_templates[channel],
            newest_series=max(with_variant, key=lambda release: release.key).series,
            torchaudio_series=tuple(release.series for release in matrix.releases if release.torchaudio),
        )


@dataclass(frozen=True)
class Decision:
    """The chosen variant, the torch releases that serve this machine with it, and why."""

    variant: Variant
    channel: Channel
    torch: str  # newest release the table knows in range, e.g. "2.15.0"
    torch_series: tuple[str, ...]  # every release series in range, newest first
    served: tuple[Gpu, ...]
    unserved: tuple[Unserved, ...]
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]
    candidates: tuple[Candidate, ...]
    archs: tuple[str, ...]
    table: TableFacts = TableFacts()

    @property
    def conflict(self) -> bool:
        return bool(self.unserved)

    @property
    def may_be_newer(self) -> bool:
        """A torch newer than the table may serve this machine: the decision is at the table's edge."""
        return self.torch_series[:1] == (self.table.newest_series,) and not self.unserved

    def to_json(self, machine: Machine) -> dict[str, Any]:
        return {
            "variant": self.variant.name,
            "torch": self.torch,
            "torch_series": list(self.torch_series),
            "channel": self.channel,
            "driver_version": machine.driver_version,
            "cuda_driver": machine.cuda_driver,
            "gpus": [
                {
                    "index": gpu.index,
                    "vendor": gpu.vendor,
                    "name": gpu.name,
                    "compute_capability": str(gpu.compute_capability) if gpu.compute_capability else None,
                    "gfx": gpu.gfx,
                    "served": gpu in self.served,
                }
                for gpu in machine.gpus
            ],
            "archs": list(self.archs),
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
            "conflict": self.conflict,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], machine: Machine) -> Decision:
        """Read back what :meth:`to_json` wrote for ``machine``.

        The candidates and the table facts are not written, so they come back empty; a GPU left out
        gets its reason back from the warning that named it.
        """
        channel = str(data["channel"])
        if channel not in CHANNELS:
            raise ValueError(f"channel {channel!r} is not one of: {', '.join(CHANNELS)}")
        warnings = tuple(str(warning) for warning in data["warnings"])
        left_out = dict(warning.split(_LEFT_OUT, 1) for warning in warnings if _LEFT_OUT in warning)
        known = {(gpu.vendor, gpu.index): gpu for gpu in machine.gpus}
        served: list[Gpu] = []
        unserved: list[Unserved] = []
        for entry in data["gpus"]:
            gpu = known.get((entry["vendor"], int(entry["index"]))) or Gpu.from_json(entry)
            if entry["served"]:
                served.append(gpu)
            elif gpu.vendor in ("nvidia", "amd"):
                unserved.append(Unserved(gpu, left_out.get(gpu.label, "")))
        return cls(
            variant=Variant(str(data["variant"])),
            channel="nightly" if channel == "nightly" else "stable",
            torch=str(data["torch"]),
            torch_series=tuple(str(series) for series in data["torch_series"]),
            served=tuple(served),
            unserved=tuple(unserved),
            reasons=tuple(str(reason) for reason in data["reasons"]),
            warnings=warnings,
            candidates=(),
            archs=tuple(str(arch) for arch in data["archs"]),
        )


_LEFT_OUT = " is left out: "


def normalize_pin(pin: str) -> str:
    """``"2.9.*"`` or ``"2.9"`` -> ``"==2.9.*"``; specifiers pass through. Raises ``BadInput``."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    text = pin.strip()
    if text and text[0].isdigit():
        text = f"=={text}" if "*" in text or text.count(".") >= 2 else f"=={text}.*"
    try:
        SpecifierSet(text)
    except InvalidSpecifier:
        raise BadInput(
            f"torch pin {pin!r} is not a version specifier (use e.g. '2.9.*', '>=2.8,<2.11' or '==2.9.1')"
        ) from None
    return text


def _series_matches_pin(release: Release, pin: str) -> bool:
    from packaging.specifiers import SpecifierSet

    specifier = SpecifierSet(pin, prereleases=True)
    latest = parse_version_tuple(release.latest)
    last_patch = latest[2] if len(latest) > 2 else 0
    versions = [f"{release.series}.{patch}" for patch in range(last_patch + 1)]
    if release.channel == "nightly":
        versions = [f"{release.series}.0.dev0"]
    return any(specifier.contains(version) for version in versions)


def _driver_ok(machine: Machine, build: Build, matrix: Matrix) -> tuple[bool, str]:
    version = build.variant.version
    runtime = matrix.cuda.get(version or "")
    if runtime is None:
        return False, f"CUDA {version} is not in the driver table"
    needed = runtime.min_driver(machine.system)
    if machine.driver_version is None:
        return False, f"needs driver >= {needed}, and the NVIDIA driver version could not be read"
    if parse_version_tuple(machine.driver_version) < parse_version_tuple(needed):
        return False, f"CUDA {version} needs driver >= {needed} (have {machine.driver_version})"
    return True, f"CUDA {version} needs driver >= {needed} (have {machine.driver_version})"


def driver_supports(machine: Machine, variant: Variant, matrix: Matrix) -> bool:
    runtime = matrix.cuda.get(variant.version or "")
    if runtime is None or machine.driver_version is None:
        return False
    return parse_version_tuple(machine.driver_version) >= parse_version_tuple(runtime.min_driver(machine.system))


def _blackwell_blocked(machine: Machine, gpu: Gpu, matrix: Matrix) -> str | None:
    cap = gpu.compute_capability
    if gpu.vendor != "nvidia" or cap is None or cap.major < matrix.blackwell_min_major:
        return None
    driver = parse_version_tuple(machine.driver_version or "0")
    if driver < parse_version_tuple(matrix.blackwell_min_driver):
        return f"Blackwell GPUs need driver >= {matrix.blackwell_min_driver} (have {machine.driver_version})"
    return None


@dataclass(frozen=True)
class _Evaluated:
    release: Release
    build: Build
    archs: tuple[str, ...]
    served: tuple[Gpu, ...]

    @property
    def rank(self) -> tuple[Any, ...]:
        variant = self.build.variant
        useful = 1 if self.served or variant.kind == "cpu" else 0
        return (
            len(self.served),
            useful,
            self.release.key,
            _CONFIDENCE_RANK[self.build.confidence],
            variant.sort_key,
        )


def _gpus_for(machine: Machine, build: Build) -> tuple[Gpu, ...]:
    kind = build.variant.kind
    if kind == "cuda":
        return machine.nvidia_gpus
    if kind == "rocm":
        return machine.amd_gpus
    return ()


def _evaluate(
    machine: Machine, release: Release, build: Build, policy: Policy, matrix: Matrix
) -> tuple[_Evaluated | None, Candidate]:
    variant = build.variant
    forced = policy.variant is not None

    def dropped(reason: str) -> tuple[None, Candidate]:
        return None, Candidate(release.series, variant.name, False, reason, (), build.confidence)

    if forced and variant.name != policy.variant:
        return dropped(f"{policy.variant} was asked for ({policy.sources.get('variant', 'override')})")
    if build.linux_only and machine.system != "linux":
        return dropped(f"{variant} wheels are built for Linux only")
    archs = build.archs_for(machine.arch, machine.system)
    if archs is None:
        return dropped(f"no {machine.arch} wheel for {variant}")
    if machine.system == "darwin" and variant.kind != "cpu":
        return dropped("macOS wheels are CPU/MPS builds only")
    if machine.system == "windows" and variant.kind == "rocm":
        return dropped("no ROCm wheels for Windows on the PyTorch index")
    if build.confidence == "low" and not forced:
        return dropped("the table is not sure this build exists (low confidence); ask for it by name")
    gpus = _gpus_for(machine, build)
    if not forced and variant.kind != "cpu" and not gpus:
        return dropped(f"no {'NVIDIA' if variant.kind == 'cuda' else 'AMD'} GPU is visible")
    notes: list[str] = []
    if variant.kind == "cuda" and gpus:
        ok, driver_note = _driver_ok(machine, build, matrix)
        if not ok and not forced:
            return dropped(driver_note)
        notes.append(driver_note if ok else f"{driver_note}: asked for anyway")
    served = tuple(gpu for gpu in gpus if serves(archs, gpu) and _blackwell_blocked(machine, gpu, matrix) is None)
    if gpus:
        notes.append(f"serves {len(served)} of {len(gpus)} GPU(s)")
        notes.extend(f"{gpu.label} via {serves(archs, gpu)}" for gpu in served)
    if build.confidence != "high":
        notes.append(f"{build.confidence} confidence in the table")
    evaluated = _Evaluated(release, build, archs, served)
    candidate = Candidate(
        release.series,
        variant.name,
        True,
        "; ".join(notes) or "CPU build",
        tuple(gpu.index for gpu in served),
        build.confidence,
    )
    return evaluated, candidate


def _releases_in_scope(policy: Policy, matrix: Matrix) -> tuple[Release, ...]:
    if policy.channel not in CHANNELS:
        raise BadInput(f"channel {policy.channel!r} is not one of: {', '.join(CHANNELS)}")
    releases = tuple(release for release in matrix.releases if release.channel == policy.channel)
    if policy.torch_pin:
        pin = normalize_pin(policy.torch_pin)
        pinned = tuple(release for release in releases if _series_matches_pin(release, pin))
        if not pinned:
            known = ", ".join(release.series for release in releases)
            raise BadInput(
                f"torch pin {policy.torch_pin!r} matches no {policy.channel} release layerenv knows ({known})"
            )
        releases = pinned
    return tuple(sorted(releases, key=lambda release: release.key, reverse=True))


def _machine_reasons(machine: Machine) -> list[str]:
    reasons: list[str] = []
    if machine.driver_version:
        cuda = f", which supports CUDA up to {machine.cuda_driver}" if machine.cuda_driver else ""
        reasons.append(f"NVIDIA driver {machine.driver_version}{cuda}")
    for gpu in machine.gpus:
        if gpu.compute_capability:
            reasons.append(f"{gpu.label}: compute capability {gpu.compute_capability} (from {gpu.source})")
        elif gpu.gfx:
            reasons.append(f"{gpu.label}: AMD target {gpu.gfx} (from {gpu.source})")
        elif gpu.vendor == "apple":
            reasons.append(f"{gpu.name}: Apple silicon, the default macOS build runs on MPS")
        else:
            reasons.append(f"{gpu.label}: compute capability unknown (from {gpu.source})")
    if machine.hidden_gpus:
        reasons.append(f"{machine.hidden_gpus} GPU(s) hidden by *_VISIBLE_DEVICES")
    if not machine.gpus:
        reasons.append("no GPU is visible: the CPU build")
    return reasons


def _newest_build_carrying(machine: Machine, gpu: Gpu, policy: Policy, matrix: Matrix) -> str | None:
    """``"torch 2.7 cu118 is the newest build with sm_37 kernels"``, whatever the driver; ``None`` if none."""
    carrying = [
        (release, build)
        for release in matrix.releases
        if release.channel == policy.channel
        for build in release.builds
        if serves(build.archs_for(machine.arch, machine.system) or (), gpu)
    ]
    if not carrying:
        return None
    release, build = max(carrying, key=lambda item: (item[0].key, item[1].variant.sort_key))
    needs = ""
    runtime = matrix.cuda.get(build.variant.version or "")
    if runtime is not None:
        needs = f" (it needs driver >= {runtime.min_driver(machine.system)})"
    return f"torch {release.series} {build.variant} is the newest build with {serves(build.archs, gpu)} kernels{needs}"


def _why_unserved(machine: Machine, gpu: Gpu, best: _Evaluated, policy: Policy, matrix: Matrix) -> str:
    blocked = _blackwell_blocked(machine, gpu, matrix)
    if blocked:
        return blocked
    if best.served or best.build.variant.kind != "cpu":
        return f"{best.build.variant} {why_not(best.archs, gpu)}"
    vendor_kind = "cuda" if gpu.vendor == "nvidia" else "rocm"
    if gpu.vendor == "nvidia" and gpu.compute_capability is None:
        return "its compute capability is unknown, so no CUDA build can be checked against it"
    target = gpu.compute_capability.sm if gpu.compute_capability else gpu.gfx
    hint = ""
    if gpu.compute_capability and gpu.compute_capability == ComputeCapability(8, 7):
        hint = "; Jetson boards need NVIDIA's JetPack wheels"
    elif gpu.compute_capability and gpu.compute_capability.major == 3:
        hint = f"; Kepler: {_newest_build_carrying(machine, gpu, policy, matrix) or 'no torch build carries it'}"
    return (
        f"no {policy.channel} {vendor_kind.upper()} build of torch for {machine.arch} "
        f"that this driver can run carries {target} kernels{hint}"
    )


def choose(machine: Machine, policy: Policy, matrix: Matrix) -> Decision:
    """Pick the newest torch release, then the newest variant, that runs on every visible GPU.

    Rules, in order: a build must exist for the platform; its CUDA must be supported by the
    driver; the build must carry kernels (SASS of the GPU's family, or PTX) for each GPU. When
    no build serves every GPU, the one serving most GPUs wins and the rest are reported.
    """
    if policy.variant is not None and (
        not is_variant_name(policy.variant) or policy.variant not in matrix.variant_names
    ):
        source = policy.sources.get("variant", "variant")
        raise BadInput(
            f"unknown variant {policy.variant!r} (from {source}); allowed: {', '.join(matrix.variant_names)}"
        )
    releases = _releases_in_scope(policy, matrix)
    evaluated: list[_Evaluated] = []
    candidates: list[Candidate] = []
    for release in releases:
        for build in sorted(release.builds, key=lambda b: (b.variant.kind, b.variant.sort_key), reverse=True):
            result, candidate = _evaluate(machine, release, build, policy, matrix)
            candidates.append(candidate)
            if result is not None:
                evaluated.append(result)
    if not evaluated:
        scope = f"torch {policy.torch_pin}" if policy.torch_pin else f"the {policy.channel} channel"
        raise BadInput(f"variant {policy.variant!r} is not built for {scope} on {machine.platform_tag}")
    best = max(evaluated, key=lambda item: item.rank)
    served_ids = {gpu.index for gpu in best.served}
    in_range = sorted(
        (
            item
            for item in evaluated
            if item.build.variant == best.build.variant and served_ids <= {gpu.index for gpu in item.served}
        ),
        key=lambda item: item.release.key,
        reverse=True,
    )
    series = tuple(item.release.series for item in in_range)
    unserved = tuple(
        Unserved(gpu, _why_unserved(machine, gpu, best, policy, matrix))
        for gpu in machine.gpus
        if gpu.vendor in ("nvidia", "amd") and gpu not in best.served
    )
    reasons = _machine_reasons(machine)
    variant = best.build.variant
    total = len([gpu for gpu in machine.gpus if gpu.vendor in ("nvidia", "amd")])
    if policy.variant:
        reasons.append(f"{variant} asked for by {policy.sources.get('variant', 'override')}")
    elif variant.kind == "cpu" and total:
        reasons.append("no GPU build serves any visible GPU: the CPU build")
    elif variant.kind != "cpu":
        reasons.append(
            f"torch {best.release.series} {variant}: the newest release, then the newest "
            f"{'CUDA' if variant.kind == 'cuda' else 'ROCm'}, that serves {len(best.served)} of {total} GPU(s)"
        )
    else:
        reasons.append(f"torch {best.release.series} cpu: the newest release")
    if policy.torch_pin:
        reasons.append(f"torch pinned to {policy.torch_pin} ({policy.sources.get('torch_pin', 'config')})")
    warnings = [f"{item.gpu.label}{_LEFT_OUT}{item.why}" for item in unserved]
    if unserved:
        warnings.append(
            f"no {policy.channel} build serves every visible GPU; chose {variant} for "
            f"{len(best.served)} of {total} (pass --strict to make this an error)"
        )
    if best.build.confidence != "high":
        warnings.append(
            f"torch {best.release.series} {variant} is {best.build.confidence}-confidence data; "
            "override with --variant if the index lacks it"
        )
    release = best.release
    return Decision(
        variant=variant,
        channel=policy.channel,
        torch=release.latest,
        torch_series=series,
        served=best.served,
        unserved=unserved,
        reasons=tuple(reasons),
        warnings=tuple(warnings),
        candidates=tuple(candidates),
        archs=best.archs,
        table=TableFacts.of(matrix, policy.channel, variant),
    )
