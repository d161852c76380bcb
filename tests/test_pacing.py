"""How many threads rebase's per-project file work takes, from how the first projects spent their time."""

from __future__ import annotations

from layerenv.lifecycle.pacing import WAITING_WORKERS, ThreadClock, waited_on_io, workers_for

START = ThreadClock(wall_s=10.0, user_s=1.0, system_s=0.5, waits=100)


def after(wall: float, user: float, system: float, waits: int | None = 100) -> ThreadClock:
    return ThreadClock(START.wall_s + wall, START.user_s + user, START.system_s + system, waits)


def test_python_bound_work_stays_in_one_thread() -> None:
    """Threads would only hand the interpreter lock back and forth (measured: 0.93 s serial vs 1.5 s with 8/16
    threads for 100 projects on tmpfs)."""
    assert workers_for(START, after(wall=0.06, user=0.05, system=0.01), projects=12, cpus=16) == 1


def test_kernel_heavy_work_takes_a_second_thread_where_there_is_a_second_core() -> None:
    assert workers_for(START, after(wall=0.10, user=0.05, system=0.05), projects=12, cpus=2) == 2
    assert workers_for(START, after(wall=0.10, user=0.05, system=0.05), projects=12, cpus=1) == 1


def test_work_that_waits_on_io_overlaps_the_waits_in_many_threads() -> None:
    """A network filesystem: each project blocks on the server several times."""
    assert workers_for(START, after(wall=0.5, user=0.05, system=0.01, waits=160), projects=12, cpus=2) == WAITING_WORKERS


def test_unknown_clocks_or_nothing_measured_mean_one_thread() -> None:
    assert workers_for(START, after(wall=0.10, user=0.0, system=0.09, waits=None), projects=12, cpus=8) == 1
    assert workers_for(START, after(wall=0.10, user=0.05, system=0.05), projects=0, cpus=8) == 1


def test_this_thread_clock_moves_forward() -> None:
    first = ThreadClock.now()
    sum(range(200_000))
    second = ThreadClock.now()
    assert second.wall_s > first.wall_s and second.user_s + second.system_s >= first.user_s + first.system_s


def test_waits_are_counted_per_project_at_the_callers_rate() -> None:
    """doctor's look asks at 0.25 waits a project, rebase at 0.5: one rule, two rates."""
    eight_waits = after(wall=0.2, user=0.05, system=0.01, waits=108)
    assert waited_on_io(START, eight_waits, projects=32, per_project=0.25)
    assert not waited_on_io(START, eight_waits, projects=32, per_project=0.5)
    assert not waited_on_io(START, after(wall=0.2, user=0.05, system=0.01, waits=None), projects=32)
