"""The run of read-the-machine + choose, and its result: a :class:`Detection`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from layerenv.choice.decide import Decision, Policy, choose
from layerenv.choice.outlook import outlook
from layerenv.choice.table import load_matrix, newest_cuda_for_driver
from layerenv.errors import ConflictError
from layerenv.machine.facts import Machine


@dataclass(frozen=True)
class Detection:
    machine: Machine
    decision: Decision
    outlook: tuple[str, ...] = ()  # what limits the choice and what would lift it (choice.outlook)


def detect_with(policy: Policy, env: Mapping[str, str]) -> Detection:
    """Read the machine and choose its build; ``--strict`` turns a GPU left out into an error."""
    from layerenv.machine.reader import read_machine

    machine = read_machine(env=env, cuda_for_driver=newest_cuda_for_driver)
    matrix = load_matrix()
    decision = choose(machine, policy, matrix)
    if policy.strict and decision.conflict:
        left_out = "; ".join(f"{item.gpu.label}: {item.why}" for item in decision.unserved)
        raise ConflictError(f"no torch build serves every visible GPU ({left_out})")
    return Detection(machine, decision, outlook(machine, decision, policy, matrix))
