"""When the variant's index cannot be reached: say so at once, with what would work on this machine.

Without the index a base can only come from find-links, a mirror, or the installer's own
configuration (PyPI's Linux torch carries no variant label, so it never fits), or be adopted from a
torch already installed here. Everything looked at is cheap: a few small files, no installer run.
"""

from __future__ import annotations

from dataclasses import dataclass

from layerenv.base.adoptable import TorchInstall
from layerenv.choice.variant import Variant

MOST_SUGGESTIONS = 3
SOURCE_OPTIONS = "LAYERENV_FIND_LINKS=<directory of wheels>, LAYERENV_INDEX_URL=<mirror>/{variant}"


@dataclass(frozen=True)
class Unreachable:
    """The index that did not answer, why, and what this machine offers instead."""

    variant: Variant
    index_url: str  # redacted
    reason: str
    installs: tuple[TorchInstall, ...]  # every torch install found, those that fit first

    @property
    def fitting(self) -> tuple[TorchInstall, ...]:
        return tuple(install for install in self.installs if install.fits)[:MOST_SUGGESTIONS]

    def what_would_work(self) -> str:
        """``set LAYERENV_FIND_LINKS=..., LAYERENV_INDEX_URL=..., or layerenv base --adopt P (...)``."""
        adopt = [install.suggestion() for install in self.fitting]
        if not adopt:
            return f"set {SOURCE_OPTIONS}, or layerenv base --adopt PATH for an environment that has a fitting torch"
        return f"set {SOURCE_OPTIONS}, or {'; or '.join(adopt)}"

    def headline(self) -> str:
        return f"the {self.variant} index {self.index_url} is unreachable ({self.reason})"

    def warning(self, installer: str) -> str:
        """Going on with the other sources layerenv or the installer were given."""
        return (
            f"{self.headline()}; trying find-links and {installer}'s own configuration (only +{self.variant} "
            f"builds); if that finds nothing: {self.what_would_work()}"
        )

    def dead_end(self, installer: str) -> str:
        """Nothing else to try: neither layerenv nor the installer offers another source."""
        return (
            f"{self.headline()} and neither layerenv nor {installer}'s configuration offers another source of "
            f"{self.variant} builds; {self.what_would_work()}"
        )

    def log_lines(self) -> list[str]:
        """Everything found, fitting or not, for the log (the terminal gets the best few)."""
        lines = [self.headline()]
        lines += [f"torch found: {install.suggestion()}" for install in self.installs] or ["torch found: none"]
        return lines

