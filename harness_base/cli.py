"""The command-line convention shared by `gan`, `evalkit` and `study-app`.

* Exit codes: 0 success; 1 a runtime problem (bad input, missing file, read-only or full disk, no
  GPU, ...), reported as one paragraph that names the problem and the fix; 2 a usage error (an
  unknown option, or a value outside its range), reported by argparse before any work starts;
  130 Ctrl-C, with one line saying what was kept; 141 a closed pipe (`... | head`), silently.
* Never a traceback, unless `--debug` is given (anywhere on the line).
* `--version`; defaults shown in `--help`; the same `--device`, `--quiet` and `--json` flags
  wherever they apply; numeric options checked by the types below, whose messages state the range.
"""
from __future__ import annotations

import argparse
import errno
import math
import os
import sys
import traceback
import warnings
from typing import Callable

from .errors import HarnessError
from .home import HOME_ENV, harness_home

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 2, 130, 141


# ---------------------------------------------------------------------------------------------
# Parsers


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the descriptions' line breaks and appends each option's default to its help, unless
    the help already states it or there is nothing to state (None, False)."""

    def _get_help_string(self, action):
        text = action.help or ""
        notes = []
        valid = getattr(action.type, "valid", None)
        if valid and "valid:" not in text:
            notes.append(f"valid: {valid}")
        default = action.default
        if not ("default" in text or default is None or default is False or default == argparse.SUPPRESS
                or not action.option_strings
                or isinstance(action, (argparse._HelpAction, argparse._VersionAction))):
            shown = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default) \
                if isinstance(default, (list, tuple)) else default
            notes.append(f"default: {shown}")
        return f"{text} ({'; '.join(notes)})".strip() if notes else text


def _debug_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand's parser does not reset the value the main parser already set
    parent.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback when a command fails")
    return parent


class _VersionAction(argparse.Action):
    """--version, reading the installed version only when asked."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from . import __version__

        print(f"{parser.prog} {__version__}")
        parser.exit()


def new_parser(prog: str, description: str | None) -> tuple[argparse.ArgumentParser, Callable]:
    """The main parser (with --version and --debug) and `add_command(name, help, description)`,
    which adds a sub-command that takes --debug too and shows defaults in its help."""
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter,
                                     parents=[_debug_parent()])
    parser.add_argument("--version", action=_VersionAction, help="show the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add_command(name: str, help: str, description: str | None = None, **kwargs) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=description or help, formatter_class=HelpFormatter,
                              parents=[_debug_parent()], **kwargs)

    return parser, add_command


def add_device(p: argparse.ArgumentParser, default: str = "auto") -> None:
    from .device import DEVICE_CHOICES

    p.add_argument("--device", type=device_spec, default=default,
                   help=f"{DEVICE_CHOICES}; auto = the GPU when CUDA is usable, else the CPU")


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars or progress lines")


def add_json(p: argparse.ArgumentParser, what: str = "the result") -> None:
    p.add_argument("--json", action="store_true", help=f"print {what} as JSON")


# ---------------------------------------------------------------------------------------------
# Argument types: each names the valid range in its message


def _number(text: str, kind, what: str):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number ({what} is needed)")
    return value


def int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = _number(text, int, f"a whole number >= {minimum}")
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is out of range: a whole number >= {minimum} is needed")
        return value

    parse.__name__ = f"integer >= {minimum}"
    parse.valid = f"a whole number >= {minimum}"
    return parse


def int_in(low: int, high: int) -> Callable[[str], int]:
    """A whole number within [low, high], e.g. a port number: int_in(1, 65535)."""
    def parse(text: str) -> int:
        value = _number(text, int, f"a whole number in [{low}, {high}]")
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range: a whole number in [{low}, {high}] is needed")
        return value

    parse.__name__ = f"integer in [{low}, {high}]"
    parse.valid = f"a whole number in [{low}, {high}]"
    return parse


positive_int = int_at_least(1)
nonnegative_int = int_at_least(0)


def float_in(low: float | None = None, high: float | None = None, *, low_open: bool = False,
             high_open: bool = False) -> Callable[[str], float]:
    """A finite float within [low, high] (either end open or absent)."""
    lo = "" if low is None else f"{'(' if low_open else '['}{low:g}"
    hi = "" if high is None else f"{high:g}{')' if high_open else ']'}"
    what = "a finite number" + (f" in {lo or '(-inf'}, {hi or 'inf)'}" if (low is not None or high is not None) else "")

    def parse(text: str) -> float:
        value = _number(text, float, what)
        bad_low = low is not None and (value < low or (low_open and value == low))
        bad_high = high is not None and (value > high or (high_open and value == high))
        if bad_low or bad_high:
            raise argparse.ArgumentTypeError(f"{value:g} is out of range: {what} is needed")
        return value

    parse.__name__ = what
    parse.valid = what[2:]  # "finite number in [0, 1]"
    return parse


finite_float = float_in()
positive_float = float_in(0, low_open=True)
nonnegative_float = float_in(0)
probability = float_in(0, 1)


def float_list(text: str) -> tuple[float, ...]:
    """Comma-separated finite numbers, e.g. 1,0.7,0.5."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("an empty list; give comma-separated numbers such as 1,0.7,0.5")
    return tuple(finite_float(p) for p in parts)


float_list.valid = "comma-separated finite numbers"


def device_spec(text: str) -> str:
    from .device import parse_device_spec

    try:
        return parse_device_spec(text)
    except HarnessError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


# ---------------------------------------------------------------------------------------------
# Running a command


def _under_home(filename) -> bool:
    try:
        return os.path.abspath(str(filename)).startswith(os.path.abspath(harness_home()))
    except (TypeError, ValueError):
        return False


def explain_os_error(err: OSError) -> str:
    """One paragraph for an operating-system error: what happened to which file, and the fix."""
    name = err.filename if err.filename is not None else None
    where = f" {name}" if name else ""
    cache_hint = (f" It lies in the harness's cache folder ({harness_home()}); set {HOME_ENV} to a writable folder "
                  "with enough space, or pass --no-cache where the command has it." if name and _under_home(name) else "")
    code = err.errno
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        why = "the file system is read-only" if code == errno.EROFS else "permission denied"
        return (f"cannot write{where}: {why}. Choose a folder you can write to (the command's --out or output "
                f"argument), or fix the folder's permissions.{cache_hint}")
    if code in (errno.ENOSPC, errno.EDQUOT):
        return (f"no space left on the device{(' while writing' + where) if name else ''}. Free some space or write "
                f"to another disk; anything half-written was removed.{cache_hint}")
    if code == errno.ELOOP:
        return f"{name or 'a path'} is a symbolic link that leads back to itself (a loop). Remove or fix the link."
    if code == errno.ENOENT:
        return (f"{name or 'a file'} does not exist: a broken symbolic link, or a file removed while the command "
                "ran. Fix or remove it and run the command again.")
    if code == errno.ENOTDIR:
        return f"{name} is a file where a folder was expected. Give a folder, or remove the file."
    if code == errno.EISDIR:
        return f"{name} is a folder where a file was expected. Give a file path."
    return f"{err.strerror or err}{(' (' + str(name) + ')') if name else ''}."


def explain(exc: BaseException, prog: str) -> tuple[str, int]:
    """(message, exit code) for an exception that ended a command."""
    import zipfile

    if isinstance(exc, HarnessError):
        return str(exc), exc.exit_code
    if isinstance(exc, OSError) and exc.errno is not None:
        return explain_os_error(exc), EXIT_ERROR
    if isinstance(exc, zipfile.BadZipFile):
        return (f"a zip archive is damaged ({exc}). Re-create the zip, or unpack its readable members into a "
                "folder and use that instead."), EXIT_ERROR
    if isinstance(exc, MemoryError):
        return "ran out of memory. Use a smaller --batch-size (or fewer images at once).", EXIT_ERROR
    text = str(exc)
    if "NVIDIA driver" in text or "CUDA driver" in text or "no CUDA GPUs" in text:
        return ("a GPU was asked for, but CUDA is not usable here (no NVIDIA driver or GPU). Run with --device "
                "cpu (or auto)."), EXIT_ERROR
    if isinstance(exc, (ValueError, TypeError)) and text:
        return f"{text.rstrip('.')}. (Run with --debug to see where it came from.)", EXIT_ERROR
    return (f"unexpected {type(exc).__name__}: {text or 'no message'}. This is a bug in {prog}; run the command "
            "again with --debug and report the traceback."), EXIT_ERROR


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings reach a person running a command as `warning: ...`, not as source locations."""
    return f"warning: {message}\n"


def _silence_stdout() -> None:
    """After the reader of our output went away: point stdout at /dev/null so the interpreter's
    final flush does not raise BrokenPipeError again (Python docs, "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def run(parser: argparse.ArgumentParser, argv=None, *, prog: str | None = None,
        dispatch: Callable[[argparse.Namespace], int | None] | None = None) -> int:
    """Parse `argv`, run the command (`args.func(args)` unless `dispatch` is given) and apply the
    convention above. A command may set `interrupt_note` (text, or a function of args) saying what
    a Ctrl-C keeps and how a rerun continues."""
    prog = prog or parser.prog
    warnings.formatwarning = _one_line_warning
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    command = f"{prog} {args.command}" if getattr(args, "command", None) else prog
    try:
        code = (dispatch or (lambda a: a.func(a)))(args)
        sys.stdout.flush()
        return EXIT_OK if code is None else int(code)
    except KeyboardInterrupt:
        note = getattr(args, "interrupt_note", None)
        note = note(args) if callable(note) else note
        print(f"{command}: interrupted. {note or 'Nothing half-written was left behind.'}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - the one place every failure becomes a message
        if debug:
            traceback.print_exc()
        message, code = explain(exc, prog)
        print(f"{command}: error: {message}", file=sys.stderr)
        return code
