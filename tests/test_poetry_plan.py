"""The poetry plugin's decision, pure: which operations a layered venv skips, which requirements stop it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from layerenv.integrations.poetry_plan import BaseView, Edge, Locked, Op, plan_operations
from layerenv.venv.distinfo import is_family

BASE = BaseView(
    "cpu-base",
    {"torch": "2.13.0+cpu", "sympy": "1.14.0", "mpmath": "1.3.0", "typing-extensions": "4.12.2", "base-extra": "1.0"},
    {"torch": (Edge("sympy", ">=1.13.3"), Edge("typing-extensions", ">=4.10"))},
    frozenset({"torch", "sympy", "mpmath", "typing-extensions", "base-extra"}),
)
PYPI_TORCH = Locked("torch", "2.15.0", (Edge("nvidia-cudnn-cu13", "==9.13.0"), Edge("triton", "==3.6.0"),
                                         Edge("sympy", ">=1.13.3"), Edge("typing-extensions", ">=4.10")))


def lock(*packages: Locked) -> dict[str, Locked]:
    return {p.name: p for p in packages}


def installs(locked: dict[str, Locked]) -> tuple[Op, ...]:
    return tuple(Op("install", p.name, p.version) for p in locked.values())


def skipped(root: tuple[Edge, ...], locked: dict[str, Locked], ops: tuple[Op, ...]) -> dict[str, str]:
    plan = plan_operations(root, locked, ops, BASE)
    assert plan.conflicts == ()
    return {ops[i].name: reason for i, reason in plan.skip.items()}


def test_family_and_what_only_it_needs_are_skipped_the_rest_installed() -> None:
    locked = lock(Locked("torchmetrics", "1.1", (Edge("torch", ">=2.0"), Edge("typing-extensions", ">=4.12"))),
                  PYPI_TORCH, Locked("nvidia-cudnn-cu13", "9.13.0", (Edge("nvidia-cublas"),)),
                  Locked("nvidia-cublas", "13.1"), Locked("triton", "3.6.0"),
                  Locked("sympy", "1.14.0", (Edge("mpmath", ">=1.1"),)), Locked("mpmath", "1.3.0"),
                  Locked("typing-extensions", "4.15.0"), Locked("plain-lib", "1.0"))
    skips = skipped((Edge("torchmetrics"), Edge("plain-lib")), locked, installs(locked))
    assert set(skips) == {"torch", "nvidia-cudnn-cu13", "nvidia-cublas", "triton", "sympy", "mpmath"}
    assert skips["torch"] == "provided by the layerenv base cpu-base (torch 2.13.0+cpu)"
    assert skips["sympy"].startswith("only the torch family needs it")


def test_a_package_the_project_also_needs_is_installed_as_locked_when_the_base_accepts_it() -> None:
    locked = lock(PYPI_TORCH, Locked("sympy", "1.14.1"), Locked("app-lib", "1.0", (Edge("sympy", ">=1.14"),)))
    assert "sympy" not in skipped((Edge("app-lib"), Edge("torch")), locked, installs(locked))


def test_a_locked_version_that_breaks_the_base_keeps_the_base_copy_or_stops() -> None:
    locked = lock(Locked("torch", "2.13.0", (Edge("sympy", "==1.13.1"),)), Locked("sympy", "1.13.1"),
                  Locked("app-lib", "1.0", (Edge("sympy", ">=1.13"),)))
    ops = installs(locked)
    skips = skipped((Edge("app-lib"),), locked, ops)
    assert skips["sympy"] == ("the base's sympy 1.14.0 is kept: the locked 1.13.1 would break the base's torch "
                              "(requires sympy>=1.13.3)")
    plan = plan_operations((Edge("app-lib"), Edge("sympy", "<1.14")), locked, ops, BASE)
    assert [c.line for c in plan.conflicts] == [
        "the project needs sympy<1.14, sympy>=1.13 (sympy 1.13.1 locked), but base cpu-base's torch requires "
        "sympy>=1.13.3; relax the project's requirement or pin another torch with [torch] version in "
        "layerenv.toml, then run `layerenv project` again"]


def test_requirements_on_the_family_are_checked_against_the_base() -> None:
    locked = lock(PYPI_TORCH, Locked("needs-new-torch", "1.0", (Edge("torch", ">=99"),)),
                  Locked("wants-audio", "2.0", (Edge("torchaudio"),)))
    plan = plan_operations((Edge("Needs_New_Torch"), Edge("wants-audio"), Edge("torch", "==2.13.0")), locked,
                           installs(locked), BASE)
    assert [c.line for c in plan.conflicts] == [
        "needs-new-torch 1.0 requires torch>=99, but base cpu-base (torch 2.13.0+cpu) has torch 2.13.0+cpu; "
        'set [torch] version = ">=99" in layerenv.toml, then run `layerenv project` again',
        "wants-audio 2.0 requires torchaudio, but base cpu-base (torch 2.13.0+cpu) has no torchaudio; "
        'add "torchaudio" to [base] packages in layerenv.toml, then run `layerenv project` again']
    # ==2.13.0 is met by 2.13.0+cpu (a local label); what only the family requires is never checked
    only_family = lock(Locked("torch", "2.15.0", (Edge("helper"),)), Locked("helper", "1", (Edge("torch", ">=99"),)))
    assert plan_operations((Edge("torch", "==2.13.0"),), only_family, installs(only_family), BASE).conflicts == ()


def test_uninstalls_spare_the_stubs_only() -> None:
    ops = (Op("uninstall", "base-extra", "1.0"), Op("uninstall", "old-lib", "0.1"), Op("uninstall", "torch", "2.5.1"),
           Op("update", "torch", "2.15.0"))
    skips = skipped((), {"torch": PYPI_TORCH}, ops)
    assert set(skips) == {"base-extra", "torch"}
    assert plan_operations((), {"torch": PYPI_TORCH}, ops, BASE).skip.keys() == {0, 2, 3}


_NAMES = st.sampled_from(["torch", "triton", "nvidia-cublas", "sympy", "lib-a", "lib-b", "typing-extensions",
                          "base-extra"])


@given(st.dictionaries(_NAMES, st.lists(_NAMES, max_size=4), min_size=1), st.lists(_NAMES, max_size=4))
def test_no_family_operation_ever_runs_and_nothing_the_project_alone_needs_is_skipped(
        graph: dict[str, list[str]], root_names: list[str]) -> None:
    locked = {name: Locked(name, "1.0", tuple(Edge(d) for d in deps)) for name, deps in graph.items()}
    root = tuple(Edge(name) for name in root_names)
    ops = installs(locked)
    plan = plan_operations(root, locked, ops, BASE)
    skipped_names = {ops[i].name for i in plan.skip}
    assert {op.name for op in ops if is_family(op.name)} <= skipped_names
    reach, todo = set(), [e.name for e in root]
    while todo:
        name = todo.pop()
        if name not in reach and name in locked and not is_family(name):
            reach.add(name)
            todo.extend(e.name for e in locked[name].requires)
    assert not {name for name in reach if name not in BASE.versions} & skipped_names
