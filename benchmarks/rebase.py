"""Moving N registered projects onto an already-built base (issue 19 target: 100 projects in under 1 s).

Builds two fake bases (cu128 on a replayed RTX 5090 with driver 570, cu132 after a replayed upgrade to
580), registers N project venvs on the old one, then times `layerenv rebase` as a process.
Run: python benchmarks/rebase.py [--projects 100]; TMPDIR=/dev/shm puts the scene on tmpfs. The system time is
the kernel's: on an ext4 without a journal (this CI machine's, the H200's) each new file costs a scan past the
inodes freed in the last minute (perf: find_inode_bit -> recently_deleted), a third of the run here.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, clean_env, layerenv, timed

from layerenv.project.link import link
from layerenv.store.home import Store
from layerenv.venv.relocate import relocate_venv
from tests.support.index import file_url, write_simple_index
from tests.support.wheels import build_fake_companion, build_fake_torch

TARGET_S = 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--projects", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true", help="leave the scene, rebased back, for profiling")
    options = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="layerenv-bench-rebase-"))
    try:
        wheels = scratch / "wheels"
        families = {
            "cu128": [
                build_fake_torch(wheels, "2.9.1+cu128", cuda="12.8"),
                build_fake_companion(wheels, "torchvision", "0.24.1+cu128", requires=("torch==2.9.1+cu128",)),
            ],
            "cu132": [build_fake_torch(wheels, "2.15.0+cu132", cuda="13.2")],
        }
        for variant, family in families.items():
            write_simple_index(scratch / "index" / variant, family)
        template = file_url(scratch / "index" / "cu128" / "simple").replace("/cu128/", "/{variant}/")
        machines = REPO / "tests" / "fixtures" / "machines"
        settings = {"LAYERENV_INDEX_URL": template, "LAYERENV_INSTALLER": "uv"}
        old = clean_env(scratch / "home", {**settings, "LAYERENV_SYSROOT": str(machines / "rtx5090-570"),
                                           "LAYERENV_VARIANT": "cu128"})  # what it wanted before 12.x compat
        new = clean_env(scratch / "home", {**settings, "LAYERENV_SYSROOT": str(machines / "rtx5090-580")})
        for env in (old, new):  # as installed: byte-compiled (else a checkout never byte-compiled compiles
            env.pop("PYTHONDONTWRITEBYTECODE", None)  # layerenv's modules in every timed run, ~0.1 s here)
        first = scratch / "projects" / "p000"
        first.mkdir(parents=True)
        timed(layerenv("project", str(first)), old)
        store = Store(scratch / "home")
        old_id = json.loads((first / ".venv" / "layerenv.json").read_text())["base_id"]
        for index in range(1, options.projects):
            target = scratch / "projects" / f"p{index:03d}"
            target.mkdir()
            shutil.copytree(first / ".venv", target / ".venv", symlinks=True)
            relocate_venv(target / ".venv", first / ".venv", target / ".venv")
            link(target / ".venv", base_id=old_id, base_venv=store.base_dir(old_id))
            store.register(target / ".venv", old_id, target)
        build = timed(layerenv("base"), new)  # the new base exists before the move is timed
        started, children = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        timed(layerenv("rebase"), new)
        move = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        user, system = after.ru_utime - children.ru_utime, after.ru_stime - children.ru_stime  # the rebase process's
        cpu = user + system
        nothing = timed(layerenv("rebase"), new)
        result = {
            "projects": options.projects,
            "build_new_base_s": build,
            "rebase_s": move,
            "rebase_cpu_s": cpu,
            "rebase_user_s": user,
            "rebase_system_s": system,
            "per_project_ms": move * 1000 / options.projects,
            "rebase_when_nothing_changed_s": nothing,
        }
        if options.json:
            print(json.dumps(result, indent=2))
            return
        print(f"building the new base (not part of the target): {build:.2f} s")
        print(
            f"layerenv rebase, {options.projects} projects onto it: {move:.2f} s, {cpu:.2f} s CPU "
            f"({user:.2f} user, {system:.2f} system) "
            f"({result['per_project_ms']:.1f} ms a project); target < {TARGET_S:.0f} s: "
            f"{'met' if move < TARGET_S else 'NOT met'}"
        )
        print(f"layerenv rebase when nothing changed: {nothing:.2f} s")
    finally:
        if options.keep:
            (scratch / "env-old.json").write_text(json.dumps(old), encoding="utf-8")
            (scratch / "env.json").write_text(json.dumps(new), encoding="utf-8")
            print(f"scene kept: {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
