"""study_app's packaging: the timed trial's assets ship as package data. (Its import graph — no
cycles, nothing of gan/evalkit/harness, the stats package importing downwards — is checked with
the rest of the project in tests/test_architecture.py.)"""
from pathlib import Path

import study_app

ROOT = Path(study_app.__file__).parent


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
