"""`harness`: the commands that span gan, evalkit and study_app.

  harness demo [--preset cpu|gpu|smoke] [--out DIR]     the whole job end to end on built-in data
  harness report RUN_DIR ... --out DIR [--study DIR]    evalkit's report, with a human study's results

The installed `evalkit` command is `evalkit_main`: evalkit's CLI plus `evalkit demo` and
`evalkit report --study`, which need the other packages.
"""
from __future__ import annotations

import argparse
import json
import sys

from harness_base import cli as convention


def cmd_demo(args) -> int:
    from .demo import run_demo

    result = run_demo(args.out, args.preset, args.device, log=lambda m: print(m, flush=True),
                      progress=not args.quiet)
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


def cmd_report(args) -> int:
    from evalkit.cli import cmd_report as evalkit_report

    sections = []
    if args.study:
        from .study_section import study_section

        study = args.study
        # called once the report's rows exist, so each condition shows the FID of its row
        sections.append(lambda rows: study_section(study, rows))
    return evalkit_report(args, sections)


DEMO_NOTE = ("Finished training runs, snapshots and cached features are kept; run the same command again to "
             "continue where it stopped.")


def add_demo(add) -> argparse.ArgumentParser:
    p = add("demo", "the whole harness end to end on built-in cartoon faces (no data needed)",
            "Builds the cartoon-face data set, trains a ResNet-D and a ViT-D generator, evaluates every snapshot, "
            "sweeps truncation and checks copying for the best of each, writes the comparison report and creates a "
            "study dir. Presets: cpu (under 20 min on 2 cores), gpu (64 px, long enough for faces), smoke (a few "
            "minutes, for tests).")
    p.add_argument("--out", default="results/demo", help="output folder")
    p.add_argument("--preset", default="cpu", choices=["cpu", "gpu", "smoke"])
    convention.add_device(p)
    convention.add_quiet(p)
    convention.add_json(p, "the demo summary at the end")
    p.set_defaults(func=cmd_demo, interrupt_note=DEMO_NOTE)
    return p


def add_study_option(report: argparse.ArgumentParser) -> None:
    report.add_argument("--study", help="a study dir whose human-study results are added to the report")
    report.set_defaults(func=cmd_report)


def build_parser() -> argparse.ArgumentParser:
    from evalkit.cli import REPORT_HELP, add_report_arguments

    parser, add = convention.new_parser("harness", __doc__)
    add_demo(add)
    report = add("report", REPORT_HELP + "; --study adds a human study's results")
    add_report_arguments(report)
    add_study_option(report)
    return parser


def main(argv=None) -> int:
    return convention.run(build_parser(), argv, prog="harness")


def _extend_evalkit(add, commands) -> None:
    add_demo(add)
    add_study_option(commands["report"])


def evalkit_main(argv=None) -> int:
    """The installed `evalkit` command: evalkit's CLI plus `demo` and `report --study`."""
    from evalkit.cli import build_parser as evalkit_parser
    from evalkit.cli import main as evalkit_cli

    return evalkit_cli(argv, evalkit_parser(extend=_extend_evalkit))


if __name__ == "__main__":
    sys.exit(main())
