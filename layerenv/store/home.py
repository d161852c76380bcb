"""The ``LAYERENV_HOME`` layout: bases, the project registry, locks and logs.

::

    $LAYERENV_HOME/
      bases/<base-id>/              a published base: a virtualenv with layerenv-manifest.json
      bases/<base-id>/              or, for an adopted environment, only its manifest
      staging/<key>.<pid>.<nonce>/  a base being built (removed by the next build if orphaned)
      graveyard/                    replaced bases waiting to be deleted
      registry/<hash>.json          one file per project venv: path and base id
      users/<base-id>/<hash>.json   per base, each project venv ever linked to it (gc's second source: the
                                    registry keeps a venv's latest base only, and doctor --fix prunes it)
      locks/<key>.lock              one lock per base key, with <key>.owner.json naming the holder,
      locks/<key>.lease             or, on a store shared between nodes, a lease file (layerenv.store.locking)
      locks/venv-<hash>.lock        one per project venv: `layerenv project` and `rebase` on it take turns
      nodes/<node>/                 per node: which base each Python uses there (layerenv.store.nodes)
      logs/<base-id>-<time>.log     installer output of each build
      shapes/<key>/                 an empty venv virtualenv made for one interpreter (layerenv.venv.shapes): what
                                    project venvs on an adopted base are copied from; gc removes one no base needs
      pip/pip-<version>-.../        virtualenv's pip wheel unpacked once, shared by project venvs
      cache/doctor.json             the projects doctor last found healthy, with their files' stats
                                    (layerenv.lifecycle.fingerprint); deleting it only makes doctor read more
      cache/answers/                the answers `detect` and a reusing `base` gave, under a digest of their
                                    inputs (layerenv.cli.answers); deleting them only costs a slower call
      cache/stubs/<key>             a base's distributions and their stub files, as the first project on it
                                    read them (layerenv.project.stub_cache); deleting one only costs a slower project
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerenv.errors import BadInput, OperationFailed
from layerenv.store.atomic import NOW, Writer, json_text, read_plain_text
from layerenv.store.identity import check_name
from layerenv.store.trust import Trust, check, path_problem

if TYPE_CHECKING:
    from layerenv.config import Settings

MANIFEST_NAME = "layerenv-manifest.json"
DEFAULT_STALE_AFTER = 60.0


def stale_after_from(env: Mapping[str, str]) -> float:
    """``LAYERENV_LOCK_STALE_AFTER``: seconds a lease's heartbeat may stand still (see layerenv.store.locking)."""
    raw = env.get("LAYERENV_LOCK_STALE_AFTER", "")
    if not raw:
        return DEFAULT_STALE_AFTER
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 1.0 <= value <= 86400.0:
        raise BadInput(f"LAYERENV_LOCK_STALE_AFTER={raw!r} must be a number of seconds from 1 to 86400")
    return value


def default_home(env: Mapping[str, str]) -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("layerenv"))


@dataclass(frozen=True)
class Store:
    home: Path
    lock_mode: str = "auto"  # see layerenv.store.locking
    stale_after: float = DEFAULT_STALE_AFTER
    node: str = ""  # this node's name (LAYERENV_NODE or the host name), for lock holders and node records
    trust: Trust | None = None  # whom the store's paths may belong to (None: not checked, for tools and tests)

    @classmethod
    def open(cls, configured: str, env: Mapping[str, str], *, lock_mode: str = "auto",
             trust: Trust | None = None) -> Store:
        if any(character in configured for character in "\n\r\0"):
            raise BadInput(
                f"LAYERENV_HOME={configured!r} contains a newline or NUL; a .pth line cannot hold it: "
                "choose a directory without one"
            )
        home = Path(configured).expanduser() if configured else default_home(env)
        if not home.is_absolute():
            home = Path.cwd() / home
        if any(character in str(home) for character in "\n\r\0"):
            raise BadInput(f"store directory {str(home)!r} contains a newline; choose a directory without one")
        if home.exists() and not home.is_dir():  # every command would read it as an empty store
            raise BadInput(f"LAYERENV_HOME={home} is not a directory; set LAYERENV_HOME to a directory (or a path "
                           "not yet there)")
        from layerenv.store.identity import node_name

        return cls(home, lock_mode=lock_mode, stale_after=stale_after_from(env), node=node_name(env), trust=trust)

    @classmethod
    def from_settings(cls, settings: Settings, env: Mapping[str, str]) -> Store:
        trust = Trust.for_caller(settings.text("store.trusted_group"), settings.sources["store.trusted_group"])
        return cls.open(settings.text("store.home"), env, lock_mode=settings.text("store.lock"), trust=trust)

    @property
    def bases(self) -> Path:
        return self.home / "bases"

    @property
    def staging(self) -> Path:
        return self.home / "staging"

    @property
    def graveyard(self) -> Path:
        return self.home / "graveyard"

    @property
    def registry(self) -> Path:
        return self.home / "registry"

    @property
    def users(self) -> Path:
        return self.home / "users"

    @property
    def locks(self) -> Path:
        return self.home / "locks"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    def ensure_writable(self) -> None:
        """Create the layout, or say in one line why the store cannot be written.

        Directories layerenv creates get mode 0o755 whatever the umask, and the umask of this
        process (and so of the installers it runs) loses its group/other write bits: a store built
        by root is never writable by other users.
        """
        os.umask(os.umask(0o022) | 0o022)
        try:
            # a new store gets cache/answers and cache/stubs too, so that remembering its first answer or
            # keeping its first base's stubs changes no folder an answer rests on (an existing store gains
            # them then: its next answer is remembered 2 s later)
            answers = () if self.home.is_dir() else (self.home / "cache" / "answers", self.home / "cache" / "stubs")
            layout = (self.home, self.bases, self.staging, self.graveyard, self.registry, self.locks, self.logs,
                      *answers)
            for directory in layout:
                if not directory.is_dir():
                    directory.mkdir(parents=True, exist_ok=True)
                    directory.chmod(0o755)
        except OSError as error:
            raise BadInput(
                f"LAYERENV_HOME={self.home} is not writable ({error.strerror}); "
                "set LAYERENV_HOME to a directory you can write"
            ) from None
        if not os.access(self.bases, os.W_OK | os.X_OK):
            raise BadInput(f"LAYERENV_HOME={self.home} is not writable; set LAYERENV_HOME to a directory you can write")

    @property
    def nodes(self) -> Path:
        return self.home / "nodes"

    @property
    def shapes(self) -> Path:
        return self.home / "shapes"

    # Trust (layerenv.store.trust) ----------------------------------------------------------------

    @property
    def layout_dirs(self) -> tuple[Path, ...]:
        """The store's root and its layout directories: what :meth:`check_trusted` checks."""
        return (self.home, self.bases, self.staging, self.graveyard, self.registry, self.nodes, self.locks,
                self.logs, self.users, self.home / "cache", self.home / "pip", self.shapes)

    def check_trusted(self) -> None:
        """Refuse, in one line, a store whose root or layout directories others could change: a few ``lstat``s."""
        if self.trust is None:
            return
        check(list(self.layout_dirs) if self.home.exists() else [], self.trust)

    def trust_problem(self, path: Path) -> str | None:
        """Why ``path`` (a base, a node record) is not trusted, or None; always None for an unchecked store."""
        return None if self.trust is None else path_problem(path, self.trust)

    def base_dir(self, base_id: str) -> Path:
        return self.bases / check_name(base_id, "base id")

    def base_entries(self) -> list[tuple[Path, str | None]]:
        """Each base's manifest path, with why the base cannot be used (unreadable, untrusted) or None.

        Entries with nothing in them that looks like a base (no manifest) are left out; one that cannot
        be read or is not trusted is kept, with its reason, so status and doctor name it by id.
        """
        try:
            names = sorted(entry.name for entry in os.scandir(self.bases))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as error:
            raise OperationFailed(f"{self.bases} cannot be read ({error.strerror})") from None
        entries: list[tuple[Path, str | None]] = []
        for name in names:
            directory = self.bases / name
            manifest = directory / MANIFEST_NAME
            found = self.trust_problem(directory)
            if found is None:
                try:
                    if not stat.S_ISREG(manifest.stat().st_mode):
                        continue
                except (FileNotFoundError, NotADirectoryError):
                    continue
                except OSError as error:
                    found = f"cannot be read ({error.strerror})"
            if found is None:
                found = self.trust_problem(manifest)
            entries.append((manifest, found))
        return entries

    def manifest_paths(self) -> list[Path]:
        """The manifests of the bases that can be used (see :meth:`base_entries` for the others)."""
        return [manifest for manifest, found in self.base_entries() if found is None]

    def new_staging_dir(self, key: str) -> Path:
        self.staging.mkdir(parents=True, exist_ok=True)
        path = self.staging / f"{key}.{os.getpid()}.{os.urandom(4).hex()}"
        return path

    def orphaned_staging(self, key: str) -> list[Path]:
        """Staging dirs for ``key``: call only while holding ``key``'s lock, so none is live."""
        if not self.staging.is_dir():
            return []
        return [path for path in self.staging.iterdir() if path.name.startswith(f"{key}.")]

    def graveyard_dir(self, name: str) -> Path:
        return self.graveyard / f"{name}.{int(time.time())}.{os.urandom(4).hex()}"

    def log_path(self, base_id: str) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        return self.logs / f"{base_id}-{stamp}-{os.getpid()}.log"

    # Locks -------------------------------------------------------------------------------------

    @contextmanager
    def lock(self, key: str, *, purpose: str, on_wait: Any = None, blocking: bool = True) -> Iterator[None]:
        """Hold the lock for ``key``; while waiting, call ``on_wait(owner_text)`` once.

        :mod:`layerenv.store.locking` picks ``flock`` or, for a store shared between nodes, a lease file.
        Not ``blocking``: raise :class:`layerenv.store.locking.Busy` when someone else holds it.
        """
        from layerenv.store.locking import store_lock

        with store_lock(self.locks, check_name(key, "lock name"), mode=self.lock_mode, purpose=purpose,
                        node=self.node, stale_after=self.stale_after, blocking=blocking, on_wait=on_wait):
            yield

    def project_lock_name(self, project_venv: Path) -> str:
        """The lock ``layerenv project`` holds while it makes or changes ``project_venv``."""
        return f"venv-{self.registry_entry(project_venv).stem}"

    def lock_exists(self, key: str) -> bool:
        return any((self.locks / f"{key}{suffix}").exists() for suffix in (".lock", ".lease"))

    # Registry ----------------------------------------------------------------------------------

    def registry_entry(self, project_venv: Path) -> Path:
        digest = hashlib.sha256(os.fsencode(str(project_venv))).hexdigest()[:24]
        return self.registry / f"{digest}.json"

    def register(self, project_venv: Path, base_id: str, project_dir: Path, *, writer: Writer = NOW) -> None:
        document = {"venv": str(project_venv), "project": str(project_dir), "base_id": base_id, "updated": time.time()}
        try:
            self.add_user(project_venv, base_id, project_dir, writer=writer)
            writer.write_text(self.registry_entry(project_venv), json_text(document))
        except OSError as error:  # a full disk, a read-only store
            raise OperationFailed(f"cannot record {project_venv} in the store's registry {self.registry}: "
                                  f"{error.strerror or error}") from None

    def add_user(self, project_venv: Path, base_id: str, project_dir: Path, *, writer: Writer = NOW,
                 durable: bool = True) -> Path | None:
        """Note in ``users/<base-id>/`` that ``project_venv`` links (or is about to link) to that base; the
        note, if written now (not ``durable``: the caller flushes it before the venv is put in place)."""
        path = self.users / check_name(base_id, "base id") / self.registry_entry(project_venv).name
        if path.is_file():
            return None
        note = {"venv": str(project_venv), "project": str(project_dir), "base_id": base_id}
        writer.write_text(path, json_text(note), durable=durable)
        return path

    def base_users(self, base_id: str) -> list[dict[str, str]]:
        """The project venvs ever noted as users of ``base_id`` (unreadable notes are skipped: the
        registry and the venvs' own records still count)."""
        directory = self.users / check_name(base_id, "base id")
        found = []
        for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
            try:
                entry = json.loads(path.read_text(encoding="utf-8"))
                found.append({"venv": str(entry["venv"]), "project": str(entry["project"]), "note": str(path)})
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return found

    def unregister(self, project_venv: Path) -> None:
        self.registry_entry(project_venv).unlink(missing_ok=True)

    def projects(self) -> list[dict[str, Any]]:
        """Every registered project; unreadable entries are returned with ``"error"`` set."""
        try:
            names = sorted(name for name in os.listdir(self.registry) if name.endswith(".json"))  # noqa: PTH208
        except OSError:
            return []
        entries = []
        for name in names:  # str paths and plain open: doctor and status read 1,000s of these
            path = os.path.join(self.registry, name)  # noqa: PTH118
            try:
                entry = json.loads(read_plain_text(path))  # never through a link
                if not isinstance(entry, dict) or "venv" not in entry:
                    raise ValueError("missing 'venv'")
            except (OSError, ValueError) as error:
                entries.append({"entry": path, "error": str(error)})
                continue
            entry["entry"] = path
            entries.append(entry)
        return entries
