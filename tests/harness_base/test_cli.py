"""The shared CLI convention: exit codes, one-paragraph messages, --debug, Ctrl-C, broken pipes,
argument ranges."""
import argparse
import re
import errno
import subprocess
import sys
import zipfile

import pytest

from harness_base import cli
from harness_base.errors import HarnessError


def parser_running(func, **arguments):
    parser, add = cli.new_parser("tool", "a test tool")
    p = add("go", "run the test function")
    for flag, kwargs in arguments.items():
        p.add_argument(flag, **kwargs)
    p.set_defaults(func=func)
    return parser


def raise_(exc):
    def func(args):
        raise exc
    return func


@pytest.mark.parametrize("exc, code, text", [
    (HarnessError("the folder x is empty. Put images in it."), 1, "the folder x is empty"),
    (OSError(errno.EROFS, "Read-only file system", "/ro/out"), 1, "cannot write /ro/out: the file system is read-only"),
    (OSError(errno.EACCES, "Permission denied", "/p/out"), 1, "permission denied"),
    (OSError(errno.ENOSPC, "No space left on device"), 1, "no space left on the device"),
    (OSError(errno.ELOOP, "Too many levels of symbolic links", "in/loop/a.png"), 1, "in/loop/a.png is a symbolic link"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "in/broken.png"), 1, "broken symbolic link"),
    (zipfile.BadZipFile("Bad CRC-32 for file '0.png'"), 1, "zip archive is damaged (Bad CRC-32"),
    (RuntimeError("Found no NVIDIA driver on your system."), 1, "--device cpu"),
    (ValueError("k must be positive, got 0"), 1, "k must be positive, got 0"),
    (KeyError("surprise"), 1, "This is a bug in tool"),
])
def test_errors_become_one_message_and_exit_1(capsys, exc, code, text):
    assert cli.run(parser_running(raise_(exc)), ["go"]) == code
    err = capsys.readouterr().err
    assert text in err
    assert err.startswith("tool go: error: ")
    assert "Traceback" not in err and err.count("\n") == 1


def test_cache_folder_errors_name_the_variable(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("GAN_HARNESS_HOME", str(tmp_path))
    exc = OSError(errno.EROFS, "Read-only file system", str(tmp_path / "features"))
    assert cli.run(parser_running(raise_(exc)), ["go"]) == 1
    assert "GAN_HARNESS_HOME" in capsys.readouterr().err


def test_debug_shows_the_traceback_anywhere_on_the_line(capsys):
    for argv in (["--debug", "go"], ["go", "--debug"]):
        assert cli.run(parser_running(raise_(ValueError("bad"))), argv) == 1
        assert "Traceback" in capsys.readouterr().err


def test_ctrl_c_exits_130_with_what_was_kept(capsys):
    parser = parser_running(raise_(KeyboardInterrupt()))
    parser._subparsers._group_actions[0].choices["go"].set_defaults(interrupt_note="The last snapshot is kept.")
    assert cli.run(parser, ["go"]) == 130
    assert capsys.readouterr().err == "tool go: interrupted. The last snapshot is kept.\n"


def test_usage_errors_exit_2_before_the_command_runs(capsys):
    ran = []
    parser = parser_running(lambda a: ran.append(a), **{"--n": {"type": cli.positive_int, "default": 1}})
    with pytest.raises(SystemExit) as stop:
        cli.run(parser, ["go", "--n", "0"])
    assert stop.value.code == 2 and not ran
    assert "0 is out of range: a whole number >= 1 is needed" in capsys.readouterr().err


@pytest.mark.parametrize("parse, text, message", [
    (cli.finite_float, "nan", "not a finite number"), (cli.finite_float, "inf", "not a finite number"),
    (cli.finite_float, "x", "is not a finite number"), (cli.probability, "1.5", "in [0, 1]"),
    (cli.positive_float, "0", "in (0, inf)"), (cli.nonnegative_int, "-1", ">= 0"),
    (cli.positive_int, "2.5", "whole number"), (cli.float_list, "1,nan", "finite"), (cli.float_list, ",", "empty"),
    (cli.device_spec, "gpu", "auto, cpu, cuda or cuda:N"), (cli.int_in(1, 65535), "65536", "in [1, 65535]"),
    (cli.int_in(1, 65535), "0", "in [1, 65535]"), (cli.int_in(1, 10), "x", "whole number in [1, 10]"),
])
def test_argument_types_state_the_range(parse, text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(message)):
        parse(text)


def test_argument_types_accept_valid_values():
    assert cli.float_list("1, 0.7,-0.5") == (1.0, 0.7, -0.5)
    assert cli.probability("0") == 0.0 and cli.positive_int("3") == 3 and cli.device_spec("CUDA:1") == "cuda:1"
    assert cli.int_in(1, 65535)("1") == 1 and cli.int_in(1, 65535)("65535") == 65535


def test_help_shows_defaults():
    parser = parser_running(lambda a: 0, **{"--n": {"type": int, "default": 7, "help": "count"},
                                           "--flag": {"action": "store_true", "help": "a switch"}})
    text = parser._subparsers._group_actions[0].choices["go"].format_help()
    assert "count (default: 7)" in text and "(default: False)" not in text
    parser = parser_running(lambda a: 0, **{"--n": {"type": cli.positive_int, "default": 7, "help": "count"},
                                           "--p": {"type": cli.probability, "default": 0.5, "help": "share"}})
    text = " ".join(parser._subparsers._group_actions[0].choices["go"].format_help().split())
    assert "count (valid: a whole number >= 1; default: 7)" in text
    assert "share (valid: finite number in [0, 1]; default: 0.5)" in text


def test_broken_pipe_is_quiet(tmp_path):
    script = tmp_path / "many.py"
    script.write_text(
        "import sys\nfrom harness_base import cli\n"
        "def go(args):\n    for i in range(200000):\n        print('line', i)\n"
        "p, add = cli.new_parser('tool', None)\nadd('go', 'print').set_defaults(func=go)\n"
        "sys.exit(cli.run(p, ['go']))\n")
    result = subprocess.run(f"{sys.executable} {script} | head -1", shell=True, capture_output=True, text=True)
    assert result.stdout == "line 0\n"
    assert result.stderr == ""


def test_version(capsys):
    parser, _ = cli.new_parser("tool", None)
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.startswith("tool ")


@pytest.mark.parametrize("module", ["gan.cli", "evalkit.cli", "study_app.cli", "harness.cli"])
def test_building_every_parser_imports_no_heavy_library(module):
    """`--help` stays fast: building a CLI's parser imports neither torch nor scipy, pandas or SQLAlchemy."""
    probe = (f"import sys, {module} as c; c.build_parser(); "
             "print(sorted(m for m in ('torch', 'scipy', 'sqlalchemy', 'pandas', 'streamlit') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
