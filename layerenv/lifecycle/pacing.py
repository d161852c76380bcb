"""How many threads a batch of per-project file work should use, judged from the first projects.

The work is Python (under one interpreter lock) and system calls (without it). Another thread helps only
while this one is out of Python: waiting on a disk or a network filesystem (then many threads overlap the
waits), or spending kernel time on a second core. When the work is mostly Python, threads only add the
cost of handing the lock back and forth: one thread is fastest.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

__all__ = ["PROBE_PROJECTS", "ThreadClock", "waited_on_io", "workers_for"]

#: Projects done in the calling thread before choosing: enough to see how their time is spent.
PROBE_PROJECTS = 12
#: Blocking waits (voluntary context switches) a project at which its work waits on I/O.
WAITS_PER_PROJECT = 0.5
#: The share of the wall time spent in the kernel at which a second thread has Python to run meanwhile.
KERNEL_SHARE = 0.3
#: Threads when the work waits on I/O (a network filesystem): the waits overlap, the writes stay small.
WAITING_WORKERS = 8


@dataclass(frozen=True)
class ThreadClock:
    """The calling thread's clocks at one moment (CPU times and waits where the platform tells them)."""

    wall_s: float
    user_s: float
    system_s: float
    waits: int | None  # voluntary context switches; None where unknown

    @classmethod
    def now(cls) -> ThreadClock:
        wall = time.perf_counter()
        if not sys.platform.startswith("linux"):
            return cls(wall, 0.0, 0.0, None)
        import resource

        usage = resource.getrusage(resource.RUSAGE_THREAD)
        return cls(wall, usage.ru_utime, usage.ru_stime, usage.ru_nvcsw)


def waited_on_io(before: ThreadClock, after: ThreadClock, projects: int,
                 per_project: float = WAITS_PER_PROJECT) -> bool:
    """Whether the thread blocked (a voluntary context switch: a wait on a disk or a network filesystem) at
    least ``per_project`` times a project between the two clocks; False where the platform does not say.
    Preemption by other processes on a busy machine is an involuntary switch, so it does not count."""
    if projects <= 0 or before.waits is None or after.waits is None:
        return False
    return after.waits - before.waits >= projects * per_project


def workers_for(before: ThreadClock, after: ThreadClock, projects: int, cpus: int | None = None) -> int:
    """Threads for the rest of the batch, from the clocks around ``projects`` done in one thread."""
    wall = after.wall_s - before.wall_s
    if projects <= 0 or wall <= 0 or before.waits is None or after.waits is None:
        return 1
    if waited_on_io(before, after, projects):
        return WAITING_WORKERS
    cores = cpus if cpus is not None else _usable_cpus()
    if cores >= 2 and (after.system_s - before.system_s) / wall >= KERNEL_SHARE:
        return 2
    return 1


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):  # what this process may run on (a container's share), not the machine
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
