"""Which published base serves a request: read manifests only, no installer, no network."""

from __future__ import annotations

from layerenv.base.manifest import Manifest, read_manifest
from layerenv.base.request import BaseRequest
from layerenv.errors import OperationFailed
from layerenv.store.home import MANIFEST_NAME, Store
from layerenv.venv.layout import VenvLayout

TYPE_CHECKING = False  # the release table and the choice are imported where a base is chosen
if TYPE_CHECKING:
    from layerenv.choice.detection import Detection


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
    from layerenv.choice.coverage import serves
    from layerenv.choice.decide import driver_supports
    from layerenv.choice.table import load_matrix
    from layerenv.choice.variant import Variant

    archs = manifest.verification.archs
    variant = Variant(manifest.variant)
    machine = detection.machine
    gpus = [gpu for gpu in detection.decision.served]
    if variant.kind == "cpu":
        return not gpus
    if variant.kind == "cuda" and not driver_supports(machine, variant, load_matrix()):
        return False
    return all(serves(archs, gpu) for gpu in gpus)


def find_current(store: Store, request: BaseRequest) -> Manifest | None:
    """The base that fits the request: a build of the decided variant from the same sources (a base
    built from a project's own index serves only projects naming it), else an adopted one that fits.

    Reads manifests only: no installer, no network.
    """
    from layerenv.choice.variant import parse_version_tuple

    decision = request.detection.decision
    wanted = sorted(request.packages)
    same_python = [
        manifest
        for manifest in published(store)
        if manifest.python.tag == request.interpreter.tag
        and manifest.python.platform == request.interpreter.platform
        and VenvLayout.for_venv(manifest.venv).python.exists()
    ]
    built = [
        manifest
        for manifest in same_python
        if not manifest.adopted
        and manifest.variant == decision.variant.name
        and manifest.channel == decision.channel
        and manifest.torch_series in decision.torch_series
        and sorted(manifest.requested) == wanted
        and manifest.sources_tag == request.sources.tag
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

    Cheap by design (a few hundred ``lstat`` calls, not the 15k files of a real torch): the paths
    :func:`trust_checked_paths` names. Deeper files are left to ``layerenv verify``, which hashes every file.
    """
    import stat

    for path, mode in trust_checked_paths(manifest):
        if mode & stat.S_IWOTH and not stat.S_ISLNK(mode):
            _refuse(manifest, path)


def trust_checked_paths(manifest: Manifest) -> list[tuple[str, int]]:
    """The paths :func:`refuse_writable_by_others` checks, with their modes: the venv, its ``bin`` and
    ``site-packages`` directories, the ``.pth`` files in ``site-packages``, the directory of each package
    the base holds (who can write one can put any module in it: what a world-writable install or a
    ``chmod -R`` leaves), and for each torch-family package also its direct subdirectories and its
    top-level ``.py`` files. An adopted venv of ~200 distributions is so read in a few hundred paths, not ~3,000."""
    import os

    from layerenv.venv.distinfo import is_family

    layout = VenvLayout.for_venv(manifest.venv)
    site_path = layout.site_packages
    site = str(site_path)
    names = {*manifest.requested, *manifest.packages}
    folders = sorted({name.replace("-", "_") for name in names})
    family = sorted({name.replace("-", "_") for name in names if name in manifest.requested or is_family(name)})
    checked: list[tuple[str, int]] = []
    for path in (str(layout.root), str(layout.bin_dir), site, *(str(site_path / name) for name in folders)):
        try:
            checked.append((path, os.lstat(path).st_mode))
        except OSError:
            continue
    for directory in (site, *(str(site_path / name) for name in family)):
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if directory == site:
                        wanted = entry.name.endswith(".pth")
                    else:
                        wanted = entry.name.endswith(".py") or entry.is_dir(follow_symlinks=False)
                    if wanted:
                        checked.append((entry.path, entry.stat(follow_symlinks=False).st_mode))
        except OSError:
            continue
    return checked


def paths_read(store: Store, request: BaseRequest, chosen: Manifest, *, layout: bool = True) -> list[tuple[str, bool]]:
    """What :func:`usable_current` read to choose ``chosen`` (path, whether followed): the store's
    layout folders (their trust is checked on opening it; ``layout`` False: only its ``bases`` folder,
    for a caller that opens the store, and so checks them, each time), each base's folder and manifest,
    each base's interpreter, and the folders and files the trust check looked at. Unchanged, they give
    the same answer for the same request."""
    read = [(str(path), False) for path in (store.layout_dirs if layout else (store.bases,))]
    for directory in sorted(store.bases.iterdir()):
        for path in (str(directory), str(directory / MANIFEST_NAME)):
            read += [(path, False), (path, True)]  # a symlink's target is trusted too
    for manifest in published(store):
        read.append((str(VenvLayout.for_venv(manifest.venv).python), True))
    read += [(path, False) for path, _ in trust_checked_paths(chosen)]
    return read


def _refuse(manifest: Manifest, path: str) -> None:
    raise OperationFailed(
        f"base {manifest.base_id}: {path} is writable by other users, so they could change the torch every "
        f"project loads; fix: chmod -R o-w {manifest.venv} (or rebuild it: layerenv base --rebuild)"
    )
