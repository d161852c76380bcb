"""The installer settings outside layerenv that change what pip and uv find: environment variables
and pip's configuration files, each with where it came from (credentials redacted).

Read directly, without running pip: ``pip config list`` costs a Python start; these are small files.
"""

from __future__ import annotations

import configparser
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from layerenv.urls import redact

PIP_VARIABLES = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX", "PIP_CONSTRAINT",
                 "PIP_CONFIG_FILE")
UV_VARIABLES = ("UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX", "UV_EXTRA_INDEX_URL", "UV_FIND_LINKS",
                "UV_NO_INDEX", "UV_OFFLINE")
PIP_KEYS = ("index-url", "extra-index-url", "find-links", "no-index", "constraint")
PIP_SECTIONS = ("global", "install", "download")
NOT_A_SOURCE = ("no-index", "no_index", "constraint", "config_file", "offline")
PYPI_INDEXES = frozenset({"https://pypi.org/simple", "https://pypi.org/simple/", "https://pypi.python.org/simple"})


@dataclass(frozen=True)
class InstallerSetting:
    installer: str  # "pip" or "uv"
    key: str  # "PIP_FIND_LINKS", "global.find-links", ...
    value: str  # redacted
    source: str  # "environment", or the config file's path

    def describe(self) -> str:
        return f"{self.key} = {self.value} ({self.source})"


def pip_config_files(env: Mapping[str, str], home: Path, prefix: Path | None = None) -> list[Path]:
    """pip's configuration files in the order pip reads them (later ones win), as ``pip config`` lists."""
    if env.get("PIP_CONFIG_FILE") == os.devnull:  # pip then reads no configuration file at all
        return []
    xdg_dirs = env.get("XDG_CONFIG_DIRS", "/etc/xdg").split(":")
    files = [Path(directory) / "pip" / "pip.conf" for directory in xdg_dirs if directory] + [Path("/etc/pip.conf")]
    config_home = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    files += [home / ".pip" / "pip.conf", config_home / "pip" / "pip.conf"]
    files.append((prefix or Path(sys.prefix)) / "pip.conf")
    if env.get("PIP_CONFIG_FILE"):
        files.append(Path(env["PIP_CONFIG_FILE"]))
    return files


def read_installer_settings(
    env: Mapping[str, str], home: Path, prefix: Path | None = None
) -> tuple[InstallerSetting, ...]:
    """Every setting that changes where pip or uv look for packages, in pip's reading order."""
    found: list[InstallerSetting] = []
    for path in pip_config_files(env, home, prefix):
        parser = configparser.RawConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError, OSError):
            continue
        for section in PIP_SECTIONS:
            for key in PIP_KEYS:
                if parser.has_option(section, key):
                    value = " ".join(parser.get(section, key).split())
                    found.append(InstallerSetting("pip", f"{section}.{key}", _redact_all(value), str(path)))
    for name in PIP_VARIABLES:
        if env.get(name):
            found.append(InstallerSetting("pip", name, _redact_all(env[name]), "environment"))
    for name in UV_VARIABLES:
        if env.get(name):
            found.append(InstallerSetting("uv", name, _redact_all(env[name]), "environment"))
    return tuple(found)


def offers_other_sources(settings: tuple[InstallerSetting, ...], installer: str) -> bool:
    """Whether the installer's own settings point anywhere but PyPI (find-links, a mirror, extra indexes).

    PyPI's Linux torch carries no variant label, so a base build cannot use it; with nothing else
    configured, probing the installer can only fail, slowly.
    """
    for setting in settings:
        if setting.installer != installer or setting.key.lower().endswith(NOT_A_SOURCE):
            continue
        if any(value not in PYPI_INDEXES for value in setting.value.split()):
            return True
    return False


def _redact_all(value: str) -> str:
    return " ".join(redact(item) for item in value.split())
