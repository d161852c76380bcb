"""What every command starts from: the effective settings turned into a policy and a detection."""

from __future__ import annotations

import os
from collections.abc import Mapping

from layerenv.choice.decide import Policy
from layerenv.choice.detection import Detection, detect_with
from layerenv.choice.table import Channel
from layerenv.config import Settings


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


def detect(settings: Settings, env: Mapping[str, str] | None = None) -> Detection:
    """Read the machine and choose its build under the settings' policy."""
    return detect_with(policy_from_settings(settings), os.environ if env is None else env)
