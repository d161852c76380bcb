"""The variant decision over a table of real-world machines, and its invariants (hypothesis)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import layerenv.choice.table
from layerenv.choice.coverage import covering_arch, serves
from layerenv.choice.decide import Decision, Policy, choose, driver_supports
from layerenv.choice.table import load_matrix, parse_matrix
from layerenv.choice.variant import Variant, parse_version_tuple
from layerenv.errors import BadInput
from layerenv.machine.facts import ComputeCapability, Gpu, Machine
from layerenv.tomlcompat import loads

MATRIX = load_matrix()
TABLE = Path(layerenv.choice.table.__file__).parent / "data" / "variants.toml"


def nvidia(driver: str, *capabilities: str, arch: str = "x86_64", system: str = "linux") -> Machine:
    gpus = tuple(
        Gpu("nvidia", index, f"GPU {capability}", ComputeCapability.parse(capability))
        for index, capability in enumerate(capabilities)
    )
    return Machine(system, arch, "3.11.7", gpus, driver, MATRIX.newest_cuda_for_driver(driver))


def amd(gfx: str) -> Machine:
    return Machine("linux", "x86_64", "3.11.7", (Gpu("amd", 0, f"AMD {gfx}", gfx=gfx),))


# machine, expected variant, expected newest torch series, GPUs left out
SCENARIOS = {
    "GTX 1080 + 580": (nvidia("580.159.04", "6.1"), "cu126", "2.14", 0),
    "V100 + 535": (nvidia("535.247.01", "7.0"), "cu126", "2.14", 0),
    "A100 + 470": (nvidia("470.256.02", "8.0"), "cu118", "2.7", 0),
    "T4 + 580": (nvidia("580.95.05", "7.5"), "cu132", "2.15", 0),
    "T4 + 550": (nvidia("550.163.01", "7.5"), "cu126", "2.14", 0),
    "RTX 4090 + 580": (nvidia("580.95.05", "8.9"), "cu132", "2.15", 0),
    "RTX 5070 Ti + 570": (nvidia("570.172.08", "12.0"), "cu129", "2.13", 0),
    "RTX 5070 Ti + 570 on Windows (no cu129 wheel)": (nvidia("572.16", "12.0", system="windows"), "cu128", "2.11", 0),
    "RTX 5090 + 580": (nvidia("580.95.05", "12.0"), "cu132", "2.15", 0),
    "H100 + 580": (nvidia("580.159.04", "9.0"), "cu132", "2.15", 0),
    "B200 + 580": (nvidia("580.95.05", "10.0"), "cu132", "2.15", 0),
    "B200 + 570": (nvidia("570.172.08", "10.0"), "cu129", "2.13", 0),
    "GB10 (aarch64) + 580": (nvidia("580.95.05", "12.1", arch="aarch64"), "cu132", "2.15", 0),
    "Orin (aarch64, 8.7)": (nvidia("540.4.0", "8.7", arch="aarch64"), "cpu", "2.15", 1),
    "RTX 4090 + RTX 5090 + 580": (nvidia("580.95.05", "8.9", "12.0"), "cu132", "2.15", 0),
    "RTX 4090 + RTX 5090 + 570": (nvidia("570.172.08", "8.9", "12.0"), "cu129", "2.13", 0),
    "Tesla K80 + 470": (nvidia("470.256.02", "3.7"), "cu118", "2.7", 0),
    "Tesla K80 + 418 (too old for CUDA 11.8)": (nvidia("418.226.00", "3.7"), "cpu", "2.15", 1),
    "Tesla K40 (3.5) + 470": (nvidia("470.256.02", "3.5"), "cpu", "2.15", 1),
    "GTX 1080 + RTX 5090 + 580": (nvidia("580.95.05", "6.1", "12.0"), "cu132", "2.15", 1),
    "RTX 5090 + 565 (too old for Blackwell)": (nvidia("565.57.01", "12.0"), "cpu", "2.15", 1),
    "no GPU": (Machine("linux", "x86_64", "3.11.7"), "cpu", "2.15", 0),
    "AMD gfx1100": (amd("gfx1100"), "rocm7.14", "2.15", 0),
    "AMD gfx1103 (Radeon 780M)": (amd("gfx1103"), "rocm7.14", "2.15", 0),
    "AMD gfx1031 (RX 6700 XT)": (amd("gfx1031"), "cpu", "2.15", 1),
    "AMD gfx906": (amd("gfx906"), "rocm7.2", "2.15", 0),
    "macOS arm64": (
        Machine("darwin", "arm64", "3.12.1", (Gpu("apple", 0, "Apple silicon GPU (MPS)"),)),
        "cpu",
        "2.15",
        0,
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_choose_scenarios(name: str) -> None:
    machine, variant, series, left_out = SCENARIOS[name]
    decision = choose(machine, Policy(), MATRIX)
    assert (decision.variant.name, decision.torch_series[0], len(decision.unserved)) == (variant, series, left_out)
    assert decision.conflict == bool(left_out)
    assert decision.reasons, "a decision always carries its reasons"


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_decision_reads_back_what_it_wrote(name: str) -> None:
    machine = SCENARIOS[name][0]
    decision = choose(machine, Policy(), MATRIX)
    document = json.loads(json.dumps(decision.to_json(machine)))
    again = Decision.from_json(document, machine)
    assert again.to_json(machine) == document
    assert again.candidates == () and again.table.index_template == "", "neither is written"
    assert replace(again, candidates=decision.candidates, table=decision.table) == decision


def test_the_decision_carries_what_the_build_needs_from_the_table() -> None:
    h100 = choose(nvidia("580.159.04", "9.0"), Policy(), MATRIX)
    assert h100.table.index_template == "https://download.pytorch.org/whl/{variant}"
    assert h100.table.newest_series == "2.15" and h100.may_be_newer, "a torch newer than the table may fit"
    assert h100.table.torchaudio_series == ("2.5", "2.6", "2.7", "2.8", "2.9", "2.10", "2.11")
    assert not choose(nvidia("580.159.04", "9.0"), Policy(torch_pin="2.9.*"), MATRIX).may_be_newer
    a100 = choose(nvidia("470.256.02", "8.0"), Policy(), MATRIX)
    assert (a100.variant.name, a100.table.newest_series, a100.may_be_newer) == ("cu118", "2.7", True)
    mixed = choose(nvidia("580.95.05", "6.1", "12.0"), Policy(), MATRIX)
    assert mixed.torch_series[0] == mixed.table.newest_series and not mixed.may_be_newer, "a GPU is left out"
    nightly = choose(nvidia("580.159.04", "9.0"), Policy(channel="nightly"), MATRIX)
    assert nightly.table.index_template == "https://download.pytorch.org/whl/nightly/{variant}"


def test_h100_accepts_the_preinstalled_cu130_build() -> None:
    machine = nvidia("580.159.04", "9.0")
    decision = choose(machine, Policy(variant="cu130", torch_pin="2.11.*"), MATRIX)
    assert decision.variant == Variant("cu130")
    assert decision.torch_series == ("2.11",)
    assert "sm_90" in decision.archs and not decision.unserved


def test_gtx_1080_is_never_given_a_cuda_13_build() -> None:
    decision = choose(nvidia("580.159.04", "6.1"), Policy(), MATRIX)
    assert decision.variant.kind == "cuda" and decision.variant.sort_key < (13,)
    cu130 = [c for c in decision.candidates if c.variant == "cu130" and c.series == "2.15"]
    assert cu130 and cu130[0].kept and cu130[0].served == ()
    assert decision.served and decision.served[0].index == 0


def test_left_out_gpu_is_named_with_the_reason() -> None:
    decision = choose(nvidia("580.95.05", "6.1", "12.0"), Policy(), MATRIX)
    (item,) = decision.unserved
    assert item.gpu.index == 0 and "sm_6x" in item.why
    assert any("GPU 0" in warning and "left out" in warning for warning in decision.warnings)


def test_orin_is_not_served_by_ampere_kernels() -> None:
    assert covering_arch(["sm_80", "sm_86", "sm_90"], ComputeCapability(8, 7)) is None
    assert covering_arch(["sm_87"], ComputeCapability(8, 7)) == "sm_87"
    assert covering_arch(["sm_86"], ComputeCapability(8, 9)) == "sm_86"
    assert covering_arch(["sm_120"], ComputeCapability(12, 1)) == "sm_120"
    assert covering_arch(["sm_100"], ComputeCapability(10, 3)) == "sm_100"
    assert covering_arch(["sm_60"], ComputeCapability(6, 1)) == "sm_60"
    assert covering_arch(["sm_90a"], ComputeCapability(9, 0)) == "sm_90a"
    assert covering_arch(["sm_90a"], ComputeCapability(10, 0)) is None
    assert covering_arch(["sm_90", "compute_90"], ComputeCapability(12, 0)) == "compute_90"
    assert covering_arch(["compute_120"], ComputeCapability(9, 0)) is None


def test_pin_narrows_releases() -> None:
    decision = choose(nvidia("580.159.04", "9.0"), Policy(torch_pin="2.9.*"), MATRIX)
    assert decision.torch_series == ("2.9",) and decision.variant == Variant("cu130")
    ranged = choose(nvidia("580.159.04", "9.0"), Policy(torch_pin=">=2.10,<2.13"), MATRIX)
    assert ranged.torch_series[0] == "2.12" and ranged.variant == Variant("cu132")


def test_forced_variant_wins_and_unknown_variant_is_bad_input() -> None:
    decision = choose(nvidia("580.159.04", "9.0"), Policy(variant="cu126"), MATRIX)
    assert decision.variant == Variant("cu126") and decision.torch_series[0] == "2.14"
    with pytest.raises(BadInput, match=r"unknown variant 'cu999'.*allowed: cpu"):
        choose(nvidia("580.159.04", "9.0"), Policy(variant="cu999"), MATRIX)
    with pytest.raises(BadInput, match="matches no stable release"):
        choose(nvidia("580.159.04", "9.0"), Policy(torch_pin="3.0.*"), MATRIX)
    with pytest.raises(BadInput, match="not a version specifier"):
        choose(nvidia("580.159.04", "9.0"), Policy(torch_pin="latest!"), MATRIX)


def test_nightly_channel_uses_nightly_releases() -> None:
    decision = choose(nvidia("580.159.04", "9.0"), Policy(channel="nightly"), MATRIX)
    assert decision.channel == "nightly" and decision.torch_series == ("2.16",)


def test_low_confidence_rows_are_used_only_by_name() -> None:
    # the shipped table has no low row left (issue 16); the rule is checked on a copy with one
    data = loads(TABLE.read_text(encoding="utf-8"))
    release = next(entry for entry in data["release"] if entry["series"] == "2.13")
    release["confidence"] = {"cu129": "low"}
    matrix = parse_matrix(data)
    machine = nvidia("575.64.03", "9.0")
    auto = choose(machine, Policy(torch_pin="2.13.*"), matrix)
    assert auto.variant == Variant("cu126")
    assert any(c.variant == "cu129" and not c.kept and "low confidence" in c.reason for c in auto.candidates)
    named = choose(machine, Policy(variant="cu129", torch_pin="2.13.*"), matrix)
    assert named.variant == Variant("cu129")


def test_candidates_explain_driver_drops() -> None:
    decision = choose(nvidia("570.172.08", "12.0"), Policy(), MATRIX)
    cu130 = [c for c in decision.candidates if c.variant == "cu130"]
    assert cu130 and all(not c.kept and "580.65.06" in c.reason for c in cu130)


capabilities = st.sampled_from(
    [
        "3.7",
        "5.0",
        "5.2",
        "6.0",
        "6.1",
        "7.0",
        "7.2",
        "7.5",
        "8.0",
        "8.6",
        "8.7",
        "8.9",
        "9.0",
        "10.0",
        "10.3",
        "11.0",
        "12.0",
        "12.1",
    ]
)
drivers = st.sampled_from(
    [
        "450.80.02",
        "470.256.02",
        "525.60.13",
        "535.247.01",
        "550.163.01",
        "565.57.01",
        "570.172.08",
        "575.64.03",
        "580.65.06",
        "580.159.04",
        "590.44.01",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    driver=drivers,
    caps=st.lists(capabilities, min_size=0, max_size=4),
    arch=st.sampled_from(["x86_64", "aarch64"]),
    pin=st.sampled_from([None, "2.7.*", "2.9.*", ">=2.10", "<2.9"]),
)
def test_choice_serves_what_it_claims(driver: str, caps: list[str], arch: str, pin: str | None) -> None:
    machine = nvidia(driver, *caps, arch=arch)
    try:
        decision = choose(machine, Policy(torch_pin=pin), MATRIX)
    except BadInput as error:
        # only a pin may leave no build for this platform; it is reported, naming the pin
        assert pin is not None, error.message
        assert pin in error.message, error.message
        return
    for gpu in decision.served:
        assert serves(decision.archs, gpu), f"{decision.variant} claims {gpu.label}"
    if decision.variant.kind == "cuda" and decision.served:
        assert driver_supports(machine, decision.variant, MATRIX)
    served = {gpu.index for gpu in decision.served}
    assert served | {item.gpu.index for item in decision.unserved} == {gpu.index for gpu in machine.gpus}
    for series in decision.torch_series:
        release = MATRIX.release(series)
        assert release is not None
        build = next(b for b in release.builds if b.variant == decision.variant)
        archs = build.archs_for(arch)
        assert archs is not None
        assert all(serves(archs, gpu) for gpu in decision.served)
    newest = parse_version_tuple(decision.torch_series[0])
    assert all(parse_version_tuple(s) <= newest for s in decision.torch_series)


# Issue 16, settled from PyTorch's build scripts and RELEASE.md (sources cited in variants.toml):
# each release's variants, and the rows that are not high confidence.
SETTLED = {
    "2.7": ({"cu118", "cu126", "cu128", "cpu", "rocm6.3"}, {}),
    "2.10": ({"cu126", "cu128", "cu129", "cu130", "cpu", "rocm7.0", "rocm7.1"}, {}),
    "2.11": ({"cu126", "cu128", "cu129", "cu130", "cpu", "rocm7.1", "rocm7.2"}, {}),
    "2.12": ({"cu126", "cu129", "cu130", "cu132", "cpu", "rocm7.1", "rocm7.2"}, {"cu129": "medium"}),
    "2.13": ({"cu126", "cu129", "cu130", "cu132", "cpu", "rocm7.1", "rocm7.2"}, {}),
    "2.14": ({"cu126", "cu130", "cu132", "cpu", "rocm7.2", "rocm7.14"}, {}),
    "2.15": (
        {"cu130", "cu132", "cpu", "rocm7.2", "rocm7.14"},
        {"cu130": "medium", "rocm7.2": "medium", "rocm7.14": "medium"},
    ),
}


@pytest.mark.parametrize("series", list(SETTLED))
def test_settled_variant_sets(series: str) -> None:
    variants, unsure = SETTLED[series]
    release = MATRIX.release(series)
    assert release is not None
    assert {build.variant.name for build in release.builds} == variants
    assert {b.variant.name: b.confidence for b in release.builds if b.confidence != "high"} == unsure


def test_cu129_is_linux_only_from_2_9_and_absent_from_2_14() -> None:
    for series in ("2.9", "2.10", "2.11", "2.12", "2.13"):
        release = MATRIX.release(series)
        assert release is not None
        (cu129,) = [b for b in release.builds if b.variant.name == "cu129"]
        assert cu129.linux_only and cu129.archs_for("x86_64", "windows") is None, series
        assert cu129.archs_for("x86_64", "linux") == cu129.archs
    windows = choose(nvidia("572.16", "12.0", system="windows"), Policy(torch_pin="2.13.*"), MATRIX)
    dropped = [c for c in windows.candidates if c.variant == "cu129"]
    assert dropped and all(not c.kept and "Linux only" in c.reason for c in dropped)
    with pytest.raises(BadInput, match=r"not built for torch 2\.14"):
        choose(nvidia("575.64.03", "12.0"), Policy(variant="cu129", torch_pin="2.14.*"), MATRIX)


def test_blackwell_on_a_575_driver_gets_2_13_cu129() -> None:
    decision = choose(nvidia("575.64.03", "12.0"), Policy(), MATRIX)
    assert (decision.variant.name, decision.torch_series) == ("cu129", ("2.13", "2.12", "2.11", "2.10", "2.9", "2.8"))
    assert not decision.warnings, "2.13 cu129 is high confidence"


def test_kepler_k80_on_r470_gets_cu118_torch_2_7_through_sm_37() -> None:
    decision = choose(nvidia("470.256.02", "3.7"), Policy(), MATRIX)
    assert (decision.variant.name, decision.torch_series) == ("cu118", ("2.7", "2.6", "2.5"))
    assert "sm_37" in decision.archs and not decision.warnings
    kept = [c for c in decision.candidates if c.kept and c.variant == "cu118" and c.series == "2.7"]
    assert kept and kept[0].reason.endswith("(sm_37) via sm_37")
    assert any("compute capability 3.7" in reason for reason in decision.reasons)
    assert all("sm_37" not in b.archs for r in MATRIX.releases if r.key >= (2, 8) for b in r.builds)


def test_kepler_left_out_is_named_with_the_build_that_would_serve_it() -> None:
    old_driver = choose(nvidia("418.226.00", "3.7"), Policy(), MATRIX)
    (item,) = old_driver.unserved
    assert "Kepler: torch 2.7 cu118 is the newest build with sm_37 kernels (it needs driver >= 450.80.02)" in item.why
    k40 = choose(nvidia("470.256.02", "3.5"), Policy(), MATRIX)
    (item,) = k40.unserved
    assert "carries sm_35 kernels; Kepler: no torch build carries it" in item.why


def test_rocm_7_14_serves_rdna3_igpus_but_not_rdna2_beyond_gfx1030_nor_gcn5() -> None:
    rocm714 = next(b for b in MATRIX.release("2.14").builds if b.variant.name == "rocm7.14")  # type: ignore[union-attr]
    assert "gfx1103" in rocm714.archs and "gfx1030" in rocm714.archs
    assert not {"gfx900", "gfx906", "gfx1031", "gfx1032"} & set(rocm714.archs)
    gfx1031 = choose(amd("gfx1031"), Policy(), MATRIX)
    (item,) = gfx1031.unserved
    assert gfx1031.variant.name == "cpu" and "carries gfx1031 kernels" in item.why
    # the MI50 (gfx906) stays on the legacy-image rocm7.2 build
    gfx906 = choose(amd("gfx906"), Policy(torch_pin="2.14.*"), MATRIX)
    assert gfx906.variant.name == "rocm7.2" and not gfx906.unserved


def test_rocm_builds_of_2_10_are_7_0_and_7_1() -> None:
    decision = choose(amd("gfx1100"), Policy(torch_pin="2.10.*"), MATRIX)
    assert (decision.variant.name, decision.torch_series) == ("rocm7.1", ("2.10",))
    assert choose(amd("gfx1103"), Policy(torch_pin="2.12.*"), MATRIX).variant.name == "cpu"  # gfx1103 from 2.13
