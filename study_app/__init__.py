"""Randomised real-vs-fake studies, hosted with Streamlit: paired two-alternative forced choice
(design.kind = "paired") or one image at a time, "real or generated?" (design.kind = "single").

Python API:
    init_study(study_dir, real_dir, fakes=[(label, dir), ...], **overrides) -> Path
    serve_command(study_dir, port=8501) -> str          # "study-app serve STUDY_DIR --port 8501"
                                                        # (a list of dirs: several studies on one server)
    analyse_study(study_dir, db_url=None) -> StudyReport # format_report(report) -> str
    Study(study_dir, db_url=None)                       # config, manifest, images, store
"""
from .config import ConfigError, StudyConfig, load_config
from .manifest import ManifestError
from .stats import StudyReport, format_report
from .study import Study, analyse_study, init_study, serve_command

__all__ = ["ConfigError", "ManifestError", "Study", "StudyConfig", "StudyReport", "analyse_study",
           "format_report", "init_study", "load_config", "serve_command"]
