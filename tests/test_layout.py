"""The package layout: one folder per stage, data flowing one way, no import cycle.

The import graph is read from the source (every ``import``, at module level or inside a
function), so this needs nothing installed beyond the standard library. The lint session
checks the same rules with import-linter (``[tool.importlinter]`` in pyproject.toml).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "gradparity"

STAGES = ("reference", "spec", "adapters", "compare", "harness", "check", "report", "cli")
"""The pipeline in order: a module may import its own stage and the stages before it."""

FRAMEWORK_FREE = ("reference", "spec", "compare")
"""Stages that compute with NumPy alone (the frameworks are the adapters' business)."""

FRAMEWORKS = ("torch", "jax", "jaxlib", "optax", "flax")

WITHIN_COMPARE_FORBIDDEN = {
    # the comparison is handed a tolerance model; it never derives one
    "gradparity.compare.pairwise": ("gradparity.compare.tolerances",
                                    "gradparity.compare.derivation"),
    "gradparity.compare.batched": ("gradparity.compare.tolerances",
                                   "gradparity.compare.derivation"),
    "gradparity.compare.metrics": ("gradparity.compare.tolerances",
                                   "gradparity.compare.derivation",
                                   "gradparity.compare.pairwise",
                                   "gradparity.compare.batched"),
}


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, modules: set[str], root: Path = PACKAGE) -> set[str]:
    """The modules (of ``modules``) and top-level packages that ``path`` imports."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # "from a.b import c" imports the module a.b.c when c is one, else a.b
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            found.add(target if target in modules else target.split(".")[0])
    found.discard(name)
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    files = sorted(root.rglob("*.py"))
    modules = {module_name(path, root) for path in files}
    return {module_name(path, root): imports_of(path, modules, root) for path in files}


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a later stage by an earlier one, as ``"a -> b"``."""
    wrong = []
    for module, targets in graph.items():
        stage = stage_of(module)
        for target in targets:
            other = stage_of(target)
            if stage and other and STAGES.index(other) > STAGES.index(stage):
                wrong.append(f"{module} -> {target}")
    return sorted(wrong)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


GRAPH = import_graph()


def test_every_module_lives_in_a_stage_folder() -> None:
    loose = [m for m in GRAPH if stage_of(m) is None
             and m not in ("gradparity", "gradparity.__main__")]
    assert not loose, f"modules outside the stage folders {STAGES}: {loose}"


def test_every_stage_folder_says_what_it_does() -> None:
    for stage in STAGES:
        init = PACKAGE / stage / "__init__.py"
        assert ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))), init


def test_data_flows_one_way() -> None:
    assert upward_imports(GRAPH) == []


def test_no_import_cycle() -> None:
    assert cycles(GRAPH) == []


@pytest.mark.parametrize("stage", FRAMEWORK_FREE)
def test_numeric_stages_use_no_framework(stage: str) -> None:
    used = {f"{m} -> {t}" for m, targets in GRAPH.items() if stage_of(m) == stage
            for t in targets if t in FRAMEWORKS}
    assert not used


def test_the_comparison_never_derives_its_tolerances() -> None:
    for module, forbidden in WITHIN_COMPARE_FORBIDDEN.items():
        assert not GRAPH[module] & set(forbidden), (module, GRAPH[module] & set(forbidden))


def test_the_checks_see_a_planted_violation(tmp_path: Path) -> None:
    """The same checks on a copy with an upward import and a cycle added on purpose."""
    root = tmp_path / "gradparity"
    for stage in ("reference", "spec"):
        (root / stage).mkdir(parents=True)
        (root / stage / "__init__.py").write_text('"""stage"""\n')
    (root / "__init__.py").write_text("")
    (root / "reference" / "a.py").write_text("from gradparity.spec import b\n")
    (root / "spec" / "b.py").write_text(
        "def later():\n    from gradparity.reference import a\n")
    graph = import_graph(root)
    assert upward_imports(graph) == ["gradparity.reference.a -> gradparity.spec.b"]
    assert cycles(graph) == [["gradparity.reference.a", "gradparity.spec.b"]]
