"""Randomised real-vs-fake studies, hosted with Streamlit: paired two-alternative forced choice
(design.kind = "paired"), one image at a time, "real or generated?" (design.kind = "single"), or
two generated images of two conditions, "which looks more real?" (design.kind = "pairwise").

Python API:
    init_study(study_dir, real_dir, fakes=[(label, dir), ...], **overrides) -> Path
    serve_command(study_dir, port=8501) -> str          # "study-app serve STUDY_DIR --port 8501"
                                                        # (a list of dirs: several studies on one server)
    analyse_study(study_dir, db_url=None) -> StudyReport # format_report(report) -> str
                                                        # report.to_dict(), report.to_frame()
    Study(study_dir, db_url=None)                       # config, manifest, images, store;
                                                        # .trials() and .participants(): DataFrames

The names are loaded on first use (PEP 562), so that `study-app --help` and `import study_app.cli`
do not import scipy, SQLAlchemy or pandas.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_HOMES = {
    "ConfigError": "config", "StudyConfig": "config", "load_config": "config",
    "ManifestError": "manifest",
    "StudyReport": "stats", "format_report": "stats",
    "Study": "study", "analyse_study": "study", "init_study": "study", "serve_command": "study",
}

__all__ = sorted(_HOMES)

if TYPE_CHECKING:  # for type checkers and editors; at run time __getattr__ loads them
    from .config import ConfigError, StudyConfig, load_config
    from .manifest import ManifestError
    from .stats import StudyReport, format_report
    from .study import Study, analyse_study, init_study, serve_command


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
