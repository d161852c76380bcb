"""Registering an existing environment that already holds a working torch as a base.

The adopted environment is only read: its manifest lives in the store, never beside its packages.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from layerenv import __version__
from layerenv.base.file_check import baseline_of, verify_base
from layerenv.base.manifest import Manifest, PackageRecord, refuse_newer
from layerenv.base.node_answer import remember_node
from layerenv.base.torch_check import inspect_torch, judge
from layerenv.choice.detection import Detection
from layerenv.errors import BadInput, OperationFailed
from layerenv.reporter import Reporter
from layerenv.store.atomic import write_json
from layerenv.store.home import MANIFEST_NAME, Store


def adopt(path: Path, detection: Detection, store: Store, reporter: Reporter) -> Manifest:
    """Verify the environment at ``path`` on this machine, publish a manifest for it, record it as this node's."""
    from layerenv.venv.distinfo import read_distributions
    from layerenv.venv.layout import VenvLayout

    venv = path.expanduser().resolve()
    layout = VenvLayout.for_venv(venv)
    python = layout.python
    if not python.exists():
        raise BadInput(f"--adopt {path}: no Python at {python}; give the root of a virtual environment")
    store.ensure_writable()
    reporter.step(f"inspecting torch in {venv}")
    report = inspect_torch(python, run_kernel=True)
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
    key = base_id
    with store.lock(key, purpose=f"adopting {venv}"):
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
        )
        reporter.step(f"hashing the files of {venv} as they are now")
        check = verify_base(manifest)
        if not check.ok:
            reporter.warn(
                f"{len(check.problems)} file(s) of {venv} already differ from their RECORD "
                f"(first: {check.problems[0].path}); recorded as they are, so later checks compare with now"
            )
            manifest = replace(manifest, baseline=baseline_of(check))
        write_json(store.base_dir(base_id) / MANIFEST_NAME, manifest.to_json())
    reporter.step(f"adopted {venv} as {base_id}")
    remember_node(store, manifest, detection, reporter)
    return manifest
