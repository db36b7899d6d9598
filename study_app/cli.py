"""`study-app`: create, host, and analyse randomised real-vs-fake studies: paired (2AFC, which of two
images is real?), single-image (HYPE∞ style, is this image real or generated?) or pairwise (which of
two generated images, from two conditions, looks more real?).

  study-app init STUDY_DIR --real DIR --fake DIR [--fake DIR2 ...] [--label NAME ...] [--design single]
  study-app serve STUDY_DIR [--port 8501]       # participants: http://HOST:PORT/   admin: /admin
  study-app serve DIR1 DIR2 ...                 # several studies: /?study=NAME and /admin?study=NAME
  study-app stats STUDY_DIR [--json]
  study-app export STUDY_DIR --out trials.csv
  study-app power --accuracy 0.55 --trials-per-participant 20 [--observed 153 312]
  study-app power --design pairwise --beats 0.6 --conditions 3 --trials-per-participant 10
  study-app check | open | close STUDY_DIR;  study-app withdraw STUDY_DIR DELETION-CODE

Exit status: 0 done, 1 a problem with the study, its images or its database (the message says which
and what to do), 2 a wrong command line, 130 interrupted. --debug shows the traceback of a failure.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from harness_base import cli
from harness_base.errors import HarnessError, UsageError

PROG = "study-app"
APP_PATH = Path(__file__).with_name("app.py")
SERVER_STOP_TIMEOUT_S = 10


port_number = cli.int_in(1, 65535)


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="URL", help="SQLAlchemy URL of the response database "
                   "(default: the config's storage.database_url, else STUDY_DIR/responses.sqlite)")


def _print_json(data) -> None:
    print(json.dumps(data, indent=1, default=str, allow_nan=False))


def build_parser() -> argparse.ArgumentParser:
    from .config import Analysis, Design

    design, analysis = Design(), Analysis()
    parser, add_command = cli.new_parser(PROG, __doc__)

    p = add_command("init", "create a study dir: editable config + image manifest with hashes")
    p.add_argument("study_dir", type=Path)
    p.add_argument("--real", required=True, type=Path, help="folder of real images")
    p.add_argument("--fake", required=True, action="append", type=Path, metavar="DIR",
                   help="folder of generated images; repeat for several generators or ψ values")
    p.add_argument("--label", action="append", default=[], metavar="NAME",
                   help="condition label for each --fake, in order (default: the folder name)")
    p.add_argument("--design", choices=["paired", "single", "pairwise"],
                   help="paired (the default): a real and a generated image side by side, which is real? "
                        "single: one image per trial, real or generated? (HYPE∞ style). pairwise: two generated "
                        "images of two conditions, which looks more real? (needs two or more --fake)")
    p.add_argument("--title", help="the study's title, shown to participants (default: a generic title)")
    p.add_argument("--trials", type=cli.positive_int, dest="trials_per_condition",
                   help="main trials (pairs, or single images) per condition and participant "
                        f"(default: {design.trials_per_condition})")
    p.add_argument("--practice", type=cli.nonnegative_int, dest="practice_trials",
                   help=f"practice trials with feedback, never analysed (default: {design.practice_trials})")
    p.add_argument("--attention", type=cli.nonnegative_int, dest="attention_checks",
                   help=f"attention checks (a scrambled image) per participant (default: {design.attention_checks})")
    p.add_argument("--assignment", choices=["within", "between"],
                   help=f"within: everyone sees every condition; between: one condition each "
                        f"(default: {design.assignment})")
    p.add_argument("--seed", type=cli.nonnegative_int,
                   help="study seed of the image rotation and trial orders (default: a random one, kept in study.toml)")
    p.add_argument("--completion-code", dest="completion_code",
                   help="code shown at the end, e.g. Prolific's (default: a random one)")
    p.add_argument("--redirect-url", dest="redirect_url", help="where the last page leads, e.g. Prolific's "
                   "completion URL (default: none)")
    p.add_argument("--margin", type=cli.float_in(0, 0.5, low_open=True, high_open=True), dest="equivalence_margin",
                   help=f"equivalence margin, e.g. 0.05 for ±5 points (default: {analysis.equivalence_margin})")
    p.add_argument("--store-platform-ids", action="store_true", default=None, dest="store_platform_ids",
                   help="store PROLIFIC_PID etc. from the participant's URL (off by default)")
    p.add_argument("--no-copy", action="store_true", help="reference the images in place instead of copying them")
    p.add_argument("--force", action="store_true", help="replace an existing study config and manifest")
    cli.add_json(p, "what was created")
    p.set_defaults(func=cmd_init)

    p = add_command("serve", "host the study (or several, each with its own database) with Streamlit")
    p.add_argument("study_dirs", type=Path, nargs="+", metavar="STUDY_DIR",
                   help="one study dir; with several, each is addressed as ?study=NAME (its directory's basename)")
    p.add_argument("--port", type=port_number, default=8501, help="port to listen on")
    p.add_argument("--address", default="127.0.0.1", help="interface to listen on (0.0.0.0 for all)")
    _add_db(p)
    p.add_argument("--skip-image-check", action="store_true", help="do not re-hash every image before starting")
    p.set_defaults(func=cmd_serve,
                   interrupt_note="The server has stopped; every answer was stored when it was given.")

    p = add_command("stats", "analyse the responses")
    p.add_argument("study_dir", type=Path)
    _add_db(p)
    p.add_argument("--fingerprint", metavar="FP",
                   help="analyse only the participants of this image manifest (its fingerprint, or a unique prefix); "
                        "needed when some participants answered under another manifest (default: the current one, "
                        "and a refusal if others answered)")
    cli.add_json(p, "the full report")
    p.set_defaults(func=cmd_stats)

    p = add_command("export", "write one CSV row per trial, plus a codebook")
    p.add_argument("study_dir", type=Path)
    _add_db(p)
    p.add_argument("--out", type=Path, help="CSV file (default: STUDY_DIR/export/trials.csv)")
    p.add_argument("--include-platform-ids", action="store_true",
                   help="add the recruitment-platform ID column (pseudonymous personal data)")
    cli.add_json(p, "the number of rows and the files written")
    p.set_defaults(func=cmd_export)

    p = add_command("power", "power and sample size (per-trial accuracy, or pairwise comparisons), with clustering")
    p.add_argument("--design", choices=["paired", "single", "pairwise"], default="paired",
                   help="paired and single: accuracy against 50%%; pairwise: one pair's head-to-head test")
    p.add_argument("--accuracy", type=cli.float_in(0, 1, low_open=True, high_open=True), default=0.55,
                   help="true accuracy to detect (paired, single)")
    p.add_argument("--beats", type=cli.float_in(0.5, 1, low_open=True, high_open=True), default=0.6,
                   help="pairwise: true probability that the better condition's image is chosen")
    p.add_argument("--conditions", type=cli.int_at_least(2), default=2,
                   help="pairwise: number of conditions (the test of one pair is corrected for all pairs)")
    p.add_argument("--margin", type=cli.float_in(0, 0.5, low_open=True, high_open=True), default=0.05,
                   help="equivalence margin around 50%%")
    p.add_argument("--trials-per-participant", type=cli.positive_int, default=20,
                   help="main trials each participant answers (pairwise: comparisons of each pair of conditions)")
    p.add_argument("--participants", type=cli.positive_int, help="also report the power of this many participants")
    p.add_argument("--icc", type=cli.float_in(0, 1, high_open=True), default=analysis.assumed_icc,
                   help="within-participant correlation (0.027: the median in the released data of Stein et al. 2023)")
    p.add_argument("--power", type=cli.float_in(0, 1, low_open=True, high_open=True), default=0.8,
                   help="target power")
    p.add_argument("--alpha", type=cli.float_in(0, 0.5, low_open=True, high_open=True), default=0.05,
                   help="significance level")
    p.add_argument("--observed", type=cli.nonnegative_int, nargs=2, metavar=("CORRECT", "TRIALS"),
                   help="also analyse an observed result, e.g. --observed 153 312")
    cli.add_json(p, "the plan")
    p.set_defaults(func=cmd_power)

    for name, text in (("check", "verify the config, the manifest and every image hash"),
                       ("open", "open the study to new participants"), ("close", "close it to new participants")):
        p = add_command(name, text)
        p.add_argument("study_dir", type=Path)
        _add_db(p)
        cli.add_json(p, "the result")
        p.set_defaults(func=cmd_check if name == "check" else cmd_open_close)

    p = add_command("withdraw", "delete a participant's answers by their deletion code")
    p.add_argument("study_dir", type=Path)
    p.add_argument("code")
    _add_db(p)
    cli.add_json(p, "whether answers were deleted")
    p.set_defaults(func=cmd_withdraw)
    return parser


def cmd_init(args) -> int:
    from .config import load_config
    from .manifest import load_manifest
    from .study import init_study, serve_command
    if args.label and len(args.label) != len(args.fake):
        raise UsageError(f"{len(args.label)} --label for {len(args.fake)} --fake; give one per --fake or none")
    labels = args.label or [folder.name for folder in args.fake]
    overrides = {k: v for k, v in vars(args).items() if v is not None and k in (
        "design", "title", "trials_per_condition", "practice_trials", "attention_checks", "assignment", "seed",
        "completion_code", "redirect_url", "equivalence_margin", "store_platform_ids")}
    path = init_study(args.study_dir, args.real, list(zip(labels, args.fake)), copy_images=not args.no_copy,
                      force=args.force, **overrides)
    manifest = load_manifest(path)
    kind = load_config(path).design.kind
    serve = serve_command(path)
    if args.json:
        _print_json({"study_dir": str(path), "design": kind, "real_images": len(manifest.ids("real")),
                     "fake_images": {label: len(manifest.ids("fake", label)) for label in labels},
                     "attention_images": len(manifest.ids("attention")), "warnings": manifest.warnings,
                     "serve_command": serve})
        return 0
    print(f"Created study in {path}" + (" (single-image design)" if kind == "single" else ""))
    print(f"  {len(manifest.ids('real'))} real images; " + "; ".join(
        f"{len(manifest.ids('fake', label))} fakes for '{label}'" for label in labels)
        + f"; {len(manifest.ids('attention'))} attention-check images")
    for warning in manifest.warnings:
        print(f"  warning: {warning}")
    print(f"Edit {path / 'study.toml'} (texts, consent, contact, trial counts), then host it with:")
    print(f"  STUDY_ADMIN_PASSWORD=... {serve}")
    return 0


def _run_server(command: list[str], env: dict) -> int:
    """Run Streamlit until it exits. On Ctrl-C (which it receives too) give it time to shut down
    before killing it, then let the interrupt reach the convention's handler."""
    import subprocess

    child = subprocess.Popen(command, env=env)
    try:
        return child.wait()
    except KeyboardInterrupt:
        try:
            child.wait(timeout=SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        raise


def cmd_serve(args) -> int:
    from urllib.parse import urlencode

    from .config import ADMIN_PASSWORD_ENV, MIN_ADMIN_PASSWORD_LENGTH, ConfigError, design_text_warnings
    from .study import DB_URL_ENV, STUDY_DIR_ENV, Study, check_served_studies
    password = os.environ.get(ADMIN_PASSWORD_ENV)
    if password is not None and len(password) < MIN_ADMIN_PASSWORD_LENGTH:
        raise HarnessError(f"{ADMIN_PASSWORD_ENV} is {len(password)} characters long; the admin page needs at least "
                           f"{MIN_ADMIN_PASSWORD_LENGTH} (it shows every answer and can delete data). Choose a longer "
                           f"one, e.g. four random words, or unset {ADMIN_PASSWORD_ENV} to serve without the admin page.")
    # Names, --db and shared databases are checked from the configs alone, before any database is created.
    studies = check_served_studies(args.study_dirs, args.db)
    several = len(studies) > 1
    if several and any(os.pathsep in str(path) for path in studies.values()):
        raise ConfigError(f"a study path contains '{os.pathsep}', which separates the paths in {STUDY_DIR_ENV}: "
                          "move or rename that directory")
    for name, path in studies.items():
        prefix = f"{PROG} serve: {name}: " if several else f"{PROG} serve: "
        study = Study(path, args.db)  # fails here, with a clear message, not in a participant's browser
        for warning in design_text_warnings(study.config):
            print(f"{prefix}warning: {warning}", file=sys.stderr)
        mismatch = study.fingerprint_problem()
        if mismatch:   # those participants are told the study changed; new ones can take part
            print(f"{prefix}warning: {mismatch}", file=sys.stderr)
        if not args.skip_image_check:
            problems = study.images.verify_all()
            if problems:
                for problem in problems[:20]:
                    print(f"{prefix}{problem}", file=sys.stderr)
                return 1
        study.store.dispose()
    # One dir is passed as it is; several are joined with os.pathsep (views/common.py splits them).
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
    if not password:
        print(f"(the admin page is disabled until {ADMIN_PASSWORD_ENV} is set)", flush=True)
    elif args.address not in ("127.0.0.1", "localhost", "::1"):
        print("(put a TLS proxy in front of this server: without it the admin password and the answers cross "
              "the network unencrypted; see the README)", flush=True)
    command = [sys.executable, "-m", "streamlit", "run", str(APP_PATH),
               "--server.port", str(args.port), "--server.address", args.address, "--server.headless", "true",
               "--server.runOnSave", "false", "--server.fileWatcherType", "none",
               "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
               "--client.showErrorDetails", "false", "--", *map(str, studies.values())]
    return _run_server(command, env)


def cmd_stats(args) -> int:
    from .stats import format_report
    from .study import Study
    report = Study(args.study_dir, args.db).analyse(fingerprint=args.fingerprint)
    if args.json:
        _print_json(report.to_dict())
    else:
        print(format_report(report))
    return 0


def cmd_export(args) -> int:
    from harness_base.atomic import write_text_atomic

    from . import export
    from .study import Study
    study = Study(args.study_dir, args.db)
    out = args.out or Path(args.study_dir) / "export" / "trials.csv"
    records = study.export_records(args.include_platform_ids)
    write_text_atomic(out, export.to_csv(records, args.include_platform_ids, design=study.config.design.kind))
    codebook = out.with_name(out.stem + "_codebook.csv")
    write_text_atomic(codebook, study.codebook_csv(args.include_platform_ids))
    study.store.mark_exported()
    if args.json:
        _print_json({"rows": len(records), "csv": str(out), "codebook": str(codebook)})
    else:
        print(f"{len(records)} trial rows -> {out}\ncodebook -> {codebook}")
    return 0


def cmd_power(args) -> int:
    from . import stats
    if args.design == "pairwise":
        return _power_pairwise(args)
    k, n = args.observed or (0, 1)
    if n < 1 or k > n:
        raise UsageError(f"--observed {k} {n}: CORRECT and TRIALS need 0 <= CORRECT <= TRIALS and TRIALS >= 1")
    plan = stats.power_plan(args.trials_per_participant, args.icc, margin=args.margin, alpha=args.alpha,
                            target_power=args.power, detect_accuracy=args.accuracy)
    m = args.trials_per_participant
    power = (stats.power_clustered(args.participants, m, args.accuracy, args.icc, alpha=args.alpha)
             if args.participants else None)
    observed = None
    if args.observed:
        observed = {"correct": k, "trials": n, "accuracy": k / n, "ci_exact": stats.clopper_pearson_interval(k, n),
                    "ci_exact_90": stats.clopper_pearson_interval(k, n, 0.90), "p_value": stats.binomial_test(k, n),
                    "tost_p": stats.tost_binomial(k, n, args.margin),
                    "power_independent": stats.power_binomial(n, args.accuracy, alpha=args.alpha)}
    if args.json:
        _print_json({"plan": asdict(plan), "participants": args.participants, "power_of_participants": power,
                     "observed": observed})
        return 0
    print(f"α = {args.alpha}, power {args.power:.0%}, {m} trials per participant, ICC {args.icc} "
          f"(design effect {plan.design_effect:.2f})")

    def needed(trials, people):
        return (f"{trials} independent trials = {people} participants x {m}" if trials
                else "not reachable within 200,000 trials")

    print(f"  detect accuracy {args.accuracy:.1%} vs 50% (exact binomial): "
          f"{needed(plan.trials_to_detect, plan.participants_to_detect)}")
    print(f"  show equivalence within 50% ± {args.margin:.1%} (exact TOST, truth 50%): "
          f"{needed(plan.trials_for_equivalence, plan.participants_for_equivalence)}")
    if power is not None:
        print(f"  {args.participants} participants x {m}: power {power:.2f} to detect {args.accuracy:.1%}")
    if observed:
        (lo, hi), (lo90, hi90) = observed["ci_exact"], observed["ci_exact_90"]
        print(f"  observed {k}/{n} = {k / n:.1%}: exact 95% CI {lo:.1%}–{hi:.1%}, binomial p = "
              f"{observed['p_value']:.3f}; TOST ±{args.margin:.0%} p = {observed['tost_p']:.3f} "
              f"(90% CI {lo90:.1%}–{hi90:.1%}); power of {n} independent trials to detect {args.accuracy:.1%}: "
              f"{observed['power_independent']:.2f}")
    return 0


def _power_pairwise(args) -> int:
    from . import stats
    plan = stats.pairwise_power_plan(args.conditions, args.trials_per_participant, args.beats, args.icc,
                                     alpha=args.alpha, target_power=args.power)
    if args.json:
        _print_json({"plan": asdict(plan)})
        return 0
    print(f"pairwise design: {plan.conditions} conditions = {plan.pairs} pairs, {plan.comparisons_per_pair} comparisons "
          f"of each pair per participant, ICC {plan.icc} (design effect {plan.design_effect:.2f})")
    if plan.comparisons_needed:
        print(f"  detect P(beats) = {plan.p_beats:.0%} for one pair (exact binomial test at α = {plan.alpha:g}/"
              f"{plan.pairs} = {plan.alpha_per_pair:.4g}, power {plan.target_power:.0%}): {plan.comparisons_needed} "
              f"independent comparisons = {plan.participants_needed} participants x {plan.comparisons_per_pair}")
    else:
        print(f"  detect P(beats) = {plan.p_beats:.0%}: not reachable within 200,000 comparisons")
    return 0


def cmd_check(args) -> int:
    from .config import design_text_warnings
    from .study import Study
    study = Study(args.study_dir, args.db)
    problems = study.images.verify_all()
    mismatch = study.fingerprint_problem()
    if mismatch:
        problems.append(mismatch)
    warnings = study.manifest.warnings + design_text_warnings(study.config)
    counts = study.store.counts()
    if args.json:
        _print_json({"images": len(study.manifest.images), "problems": problems, "warnings": warnings,
                     "database": counts, "fingerprints": study.fingerprint_groups(),
                     "manifest_fingerprint": study.manifest_fingerprint})
    else:
        for problem in problems:
            print(problem)
        for warning in warnings:
            print(f"warning: {warning}")
        print(f"{len(study.manifest.images)} images, {len(problems)} problems; database {counts}")
    return 1 if problems else 0


def cmd_open_close(args) -> int:
    from .study import Study
    study = Study(args.study_dir, args.db)
    study.store.set_open(args.command == "open")
    is_open = study.store.is_open()
    if args.json:
        _print_json({"open": is_open})
    else:
        print(f"study is now {'open' if is_open else 'closed'} to new participants")
    return 0


WITHDRAW_WORDS = {
    "deleted": "deleted the participant's answers",
    "already_withdrawn": "that deletion code was already used: the participant's answers were deleted before "
                         "(nothing is stored under it now)",
    "unknown": "no participant has ever had that deletion code: check it for typing mistakes",
}


def cmd_withdraw(args) -> int:
    from .study import Study
    outcome = Study(args.study_dir, args.db).store.withdraw_by_code(args.code)
    if args.json:
        _print_json({"deleted": bool(outcome), "status": outcome.status})
    else:
        print(WITHDRAW_WORDS[outcome.status])
    return 0 if outcome.status != "unknown" else 1


def _database_error(exc: BaseException) -> HarnessError | None:
    """SQLAlchemy's errors as one paragraph naming the fix; None for any other exception. SQLAlchemy
    is looked up only if it was loaded, so that this handler imports nothing."""
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy_exc is None or not isinstance(exc, sqlalchemy_exc.SQLAlchemyError):
        return None
    detail = " ".join(str(getattr(exc, "orig", None) or exc).split())
    return HarnessError(f"the response database cannot be used ({exc.__class__.__name__}: {detail}). Check --db or "
                        "storage.database_url in study.toml, and that the database server is running.")


def _dispatch(args: argparse.Namespace) -> int | None:
    try:
        return args.func(args)
    except Exception as exc:
        database_error = _database_error(exc)
        if database_error is None:
            raise
        raise database_error from exc


def main(argv=None) -> int:
    return cli.run(build_parser(), argv, prog=PROG, dispatch=_dispatch)


if __name__ == "__main__":
    sys.exit(main())
