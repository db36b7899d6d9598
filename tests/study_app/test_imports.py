"""study_app's packaging: the trial component's assets ship as package data. (Its import graph — no
cycles, nothing of gan/evalkit/harness, the stats package importing downwards — is checked with
the rest of the project in tests/test_architecture.py.)"""
from pathlib import Path

import study_app

ROOT = Path(study_app.__file__).parent


def test_the_trial_components_assets_ship_as_package_data():
    """The trial component's JavaScript and CSS live in study_app/assets/; pyproject.toml's package data
    must name them, or an installed (non-editable) study_app would serve no component."""
    import fnmatch
    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    from study_app.views.component import ASSETS

    patterns = tomllib.loads((ROOT.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assets = sorted(p.name for p in Path(str(ASSETS)).iterdir())
    assert assets == ["connection.js", "trial.css", "trial.js"]
    assert all(any(fnmatch.fnmatch(f"assets/{name}", pattern) for pattern in patterns["study_app"]) for name in assets)
    assert all("export default function" in (ASSETS / js).read_text() for js in ("trial.js", "connection.js"))
