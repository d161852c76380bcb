"""Building, reusing and adopting the machine's torch base: facts -> plan -> build -> verify -> publish."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from layerenv.base.manifest import Manifest
from layerenv.config import Settings, resolve_installer
from layerenv.errors import BadInput
from layerenv.machine.interpreters import Interpreter

TYPE_CHECKING = False  # a project whose base is known imports none of the choice machinery
if TYPE_CHECKING:
    from layerenv.choice.detection import Detection
    from layerenv.choice.variant import Variant

DEFAULT_PACKAGES = ("torch", "torchvision", "torchaudio")


SOURCE_KEYS = ("index.url", "index.extra_urls", "index.find_links")  # the settings that decide where torch comes from


@dataclass(frozen=True)
class SourceSettings:
    index_template: str  # "" for the official index of the channel
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    # the project file that chose any of these ("" when the user's own settings did): a project's
    # sources give it a base of its own (see sources_tag), never the one other projects share
    chosen_by: str = ""

    @property
    def tag(self) -> str:
        """"" for sources the user chose; else "src" and a digest of them, which the base key, its id and
        its manifest carry, so a base built from a project's sources serves only projects asking for them."""
        if not self.chosen_by:
            return ""
        text = json.dumps([self.index_template, list(self.extra_index_urls), list(self.find_links)])
        return "src" + hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class BaseRequest:
    interpreter: Interpreter
    detection: Detection
    packages: tuple[str, ...]
    installer: str  # "pip" or "uv": "auto" is resolved when the request is made
    sources: SourceSettings
    pin: str | None = None
    rebuild: bool = False
    verbose: bool = False
    installer_note: str | None = None  # why the installer is not the one asked for ("auto" without uv)
    installer_auto: bool = False  # chosen by "auto": pip may stand in where only pip's settings offer torch


@dataclass(frozen=True)
class BaseResult:
    manifest: Manifest
    reused: bool
    log: Path | None = None


def request_from_settings(
    settings: Settings,
    detection: Detection,
    interpreter: Interpreter,
    *,
    rebuild: bool = False,
    verbose: bool = False,
) -> BaseRequest:
    """The base a command asks for, from the effective settings; ``base.packages`` must name torch."""
    installer, note, auto = installer_choice(settings)
    return BaseRequest(
        interpreter=interpreter,
        detection=detection,
        packages=require_torch(tuple(settings.items("base.packages"))),
        installer=installer,
        installer_note=note,
        installer_auto=auto,
        sources=SourceSettings(
            index_template=settings.text("index.url"),
            extra_index_urls=tuple(settings.items("index.extra_urls")),
            find_links=tuple(settings.items("index.find_links")),
            chosen_by=sources_chosen_by(settings),
        ),
        pin=settings.text("torch.version") or None,
        rebuild=rebuild,
        verbose=verbose,
    )


def installer_choice(settings: Settings) -> tuple[str, str | None, bool]:
    """``base.installer`` resolved ("auto": uv where found, else pip), the note to print when "auto" fell
    back to pip, and whether "auto" chose."""
    from layerenv.machine.uv import find_uv

    asked = settings.text("base.installer")
    installer, note = resolve_installer(asked, find_uv() if asked == "auto" else None)
    return installer, note, asked == "auto"


def sources_chosen_by(settings: Settings) -> str:
    """The project file that chose where torch comes from, or "" when the user's own settings did."""
    return next((f"{path} [{key.replace('.', '] ', 1)}" for key in SOURCE_KEYS
                 if settings.get(key) and (path := settings.project_source(key))), "")  # an empty value chooses nothing


def base_key(request: BaseRequest) -> str:
    """What a lock guards: one interpreter, platform, variant, channel, package set and, for a project's
    own torch sources, those sources."""
    decision = request.detection.decision
    key = f"{request.interpreter.tag}-{request.interpreter.platform}-{decision.variant}"
    if decision.channel != "stable":
        key += f"-{decision.channel}"
    if tuple(sorted(request.packages)) != tuple(sorted(DEFAULT_PACKAGES)):
        key += "-" + hashlib.sha256(" ".join(sorted(request.packages)).encode()).hexdigest()[:6]
    if request.sources.tag:
        key += f"-{request.sources.tag}"
    return key


def base_id(key: str, torch_version: str, variant: Variant) -> str:
    interpreter_platform, _, rest = key.partition(f"-{variant}")
    return f"{interpreter_platform}-torch{torch_version.split('+', maxsplit=1)[0]}-{variant}{rest}"


def require_torch(packages: tuple[str, ...]) -> tuple[str, ...]:
    if "torch" not in packages:
        raise BadInput(f"base.packages = {list(packages)!r} must include 'torch'")
    return packages


