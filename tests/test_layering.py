"""Import structure: no cycles between modules; every subpackage has a layer.

The layer order and the forbidden imports are import-linter contracts in pyproject.toml
(``lint-imports`` runs in .ci/run). This test adds the module-level cycle check, listing
each cycle's modules and imports so that the fix (move the shared piece down a layer) is
visible.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "bids_app"
#: Not part of the layering: the package's own entry points and pure data packages.
UNLAYERED = {"bids_app.__main__", "bids_app.data", "bids_app.boilerplate"}


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(PACKAGE, include_external_packages=False, cache_dir=None)


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
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
    return sorted(found)


def test_strongly_connected_finds_cycles():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"f"}, "f": {"e", "g"},
             "g": set()}
    assert strongly_connected(edges) == [["a", "b", "c"], ["e", "f"]]


def test_no_import_cycles_between_modules(graph):
    # Only explicit imports are edges: a module is not taken to import its package's __init__.
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules
             if not m.startswith("bids_app.boilerplate")}
    cycles = strongly_connected(edges)
    report = []
    for component in cycles:
        members = set(component)
        imports = []
        for importer in component:
            for imported in sorted(edges[importer] & members):
                lines = graph.get_import_details(importer=importer, imported=imported)
                where = ", ".join(f"l.{d['line_number']}" for d in lines) or "?"
                imports.append(f"    {importer} -> {imported} ({where})")
        report.append(" <-> ".join(component) + "\n" + "\n".join(imports))
    assert not cycles, f"{len(cycles)} import cycle(s):\n" + "\n".join(report)


def test_every_subpackage_has_a_layer(graph):
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c for c in config["contracts"] if c["type"] == "layers"]
    layered = {name.strip() for layer in layers["layers"] for name in layer.split("|")}
    top = {m for m in graph.find_children(PACKAGE)}
    assert top - UNLAYERED == layered, "add new subpackages to the layers contract"
