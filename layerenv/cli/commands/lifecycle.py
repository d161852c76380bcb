"""``layerenv doctor``, ``verify`` and ``gc``: keep a store and its projects healthy."""

from __future__ import annotations

import json
import sys

import click

from layerenv.cli.options import open_session
from layerenv.errors import EXIT_FAILURE
from layerenv.reporter import format_size


@click.command("doctor")
@click.option("--fix", is_flag=True,
              help="Repair what is safe (a torch family shadowing the base's, broken links or stubs, stale registry).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for other tools.")
def doctor_command(fix: bool, as_json: bool) -> None:
    """Find what is wrong with the machine, the bases and the projects, each with its fix.

    Checks: GPUs hidden by CUDA_VISIBLE_DEVICES; bases in use (or current) that no longer fit the
    machine or whose files changed since their manifest; projects holding torch-family distributions
    of their own (torch, triton, nvidia-*..., each with its size), whose link, stubs or base are
    gone or garbled, or whose Python has no base; per-node projects with no base recorded for this
    node; start-up files (*.pth, sitecustomize, usercustomize) in a base's or project's site-packages
    that no installed package nor layerenv put there (named, never removed: only you can tell a planted
    one from one placed on purpose); unreadable registry entries and manifests. --fix removes a
    shadowing family through its RECORDs (regular files inside the venv only, never through a
    symlink) and says how much it freed. Exit 0 when healthy (after --fix: when nothing is left
    and nothing had to be left alone), 1 otherwise. What limits this machine's choice of torch
    (the driver, a GPU newer releases drop) is shown as `outlook:` lines: information, never a
    problem.
    """
    from layerenv.lifecycle.doctor import doctor

    session = open_session(machine_wide=True)  # the same verdict from any directory
    store = session.store
    current = session.current_base()
    report = doctor(store, session.detection, current, fix=fix, env=session.env)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    elif not report.findings:
        click.echo(f"healthy: {report.projects} project(s), {report.bases} base(s), nothing to fix")
    for finding in () if as_json else report.findings:
        if finding.fixed:
            click.echo(f"fixed: {finding.message} -> {finding.change or finding.fix}")
        else:
            click.echo(f"problem: {finding.message} -> fix: {finding.fix}")
            if finding.change:
                click.echo(f"  ({finding.change})")
    for line in () if as_json else report.outlook:
        click.echo(f"outlook: {line}")
    if not report.healthy:
        sys.exit(EXIT_FAILURE)


@click.command("verify")
@click.argument("base", required=False, metavar="[BASE]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for other tools.")
def verify_command(base: str | None, as_json: bool) -> None:
    """Check every file of BASE against the hashes its manifest captured (default: every published base).

    Reports each file modified or missing, a RECORD edited, a distribution gone, and every file in
    the base that no RECORD lists and layerenv did not write (a sitecustomize.py or .pth dropped in
    runs in every project): "unlisted" (bytecode caches aside).
    Exit 0 when everything matches, 1 when anything differs, 2 for an unknown BASE.
    """
    from layerenv.base.file_check import verify_store

    checks = verify_store(open_session().store, base)
    ok = all(check.ok for check in checks)
    if as_json:
        click.echo(json.dumps({"ok": ok, "bases": [check.to_json() for check in checks]}, indent=2))
    elif not checks:
        click.echo("no published bases to verify")
    for check in () if as_json else checks:
        detail = f"{check.distributions} distribution(s), {check.files} file(s) checked"
        if check.ok:
            click.echo(f"{check.base_id}: ok ({detail})")
            continue
        click.echo(f"{check.base_id}: {len(check.problems) + len(check.unlisted)} problem(s) ({detail})")
        for problem in check.problems:
            owner = f"  [{problem.distribution}]" if problem.distribution else ""
            click.echo(f"  {problem.kind:<20} {problem.path}{owner}")
        for path in check.unlisted:
            click.echo(f"  {'unlisted':<20} {path}  (no RECORD lists it)")
    if not ok:
        sys.exit(EXIT_FAILURE)


@click.command("gc")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for other tools.")
def gc_command(dry_run: bool, as_json: bool) -> None:
    """Remove bases that no registered project uses and that are not current.

    Current is the base `layerenv status` marks current (this interpreter, these settings). A base
    whose key's lock is held (a build of that key in progress) is kept, and so is one that another
    node of a shared store recorded as its base (that node may be down now). For an adopted base only
    its manifest in the store is removed, never the environment. Staging dirs of interrupted builds
    (in staging/, their key's lock free) are removed too, the venv shapes (in shapes/) of
    interpreters no base uses, and the temporary files a killed command left in registry/ and users/
    (over an hour old). Reports the space freed.
    """
    from layerenv.lifecycle.gc import collect

    session = open_session()
    store = session.store
    current = session.current_base()
    result = collect(store, {current.base_id} if current else set(), dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    verb = "would remove" if dry_run else "removed"
    for removal in result.removed:
        if removal.adopted:
            click.echo(
                f"{verb} {removal.base_id} (its manifest only; the adopted environment {removal.environment} "
                "is left alone)"
            )
        else:
            click.echo(f"{verb} {removal.base_id} ({format_size(removal.size_bytes)})")
    for kept in result.kept:
        click.echo(f"kept {kept.base_id}: {kept.reason}")
    for leftover in result.staging:
        click.echo(f"{verb} {leftover.describe()}")
    for leftover in result.staging_kept:
        click.echo(f"kept {leftover.describe()}")
    for shape in result.shapes:
        click.echo(f"{verb} {shape.path} ({format_size(shape.size_bytes)}): the empty venv shape of an interpreter "
                   "no base uses")
    for temporary in result.temporaries:
        click.echo(f"{verb} {temporary}: a temporary file an interrupted command left")
    click.echo(f"{'would free' if dry_run else 'freed'} {format_size(result.freed_bytes)}")
