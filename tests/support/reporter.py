"""A Reporter (layerenv.reporter) for in-process tests: it keeps what it is told."""

from __future__ import annotations


class Recorder:
    def __init__(self) -> None:
        self.steps: list[str] = []
        self.warnings: list[str] = []

    def step(self, text: str) -> None:
        self.steps.append(text)

    def warn(self, text: str) -> None:
        self.warnings.append(text)

    def note(self, text: str) -> None:
        self.steps.append(text)
