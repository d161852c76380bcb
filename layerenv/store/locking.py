"""Store locks that hold on one machine and across the nodes of a cluster sharing the store.

Two kinds, chosen per store (``store.lock``: ``auto``, ``flock`` or ``lease``):

- ``flock``: ``flock(2)`` on ``<key>.lock``, as :class:`filelock.FileLock` takes it. The kernel drops it
  when its holder dies, so a kill -9 never blocks anyone. On NFS, though, ``flock`` is emulated with
  byte-range locks that a ``nolock`` mount keeps local to each client, and some cluster filesystems
  refuse it: two nodes could both build.
- ``lease``: a lease file created with ``O_CREAT | O_EXCL``, which NFSv3 and later, Lustre, GPFS,
  BeeGFS and CephFS all make atomic across clients (the idea of filelock's ``SoftFileLock``), renewed
  by a heartbeat thread that touches it. A waiter breaks a lease only when it is stale:

  * its holder ran on this host, in this boot and pid namespace, and that pid is gone (a kill -9 on
    this node is recovered at once), or it ran on this host in an earlier boot;
  * or its heartbeat has not moved for ``stale_after`` seconds of the *waiter's* monotonic clock, so
    clocks of different nodes are never compared (a node that died holding the lease). Waiters read
    the lease through ``open``, which on NFS revalidates cached attributes (close-to-open
    consistency), so a heartbeat is seen when it happens, not when the attribute cache expires.

``auto`` takes ``lease`` when the store is on a network filesystem, or when any node has marked the
store as shared (``locks/LEASE``, written the first time a node takes a lease there), so a machine
that sees the store on a local disk (the NFS server itself, say) still agrees with its clients.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from layerenv.errors import BadInput, OperationFailed
from layerenv.store.identity import boot_id, host_name

LOCK_MODES = ("auto", "flock", "lease")
SHARED_MARKER = "LEASE"
NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "ceph", "fuse.ceph-fuse",
    "glusterfs", "fuse.glusterfs", "9p", "afs", "ocfs2", "gfs2", "fuse.sshfs", "panfs", "wekafs",
    "fuse.juicefs", "fuse.s3fs", "fuse.gcsfuse",
})  # fmt: skip


class Busy(Exception):
    """The lock is held by someone else (non-blocking acquire); ``owner`` says who."""

    def __init__(self, owner: str) -> None:
        super().__init__(owner)
        self.owner = owner


@dataclass(frozen=True)
class Holder:
    """Who a lock belongs to: enough to tell, from another process or node, whether it is alive."""

    host: str
    boot_id: str
    pid_namespace: str
    pid: int
    node: str
    since: float
    purpose: str
    token: str

    def describe(self) -> str:
        since = time.strftime("%H:%M:%S", time.localtime(self.since))
        where = self.host if self.node in ("", self.host) else f"{self.host} (node {self.node})"
        return f"pid {self.pid} on {where} since {since} ({self.purpose})"

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Holder | None:
        try:
            data = json.loads(text)
            return cls(
                host=str(data["host"]),
                boot_id=str(data["boot_id"]),
                pid_namespace=str(data["pid_namespace"]),
                pid=int(data["pid"]),
                node=str(data.get("node", "")),
                since=float(data["since"]),
                purpose=str(data.get("purpose", "")),
                token=str(data["token"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


@cache  # the same while this process lives
def pid_namespace() -> str:
    try:
        return str(Path("/proc/self/ns/pid").readlink())
    except OSError:
        return ""


def this_holder(purpose: str, node: str) -> Holder:
    return Holder(
        host=host_name(),
        boot_id=boot_id(),
        pid_namespace=pid_namespace(),
        pid=os.getpid(),
        node=node,
        since=time.time(),
        purpose=purpose,
        token=os.urandom(8).hex(),
    )


def pid_alive(pid: int) -> bool:
    if sys.platform == "win32":
        return True  # os.kill(pid, 0) would terminate it there; without a boot id this is never asked
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dead_on_this_host(holder: Holder, me: Holder) -> bool:
    """Whether this host can prove the holder is gone, without waiting for its heartbeat."""
    if holder.host != me.host or not me.boot_id:
        return False
    if holder.boot_id != me.boot_id:
        return True  # held in an earlier boot of this host
    return holder.pid_namespace == me.pid_namespace and bool(me.pid_namespace) and not pid_alive(holder.pid)


def filesystem_type(path: Path, mountinfo: str) -> str:
    """The type of the filesystem holding ``path`` (absolute, resolved), from /proc/self/mountinfo."""
    best, best_type = "", ""
    target = str(path)
    for line in mountinfo.splitlines():
        fields = line.split(" - ", 1)
        parts = fields[0].split()
        if len(fields) != 2 or len(parts) < 5:
            continue
        mount_point = parts[4].encode().decode("unicode_escape")  # mountinfo escapes spaces as \040
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, (fields[1].split() or [""])[0]
    return best_type


def is_network_filesystem(path: Path) -> bool:
    return _on_network_filesystem(str(path))


@cache  # a store's locks directory stays on its filesystem while one command runs: a rebase locks 100s of venvs
def _on_network_filesystem(directory: str) -> bool:
    path = Path(directory)
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return filesystem_type(probe.resolve(), mountinfo) in NETWORK_FILESYSTEMS


def resolve_mode(configured: str, locks_dir: Path) -> str:
    """``flock`` or ``lease`` for this store, as the module docstring describes."""
    if configured not in LOCK_MODES:
        raise BadInput(f"store.lock = {configured!r} is not allowed: use one of {', '.join(LOCK_MODES)}")
    if configured != "auto":
        return configured
    if (locks_dir / SHARED_MARKER).exists() or is_network_filesystem(locks_dir):
        return "lease"
    return "flock"


class _Heartbeat(threading.Thread):
    """Touches the lease so waiters on other nodes see its holder is alive."""

    def __init__(self, path: Path, interval: float) -> None:
        super().__init__(name="layerenv-lease-heartbeat", daemon=True)
        self.path, self.interval = path, interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            with suppress(OSError):  # the lease is gone or the share hiccuped: the next beat tries again
                os.utime(self.path)


@dataclass
class _Observation:
    signature: tuple[int, int, int] | None  # (inode, size, mtime_ns) of the lease as last seen
    since: float  # this process's monotonic clock when that signature was first seen


def refuse_planted(path: Path) -> None:
    """One line, not a traceback or a wait without end, for a lock file that layerenv never makes: a
    symlink (which would make us create or truncate the file it names) or a FIFO, device, directory."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISREG(info.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file"
        raise OperationFailed(f"lock file {path} is {kind}, which layerenv never makes (someone may have planted "
                              "it): remove it and run again")


def _observe(path: Path) -> tuple[str, tuple[int, int, int]] | None:
    """The lease's text and (inode, size, mtime), read through one open file: on NFS, opening
    revalidates the cached attributes (close-to-open consistency), so a heartbeat is seen at once.
    Never through a link, never blocking on a FIFO: such a lease is refused (:func:`refuse_planted`)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        descriptor = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError:
        refuse_planted(path)
        raise
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            refuse_planted(path)
        text = handle.read().decode("utf-8", errors="replace")
    return text, (info.st_ino, info.st_size, info.st_mtime_ns)


def _read(path: Path) -> str | None:
    """A lock's or holder's text; None when it is gone, or is a link or no regular file (never followed)."""
    from layerenv.store.atomic import read_plain_text

    try:
        return read_plain_text(path)
    except (OSError, UnicodeDecodeError):
        return None


def _break(path: Path, judged: str) -> None:
    """Move a stale lease aside; if another waiter's fresh lease was moved instead, put it back.

    The put-back fails (and two holders result) only if a third process created a lease in the
    moment between the rename and the link: two waiters must judge one stale lease at once.
    """
    aside = path.with_name(f"{path.name}.stale-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        path.rename(aside)
    except FileNotFoundError:
        return
    try:
        if _read(aside) != judged:
            with suppress(FileExistsError):  # link is atomic and never replaces a lease taken meanwhile
                os.link(aside, path)
    finally:
        aside.unlink(missing_ok=True)


@contextmanager
def lease(
    path: Path,
    *,
    purpose: str,
    node: str,
    stale_after: float,
    blocking: bool = True,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[Holder]:
    """Hold the lease at ``path``; raise :class:`Busy` at once when not ``blocking`` and it is held."""
    refuse_planted(path)
    me = this_holder(purpose, node)
    content = me.to_json()
    watched = _Observation(None, time.monotonic())
    told = False
    delay = 0.02
    while True:
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pass
        else:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            break
        observed = _observe(path)
        if observed is None:
            continue  # released between our create and our read
        judged, signature = observed
        holder = Holder.from_json(judged)
        if signature != watched.signature:
            watched = _Observation(signature, time.monotonic())
        silent_for = time.monotonic() - watched.since
        if (holder is not None and dead_on_this_host(holder, me)) or silent_for >= stale_after:
            _break(path, judged)
            continue
        owner = holder.describe() if holder else "another layerenv process"
        if not blocking:
            raise Busy(owner)
        if on_wait is not None and not told:
            on_wait(owner)
            told = True
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
    heartbeat = _Heartbeat(path, max(0.2, stale_after / 6))
    heartbeat.start()
    try:
        yield me
    finally:
        heartbeat.stopped.set()
        heartbeat.join()
        if _read(path) == content:
            path.unlink(missing_ok=True)


@contextmanager
def flock(
    path: Path,
    *,
    purpose: str,
    node: str,
    blocking: bool = True,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[Holder]:
    """Hold ``flock`` on ``path``; ``<name>.owner.json`` beside it names the holder for waiters."""
    owner_file = path.with_suffix(".owner.json")
    refuse_planted(path)
    release = _flock_file(path, wait=False)
    if release is None:
        owner = describe_owner_file(owner_file)
        if not blocking:
            raise Busy(owner) from None
        if on_wait is not None:
            on_wait(owner)
        while release is None:
            release = _flock_file(path, wait=True)
    me = this_holder(purpose, node)
    try:
        from layerenv.store.atomic import write_text

        write_text(owner_file, me.to_json(), durable=False)
        yield me
    finally:
        owner_file.unlink(missing_ok=True)
        release()


#: flock's answers for "someone holds it" and for "this filesystem has no flock"
_CONTENDED = frozenset({errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK})
_UNSUPPORTED = frozenset({errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK})


def _flock_file(path: Path, *, wait: bool) -> Callable[[], None] | None:
    """``flock(LOCK_EX)`` on ``path``, the lock :class:`filelock.FileLock` takes there (each sees the other),
    without importing filelock (~12 ms at every start); its release, or None while another holds it.
    Where there is no ``flock`` (Windows, a filesystem refusing it), filelock's own fallbacks serve."""
    if sys.platform == "win32":
        return _filelock_file(path, wait=wait)
    import fcntl

    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        os.close(descriptor)
        if error.errno in _CONTENDED:
            return None
        if error.errno in _UNSUPPORTED:
            return _filelock_file(path, wait=wait)
        raise
    except BaseException:
        os.close(descriptor)
        raise

    def release() -> None:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        os.close(descriptor)

    return release


def _filelock_file(path: Path, *, wait: bool) -> Callable[[], None] | None:
    from filelock import FileLock, Timeout

    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=-1 if wait else 0)
    except Timeout:
        return None
    return lock.release


def describe_owner_file(path: Path) -> str:
    text = _read(path)
    holder = Holder.from_json(text) if text else None
    return holder.describe() if holder else "another layerenv process"


@contextmanager
def store_lock(
    locks_dir: Path,
    key: str,
    *,
    mode: str,
    purpose: str,
    node: str,
    stale_after: float,
    blocking: bool = True,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[Holder]:
    """The lock for ``key`` in ``locks_dir`` in the store's mode (see :func:`resolve_mode`)."""
    locks_dir.mkdir(parents=True, exist_ok=True)
    if resolve_mode(mode, locks_dir) == "lease":
        marker = locks_dir / SHARED_MARKER
        if not marker.exists():
            from layerenv.store.atomic import write_text

            write_text(marker, "This store is shared between nodes: every layerenv uses lease locks here.\n")
        with lease(locks_dir / f"{key}.lease", purpose=purpose, node=node, stale_after=stale_after,
                   blocking=blocking, on_wait=on_wait) as holder:
            yield holder
    else:
        with flock(locks_dir / f"{key}.lock", purpose=purpose, node=node, blocking=blocking,
                   on_wait=on_wait) as holder:
            yield holder
