"""The trust model of shared stores (README "Trust model (shared stores)"): who may own and write a
store, its bases, registry, node records, locks and logs, and what layerenv does when someone else could.

Multi-user cases run as root: paths are ``chown``ed to uid 65534 and their modes set; no users are
created. Where a non-root caller is needed, the test drops its effective uid to 65534 for the call.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from layerenv.cli.main import cli
from layerenv.errors import OperationFailed
from layerenv.store.home import MANIFEST_NAME, Store
from layerenv.store.trust import Trust, problem
from tests.support.cli import FIXTURE_MACHINES

OTHER = 65534  # nobody
AS_ROOT = pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0,
                             reason="multi-user cases chown paths to another uid: they need root")


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("layerenv: error: "), stderr
    return lines[0]


def everything(root: Path) -> dict[str, tuple[int, int, int]]:
    """Each path under ``root`` with its owner, group and mode: what "nothing changed" compares."""
    found = {}
    for path in [root, *root.rglob("*")]:
        info = path.lstat()
        found[str(path)] = (info.st_uid, info.st_gid, info.st_mode)
    return found


def env_for(home: Path, **extra: str) -> dict[str, str]:
    return {"LAYERENV_HOME": str(home), "LAYERENV_USER_CONFIG": str(home.parent / "no-user.toml"),
            "LAYERENV_SYSROOT": str(FIXTURE_MACHINES / "no-gpu"), **extra}


def invoke(args: list[str], home: Path, cwd: Path | None = None, **extra: str):  # type: ignore[no-untyped-def]
    runner = CliRunner()
    if cwd is None:
        return runner.invoke(cli, args, env=env_for(home, **extra))
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        return runner.invoke(cli, args, env=env_for(home, **extra))
    finally:
        os.chdir(previous)


def make_store(root: Path) -> Store:
    store = Store.open(str(root / "home"), {})
    store.ensure_writable()
    return store


def fake_base(store: Store, base_id: str) -> Path:
    """A directory in bases/ that looks like a base (a manifest that does not read is enough to list it)."""
    directory = store.bases / base_id
    directory.mkdir()
    (directory / MANIFEST_NAME).write_text("{}", encoding="utf-8")
    return directory


def stat_of(uid: int, gid: int, mode: int) -> os.stat_result:
    return os.stat_result((mode, 0, 0, 1, uid, gid, 0, 0, 0, 0))


# The rule itself, pure ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uid", "gid", "mode", "trusted", "expected"),
    [
        (1000, 1000, stat.S_IFDIR | 0o755, (), None),  # the caller's own
        (0, 0, stat.S_IFDIR | 0o755, (), None),  # root's
        (0, 0, stat.S_IFDIR | 0o777, (), "writable by others"),
        (0, 0, stat.S_IFDIR | 0o1777, (), "writable by others"),  # sticky does not make bases/ safe
        (0, 0, stat.S_IFDIR | 0o777, (0,), "writable by others"),  # no group setting trusts everyone
        (1000, 50, stat.S_IFDIR | 0o775, (), "writable by group"),
        (1000, 50, stat.S_IFDIR | 0o2775, (50,), None),  # a team store, its group trusted
        (2000, 50, stat.S_IFDIR | 0o2775, (50,), None),  # a team member's directory in it
        (2000, 50, stat.S_IFDIR | 0o755, (), "owned by uid 2000"),
        (2000, 51, stat.S_IFDIR | 0o755, (50,), "owned by uid 2000"),  # another group: not the team's
        (2000, 2000, stat.S_IFLNK | 0o777, (), "owned by uid 2000"),  # a link someone else made
        (1000, 1000, stat.S_IFLNK | 0o777, (), None),  # the caller's link: its target is checked
    ],
)
def test_who_may_own_and_write_a_store_path(uid: int, gid: int, mode: int, trusted: tuple[int, ...],
                                             expected: str | None) -> None:
    found = problem(stat_of(uid, gid, mode), Trust(1000, frozenset(trusted)))
    if expected is None:
        assert found is None
    else:
        assert found is not None and expected in found and f"(owner uid {uid}, mode {stat.S_IMODE(mode):04o})" in found


def test_without_owners_nothing_is_refused() -> None:
    assert problem(stat_of(5, 5, stat.S_IFDIR | 0o777), Trust(None)) is None


# The store: refused in one line, exit 2, nothing changed ------------------------------------------


@AS_ROOT
@pytest.mark.parametrize("args", [["status"], ["doctor"], ["verify"], ["gc", "--dry-run"], ["base"]])
def test_a_store_others_can_write_is_refused_by_every_command(tmp_path: Path, args: list[str]) -> None:
    store = make_store(tmp_path)
    store.bases.chmod(0o777)
    before = everything(tmp_path)
    result = invoke(args, store.home)
    assert result.exit_code == 2, result.output
    line = one_error_line(result.stderr)
    assert f"{store.bases} is writable by others (owner uid 0, mode 0777)" in line
    assert f"chmod o-w {store.bases}" in line
    assert everything(tmp_path) == before


@AS_ROOT
def test_a_group_writable_store_needs_its_group_trusted(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    group = 4242
    for path in (store.home, store.registry):
        os.chown(path, 0, group)
        path.chmod(0o2775)
    refused = invoke(["status", "--json"], store.home)
    assert refused.exit_code == 2
    line = one_error_line(refused.stderr)
    assert f"{store.home} is writable by group 4242" in line and "LAYERENV_TRUSTED_GROUP" in line and "chmod g-w" in line
    accepted = invoke(["status", "--json"], store.home, LAYERENV_TRUSTED_GROUP=str(group))
    assert accepted.exit_code == 0, accepted.output
    assert json.loads(accepted.stdout)["home"] == str(store.home)
    other = invoke(["status"], store.home, LAYERENV_TRUSTED_GROUP="4243")
    assert other.exit_code == 2 and "writable by group 4242" in other.stderr


@AS_ROOT
def test_a_store_owned_by_another_user_is_refused_unless_its_group_is_trusted(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    os.chown(store.home, OTHER, 4242)
    refused = invoke(["status"], store.home)
    assert refused.exit_code == 2
    assert f"{store.home} is owned by uid {OTHER}, not by you (uid 0) or root" in one_error_line(refused.stderr)
    user_config = tmp_path / "user.toml"
    user_config.write_text('[store]\ntrusted_group = "4242"\n', encoding="utf-8")
    accepted = invoke(["status"], store.home, LAYERENV_USER_CONFIG=str(user_config))
    assert accepted.exit_code == 0, accepted.output


def test_a_project_cannot_choose_whom_the_store_trusts(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    project = tmp_path / "proj"
    project.mkdir()
    (project / "layerenv.toml").write_text('[store]\ntrusted_group = "users"\n', encoding="utf-8")
    result = invoke(["status"], store.home, cwd=project)
    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert str(project / "layerenv.toml") in line and "store.trusted_group cannot be set by a project" in line


def test_an_unknown_trusted_group_is_bad_input(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    result = invoke(["status"], store.home, LAYERENV_TRUSTED_GROUP="no-such-group-xyz")
    assert result.exit_code == 2
    assert "LAYERENV_TRUSTED_GROUP='no-such-group-xyz' is not a group" in one_error_line(result.stderr)


# Bases that cannot be used: reported by id and skipped, never a crash ---------------------------


@AS_ROOT
def test_a_base_owned_by_another_user_is_named_and_skipped(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    foreign = fake_base(store, "planted")
    os.chown(foreign, OTHER, OTHER)
    foreign.chmod(0o700)
    status = invoke(["status", "--json"], store.home)
    assert status.exit_code == 0, status.output
    [entry] = json.loads(status.stdout)["unreadable_bases"]
    assert entry["id"] == "planted" and entry["untrusted"] and f"owned by uid {OTHER}" in entry["problem"]
    text = invoke(["status"], store.home)
    assert "planted" in text.stdout and "not trusted, not used" in text.stdout
    doctor = invoke(["doctor", "--json"], store.home)
    assert "Traceback" not in doctor.output
    findings = [finding for finding in json.loads(doctor.stdout)["findings"] if finding["subject"] == "planted"]
    assert [finding["kind"] for finding in findings] == ["base-untrusted"], findings
    assert foreign.exists()  # not layerenv's to remove


@contextmanager
def effective_uid(uid: int) -> Iterator[None]:
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)


@AS_ROOT
def test_an_unreadable_directory_in_bases_is_reported_not_a_crash() -> None:
    """``mkdir bases/x; chmod 700`` by one store member: another member's status and doctor go on."""
    from layerenv.base.file_check import read_bases
    from layerenv.lifecycle.status import status_document

    root = Path(tempfile.mkdtemp(prefix="layerenv-trust-"))  # /tmp, not pytest's root-only tmp dir
    try:
        root.chmod(0o755)
        home = root / "home"
        Store(home).ensure_writable()
        hidden = home / "bases" / "x"
        hidden.mkdir()
        hidden.chmod(0o700)  # root's, unreadable to uid 65534
        store = Store.open(str(home), {}, trust=Trust(OTHER))
        with effective_uid(OTHER):
            manifests, unusable = read_bases(store)
            document = status_document(store, set(), with_sizes=False)
        assert manifests == []
        assert [(item.base_id, item.reason) for item in unusable] == [("x", f"{hidden} cannot be read (Permission denied)")]
        assert document["unreadable_bases"][0]["id"] == "x" and not document["unreadable_bases"][0]["untrusted"]
    finally:
        shutil.rmtree(root)


# Files opened without following links -------------------------------------------------------------


def test_a_log_is_never_written_through_a_planted_link(tmp_path: Path) -> None:
    from layerenv.store.atomic import open_log

    victim = tmp_path / "victim"
    victim.write_text("secret\n", encoding="utf-8")
    victim.chmod(0o600)
    planted = tmp_path / "logs" / "base-1.log"
    planted.parent.mkdir()
    planted.symlink_to(victim)
    with pytest.raises(OperationFailed, match="is a symbolic link") as caught:
        open_log(planted)
    assert "\n" not in caught.value.message
    hard = tmp_path / "logs" / "base-2.log"
    os.link(victim, hard)
    with pytest.raises(OperationFailed, match="not a log of yours"):
        open_log(hard)
    assert victim.read_text(encoding="utf-8") == "secret\n"
    fresh = tmp_path / "logs" / "base-3.log"
    with open_log(fresh) as handle:
        handle.write("ok\n")
    assert stat.S_IMODE(fresh.stat().st_mode) & 0o077 in (0, 0o040)  # 0640 at most
    with pytest.raises(OperationFailed):
        open_log(fresh, new=True)


@pytest.mark.parametrize("mode", ["flock", "lease"])
def test_a_planted_lock_link_gives_one_line_not_a_traceback(tmp_path: Path, mode: str) -> None:
    store = Store(tmp_path / "home", lock_mode=mode)
    store.ensure_writable()
    target = tmp_path / "victim"
    suffix = ".lock" if mode == "flock" else ".lease"
    (store.locks / f"k{suffix}").symlink_to(target)
    with pytest.raises(OperationFailed, match="is a symbolic link") as caught, store.lock("k", purpose="test"):
        pass
    assert "remove it" in caught.value.message
    assert not target.exists()  # never created (or truncated) through the link


def test_a_planted_lease_fifo_does_not_block(tmp_path: Path) -> None:
    store = Store(tmp_path / "home", lock_mode="lease", stale_after=3600)
    store.ensure_writable()
    os.mkfifo(store.locks / "k.lease")
    with pytest.raises(OperationFailed, match="not a regular file"), store.lock("k", purpose="test"):
        pass


def test_registry_entries_and_node_records_are_not_read_through_links(tmp_path: Path) -> None:
    from layerenv.store.nodes import lookup

    store = make_store(tmp_path)
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"venv": "/x", "base_id": "b"}), encoding="utf-8")
    (store.registry / "planted.json").symlink_to(secret)
    [entry] = store.projects()
    assert "error" in entry and entry["entry"].endswith("planted.json")
    records = store.home / "nodes" / "n1"
    records.mkdir(parents=True)
    answer = tmp_path / "answer.txt"
    answer.write_text("boot=x\nbase=b\nsite=/somewhere\n", encoding="utf-8")
    (records / "cp311-linux_x86_64.txt").symlink_to(answer)
    assert lookup(store.home, "n1", "cp311-linux_x86_64") is None


# layerenv run: the base its project links to --------------------------------------------------------


def linked_project(root: Path) -> tuple[Path, Path]:
    from layerenv.project.link import LinkRecord

    project = root / "repo"
    venv = project / ".venv"
    (venv / "bin").mkdir(parents=True)
    base = root / "store" / "bases" / "b1"
    site = base / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    record = LinkRecord(base_id="b1", base_venv=base, base_site=site, family=(("torch", "2.9.1+cpu"),),
                        family_modules=("torch",), stubs=("torch-2.9.1+cpu.dist-info",), scripts=(),
                        constraints=venv / "layerenv-constraints.txt")
    (venv / "layerenv.json").write_text(json.dumps(record.to_json()), encoding="utf-8")
    return project, base


def run_in(project: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    script = "import sys; from layerenv.cli.entry import main; sys.exit(main())"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("LAYERENV_", "VIRTUAL_ENV", "PIP_", "UV_"))}
    base_env.update(PYTHONPATH=str(Path(__file__).resolve().parents[1]), LAYERENV_USER_CONFIG="/nonexistent.toml")
    base_env.update(env or {})
    return subprocess.run([sys.executable, "-c", script, "run", *extra], cwd=project, env=base_env,
                          capture_output=True, text=True, timeout=60, check=False)


@AS_ROOT
def test_run_refuses_a_base_others_could_change(tmp_path: Path) -> None:
    project, base = linked_project(tmp_path)
    assert run_in(project, "true").returncode == 0
    base.parent.chmod(0o777)  # bases/: anyone could swap the base
    result = run_in(project, "sh", "-c", "echo ran")
    assert result.returncode == 2 and "ran" not in result.stdout
    assert f"{base.parent} is writable by others" in one_error_line(result.stderr)
    base.parent.chmod(0o755)
    os.chown(base, OTHER, OTHER)
    result = run_in(project, "true")
    assert result.returncode == 2 and f"{base} is owned by uid {OTHER}" in one_error_line(result.stderr)
    os.chown(base, 0, 4242)
    base.chmod(0o2775)
    assert run_in(project, "true").returncode == 2
    trusted = run_in(project, "true", env={"LAYERENV_TRUSTED_GROUP": "4242"})
    assert trusted.returncode == 0, trusted.stderr


# rebase never runs an interpreter it does not trust ---------------------------------------------------


@AS_ROOT
def test_rebase_never_runs_a_project_interpreter_another_user_planted(  # type: ignore[no-untyped-def]
        tmp_path: Path, driver_upgrade_env, served_indexes) -> None:
    """Two projects need a reinstall on the new torch; one's ``bin/python`` is another user's script:
    rebase moves the first, names the second with the reason, and never executes the script."""
    from layerenv.project.link import link, read_link
    from layerenv.venv.relocate import relocate_venv
    from tests.support.cli import run_layerenv
    from tests.support.pytest_fixtures import caps_torch_project

    project, _, new_env = caps_torch_project(tmp_path, served_indexes, driver_upgrade_env)
    old = read_link(project / ".venv")
    assert old is not None

    trojan = tmp_path / "trojan" / ".venv"
    shutil.copytree(project / ".venv", trojan, symlinks=True)
    relocate_venv(trojan, project / ".venv", trojan)
    link(trojan, base_id=old.base_id, base_venv=old.base_venv)
    Store(tmp_path / "home").register(trojan, old.base_id, trojan.parent)
    marker = tmp_path / "ran-as-root"
    script = trojan / "bin" / "python"
    script.unlink()
    # inert: should the check ever regress, it leaves a mark and fails, and installs nothing anywhere
    script.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n", encoding="utf-8")
    script.chmod(0o755)
    os.chown(script, OTHER, OTHER)

    done = run_layerenv(["rebase", "--json"], new_env, tmp_path)
    assert done.returncode == 1, done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["reinstalled"] == {str(project / ".venv"): ["caps-torch"]}
    [failure] = outcome["failures"]
    assert failure.startswith(f"{trojan}: not moved") and f"{script} is owned by uid {OTHER}" in failure
    assert not marker.exists()
    unmoved = read_link(trojan)
    assert unmoved is not None and unmoved.base_id == old.base_id


# Per-node records are trusted like bases ---------------------------------------------------------------

NODE_KEY = "cp311-linux_x86_64"


def node_store(root: Path, site_inside: bool = True) -> tuple[Store, Path, Path]:
    """A store holding base b1 and node n1's answer for it, for this boot; the boot module's dir."""
    from layerenv.store.identity import boot_id
    from layerenv.store.nodes import NodeBase

    store = Store.open(str(root / "home"), {}, trust=Trust.for_caller())
    store.ensure_writable()
    site = store.bases / "b1" / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    if not site_inside:
        site = root / "elsewhere" / "bases" / "b1" / "site-packages"
        site.mkdir(parents=True)
    record = store.home / "nodes" / "n1" / f"{NODE_KEY}.txt"
    record.parent.mkdir(parents=True)
    record.write_text(NodeBase(NODE_KEY, "b1", str(site), boot_id()).render(), encoding="utf-8")
    return store, record, site


def boot_site(store: Store, root: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    """Start an interpreter with a per-node venv's boot module: it prints the site it loads from."""
    from layerenv.project.boot import per_node_boot

    boot = per_node_boot("b1", ["torch"], store=store.home, python_key=NODE_KEY, base_python=sys.executable,
                         layerenv=[sys.executable, "-m", "layerenv"])
    modules = root / "boot"
    modules.mkdir(exist_ok=True)
    (modules / "_layerenv_boot.py").write_text(boot.module, encoding="utf-8")
    code = f"import sys; sys.path.insert(0, {str(modules)!r}); import _layerenv_boot as b; print(b._SITE)"
    env = {"PATH": os.environ["PATH"], "LAYERENV_NODE": "n1", "LAYERENV_RESOLVING": "1", **extra}
    return subprocess.run([sys.executable, "-S", "-c", code], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


@AS_ROOT
@pytest.mark.skipif(not Path("/proc/sys/kernel/random/boot_id").exists(), reason="node answers need a boot id")
def test_a_per_node_venv_never_loads_a_node_record_others_could_change(tmp_path: Path) -> None:
    store, record, site = node_store(tmp_path)
    loaded = boot_site(store, tmp_path)
    assert (loaded.stdout.strip(), loaded.stderr) == (str(site), "")

    os.chown(record, OTHER, OTHER)  # a store member rewrote this node's answer
    refused = boot_site(store, tmp_path)
    assert refused.stdout.strip() == "None"
    assert f"not loading the base recorded for node n1: {record} (owner uid {OTHER}, mode 0644) is not trusted" \
        in refused.stderr
    os.chown(record, 0, 0)

    base = store.bases / "b1"
    os.chown(base, 0, 4242)
    base.chmod(0o775)
    assert boot_site(store, tmp_path).stdout.strip() == "None"
    assert boot_site(store, tmp_path, LAYERENV_TRUSTED_GROUP="4242").stdout.strip() == str(site)


@pytest.mark.skipif(not Path("/proc/sys/kernel/random/boot_id").exists(), reason="node answers need a boot id")
def test_a_node_record_naming_a_path_outside_the_stores_bases_is_not_loaded(tmp_path: Path) -> None:
    from layerenv.store.nodes import answer_problem, lookup

    store, record, site = node_store(tmp_path, site_inside=False)
    refused = boot_site(store, tmp_path)
    assert refused.stdout.strip() == "None"
    assert f"{record} names {site}, which is no base of this store" in refused.stderr
    answer = lookup(store.home, "n1", NODE_KEY)
    assert answer is not None
    assert answer_problem(store.home, "n1", answer, store.trust_problem) == \
        f"{record} names {site}, which is no base of this store"


@AS_ROOT
def test_status_says_a_per_node_project_whose_record_is_not_trusted_is_broken(tmp_path: Path) -> None:
    from layerenv.lifecycle.status import node_answer_problem
    from layerenv.project.link import LinkRecord, PerNode

    store, _record, site = node_store(tmp_path)
    store = Store.open(str(store.home), {"LAYERENV_NODE": "n1"}, trust=store.trust)
    venv = tmp_path / "repo" / ".venv"
    venv.mkdir(parents=True)
    link = LinkRecord(base_id="b1", base_venv=store.bases / "b1", base_site=site, family=(("torch", "2.9.1"),),
                      family_modules=("torch",), stubs=(), scripts=(), constraints=venv / "c.txt",
                      per_node=PerNode(store.home, NODE_KEY, sys.executable, ("layerenv",)))
    (venv / "layerenv.json").write_text(json.dumps(link.to_json()), encoding="utf-8")
    assert node_answer_problem(store, venv) is None
    (store.bases / "b1").chmod(0o777)
    found = node_answer_problem(store, venv)
    assert found == f"node n1's record is not loaded: {store.bases / 'b1'} is writable by others (owner uid 0, mode 0777)"
