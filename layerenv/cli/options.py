"""Options shared by several commands, as decorators, their mapping to settings keys, and the session."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click

from layerenv.cli.exit import Invocation
from layerenv.cli.session import Session

F = TypeVar("F", bound=Callable[..., Any])


def decision_options(function: F) -> F:
    """``--variant``, ``--channel``, ``--torch`` and ``--strict``: what steers the choice."""
    for option in reversed(
        (
            click.option("--variant", metavar="NAME", help="Use this variant (cu128, rocm6.4, cpu, ...)."),
            click.option(
                "--channel",
                type=click.Choice(["stable", "nightly"]),
                help="Release channel (default: stable).",
            ),
            click.option("--torch", "torch_pin", metavar="SPEC", help="Pin torch releases, e.g. '2.9.*'."),
            click.option(
                "--strict",
                is_flag=True,
                default=None,
                help="Fail when no build serves every visible GPU.",
            ),
        )
    ):
        function = option(function)
    return function


def decision_flags(
    variant: str | None, channel: str | None, torch_pin: str | None, strict: bool | None
) -> dict[str, Any]:
    return {
        "torch.variant": variant,
        "torch.channel": channel,
        "torch.version": torch_pin,
        "torch.strict": strict,
    }


def verbosity_options(function: F) -> F:
    """``-v``/``-q`` after the command too (``layerenv base -v``), added to the group's own."""
    function = click.option("-q", "--quiet", "local_quiet", count=True, help="Print less.")(function)
    return click.option("-v", "--verbose", "local_verbose", count=True, help="Print installer output.")(function)


def verbosity(ctx: click.Context, local_verbose: int, local_quiet: int) -> int:
    """The group's ``-v``/``-q`` and the command's together; the exit boundary and the session use it too."""
    root = ctx.find_root().params
    total = int(root.get("verbose") or 0) - int(root.get("quiet") or 0) + local_verbose - local_quiet
    ctx.ensure_object(Invocation).verbosity = total
    return total


def open_session(
    *, flags: Mapping[str, Any] | None = None, project_dir: Path | None = None, machine_wide: bool = False
) -> Session:
    """The command's :class:`Session` over this process's environment, made known to the exit boundary."""
    invocation = click.get_current_context().ensure_object(Invocation)
    session = Session.open(os.environ, flags=flags, project_dir=project_dir, verbosity=invocation.verbosity,
                           machine_wide=machine_wide)
    invocation.session = session
    return session
