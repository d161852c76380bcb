"""One store shared by many nodes: lease locks across mounts, per-node bases, per-node projects.

Nodes are simulated on this machine: each is a process with its own ``LAYERENV_NODE`` and replayed
machine (``LAYERENV_SYSROOT``), reaching the store through one of two mounts of the same directory
(a bind mount stands in for two NFS clients). Bases are built by real uv from local indexes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from layerenv.errors import BadInput
from layerenv.store.locking import Busy, Holder, filesystem_type, lease, resolve_mode, this_holder
from tests.support.cli import REPO, layerenv_env, run_layerenv
from tests.support.index import isolated_installer_env
from tests.support.pytest_fixtures import VariantIndexes

TAG = f"cp{sys.version_info.major}{sys.version_info.minor}"
KEY = f"{TAG}-linux_x86_64"


def base_id(variant: str) -> str:
    return f"{KEY}-torch2.9.1-{variant}"


# --------------------------------------------------------------------------- lock mode


MOUNTINFO = textwrap.dedent("""\
    22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
    40 22 0:50 / /shared rw,relatime shared:20 - nfs4 server:/export rw,vers=4.2
    41 40 0:51 / /shared/scratch rw shared:21 - tmpfs tmpfs rw
    42 22 0:52 / /mnt/my\\040share rw - cifs //nas/share rw
""")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/home/me/.local/share/layerenv", "ext4"),
        ("/shared", "nfs4"),
        ("/shared/layerenv/bases", "nfs4"),
        ("/shared/scratch/x", "tmpfs"),
        ("/sharedother", "ext4"),  # a prefix of the name is not a parent
        ("/mnt/my share/store", "cifs"),
    ],
)
def test_filesystem_type_is_that_of_the_deepest_mount_holding_the_path(path: str, expected: str) -> None:
    assert filesystem_type(Path(path), MOUNTINFO) == expected


def test_auto_takes_flock_on_a_local_disk_and_lease_once_the_store_is_marked_shared(tmp_path: Path) -> None:
    locks = tmp_path / "locks"
    locks.mkdir()
    assert resolve_mode("auto", locks) == "flock"
    assert resolve_mode("lease", locks) == "lease"
    (locks / "LEASE").write_text("shared\n")
    assert resolve_mode("auto", locks) == "lease"
    assert resolve_mode("flock", locks) == "flock"
    with pytest.raises(BadInput, match=r"store.lock = 'nfs' is not allowed: use one of auto, flock, lease"):
        resolve_mode("nfs", locks)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("LAYERENV_LOCK", "nfs", "LAYERENV_LOCK"),
        ("LAYERENV_LOCK_STALE_AFTER", "soon", "LAYERENV_LOCK_STALE_AFTER='soon' must be a number of seconds"),
        ("LAYERENV_LOCK_STALE_AFTER", "0", "LAYERENV_LOCK_STALE_AFTER='0' must be a number of seconds"),
        ("LAYERENV_NODE", "../other", "LAYERENV_NODE='../other' is not allowed"),
    ],
)
def test_bad_cluster_settings_are_one_line_and_exit_2(tmp_path: Path, variable: str, value: str,
                                                      message: str) -> None:
    env = layerenv_env(tmp_path / "home", base_env=dict(os.environ), extra={variable: value})
    result = run_layerenv(["base"], env, tmp_path, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("layerenv: error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "home").exists()


# --------------------------------------------------------------------------- lease


@contextmanager
def bind_mounted(first: Path, second: Path) -> Iterator[None]:
    """``first`` also reachable at ``second``, as two nodes see one NFS export; skips where not allowed."""
    first.mkdir(exist_ok=True)
    second.mkdir(exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("a bind mount needs root; this run is not root")
    mounted = subprocess.run(["mount", "--bind", str(first), str(second)], capture_output=True, text=True,
                             check=False)
    if mounted.returncode != 0:
        pytest.skip(f"mount --bind was refused here: {mounted.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(second)], check=False)


@pytest.fixture
def two_mounts(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    first, second = tmp_path / "mount-a", tmp_path / "mount-b"
    with bind_mounted(first, second):
        yield first, second


CONTENDER = """
import sys, time
sys.path.insert(0, {repo!r})
from pathlib import Path
from layerenv.store.locking import lease
path, log, rounds = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
for _ in range(rounds):
    with lease(path, purpose="test", node=sys.argv[4], stale_after=30.0):
        with log.open("a") as handle:
            handle.write(f"in {{sys.argv[4]}}\\n")
        time.sleep(0.02)
        with log.open("a") as handle:
            handle.write(f"out {{sys.argv[4]}}\\n")
"""


def test_lease_excludes_contenders_reaching_the_store_through_two_mounts(two_mounts: tuple[Path, Path]) -> None:
    first, second = two_mounts
    log = first / "log"
    script = CONTENDER.format(repo=str(REPO))
    contenders = [
        subprocess.Popen([sys.executable, "-c", script, str(mount / "key.lease"), str(log), "6", f"node{index}"])
        for index, mount in enumerate([first, second, first, second])
    ]
    assert [process.wait(timeout=120) for process in contenders] == [0, 0, 0, 0]
    lines = log.read_text().splitlines()
    assert len(lines) == 4 * 6 * 2
    for enter, leave in zip(lines[::2], lines[1::2], strict=True):
        assert enter.startswith("in ") and leave == "out " + enter[3:], lines
    assert not (first / "key.lease").exists()


def _plant(path: Path, holder: Holder) -> None:
    path.write_text(holder.to_json())


def test_flock_excludes_filelock_holders_both_ways_and_names_its_holder(tmp_path: Path) -> None:
    """The flock mode takes the very lock :class:`filelock.FileLock` takes (older layerenvs and tests hold
    it that way), and a waiter is told who holds it."""
    from filelock import FileLock, Timeout

    from layerenv.store.locking import flock

    path = tmp_path / "key.lock"
    with FileLock(str(path)), pytest.raises(Busy, match="another layerenv process"), \
            flock(path, purpose="x", node="n", blocking=False):
        pass
    with flock(path, purpose="building it", node="n", blocking=False):
        with pytest.raises(Timeout):
            FileLock(str(path)).acquire(timeout=0)
        with pytest.raises(Busy, match="building it"), flock(path, purpose="y", node="n", blocking=False):
            pass
    with flock(path, purpose="again", node="n", blocking=False):  # released: free for the next
        assert not (tmp_path / "key.lock").is_symlink()


def test_a_lease_whose_holder_died_on_this_host_is_broken_at_once(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    path = tmp_path / "key.lease"
    _plant(path, dataclasses.replace(this_holder("building", "n1"), pid=gone.pid))
    started = time.monotonic()
    with lease(path, purpose="next", node="n1", stale_after=600.0) as holder:
        assert json.loads(path.read_text())["token"] == holder.token
    assert time.monotonic() - started < 5
    assert not path.exists()


def test_a_lease_of_another_host_is_broken_only_after_its_heartbeat_stood_still(tmp_path: Path) -> None:
    path = tmp_path / "key.lease"
    _plant(path, dataclasses.replace(this_holder("building", "far"), host="node-that-died", pid=1))
    with pytest.raises(Busy, match="on node-that-died"), lease(path, purpose="x", node="n", stale_after=1.0,
                                                                 blocking=False):
        pass
    told: list[str] = []
    started = time.monotonic()
    with lease(path, purpose="next", node="n", stale_after=1.0, on_wait=told.append):
        waited = time.monotonic() - started
    assert 1.0 <= waited < 10, waited
    assert told and "node-that-died" in told[0] and "(building)" in told[0]


HOLDER = """
import dataclasses, sys, time
sys.path.insert(0, {repo!r})
from pathlib import Path
import layerenv.store.locking as locking
real = locking.this_holder
locking.this_holder = lambda purpose, node: dataclasses.replace(real(purpose, node), host="node-b")
with locking.lease(Path(sys.argv[1]), purpose="long build", node="b", stale_after=1.5):
    Path(sys.argv[2]).write_text("held")
    time.sleep(4.0)
    Path(sys.argv[2]).write_text(repr(time.time()))
"""


def test_a_live_holder_elsewhere_keeps_its_lease_past_stale_after_by_its_heartbeat(tmp_path: Path) -> None:
    path, signal = tmp_path / "key.lease", tmp_path / "signal"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER.format(repo=str(REPO)), str(path), str(signal)])
    try:
        deadline = time.monotonic() + 30
        while not signal.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert signal.read_text() == "held"
        with lease(path, purpose="waiter", node="a", stale_after=1.5):  # beats every 0.25 s: 6 per window
            acquired = time.time()
            released = signal.read_text()
        assert released != "held" and acquired >= float(released)  # waited for the release: never broke it
    finally:
        assert holder.wait(timeout=30) == 0


# --------------------------------------------------------------------------- a shared store

NODES = {  # node -> (replayed machine, variant it needs)
    "ws-5090": ("rtx5090-570", "cu129"),
    "gpu-v100-a": ("v100-535", "cu126"),
    "gpu-v100-b": ("v100-535", "cu126"),
    "ws-5090-b": ("rtx5090-570", "cu129"),
    "cpu-1": ("no-gpu", "cpu"),
    "cpu-2": ("no-gpu", "cpu"),
}


@dataclasses.dataclass(frozen=True)
class Cluster:
    root: Path
    mounts: tuple[Path, Path]
    indexes: VariantIndexes
    outputs: dict[str, dict[str, Any]]

    def env(self, node: str, machine: str, *, mount: int = 0, **extra: str) -> dict[str, str]:
        installers = isolated_installer_env(uv_cache_dir=self.root / f"uv-cache-{node}")
        installers.pop("CUDA_VISIBLE_DEVICES", None)
        settings = {"LAYERENV_INDEX_URL": self.indexes.url_template, "LAYERENV_INSTALLER": "uv",
                    "LAYERENV_NODE": node, "LAYERENV_LOCK": "auto", **extra}
        return layerenv_env(self.mounts[mount], base_env={**installers, "PIP_INDEX_URL": self.indexes.pypi_url,
                                                          "UV_INDEX_URL": self.indexes.pypi_url},
                            machine=machine, extra=settings)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, variant_indexes: VariantIndexes) -> Iterator[Cluster]:
    """Six nodes of three kinds run `layerenv base` at once on one store, through two mounts."""
    root = tmp_path_factory.mktemp("cluster")
    first, second = root / "store-a", root / "store-b"
    with bind_mounted(first, second):
        (first / "locks").mkdir()
        (first / "locks" / "LEASE").write_text("shared\n")  # what the first node on NFS leaves behind
        cluster = Cluster(root, (first, second), variant_indexes, {})
        processes = {
            node: subprocess.Popen(
                [sys.executable, "-m", "layerenv", "base", "--json"],
                env=cluster.env(node, machine, mount=index % 2), cwd=root, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True)
            for index, (node, (machine, _variant)) in enumerate(NODES.items())
        }
        for node, process in processes.items():
            stdout, stderr = process.communicate(timeout=300)
            assert process.returncode == 0, (node, stderr)
            cluster.outputs[node] = json.loads(stdout)
        yield cluster


def test_each_variant_is_built_once_and_shared_by_its_nodes(cluster: Cluster) -> None:
    for node, (_machine, variant) in NODES.items():
        assert cluster.outputs[node]["base_id"] == base_id(variant), node
    statuses = sorted((out["variant"], out["status"]) for out in cluster.outputs.values())
    assert statuses == [("cpu", "built"), ("cpu", "reused"), ("cu126", "built"), ("cu126", "reused"),
                        ("cu129", "built"), ("cu129", "reused")]
    store = cluster.mounts[0]
    assert sorted(path.name for path in (store / "bases").iterdir()) == sorted(
        base_id(v) for v in ("cpu", "cu126", "cu129"))
    logs = sorted(path.name.split(f"-{time.strftime('%Y')}")[0] for path in (store / "logs").glob("*.log"))
    assert logs == sorted(f"{KEY}-{v}" for v in ("cpu", "cu126", "cu129"))  # one build (one log) each
    assert not list((store / "locks").glob("*.lease"))
    for node, (_machine, variant) in NODES.items():
        answer = (store / "nodes" / node / f"{KEY}.txt").read_text().splitlines()
        assert answer[1] == f"base={base_id(variant)}"
        assert answer[2].startswith(f"site={cluster.mounts[NODES_INDEX[node] % 2]}/bases/{base_id(variant)}/")


NODES_INDEX = {node: index for index, node in enumerate(NODES)}


def test_status_shows_which_node_uses_which_base(cluster: Cluster) -> None:
    result = run_layerenv(["status", "--json"], cluster.env("cpu-1", "no-gpu"), cluster.root, timeout=120)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["node"] == "cpu-1"
    seen = {node["node"]: node["bases"][KEY] for node in document["nodes"]}  # and nodes other tests add
    assert {node: seen[node]["base_id"] for node in NODES} == {
        node: base_id(variant) for node, (_m, variant) in NODES.items()}
    assert all(entry["present"] for entry in seen.values())
    machine = {node["node"]: node["machine"] for node in document["nodes"]}
    assert "(sm_70)" in machine["gpu-v100-a"] and machine["cpu-1"] == "no GPU"
    bases = {base["id"]: base["nodes"] for base in document["bases"]}
    assert {"gpu-v100-a", "gpu-v100-b"} <= set(bases[base_id("cu126")]) and "cpu-1" not in bases[base_id("cu126")]
    text = run_layerenv(["status"], cluster.env("cpu-1", "no-gpu"), cluster.root, timeout=120).stdout
    node_lines = text.split("\nnodes\n")[1].splitlines()
    assert any(line.split()[:3] == ["gpu-v100-b", KEY, base_id("cu126")] for line in node_lines)
    assert any(line.startswith("  cpu-1 ") and line.endswith("(this node)") for line in node_lines)


def python_in(venv: Path, code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / "python"), "-c", code], env=env, capture_output=True, text=True,
                          timeout=300, check=False)


WHAT = "import torch, plain_lib; print(torch.__version__, torch.version.cuda)"


def test_one_per_node_project_loads_each_nodes_own_base(cluster: Cluster) -> None:
    project = cluster.root / "shared-project"
    project.mkdir()
    (project / "requirements.txt").write_text("plain-lib\n")
    made = run_layerenv(["project", "--per-node", str(project)], cluster.env("ws-5090", "rtx5090-570"),
                        cluster.root, timeout=300)
    assert made.returncode == 0, made.stderr
    assert "each node loads its own (per node)" in made.stdout
    venv = project / ".venv"
    expected = {"ws-5090": "2.9.1+cu129 12.9", "gpu-v100-b": "2.9.1+cu126 12.6", "cpu-2": "2.9.1+cpu None"}
    for node, answer in expected.items():
        ran = python_in(venv, WHAT, cluster.env(node, NODES[node][0], mount=1))
        assert (ran.returncode, ran.stdout.strip(), ran.stderr) == (0, answer, ""), node

    # A node never seen: its first start asks `layerenv base`, which finds the cu126 base it can share.
    first = python_in(venv, WHAT, cluster.env("gtx-1080", "gtx1080-580"))
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "2.9.1+cu126 12.6"
    assert "no base recorded for node gtx-1080 in this boot; asking `layerenv base`" in first.stderr
    again = python_in(venv, WHAT, cluster.env("gtx-1080", "gtx1080-580"))
    assert (again.stdout.strip(), again.stderr) == ("2.9.1+cu126 12.6", "")

    # After a reboot (another boot id) the node answers again before loading anything.
    answer_file = cluster.mounts[0] / "nodes" / "ws-5090" / f"{KEY}.txt"
    answer_file.write_text(answer_file.read_text().replace("boot=", "boot=0-earlier-boot-"))
    rebooted = python_in(venv, WHAT, cluster.env("ws-5090", "rtx5090-570"))
    assert rebooted.stdout.strip() == "2.9.1+cu129 12.9" and "asking `layerenv base`" in rebooted.stderr
    assert "boot=0-earlier" not in answer_file.read_text()

    # A node with no base to be had: Python still starts, says why, and torch does not import.
    stranded = python_in(venv, "import plain_lib; print('ok'); import torch",
                         cluster.env("old-a100", "a100-470"))  # cu118: not on the local index
    assert stranded.stdout.strip() == "ok" and "ModuleNotFoundError: No module named 'torch'" in stranded.stderr
    assert "layerenv: node old-a100 has no base for" in stranded.stderr
    assert "run `layerenv base` on it" in stranded.stderr

    # A bad node name: Python still starts; layerenv's own error names the value.
    bad = python_in(venv, "print('ok')", cluster.env("ws-5090", "rtx5090-570", LAYERENV_NODE="../ws-5090"))
    assert bad.stdout.strip() == "ok"
    assert "LAYERENV_NODE='../ws-5090' is not allowed" in bad.stderr and "has no base for" in bad.stderr

    doctor = run_layerenv(["doctor", "--json"], cluster.env("gpu-v100-a", "v100-535"), cluster.root, timeout=120)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    missing = run_layerenv(["doctor", "--json"], cluster.env("old-a100", "a100-470"), cluster.root, timeout=120)
    assert "node-unresolved" in {finding["kind"] for finding in json.loads(missing.stdout)["findings"]}


def test_gc_keeps_the_bases_other_nodes_recorded(cluster: Cluster) -> None:
    result = run_layerenv(["gc", "--dry-run", "--json"], cluster.env("cpu-1", "no-gpu"), cluster.root,
                          timeout=120)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["removed"] == []
    kept = {entry["id"]: entry["reason"] for entry in document["kept"]}
    assert kept[base_id("cu126")].startswith("recorded by node(s) gpu-v100-a, gpu-v100-b")  # (, gtx-1080)
    assert f"(forget one: rm -r {cluster.mounts[0]}/nodes/NODE)" in kept[base_id("cu126")]
    assert "recorded by node(s) ws-5090, ws-5090-b (" in kept[base_id("cu129")]  # (and the per-node project)
    assert kept[base_id("cpu")].startswith("current; recorded by node(s) cpu-2 (")


# --------------------------------------------------------------------------- crashes on a shared store


def test_a_node_killed_mid_build_holding_the_lease_does_not_block_the_next(
        tmp_path: Path, variant_indexes: VariantIndexes) -> None:
    cluster = Cluster(tmp_path, (tmp_path / "store", tmp_path / "store"), variant_indexes, {})
    first = cluster.env("node-1", "v100-535", LAYERENV_LOCK="lease", LAYERENV_FAULTS_ENABLED="1",
                        LAYERENV_FAULT="base:after-install")
    killed = run_layerenv(["base"], first, tmp_path, timeout=300)
    assert killed.returncode == -9
    lease_file = tmp_path / "store" / "locks" / f"{KEY}-cu126.lease"
    assert json.loads(lease_file.read_text())["node"] == "node-1"  # left behind, as a crash leaves it

    started = time.monotonic()
    second = run_layerenv(["base", "--json"], cluster.env("node-2", "v100-535", LAYERENV_LOCK="lease"), tmp_path,
                          timeout=300)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["status"] == "built"
    assert time.monotonic() - started < 60  # the dead pid on this host is proof: no 60 s heartbeat wait
    assert not lease_file.exists() and not list((tmp_path / "store" / "staging").iterdir())


def test_a_lease_left_by_a_vanished_node_is_taken_over_after_stale_after(
        tmp_path: Path, variant_indexes: VariantIndexes) -> None:
    cluster = Cluster(tmp_path, (tmp_path / "store", tmp_path / "store"), variant_indexes, {})
    locks = tmp_path / "store" / "locks"
    locks.mkdir(parents=True)
    _plant(locks / f"{KEY}-cpu.lease",
           dataclasses.replace(this_holder("building base", "gone"), host="node-gone", pid=4242))
    env = cluster.env("cpu-1", "no-gpu", LAYERENV_LOCK="lease", LAYERENV_LOCK_STALE_AFTER="2")
    result = run_layerenv(["base", "--json"], env, tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "built"
    assert f"waiting for the lock on {KEY}-cpu: held by pid 4242 on node-gone (node gone)" in result.stderr


def test_rebase_after_a_driver_upgrade_moves_only_that_nodes_answer(tmp_path: Path, driver_upgrade_env) -> None:  # type: ignore[no-untyped-def]
    def env(node: str, machine: str) -> dict[str, str]:
        return {**driver_upgrade_env(machine), "LAYERENV_NODE": node}

    project = tmp_path / "app"
    project.mkdir()
    made = run_layerenv(["project", "--per-node", str(project)], env("ws", "rtx5090-570"), tmp_path)
    assert made.returncode == 0, made.stderr
    assert run_layerenv(["base"], env("v100", "v100-535"), tmp_path).returncode == 0
    venv, code = project / ".venv", "import torch; print(torch.__version__)"
    assert python_in(venv, code, env("ws", "rtx5090-570")).stdout.strip() == "2.9.1+cu129"

    upgraded = env("ws", "rtx5090-580")
    rebased = run_layerenv(["rebase", "--json"], upgraded, tmp_path)
    assert rebased.returncode == 0, rebased.stderr
    document = json.loads(rebased.stdout)
    assert document["built"] == [f"{KEY}-torch2.15.0-cu132"] and document["moved"] == [str(project)]
    assert python_in(venv, code, upgraded).stdout.strip() == "2.15.0+cu132"
    assert python_in(venv, code, env("v100", "v100-535")).stdout.strip() == "2.9.1+cu126"  # untouched
    for node, machine in (("ws", "rtx5090-580"), ("v100", "v100-535")):
        again = run_layerenv(["rebase"], env(node, machine), tmp_path)
        assert again.returncode == 0 and again.stdout.startswith("nothing changed: 1 project(s)"), again.stdout


def test_a_node_that_cannot_record_its_answer_is_told_why(cluster: Cluster) -> None:
    read_only = cluster.root / "store-ro"
    with bind_mounted(cluster.mounts[0], read_only):
        subprocess.run(["mount", "-o", "remount,bind,ro", str(read_only)], check=True)
        env = cluster.env("ro-node", "no-gpu", LAYERENV_LOCK="auto")
        env["LAYERENV_HOME"] = str(read_only)
        result = run_layerenv(["base"], env, cluster.root, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"reused: {base_id('cpu')}")
    assert (f"warning: could not record node ro-node's base in {read_only}/nodes (read-only?): per-node "
            "projects on this node will ask `layerenv base` again at every start") in result.stderr
