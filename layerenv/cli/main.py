"""The ``layerenv`` command: parse, call one library function, render; the exit boundary ends it.

Subcommands are imported only when invoked, so ``layerenv detect`` pays for nothing else.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from layerenv import __version__
from layerenv.cli.exit import Invocation, exit_boundary
from layerenv.errors import BadInput, LayerenvError

# command name -> (module under layerenv.cli.commands, attribute, one-line help shown by `layerenv --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "detect": ("detect", "command", "Read the GPUs and driver, and choose the torch variant."),
    "base": ("base", "command", "Build (or reuse, or adopt) this machine's torch base."),
    "project": ("project", "command", "Create PATH/.venv layered on the base."),
    "sync": ("sync", "command", "Install what the project's lock pins; torch stays the base's."),
    "run": ("project", "run_command", "Run a command inside the project's layered venv."),
    "shell": ("project", "shell_command", "Start a shell in the project's venv (--print: print the activate line)."),
    "status": ("status", "command", "Show bases (current or stale) and projects."),
    "doctor": ("lifecycle", "doctor_command", "Find problems, each with its fix; --fix repairs."),
    "verify": ("lifecycle", "verify_command", "Check a base's files against its manifest."),
    "gc": ("lifecycle", "gc_command", "Remove bases no project uses and that are not current."),
    "rebase": ("rebase", "command", "Move every project onto the base that fits the machine now."),
    "config": ("config", "command", "Show every effective setting and where it came from."),
}


def as_layerenv_error(error: click.ClickException) -> LayerenvError:
    """click's refusal of the command line, in layerenv's words and with click's exit code."""
    if isinstance(error, click.UsageError):
        command = error.ctx.command_path if error.ctx is not None else "layerenv"
        converted: LayerenvError = BadInput(f"{error.format_message()} (see `{command} --help`)")
    else:
        converted = LayerenvError(error.format_message())
    converted.exit_code = error.exit_code
    return converted


def unknown_command_message(name: str) -> str:
    """``no such command 'stauts'; did you mean 'status'?``: the nearest command name, when one is near."""
    import difflib

    near = difflib.get_close_matches(name, list(COMMANDS), n=1)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    return f"no such command {name!r}{hint}"


class _Interrupted(Exception):
    """^C inside a command, carried past click (which would print a blank line first) to the boundary."""


class LazyGroup(click.Group):
    def main(  # type: ignore[override]
        self,
        args: list[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """click's standalone mode, ended by the one exit boundary (:mod:`layerenv.cli.exit`)."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        invocation = Invocation()
        with exit_boundary(invocation):
            try:
                result = super().main(args, prog_name, complete_var, False, obj=invocation, **extra)
            except (_Interrupted, click.exceptions.Abort):
                raise KeyboardInterrupt from None  # Abort: click's form of ^C (while parsing, prompting)
            except click.ClickException as error:
                raise as_layerenv_error(error) from None
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise _Interrupted from None

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0]
        if name in COMMANDS or name.startswith("-"):
            return super().resolve_command(ctx, args)
        raise click.UsageError(unknown_command_message(name), ctx)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module, attribute, _ = entry
        command = getattr(importlib.import_module(f"layerenv.cli.commands.{module}"), attribute)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][2]) for name in self.list_commands(ctx)])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="layerenv")
@click.option("-q", "--quiet", count=True, help="Print less (repeat for errors only).")
@click.option("-v", "--verbose", count=True, help="Print more detail (installer output).")
@click.pass_context
def cli(ctx: click.Context, quiet: int, verbose: int) -> None:
    """Install the right PyTorch build once per machine, and layer every project on it."""
    ctx.ensure_object(Invocation).verbosity = verbose - quiet


def main() -> None:
    cli(prog_name="layerenv")


__all__ = ["cli", "main"]
