"""Pinning rules of a base build: the release range as a specifier, companions, accepted builds."""

from __future__ import annotations

import threading

import pytest

from layerenv.base.resolve import (
    Acceptance,
    companion_specifier,
    newest_acceptable,
    newest_of_each,
    newest_together,
    series_specifier,
)
from layerenv.choice.decide import TableFacts
from layerenv.choice.table import load_matrix
from layerenv.choice.variant import Variant
from layerenv.installers import Resolved


def test_series_specifier_covers_the_range_and_skips_gaps() -> None:
    assert series_specifier(("2.11", "2.10", "2.9"), open_ended=False, pin=None) == ">=2.9,<2.12"
    assert series_specifier(("2.11", "2.9"), open_ended=False, pin=None) == ">=2.9,<2.12,!=2.10.*"
    assert series_specifier(("2.15", "2.14"), open_ended=True, pin="2.14.*") == ">=2.14,==2.14.*"


def test_companions_follow_the_table() -> None:
    audio = TableFacts.of(load_matrix(), "stable", Variant("cu130")).torchaudio_series
    assert companion_specifier("torchvision", "2.9.1+cu128", audio) == "==0.24.*"
    assert companion_specifier("torchaudio", "2.11.0+cu130", audio) == "==2.11.*"
    assert companion_specifier("torchaudio", "2.13.0+cpu", audio) is None, "torchaudio ends at 2.11"
    assert companion_specifier("torchaudio", "2.17.0+cu132", audio) is None, "newer than the table"
    assert companion_specifier("torchvision", "2.17.0+cu132", audio) == "==0.32.*", "newer than the table"
    assert companion_specifier("triton", "2.9.1", audio) == ""


def test_only_the_variants_builds_are_accepted() -> None:
    acceptance = Acceptance("cu128", "https://download.pytorch.org/whl/cu128", ())
    assert acceptance.why_not(Resolved("torch", "2.9.1+cu128", "https://elsewhere/torch.whl")) is None
    unlabelled_here = Resolved("torch", "2.9.1", "https://download.pytorch.org/whl/cu128/torch-2.9.1.whl")
    assert acceptance.why_not(unlabelled_here) is None
    reason = acceptance.why_not(Resolved("torch", "2.10.0", "https://pypi.example/torch-2.10.0.whl"))
    assert reason is not None and "not a cu128 build" in reason
    assert acceptance.why_not(Resolved("torch", "2.9.1+cu126", None)) is not None


def test_newest_acceptable_skips_wrong_builds_until_one_fits() -> None:
    offered = ["2.14.1", "2.13.0+cpu", "2.9.1+cpu"]
    asked: list[str] = []

    def newest(requirement: str) -> Resolved | None:
        asked.append(requirement)
        excluded = {clause[2:] for clause in requirement.split(",") if clause.startswith("!=")}
        version = next((v for v in offered if v not in excluded), None)
        return Resolved("torch", version, f"file:///wheels/torch-{version}.whl") if version else None

    found, rejected = newest_acceptable("torch", ">=2.5", newest, Acceptance("cpu", None, ()))
    assert found is not None and found.version == "2.13.0+cpu"
    assert len(rejected) == 1 and "2.14.1" in rejected[0]
    assert asked == ["torch>=2.5", "torch>=2.5,!=2.14.1"]


def test_a_build_labelled_with_the_variant_needs_no_source_to_be_judged() -> None:
    """What lets a base build skip asking uv again where a wheel came from: wherever it did, the verdict
    on a build labelled with the variant is the same; every other build is asked."""
    acceptance = Acceptance("cu128", "https://download.pytorch.org/whl/cu128", ())
    places = [None, "https://download.pytorch.org/whl/cu128/t.whl", "https://pypi.example/t.whl", "file:///x/t.whl"]
    assert not acceptance.needs_source("2.9.1+cu128")
    assert all(acceptance.why_not(Resolved("torch", "2.9.1+cu128", url)) is None for url in places)
    for version in ("2.9.1", "2.9.1+cpu", "2.9.1+cu126"):
        assert acceptance.needs_source(version)
    verdicts = {acceptance.why_not(Resolved("torch", "2.9.1", url)) is None for url in places}
    assert verdicts == {True, False}, "an unlabelled build is judged by where it came from"


def test_companions_are_asked_side_by_side_each_with_its_own_specifier() -> None:
    """torchvision and torchaudio do not wait for each other (each asks while the other is asked: one
    at a time would break the barrier), and each skips its own unacceptable builds."""
    both_asking = threading.Barrier(2, timeout=10)
    offered = {"torchvision": ["0.24.1+cpu", "0.24.0+cu128"], "torchaudio": ["2.9.1+cu128"]}
    asked: list[str] = []
    first_asks: set[str] = set()
    lock = threading.Lock()

    def find_newest(requirement: str) -> Resolved | None:
        name = requirement.partition("=")[0]
        with lock:
            first = name not in first_asks
            first_asks.add(name)
        if first:
            both_asking.wait()
        asked.append(requirement)
        excluded = requirement.split(",")[1:]
        versions = [v for v in offered[name] if f"!={v}" not in excluded]
        return Resolved(name, versions[0], None) if versions else None

    answers = newest_of_each({"torchvision": "==0.24.*", "torchaudio": "==2.9.*"}, find_newest,
                             Acceptance("cu128", None, ()))

    assert answers["torchvision"][0] == Resolved("torchvision", "0.24.0+cu128", None)
    assert answers["torchvision"][1] and "0.24.1+cpu" in answers["torchvision"][1][0]
    assert answers["torchaudio"] == (Resolved("torchaudio", "2.9.1+cu128", None), [])
    assert sorted(asked) == ["torchaudio==2.9.*", "torchvision==0.24.*", "torchvision==0.24.*,!=0.24.1+cpu"]


def test_newest_together_asks_every_name_in_one_run() -> None:
    """One run answers torch and its companions; names are matched whatever their spelling, and nothing is
    asked alone when every answer is acceptable."""
    runs: list[list[str]] = []

    def together(requirements: list[str]) -> list[Resolved] | None:
        runs.append(list(requirements))
        return [Resolved("Torch", "2.11.0+cu128", None), Resolved("torchvision", "0.26.0+cu128", None)]

    def alone(requirement: str) -> Resolved | None:
        raise AssertionError(f"asked alone: {requirement}")

    answers = newest_together({"torch": ">=2.9,<2.12", "torchvision": "==0.26.*"}, together, alone,
                              Acceptance("cu128", None, ()))
    assert runs == [["torch>=2.9,<2.12", "torchvision==0.26.*"]]
    assert answers is not None
    assert {name: (found.version if found else None, rejected) for name, (found, rejected) in answers.items()} == {
        "torch": ("2.11.0+cu128", []), "torchvision": ("0.26.0+cu128", [])}


def test_newest_together_asks_alone_again_only_for_a_name_whose_answer_is_refused() -> None:
    asked: list[str] = []

    def together(requirements: list[str]) -> list[Resolved] | None:
        return [Resolved("torch", "2.11.0", "https://pypi.example/torch.whl"), Resolved("torchvision", "0.26.0+cpu", None)]

    def alone(requirement: str) -> Resolved | None:
        asked.append(requirement)
        return Resolved("torch", "2.10.0+cpu", None)

    answers = newest_together({"torch": ">=2.9,<2.12", "torchvision": "==0.26.*"}, together, alone,
                              Acceptance("cpu", None, ()))
    assert answers is not None
    found, rejected = answers["torch"]
    assert found is not None and found.version == "2.10.0+cpu"
    assert asked == ["torch>=2.9,<2.12,!=2.11.0"]
    assert len(rejected) == 1 and "torch 2.11.0 is not a cpu build" in rejected[0]
    assert answers["torchvision"][1] == []


@pytest.mark.parametrize("answered", [None, [Resolved("torch", "2.11.0+cpu", None)]])
def test_newest_together_gives_up_when_the_run_answers_not_every_name(answered: list[Resolved] | None) -> None:
    """uv fails the whole run when one name has nothing in range, and says not which: the caller asks each alone."""
    answers = newest_together({"torch": ">=2.9", "torchaudio": "==2.11.*"}, lambda _: answered, lambda _: None,
                              Acceptance("cpu", None, ()))
    assert answers is None
