"""Finding the Python a base is built for, and naming it (``cp311``, ``linux_x86_64``)."""

from __future__ import annotations

import sys
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerenv.errors import BadInput

_IMPLEMENTATION_TAGS = {"cpython": "cp", "pypy": "pp", "graalpy": "gp"}


@dataclass(frozen=True)
class Interpreter:
    executable: Path  # the system interpreter, never a virtualenv's
    implementation: str  # "cpython"
    version: tuple[int, int, int]
    platform: str  # "linux_x86_64"

    @property
    def tag(self) -> str:
        prefix = _IMPLEMENTATION_TAGS.get(self.implementation, self.implementation[:2])
        return f"{prefix}{self.version[0]}{self.version[1]}"

    @property
    def minor(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))

    def to_json(self) -> dict[str, str]:
        """The manifest's ``python``: ``tag`` is written for readers that do not derive it."""
        return {
            "tag": self.tag,
            "platform": self.platform,
            "version": self.version_text,
            "implementation": self.implementation,
            "executable": str(self.executable),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Interpreter:
        """Read :meth:`to_json`'s document back; raises ``KeyError``/``ValueError``/``TypeError``."""
        major, minor, *micro = (int(part) for part in str(data["version"]).split(".")[:3])
        return cls(
            executable=Path(str(data["executable"])),
            implementation=str(data["implementation"]),
            version=(major, minor, micro[0] if micro else 0),
            platform=str(data["platform"]),
        )


def platform_tag(sysconfig_platform: str) -> str:
    """``sysconfig.get_platform()`` as wheel tags spell it: ``linux-x86_64`` -> ``linux_x86_64``."""
    return sysconfig_platform.replace("-", "_").replace(".", "_")


def current() -> Interpreter:
    """The interpreter running layerenv, resolved to its system executable."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return Interpreter(
        executable=Path(base),
        implementation=sys.implementation.name,
        version=(sys.version_info.major, sys.version_info.minor, sys.version_info.micro),
        platform=platform_tag(sysconfig.get_platform()),
    )


def check_flag(flag: str | None) -> str | None:
    """``--python``'s value: not given (None) or a spec; an empty one is a mistake, not "the default"."""
    if flag is not None and not flag.strip():
        raise BadInput(f"--python {flag!r} is empty: give a version such as 3.12 or a path, or leave it out")
    return flag


def find(spec: str, env: Mapping[str, str]) -> Interpreter:
    """An interpreter by version spec (``3.12``) or path, through virtualenv's discovery."""
    if not spec:
        return current()
    from virtualenv.discovery.builtin import get_interpreter

    try:
        info = get_interpreter(spec, [], env=dict(env))
    except RuntimeError as error:  # virtualenv ran the file and it did not answer as a Python
        reason = " ".join(str(error).split())
        raise BadInput(f"{spec!r} is not a Python interpreter ({reason}); give a version such as 3.12 "
                       "or the path of a python executable") from None
    if info is None:
        raise BadInput(f"no Python matching {spec!r} was found (give a version such as 3.12 or a path)")
    executable = info.system_executable or info.executable
    return Interpreter(
        executable=Path(executable),
        implementation=info.implementation.lower(),
        version=(info.version_info.major, info.version_info.minor, info.version_info.micro),
        platform=platform_tag(info.sysconfig_platform or f"{info.platform}-{info.machine}"),
    )
