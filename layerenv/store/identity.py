"""Names in the store and who is asking: safe names, this node's name, this boot."""

from __future__ import annotations

import platform
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path

from layerenv.errors import BadInput

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")


def check_name(name: str, what: str) -> str:
    """Refuse a name that could escape its directory or reach a shell: ``../``, ``/``, spaces."""
    if not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise BadInput(f"{what} {name!r} is not allowed: use letters, digits, '.', '_', '+', '-'")
    return name


@cache  # the same while this process lives; a lock taken per project venv asks every time
def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def host_name() -> str:
    """This machine's network name (``os.uname().nodename`` on POSIX; Windows has no ``os.uname``)."""
    return platform.node()


def node_name(env: Mapping[str, str]) -> str:
    configured = env.get("LAYERENV_NODE", "")
    if configured:
        try:
            return check_name(configured, "LAYERENV_NODE")
        except BadInput:
            raise BadInput(
                f"LAYERENV_NODE={configured!r} is not allowed: use letters, digits, '.', '_', '+', '-'"
            ) from None
    host = host_name().split(".")[0] or "localhost"
    return host if check_safe(host) else "host-" + host.encode().hex()[:32]


def check_safe(name: str) -> bool:
    try:
        check_name(name, "node")
    except BadInput:
        return False
    return True
