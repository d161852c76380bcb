"""Project venvs layered on a base: choose the base, build beside, link, install, swap, register."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from layerenv.base.manifest import Manifest, read_manifest
from layerenv.base.request import BaseRequest, installer_choice
from layerenv.config import Settings
from layerenv.errors import BadInput, OperationFailed
from layerenv.faults import checkpoint
from layerenv.project.link import STATE_FILE, PerNode
from layerenv.project.requirements import ProjectDependencies, read_dependencies
from layerenv.project.sync_state import find_lock
from layerenv.reporter import Reporter
from layerenv.store.atomic import flush, json_text, remove_tree, swap_in, write_text
from layerenv.store.home import MANIFEST_NAME, Store
from layerenv.venv.create import clone_shape, create_virtualenv, is_template
from layerenv.venv.distinfo import canonical_name
from layerenv.venv.layout import VenvLayout
from layerenv.venv.relocate import relocate_venv

TYPE_CHECKING = False  # the installers are imported where one runs: a project that installs nothing needs none
if TYPE_CHECKING:
    from layerenv.installers import Installer, Log

VENV_NAME = ".venv"


@dataclass(frozen=True)
class KnownBase:
    """The base a remembered answer says the request's base lookup chose (:mod:`layerenv.cli.answers`, which
    gives it only while every input of that lookup is unchanged), and this machine's line for the node record."""

    base_id: str
    machine: str


@dataclass(frozen=True)
class ProjectRequest:
    project_dir: Path
    base_request: Callable[[], BaseRequest]  # made when first needed: a known base needs no machine reading
    installer: str
    extras: tuple[str, ...]
    requirement_files: tuple[str, ...]
    extra_dependencies: tuple[str, ...]
    system_site_packages: bool = False
    per_node: bool = False
    groups: tuple[str, ...] = ()  # dependency groups asked for, beside the default ones
    default_groups: bool = True  # PEP 735 `dev` (as uv), poetry's non-optional groups (as poetry)
    install_project: bool = False  # the project itself, editable, when it is a package (the CLI's default,
    # as `uv sync`; the Ray plugin leaves it out, its working_dir being a copy)
    installer_note: str | None = None  # why the installer is not the one asked for ("auto" without uv)
    # the base a remembered answer names, asked where the lookup would run (under the project's lock)
    known_base: Callable[[], KnownBase | None] | None = None

    @cached_property
    def base(self) -> BaseRequest:
        return self.base_request()

    @classmethod
    def from_settings(cls, project_dir: Path, settings: Settings, base: BaseRequest | Callable[[], BaseRequest], *,
                      extras: tuple[str, ...] = (), system_site_packages: bool = False,
                      per_node: bool | None = None, groups: tuple[str, ...] = (),
                      default_groups: bool = True, install_project: bool = False,
                      known_base: Callable[[], KnownBase | None] | None = None) -> ProjectRequest:
        """What ``layerenv project`` asks for: flags first, then ``[project]`` settings. ``base`` may be a
        function making the base request, called only where the base must be looked up or built."""
        if isinstance(base, BaseRequest):
            installer, note, made = base.installer, base.installer_note, base
            base_request: Callable[[], BaseRequest] = lambda: made  # noqa: E731
        else:
            (installer, note, _), base_request = installer_choice(settings), base  # as the base request resolves it
        return cls(
            project_dir=project_dir,
            base_request=base_request,
            installer=installer,
            installer_note=note,
            known_base=known_base,
            extras=extras or tuple(settings.items("project.extras")),
            requirement_files=tuple(settings.items("project.requirements")),
            extra_dependencies=tuple(settings.items("project.dependencies")),
            system_site_packages=system_site_packages,
            per_node=settings.flag("project.per_node") if per_node is None else per_node,
            groups=groups,
            default_groups=default_groups,
            install_project=install_project,
        )


@dataclass(frozen=True)
class ProjectResult:
    venv: Path
    manifest: Manifest
    changed: bool
    installed: tuple[str, ...]
    base_built: bool
    kept: tuple[str, ...] = ()  # installed by hand in the old venv, installed again in the new one
    removed: tuple[str, ...] = ()  # in the old venv, gone from the new one (each also reported)


def check_project_dir(given: Path | str) -> Path:
    if not str(given).strip():
        raise BadInput(f"project path {str(given)!r} is empty: give a directory, or leave it out for the current one")
    path = Path(given)
    if any(character in str(path) for character in "\n\r\0"):
        raise BadInput(f"project path {str(path)!r} contains a newline; a .pth line cannot hold it: rename it")
    if not path.exists():
        raise BadInput(f"project path {path} does not exist")
    if not path.is_dir():
        raise BadInput(f"project path {path} is not a directory")
    resolved = path.resolve()
    if any(character in str(resolved) for character in "\n\r\0"):
        raise BadInput(f"project path {str(resolved)!r} contains a newline; a .pth line cannot hold it: rename it")
    return resolved


def python_spec_for(project_dir: Path, flag: str | None, settings: Settings) -> str:
    """``--python``, then ``.python-version``, then ``base.python`` (``LAYERENV_PYTHON``; "" = current)."""
    if flag:
        return flag
    version_file = project_dir / ".python-version"
    if version_file.is_file():
        first = version_file.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        if first and first[0].strip():
            return first[0].strip()
    return settings.text("base.python")


def _fingerprint(manifest: Manifest, deps: ProjectDependencies, request: ProjectRequest, lock: Path | None) -> str:
    document = {
        "lock": [lock.name, hashlib.sha256(lock.read_bytes()).hexdigest()] if lock else None,
        "python": manifest.python.tag,
        "requirements": list(deps.requirements),
        "files": [[str(path), hashlib.sha256(path.read_bytes()).hexdigest()] for path in deps.files],
        "plan": _plan_document(deps),
        "installer": request.installer,
        "system_site_packages": request.system_site_packages,
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def _plan_document(deps: ProjectDependencies) -> dict[str, object] | None:
    """What else decides the venv's contents; None for a plain list of requirements (so venvs made
    before editables, constraints and groups existed keep their fingerprint)."""
    document: dict[str, object] = {
        "editables": list(deps.editables),
        "constraints": list(deps.constraints),
        "hashes": [[text, list(values)] for text, values in deps.hashes],
        "index": deps.index.lines(),
        "project": None if deps.project is None else [str(deps.project.path), deps.project.build_isolation,
                                                      list(deps.project.build_requirements)],
    }
    return document if any(document.values()) else None


def _read_state(venv: Path) -> dict[str, object]:
    try:
        data = json.loads((venv / STATE_FILE).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _recover(project_dir: Path) -> None:
    """Undo what an interrupted run left: a missing ``.venv`` comes back; leftovers go."""
    final = project_dir / VENV_NAME
    old = sorted(project_dir.glob(f"{VENV_NAME}.layerenv-old-*"))
    if not final.exists() and old:
        old[-1].rename(final)
        old = old[:-1]
    for leftover in [*old, *project_dir.glob(f"{VENV_NAME}.layerenv-new-*")]:
        remove_tree(leftover)


def _guard_conflicts(deps: ProjectDependencies, manifest: Manifest) -> None:
    """A requirement on the torch family that the base cannot satisfy fails before anything changes."""
    if not deps.family_requirements:
        return
    from packaging.requirements import Requirement

    for text, origin in deps.family_requirements:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        installed = manifest.packages.get(canonical_name(requirement.name))
        if installed is None:
            continue
        if requirement.specifier and not requirement.specifier.contains(installed.version, prereleases=True):
            wanted = re.sub(r"^[A-Za-z0-9._-]+(\[[^\]]*\])?\s*", "", text.split(";")[0]).strip()
            fix = (f'set [torch] version = "{wanted}"' if canonical_name(requirement.name) == "torch"
                   else "set [torch] version to a torch it fits")
            raise OperationFailed(
                f"{origin}: {text} conflicts with the base: it has {requirement.name} {installed.version} "
                f"({manifest.torch_build}, {manifest.variant}); relax the requirement, or {fix} in layerenv.toml "
                "and run `layerenv project` again"
            )


def _run_step(venv: Path, args: list[str], installer: Installer, log: Log) -> None:
    """One installer run into the layered venv; raises ``InstallerFailed``."""
    from layerenv.installers import LayeredVenv
    from layerenv.project.link import read_link, uv_environment

    if installer.name == "pip" and (record := read_link(venv)) is not None:
        # named here too: PIP_CONFIG_FILE (set by many CI setups) makes pip skip the venv's pip.conf
        args = ["-c", str(record.constraints), *args]
    layered = LayeredVenv(venv, VenvLayout.for_venv(venv).python, uv_environment(venv, os.environ))
    installer.install_project(layered, args, log)


def _install(venv: Path, deps: ProjectDependencies, installer: Installer, log: Log) -> None:
    """Each step of the plan, from a requirements file written into the venv (kept there as a record);
    a failure names the conflict if it is one."""
    from layerenv.installers import InstallerFailed
    from layerenv.project.conflicts import explain_conflict
    from layerenv.project.link import read_link

    constraints = venv / "layerenv-project-constraints.txt"
    if deps.constraints:
        constraints.write_text("".join(f"{line}\n" for line in deps.constraints), encoding="utf-8")
    for number, step in enumerate(deps.steps(constraints), start=1):
        listing = venv / f"layerenv-requirements-{number}.txt"
        listing.write_text("".join(f"{line}\n" for line in step.lines), encoding="utf-8")
        options = list(step.options)
        if installer.name == "uv" and "--require-hashes" in options:
            # uv's --require-hashes also wants a hash for the base's torch, which is installed, never downloaded;
            # --verify-hashes checks every hash given (a pip-compiled file gives one for each package)
            options[options.index("--require-hashes")] = "--verify-hashes"
        try:
            _run_step(venv, [*options, "-r", str(listing)], installer, log)
        except InstallerFailed as failed:
            output = failed.stdout + "\n" + failed.stderr
            record = read_link(venv)
            if record is not None and ("conflict" in output.lower() or "cannot be used" in output):
                raise OperationFailed(f"{explain_conflict(output, record)} (log: {log.path})") from None
            lines = [line for line in output.splitlines() if line.strip()]
            detail = next((line for line in lines if "error" in line.lower()), lines[-1] if lines else "no output")
            raise OperationFailed(
                f"installing the project's {step.what} failed: {detail.strip()} (log: {log.path})"
            ) from None


def _carry_over(old: Path, new: Path, deps: ProjectDependencies, installer: Installer, log: Log,
                reporter: Reporter) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Install into ``new`` what was installed into ``old`` by hand; (kept, removed), each removal reported."""
    from layerenv.installers import InstallerFailed
    from layerenv.project.carry import by_hand, installed, split_family

    before = installed(old)
    recorded = _read_state(old).get("installed")
    now = {item.name for item in installed(new)}
    if isinstance(recorded, list):
        keep, family = split_family(item for item in by_hand(before, map(str, recorded)) if item.name not in now)
        for item in family:
            reporter.warn(f"not kept: {item.name} {item.version}, installed by hand, is torch family; "
                          "the base provides it")
        if keep:
            reporter.step(f"installing again {len(keep)} package(s) installed by hand: "
                          f"{', '.join(f'{item.name} {item.version}' for item in keep)}")
            batches = [keep] if len(keep) == 1 else [keep, *([item] for item in keep)]  # all, else one by one
            for batch in batches:
                listing = new / "layerenv-requirements-kept.txt"
                listing.write_text("".join(f"{line}\n" for line in [*deps.index.lines(),
                                                                     *(item.spec for item in batch)]), encoding="utf-8")
                try:
                    _run_step(new, ["-r", str(listing)], installer, log)
                except InstallerFailed:
                    continue
                if batch is keep:
                    break
    after = {item.name for item in installed(new)}
    kept = tuple(item.name for item in before if item.name in after and item.name not in now)
    removed = tuple(f"{item.name} {item.version}" for item in before if item.name not in after)
    ours = set(map(str, recorded)) if isinstance(recorded, list) else set()
    why = (f"installed by hand, could not be installed again; log: {log.path}" if isinstance(recorded, list)
           else "not among the project's requirements now")
    for item in before:
        if item.name not in after and item.name not in ours:
            reporter.warn(f"removed: {item.name} {item.version} ({why})")
    return kept, removed


def _fill(staging: Path, final: Path, deps: ProjectDependencies, request: ProjectRequest,
          tools: Callable[[], tuple[Installer, Log]], reporter: Reporter, *,
          locked: bool) -> tuple[list[str], tuple[str, ...], tuple[str, ...]]:
    """Install the plan into the new venv, then what the old one held by hand: (ours, kept, removed).
    ``tools``: the installer and its log, asked for only where one runs."""
    for note in deps.notes:
        reporter.step(note)
    if deps.count:
        reporter.step(f"installing {len(deps.requirements)} requirement(s) with {request.installer}"
                      + (f", {len(deps.editables)} editable(s)" if deps.editables else "")
                      + (f" and the project itself ({deps.project.path})" if deps.project else ""))
        _install(staging, deps, *tools())
    if not (deps.count or locked or final.is_dir()):
        return [], (), ()  # a venv nothing was installed into holds stubs only (pip is shared, not seeded)
    from layerenv.project.carry import installed

    ours = [item.name for item in installed(staging)] if deps.count or locked else []
    if not final.is_dir():
        return ours, (), ()
    return ours, *_carry_over(final, staging, deps, *tools(), reporter)


def _install_lock(venv: Path, request: ProjectRequest, lock: Path, reporter: Reporter, log: Log) -> None:
    """Install what ``lock`` pins (as ``layerenv sync --frozen``: the lock is never edited)."""
    from layerenv.project.locks import Selection
    from layerenv.project.sync import SyncRequest, sync

    reporter.step(f"installing what {lock.name} pins (torch and what only torch needs from the base)")
    sync(SyncRequest(venv, request.project_dir, Selection(extras=request.extras), frozen=True), reporter, log)


def with_extensions(state: dict[str, object], venv: Path, manifest: Manifest) -> dict[str, object]:
    """``state`` and the compiled torch extensions ``venv`` holds, each installed against ``manifest``'s torch."""
    from layerenv.project.extensions import record_extensions
    from layerenv.project.link import read_link

    linked = read_link(venv)
    return record_extensions(state, venv, manifest.torch_build, skip=linked.stubs if linked else ())


def boot_mode(request: ProjectRequest, store: Store, manifest: Manifest) -> PerNode | None:
    """How the project's venv finds its base: per node from the store's node records, or fixed."""
    if not request.per_node:
        return None
    from layerenv.store.nodes import python_key

    return PerNode(store.home, python_key(manifest.python), str(manifest.python.executable))


def _bring_up_to_date(final: Path, project_dir: Path, manifest: Manifest, linked_base: str,
                      mode: PerNode | None, store: Store, reporter: Reporter) -> bool:
    """A venv whose dependencies are current: relink it if its base or boot mode changed."""
    from layerenv.project.link import link, read_link
    from layerenv.project.relink import Move, move_project

    changed = linked_base != manifest.base_id
    if changed:
        reporter.step(f"moving {final} onto base {manifest.base_id}")
        move_project(Move(final, project_dir, linked_base, manifest.base_id), manifest, store)
    if (linked := read_link(final)) is not None and linked.per_node != mode:
        reporter.step(f"linking {final} {'per node' if mode else 'to one base'}")
        link(final, base_id=manifest.base_id, base_venv=manifest.venv, per_node=mode)
        changed = True
    store.register(final, manifest.base_id, project_dir)
    return changed


def _create_venv(staging: Path, manifest: Manifest, request: ProjectRequest, store: Store) -> None:
    """An empty venv for the base's interpreter, with pip shared from the store where it can be:
    the base's venv shape copied (a few small writes) where that gives what its maker (virtualenv, ``uv venv``)
    would write, else virtualenv; pip seeded only where there is none to share."""
    from layerenv.project.shared_pip import bundled_pip, share_pip

    prompt, system, shared = request.project_dir.name or "project", request.system_site_packages, store.home / "pip"
    wheel = None if VenvLayout.for_venv(manifest.venv).windows else bundled_pip(manifest.python.version[:2], shared)
    if wheel is None:
        create_virtualenv(staging, manifest.python.executable, prompt=prompt, system_site_packages=system)
        return
    if not _copy_shape(manifest, staging, store, prompt=prompt, system_site_packages=system):
        create_virtualenv(staging, manifest.python.executable, prompt=prompt, seed_pip=False,
                          system_site_packages=system)
    share_pip(staging, wheel, shared)


def _copy_shape(manifest: Manifest, staging: Path, store: Store, *, prompt: str, system_site_packages: bool) -> bool:
    """The base's venv shape copied into ``staging``: the base's own where layerenv built it (virtualenv or
    ``uv venv`` made it with the base prompt), else the store's shape for its interpreter (made now if adopting
    did not make it). False, with nothing left in ``staging``, where neither gives what its maker would write."""
    from layerenv.venv.shapes import ensure_shape

    if is_template(manifest.venv):
        return clone_shape(manifest.venv, staging, prompt=prompt, system_site_packages=system_site_packages)
    try:
        template = ensure_shape(store, manifest.python)
    except OperationFailed:  # virtualenv failed in the store (a full disk?): it gets its turn in the project
        return False
    if template is None:
        return False
    before = template.stat()
    if clone_shape(template, staging, prompt=prompt, system_site_packages=system_site_packages):
        try:
            after = template.stat()
        except FileNotFoundError:
            after = None
        if after is not None and (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino):
            return True  # the template stayed in place (gc moves one away whole) while it was read
    remove_tree(staging)
    return False


def _refuse_foreign(existing: Path) -> None:
    if (existing.exists() or existing.is_symlink()) and not (existing / "layerenv.json").is_file():
        raise BadInput(
            f"{existing} exists and was not made by layerenv; move it away (or delete it) and run again"
        )


def _seal(staging: Path, final: Path, state: dict[str, object], notes: list[Path]) -> None:
    """The staged venv made ready to be swapped in: its state recorded, its paths rewritten for ``final``,
    and what layerenv wrote into it flushed to disk at once (it was written without an fsync a file),
    with the store's ``notes`` on its use of the base."""
    write_text(staging / STATE_FILE, json_text(state), durable=False)
    relocate_venv(staging, staging, final)
    checkpoint("project:after-relocate")
    flush([*_layerenv_files(staging), *notes, *(note.parent for note in notes)])


def _layerenv_files(venv: Path) -> list[Path]:
    """What makes the venv a layered one (its records, configs, ``.pth`` files and boot module) and the
    directories holding them: flushed before the venv is swapped in, so a power cut cannot leave one empty."""
    site = VenvLayout.for_venv(venv).site_packages
    top = [path for path in venv.iterdir() if path.is_file() and not path.is_symlink()]
    return [*top, *(path for path in site.iterdir() if path.suffix in (".pth", ".py")), venv, site]


def ensure_project(
    request: ProjectRequest, store: Store, reporter: Reporter, installer: Installer | None = None
) -> ProjectResult:
    """Create or update ``PATH/.venv``; an existing one is replaced only once the new one is complete.
    ``installer`` (by default the one ``request.installer`` names) fills the base if one is built, and
    installs the project's requirements. Two runs on one project take turns (the venv's lock)."""
    deps = _dependencies(request)  # bad input is refused before anything is written, the lock file included
    store.ensure_writable()
    final = request.project_dir / VENV_NAME

    def waiting(owner: str) -> None:
        reporter.step(f"waiting for the lock on {final}: held by {owner}")

    with store.lock(store.project_lock_name(final), purpose=f"layerenv project {request.project_dir}",
                    on_wait=waiting):
        return _ensure_project(request, store, reporter, installer, deps)


def _dependencies(request: ProjectRequest) -> ProjectDependencies:
    return read_dependencies(request.project_dir, request.requirement_files, request.extra_dependencies,
                             request.extras, groups=request.groups, default_groups=request.default_groups,
                             install_project=request.install_project)


def _installer_tools(request: ProjectRequest, store: Store,
                     installer: Installer | None) -> Callable[[], tuple[Installer, Log]]:
    """The installer (``installer``, else the one the request names) and this run's log, made when first
    asked for: a project that installs nothing imports no installer. uv asked for and not installed is
    refused now, before anything is made, as making it refuses it."""
    from layerenv.machine.uv import find_uv

    if installer is None and request.installer == "uv" and find_uv() is None:
        from layerenv.installers import get_installer

        get_installer(request.installer)  # raises
    made: list[tuple[Installer, Log]] = []

    def tools() -> tuple[Installer, Log]:
        if not made:
            from layerenv.installers import Log, get_installer

            made.append((installer or get_installer(request.installer),
                         Log(store.log_path(f"project-{request.project_dir.name or 'root'}"))))
        return made[0]

    return tools


def _claim(store: Store, manifest: Manifest, venv: Path, project_dir: Path) -> tuple[bool, Path | None]:
    """Note ``venv`` as a user of ``manifest``'s base, then whether the base is still published; and the note,
    if written now (flushed with the staged venv: until that venv is in place, a power cut loses nothing a
    gc needs).

    Under the base key's lock, as gc removes a base: a gc either saw the note (and keeps the base), or
    finished before this looks (and the base is built again)."""
    from layerenv.base.manifest import lock_key

    note = store.add_user(venv, manifest.base_id, project_dir, durable=False)
    with store.lock(lock_key(manifest), purpose=f"layerenv project {project_dir}"):
        return (store.base_dir(manifest.base_id) / MANIFEST_NAME).is_file(), note


def _claimed_base(
    request: ProjectRequest, store: Store, reporter: Reporter, installer: Installer | None
) -> tuple[Manifest, bool, Installer | None, list[Path], KnownBase | None]:
    """The base the project links to, noted as used by its venv; whether it was built now; the
    installer, once a build made it choose one (its note, if any, said then); the note if it is still
    to be flushed; the base a remembered answer named, if one did."""

    def build() -> Manifest:
        from layerenv.base.ensure import ensure_base
        from layerenv.installers import get_installer

        nonlocal installer
        if installer is None:
            if request.installer_note:
                reporter.step(request.installer_note)
            installer = get_installer(request.installer)
        return ensure_base(request.base, store, reporter, installer).manifest  # which records this node's answer

    known = request.known_base() if request.known_base is not None else None
    manifest = _known_manifest(store, known)
    if manifest is None:
        from layerenv.base.current import usable_current

        manifest = usable_current(store, request.base)
    base_built = manifest is None
    if manifest is None:
        reporter.step("no base fits this project yet: building it first, as `layerenv base` would")
        manifest = build()
    venv = request.project_dir / VENV_NAME
    published, note = _claim(store, manifest, venv, request.project_dir)
    if not published:
        reporter.step(f"base {manifest.base_id} was removed meanwhile (layerenv gc): building it again")
        manifest = build()
        base_built = True
        store.add_user(venv, manifest.base_id, request.project_dir)
        note = None  # its base is gone, and its folder with it
    return manifest, base_built, installer, [note] if note is not None else [], known


def _known_manifest(store: Store, known: KnownBase | None) -> Manifest | None:
    """The manifest of the base ``known`` names, where it still reads as that base; else None (looked up)."""
    if known is None:
        return None
    try:
        manifest = read_manifest(store.base_dir(known.base_id) / MANIFEST_NAME)
    except (OSError, BadInput, OperationFailed):
        return None
    return manifest if manifest.base_id == known.base_id else None


def _remember_node(request: ProjectRequest, store: Store, manifest: Manifest, known: KnownBase | None,
                   reporter: Reporter) -> None:
    """This node's record of ``manifest``'s base, from the known base's machine line where that is the base."""
    from layerenv.base.node_answer import record_node, remember_node

    if known is not None and known.base_id == manifest.base_id:
        record_node(store, manifest, known.machine, reporter)
    else:
        remember_node(store, manifest, request.base.detection, reporter)


def _link_new(staging: Path, final: Path, manifest: Manifest, mode: PerNode | None, store: Store) -> None:
    """Link the staged venv, the base's distributions and their stubs taken from the store's cache where
    it holds them unchanged, else read (and then kept there for the next project)."""
    from layerenv.project import stub_cache
    from layerenv.project.link import link

    base_site = VenvLayout.for_venv(manifest.venv.absolute()).site_packages
    cache = stub_cache.cache_file(store.home, base_site, manifest.base_id)
    started = stub_cache.clock()
    recalled = stub_cache.recall(cache, base_site, manifest.base_id)
    link(staging, base_id=manifest.base_id, base_venv=manifest.venv, per_node=mode, durable=False, final_venv=final)
    if not recalled:
        stub_cache.keep(cache, base_site, manifest.base_id, started)


def _ensure_project(
    request: ProjectRequest, store: Store, reporter: Reporter, installer: Installer | None, deps: ProjectDependencies
) -> ProjectResult:
    project_dir = request.project_dir
    _recover(project_dir)
    _refuse_foreign(project_dir / VENV_NAME)
    manifest, base_built, installer, unflushed, known = _claimed_base(request, store, reporter, installer)
    _guard_conflicts(deps, manifest)
    if not base_built:
        _remember_node(request, store, manifest, known, reporter)
    final = project_dir / VENV_NAME
    fingerprint = _fingerprint(manifest, deps, request, lock := find_lock(project_dir))
    state = _read_state(final) if final.is_dir() else {}
    mode = boot_mode(request, store, manifest)
    if state.get("fingerprint") == fingerprint and (final / "layerenv.json").is_file():
        if unflushed:
            flush([*unflushed, *(note.parent for note in unflushed)])
        changed = _bring_up_to_date(final, project_dir, manifest, str(state.get("base_id")), mode, store, reporter)
        return ProjectResult(final, manifest, changed=changed, installed=(), base_built=base_built)
    staging = project_dir / f"{VENV_NAME}.layerenv-new-{os.getpid()}-{os.urandom(3).hex()}"
    tools = _installer_tools(request, store, installer)
    try:
        if installer is None and request.installer_note and (deps.count or lock):
            reporter.step(request.installer_note)
        reporter.step(f"creating {final} on base {manifest.base_id}")
        _create_venv(staging, manifest, request, store)
        checkpoint("project:after-venv")
        _link_new(staging, final, manifest, mode, store)
        checkpoint("project:after-link")
        if lock:  # the lock pins what pyproject.toml declares; requirements files and layerenv.toml still count
            _install_lock(staging, request, lock, reporter, tools()[1])
            deps = read_dependencies(project_dir, request.requirement_files, request.extra_dependencies, (),
                                     from_pyproject=False)
        ours, kept, removed = _fill(staging, final, deps, request, tools, reporter, locked=lock is not None)
        checkpoint("project:after-install")
        _seal(staging, final, with_extensions({
            "fingerprint": fingerprint,
            "base_id": manifest.base_id,
            "requirements": list(deps.requirements),
            "installed": ours,
            "groups": list(deps.groups),
            "created": time.time(),
        }, staging, manifest), unflushed)
        store.register(final, manifest.base_id, project_dir)  # before the swap: a venv in place is never unregistered
        graveyard = project_dir / f"{VENV_NAME}.layerenv-old-{os.getpid()}-{os.urandom(3).hex()}"
        checkpoint("project:before-swap")
        swap_in(staging, final, graveyard)
        checkpoint("project:after-swap")
        checkpoint("project:after-relink")
        remove_tree(graveyard)
    except BaseException:
        if not (final / "layerenv.json").is_file():  # registered just before a swap that did not happen
            with contextlib.suppress(OSError):
                store.unregister(final)
        raise
    finally:
        remove_tree(staging)
    checkpoint("project:after-register")  # registered before the swap
    return ProjectResult(final, manifest, changed=True, installed=deps.requirements, base_built=base_built,
                         kept=kept, removed=removed)
