"""The package structure the README's "Architecture" section draws: imports point down only, and
there is no import cycle. Every import counts, also those deferred into a function body (which
hide a ring at run time but not from a reader).

Layers (an import may go to its own layer or below, never up or sideways):

    harness                              orchestration: demo, report + study
    evalkit                              reaches gan only through gan.api
    gan   study_app                      neither imports the other
    harness_base                         home, atomic writes, errors, CLI convention, devices

and inside evalkit: errors < metrics < sources < extract < reports < api < cli < the package root.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("harness_base", "gan", "study_app", "evalkit", "harness")
# what each package may import besides itself (gan only through gan.api, for evalkit)
ALLOWED = {"harness_base": set(), "gan": {"harness_base"}, "study_app": {"harness_base"},
           "evalkit": {"harness_base", "gan"}, "harness": {"harness_base", "gan", "study_app", "evalkit"}}
EVALKIT_LAYER = {"errors": 0, "metrics": 1, "sources": 2, "extract": 3, "reports": 4, "api": 5, "cli": 6,
                 "__main__": 7, "": 8}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def product_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


MODULES = product_modules()


def imports_of(name: str, path: Path) -> set[str]:
    """Absolute names of the project modules `name` imports anywhere in its body."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            for alias in node.names:  # `from pkg import module` depends on the module
                found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in MODULES else target)
    return {m for m in found if m.split(".")[0] in PACKAGES}


def resolve(target: str, modules: dict[str, Path]) -> str | None:
    """The module a dotted import name lands in (`from a.b import name` -> a.b unless a.b.name is one)."""
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target or None


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return {name: {m for t in imports_of(name, path) if (m := resolve(t, MODULES)) and m != name}
            for name, path in MODULES.items()}


def evalkit_layer(module: str) -> int:
    parts = module.split(".")
    return EVALKIT_LAYER[parts[1] if len(parts) > 1 else ""]


def violations(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for source, targets in graph.items():
        top = source.split(".")[0]
        for target in targets:
            dest = target.split(".")[0]
            if dest != top:
                if dest not in ALLOWED[top]:
                    found.append(f"{source} -> {target}: {top} may not import {dest}")
                elif top == "evalkit" and dest == "gan" and target != "gan.api":
                    found.append(f"{source} -> {target}: evalkit reaches gan only through gan.api")
            elif top == "evalkit" and evalkit_layer(target) > evalkit_layer(source):
                found.append(f"{source} -> {target}: an upward import inside evalkit")
    return sorted(found)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_imports_point_down_only(graph):
    assert violations(graph) == []


def test_no_import_cycles(graph):
    assert cycles(graph) == []


def test_the_checks_catch_what_they_are_for():
    bad = {"gan.dataset": {"evalkit.cache"}, "evalkit.reports.report": {"gan.checkpoint", "study_app"},
           "study_app.stats": {"gan.api"}, "evalkit.metrics.fid": {"evalkit.extract.features"},
           "a": {"b"}, "b": {"c"}, "c": {"a"}}
    found = violations({k: v for k, v in bad.items() if "." in k})
    assert len(found) == 5 and any("through gan.api" in f for f in found), found
    assert cycles(bad) == [["a", "b", "c"]]


def test_the_study_stats_package_imports_downwards(graph):
    """Only the package re-exports the analysis; the statistical primitives import nothing of study_app."""
    assert {n for n, targets in graph.items() if "study_app.stats.analysis" in targets} == {"study_app.stats"}
    assert {n for n, targets in graph.items() if "study_app.stats.text" in targets} == {
        "study_app.stats", "study_app.stats.analysis"}
    for module in ("proportions", "clustering", "resampling", "sdt", "multiple", "glmm"):
        assert not {t for t in graph[f"study_app.stats.{module}"] if t.startswith("study_app")}, module


def test_readme_architecture_names_every_package_and_wing():
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## Architecture\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, "README.md needs an '## Architecture' section"
    body = section.group(1)
    wings = [p.name for p in (ROOT / "evalkit").iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    for name in [*PACKAGES, *(f"evalkit/{w}" for w in wings)]:
        assert name in body, f"the Architecture section does not mention {name}"
