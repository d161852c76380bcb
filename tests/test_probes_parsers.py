"""Pure parsers of layerenv.machine.reader: real H100 files, other drivers' forms, junk, empty input."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from layerenv.machine.amd import gfx_target, parse_kfd_properties, parse_rocm_version, pci_bus_id, rocm_uuid
from layerenv.machine.apple import read_apple
from layerenv.machine.facts import ComputeCapability, Gpu
from layerenv.machine.gpu_names import GPU_NAME_TABLE, lookup_compute_capability
from layerenv.machine.nvidia import (
    SmiRow,
    normalize_bus_id,
    parse_gpu_information,
    parse_module_version,
    parse_proc_version,
    parse_smi_query,
)
from layerenv.machine.nvml import format_cuda_driver_version
from layerenv.machine.reader import normalize_arch
from layerenv.machine.visible import filter_visible

# shared/fixtures/h100-580/nvidia-smi_query-gpu.csv, read off the real H100 (a wider query than ours)
REAL_H100_QUERY_CSV = (
    "index, name, compute_cap, driver_version, pci.bus_id, pci.device_id, memory.total [MiB]\n"
    "0, NVIDIA H100 80GB HBM3, 9.0, 580.159.04, 00000000:00:06.0, 0x233010DE, 81559 MiB\n"
)
MACHINES = Path(__file__).parent / "fixtures" / "machines"
H100_UUID = "GPU-c8ea2d70-7899-0bb0-f1ff-006c6ba7f34d"


def fixture_text(machine: str, path: str) -> str:
    return (MACHINES / machine / path).read_bytes().decode("utf-8", errors="replace")


# --- driver version -------------------------------------------------------------------------


def test_module_version_of_the_real_h100() -> None:
    assert parse_module_version(fixture_text("h100-580", "sys/module/nvidia/version")) == "580.159.04"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("540.4.0\n", "540.4.0"),
        ("  535.247.01  \n\n", "535.247.01"),
        ("", None),
        ("\n\n", None),
        ("not a version\n", None),
        ("580.159.04 extra\n", None),
        ("\ufffd\ufffd580\n", None),
    ],
)
def test_module_version_forms(text: str, expected: str | None) -> None:
    assert parse_module_version(text) == expected


def test_proc_version_of_the_real_h100_open_module_banner() -> None:
    assert parse_proc_version(fixture_text("h100-580", "proc/driver/nvidia/version")) == "580.159.04"


@pytest.mark.parametrize(
    ("banner", "expected"),
    [
        (
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.247.01  Sat Apr 19 13:40:25 UTC 2025\n"
            "GCC version:  gcc version 11.4.0 (Ubuntu 11.4.0-1ubuntu1~22.04)\n",
            "535.247.01",
        ),
        (
            "NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  540.4.0  Release Build  "
            "(buildbrain@mobile-u64-6336-d8000)  Tue Jan  7 17:35:12 PST 2025\n",
            "540.4.0",
        ),
        (
            "NVRM version: NVIDIA UNIX aarch64 Kernel Module  470.82.01  Wed Oct 27 21:44:44 UTC 2021\n",
            "470.82.01",
        ),
        ("GCC version:  gcc version 12.3.0\n", None),
        ("NVRM version: something unexpected\n", None),
        ("", None),
        ("\ufffd\ufffdNVRM garbage 1.2.3\n", None),
    ],
)
def test_proc_version_forms(banner: str, expected: str | None) -> None:
    assert parse_proc_version(banner) == expected


def test_proc_version_does_not_take_the_gcc_version() -> None:
    text = "GCC version:  gcc version 12.3.0\nNVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.95.05  Release\n"
    assert parse_proc_version(text) == "580.95.05"


# --- /proc/driver/nvidia/gpus/*/information --------------------------------------------------


def test_gpu_information_of_the_real_h100() -> None:
    fields = parse_gpu_information(
        fixture_text("h100-580", "proc/driver/nvidia/gpus/0000:00:06.0/information")
    )
    assert fields["Model"] == "NVIDIA H100 80GB HBM3"
    assert fields["GPU UUID"] == H100_UUID
    assert fields["Bus Location"] == "0000:00:06.0"
    assert fields["GPU Excluded"] == "No"


def test_gpu_information_empty_and_junk() -> None:
    assert parse_gpu_information("") == {}
    assert parse_gpu_information("no colon here\n:\n\ufffd\n") == {}


# --- nvidia-smi query --------------------------------------------------------------------------


def test_smi_query_of_the_h100_fixture() -> None:
    rows = parse_smi_query(fixture_text("h100-580", "nvidia-smi.csv"))
    assert rows == [
        SmiRow(
            index=0,
            name="NVIDIA H100 80GB HBM3",
            compute_capability=ComputeCapability(9, 0),
            driver_version="580.159.04",
            pci_bus_id="0000:00:06.0",
            uuid=H100_UUID,
        )
    ]


def test_smi_query_skips_the_real_files_other_columns_and_header() -> None:
    # The real capture has a header and 7 columns (pci.device_id, memory.total): none is our row.
    assert parse_smi_query(REAL_H100_QUERY_CSV) == []


def test_smi_query_not_available_values_become_none() -> None:
    rows = parse_smi_query("0, NVIDIA A100-SXM4-40GB, [N/A], [N/A], [Not Supported], N/A\n")
    assert rows == [SmiRow(0, "NVIDIA A100-SXM4-40GB", None, None, None, None)]


def test_smi_query_keeps_good_rows_among_junk() -> None:
    text = (
        "index, name, compute_cap, driver_version, pci.bus_id, uuid\n"
        "Unable to determine the device handle for GPU0000:01:00.0: Unknown Error\n"
        "0, NVIDIA GeForce RTX 4090, 8.9, 580.95.05, 00000000:01:00.0, GPU-aaaa\n"
        "x, NVIDIA GeForce RTX 5090, 12.0, 580.95.05, 00000000:02:00.0, GPU-bbbb\n"
        "2, NVIDIA GeForce RTX 5090, twelve, 580.95.05, 00000000:03:00.0, GPU-cccc\n"
        "3, [N/A], 12.0, 580.95.05, 00000000:04:00.0, GPU-dddd\n"
        "\ufffd\ufffd\x00, \ufffd\n"
        "\n"
        "4, NVIDIA GeForce RTX 5090, 12.0, 580.95.05, 00000000:05:00.0, GPU-eeee\n"
    )
    rows = parse_smi_query(text)
    assert [(row.index, row.name, str(row.compute_capability)) for row in rows] == [
        (0, "NVIDIA GeForce RTX 4090", "8.9"),
        (4, "NVIDIA GeForce RTX 5090", "12.0"),
    ]


def test_smi_query_of_non_utf8_bytes_decoded_with_replacement() -> None:
    raw = b"\xff\xfe\x80garbage\n0, NVIDIA H100 80GB HBM3, 9.0, 580.159.04, 00000000:00:06.0, GPU-c8\n\xc3\x28\n"
    rows = parse_smi_query(raw.decode("utf-8", errors="replace"))
    assert [row.name for row in rows] == ["NVIDIA H100 80GB HBM3"]


def test_smi_query_empty() -> None:
    assert parse_smi_query("") == []


_names = st.text(
    alphabet=st.characters(whitelist_categories=("Lu", "Ll", "Nd"), whitelist_characters=" -"), min_size=1
).filter(lambda name: name.strip() == name and name != "N/A")
_rows = st.builds(
    SmiRow,
    index=st.integers(min_value=0, max_value=64),
    name=_names,
    compute_capability=st.none() | st.builds(ComputeCapability, st.integers(1, 15), st.integers(0, 9)),
    driver_version=st.none() | st.from_regex(r"\A[1-9]\d{2}\.\d{1,3}(\.\d{2})?\Z"),
    pci_bus_id=st.none() | st.from_regex(r"\A0000:[0-9a-f]{2}:[0-1][0-9a-f]\.[0-7]\Z"),
    uuid=st.none() | st.from_regex(r"\AGPU-[0-9a-f]{8}-[0-9a-f]{4}\Z"),
)


@given(st.lists(_rows, max_size=8))
def test_smi_query_round_trips_what_nvidia_smi_prints(rows: list[SmiRow]) -> None:
    def cell(value: object) -> str:
        return "[N/A]" if value is None else str(value)

    text = "".join(
        f"{row.index}, {row.name}, {cell(row.compute_capability)}, {cell(row.driver_version)}, "
        f"{cell('0000' + row.pci_bus_id.upper() if row.pci_bus_id else None)}, {cell(row.uuid)}\n"
        for row in rows
    )
    assert parse_smi_query(text) == rows


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("00000000:3B:00.0", "0000:3b:00.0"),
        ("0000:00:06.0", "0000:00:06.0"),
        ("00000001:C1:00.1", "0001:c1:00.1"),
        ("3B:00.0", None),
        ("", None),
        ("0000:00:06.8", None),
    ],
)
def test_normalize_bus_id(text: str, expected: str | None) -> None:
    assert normalize_bus_id(text) == expected


# --- model name -> compute capability ---------------------------------------------------------

SECTION_4 = [
    ("NVIDIA GB10", "12.1"),
    ("NVIDIA GeForce RTX 5090", "12.0"),
    ("NVIDIA GeForce RTX 5080", "12.0"),
    ("NVIDIA GeForce RTX 5070 Ti", "12.0"),
    ("NVIDIA GeForce RTX 5070", "12.0"),
    ("NVIDIA GeForce RTX 5060", "12.0"),
    ("NVIDIA RTX PRO 6000 Blackwell Workstation Edition", "12.0"),
    ("NVIDIA B300 SXM6 AC", "10.3"),
    ("NVIDIA GB300", "10.3"),
    ("NVIDIA B200", "10.0"),
    ("NVIDIA GB200", "10.0"),
    ("NVIDIA H100 80GB HBM3", "9.0"),
    ("NVIDIA H100 PCIe", "9.0"),
    ("NVIDIA H200", "9.0"),
    ("NVIDIA GH200 480GB", "9.0"),
    ("NVIDIA GeForce RTX 4090", "8.9"),
    ("NVIDIA GeForce RTX 4080 SUPER", "8.9"),
    ("NVIDIA GeForce RTX 4070", "8.9"),
    ("NVIDIA GeForce RTX 4060 Laptop GPU", "8.9"),
    ("NVIDIA L4", "8.9"),
    ("NVIDIA L40", "8.9"),
    ("NVIDIA L40S", "8.9"),
    ("NVIDIA RTX 6000 Ada Generation", "8.9"),
    ("Orin (nvgpu)", "8.7"),
    ("NVIDIA Jetson AGX Orin", "8.7"),
    ("NVIDIA GeForce RTX 3090", "8.6"),
    ("NVIDIA GeForce RTX 3080", "8.6"),
    ("NVIDIA GeForce RTX 3070", "8.6"),
    ("NVIDIA GeForce RTX 3060", "8.6"),
    ("NVIDIA A10", "8.6"),
    ("NVIDIA A40", "8.6"),
    ("NVIDIA RTX A6000", "8.6"),
    ("NVIDIA A100-SXM4-40GB", "8.0"),
    ("NVIDIA A100 80GB PCIe", "8.0"),
    ("NVIDIA A30", "8.0"),
    ("Tesla T4", "7.5"),
    ("NVIDIA GeForce RTX 2080", "7.5"),
    ("NVIDIA GeForce RTX 2070", "7.5"),
    ("NVIDIA GeForce RTX 2060", "7.5"),
    ("NVIDIA GeForce GTX 1660", "7.5"),
    ("Quadro RTX 8000", "7.5"),
    ("Tesla V100-SXM2-16GB", "7.0"),
    ("NVIDIA TITAN V", "7.0"),
    ("NVIDIA GeForce GTX 1080 Ti", "6.1"),
    ("NVIDIA GeForce GTX 1080", "6.1"),
    ("NVIDIA GeForce GTX 1070", "6.1"),
    ("NVIDIA GeForce GTX 1060 6GB", "6.1"),
    ("Tesla P40", "6.1"),
    ("Tesla P4", "6.1"),
    ("Tesla P100-PCIE-16GB", "6.0"),
]

OTHERS = [
    ("NVIDIA A10G", "8.6"),
    ("NVIDIA A800-SXM4-80GB", "8.0"),
    ("NVIDIA H800", "9.0"),
    ("NVIDIA H20", "9.0"),
    ("NVIDIA RTX A4000", "8.6"),
    ("NVIDIA RTX A2000 12GB", "8.6"),
    ("NVIDIA RTX A1000 Laptop GPU", "8.6"),
    ("Quadro RTX 6000", "7.5"),
    ("Quadro P6000", "6.1"),
    ("Quadro GP100", "6.0"),
    ("Quadro GV100", "7.0"),
    ("Tesla K80", "3.7"),
    ("NVIDIA TITAN RTX", "7.5"),
    ("NVIDIA TITAN Xp", "6.1"),
    ("NVIDIA TITAN X (Pascal)", "6.1"),
    ("NVIDIA GeForce GTX TITAN X", "5.2"),
    ("NVIDIA GeForce RTX 3050", "8.6"),
    ("NVIDIA GeForce RTX 3060 Ti", "8.6"),
    ("NVIDIA GeForce RTX 2080 Ti", "7.5"),
    ("NVIDIA GeForce GTX 1650", "7.5"),
    ("NVIDIA GeForce GTX 1660 SUPER", "7.5"),
    ("NVIDIA Jetson AGX Xavier", "7.2"),
    ("NVIDIA B100", "10.0"),
    ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "12.0"),
    ("NVIDIA GeForce RTX 5090 D", "12.0"),
    ("NVIDIA GeForce RTX 4090 D", "8.9"),
    ("NVIDIA RTX 2000 Ada Generation Laptop GPU", "8.9"),
    ("NVIDIA RTX 5000 Ada Generation", "8.9"),
    ("NVIDIA T1000 8GB", "7.5"),
    ("  nvidia   geforce\trtx  5090 ", "12.0"),
]


@pytest.mark.parametrize(("name", "capability"), SECTION_4 + OTHERS)
def test_model_name_table(name: str, capability: str) -> None:
    assert lookup_compute_capability(name) == ComputeCapability.parse(capability)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("NVIDIA A1000", None),  # "A100" must not match inside "A1000"
        ("NVIDIA A100", "8.0"),
        ("NVIDIA A10", "8.6"),  # "A10" must not be read as "A100" and vice versa
        ("NVIDIA H20", "9.0"),
        ("NVIDIA L4", "8.9"),  # not L40's row, same value but reached by its own pattern
        ("Tesla P4", "6.1"),
        ("Tesla P100-SXM2-16GB", "6.0"),  # not P4/P40
        ("NVIDIA GB10", "12.1"),  # not GB100/GB200
        ("NVIDIA GB200", "10.0"),
        ("NVIDIA GB300", "10.3"),
        ("NVIDIA RTX 6000 Ada Generation", "8.9"),  # not Quadro RTX 6000 (7.5)
        ("NVIDIA RTX PRO 6000 Blackwell", "12.0"),  # not RTX 6000 Ada
        ("NVIDIA RTX A6000", "8.6"),
        ("Quadro RTX 6000", "7.5"),
        ("Tesla V100S-PCIE-32GB", "7.0"),
        ("NVIDIA Graphics Device", None),
        ("", None),
        ("\ufffd\ufffd", None),
    ],
)
def test_model_name_table_tricky_names(name: str, expected: str | None) -> None:
    assert lookup_compute_capability(name) == (ComputeCapability.parse(expected) if expected else None)


def test_model_name_table_values_are_capabilities() -> None:
    for _pattern, capability in GPU_NAME_TABLE:
        parsed = ComputeCapability.parse(capability)
        assert str(parsed) == capability


# --- AMD ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "gfx"),
    [
        (110000, "gfx1100"),
        (90006, "gfx906"),
        (90010, "gfx90a"),
        (90008, "gfx908"),
        (120001, "gfx1201"),
        (100300, "gfx1030"),
        (90402, "gfx942"),
        (90500, "gfx950"),
        (110501, "gfx1151"),
        (90000, "gfx900"),
        (0, None),
        (-1, None),
    ],
)
def test_gfx_target(version: int, gfx: str | None) -> None:
    assert gfx_target(version) == gfx


def test_kfd_properties_of_a_gpu_and_a_cpu_node() -> None:
    gpu = parse_kfd_properties(fixture_text("amd-gfx1100", "sys/class/kfd/kfd/topology/nodes/1/properties"))
    cpu = parse_kfd_properties(fixture_text("amd-gfx1100", "sys/class/kfd/kfd/topology/nodes/0/properties"))
    assert gpu["gfx_target_version"] == 110000
    assert gpu["vendor_id"] == 4098
    assert cpu["gfx_target_version"] == 0
    assert cpu["cpu_cores_count"] == 16


def test_kfd_properties_skip_junk_lines() -> None:
    text = "gfx_target_version 90010\nbroken\nname with spaces 3\nsimd_count abc\n\ufffd 1\n"
    assert parse_kfd_properties(text) == {"gfx_target_version": 90010, "\ufffd": 1}


def test_amd_pci_address_and_uuid() -> None:
    assert pci_bus_id({"location_id": 0x4300, "domain": 0}) == "0000:43:00.0"
    assert pci_bus_id({"location_id": 0x0309, "domain": 1}) == "0001:03:01.1"
    assert pci_bus_id({}) is None
    assert rocm_uuid({"unique_id": 0xB64C4B0A1E2F3D31}) == "GPU-b64c4b0a1e2f3d31"
    assert rocm_uuid({"unique_id": 0}) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("6.4.1-120\n", "6.4.1"), ("7.0.0\n", "7.0.0"), ("6.2\n", "6.2"), ("", None), ("garbage\n", None)],
)
def test_rocm_version(text: str, expected: str | None) -> None:
    assert parse_rocm_version(text) == expected


# --- NVML, platform -----------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "text"), [(13000, "13.0"), (12080, "12.8"), (12020, "12.2"), (0, None)])
def test_nvml_cuda_driver_version(value: int, text: str | None) -> None:
    assert format_cuda_driver_version(value) == text


@pytest.mark.parametrize(
    ("machine", "system", "arch"),
    [
        ("AMD64", "windows", "x86_64"),
        ("x86_64", "linux", "x86_64"),
        ("arm64", "darwin", "arm64"),
        ("aarch64", "linux", "aarch64"),
        ("arm64", "linux", "aarch64"),
        ("ARM64", "windows", "arm64"),
        ("ppc64le", "linux", "ppc64le"),
    ],
)
def test_normalize_arch(machine: str, system: str, arch: str) -> None:
    assert normalize_arch(machine, system) == arch


def test_apple_silicon_has_one_mps_gpu_and_intel_macs_none() -> None:
    assert read_apple("darwin", "arm64") == (
        Gpu(vendor="apple", index=0, name="Apple silicon GPU (MPS)", source="platform"),
    )
    assert read_apple("darwin", "x86_64") == ()
    assert read_apple("linux", "aarch64") == ()


# --- CUDA_VISIBLE_DEVICES and friends ---------------------------------------------------------

UUIDS = (
    "GPU-c8ea2d70-7899-0bb0-f1ff-006c6ba7f34d",
    "GPU-c8ea9999-1111-2222-3333-444444444444",
    "GPU-0badf00d-1111-2222-3333-444444444444",
)
NVIDIA = tuple(
    Gpu(
        vendor="nvidia",
        index=i,
        name="NVIDIA H100 80GB HBM3",
        compute_capability=ComputeCapability(9, 0),
        uuid=u,
    )
    for i, u in enumerate(UUIDS)
)
AMD = tuple(Gpu(vendor="amd", index=i, name=f"AMD GPU gfx90a #{i}", gfx="gfx90a") for i in range(4))


def indexes(gpus: tuple[Gpu, ...], vendor: str = "nvidia") -> list[int]:
    return [gpu.index for gpu in gpus if gpu.vendor == vendor]


@pytest.mark.parametrize(
    ("value", "visible"),
    [
        ("0,1,2", [0, 1, 2]),
        ("2,0", [0, 2]),  # original indexes and order are kept
        ("0,7,1", [0]),  # enumeration stops at the first invalid entry
        ("-1", []),
        ("1,-1,2", [1]),
        ("", []),
        ("  ", []),
        (" 1 , 2 ", [1, 2]),
        ("GPU-0badf00d", [2]),  # a unique UUID prefix
        ("GPU-C8EA2D70-7899-0BB0-F1FF-006C6BA7F34D", [0]),
        ("GPU-c8ea,2", []),  # ambiguous prefix: invalid, so nothing after it either
        ("2,GPU-ffff,0", [2]),
        ("1,1", [1]),
        ("nonsense", []),
    ],
)
def test_cuda_visible_devices(value: str, visible: list[int]) -> None:
    shown, hidden, _notes = filter_visible(NVIDIA, {"CUDA_VISIBLE_DEVICES": value})
    assert indexes(shown) == visible
    assert hidden == 3 - len(visible)


def test_cuda_visible_devices_unset_shows_all_without_notes() -> None:
    assert filter_visible(NVIDIA, {}) == (NVIDIA, 0, ())


def test_cuda_visible_devices_notes_say_why() -> None:
    _shown, _hidden, notes = filter_visible(NVIDIA, {"CUDA_VISIBLE_DEVICES": "0,7,1"})
    assert notes == ("CUDA_VISIBLE_DEVICES entry '7' names no single GPU; it and all after it are ignored",)
    _shown, _hidden, notes = filter_visible(NVIDIA, {"CUDA_VISIBLE_DEVICES": ""})
    assert notes == ("CUDA_VISIBLE_DEVICES is empty: no GPU is visible to it",)


def test_mig_entries() -> None:
    old_style = f"MIG-{UUIDS[1]}/1/0"
    shown, hidden, notes = filter_visible(NVIDIA, {"CUDA_VISIBLE_DEVICES": old_style})
    assert (indexes(shown), hidden, notes) == ([1], 2, ())

    new_style = "MIG-5c89a0a8-d2d3-5c4e-9a1b-0123456789ab"
    shown, hidden, notes = filter_visible(NVIDIA, {"CUDA_VISIBLE_DEVICES": f"{new_style},2"})
    # nvidia-smi -L was not asked (no mig_parents): every GPU here has one capability, so GPU 0 stands for it
    assert indexes(shown) == [0, 2]
    assert notes == (
        f"CUDA_VISIBLE_DEVICES entry {new_style!r} is a MIG instance: its parent is not known (nvidia-smi -L did "
        f"not list it), but every GPU here is compute capability {NVIDIA[0].compute_capability}",
    )
    shown, _hidden, _notes = filter_visible(NVIDIA, {"CUDA_VISIBLE_DEVICES": new_style}, {new_style.lower(): UUIDS[1].lower()})
    assert indexes(shown) == [1]


def test_index_order_note_only_for_mixed_gpus_without_pci_bus_order() -> None:
    mixed = (
        Gpu(vendor="nvidia", index=0, name="NVIDIA GeForce RTX 4090", uuid="GPU-4090"),
        Gpu(vendor="nvidia", index=1, name="NVIDIA GeForce RTX 5090", uuid="GPU-5090"),
    )
    _shown, _hidden, notes = filter_visible(mixed, {"CUDA_VISIBLE_DEVICES": "1"})
    assert any("CUDA_DEVICE_ORDER=PCI_BUS_ID" in note for note in notes)
    env = {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert filter_visible(mixed, env)[2] == ()
    assert filter_visible(mixed, {"CUDA_VISIBLE_DEVICES": "GPU-5090"})[2] == ()
    assert filter_visible(NVIDIA, {"CUDA_VISIBLE_DEVICES": "1"})[2] == ()


def test_cuda_visible_devices_leaves_amd_alone_when_hip_is_set() -> None:
    env = {"CUDA_VISIBLE_DEVICES": "", "HIP_VISIBLE_DEVICES": "0,1,2,3"}
    shown, hidden, _notes = filter_visible(NVIDIA + AMD, env)
    assert indexes(shown, "nvidia") == []
    assert indexes(shown, "amd") == [0, 1, 2, 3]
    assert hidden == 3


@pytest.mark.parametrize(
    ("env", "visible"),
    [
        ({"ROCR_VISIBLE_DEVICES": "1,3"}, [1, 3]),
        ({"ROCR_VISIBLE_DEVICES": "0,9,1"}, [0]),
        ({"HIP_VISIBLE_DEVICES": "2"}, [2]),
        ({"HIP_VISIBLE_DEVICES": ""}, []),
        # HIP indexes the GPUs ROCR left: the second of ROCR's 1,2,3 is GPU 2
        ({"ROCR_VISIBLE_DEVICES": "1,2,3", "HIP_VISIBLE_DEVICES": "1"}, [2]),
        ({"ROCR_VISIBLE_DEVICES": "3", "HIP_VISIBLE_DEVICES": "1"}, []),
        # HIP honours CUDA_VISIBLE_DEVICES when HIP_VISIBLE_DEVICES is unset
        ({"CUDA_VISIBLE_DEVICES": "3"}, [3]),
        ({"CUDA_VISIBLE_DEVICES": "0", "HIP_VISIBLE_DEVICES": "1"}, [1]),
        ({}, [0, 1, 2, 3]),
    ],
)
def test_amd_visible_devices(env: dict[str, str], visible: list[int]) -> None:
    shown, hidden, _notes = filter_visible(AMD, env)
    assert indexes(shown, "amd") == visible
    assert hidden == 4 - len(visible)


def test_apple_gpu_is_not_filtered() -> None:
    apple = read_apple("darwin", "arm64")
    assert filter_visible(apple, {"CUDA_VISIBLE_DEVICES": ""}) == (apple, 0, ())
