"""The ``layerenv`` command: parse, call one library function, render, map errors to exit codes."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from layerenv import __version__
from layerenv.errors import EXIT_BAD_INPUT, LayerenvError

F = TypeVar("F", bound=Callable[..., Any])


def report_errors(function: F) -> F:
    """Turn a ``LayerenvError`` into one line on stderr and its exit code; no traceback."""

    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except LayerenvError as error:
            click.echo(f"layerenv: error: {error.message}", err=True)
            sys.exit(error.exit_code)
        except KeyboardInterrupt:
            click.echo("layerenv: interrupted", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="layerenv")
@click.option("-q", "--quiet", count=True, help="Print less (repeat for errors only).")
@click.option("-v", "--verbose", count=True, help="Print more detail.")
@click.pass_context
def cli(ctx: click.Context, quiet: int, verbose: int) -> None:
    """Install the right PyTorch build once per machine, and layer every project on it."""
    ctx.obj = {"verbosity": verbose - quiet}


def _register() -> None:
    from layerenv.commands import base, detect, project

    cli.add_command(detect.command)
    cli.add_command(base.command)
    cli.add_command(project.command)
    cli.add_command(project.run_command)
    cli.add_command(project.shell_command)


_register()


def main() -> None:
    cli(prog_name="layerenv")


__all__ = ["EXIT_BAD_INPUT", "cli", "main", "report_errors"]
