"""study_app's import graph: no cycles (imports inside functions count too, since deferring an import
only hides a ring), and nothing of the packages above it (gan, evalkit) or beside it."""
import ast
from pathlib import Path

import study_app

ROOT = Path(study_app.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _imports(name: str, path: Path) -> set[str]:
    """Every module `name` imports, anywhere in its body, except under `if TYPE_CHECKING:`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:     # `from pkg import module` imports pkg.module
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def test_study_app_imports_only_itself_the_base_and_libraries():
    outside = {(name, target) for name, targets in GRAPH.items() for target in targets
               if target.split(".")[0] in ("gan", "evalkit", "harness", "bench")}
    assert outside == set()
    assert any(t.startswith("harness_base") for t in GRAPH["study_app.cli"])


def test_there_is_no_import_cycle():
    internal = {name: {t for t in targets if t in MODULES and t != name} for name, targets in GRAPH.items()}
    state: dict[str, str] = {}

    def cycle_from(name, path):
        state[name] = "open"
        for target in sorted(internal[name]):
            if state.get(target) == "open":
                return path + [name, target]
            if target not in state:
                found = cycle_from(target, path + [name])
                if found:
                    return found
        state[name] = "done"
        return None

    for name in sorted(internal):
        if name not in state:
            assert cycle_from(name, []) is None


def test_the_stats_package_imports_downwards():
    importers = {name for name, targets in GRAPH.items() if "study_app.stats.analysis" in targets}
    assert importers == {"study_app.stats"}                       # only the package re-exports it
    text_importers = {name for name, targets in GRAPH.items() if "study_app.stats.text" in targets}
    assert text_importers == {"study_app.stats", "study_app.stats.analysis"}
    primitives = ("proportions", "clustering", "resampling", "sdt", "multiple", "glmm")
    for module in primitives:
        assert not {t for t in GRAPH[f"study_app.stats.{module}"] if t.startswith("study_app")}, module


def test_the_timed_trials_assets_ship_as_package_data():
    """The timed trial's JavaScript and CSS live in study_app/assets/; pyproject.toml's package data
    must name them, or an installed (non-editable) study_app would serve no component."""
    import fnmatch
    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    from study_app.views.timed import ASSETS

    patterns = tomllib.loads((ROOT.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assets = sorted(p.name for p in Path(str(ASSETS)).iterdir())
    assert assets == ["answer_keys.js", "timed_trial.css", "timed_trial.js"]
    assert all(any(fnmatch.fnmatch(f"assets/{name}", pattern) for pattern in patterns["study_app"]) for name in assets)
    assert "export default function" in (ASSETS / "timed_trial.js").read_text()
