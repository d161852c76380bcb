"""``layerenv sync``: install exactly what a project's lock pins into its layered venv, with the
lock's hashes, except the torch family and what only the torch family needs (:mod:`locks` plans it).

uv's own project commands (``uv sync``, ``uv run``, ``uv add``) resolve torch from the project's
index and read no constraints, so they would put a second torch (and its CUDA wheels) into the venv;
this is the door that installs the rest of the lock and leaves torch to the base.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from layerenv.config import read_toml
from layerenv.errors import BadInput, OperationFailed
from layerenv.installers import Log
from layerenv.project.link import KEEP, STATE_FILE, link, read_link
from layerenv.project.locks import (
    Lock,
    LockedPackage,
    Plan,
    Selection,
    conflicts,
    plan,
    read_lock,
)
from layerenv.project.stubs import STUB_MARKER
from layerenv.project.sync_state import (
    SYNC_KEY,
    SYNC_STATE,
    file_digest,
    find_lock,
    fingerprint,
    lock_python,
    portable_env,
    read_state,
    sync_key,
)
from layerenv.project.uv_fast import real_uv as uv_not_a_shim
from layerenv.project.uv_fast import selection_text
from layerenv.reporter import Reporter
from layerenv.store.atomic import write_json, write_text
from layerenv.venv.distinfo import canonical_name, is_family, read_distributions
from layerenv.venv.layout import VenvLayout

_MARKER_ENV = (
    "import json, os, platform, sys\n"
    "i = sys.implementation.version\n"
    "v = '%d.%d.%d' % (i.major, i.minor, i.micro)\n"
    "v += '' if i.releaselevel == 'final' else i.releaselevel[0] + str(i.serial)\n"
    "print(json.dumps({'implementation_name': sys.implementation.name, 'implementation_version': v,\n"
    " 'os_name': os.name, 'platform_machine': platform.machine(), 'platform_release': platform.release(),\n"
    " 'platform_system': platform.system(), 'platform_version': platform.version(),\n"
    " 'python_full_version': platform.python_version(), 'platform_python_implementation':\n"
    " platform.python_implementation(), 'python_version': '.'.join(platform.python_version_tuple()[:2]),\n"
    " 'sys_platform': sys.platform}))\n"
)


@dataclass(frozen=True)
class SyncRequest:
    venv: Path
    project_dir: Path
    selection: Selection = field(default_factory=Selection)
    frozen: bool = False  # use the lock as it is (`layerenv project` always does: it never edits a lock)
    locked: bool = False  # fail when the lock is out of date instead of updating it


@dataclass(frozen=True)
class SyncResult:
    lock: Path
    installed: tuple[str, ...]  # "name==version" newly installed or changed
    removed: tuple[str, ...]
    left_to_base: tuple[str, ...]
    unchanged: bool


def real_uv() -> str:
    uv = uv_not_a_shim()
    if uv is None:
        raise BadInput("uv is not installed (pip install uv): a uv.lock is installed with it")
    return uv


def _run(argv: Sequence[str], env: Mapping[str, str], log: Log,
         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, errors="replace", env=dict(env), cwd=cwd,
                            stdin=subprocess.DEVNULL, check=False)
    if log.path is not None:
        from layerenv.store.atomic import open_log

        with open_log(log.path) as handle:
            handle.write("$ " + " ".join(argv) + "\n" + result.stdout + result.stderr + f"[exit {result.returncode}]\n")
    return result


def _last_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    flagged = [line for line in lines if "error" in line.lower()]
    return (flagged or lines or [f"exit {result.returncode}"])[-1]


def refresh_uv_lock(project_dir: Path, python: Path, *, locked: bool, log: Log) -> None:
    """``uv lock`` as uv itself runs it (what ``uv sync`` does first), so the lock is uv's own."""
    argv = [real_uv(), "lock", "--python", str(python), *(["--locked"] if locked else [])]
    env = portable_env(os.environ)
    env.pop("VIRTUAL_ENV", None)
    result = _run(argv, env, log, cwd=project_dir)
    if result.returncode != 0:
        raise OperationFailed(f"uv lock failed in {project_dir}: {_last_error(result)}")


def marker_environment(python: Path) -> dict[str, str]:
    result = subprocess.run([str(python), "-I", "-S", "-c", _MARKER_ENV], capture_output=True, text=True,
                            check=False, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise OperationFailed(f"{python} does not run: {result.stderr.strip()[-200:]}")
    data = json.loads(result.stdout)
    return {str(k): str(v) for k, v in data.items()}


def _base_versions(venv: Path) -> dict[str, str]:
    """Every distribution the base provides, as its stubs in the project venv name it."""
    return {d.name: d.version for d in read_distributions(VenvLayout.for_venv(venv).site_packages)
            if (d.dist_info / STUB_MARKER).is_file()}


def _index_url(index: str) -> str:
    return index if "://" in index else Path(index).absolute().as_uri()


def requirement_lines(packages: Sequence[LockedPackage], project_dir: Path) -> list[str]:
    """Pinned requirements with every hash the lock lists (``--require-hashes`` checks each file)."""
    lines = []
    for package in packages:
        hashes = " ".join(f"--hash={digest}" for digest in package.hashes)
        if package.source == "registry":
            lines.append(f"{package.name}=={package.version} {hashes}".strip())
        elif package.source in ("url", "path") and package.url:
            url = package.url if "://" in package.url else (project_dir / package.url).absolute().as_uri()
            lines.append(f"{package.name} @ {url} {hashes}".strip())
    return lines


def _unhashed(packages: Sequence[LockedPackage], project_dir: Path) -> list[str]:
    """Git and directory sources: the lock has no file hash for them."""
    found = []
    for package in packages:
        if package.source == "git" and package.url:
            found.append(f"{package.name} @ git+{package.url.removeprefix('git+')}")
        elif package.source in ("directory", "editable") and package.url:
            found.append(f"{package.name} @ {(project_dir / package.url).absolute().as_uri()}")
    return found


def _indexes(packages: Sequence[LockedPackage]) -> list[str]:
    return list(dict.fromkeys(_index_url(p.index) for p in packages if p.source == "registry" and p.index))


def _installer_argv(python: Path, indexes: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    env = portable_env(os.environ)
    env.pop("VIRTUAL_ENV", None)
    uv = uv_not_a_shim()
    if uv is not None:
        argv = [uv, "pip", "install", "--python", str(python)]
        if indexes:
            # Every file is checked against the lock's hashes, so where it comes from cannot change
            # what gets installed; best-match lets one lock span several registries.
            argv += ["--index-strategy", "unsafe-best-match", "--default-index", indexes[0]]
            for url in indexes[1:]:
                argv += ["--index", url]
        return argv, env
    argv = [str(python), "-m", "pip", "install", "--no-input", "--disable-pip-version-check"]
    if indexes:
        argv += ["--index-url", indexes[0], *[a for url in indexes[1:] for a in ("--extra-index-url", url)]]
    return argv, env


def check_base_meets(plan_: Plan, venv: Path, python: Path, base_id: str, log: Log) -> None:
    """Stop before anything is installed when a kept package needs a torch the base is not.

    Where the lock records the requirement (poetry.lock edges, the project's own requires-dist) it is
    checked directly; where it does not (uv.lock registry edges, pylock.toml) and the lock resolved
    another torch than the base's, uv resolves the kept pins against the base's constraints in a dry
    run, which reads metadata only and downloads no wheel.
    """
    record = read_link(venv)
    family = dict(record.family) if record else {}
    found = conflicts(plan_, family)
    if found:
        raise OperationFailed(f"{found[0].describe(base_id)}; {_FIX}")
    differs = any(name in family and family[name].split("+")[0] != version.split("+")[0]
                  for name, version in plan_.locked_family.items())
    uv = uv_not_a_shim()
    if not differs or uv is None or not plan_.install or record is None:
        return
    with tempfile.TemporaryDirectory(prefix="layerenv-sync-") as scratch:
        pins = Path(scratch) / "pins.txt"
        pins.write_text("".join(f"{p.name}=={p.version}\n" for p in plan_.install if p.source == "registry"))
        argv = [uv, "pip", "install", "--dry-run", "--python", str(python), "-r", str(pins),
                "-c", str(record.constraints)]
        indexes = _indexes(plan_.install)
        if indexes:
            argv += ["--index-strategy", "unsafe-best-match", "--default-index", indexes[0]]
            for url in indexes[1:]:
                argv += ["--index", url]
        env = portable_env(os.environ)
        env.pop("VIRTUAL_ENV", None)
        result = _run(argv, env, log)
    if result.returncode != 0:
        versions = {p.name: p.version for p in plan_.install}
        raise OperationFailed(f"{_explain_resolver(result.stderr + result.stdout, family, base_id, versions)}; {_FIX}")


_FIX = "to use another torch, set `[torch] version` in layerenv.toml, then run `layerenv project`"


def _explain_resolver(output: str, family: Mapping[str, str], base_id: str, versions: Mapping[str, str]) -> str:
    """uv's "X depends on torch==2.5.1" as one line naming the package, its requirement and the base."""
    import re

    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    pattern = (r"(?:all versions of |only )?([A-Za-z0-9_.-]+?)(?:==[^\s,]+)? depends? on "
               r"((torch|torchvision|torchaudio)([^\s,]*))")
    for match in re.finditer(pattern, output):
        name, requirement, family_name, specifier = match[1], match[2], match[3], match[4]
        have = family.get(family_name)
        try:
            holds = have is not None and SpecifierSet(specifier).contains(have, prereleases=True)
        except InvalidSpecifier:
            holds = False
        if not holds and name not in family:
            version = versions.get(name, "")
            return (f"{name} {version} requires {requirement}, but base {base_id} has "
                    f"{family_name} {have or '(none)'}").replace("  ", " ")
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return f"the locked packages do not fit base {base_id}: {(lines or ['no output'])[-1]}"


def _project_install(lock: Lock, project_dir: Path) -> bool:
    """Whether the project itself is installed (editable), as its tool would."""
    if lock.project is not None:
        return lock.project.source == "editable"
    if lock.kind == "poetry.lock":
        pyproject = read_toml(project_dir / "pyproject.toml") if (project_dir / "pyproject.toml").is_file() else {}
        tool = pyproject.get("tool", {})
        poetry = tool.get("poetry", {}) if isinstance(tool, dict) else {}
        return "build-system" in pyproject and not (isinstance(poetry, dict) and poetry.get("package-mode") is False)
    return False


def _check_selection(pyproject: Mapping[str, object], selection: Selection, where: Path) -> None:
    """Unknown ``--extra``/``--group`` names fail before ``uv lock`` writes anything."""
    project = pyproject.get("project")
    optional = project.get("optional-dependencies", {}) if isinstance(project, dict) else {}
    groups = pyproject.get("dependency-groups", {})
    for flag, asked, known in (("--extra", selection.extras, optional), ("--group", selection.groups, groups)):
        names = sorted(known) if isinstance(known, dict) else []
        for name in asked:
            if name not in names:
                listed = ", ".join(names) or "none"
                raise BadInput(f"{flag} {name!r}: {where} defines no such {flag[2:]} (known: {listed})")


def sync(request: SyncRequest, reporter: Reporter, log: Log) -> SyncResult:
    """Bring ``request.venv`` to exactly what the project's lock pins (the torch family left to the
    base); packages the last sync installed and the lock no longer pins are removed, packages
    installed by hand are kept."""
    venv, project_dir = request.venv, request.project_dir
    record = read_link(venv)
    if record is None:
        raise BadInput(f"{venv} is not a layerenv project venv; run `layerenv project {project_dir}` first")
    python = VenvLayout.for_venv(venv).python
    lock_path = find_lock(project_dir)
    pyproject = project_dir / "pyproject.toml"
    uv_project = lock_path is None or lock_path.name == "uv.lock"
    if uv_project and not request.frozen and pyproject.is_file():
        _check_selection(read_toml(pyproject), request.selection, pyproject)
        reporter.step(f"locking {project_dir} with uv")
        refresh_uv_lock(project_dir, Path(lock_python(venv, python)), locked=request.locked, log=log)
        lock_path = find_lock(project_dir)
    if lock_path is None:
        raise BadInput(f"{project_dir} has no uv.lock, pylock.toml or poetry.lock (and no pyproject.toml to lock)")
    lock = read_lock(lock_path, read_toml(pyproject) if pyproject.is_file() else {})
    the_plan = plan(lock, marker_environment(python), request.selection, _base_versions(venv))
    check_base_meets(the_plan, venv, python, record.base_id, log)
    state = read_state(venv)
    previous = state.get("installed", {})
    previous = previous if isinstance(previous, dict) else {}
    wanted = {p.name: p.version for p in the_plan.install}
    distributions = read_distributions(VenvLayout.for_venv(venv).site_packages)
    present = {d.name: d.version for d in distributions if not (d.dist_info / STUB_MARKER).is_file()}
    # the base's stub at the locked version already satisfies the installer, which installs nothing for it
    stubbed = {d.name: d.version for d in distributions if (d.dist_info / STUB_MARKER).is_file()}
    changed = [p for p in the_plan.install if p.version not in (present.get(p.name), stubbed.get(p.name))]
    # what layerenv itself installed: the last sync, and `layerenv project` for packages the lock knows
    # (those of requirements files it does not know stay, as packages installed by hand do)
    locked_names = {package.name for package in lock.packages}
    managed = set(previous) | (_project_installed(venv) & locked_names)
    removed = sorted(name for name in managed if name not in wanted and name in present and not is_family(name))
    removed += sorted(name for name in present if is_family(name))  # a plain `uv sync` put them there
    (venv / SYNC_KEY).unlink(missing_ok=True)  # written back once this sync has done all it does
    if changed:
        reporter.step(f"installing {len(changed)} locked package(s) from {lock_path.name} with their hashes")
        _install(changed, project_dir, python, log)
    if removed:
        reporter.step(f"removing {', '.join(removed)}: not pinned by {lock_path.name}, or the base's to provide")
        _uninstall(removed, python, log)
    if _project_install(lock, project_dir) and (changed or removed or not state):
        _install_editable(project_dir, python, _indexes(the_plan.install), log)
    link(venv, base_id=record.base_id, base_venv=record.base_venv, per_node=KEEP)  # stubs back for what went
    site_packages = VenvLayout.for_venv(venv).site_packages.relative_to(venv).as_posix()
    write_json(venv / SYNC_STATE, {
        "lock": lock_path.name,
        "lock_sha256": file_digest(lock_path),
        "pyproject_sha256": file_digest(pyproject),
        "installed": wanted,
        "left_to_base": sorted({need.name for need in the_plan.family} | set(the_plan.only_family)),
    })
    # what the project venv's `uv sync` compares to know, without this module, that there is nothing to do
    selection = selection_text(asdict(request.selection))
    write_text(venv / SYNC_KEY, sync_key(site_packages, fingerprint(venv, project_dir, site_packages, selection),
                                         lock_path), durable=False)
    return SyncResult(
        lock=lock_path,
        installed=tuple(f"{p.name}=={p.version}" for p in changed),
        removed=tuple(removed),
        left_to_base=tuple(sorted({need.name for need in the_plan.family})),
        unchanged=not changed and not removed,
    )


def _install(packages: Sequence[LockedPackage], project_dir: Path, python: Path, log: Log) -> None:
    hashed = requirement_lines(packages, project_dir)
    unhashed = _unhashed(packages, project_dir)
    argv, env = _installer_argv(python, _indexes(packages))
    with tempfile.TemporaryDirectory(prefix="layerenv-sync-") as scratch:
        for lines, extra in ((hashed, ["--require-hashes"]), (unhashed, [])):
            if not lines:
                continue
            requirements = Path(scratch) / "requirements.txt"
            requirements.write_text("\n".join(lines) + "\n", encoding="utf-8")
            result = _run([*argv, "--no-deps", *extra, "-r", str(requirements)], env, log)
            if result.returncode != 0:
                raise OperationFailed(f"installing the locked packages failed: {_last_error(result)} (log: {log.path})")
    _fix_uv_lock_mode(python)


def _install_editable(project_dir: Path, python: Path, indexes: Sequence[str], log: Log) -> None:
    argv, env = _installer_argv(python, indexes)
    result = _run([*argv, "--no-deps", "-e", str(project_dir)], env, log)
    if result.returncode != 0:
        raise OperationFailed(f"installing {project_dir} itself failed: {_last_error(result)} (log: {log.path})")
    _fix_uv_lock_mode(python)


def _uninstall(names: Sequence[str], python: Path, log: Log) -> None:
    uv = uv_not_a_shim()
    env = portable_env(os.environ)
    env.pop("VIRTUAL_ENV", None)
    argv = ([uv, "pip", "uninstall", "--python", str(python), *names] if uv
            else [str(python), "-m", "pip", "uninstall", "-y", *names])
    result = _run(argv, env, log)
    if result.returncode != 0:
        raise OperationFailed(f"removing {', '.join(names)} failed: {_last_error(result)} (log: {log.path})")


def _fix_uv_lock_mode(python: Path) -> None:
    lock = python.parent.parent / ".lock"  # uv leaves its lock world-writable whatever the umask
    if lock.is_file():
        lock.chmod(0o644)


def _project_installed(venv: Path) -> set[str]:
    """The names `layerenv project` recorded as its own install (its state file's ``installed``)."""
    try:
        recorded = json.loads((venv / STATE_FILE).read_text(encoding="utf-8")).get("installed")
    except (OSError, ValueError, AttributeError):
        return set()
    return {canonical_name(str(name)) for name in recorded} if isinstance(recorded, list) else set()
