"""What identifies this machine's reading, taken in a millisecond with ``os`` alone: the lines that change
whenever what :func:`layerenv.machine.reader.read_machine` would find could change.

A driver loaded, upgraded or reloaded changes its version files; a GPU added, removed or handed to
this container changes the driver's GPU folders, ``/dev`` and the PCI bus; a MIG layout changes the
driver's capability folders; an AMD topology change bumps KFD's generation; a reboot changes the boot
id. A replayed machine (``LAYERENV_SYSROOT``) is identified by the stat of every file under it. An
``nvidia-smi`` on ``PATH`` is part of it too, since it answers where NVML does not.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:  # collections.abc costs the start-up path ~1-3 ms
    from collections.abc import Mapping

_LIVE_TEXT = ("/proc/sys/kernel/random/boot_id", "/sys/module/nvidia/version", "/proc/driver/nvidia/version",
              "/sys/class/kfd/kfd/topology/generation_id", "/opt/rocm/.info/version")
_LIVE_LISTINGS = ("/proc/driver/nvidia/gpus", "/sys/class/kfd/kfd/topology/nodes", "/sys/bus/pci/devices",
                  "/dev/dri")
_CAPABILITIES = "/proc/driver/nvidia/capabilities"  # gpuN/mig/giM/ciK: the MIG layout
_DEVICE_PREFIXES = ("nvidia", "kfd")


def stat_signature(path: str, *, follow: bool = False, newest: list[int] | None = None) -> str:
    """What any change to ``path`` changes: its inode and ctime ("-" when it is not there). The kernel
    sets ctime on every change of content, mode, owner or links (of a folder: every entry added,
    removed or renamed), and nothing sets it back. ``newest[0]`` is raised to the path's last change,
    for a caller that must know how recent the newest one is."""
    try:
        info = os.stat(path) if follow else os.lstat(path)
    except OSError:
        return "-"
    if newest is not None and info.st_ctime_ns > newest[0]:
        newest[0] = info.st_ctime_ns
    return f"{info.st_ino}:{info.st_ctime_ns}"


def machine_lines(env: Mapping[str, str], newest: list[int]) -> list[str] | None:
    """The lines identifying the machine a reading would see; None where there is no cheap identity
    (not Linux), so the reading is always taken. ``newest[0]``: raised to the newest change of a file
    identified by its stat."""
    if not sys.platform.startswith("linux"):
        return None
    uname = os.uname()
    lines = [f"uname {uname.sysname} {uname.release} {uname.machine} {uname.nodename}"]
    sysroot = env.get("LAYERENV_SYSROOT") or "/"
    if os.path.realpath(sysroot) != "/":
        lines += _tree_lines(sysroot, newest)
    else:
        lines += [f"{path} {_text(path)}" for path in _LIVE_TEXT]
        lines += [f"{path} {_listing(path)}" for path in _LIVE_LISTINGS]
        lines.append(f"/dev {_listing('/dev', _DEVICE_PREFIXES)}")
        lines += _tree_lines(_CAPABILITIES, None)
    lines.append(f"nvidia-smi {_on_path('nvidia-smi', env.get('PATH', ''), newest)}")
    return lines


def _text(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            return handle.read(4096).decode("utf-8", "replace").strip().replace("\n", "\\n")
    except OSError:
        return "-"


def _listing(path: str, prefixes: tuple[str, ...] = ()) -> str:
    try:
        names = os.listdir(path)
    except OSError:
        return "-"
    return "/".join(sorted(name for name in names if not prefixes or name.startswith(prefixes)))


def _tree_lines(root: str, newest: list[int] | None) -> list[str]:
    """Every path under ``root`` in a stable order, with its stat signature (only its name without ``newest``)."""
    lines = []
    for directory, folders, files in os.walk(root):
        folders.sort()
        for name in sorted(files) + folders:
            path = os.path.join(directory, name)
            lines.append(path if newest is None else f"{path} {stat_signature(path, newest=newest)}")
    return lines


def _on_path(name: str, search: str, newest: list[int]) -> str:
    for folder in search.split(os.pathsep):
        candidate = os.path.join(folder or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return f"{candidate} {stat_signature(candidate, follow=True, newest=newest)}"
    return "-"
