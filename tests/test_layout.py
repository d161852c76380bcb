"""The package layout is the pipeline: each stage imports only the stages before it, and no module
circle exists (not even through function-level imports)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "layerenv"

# Stages in pipeline order; a module may import its own stage and the stages before it.
STAGES: tuple[frozenset[str], ...] = (
    frozenset({"__init__", "errors", "faults", "tomlcompat", "reporter", "urls", "side_calls"}),
    frozenset({"machine"}),
    frozenset({"choice"}),
    frozenset({"config", "config_paths"}),
    frozenset({"store"}),
    frozenset({"venv"}),
    frozenset({"installers"}),
    frozenset({"base"}),
    frozenset({"project"}),
    frozenset({"lifecycle"}),
    frozenset({"integrations", "cli"}),
    frozenset({"entry", "ray_plugin", "__main__"}),  # old addresses kept for other tools, and python -m
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "layerenv":
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "layerenv")
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(path): imports_of(path) for path in PACKAGE.rglob("*.py")}


def stage_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for rank, names in enumerate(STAGES):
        if top in names:
            return rank
    raise AssertionError(f"{module}: its top-level name {top!r} belongs to no stage in tests/test_layout.py")


def test_every_module_belongs_to_a_stage() -> None:
    for module in graph():
        stage_of(module)


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{module} -> {target}"
        for module, targets in edges.items()
        for target in targets
        if target != "layerenv" and stage_of(target) > stage_of(module)
    )


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    known = {module: {t for t in targets if t in edges} for module, targets in edges.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    found: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(known[module]):
            if state.get(target) == 1:
                found.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(known):
        if module not in state:
            visit(module, [module])
    return found


def test_no_import_runs_back_up_the_pipeline() -> None:
    assert upward_imports(graph()) == []


def test_no_import_circle() -> None:
    assert circles(graph()) == []


def test_the_checks_see_a_back_up_import_and_a_circle() -> None:
    """What the two checks above guard against, made on purpose: they must see it."""
    edges = {
        "layerenv.store.home": {"layerenv.store.locking", "layerenv.cli.main"},
        "layerenv.store.locking": {"layerenv.store.nodes"},
        "layerenv.store.nodes": {"layerenv.store.home"},
        "layerenv.cli.main": set(),
    }
    assert upward_imports(edges) == ["layerenv.store.home -> layerenv.cli.main"]
    assert circles(edges) == [["layerenv.store.home", "layerenv.store.locking", "layerenv.store.nodes",
                               "layerenv.store.home"]]
