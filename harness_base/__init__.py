"""The small shared base under `gan`, `study_app` and `evalkit`: where the harness keeps its files
(`home`), the one atomic writer (`atomic`), the error every command turns into a message
(`errors`), the command-line convention shared by the three CLIs (`cli`) and the one rule that
turns `--device` into a torch device (`device`).

It imports nothing of the packages above it, and nothing heavy at import time (no torch, numpy or
scipy), so that `--help` stays fast.
"""


def __getattr__(name):  # PEP 562: reading the installed metadata costs ~40 ms, so only on use
    if name == "__version__":
        from importlib import metadata

        try:
            version = metadata.version("gan-eval-harness")
        except metadata.PackageNotFoundError:  # a source tree that was not installed
            version = "0.0.0+source"
        globals()["__version__"] = version
        return version
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
