"""The shape the README's architecture section promises: packages layered without cycles, and
the data-dir layout known to storage alone."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "tidegate"


def _package_of(module: Path) -> str:
    parts = module.relative_to(SRC).with_suffix("").parts
    return parts[0] if len(parts) > 1 else "(top)"


def _imported_packages(module: Path) -> set[str]:
    """Sibling packages of tidegate a module imports (relative or absolute)."""
    tree = ast.parse(module.read_text())
    depth = len(module.relative_to(SRC).parts) - 1  # how many dots reach tidegate/
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level - 1 > depth:
                    continue
                base = module.relative_to(SRC).parts[: depth - (node.level - 1)]
                target = (*base, *(node.module.split(".") if node.module else ()))
            elif node.module and node.module.startswith("tidegate."):
                target = tuple(node.module.split(".")[1:])
            else:
                continue
            names = [target] if target else [(alias.name,) for alias in node.names]
            for t in names:
                if t and (SRC / t[0]).is_dir():
                    found.add(t[0])
    return found


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module in SRC.rglob("*.py"):
        package = _package_of(module)
        if package != "(top)":
            graph.setdefault(package, set()).update(_imported_packages(module) - {package})
    return graph


def test_no_package_imports_a_package_that_imports_it_back() -> None:
    graph = package_graph()

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph.get(start, ()))

    cycles = sorted(p for p in graph if reaches(p, p, {p}))
    assert not cycles, {p: sorted(graph[p]) for p in cycles}


def test_the_layers_are_as_documented() -> None:
    graph = package_graph()
    assert graph["simple"] == set()
    assert graph["storage"] <= {"simple"}
    assert "readpath" not in graph["publish"] and "web" not in graph["publish"]
    assert "web" not in graph["readpath"]


def test_only_storage_knows_the_data_dir_layout() -> None:
    spelled = [str(m.relative_to(SRC)) for m in SRC.rglob("*.py")
               if _package_of(m) != "storage" and any(s in m.read_text() for s in ('"index.db"', '"blobs"', '"pagecache"'))]
    assert spelled == []


def test_only_the_command_line_uses_the_air_gap_commands() -> None:
    graph = package_graph()
    assert [p for p, imported in graph.items() if "airgap" in imported] == []
