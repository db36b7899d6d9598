"""Errors a user can act on. Each message says what was wrong and what to do; the CLI prints it
without a traceback (see harness_base.cli)."""
from harness_base.errors import HarnessError


class EvalkitError(HarnessError):
    """Base class: the message is meant for the person running the command."""


class WeightsError(EvalkitError):
    """A model weight file is missing or does not match its pinned sha256."""


class SourceError(EvalkitError):
    """An image source (folder, zip, statistics file) cannot be used as given."""


class BadImagesError(SourceError):
    """Some files in a source could not be decoded."""

    def __init__(self, source: str, bad: list[tuple[str, str]]):
        self.source = source
        self.bad = bad
        shown = "\n".join(f"  {name}: {reason}" for name, reason in bad[:10])
        more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
        super().__init__(
            f"{len(bad)} file(s) in {source} could not be read as images:\n{shown}{more}\n"
            "Remove or re-save them, or pass --skip-bad to leave them out "
            "(the features of the readable images are cached either way)."
        )


class SampleSizeError(EvalkitError):
    """Too few samples for the statistic asked for."""
