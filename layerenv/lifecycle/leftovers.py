"""What an interrupted build leaves in ``staging/``: seen by status, doctor and gc; removed by gc.

A build stages its base in ``staging/<key>.<pid>.<nonce>/`` while it holds ``<key>``'s lock, so a
staging dir whose key's lock nobody holds belongs to no running build: a SIGTERM, a power cut or a
full disk ended it. The next build of that key removes it too; gc removes every orphan.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerenv.store.home import Store


@dataclass(frozen=True)
class Leftover:
    path: Path
    key: str  # the base key whose build made it
    pid: int | None  # the process that made it (on the node that ran the build)
    size_bytes: int
    age_seconds: float
    holder: str | None  # who holds the key's lock now: a live build; None: orphaned

    @property
    def orphaned(self) -> bool:
        return self.holder is None

    def describe(self) -> str:
        state = f"in use by {self.holder}" if self.holder else "left by an interrupted build"
        from layerenv.reporter import format_size

        return f"{self.path} ({format_size(self.size_bytes)}, {_age(self.age_seconds)} old): {state}"

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "key": self.key, "pid": self.pid, "size_bytes": self.size_bytes,
                "age_seconds": round(self.age_seconds), "orphaned": self.orphaned, "holder": self.holder}


def staging_leftovers(store: Store, *, with_sizes: bool = True) -> list[Leftover]:
    """Every directory in ``staging/``, with whether a running build holds it."""
    from layerenv.lifecycle.status import disk_usage

    try:
        entries = sorted(store.staging.iterdir()) if store.staging.is_dir() else []
    except OSError:
        return []
    found = []
    now = time.time()
    for path in entries:
        key, _, pid_text = path.name.rpartition(".")[0].rpartition(".")  # <key>.<pid>.<nonce>
        try:
            age = max(0.0, now - path.lstat().st_mtime)
        except OSError:
            continue
        found.append(Leftover(path, key or path.name, int(pid_text) if pid_text.isdigit() else None,
                              disk_usage(path) if with_sizes else 0, age, _holder(store, key)))
    return found


def _holder(store: Store, key: str) -> str | None:
    """Who holds ``key``'s lock (tried without waiting, never created); None when nobody does."""
    from layerenv.errors import BadInput
    from layerenv.store.locking import Busy

    try:
        if not key or not store.lock_exists(key):
            return None
        with store.lock(key, purpose="looking at staging/", blocking=False):
            return None
    except Busy as busy:
        return busy.owner
    except (BadInput, OSError):
        return None


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


__all__ = ["Leftover", "staging_leftovers"]
