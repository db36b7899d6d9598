"""The error a person can act on. Each package's own errors derive from `HarnessError`; the CLIs
print its message (what was wrong, what to do) without a traceback and exit with `exit_code`."""
from __future__ import annotations


class HarnessError(Exception):
    """A problem with the input or the environment, explained for the person running the command."""

    exit_code = 1


class UsageError(HarnessError):
    """The command line itself is wrong (an option's value or a combination of options)."""

    exit_code = 2
