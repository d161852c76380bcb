"""NVIDIA model name -> compute capability, for when neither NVML nor nvidia-smi answers.

Each pattern is a case-insensitive regular expression searched in the model name as the driver
reports it (``NVIDIA H100 80GB HBM3``, ``Tesla V100-SXM2-16GB``). ``\\b`` on both sides keeps
``A100`` from matching ``A1000`` and ``H20`` from matching ``H200``. The first match wins, so
more specific patterns come first. Sources: NVIDIA's "CUDA GPUs" compute capability list and
section 4 of the project's torch-variants reference.
"""

from __future__ import annotations

import re
from functools import cache

from layerenv.machine.facts import ComputeCapability

GPU_NAME_TABLE: tuple[tuple[str, str], ...] = (
    # Blackwell
    (r"\bGB10\b", "12.1"),
    (r"\bRTX PRO \d{4}\b", "12.0"),
    (r"\bRTX 50[5-9]0\b", "12.0"),
    (r"\bThor\b", "11.0"),
    (r"\bG?B300\b", "10.3"),
    (r"\bG?B[12]00\b", "10.0"),
    # Hopper
    (r"\bG?H[12]00\b", "9.0"),
    (r"\bH800\b", "9.0"),
    (r"\bH20\b", "9.0"),
    # Ada Lovelace
    (r"\bRTX \d{4}\b.*\bAda\b", "8.9"),
    (r"\bRTX 40[5-9]0\b", "8.9"),
    (r"\bL40S?\b", "8.9"),
    (r"\bL20\b", "8.9"),
    (r"\bL4\b", "8.9"),
    (r"\bL2\b", "8.9"),
    # Ampere
    (r"\bOrin\b", "8.7"),
    (r"\bA100X?\b", "8.0"),
    (r"\bA800\b", "8.0"),
    (r"\bA30X?\b", "8.0"),
    (r"\bRTX A\d{3,4}\b", "8.6"),
    (r"\bRTX 30[5-9]0\b", "8.6"),
    (r"\bA10[GM]?\b", "8.6"),
    (r"\bA40\b", "8.6"),
    (r"\bA16\b", "8.6"),
    (r"\bA2\b", "8.6"),
    # Turing
    (r"\bQuadro RTX \d{4}\b", "7.5"),
    (r"\bTITAN RTX\b", "7.5"),
    (r"\bRTX 20[5-8]0\b", "7.5"),
    (r"\bGTX 16[3-6]0\b", "7.5"),
    (r"\bT4\b", "7.5"),
    (r"\bT(?:400|500|550|600|1000|1200|2000)\b", "7.5"),
    # Volta
    (r"\bXavier\b", "7.2"),
    (r"\bV100S?\b", "7.0"),
    (r"\bGV100\b", "7.0"),
    (r"\bTITAN V\b", "7.0"),
    # Pascal
    (r"\bG?P100\b", "6.0"),
    (r"\bTITAN Xp\b", "6.1"),
    (r"\bTITAN X \(Pascal\)", "6.1"),
    (r"\bGTX 10[5-8]0\b", "6.1"),
    (r"\bGT 1030\b", "6.1"),
    (r"\bP40\b", "6.1"),
    (r"\bP4\b", "6.1"),
    (r"\bQuadro P\d{3,4}\b", "6.1"),
    (r"\bTX2\b", "6.2"),
    # Maxwell and Kepler
    (r"\bGTX TITAN X\b", "5.2"),
    (r"\bGTX 9[5-8]0\b", "5.2"),
    (r"\bM[46]0\b", "5.2"),
    (r"\bK80\b", "3.7"),
    (r"\bK[24]0[cmX]?\b", "3.5"),
)


@cache
def _compiled() -> tuple[tuple[re.Pattern[str], ComputeCapability], ...]:
    return tuple(
        (re.compile(pattern, re.IGNORECASE), ComputeCapability.parse(capability))
        for pattern, capability in GPU_NAME_TABLE
    )


def lookup_compute_capability(name: str) -> ComputeCapability | None:
    """The compute capability of the GPU model ``name``, or ``None`` if the table does not know it."""
    normalized = " ".join(name.split())
    for pattern, capability in _compiled():
        if pattern.search(normalized):
            return capability
    return None
