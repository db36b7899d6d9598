"""`gan` command line: dataset, avatars, train, generate, truncation-grid, style-mix."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# (flag, config field, type, help). Each overrides one RunConfig field after the preset.
TRAIN_OVERRIDES = [
    ("--res", "resolution", int, "image resolution (power of two; default: the data's)"),
    ("--batch", "train.batch", int, "global minibatch"),
    ("--kimg", "train.total_kimg", float, "stop after this many thousand images"),
    ("--snap", "train.snapshot_kimg", float, "snapshot (checkpoint + sample grid) every this many kimg"),
    ("--log-kimg", "train.log_kimg", float, "one log.jsonl line every this many kimg"),
    ("--glr", "train.g_lr", float, "generator learning rate"),
    ("--dlr", "train.d_lr", float, "discriminator learning rate"),
    ("--gamma", "train.r1_gamma", float, "R1 weight (0 = off)"),
    ("--pl-weight", "train.pl_weight", float, "path-length regularisation weight (0 = off)"),
    ("--ema-kimg", "train.ema_kimg", float, "G_ema half-life in kimg"),
    ("--style-mixing", "train.style_mixing", float, "style-mixing probability"),
    ("--seed", "train.seed", int, "random seed"),
    ("--mapping", "G.mapping", str, "standard | per-res (seed 002's variant 4: a style per resolution)"),
    ("--map-depth", "G.mapping_layers", int, "mapping network depth"),
    ("--z-dim", "G.z_dim", int, "latent size"),
    ("--w-dim", "G.w_dim", int, "intermediate latent size"),
    ("--cbase", "G.channel_base", int, "generator channel base"),
    ("--cmax", "G.channel_max", int, "generator max channels"),
    ("--d-cbase", "resnet.channel_base", int, "ResNet D channel base"),
    ("--d-cmax", "resnet.channel_max", int, "ResNet D max channels"),
    ("--mbstd-group", "resnet.mbstd_group", int, "ResNet D minibatch-std group size"),
    ("--vit-dim", "vit.dim", int, "ViT D token width"),
    ("--vit-depth", "vit.depth", int, "ViT D blocks"),
    ("--vit-heads", "vit.heads", int, "ViT D attention heads"),
    ("--vit-patch", "vit.patch", int, "ViT D patch stride in px (0 = res/8)"),
    ("--vit-extend", "vit.extend", int, "ViT D patch overlap per side in px (-1 = patch/4)"),
    ("--aug-p", "augment.p", float, "initial augmentation probability (fixed if --aug fixed)"),
    ("--target", "augment.target", float, "ADA r_t target"),
    ("--ada-kimg", "augment.ada_kimg", float, "ADA speed: p can move by 1 per this many kimg"),
]


def parse_seeds(spec: str) -> list[int]:
    """'0-999', '1,5,7' or a mix like '0-3,10'."""
    seeds = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                a, b = part.split("-", 1)
                seeds.extend(range(int(a), int(b) + 1))
            else:
                seeds.append(int(part))
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"bad seed list {spec!r}; use e.g. 0-99 or 1,5,7") from None
    if not seeds:
        raise argparse.ArgumentTypeError("empty seed list")
    return seeds


def parse_floats(spec: str) -> list[float]:
    try:
        return [float(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad number list {spec!r}; use e.g. 1,0.7,0.5") from None


def _set_field(cfg, dotted: str, value) -> None:
    obj = cfg
    *parents, last = dotted.split(".")
    for name in parents:
        obj = getattr(obj, name)
    if not hasattr(obj, last):
        raise SystemExit(f"gan train: unknown config field {dotted!r}")
    setattr(obj, last, value)


def _overrides(args) -> dict:
    """Config fields the user set explicitly (flags and --set KEY=VALUE)."""
    out = {}
    for flag, field, _, _ in TRAIN_OVERRIDES:
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            out[field] = value
    if args.disc is not None:
        out["disc"] = args.disc
    if args.aug is not None:
        out["augment.ada"] = args.aug == "ada"
        if args.aug == "none":
            out["augment.p"] = 0.0
    if args.fp32:
        out["train.mixed_precision"] = False
    if args.data is not None:
        out["data"] = str(Path(args.data).resolve())
    if args.transfer is not None:
        out["transfer"] = str(Path(args.transfer).resolve())
    for item in args.set or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise SystemExit(f"gan train: --set expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def build_train_config(args):
    """New run: preset + overrides. Resume: the run's config.json, which overrides may not change."""
    from .api import read_run_config
    from .config import RunConfig, preset
    from .dataset import load_image_folder
    from .train import config_differences

    overrides = _overrides(args)
    if args.resume:
        saved = RunConfig.from_dict(read_run_config(args.resume))
        cfg = RunConfig.from_dict(saved.to_dict())
        for key, value in overrides.items():
            _set_field(cfg, key, value)
        diffs = config_differences(saved.to_dict(), cfg.to_dict())
        if diffs:
            raise SystemExit(f"gan train: --resume {args.resume} cannot change the run's configuration "
                             f"(only --kimg may differ): {'; '.join(diffs)}. Start a new run with --out, "
                             "or use --transfer to start from its weights.")
        return cfg.validate()
    if args.data is None or args.out is None:
        raise SystemExit("gan train: --data and --out are required (or --resume RUN_DIR)")
    res = overrides.get("resolution")
    if res is None:  # take the resolution from the data
        res = load_image_folder(args.data).resolution
    name = args.preset or ("gpu" if _wants_cuda(args.device) else "cpu-tiny")
    cfg = preset(name, res, overrides.get("disc", "resnet"))
    if args.transfer is not None:  # SG2ADA: faster ADA and no EMA ramp-up when starting from weights
        cfg.augment.ada_kimg, cfg.train.ema_rampup = 100.0, None
    for key, value in overrides.items():
        _set_field(cfg, key, value)
    try:
        return cfg.validate()
    except ValueError as exc:
        raise SystemExit(f"gan train: {exc}") from None


def _wants_cuda(device: str) -> bool:
    import torch

    return device == "cuda" or (device == "auto" and torch.cuda.is_available())


def cmd_train(args) -> int:
    from .train import TrainingDiverged, train

    cfg = build_train_config(args)
    out = Path(args.resume or args.out)
    try:
        train(cfg, out, resume=bool(args.resume), device=args.device, progress=not args.no_progress,
              threads=args.threads)
    except TrainingDiverged as exc:
        print(f"gan train: {exc}", file=sys.stderr)
        return 1
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        print(f"gan train: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_dataset(args) -> int:
    from .dataset import prepare_dataset

    summary = prepare_dataset(args.src, args.out, args.res, mode=args.mode, min_size=args.min_size,
                              progress=True)
    _print_dataset_summary(summary, args.out)
    return 0


def _print_dataset_summary(summary: dict, out) -> None:
    print(f"kept {summary['count']} images at {summary['resolution']}x{summary['resolution']} in {out}; "
          f"rejected {len(summary['rejected'])}, exact duplicates {len(summary['duplicates'])}")
    for r in summary["rejected"]:
        print(f"  rejected {r['source']}: {r['reason']}")
    for d in summary["duplicates"]:
        print(f"  duplicate {d['source']} (same pixels as {d['duplicate_of']})")
    print(f"details: {Path(out) / 'dataset.json'}")


def cmd_avatars(args) -> int:
    from .dataset import write_avatar_dataset

    summary = write_avatar_dataset(args.out, args.n, res=args.res, seed=args.seed, progress=True)
    _print_dataset_summary(summary, args.out)
    return 0


def cmd_generate(args) -> int:
    import io

    from PIL import Image

    from .api import load_generator
    from harness_base.atomic import write_bytes_atomic

    gen = load_generator(args.ckpt, device=args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = iter(args.seeds)
    for batch in gen.images(seeds=args.seeds, psi=args.psi, noise_mode=args.noise_mode,
                            batch_size=args.batch, progress=True):
        for img in batch:
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG")
            write_bytes_atomic(out / f"seed{next(seeds):04d}.png", buf.getvalue())
    print(f"wrote {len(args.seeds)} images to {out} (psi {args.psi}, {gen.path.name})")
    return 0


def cmd_truncation_grid(args) -> int:
    from .api import load_generator
    from .sample import save_png, truncation_grid

    gen = load_generator(args.ckpt, device=args.device)
    save_png(truncation_grid(gen.G, args.seeds, args.psi, noise_mode=args.noise_mode), args.out)
    print(f"wrote {args.out}: rows = seeds {args.seeds}, columns = psi {args.psi}")
    return 0


def cmd_style_mix(args) -> int:
    from .api import load_generator
    from .sample import parse_style_layers, save_png, style_mix_grid

    gen = load_generator(args.ckpt, device=args.device)
    layers = parse_style_layers(args.styles, gen.resolution)
    save_png(style_mix_grid(gen.G, args.rows, args.cols, layers, psi=args.psi, noise_mode=args.noise_mode),
             args.out)
    print(f"wrote {args.out}: rows {args.rows} take style layers {layers} from columns {args.cols}")
    return 0


def _sampling_args(p, out_default: str) -> None:
    p.add_argument("ckpt", help="checkpoint file or run dir (latest snapshot)")
    p.add_argument("--out", default=out_default)
    p.add_argument("--noise-mode", default="const", choices=["const", "random", "none"])
    p.add_argument("--device", default="cpu")


def build_parser() -> argparse.ArgumentParser:
    from .config import PRESETS

    parser = argparse.ArgumentParser(prog="gan", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("dataset", help="turn a folder or zip of images into a training set")
    p.add_argument("src", help="folder (searched recursively) or zip file")
    p.add_argument("out", help="new, empty output folder")
    p.add_argument("--res", type=int, required=True, help="output resolution (power of two)")
    p.add_argument("--mode", choices=["crop", "pad"], default="crop",
                   help="crop: centre square crop (default); pad: black bars, nothing cut off")
    p.add_argument("--min-size", type=int, default=None,
                   help="reject images smaller than this (short side for crop, long side for pad; default --res)")
    p.set_defaults(func=cmd_dataset)

    p = sub.add_parser("avatars", help="build the built-in cartoon-face demo data set")
    p.add_argument("out")
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--res", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_avatars)

    p = sub.add_parser("train", help="train a StyleGAN2 generator against a ResNet or ViT discriminator")
    p.add_argument("--data", help="training image folder (from `gan dataset` or `gan avatars`)")
    p.add_argument("--out", help="new run dir")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue this run from its latest snapshot")
    p.add_argument("--preset", choices=PRESETS, default=None,
                   help="starting configuration (default: gpu with CUDA, else cpu-tiny)")
    p.add_argument("--disc", choices=["resnet", "vit"])
    p.add_argument("--aug", choices=["ada", "fixed", "none"], help="ada (default): adaptive p")
    p.add_argument("--fp32", action="store_true", help="no mixed precision on CUDA (CPU is always fp32)")
    p.add_argument("--transfer", metavar="CKPT", help="initialise from another run's checkpoint")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: half the cores)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any config field, e.g. --set train.pl_decay=0.02 (repeatable)")
    for flag, _, typ, help_text in TRAIN_OVERRIDES:
        p.add_argument(flag, type=typ, default=None, help=help_text)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("generate", help="write one PNG per seed")
    _sampling_args(p, "generated")
    p.add_argument("--seeds", type=parse_seeds, required=True)
    p.add_argument("--psi", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=32)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("truncation-grid", help="rows = seeds, columns = psi")
    _sampling_args(p, "truncation-grid.png")
    p.add_argument("--seeds", type=parse_seeds, default=[0, 1, 2, 3])
    p.add_argument("--psi", type=parse_floats, default=[1.2, 1, 0.7, 0.5, 0, -0.5, -1])
    p.set_defaults(func=cmd_truncation_grid)

    p = sub.add_parser("style-mix", help="rows take the chosen style layers from the columns")
    _sampling_args(p, "style-mix.png")
    p.add_argument("--rows", type=parse_seeds, required=True, help="row-source seeds")
    p.add_argument("--cols", type=parse_seeds, required=True, help="column-source seeds")
    p.add_argument("--styles", default="coarse", help="coarse | middle | fine | indices like 0-3")
    p.add_argument("--psi", type=float, default=1.0)
    p.set_defaults(func=cmd_style_mix)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"gan {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
