"""From effective settings to the decision's :class:`Policy`, and the run of detect + choose."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from layerenv.config import Settings
from layerenv.decide import Decision, Policy, choose
from layerenv.errors import ConflictError
from layerenv.machine import Machine
from layerenv.matrix import Channel, load_matrix


def policy_from_settings(settings: Settings) -> Policy:
    variant = settings.text("torch.variant")
    channel: Channel = "nightly" if settings.text("torch.channel") == "nightly" else "stable"
    return Policy(
        variant=None if variant == "auto" else variant,
        channel=channel,
        torch_pin=settings.text("torch.version") or None,
        strict=settings.flag("torch.strict"),
        sources={
            "variant": settings.sources["torch.variant"],
            "channel": settings.sources["torch.channel"],
            "torch_pin": settings.sources["torch.version"],
        },
    )


@dataclass(frozen=True)
class Detection:
    machine: Machine
    decision: Decision


def detect(settings: Settings, env: Mapping[str, str] | None = None) -> Detection:
    """Read the machine and choose its build; ``--strict`` turns a GPU left out into an error."""
    from layerenv.probes import read_machine

    env = os.environ if env is None else env
    machine = read_machine(env=env)
    policy = policy_from_settings(settings)
    decision = choose(machine, policy, load_matrix())
    if policy.strict and decision.conflict:
        left_out = "; ".join(f"{item.gpu.label}: {item.why}" for item in decision.unserved)
        raise ConflictError(f"no torch build serves every visible GPU ({left_out})")
    return Detection(machine, decision)
