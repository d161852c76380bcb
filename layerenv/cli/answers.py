"""Remembered answers of ``layerenv detect [--json]`` and ``layerenv base [--json]`` (a base reused).

Scripts, containers and shells call those two forms over and over, and their answer only changes when
their inputs do, so an answer once given is kept (``$LAYERENV_HOME/cache/answers/``) under a digest of
every input, and given again while that digest and the files it rests on are unchanged. The inputs:
the form; the interpreter and its version; where layerenv itself lies, and the stat of each of its
files and folders (an upgrade, an edit, a file added); the environment variables layerenv, the
installers, CUDA and ROCm read; the user, process and group ids; the content of every settings file
(the user's, ``LAYERENV_CONFIG``, the nearest project's); and this machine's identity
(:mod:`layerenv.machine.fingerprint`: boot id, driver versions, GPU folders, devices, the MIG layout).
A reused base's answer also rests on the store's folders, every base's manifest, the chosen base's
folders that the trust check reads, and this node's record, each by its stat; any change to one of
them and the question is asked in full again.

Each stat costs 2-3 us (looked up from its folder's descriptor, the kernel's own share ~1.6 us on a
2-core VM): under a millisecond for a built base, 6-9 ms for a base adopted from a venv of ~200
distributions (its trust check reads ~2,600 paths, and so must a remembered answer), against the
~100 ms of reading the machine with NVML and choosing a build through the release table.

Not remembered: a reading in which ``nvidia-smi`` failed or timed out (it may answer next time), a
driver with no GPU found, ``CUDA_VISIBLE_DEVICES`` naming MIG instances (asked of ``nvidia-smi``), a
store a settings file places elsewhere than the environment does, and inputs changed less than
:data:`SETTLE_NS` before the reading began (git's "racily clean" rule: a later change within the
same timestamp tick would not show). An answer file is used only when it, its folder and the store's
``cache`` folder belong to this user (or root) and no one else can write them; ``layerenv detect
--fresh`` reads the machine again.

This module imports ``marshal``, ``os``, ``sys``, ``time`` and ``_blake2`` only, on the path that answers
(with :mod:`layerenv.store.owned`, the ground it shares with a base's kept stubs).
"""

from __future__ import annotations

import marshal
import os
import sys
import time

from layerenv.config_paths import PROJECT_FILES, project_root, user_config_file
from layerenv.machine.fingerprint import machine_lines
from layerenv.store.owned import SETTLE_NS, prune, read_owned, trusted_folder, witness, write_owned

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:  # collections.abc costs the start-up path ~1-3 ms
    from collections.abc import Mapping, Sequence

#: Answer files kept; the oldest go first (each project tree, user and environment has its own).
KEEP = 64
_FORMAT = b"layerenv-answer 3\n"
_ENV_PREFIXES = ("LAYERENV_", "PYTORCH_", "CUDA_", "NVIDIA_", "HIP_", "ROCR_", "ROCM_", "HSA_", "GPU_", "PIP_",
                 "UV_", "XDG_")
_ENV_NAMES = ("PATH", "HOME", "LD_LIBRARY_PATH", "VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONPATH", "PYTHONHOME")
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: The largest answer file read: a larger one is not taken, and the question is asked in full.
_LARGEST = 1 << 22
clock = time.time_ns  # the one clock the settle rule reads (tests move it ahead)


def answers_dir(env: Mapping[str, str]) -> str | None:
    """Where the answers live: the store the environment names (``LAYERENV_HOME``, else the default
    store on Linux); None where only a settings file could say (the full CLI then answers)."""
    configured = env.get("LAYERENV_HOME")
    if configured:
        home = os.path.expanduser(configured)
    elif sys.platform.startswith("linux"):  # platformdirs' user_data_dir, without importing it
        data = env.get("XDG_DATA_HOME", "").strip() or os.path.join(os.path.expanduser("~"), ".local", "share")
        home = os.path.join(data, "layerenv")
    else:
        return None
    return os.path.join(home, "cache", "answers") if os.path.isabs(home) else None


def recall(form: str, env: Mapping[str, str], cwd: str) -> tuple[str, str] | None:
    """(stdout, stderr) of the answer remembered for these inputs, if every file it rests on is unchanged."""
    folder = answers_dir(env)
    if folder is None or not trusted_folder(folder):  # two lstats before the digest's hundred
        return None
    digest, _ = _digest(form, env, cwd)
    if digest is None:
        return None
    data = read_owned(os.path.join(folder, f"{form}-{digest}"), _LARGEST)
    if data is None or not data.startswith(_FORMAT):
        return None
    parsed = _parse(data[len(_FORMAT):])
    if parsed is None:
        return None
    groups, stats, stdout, stderr = parsed
    return (stdout, stderr) if _values_digest(witness(groups)) == stats else None


def remember(form: str, env: Mapping[str, str], cwd: str, stdout: str, stderr: str, started_ns: int,
             rests_on: Sequence[tuple[str, bool]] = ()) -> bool:
    """Keep an answer worked out from a reading begun at ``started_ns`` (by :data:`clock`), resting on
    the paths ``rests_on`` ((path, whether followed)); False (nothing kept) where it must not or cannot be.

    Kept only when every input last changed :data:`SETTLE_NS` before the reading began: an input
    changed during the reading may not be what the answer saw, and one changed just before it may
    change again within its timestamp tick unseen.
    """
    folder = answers_dir(env)
    if folder is None:
        return False
    if not os.path.isdir(os.path.dirname(os.path.dirname(folder))):
        return False  # no store yet: `detect` creates none
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)  # before the stats: creating it changes the store's cache
        if not trusted_folder(folder):
            return False
        witnesses = [*_code_witnesses(), *rests_on]
        if any("\n" in path for path, _ in witnesses):
            return False
        digest, newest = _digest(form, env, cwd)
        groups = _grouped(witnesses)
        values = witness(groups)
        if digest is None or max([newest, *values[1::2]]) >= started_ns - SETTLE_NS:
            return False
        head = [b"%d %d %s\n%s" % (len(names), follow, directory, b"".join(name + b"\n" for name in names))
                for directory, follow, names in groups]
        out, err = (text.encode("utf-8", "surrogateescape") for text in (stdout, stderr))
        body = b"".join([_FORMAT, b"W %d\n" % (len(groups) + sum(len(names) for _, _, names in groups)), *head,
                         b"S %s\n" % _values_digest(values).encode(), b"O %d\n" % len(out), out,
                         b"E %d\n" % len(err), err])
        write_owned(folder, f"{form}-{digest}", body)
        prune(folder, KEEP)
    except OSError:
        return False
    return True


def _digest(form: str, env: Mapping[str, str], cwd: str) -> tuple[str | None, int]:
    """The digest of every input, and the newest change of a file among them identified by its stat."""
    newest = [0]
    machine = machine_lines(env, newest)
    if machine is None:
        return None, 0
    lines = [f"form {form}", f"python {sys.executable} {sys.version}", f"ids {_ids()}", f"code {_PACKAGE}"]
    lines += [f"env {name}={value}" for name, value in sorted(env.items())
              if name.startswith(_ENV_PREFIXES) or name in _ENV_NAMES]
    root = project_root(cwd)
    files = [user_config_file(env), env.get("LAYERENV_CONFIG") or ""]
    files += [os.path.join(root, name) for name in PROJECT_FILES] if root else []
    lines += [f"file {path} {_content_digest(path)}" for path in files if path]
    lines += machine
    return _hash("\n".join(lines).encode("utf-8", "surrogateescape")), newest[0]


def _code_witnesses() -> list[tuple[str, bool]]:
    """layerenv's own files and folders: an upgrade, a reinstall or an edit (a file's ctime) asks again, and
    so does a file added or removed (its folder's ctime). Bytecode caches are left out: importing writes them."""
    witnesses = []
    folders = [_PACKAGE]
    while folders:
        folder = folders.pop()
        witnesses.append((folder, False))
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.endswith((".py", ".toml", ".json")):
                    witnesses.append((entry.path, False))
                elif entry.name != "__pycache__" and entry.is_dir(follow_symlinks=False):
                    folders.append(entry.path)
    return witnesses


def _content_digest(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return "-"
    return _hash(data)


def _ids() -> str:
    if sys.platform == "win32":  # no answers there (machine_lines): this only keeps the types whole
        return "-"
    return f"{os.geteuid()} {os.getegid()} {sorted(os.getgroups())}"


def _grouped(rests_on: Sequence[tuple[str, bool]]) -> list[tuple[bytes, bool, list[bytes]]]:
    """The paths by folder (and whether followed), in the order first met: each folder is opened once
    and its entries are looked up from it, not walked to from ``/`` again."""
    groups: dict[tuple[bytes, bool], list[bytes]] = {}
    for path, follow in rests_on:
        directory, name = os.path.split(os.fsencode(path))
        groups.setdefault((directory or b".", follow), []).append(name or b".")
    return [(directory, follow, names) for (directory, follow), names in groups.items()]


def _values_digest(values: list[int]) -> str:
    """The digest of numbers, packed by marshal's version 2 (a builtin module, so nothing to load; no
    back-references, so the same numbers give the same bytes): a tenth of what their ``repr`` costs."""
    return _hash(marshal.dumps(values, 2))


def _hash(data: bytes) -> str:
    try:
        from _blake2 import blake2b  # hashlib's own, without OpenSSL's start-up
    except ImportError:  # pragma: no cover - an interpreter built without it
        from hashlib import blake2b
    return blake2b(data, digest_size=16).hexdigest()


def _parse(data: bytes) -> tuple[list[tuple[bytes, bool, list[bytes]]], str, str, str] | None:
    """``W <n>`` and n lines: groups of ``<count> <0|1> <folder>`` followed by ``count`` names in it (each
    followed if 1); ``S <digest>``, then ``O <n>`` and ``E <n>`` each followed by that many bytes; None if cut
    or bent."""
    try:
        end = data.index(b"\n")
        if not data.startswith(b"W "):
            return None
        count = int(data[2:end])
        lines = data[end + 1:].split(b"\n", count + 1)
        if len(lines) != count + 2 or not lines[count].startswith(b"S "):
            return None
        groups = []
        position = 0
        while position < count:
            listed, follow, directory = lines[position].split(b" ", 2)
            after = position + 1 + int(listed)
            if follow not in (b"0", b"1") or not position < after <= count:
                return None
            groups.append((directory, follow == b"1", lines[position + 1:after]))
            position = after
        stats = lines[count][2:].decode("ascii")
        rest = lines[count + 1]
        texts = []
        position = 0
        for marker in (b"O ", b"E "):
            if not rest.startswith(marker, position):
                return None
            end = rest.index(b"\n", position)
            size = int(rest[position + 2:end])
            if end + 1 + size > len(rest):
                return None
            texts.append(rest[end + 1:end + 1 + size].decode("utf-8", "surrogateescape"))
            position = end + 1 + size
    except (ValueError, UnicodeDecodeError):
        return None
    return (groups, stats, texts[0], texts[1]) if position == len(rest) else None
