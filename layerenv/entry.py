"""The console-script entry point's old address, kept for venvs made by earlier layerenv releases.

Their per-node boot module runs ``from layerenv.entry import main``; the entry point itself is
:mod:`layerenv.cli.entry`.
"""

from layerenv.cli.entry import main

__all__ = ["main"]
