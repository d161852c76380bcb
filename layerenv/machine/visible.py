"""Which GPUs this process may use, after ``CUDA_VISIBLE_DEVICES`` and its ROCm counterparts.

The rules follow the runtimes: a comma list of indexes or ``GPU-`` UUIDs (a unique prefix is
enough), enumeration stops at the first entry that names no GPU, an empty value hides all.
A MIG instance (``MIG-<uuid>``, R470 and later, or ``MIG-GPU-<uuid>/<gi>/<ci>`` before) has its
parent GPU's compute capability: the parent comes from ``nvidia-smi -L`` (``mig_parents``), else,
when every GPU has the same capability, any of them stands for it.
On AMD, ``ROCR_VISIBLE_DEVICES`` applies first; ``HIP_VISIBLE_DEVICES`` (or, when unset,
``CUDA_VISIBLE_DEVICES``, which HIP honours too) then indexes the GPUs ROCR left.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from layerenv.machine.facts import Gpu


class _Selection(NamedTuple):
    gpus: tuple[Gpu, ...]
    notes: tuple[str, ...]
    used_index: bool


def filter_visible(
    gpus: Sequence[Gpu], env: Mapping[str, str], mig_parents: Mapping[str, str] | None = None
) -> tuple[tuple[Gpu, ...], int, tuple[str, ...]]:
    """The visible GPUs (original indexes kept, original order), how many were hidden, and notes."""
    nvidia = tuple(gpu for gpu in gpus if gpu.vendor == "nvidia")
    amd = tuple(gpu for gpu in gpus if gpu.vendor == "amd")
    notes: list[str] = []

    cuda_value = env.get("CUDA_VISIBLE_DEVICES")
    if nvidia and cuda_value is not None:
        selection = _select(nvidia, cuda_value, "CUDA_VISIBLE_DEVICES", by_position=False,
                            mig_parents=mig_parents or {})
        if selection.used_index and _order_is_ambiguous(nvidia, env):
            notes.append(
                "CUDA_VISIBLE_DEVICES uses indexes and the GPUs differ: CUDA numbers them fastest first "
                "unless CUDA_DEVICE_ORDER=PCI_BUS_ID; PCI bus order was assumed"
            )
        nvidia = selection.gpus
        notes.extend(selection.notes)

    if amd:
        rocr_value = env.get("ROCR_VISIBLE_DEVICES")
        if rocr_value is not None:
            selection = _select(amd, rocr_value, "ROCR_VISIBLE_DEVICES", by_position=False)
            amd = selection.gpus
            notes.extend(selection.notes)
        hip_name = "HIP_VISIBLE_DEVICES" if "HIP_VISIBLE_DEVICES" in env else "CUDA_VISIBLE_DEVICES"
        hip_value = env.get(hip_name)
        if hip_value is not None:
            selection = _select(amd, hip_value, hip_name, by_position=True)
            amd = selection.gpus
            notes.extend(selection.notes)

    kept = {id(gpu) for gpu in (*nvidia, *amd)}
    visible = tuple(gpu for gpu in gpus if gpu.vendor not in ("nvidia", "amd") or id(gpu) in kept)
    return visible, len(gpus) - len(visible), tuple(notes)


def _select(
    candidates: tuple[Gpu, ...],
    value: str,
    variable: str,
    *,
    by_position: bool,
    mig_parents: Mapping[str, str] | None = None,
) -> _Selection:
    if not value.strip():
        return _Selection((), (f"{variable} is empty: no GPU is visible to it",), used_index=False)
    chosen: list[Gpu] = []
    notes: list[str] = []
    used_index = False
    for raw in value.split(","):
        entry = raw.strip()
        if entry.isdigit():
            used_index = True
            gpu = _by_index(candidates, int(entry), by_position=by_position)
        elif entry.upper().startswith("MIG-"):
            gpu, how = _mig_parent(candidates, entry, mig_parents or {})
            if gpu is None:
                notes.append(f"{variable} entry {entry!r} is a MIG instance of an unidentified GPU; ignored")
                continue
            if how:
                notes.append(f"{variable} entry {entry!r} is a MIG instance: {how}")
        elif entry.upper().startswith("GPU-"):
            gpu = _by_uuid_prefix(candidates, entry)
        else:
            gpu = None
        if gpu is None:
            notes.append(f"{variable} entry {entry!r} names no single GPU; it and all after it are ignored")
            break
        if gpu not in chosen:
            chosen.append(gpu)
    return _Selection(tuple(chosen), tuple(notes), used_index)


def _by_index(candidates: tuple[Gpu, ...], index: int, *, by_position: bool) -> Gpu | None:
    if by_position:
        return candidates[index] if index < len(candidates) else None
    return next((gpu for gpu in candidates if gpu.index == index), None)


def _by_uuid_prefix(candidates: tuple[Gpu, ...], prefix: str) -> Gpu | None:
    wanted = prefix.lower()
    matches = [gpu for gpu in candidates if gpu.uuid is not None and gpu.uuid.lower().startswith(wanted)]
    return matches[0] if len(matches) == 1 else None


def _mig_parent(
    candidates: tuple[Gpu, ...], entry: str, mig_parents: Mapping[str, str]
) -> tuple[Gpu | None, str]:
    """The GPU a MIG instance runs on (or one with the same capability), and a note saying which."""
    rest = entry[len("MIG-") :]
    named = rest.upper().startswith("GPU-")  # MIG-GPU-<uuid>/<gi>/<ci>: the parent is in the name
    parent_uuid = rest.split("/", 1)[0].lower() if named else mig_parents.get(entry.lower(), "")
    if parent_uuid:
        parent = next((gpu for gpu in candidates if gpu.uuid is not None and gpu.uuid.lower() == parent_uuid), None)
        found = parent is not None and not named
        return parent, f"a slice of GPU {parent.index} {parent.name} (nvidia-smi -L)" if found and parent else ""
    capabilities = {gpu.compute_capability for gpu in candidates}
    if len(capabilities) == 1 and None not in capabilities:
        gpu = candidates[0]
        return gpu, (f"its parent is not known (nvidia-smi -L did not list it), but every GPU here is "
                     f"compute capability {gpu.compute_capability}")
    return None, ""


def _order_is_ambiguous(nvidia: tuple[Gpu, ...], env: Mapping[str, str]) -> bool:
    return env.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID" and len({gpu.name for gpu in nvidia}) > 1
