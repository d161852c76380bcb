"""How long-running library calls tell a person what they are doing (the CLI supplies one)."""

from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    def step(self, text: str) -> None: ...

    def warn(self, text: str) -> None: ...
