"""Where the settings files are, in ``os`` terms only: what :mod:`layerenv.config` reads, and what the
remembered answers of ``detect`` and ``base`` (:mod:`layerenv.cli.answers`) compare, without importing
a TOML parser or ``pathlib``."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:  # collections.abc costs the start-up path ~1-3 ms
    from collections.abc import Mapping

PROJECT_FILES = ("pyproject.toml", "layerenv.toml")  # in the order their layers apply


def user_config_file(env: Mapping[str, str]) -> str:
    """The user's ``layerenv.toml``: ``LAYERENV_USER_CONFIG``, else the platform's config folder."""
    override = env.get("LAYERENV_USER_CONFIG")
    if override:
        return override
    if sys.platform.startswith("linux"):  # platformdirs' answer, without importing it on the hot path
        config_home = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
        return os.path.join(config_home, "layerenv", "layerenv.toml")
    from platformdirs import user_config_dir

    return os.path.join(user_config_dir("layerenv"), "layerenv.toml")


def project_root(start: str) -> str | None:
    """The nearest directory at or above ``start`` (resolved) holding ``layerenv.toml`` or ``pyproject.toml``."""
    directory = os.path.realpath(start)
    while True:
        if any(os.path.isfile(os.path.join(directory, name)) for name in PROJECT_FILES):
            return directory
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent
