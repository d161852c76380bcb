"""Calls run in threads beside the caller, each handing back its value or its error when asked:
what ``concurrent.futures`` gives for a few calls, without importing it and the ``logging`` it
imports (~4 ms of the start of every base build)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")


class Pending(Generic[T]):
    """One call running in its own thread."""

    def __init__(self, function: Callable[..., T], args: tuple[object, ...], name: str) -> None:
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(function, args), name=name)
        self._thread.start()

    def _run(self, function: Callable[..., T], args: tuple[object, ...]) -> None:
        try:
            self._value = function(*args)
        except BaseException as error:  # raised in the caller's thread by result()
            self._error = error

    def wait(self) -> None:
        self._thread.join()

    def result(self) -> T:
        """The call's value once it returned, or its exception raised here."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # set by _run, which returned without an error


class SideCalls:
    """``with SideCalls() as side: pending = side.start(function, *args)``: every call started is waited for
    on the way out, whatever ends the block (an error, Ctrl-C), so nothing it does outlives the block."""

    def __init__(self, name: str = "layerenv-side") -> None:
        self.name = name
        self._started: list[Pending[object]] = []

    def start(self, function: Callable[..., T], *args: object) -> Pending[T]:
        """``function(*args)`` in a thread of its own, the arguments bound now."""
        pending = Pending(function, args, self.name)
        self._started.append(pending)  # type: ignore[arg-type]  # waited for, its value never read here
        return pending

    def __enter__(self) -> SideCalls:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for pending in self._started:
            pending.wait()
