"""``layerenv config``: every effective setting, its value and where it came from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from layerenv.cli.options import open_session
from layerenv.config import SETTINGS
from layerenv.urls import redact


def _shown(key: str, value: Any) -> Any:
    """The value as printed: credentials in index URLs redacted, as everywhere else."""
    if not key.startswith("index."):
        return value
    if isinstance(value, list):
        return [redact(str(item)) for item in value]
    return redact(str(value)) if value else value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(str(item) for item in value) + "]"
    return str(value) if value != "" else '""'


@click.command("config")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for other tools.")
def command(as_json: bool) -> None:
    """Show every effective setting, its value and its source, then the config files read, then the
    pip and uv settings from outside layerenv that change what they find (PIP_INDEX_URL, PIP_FIND_LINKS,
    UV_INDEX_URL, pip.conf files ...), each with its source; credentials redacted.
    """
    from layerenv.installers.settings import read_installer_settings

    session = open_session()
    settings = session.settings
    rows = [(spec.key, _shown(spec.key, settings.get(spec.key)), settings.sources[spec.key]) for spec in SETTINGS]
    files = [str(path) for path in settings.files]
    installers = read_installer_settings(session.env, Path(session.env.get("HOME") or Path.home()))
    if as_json:
        document = {
            "settings": {key: {"value": value, "source": source} for key, value, source in rows},
            "files": files,
            "installers": [
                {"installer": s.installer, "key": s.key, "value": s.value, "source": s.source} for s in installers
            ],
        }
        click.echo(json.dumps(document, indent=2))
        return
    key_width = max(len("key"), *(len(key) for key, _, _ in rows))
    value_width = max(len("value"), *(len(_text(value)) for _, value, _ in rows))
    click.echo(f"{'key':<{key_width}}  {'value':<{value_width}}  source")
    for key, value, source in rows:
        click.echo(f"{key:<{key_width}}  {_text(value):<{value_width}}  {source}")
    click.echo("files")
    if not files:
        click.echo("  (none: defaults and environment only)")
    for path in files:
        click.echo(f"  {path}")
    click.echo("installer settings (outside layerenv; they change what pip and uv find)")
    if not installers:
        click.echo("  (none: pip and uv use their defaults)")
    for setting in installers:
        click.echo(f"  {setting.installer:<4} {setting.describe()}")
