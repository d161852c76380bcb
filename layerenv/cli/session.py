"""What every command starts from: one :class:`Session` over the effective settings.

A session holds the settings (flags, environment, files) and the environment mapping it was opened
with, and derives the rest on first use: the store, this machine's detection, the base a command
asks for and the base that is current. Every command, the click-free fast path and the Ray plugin
open one, so none of them rebuilds that chain by hand. Nothing here reads ``os.environ``: the caller
passes the environment in.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerenv.config import Settings, load_settings

if TYPE_CHECKING:  # imported where used: `layerenv detect` never opens the store or reads a manifest, and a
    # project whose base is remembered never reads the machine
    from layerenv.base.manifest import Manifest
    from layerenv.base.request import BaseRequest
    from layerenv.choice.decide import Policy
    from layerenv.choice.detection import Detection
    from layerenv.choice.table import Channel
    from layerenv.machine.interpreters import Interpreter
    from layerenv.store.home import Store


def policy_from_settings(settings: Settings) -> Policy:
    from layerenv.choice.decide import Policy

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


class Session:
    """Settings and environment, with the store, the detection and the bases derived lazily (and once)."""

    def __init__(self, settings: Settings, env: Mapping[str, str], *, verbosity: int = 0) -> None:
        self.settings = settings
        self.env = env
        self.verbosity = verbosity
        self._store: Store | None = None
        self._detection: Detection | None = None

    @classmethod
    def open(
        cls,
        env: Mapping[str, str],
        *,
        flags: Mapping[str, Any] | None = None,
        project_dir: Path | None = None,
        verbosity: int = 0,
        machine_wide: bool = False,
    ) -> Session:
        """Load the settings (``flags`` strongest, then ``env``, then files) and nothing else yet;
        ``machine_wide``: no project's files (see :func:`layerenv.config.load_settings`)."""
        settings = load_settings(project_dir=project_dir, env=env, flags=flags, project_files=not machine_wide)
        return cls(settings, env, verbosity=verbosity)

    @property
    def store(self) -> Store:
        """The ``LAYERENV_HOME`` store, opened on first use: refused in one line when others could change it
        (a few ``lstat`` calls, :meth:`layerenv.store.home.Store.check_trusted`)."""
        if self._store is None:
            from layerenv.store.home import Store

            store = Store.from_settings(self.settings, self.env)
            store.check_trusted()
            self._store = store
        return self._store

    @property
    def detection(self) -> Detection:
        """The machine read and its build chosen under the settings' policy, on first use."""
        if self._detection is None:
            from layerenv.choice.detection import detect_with

            self._detection = detect_with(policy_from_settings(self.settings), self.env)
        return self._detection

    def interpreter(self, spec: str | None = None) -> Interpreter:
        """The Python a base is for: ``spec`` if given, else ``base.python``, else the one running layerenv."""
        from layerenv.machine.interpreters import find

        return find(self.settings.text("base.python") if spec is None else spec, self.env)

    def base_request(self, interpreter: Interpreter | None = None, *, rebuild: bool = False) -> BaseRequest:
        """The base the settings ask for on ``interpreter`` (default: :meth:`interpreter`)."""
        from layerenv.base.request import request_from_settings

        return request_from_settings(
            self.settings,
            self.detection,
            self.interpreter() if interpreter is None else interpreter,
            rebuild=rebuild,
            verbose=self.verbosity > 0,
        )

    def current_base(self) -> Manifest | None:
        """The published base that fits this machine for the Python running layerenv (what status calls current).

        Reads manifests only: no installer, no network, nothing written.
        """
        from layerenv.base.current import find_current
        from layerenv.machine.interpreters import current

        return find_current(self.store, self.base_request(current()))

    def log_dir(self) -> Path | None:
        """Where an error log of this session goes: the store's ``logs/`` when the store exists."""
        return self.store.logs if self.store.home.is_dir() else None


def store_from_environment(session: Session) -> bool:
    """Whether the store is where the environment alone places it (``LAYERENV_HOME``, else the default):
    where a remembered answer is looked for before any settings file is read. An empty ``store.home``
    in a settings file (the shipped template) is the default too."""
    return session.settings.text("store.home") == session.env.get("LAYERENV_HOME", "")


def rememberable(session: Session | None) -> bool:
    """Whether this session's reading may be given again unread (see :mod:`layerenv.cli.answers`)."""
    from layerenv.machine.nvidia import probe_troubled

    if session is None or not store_from_environment(session):
        return False
    machine = session.detection.machine
    visible = session.env.get("CUDA_VISIBLE_DEVICES", "")
    if probe_troubled(machine.notes) or any(entry.strip().upper().startswith("MIG-") for entry in visible.split(",")):
        return False
    return not (machine.driver_version and not machine.gpus and not machine.hidden_gpus)  # a driver, no GPU
