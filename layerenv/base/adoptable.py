"""Torch installs already on this machine that could serve as its base (``layerenv base --adopt``).

Looked for cheaply, by reading ``torch-*.dist-info/METADATA`` in a bounded list of the usual places
(the running interpreter, conda environments, ``/opt/*``, virtualenvs in the home directory): no
interpreter is started and nothing is imported.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from layerenv.choice.coverage import serves
from layerenv.choice.decide import driver_supports
from layerenv.choice.detection import Detection
from layerenv.choice.table import Matrix
from layerenv.choice.variant import Variant, is_variant_name

MOST_PLACES = 200


@dataclass(frozen=True)
class TorchInstall:
    prefix: Path  # the environment: what --adopt takes
    version: str  # "2.11.0+cu130"
    fits: bool
    why: str

    def suggestion(self) -> str:
        return f"layerenv base --adopt {self.prefix} (torch {self.version}: {self.why})"


def candidate_prefixes(env: Mapping[str, str], home: Path) -> list[Path]:
    """Environments worth a look, most likely first, without duplicates."""
    places: list[Path] = [Path(sys.prefix), Path(sys.base_prefix)]
    if env.get("CONDA_PREFIX"):
        places.append(Path(env["CONDA_PREFIX"]))
    conda_roots = [home / name for name in ("miniconda3", "anaconda3", "miniforge3", "mambaforge")]
    conda_roots.append(Path("/opt/conda"))
    for root in conda_roots:
        places.append(root)
        places.extend(_children(root / "envs"))
    for parent in (Path("/opt"), home):
        for child in _children(parent):
            places.extend((child / ".venv", child / "venv", child))
    places.extend((home / ".venv", home / "venv"))
    places.extend(_children(home / ".virtualenvs"))
    if env.get("WORKON_HOME"):
        places.extend(_children(Path(env["WORKON_HOME"])))
    places.extend(_children(home / ".pyenv" / "versions"))
    unique = list(dict.fromkeys(place for place in places if place.is_dir()))
    return unique[:MOST_PLACES]


_CUDA_REQUIREMENT = re.compile(
    r"^Requires-Dist:\s*(?:nvidia-cuda-runtime(?:-cu\d+)?|cuda-toolkit(?:\[[^\]]*\])?)\s*[=~]=\s*(\d+)\.(\d+)",
    re.MULTILINE | re.IGNORECASE,
)


def torch_version_in(prefix: Path) -> str | None:
    """The version of torch installed in an environment, from its dist-info (``2.11.0+cu130``).

    PyPI's Linux builds carry no label (``2.11.0``); their CUDA is the one their metadata requires
    (``nvidia-cuda-runtime==13.0.96``, or ``cuda-toolkit[...]==13.0.2``), named here as the label
    (``2.11.0+cu130``) so the install can be judged like a labelled one.
    """
    patterns = ("lib/python3*/site-packages/torch-*.dist-info", "Lib/site-packages/torch-*.dist-info")
    for pattern in patterns:
        for dist_info in sorted(prefix.glob(pattern)):
            try:
                head = (dist_info / "METADATA").read_text(encoding="utf-8", errors="replace").split("\n\n", 1)[0]
            except OSError:
                continue
            version = next((line.split(":", 1)[1].strip() for line in head.splitlines()
                            if line.startswith("Version:")), None)
            if version is None:
                continue
            cuda = _CUDA_REQUIREMENT.search(head)
            if "+" not in version and cuda is not None:
                version += f"+cu{cuda.group(1)}{cuda.group(2)}"
            return version
    return None


def judge(version: str, detection: Detection, matrix: Matrix) -> tuple[bool, str]:
    """Whether a torch of this version and label would serve this machine, and why (not)."""
    label = version.partition("+")[2]
    if not is_variant_name(label):
        return False, "no variant label, so its CUDA is unknown; adopting verifies it"
    variant = Variant(label)
    machine, served = detection.machine, detection.decision.served
    gpus = [gpu for gpu in machine.gpus if gpu.vendor in ("nvidia", "amd")]
    if variant.kind == "cpu":
        return (True, "fits: no GPU here") if not gpus else (False, "a CPU build on a machine with GPUs")
    if variant.kind == "cuda" and not driver_supports(machine, variant, matrix):
        return False, f"{variant} needs a newer driver than {machine.driver_version}"
    series = ".".join(version.split("+", maxsplit=1)[0].split(".")[:2])
    release = matrix.release(series)
    build = next((b for b in release.builds if b.variant == variant), None) if release else None
    archs = build.archs_for(machine.arch) if build else None
    if archs is None:
        return True, f"fits the driver; torch {series} {variant} is not in layerenv's table, adopting verifies it"
    missing = [gpu.label for gpu in served if not serves(archs, gpu)]
    if missing:
        return False, f"no kernels for {', '.join(missing)}"
    return True, "fits this machine"


def find_adoptable(detection: Detection, matrix: Matrix, env: Mapping[str, str], home: Path,
                   places: Iterable[Path] | None = None) -> list[TorchInstall]:
    """The torch installs found, those that fit first."""
    found = []
    for prefix in places if places is not None else candidate_prefixes(env, home):
        version = torch_version_in(prefix)
        if version is not None:
            fits, why = judge(version, detection, matrix)
            found.append(TorchInstall(prefix, version, fits, why))
    return sorted(found, key=lambda install: not install.fits)


def _children(directory: Path) -> list[Path]:
    try:
        return sorted(child for child in directory.iterdir() if child.is_dir() and not child.name.startswith("."))
    except OSError:
        return []
