"""gc removes the temporary files a killed rebase or `layerenv project` left beside the registry's entries
and the base users' notes (readers skip them; nothing else would remove them), and only stale ones."""

from __future__ import annotations

import os
import time
from pathlib import Path

from layerenv.lifecycle.gc import TEMPORARY_AGE_S, collect
from layerenv.store.home import Store


def test_gc_removes_stale_temporaries_of_the_registry_and_users_only(tmp_path: Path) -> None:
    store = Store(tmp_path / "home")
    store.ensure_writable()
    notes = store.users / "cp311-linux_x86_64-torch2.9.1-cu128"
    notes.mkdir(parents=True)
    old = time.time() - TEMPORARY_AGE_S - 60
    stale = [store.registry / ".layerenv-staged-abc.json.k1t7oxrt.tmp", notes / ".abc.json.p2z8o9j_.tmp",
             store.home / "cache" / "stubs" / ".fd69d5aea173912d3132bacc45d164c1.4242.tmp"]  # a killed keep's
    fresh = store.registry / ".layerenv-staged-def.json.r3yd75vs.tmp"  # a running rebase's
    other = notes / ".not-ours"  # not a temporary's name: left alone, however old
    for path in [*stale, fresh, other]:
        path.write_text("{}")
    for path in [*stale, other]:
        os.utime(path, (old, old))

    dry = collect(store, set(), dry_run=True)
    assert dry.to_json()["temporaries_removed"] == sorted(str(path) for path in stale)
    assert all(path.exists() for path in stale)

    done = collect(store, set(), dry_run=False)
    assert done.temporaries == tuple(sorted(str(path) for path in stale))
    assert not any(path.exists() for path in stale)
    assert fresh.exists() and other.exists()
