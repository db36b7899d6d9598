"""`study-app`: create, host, and analyse randomised real-vs-fake studies: paired (2AFC, which of two
images is real?) or single-image (HYPE∞ style, is this image real or generated?).

  study-app init STUDY_DIR --real DIR --fake DIR [--fake DIR2 ...] [--label NAME ...] [--design single]
  study-app serve STUDY_DIR [--port 8501]       # participants: http://HOST:PORT/   admin: /admin
  study-app serve DIR1 DIR2 ...                 # several studies: /?study=NAME and /admin?study=NAME
  study-app stats STUDY_DIR [--json]
  study-app export STUDY_DIR --out trials.csv
  study-app power --accuracy 0.55 --trials-per-participant 20 [--observed 153 312]
  study-app check | open | close STUDY_DIR;  study-app withdraw STUDY_DIR DELETION-CODE
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

from sqlalchemy.exc import SQLAlchemyError

APP_PATH = Path(__file__).with_name("app.py")


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="URL", help="SQLAlchemy URL of the response database "
                   "(default: the config's storage.database_url, else STUDY_DIR/responses.sqlite)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="study-app", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init", help="create a study dir: editable config + image manifest with hashes")
    p.add_argument("study_dir", type=Path)
    p.add_argument("--real", required=True, type=Path, help="folder of real images")
    p.add_argument("--fake", required=True, action="append", type=Path, metavar="DIR",
                   help="folder of generated images; repeat for several generators or ψ values")
    p.add_argument("--label", action="append", default=[], metavar="NAME",
                   help="condition label for each --fake, in order (default: the folder name)")
    p.add_argument("--design", choices=["paired", "single"],
                   help="paired (default): a real and a generated image side by side, which is real? "
                        "single: one image per trial, real or generated? (HYPE∞ style)")
    p.add_argument("--title")
    p.add_argument("--trials", type=int, dest="trials_per_condition",
                   help="main trials (pairs, or single images) per condition and participant")
    p.add_argument("--practice", type=int, dest="practice_trials")
    p.add_argument("--attention", type=int, dest="attention_checks")
    p.add_argument("--assignment", choices=["within", "between"])
    p.add_argument("--seed", type=int)
    p.add_argument("--completion-code", dest="completion_code")
    p.add_argument("--redirect-url", dest="redirect_url")
    p.add_argument("--margin", type=float, dest="equivalence_margin", help="equivalence margin, e.g. 0.05 for ±5 points")
    p.add_argument("--store-platform-ids", action="store_true", default=None, dest="store_platform_ids",
                   help="store PROLIFIC_PID etc. from the participant's URL (off by default)")
    p.add_argument("--no-copy", action="store_true", help="reference the images in place instead of copying them")
    p.add_argument("--force", action="store_true", help="replace an existing study config and manifest")

    p = sub.add_parser("serve", help="host the study (or several, each with its own database) with Streamlit")
    p.add_argument("study_dirs", type=Path, nargs="+", metavar="STUDY_DIR",
                   help="one study dir; with several, each is addressed as ?study=NAME (its directory's basename)")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--address", default="127.0.0.1", help="interface to listen on (0.0.0.0 for all)")
    _add_db(p)
    p.add_argument("--skip-image-check", action="store_true", help="do not re-hash every image before starting")

    p = sub.add_parser("stats", help="analyse the responses")
    p.add_argument("study_dir", type=Path)
    _add_db(p)
    p.add_argument("--json", action="store_true", help="print the full report as JSON")

    p = sub.add_parser("export", help="write one CSV row per trial, plus a codebook")
    p.add_argument("study_dir", type=Path)
    _add_db(p)
    p.add_argument("--out", type=Path, help="CSV file (default: STUDY_DIR/export/trials.csv)")
    p.add_argument("--include-platform-ids", action="store_true",
                   help="add the recruitment-platform ID column (pseudonymous personal data)")

    p = sub.add_parser("power", help="power and sample size (per-trial accuracy, either design), with clustering")
    p.add_argument("--accuracy", type=float, default=0.55, help="true accuracy to detect (default 0.55)")
    p.add_argument("--margin", type=float, default=0.05, help="equivalence margin (default 0.05)")
    p.add_argument("--trials-per-participant", type=int, default=20)
    p.add_argument("--participants", type=int, help="also report the power of this many participants")
    p.add_argument("--icc", type=float, default=0.027, help="within-participant correlation (default 0.027)")
    p.add_argument("--power", type=float, default=0.8)
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--observed", type=int, nargs=2, metavar=("CORRECT", "TRIALS"),
                   help="also analyse an observed result, e.g. --observed 153 312")

    for name, text in (("check", "verify the config, the manifest and every image hash"),
                       ("open", "open the study to new participants"), ("close", "close it to new participants")):
        p = sub.add_parser(name, help=text)
        p.add_argument("study_dir", type=Path)
        _add_db(p)

    p = sub.add_parser("withdraw", help="delete a participant's answers by their deletion code")
    p.add_argument("study_dir", type=Path)
    p.add_argument("code")
    _add_db(p)
    return parser


def cmd_init(args) -> int:
    from .config import load_config
    from .manifest import load_manifest
    from .study import init_study, serve_command
    if args.label and len(args.label) != len(args.fake):
        raise SystemExit(f"study-app init: {len(args.label)} --label for {len(args.fake)} --fake; give one per --fake or none")
    labels = args.label or [folder.name for folder in args.fake]
    overrides = {k: v for k, v in vars(args).items() if v is not None and k in (
        "design", "title", "trials_per_condition", "practice_trials", "attention_checks", "assignment", "seed",
        "completion_code", "redirect_url", "equivalence_margin", "store_platform_ids")}
    path = init_study(args.study_dir, args.real, list(zip(labels, args.fake)), copy_images=not args.no_copy,
                      force=args.force, **overrides)
    manifest = load_manifest(path)
    print(f"Created study in {path}" + (" (single-image design)" if load_config(path).design.kind == "single" else ""))
    print(f"  {len(manifest.ids('real'))} real images; " + "; ".join(
        f"{len(manifest.ids('fake', label))} fakes for '{label}'" for label in labels)
        + f"; {len(manifest.ids('attention'))} attention-check images")
    for warning in manifest.warnings:
        print(f"  warning: {warning}")
    print(f"Edit {path / 'study.toml'} (texts, consent, contact, trial counts), then host it with:")
    print(f"  STUDY_ADMIN_PASSWORD=... {serve_command(path)}")
    return 0


def cmd_serve(args) -> int:
    from .config import ADMIN_PASSWORD_ENV, ConfigError, design_text_warnings
    from .study import DB_URL_ENV, STUDY_DIR_ENV, Study, check_served_studies
    # Names, --db and shared databases are checked from the configs alone, before any database is created.
    studies = check_served_studies(args.study_dirs, args.db)
    several = len(studies) > 1
    if several and any(os.pathsep in str(path) for path in studies.values()):
        raise ConfigError(f"a study path contains '{os.pathsep}', which separates the paths in {STUDY_DIR_ENV}: "
                          "move or rename that directory")
    for name, path in studies.items():
        prefix = f"study-app serve: {name}: " if several else "study-app serve: "
        study = Study(path, args.db)  # fails here, with a clear message, not in a participant's browser
        for warning in design_text_warnings(study.config):
            print(f"{prefix}warning: {warning}", file=sys.stderr)
        if not args.skip_image_check:
            problems = study.images.verify_all()
            if problems:
                for problem in problems[:20]:
                    print(f"{prefix}{problem}", file=sys.stderr)
                return 1
        study.store.dispose()
    # One dir is passed exactly as before; several are joined with os.pathsep (views/common.py splits them).
    env = dict(os.environ, **{STUDY_DIR_ENV: os.pathsep.join(str(path) for path in studies.values())})
    if args.db:
        env[DB_URL_ENV] = args.db
    host = "localhost" if args.address in ("127.0.0.1", "0.0.0.0") else args.address
    base = f"http://{host}:{args.port}"
    if several:
        for name in studies:
            query = urlencode({"study": name})
            print(f"{name}: Participants: {base}/?{query}    Admin: {base}/admin?{query}", flush=True)
    else:
        print(f"Participants: {base}/    Admin: {base}/admin", flush=True)
    if not os.environ.get(ADMIN_PASSWORD_ENV):
        print(f"(the admin page is disabled until {ADMIN_PASSWORD_ENV} is set)", flush=True)
    command = [sys.executable, "-m", "streamlit", "run", str(APP_PATH),
               "--server.port", str(args.port), "--server.address", args.address, "--server.headless", "true",
               "--server.runOnSave", "false", "--server.fileWatcherType", "none",
               "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
               "--client.showErrorDetails", "false", "--", *map(str, studies.values())]
    try:
        return subprocess.call(command, env=env)
    except KeyboardInterrupt:
        return 0


def cmd_stats(args) -> int:
    from .stats import format_report
    from .study import Study
    report = Study(args.study_dir, args.db).analyse()
    print(json.dumps(report.to_dict(), indent=1, default=str, allow_nan=False) if args.json else format_report(report))
    return 0


def cmd_export(args) -> int:
    from . import export
    from .study import Study
    study = Study(args.study_dir, args.db)
    out = args.out or Path(args.study_dir) / "export" / "trials.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    records = study.export_records(args.include_platform_ids)
    out.write_text(export.to_csv(records, args.include_platform_ids, design=study.config.design.kind), encoding="utf-8")
    codebook = out.with_name(out.stem + "_codebook.csv")
    codebook.write_text(study.codebook_csv(args.include_platform_ids), encoding="utf-8")
    print(f"{len(records)} trial rows -> {out}\ncodebook -> {codebook}")
    return 0


def cmd_power(args) -> int:
    from . import stats
    if not (0 < args.accuracy < 1 and 0 < args.margin < 0.5 and 0 <= args.icc < 1 and args.trials_per_participant >= 1
            and 0 < args.power < 1 and 0 < args.alpha < 0.5):
        raise SystemExit("study-app power: need 0 < accuracy < 1, 0 < margin < 0.5, 0 <= icc < 1, "
                         "trials-per-participant >= 1, 0 < power < 1, 0 < alpha < 0.5")
    plan = stats.power_plan(args.trials_per_participant, args.icc, margin=args.margin, alpha=args.alpha,
                            target_power=args.power, detect_accuracy=args.accuracy)
    m = args.trials_per_participant
    print(f"α = {args.alpha}, power {args.power:.0%}, {m} trials per participant, ICC {args.icc} "
          f"(design effect {plan.design_effect:.2f})")
    def needed(trials, people):
        return (f"{trials} independent trials = {people} participants x {m}" if trials
                else "not reachable within 200,000 trials")

    print(f"  detect accuracy {args.accuracy:.1%} vs 50% (exact binomial): "
          f"{needed(plan.trials_to_detect, plan.participants_to_detect)}")
    print(f"  show equivalence within 50% ± {args.margin:.1%} (exact TOST, truth 50%): "
          f"{needed(plan.trials_for_equivalence, plan.participants_for_equivalence)}")
    if args.participants:
        power = stats.power_clustered(args.participants, m, args.accuracy, args.icc, alpha=args.alpha)
        print(f"  {args.participants} participants x {m}: power {power:.2f} to detect {args.accuracy:.1%}")
    if args.observed:
        k, n = args.observed
        lo, hi = stats.clopper_pearson_interval(k, n)
        lo90, hi90 = stats.clopper_pearson_interval(k, n, 0.90)
        print(f"  observed {k}/{n} = {k / n:.1%}: exact 95% CI {lo:.1%}–{hi:.1%}, binomial p = "
              f"{stats.binomial_test(k, n):.3f}; TOST ±{args.margin:.0%} p = {stats.tost_binomial(k, n, args.margin):.3f} "
              f"(90% CI {lo90:.1%}–{hi90:.1%}); power of {n} independent trials to detect {args.accuracy:.1%}: "
              f"{stats.power_binomial(n, args.accuracy, alpha=args.alpha):.2f}")
    return 0


def cmd_small(args) -> int:
    from .config import design_text_warnings
    from .study import Study
    study = Study(args.study_dir, args.db)
    if args.command == "check":
        problems = study.images.verify_all()
        for problem in problems:
            print(problem)
        for warning in study.manifest.warnings + design_text_warnings(study.config):
            print(f"warning: {warning}")
        print(f"{len(study.manifest.images)} images, {len(problems)} problems; database {study.store.counts()}")
        return 1 if problems else 0
    if args.command in ("open", "close"):
        study.store.set_open(args.command == "open")
        print(f"study is now {'open' if study.store.is_open() else 'closed'} to new participants")
        return 0
    deleted = study.store.withdraw_by_code(args.code)
    print("deleted the participant's answers" if deleted else "no participant has that deletion code")
    return 0 if deleted else 1


def main(argv=None) -> int:
    from .config import ConfigError
    from .manifest import ManifestError
    args = build_parser().parse_args(argv)
    handlers = {"init": cmd_init, "serve": cmd_serve, "stats": cmd_stats, "export": cmd_export, "power": cmd_power}
    try:
        return handlers.get(args.command, cmd_small)(args)
    except (ConfigError, ManifestError) as exc:
        print(f"study-app {args.command}: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        print(f"study-app {args.command}: database error: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
