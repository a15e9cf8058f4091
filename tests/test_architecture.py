"""The package's import structure: components import only downward.

Every ``import`` statement of every module is read, function-level ones included (a lazy import
hides a cycle from Python but not from a reader). The units are the package's top-level modules
and subpackages (``irdistill.retrieval``, ``irdistill.teachers``, ...). The test fails on

- a cycle between units,
- a library unit importing the CLI,
- a component importing the orchestration room (``irdistill.workflows``), which only the CLI
  and the workflows themselves may do.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "irdistill"
ORCHESTRATION = {"irdistill.workflows", "irdistill.cli"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit(module: str) -> str:
    return ".".join(module.split(".")[:2])


def imports(path: Path) -> list[tuple[int, str]]:
    """``(line, imported module)`` of every import in the file, at any depth."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
    return [(line, target) for line, target in found if target.startswith("irdistill")]


def unit_graph() -> dict[str, dict[str, list[str]]]:
    """``unit -> {imported unit: ["file:line", ...]}`` between different units."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(PACKAGE.rglob("*.py")):
        source = unit(module_name(path))
        for line, target in imports(path):
            if unit(target) != source and unit(target) != "irdistill":
                graph[source][unit(target)].append(f"{path.relative_to(PACKAGE.parent)}:{line}")
    return graph


def cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """Strongly connected components of more than one unit (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(set(graph) | {w for targets in graph.values() for w in targets}):
        if v not in index:
            visit(v)
    return found


def test_the_walker_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    graph = {"a": {"b": ["x"]}, "b": {"c": ["y"]}, "c": {"a": ["z"]}, "d": {"a": ["w"]}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b": ["x"]}}) == []
    lazy = [t for _, t in imports(PACKAGE / "workflows" / "training.py")]
    assert "irdistill.losses" in lazy  # imported inside a function there


def test_no_import_cycle_between_units() -> None:
    graph = unit_graph()
    found = cycles(graph)
    detail = [f"{a} -> {b}: {', '.join(graph[a][b][:3])}" for c in found for a in c for b in graph[a] if b in c]
    assert not found, "import cycles between units:\n" + "\n".join(detail)


def test_library_units_never_import_the_cli_and_components_never_import_workflows() -> None:
    graph = unit_graph()
    bad = [
        f"{source} -> {target}: {', '.join(where[:3])}"
        for source, targets in graph.items()
        for target, where in targets.items()
        if (target == "irdistill.cli" and source != "irdistill.cli")
        or (target == "irdistill.workflows" and source not in ORCHESTRATION)
    ]
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_the_package_root_exports_what_a_script_needs_without_loading_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, irdistill; names = [n for n in irdistill.__all__ if n != '__version__']; "
        "[getattr(irdistill, n) for n in names]; print(len(names), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert int(out[0]) >= 10 and out[1] == "False"
