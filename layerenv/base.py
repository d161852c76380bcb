"""Building, reusing and adopting the machine's torch base: facts -> plan -> build -> verify -> publish."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from layerenv.atomic import remove_tree
from layerenv.config import Settings
from layerenv.errors import BadInput, OperationFailed
from layerenv.interpreters import Interpreter, venv_python
from layerenv.manifest import Manifest, read_manifest
from layerenv.matrix import load_matrix
from layerenv.policy import Detection
from layerenv.store import Store
from layerenv.variant import Variant, parse_version_tuple

DEFAULT_PACKAGES = ("torch", "torchvision", "torchaudio")


class Reporter(Protocol):
    def step(self, text: str) -> None: ...

    def warn(self, text: str) -> None: ...


@dataclass(frozen=True)
class SourceSettings:
    index_template: str  # "" for the official index of the channel
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()


@dataclass(frozen=True)
class BaseRequest:
    interpreter: Interpreter
    detection: Detection
    packages: tuple[str, ...]
    installer: str
    sources: SourceSettings
    pin: str | None = None
    rebuild: bool = False
    verbose: bool = False


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
    return BaseRequest(
        interpreter=interpreter,
        detection=detection,
        packages=require_torch(tuple(settings.items("base.packages"))),
        installer=settings.text("base.installer"),
        sources=SourceSettings(
            index_template=settings.text("index.url"),
            extra_index_urls=tuple(settings.items("index.extra_urls")),
            find_links=tuple(settings.items("index.find_links")),
        ),
        pin=settings.text("torch.version") or None,
        rebuild=rebuild,
        verbose=verbose,
    )


def base_key(request: BaseRequest) -> str:
    """What a lock guards: one interpreter, platform, variant, channel and package set."""
    decision = request.detection.decision
    key = f"{request.interpreter.tag}-{request.interpreter.platform}-{decision.variant}"
    if decision.channel != "stable":
        key += f"-{decision.channel}"
    if tuple(sorted(request.packages)) != tuple(sorted(DEFAULT_PACKAGES)):
        key += "-" + hashlib.sha256(" ".join(sorted(request.packages)).encode()).hexdigest()[:6]
    return key


def base_id(key: str, torch_version: str, variant: Variant) -> str:
    interpreter_platform, _, rest = key.partition(f"-{variant}")
    return f"{interpreter_platform}-torch{torch_version.split('+', maxsplit=1)[0]}-{variant}{rest}"


def published(store: Store) -> list[Manifest]:
    """Every base whose manifest reads; unreadable ones are skipped here (doctor reports them)."""
    manifests = []
    for path in store.manifest_paths():
        try:
            manifests.append(read_manifest(path))
        except OperationFailed:
            continue
    return manifests


def fits_machine(manifest: Manifest, detection: Detection) -> bool:
    """Whether a base's verified build runs on every GPU this machine shows, with its driver."""
    from layerenv.coverage import serves
    from layerenv.decide import driver_supports

    archs = tuple(manifest.verification.get("arch_list") or ())
    variant = Variant(manifest.variant)
    machine = detection.machine
    gpus = [gpu for gpu in detection.decision.served]
    if variant.kind == "cpu":
        return not gpus
    if variant.kind == "cuda" and not driver_supports(machine, variant, load_matrix()):
        return False
    return all(serves(archs, gpu) for gpu in gpus)


def find_current(store: Store, request: BaseRequest) -> Manifest | None:
    """The base that fits the request: a build of the decided variant, else an adopted one that fits.

    Reads manifests only: no installer, no network.
    """
    decision = request.detection.decision
    wanted = sorted(request.packages)
    same_python = [
        manifest
        for manifest in published(store)
        if manifest.python.get("tag") == request.interpreter.tag
        and manifest.python.get("platform") == request.interpreter.platform
        and venv_python(manifest.venv).exists()
    ]
    built = [
        manifest
        for manifest in same_python
        if not manifest.adopted
        and manifest.variant == decision.variant.name
        and manifest.channel == decision.channel
        and manifest.torch_series in decision.torch_series
        and sorted(manifest.requested) == wanted
    ]
    adopted = [m for m in same_python if m.adopted and fits_machine(m, request.detection)]
    return max(built or adopted, key=lambda m: (parse_version_tuple(m.torch), m.created), default=None)


def usable_current(store: Store, request: BaseRequest) -> Manifest | None:
    """:func:`find_current`, refusing a base that other users could modify (for commands that use it)."""
    chosen = find_current(store, request)
    if chosen is not None:
        refuse_writable_by_others(chosen)
    return chosen


def refuse_writable_by_others(manifest: Manifest) -> None:
    """Refuse a base that another user could change, and so run code in every project on it.

    Cheap by design (a few hundred ``lstat`` calls, not the 15k files of a real torch): the venv,
    its ``bin`` and ``site-packages`` directories, the ``.pth`` files in ``site-packages``, and for
    each torch-family package its directory, its direct subdirectories and its top-level ``.py``
    files. Deeper files are left to ``layerenv verify``, which hashes every file.
    """
    import os
    import stat

    from layerenv.distinfo import site_packages_of

    venv = manifest.venv
    site_path = site_packages_of(venv)
    site = str(site_path)
    names = {name.replace("-", "_") for name in (*manifest.requested, *manifest.packages)}
    packages = sorted(str(site_path / name) for name in names)
    for path in (str(venv), str(venv / "bin"), site, *packages):
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            continue
        if mode & stat.S_IWOTH and not stat.S_ISLNK(mode):
            _refuse(manifest, path)
    for directory in (site, *packages):
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if directory == site:
                        wanted = entry.name.endswith(".pth")
                    else:
                        wanted = entry.name.endswith(".py") or entry.is_dir(follow_symlinks=False)
                    if wanted and entry.stat(follow_symlinks=False).st_mode & stat.S_IWOTH and not entry.is_symlink():
                        _refuse(manifest, entry.path)
        except OSError:
            continue


def _refuse(manifest: Manifest, path: str) -> None:
    raise OperationFailed(
        f"base {manifest.base_id}: {path} is writable by other users, so they could change the torch every "
        f"project loads; fix: chmod -R o-w {manifest.venv} (or rebuild it: layerenv base --rebuild)"
    )


def ensure_base(request: BaseRequest, store: Store, reporter: Reporter) -> BaseResult:
    """Reuse the fitting base or build one, under the key's lock; publish atomically."""
    store.ensure_writable()
    if not request.rebuild:
        current = usable_current(store, request)
        if current is not None:
            return BaseResult(current, reused=True)
    key = base_key(request)

    def waiting(owner: str) -> None:
        reporter.step(f"waiting for the lock on {key}: held by {owner}")

    with store.lock(key, purpose=f"building base {key}", on_wait=waiting):
        if not request.rebuild:
            current = usable_current(store, request)
            if current is not None:
                return BaseResult(current, reused=True)
        for orphan in store.orphaned_staging(key):
            reporter.step(f"removing {orphan.name}, left by an interrupted build")
            remove_tree(orphan)
        for replaced in store.graveyard.glob("*"):
            remove_tree(replaced)
        from layerenv.build import build

        return build(request, store, key, reporter)


def interpreter_facts(interpreter: Interpreter) -> dict[str, str]:
    return {
        "tag": interpreter.tag,
        "platform": interpreter.platform,
        "version": ".".join(map(str, interpreter.version)),
        "implementation": interpreter.implementation,
        "executable": str(interpreter.executable),
    }


def require_torch(packages: tuple[str, ...]) -> tuple[str, ...]:
    if "torch" not in packages:
        raise BadInput(f"base.packages = {list(packages)!r} must include 'torch'")
    return packages


def machine_line(detection: Detection) -> str:
    """One line naming the machine's GPUs and driver, for node records."""
    machine = detection.machine
    gpus = ", ".join(gpu.label for gpu in machine.gpus) or "no GPU"
    driver = f", driver {machine.driver_version}" if machine.driver_version else ""
    return f"{gpus}{driver}"


def remember_node(store: Store, manifest: Manifest, detection: Detection) -> str | None:
    """Record that this node uses ``manifest``'s base (what per-node projects load here).

    Returns a warning when the record could not be written to a store that per-node projects use.
    """
    from layerenv.distinfo import site_packages_of
    from layerenv.nodes import NODES_DIR, record

    try:
        site = site_packages_of(manifest.venv)
    except (OSError, OperationFailed):
        return None
    if record(store.home, store.node, python=manifest.python, base_id=manifest.base_id, site=site,
              variant=manifest.variant, machine=machine_line(detection)):
        return None
    if not (store.home / NODES_DIR).is_dir():
        return None  # no per-node project uses this store: nothing to say
    return (f"could not record node {store.node}'s base in {store.home / NODES_DIR} (read-only?): "
            "per-node projects on this node will ask `layerenv base` again at every start")
