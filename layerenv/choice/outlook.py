"""What limits a machine's choice, and what would lift it: said up front, not only in ``--explain``.

Two limits a user can act on or should plan for: the NVIDIA driver (a newer one reaches newer CUDA
builds and so newer torch releases), and a GPU that PyTorch's newest release no longer builds for
(that machine stays on an older torch whatever the driver). Pure: facts, policy and table in.
"""

from __future__ import annotations

from dataclasses import replace

from layerenv.choice.coverage import serves
from layerenv.choice.decide import Decision, Policy, choose
from layerenv.choice.table import Matrix
from layerenv.choice.variant import Variant, parse_version_tuple
from layerenv.errors import BadInput
from layerenv.machine.facts import Gpu, Machine


def outlook(machine: Machine, decision: Decision, policy: Policy, matrix: Matrix) -> tuple[str, ...]:
    """One line per limit, empty when nothing limits the choice or the user pinned it."""
    if policy.variant or policy.torch_pin:
        return ()
    lines = []
    driver_line = _driver_limit(machine, decision, policy, matrix)
    if driver_line:
        lines.append(driver_line)
    lines.extend(_gpus_leaving_builds(machine, decision, policy, matrix))
    return tuple(lines)


def min_driver(variant: Variant, gpus: tuple[Gpu, ...], system: str, matrix: Matrix) -> str | None:
    """The oldest driver that runs ``variant`` on ``gpus`` (Blackwell GPUs raise the floor)."""
    runtime = matrix.cuda.get(variant.version or "")
    if runtime is None:
        return None
    needed = runtime.min_driver(system)
    blackwell = any(
        gpu.compute_capability is not None and gpu.compute_capability.major >= matrix.blackwell_min_major
        for gpu in gpus
    )
    if blackwell and parse_version_tuple(matrix.blackwell_min_driver) > parse_version_tuple(needed):
        needed = matrix.blackwell_min_driver
    return needed


def _driver_limit(machine: Machine, decision: Decision, policy: Policy, matrix: Matrix) -> str | None:
    if machine.driver_version is None or not machine.nvidia_gpus:
        return None
    newest_runtime = max(matrix.cuda.values(), key=lambda runtime: parse_version_tuple(runtime.ships_with))
    unlimited = replace(machine, driver_version=newest_runtime.ships_with, cuda_driver=newest_runtime.version)
    try:
        better = choose(unlimited, policy, matrix)
    except BadInput:
        return None
    gains_gpus = len(better.served) > len(decision.served)
    newer = parse_version_tuple(better.torch_series[0]) > parse_version_tuple(decision.torch_series[0])
    if better.variant.kind != "cuda" or not (newer or gains_gpus):
        return None
    needed = min_driver(better.variant, better.served, machine.system, matrix)
    if needed is None:
        return None
    reach = f"CUDA {machine.cuda_driver}" if machine.cuda_driver else "its CUDA"
    now = "the CPU build" if decision.variant.kind == "cpu" else f"torch {decision.torch_series[0]}"
    return (f"driver {machine.driver_version} limits this machine to {reach} -> {now}; "
            f"driver >= {needed} gets torch {better.torch_series[0]} {better.variant}")


def _gpus_leaving_builds(machine: Machine, decision: Decision, policy: Policy, matrix: Matrix) -> list[str]:
    if decision.variant.kind == "cpu" or not decision.served:
        return []
    releases = sorted((r for r in matrix.releases if r.channel == policy.channel), key=lambda r: r.key, reverse=True)
    newest = releases[0]
    lines = []
    for gpu in decision.served:
        serving = [
            (release, sorted({str(b.variant) for b in release.builds
                              if serves(b.archs_for(machine.arch, machine.system) or (), gpu)}))
            for release in releases
        ]
        last, variants = next((release, names) for release, names in serving if names)
        if last is newest:
            continue
        arch = f"sm_{gpu.compute_capability.major}{gpu.compute_capability.minor}" if gpu.compute_capability else gpu.gfx
        lines.append(
            f"{gpu.name} ({arch}) is served only by {', '.join(variants)} builds; torch {newest.series} has none, "
            f"so this machine stays on torch {last.series}"
        )
    return list(dict.fromkeys(lines))  # one line for several GPUs of one model
