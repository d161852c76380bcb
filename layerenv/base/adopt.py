"""Registering an existing environment that already holds a working torch as a base.

The adopted environment is only read: its manifest lives in the store, never beside its packages.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from pathlib import Path

from layerenv import __version__
from layerenv.base.file_check import baseline_of, read_bases, verify_base
from layerenv.base.manifest import Manifest, PackageRecord, refuse_newer
from layerenv.base.node_answer import remember_node
from layerenv.base.torch_check import inspect_torch, judge
from layerenv.base.unlisted import capture_own_files
from layerenv.choice.detection import Detection
from layerenv.errors import BadInput, OperationFailed
from layerenv.reporter import Reporter, progress
from layerenv.store.atomic import write_json
from layerenv.store.home import MANIFEST_NAME, Store
from layerenv.venv.layout import VenvLayout


def adopt(path: Path, detection: Detection, store: Store, reporter: Reporter, *, again: bool = False) -> Manifest:
    """Verify the environment at ``path`` on this machine, publish a manifest for it, record it as this node's.

    Under a lock on the path, like a build under its key's: of processes adopting the same environment
    at once one inspects and hashes it, the others wait and reuse its manifest. An environment already
    adopted, unchanged since (by size and time) and fitting this machine is reused; ``again`` adopts anew.
    """
    venv = path.expanduser().resolve()
    layout = VenvLayout.for_venv(venv)
    python = layout.python
    if not python.exists():
        raise BadInput(f"--adopt {path}: no Python at {python}; give the root of a virtual environment")
    store.ensure_writable()
    waited: list[str] = []

    def waiting(owner: str) -> None:
        waited.append(owner)
        reporter.step(f"waiting for the lock on {venv}: held by {owner}")

    with store.lock(adopt_lock_name(venv), purpose=f"adopting {venv}", on_wait=waiting):
        existing = None if again else already_adopted(store, venv, detection)
        if existing is None:
            manifest = _adopt(venv, layout, detection, store, reporter)
        else:
            manifest = existing
            by = "by another process" if waited else "before"
            reporter.step(f"{venv} was adopted {by} as {manifest.base_id} and is unchanged since; reusing it")
    remember_node(store, manifest, detection, reporter)
    _make_shape(store, manifest, reporter)
    return manifest


def _make_shape(store: Store, manifest: Manifest, reporter: Reporter) -> None:
    """The venv shape project venvs on this base are copied from, made now so the first project is fast
    too: an adopted environment is not one virtualenv made with the base prompt. Not made (virtualenv
    failed): each project venv is made by virtualenv, as before shapes, and the first tries again."""
    from layerenv.venv.create import is_template
    from layerenv.venv.shapes import ensure_shape

    if is_template(manifest.venv):
        return
    try:
        ensure_shape(store, manifest.python)
    except OperationFailed as error:
        reporter.warn(f"no venv shape for {manifest.python.executable} ({error}); project venvs on "
                      f"{manifest.base_id} will be made by virtualenv, which is slower")


def adopt_lock_name(venv: Path) -> str:
    """One lock per adopted path (a build's lock is per base key; two paths may share a base id)."""
    return f"adopt-{hashlib.sha256(str(venv).encode()).hexdigest()[:16]}"


def already_adopted(store: Store, venv: Path, detection: Detection) -> Manifest | None:
    """The published adoption of ``venv`` if its files are unchanged since (a stat per file, no
    hashing) and its recorded torch still fits this machine's GPUs."""
    manifests, _ = read_bases(store)
    for manifest in manifests:
        if not manifest.adopted or Path(manifest.path) != venv:
            continue
        verification = manifest.verification
        if judge(verification, variant=verification.variant, version=None, gpus=detection.machine.gpus):
            continue
        if verify_base(manifest, quick=True).ok:
            return manifest
    return None


def _adopt(venv: Path, layout: VenvLayout, detection: Detection, store: Store, reporter: Reporter) -> Manifest:
    from layerenv.venv.distinfo import read_distributions

    python = layout.python

    reporter.step(f"inspecting torch in {venv}")
    with progress(reporter, "importing torch and running a kernel"):
        report = inspect_torch(python, run_kernel=True, write_bytecode=False)
    variant = report.variant
    if variant is None:
        raise OperationFailed(f"cannot adopt {venv}: {report.error or 'no torch found'}")
    problems = judge(report, variant=variant, version=None, gpus=detection.machine.gpus)
    if problems:
        raise OperationFailed(f"cannot adopt {venv}: {'; '.join(problems)}")
    distributions = {dist.name: dist for dist in read_distributions(layout.site_packages)}
    torch = distributions.get("torch")
    if torch is None:
        raise OperationFailed(f"cannot adopt {venv}: torch imports but has no installed distribution")
    interpreter = report.interpreter
    base_id = f"{interpreter.tag}-{interpreter.platform}-torch{torch.version.split('+')[0]}-{variant}-adopted"
    with store.lock(base_id, purpose=f"adopting {venv}"):
        refuse_newer(store.base_dir(base_id) / MANIFEST_NAME)
        manifest = Manifest(
            base_id=base_id,
            path=str(venv),
            created=time.time(),
            layerenv_version=__version__,
            python=interpreter,
            variant=variant.name,
            channel="stable",
            torch=torch.version,
            torch_build=report.version or torch.version,
            requested=tuple(name for name in ("torch", "torchvision", "torchaudio") if name in distributions),
            packages={
                dist.name: PackageRecord(dist.name, dist.version, dist.record_sha256, dist.installer or "unknown")
                for dist in distributions.values()
            },
            machine=detection.machine,
            decision=detection.decision,
            verification=report,
            adopted=True,
            venv_files=capture_own_files(venv, adopted=True),
        )
        reporter.step(f"hashing the files of {venv} as they are now")
        with progress(reporter, "hashing") as shown:
            check = verify_base(manifest, on_progress=shown.update)
        if not check.ok:
            reporter.warn(
                f"{len(check.problems)} file(s) of {venv} already differ from their RECORD "
                f"(first: {check.problems[0].path}); recorded as they are, so later checks compare with now"
            )
            manifest = replace(manifest, baseline=baseline_of(check))
        write_json(store.base_dir(base_id) / MANIFEST_NAME, manifest.to_json())
    reporter.step(f"adopted {venv} as {base_id}")
    return manifest
