"""Building a base: plan -> install -> verify -> publish, in a staging dir, under the key's lock.

Called by :func:`layerenv.base.ensure_base` once no fitting base exists; kept apart so that reusing a
base (the common case) imports none of this.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from layerenv import __version__
from layerenv.base.manifest import Manifest, PackageRecord, refuse_newer
from layerenv.base.request import BaseRequest, BaseResult, base_id
from layerenv.base.resolve import (
    Acceptance,
    companion_specifier,
    newest_acceptable,
    newest_of_each,
    newest_together,
    series_specifier,
)
from layerenv.base.torch_check import TorchReport, inspect_torch, judge
from layerenv.base.unlisted import capture_own_files
from layerenv.choice.variant import parse_version_tuple
from layerenv.errors import OperationFailed
from layerenv.faults import checkpoint
from layerenv.installers import Installer, Log, Resolved, Sources, UvInstaller, get_installer
from layerenv.reporter import Reporter, progress
from layerenv.side_calls import SideCalls
from layerenv.store.atomic import open_log, remove_tree, swap_in, write_json
from layerenv.store.home import MANIFEST_NAME, Store
from layerenv.urls import fill_template, redact, unreachable_reason
from layerenv.venv.create import BASE_PROMPT, create_virtualenv
from layerenv.venv.layout import VenvLayout
from layerenv.venv.relocate import relocate_venv

if TYPE_CHECKING:  # what an unreachable index explains is imported only when one is
    from layerenv.base.offline import Unreachable


def resolve_sources(
    request: BaseRequest, reporter: Reporter, log: Log, prefix: Path | None = None
) -> tuple[Sources, Unreachable | None, str]:
    """Where the base's wheels come from, and the installer to fetch them with; when the variant's
    index does not answer, say so at once with what would work here, and fail at once when nothing
    else could be tried (no slow probes). Where "auto" chose an installer whose own settings offer
    nothing but pip's do (pip's find-links on an offline machine), pip stands in, with a line.

    ``prefix`` is the environment the installer will run in (its ``pip.conf`` counts).
    """
    decision = request.detection.decision
    template = request.sources.index_template or decision.table.index_template
    index_url: str | None = fill_template(template, decision.variant.name, "index.url")
    problem = unreachable_reason(index_url) if index_url else None
    if problem is None:
        return Sources(index_url, request.sources.extra_index_urls, request.sources.find_links), None, request.installer
    offline = _offline(request, redact(index_url or ""), problem)
    _write_log(log, offline.log_lines())
    installer = request.installer
    if not (request.sources.find_links or request.sources.extra_index_urls or _installer_offers(installer, prefix)):
        if not (request.installer_auto and installer != "pip" and _installer_offers("pip", prefix)):
            raise OperationFailed(f"{offline.dead_end(installer)} (log: {log.path})")
        reporter.step(f"only pip's configuration offers {decision.variant} builds here (not {installer}'s): "
                      "this base is built with pip")
        installer = "pip"
    reporter.warn(offline.warning(installer))
    return Sources(None, request.sources.extra_index_urls, request.sources.find_links), offline, installer


def _offline(request: BaseRequest, index_url: str, problem: str) -> Unreachable:
    from layerenv.base.adoptable import find_adoptable
    from layerenv.base.offline import Unreachable
    from layerenv.choice.table import load_matrix

    installs = find_adoptable(request.detection, load_matrix(), os.environ, Path.home())
    return Unreachable(request.detection.decision.variant, index_url, problem, tuple(installs))


def _installer_offers(installer: str, prefix: Path | None) -> bool:
    """Whether pip's or uv's own settings point anywhere but PyPI (which has no labelled Linux torch)."""
    from layerenv.installers.settings import offers_other_sources, read_installer_settings

    return offers_other_sources(read_installer_settings(os.environ, Path.home(), prefix), installer)


def _with_installer(request: BaseRequest, installer: Installer, name: str) -> tuple[BaseRequest, Installer]:
    """The request and installer to build with, once :func:`resolve_sources` named pip to stand in."""
    if name == request.installer:
        return request, installer
    return replace(request, installer=name), get_installer(name)


def _write_log(log: Log, lines: list[str]) -> None:
    if log.path is None:
        return
    with open_log(log.path) as handle:
        handle.writelines(f"{line}\n" for line in lines)


@dataclass(frozen=True)
class _Plan:
    torch: Resolved
    requirements: tuple[str, ...]
    notes: tuple[str, ...]


def _plan(
    request: BaseRequest,
    installer: Installer,
    python: Path,
    sources: Sources,
    log: Log,
    *,
    open_ended: bool,
    offline: Unreachable | None = None,
) -> _Plan:
    decision = request.detection.decision
    acceptance = Acceptance(decision.variant.name, sources.index_url, sources.find_links)

    def newest(requirement: str) -> Resolved | None:
        return installer.newest(python, requirement, sources, log)

    companions = [name for name in request.packages if name != "torch"]

    def pair_companions(torch_version: str) -> dict[str, str | None]:
        return {name: companion_specifier(name, torch_version, decision.table.torchaudio_series)
                for name in companions}

    # a companion pairs with torch's series, nearly always the newest in range: the companions are resolved for
    # it with torch, and again once torch is known only where its series turns out to be another
    likely = pair_companions(decision.torch_series[0])
    specifier = series_specifier(decision.torch_series, open_ended=open_ended, pin=request.pin)
    together = newest_together(
        {"torch": specifier, **_asked(likely)},
        lambda requirements: installer.newest_each(python, requirements, sources, log),
        newest,
        acceptance,
    )
    if together is None:  # one name had nothing in its range, which one run does not say: each is asked alone
        torch, rejected, likely_answers = _each_alone(specifier, likely, newest, acceptance)
    else:
        torch, rejected = together.pop("torch")
        likely_answers = together
    if torch is None:
        detail = f"; skipped: {rejected[-1]}" if rejected else ""
        if offline is not None:
            detail += f"; {offline.headline()}: {offline.what_would_work()}"
        raise OperationFailed(
            f"no torch{specifier} {decision.variant} build found in {', '.join(sources.describe())}{detail} "
            f"(log: {log.path})"
        )
    pairing = pair_companions(torch.version)
    answers = likely_answers if pairing == likely else newest_of_each(_asked(pairing), newest, acceptance)
    requirements = [f"torch=={torch.version}"]
    notes = []
    for name in companions:
        companion = pairing[name]
        if companion is None:
            notes.append(f"{name}: no release pairs with torch {torch.version}; left out")
            continue
        found, _ = answers[name] if companion else (None, [])
        if companion and found is None:
            notes.append(f"{name}{companion}: no {decision.variant} build in the sources; left out")
            continue
        requirements.append(f"{name}=={found.version}" if found else name)
    return _Plan(torch, tuple(requirements), tuple(notes))


def _each_alone(
    specifier: str,
    likely: dict[str, str | None],
    newest: Callable[[str], Resolved | None],
    acceptance: Acceptance,
) -> tuple[Resolved | None, list[str], dict[str, tuple[Resolved | None, list[str]]]]:
    """torch's newest acceptable release and the likely companions', each asked alone, the companions beside torch."""
    with SideCalls("layerenv-companions") as side:
        guessed = side.start(newest_of_each, _asked(likely), newest, acceptance)
        torch, rejected = newest_acceptable("torch", specifier, newest, acceptance)
        return torch, rejected, guessed.result()


def _asked(pairing: dict[str, str | None]) -> dict[str, str]:
    """The companions to resolve: those with a series to look in (``None``: none pairs; ``""``: any release)."""
    return {name: specifier for name, specifier in pairing.items() if specifier}


def _package_records(venv: Path, installer: str) -> dict[str, PackageRecord]:
    from layerenv.venv.distinfo import read_distributions

    return {
        dist.name: PackageRecord(dist.name, dist.version, dist.record_sha256, dist.installer or installer)
        for dist in read_distributions(VenvLayout.for_venv(venv).site_packages)
    }


def build(
    request: BaseRequest, store: Store, key: str, reporter: Reporter, installer: Installer | None = None
) -> BaseResult:
    """Build in staging; a torch newer than the table is kept only if its verified arch list fits.
    ``installer`` fills it (by default the one ``request.installer`` names)."""
    decision = request.detection.decision
    if installer is None and request.installer_note:
        reporter.step(request.installer_note)
    installer = installer or get_installer(request.installer)
    try:
        return _build_once(request, installer, store, key, reporter, open_ended=decision.may_be_newer)
    except _NewerReleaseRejected as rejected:
        reporter.warn(f"{rejected.message}; falling back to the releases layerenv knows")
        return _build_once(request, installer, store, key, reporter, open_ended=False)


class _NewerReleaseRejected(OperationFailed):
    pass


def _build_once(
    request: BaseRequest,
    installer: Installer,
    store: Store,
    key: str,
    reporter: Reporter,
    *,
    open_ended: bool,
) -> BaseResult:
    decision = request.detection.decision
    machine = request.detection.machine
    timings: dict[str, float] = {}
    started = time.monotonic()
    staging = store.new_staging_dir(key)
    log = Log(store.log_path(key), verbose=request.verbose)
    try:
        python = VenvLayout.for_venv(staging).python
        request, installer, sources, plan = _venv_and_plan(
            request, installer, staging, reporter, log, timings, started, open_ended=open_ended)
        checkpoint("base:after-resolve")
        for note in plan.notes:
            reporter.warn(note)
        with _stage(reporter, timings, "install", f"installing {' '.join(plan.requirements)} with {installer.name}"):
            _install(installer, python, plan, sources, log, decision.variant.name)
        checkpoint("base:after-install")
        with _stage(reporter, timings, "verify", "verifying torch in the new base"):
            report = _verify(python, request, plan, log, open_ended=open_ended)
        checkpoint("base:after-verify")
        new_id = base_id(key, plan.torch.version, decision.variant)
        final = store.base_dir(new_id)
        refuse_newer(final / MANIFEST_NAME)
        timings["total"] = time.monotonic() - started
        manifest = Manifest(
            base_id=new_id,
            path=str(final),
            created=time.time(),
            layerenv_version=__version__,
            python=request.interpreter,
            variant=decision.variant.name,
            channel=decision.channel,
            torch=plan.torch.version,
            torch_build=report.version or plan.torch.version,
            requested=tuple(request.packages),
            packages=_package_records(staging, installer.name),
            machine=machine,
            decision=decision,
            verification=report,
            indexes=tuple(sources.describe()),
            sources_tag=request.sources.tag,
            timings={name: round(value, 3) for name, value in timings.items()},
        )
        relocate_venv(staging, staging, final)
        checkpoint("base:after-relocate")
        manifest = replace(manifest, venv_files=capture_own_files(staging))
        write_json(staging / MANIFEST_NAME, manifest.to_json())
        checkpoint("base:before-publish")
        graveyard = store.graveyard_dir(new_id)
        swap_in(staging, final, graveyard)
        checkpoint("base:after-swap")
        remove_tree(graveyard)
        checkpoint("base:after-cleanup")
        reporter.step(f"published {new_id}")
        return BaseResult(manifest, reused=False, log=log.path)
    finally:
        remove_tree(staging)


def _venv_and_plan(
    request: BaseRequest,
    installer: Installer,
    staging: Path,
    reporter: Reporter,
    log: Log,
    timings: dict[str, float],
    started: float,
    *,
    open_ended: bool,
) -> tuple[BaseRequest, Installer, Sources, _Plan]:
    """The staging venv and the plan, side by side: the venv is made while the index is probed and
    (with uv, which needs no pip inside) while torch is resolved for the interpreter."""
    decision = request.detection.decision
    python = VenvLayout.for_venv(staging).python
    with SideCalls("layerenv-venv") as side:
        creating = side.start(_create_venv, staging, request, installer, log)
        sources, offline, installer_name = resolve_sources(request, reporter, log, prefix=staging)
        request, chosen = _with_installer(request, installer, installer_name)
        if chosen.seeds_pip != installer.seeds_pip:  # pip standing in for uv: its venv needs pip
            creating.result()
            remove_tree(staging)
            creating = side.start(_create_venv, staging, request, chosen, log)
        installer = chosen
        reporter.step(f"creating a {request.interpreter.tag} virtualenv")
        if installer.seeds_pip:  # pip resolves from inside the venv; uv (no pip) for the interpreter, meanwhile
            creating.result()
            checkpoint("base:after-venv")
        timings["venv"] = time.monotonic() - started
        with _stage(reporter, timings, "resolve", f"resolving torch for {decision.variant}"):
            plan = _plan(request, installer, python if installer.seeds_pip else request.interpreter.executable,
                         sources, log, open_ended=open_ended, offline=offline)
        creating.result()
    if not installer.seeds_pip:
        checkpoint("base:after-venv")
    return request, installer, sources, plan


def _create_venv(staging: Path, request: BaseRequest, installer: Installer, log: Log) -> None:
    """The staging venv: ``uv venv`` where uv fills it (milliseconds), else virtualenv (pip seeded where pip
    fills it); either way made with :data:`BASE_PROMPT`, so that project venvs on the base copy its shape."""
    if isinstance(installer, UvInstaller):
        installer.create_venv(staging, request.interpreter.executable, prompt=BASE_PROMPT, log=log)
        return
    create_virtualenv(staging, request.interpreter.executable, prompt=BASE_PROMPT, seed_pip=installer.seeds_pip)


@contextmanager
def _stage(reporter: Reporter, timings: dict[str, float], name: str, text: str) -> Iterator[None]:
    """A long step: its line, its progress on a terminal (the installer's output goes to the log, so
    the time it has taken), its duration in ``timings``."""
    reporter.step(text)
    mark = time.monotonic()
    with progress(reporter, name):
        yield
    timings[name] = time.monotonic() - mark


def _verify(python: Path, request: BaseRequest, plan: _Plan, log: Log, *, open_ended: bool) -> TorchReport:
    """Check the new interpreter's torch; a too-new release that fails is retried within the table."""
    decision = request.detection.decision
    report = inspect_torch(python, run_kernel=True)
    problems = judge(report, variant=decision.variant, version=plan.torch.version, gpus=decision.served)
    series = ".".join(plan.torch.version.split(".")[:2])
    if problems and open_ended and parse_version_tuple(series) > parse_version_tuple(decision.torch_series[0]):
        raise _NewerReleaseRejected(f"torch {plan.torch.version} is newer than the table and {problems[0]}")
    if problems:
        raise OperationFailed(f"the new base failed verification: {'; '.join(problems)} (log: {log.path})")
    return report


def _install(installer: Installer, python: Path, plan: _Plan, sources: Sources, log: Log, variant: str) -> None:
    """Install the plan; no dependency confusion: each pinned torch-family wheel came from an accepted
    place (the installer is asked where from only for a build whose label does not already settle it)."""
    acceptance = Acceptance(variant, sources.index_url, sources.find_links)
    pinned = {requirement.split("==")[0] for requirement in plan.requirements}
    installed = installer.install(
        python, plan.requirements, sources, log,
        sources_for=lambda name, version: name.lower() in pinned and acceptance.needs_source(version),
    )
    for item in installed:
        if item.name.lower() in pinned and acceptance.why_not(item) is not None:
            raise OperationFailed(f"refusing the base: {acceptance.why_not(item)}")
