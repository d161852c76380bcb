"""Fault injection for crash-safety tests: ``LAYERENV_FAULT=<point>`` kills the process there.

Only honoured when ``LAYERENV_FAULTS_ENABLED=1`` is set too, which nothing but the tests does.
"""

from __future__ import annotations

import os
import signal


def checkpoint(point: str) -> None:
    if os.environ.get("LAYERENV_FAULTS_ENABLED") != "1":
        return
    if os.environ.get("LAYERENV_FAULT") == point:
        os.kill(os.getpid(), signal.SIGKILL)
