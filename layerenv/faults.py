"""Fault injection for crash-safety tests, only honoured when ``LAYERENV_FAULTS_ENABLED=1`` is set too.

``LAYERENV_FAULT=<point>`` kills the process there with SIGKILL (as ``kill -9`` would);
``LAYERENV_FAULT=enospc:<point>`` makes the disk look full there: the operation fails with a one-line
error (exit 1), and the code around the checkpoint cleans up as it would after a real ``ENOSPC``.
Nothing but the tests sets these.
"""

from __future__ import annotations

import errno
import os
import signal
import sys

ENOSPC_PREFIX = "enospc:"


def checkpoint(point: str) -> None:
    if os.environ.get("LAYERENV_FAULTS_ENABLED") != "1":
        return
    fault = os.environ.get("LAYERENV_FAULT", "")
    if fault == point:
        if sys.platform == "win32":  # no SIGKILL there; any signal but CTRL_* ends the process at once
            os.kill(os.getpid(), signal.SIGTERM)
        else:
            os.kill(os.getpid(), signal.SIGKILL)
    if fault == ENOSPC_PREFIX + point:
        from layerenv.errors import OperationFailed

        raise OperationFailed(f"{os.strerror(errno.ENOSPC).lower()} (injected at {point})")
