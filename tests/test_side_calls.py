"""Calls beside the caller (the base build's venv made while torch is resolved)."""

from __future__ import annotations

import threading
import time

import pytest

from layerenv.side_calls import SideCalls


def test_a_call_runs_beside_the_caller_and_hands_back_its_value() -> None:
    both_running = threading.Barrier(2, timeout=10)

    def add(left: int, right: int) -> int:
        both_running.wait()
        return left + right

    with SideCalls() as side:
        pending = side.start(add, 2, 3)
        both_running.wait()  # the caller and the call at once: a call run inline would never reach it
        assert pending.result() == 5


def test_a_calls_error_is_raised_where_its_result_is_asked() -> None:
    def fail() -> None:
        raise LookupError("no torch")

    with SideCalls() as side:
        pending = side.start(fail)
        with pytest.raises(LookupError, match="no torch"):
            pending.result()


def test_leaving_the_block_by_an_error_still_waits_for_every_call() -> None:
    finished: list[str] = []

    def slow() -> None:
        time.sleep(0.2)
        finished.append("slow")

    with pytest.raises(KeyboardInterrupt), SideCalls() as side:
        side.start(slow)
        raise KeyboardInterrupt
    assert finished == ["slow"], "the call outlived the block that started it"
