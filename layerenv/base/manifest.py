"""The manifest a base carries: what was detected, decided, installed and verified."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from layerenv.base.torch_check import TorchReport
from layerenv.choice.decide import Decision
from layerenv.errors import OperationFailed
from layerenv.machine.facts import Machine
from layerenv.machine.interpreters import Interpreter

SCHEMA = 1  # what this layerenv writes; a manifest with a higher one is a newer layerenv's


@dataclass(frozen=True)
class PackageRecord:
    name: str
    version: str
    record_sha256: str
    installer: str

    def to_json(self) -> dict[str, str]:
        return {
            "version": self.version,
            "record_sha256": self.record_sha256,
            "installer": self.installer,
        }


@dataclass(frozen=True)
class Manifest:
    """Written last into a base (or beside an adopted one); its presence means "published"."""

    base_id: str
    path: str  # the virtualenv: the base dir itself, or the adopted environment
    created: float
    layerenv_version: str
    python: Interpreter
    variant: str
    channel: str
    torch: str  # distribution version, as pins need it ("2.11.0")
    torch_build: str  # torch.__version__ ("2.11.0+cu130")
    requested: tuple[str, ...]
    packages: dict[str, PackageRecord]
    machine: Machine
    decision: Decision
    verification: TorchReport
    indexes: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)
    adopted: bool = False
    # files of an adopted environment that already differed from their RECORD when it was adopted:
    # path -> their sha256 then (RECORD style), so later checks compare against that state
    baseline: dict[str, str] = field(default_factory=dict)
    # the base's files that no RECORD hashes (pyvenv.cfg, bin/python, activation scripts...), relative to
    # the venv, each with its sha256 or "->target" for a link, when published (layerenv.base.unlisted);
    # None: a manifest from before they were recorded
    venv_files: dict[str, str] | None = None
    # SourceSettings.tag of the sources it was built from: "" for the user's own, else a project's
    # (such a base serves only projects asking for the same sources, and is no node's answer)
    sources_tag: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "base_id": self.base_id,
            "path": self.path,
            "created": self.created,
            "layerenv_version": self.layerenv_version,
            "python": self.python.to_json(),
            "variant": self.variant,
            "channel": self.channel,
            "torch": self.torch,
            "torch_build": self.torch_build,
            "requested": list(self.requested),
            "packages": {name: record.to_json() for name, record in sorted(self.packages.items())},
            "machine": self.machine.to_json(),
            "decision": self.decision.to_json(self.machine),
            "verification": self.verification.to_json(),
            "indexes": list(self.indexes),
            "timings": self.timings,
            "adopted": self.adopted,
            "baseline": self.baseline,
            **({} if self.venv_files is None else {"venv_files": self.venv_files}),
            **({"sources_tag": self.sources_tag} if self.sources_tag else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        machine = Machine.from_json(data["machine"])
        return cls(
            base_id=str(data["base_id"]),
            path=str(data["path"]),
            created=float(data["created"]),
            layerenv_version=str(data["layerenv_version"]),
            python=Interpreter.from_json(data["python"]),
            variant=str(data["variant"]),
            channel=str(data.get("channel", "stable")),
            torch=str(data["torch"]),
            torch_build=str(data.get("torch_build", data["torch"])),
            requested=tuple(data.get("requested", ())),
            packages={
                name: PackageRecord(name, str(entry["version"]), str(entry["record_sha256"]), str(entry["installer"]))
                for name, entry in data["packages"].items()
            },
            machine=machine,
            decision=Decision.from_json(data["decision"], machine),
            verification=TorchReport.from_json(data["verification"]),
            indexes=tuple(data.get("indexes", ())),
            timings={key: float(value) for key, value in data.get("timings", {}).items()},
            adopted=bool(data.get("adopted", False)),
            baseline={str(path): str(digest) for path, digest in data.get("baseline", {}).items()},
            venv_files=_venv_files(data.get("venv_files")),
            sources_tag=str(data.get("sources_tag", "")),
        )

    @property
    def venv(self) -> Path:
        return Path(self.path)

    @property
    def torch_series(self) -> str:
        return ".".join(self.torch.split("+")[0].split(".")[:2])


def _venv_files(value: object) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(f"venv_files: expected a table, got {type(value).__name__}")
    return {str(path): str(digest) for path, digest in value.items()}


class NewerManifest(OperationFailed):
    """A manifest a newer layerenv wrote: its facts may mean what this one cannot tell, so it is left alone."""

    def __init__(self, path: Path, schema: int) -> None:
        super().__init__(f"{path}: written by a newer layerenv (schema {schema} > {SCHEMA}); upgrade layerenv")
        self.schema = schema


@dataclass(frozen=True)
class Unreadable:
    """A published base whose manifest this layerenv cannot use."""

    path: Path  # the manifest file
    error: OperationFailed

    @property
    def base_id(self) -> str:
        return self.path.parent.name

    @property
    def newer(self) -> bool:
        return isinstance(self.error, NewerManifest)

    @property
    def reason(self) -> str:
        """The error without the path it starts with."""
        return self.error.message.removeprefix(f"{self.path}: ")


_READ_ERRORS = (OSError, ValueError, KeyError, TypeError, AttributeError)


def read_manifest(path: Path) -> Manifest:
    """Load a manifest; a truncated or edited one is an ``OperationFailed`` naming the file, and one
    with a newer ``schema`` a :class:`NewerManifest`.

    A base built by layerenv is the directory holding its manifest, wherever this machine sees the
    store (nodes may mount a shared store at different paths); an adopted one stays where it was.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        schema = _schema_of(data)
    except _READ_ERRORS as error:
        raise _unreadable(path, error) from None
    if schema > SCHEMA:
        raise NewerManifest(path, schema)
    try:
        manifest = Manifest.from_json(data)
    except _READ_ERRORS as error:
        raise _unreadable(path, error) from None
    here = str(path.parent.absolute())
    if not manifest.adopted and manifest.path != here and path.name == "layerenv-manifest.json":
        return replace(manifest, path=here)
    return manifest


def refuse_newer(path: Path) -> None:
    """Raise :class:`NewerManifest` if ``path`` holds a newer layerenv's manifest, before replacing it."""
    if path.is_file():
        try:
            read_manifest(path)
        except NewerManifest:
            raise
        except OperationFailed:
            pass  # a broken manifest: what replaces it can only be better


def _schema_of(data: Any) -> int:
    schema = data["schema"]
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        raise ValueError(f"schema {schema!r} is not a whole number >= 1")
    return schema


def _unreadable(path: Path, error: Exception) -> OperationFailed:
    return OperationFailed(f"{path}: unreadable manifest ({error.__class__.__name__}: {error})")


def lock_key(manifest: Manifest) -> str:
    """The key ``layerenv base`` locks for a base: its id without the torch version (an adopted base: its id)."""
    if manifest.adopted:
        return manifest.base_id
    return re.sub(r"-torch[^-]+-", "-", manifest.base_id, count=1)
