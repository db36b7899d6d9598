"""`gan`: build training sets, train a StyleGAN2 generator against a ResNet or ViT discriminator,
and sample from a run (images per seed, truncation grids, style mixing).

Exit codes follow harness_base/cli.py: 0 done, 1 a problem with the input or the machine (one
paragraph saying what and how to fix it), 2 a bad command line, 130 Ctrl-C (`gan train` keeps its
last complete snapshot; `gan train --resume RUN` continues from it).
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from pathlib import Path

from harness_base import cli
from harness_base.errors import UsageError


def power_of_two(text: str) -> int:
    value = cli.int_at_least(8)(text)
    if value & (value - 1):
        raise argparse.ArgumentTypeError(f"{value} is not a power of two >= 8 (use 16, 32, 64, 128, 256, ...)")
    return value


power_of_two.__name__ = "power of two >= 8"
aug_probability = cli.float_in(0, 1, high_open=True)

# (flag, config field, type, help). Each overrides one RunConfig field after the preset.
TRAIN_OVERRIDES = [
    ("--res", "resolution", power_of_two, "image resolution (power of two; default: the data's)"),
    ("--batch", "train.batch", cli.positive_int, "global minibatch"),
    ("--kimg", "train.total_kimg", cli.positive_float, "stop after this many thousand images"),
    ("--snap", "train.snapshot_kimg", cli.positive_float, "snapshot (checkpoint + sample grid) every this many kimg"),
    ("--log-kimg", "train.log_kimg", cli.positive_float, "one log.jsonl line every this many kimg"),
    ("--glr", "train.g_lr", cli.positive_float, "generator learning rate"),
    ("--dlr", "train.d_lr", cli.positive_float, "discriminator learning rate"),
    ("--gamma", "train.r1_gamma", cli.nonnegative_float, "R1 weight (0 = off)"),
    ("--pl-weight", "train.pl_weight", cli.nonnegative_float, "path-length regularisation weight (0 = off)"),
    ("--ema-kimg", "train.ema_kimg", cli.nonnegative_float, "G_ema half-life in kimg"),
    ("--style-mixing", "train.style_mixing", cli.probability, "style-mixing probability"),
    ("--seed", "train.seed", cli.nonnegative_int, "random seed"),
    ("--precision", "train.precision", None,
     "reduced type of the highest-resolution blocks: auto = bf16 on GPUs with native bf16, else fp16 with "
     "loss scaling; fp32 on the CPU (gan/precision.py)"),
    ("--g-reduced-res", "G.num_reduced_res", cli.nonnegative_int,
     "G: this many highest resolutions in reduced precision (StyleGAN2-ADA num_fp16_res)"),
    ("--d-reduced-res", "resnet.num_reduced_res", cli.nonnegative_int,
     "ResNet D: this many highest resolutions in reduced precision"),
    ("--mapping", "G.mapping", None, "standard: the StyleGAN2 MLP; per-res: one style per resolution level, each "
     "level a dense layer on the previous level's style and the shared trunk"),
    ("--map-depth", "G.mapping_layers", cli.positive_int, "mapping network depth"),
    ("--z-dim", "G.z_dim", cli.positive_int, "latent size"),
    ("--w-dim", "G.w_dim", cli.positive_int, "intermediate latent size"),
    ("--cbase", "G.channel_base", cli.positive_int, "generator channel base"),
    ("--cmax", "G.channel_max", cli.positive_int, "generator max channels"),
    ("--d-cbase", "resnet.channel_base", cli.positive_int, "ResNet D channel base"),
    ("--d-cmax", "resnet.channel_max", cli.positive_int, "ResNet D max channels"),
    ("--mbstd-group", "resnet.mbstd_group", cli.positive_int, "ResNet D minibatch-std group size"),
    ("--vit-dim", "vit.dim", cli.positive_int, "ViT D token width"),
    ("--vit-depth", "vit.depth", cli.positive_int, "ViT D blocks"),
    ("--vit-heads", "vit.heads", cli.positive_int, "ViT D attention heads"),
    ("--vit-patch", "vit.patch", cli.nonnegative_int, "ViT D patch stride in px (0 = res/16)"),
    ("--vit-extend", "vit.extend", cli.int_at_least(-1), "ViT D patch overlap per side in px (-1 = patch/4)"),
    ("--vit-mbstd-group", "vit.mbstd_group", cli.nonnegative_int, "ViT D minibatch-std group size (0 = off)"),
    ("--aug-p", "augment.p", aug_probability, "initial augmentation probability (fixed if --aug fixed)"),
    ("--target", "augment.target", cli.probability, "ADA r_t target"),
    ("--ada-kimg", "augment.ada_kimg", cli.positive_float, "ADA speed: p can move by 1 per this many kimg"),
]
# (flag, config field, help): switches that set a boolean field to True.
TRAIN_SWITCHES = [
    ("--fp32", "train.precision", "everything in fp32 (same as --precision fp32)"),
    ("--tf32", "train.tf32", "let fp32 matmuls and convolutions use TF32 on Ampere+ GPUs (StyleGAN2-ADA: off)"),
    ("--mirror", "train.mirror", "add each image's x-flip to the data, doubling it (StyleGAN2-ADA --mirror)"),
    ("--channels-last", "train.channels_last", "NHWC activations in the reduced-precision blocks (GPU speed lever)"),
    ("--fused-adam", "train.fused_adam", "torch's fused Adam step on CUDA (GPU speed lever)"),
]
SWITCH_VALUES = {"--fp32": "fp32"}


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def parse_seeds(spec: str) -> list[int]:
    """'0-999', '1,5,7' or a mix like '0-3,10'; seeds are whole numbers 0 .. 2^32-1."""
    seeds = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                a, b = (int(x) for x in part.split("-", 1))
                if b < a:
                    raise argparse.ArgumentTypeError(
                        f"{part!r} is a reversed range (it ends before it starts); write {b}-{a}")
                seeds.extend(range(a, b + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad seed list {spec!r}; use e.g. 0-99 or 1,5,7 "
                                             "(whole numbers >= 0)") from None
    if not seeds:
        raise argparse.ArgumentTypeError("empty seed list; use e.g. 0-99 or 1,5,7")
    bad = [s for s in seeds if not 0 <= s < 2 ** 32]
    if bad:
        raise argparse.ArgumentTypeError(f"seed {bad[0]} is out of range: seeds are whole numbers 0 .. 4294967295")
    return seeds


def _set_field(cfg, dotted: str, value) -> None:
    obj = cfg
    *parents, last = dotted.split(".")
    for name in parents:
        obj = getattr(obj, name, None)
        if obj is None:
            break
    if obj is None or not hasattr(obj, last):
        raise UsageError(f"gan train: unknown config field {dotted!r} (see gan/config.py for the fields)")
    setattr(obj, last, value)


def _overrides(args) -> dict:
    """Config fields the user set explicitly (flags and --set KEY=VALUE)."""
    out = {}
    for flag, field, _, _ in TRAIN_OVERRIDES:
        value = getattr(args, _dest(flag))
        if value is not None:
            out[field] = value
    for flag, field, _ in TRAIN_SWITCHES:
        if getattr(args, _dest(flag)):
            out[field] = SWITCH_VALUES.get(flag, True)
    if args.disc is not None:
        out["disc"] = args.disc
    if args.aug is not None:
        out["augment.ada"] = args.aug == "ada"
        if args.aug == "none":
            out["augment.p"] = 0.0
    if args.data is not None:
        out["data"] = str(Path(args.data).resolve())
    if args.transfer is not None:
        out["transfer"] = str(Path(args.transfer).resolve())
    for item in args.set or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise UsageError(f"gan train: --set expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def build_train_config(args):
    """New run: preset + overrides. Resume: the run's config.json, which overrides may not change
    (except --kimg, and --data for data that moved)."""
    from .api import read_run_config
    from .config import RunConfig, preset
    from .dataset import folder_resolution
    from .train import config_differences

    overrides = _overrides(args)
    if args.resume:
        saved = RunConfig.from_dict(read_run_config(args.resume))
        cfg = RunConfig.from_dict(saved.to_dict())
        for key, value in overrides.items():
            _set_field(cfg, key, value)
        diffs = config_differences(saved.to_dict(), cfg.to_dict())
        if diffs:
            raise UsageError(f"gan train: --resume {args.resume} cannot change the run's configuration "
                             f"(only --kimg, and --data for data that moved, may differ): {'; '.join(diffs)}. "
                             "Start a new run with --out, or use --transfer to start from its weights.")
        return _validated(cfg)
    if args.data is None or args.out is None:
        raise UsageError("gan train: --data and --out are required (or --resume RUN_DIR)")
    res = overrides.get("resolution")
    if res is None:  # take the resolution from the data (image headers only)
        res = folder_resolution(args.data)
    name = args.preset or ("gpu" if _resolved_device(args.device).type == "cuda" else "cpu-tiny")
    cfg = preset(name, res, overrides.get("disc", "resnet"))
    if args.transfer is not None:  # SG2ADA: faster ADA and no EMA ramp-up when starting from weights
        cfg.augment.ada_kimg, cfg.train.ema_rampup = 100.0, None
    for key, value in overrides.items():
        _set_field(cfg, key, value)
    return _validated(cfg)


def _validated(cfg):
    try:
        return cfg.validate()
    except ValueError as exc:
        raise UsageError(f"gan train: {exc}") from None


def _resolved_device(spec: str):
    """The torch device for --device: any CUDA device (cuda, cuda:N, auto with a GPU, torchrun's
    LOCAL_RANK) counts as a GPU for the preset choice. Fails with a message without CUDA."""
    from harness_base.device import select_device

    return select_device(spec)


def require_writable(path: str | Path) -> None:
    """Fail before any work if `path` (a folder to be created or written into) cannot be written:
    checks the nearest folder that exists, without creating anything."""
    target = Path(path).absolute()
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return  # a file in the way: the command's own write reports it
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(target))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(target))


def _train_interrupt_note(args) -> str:
    from .api import list_snapshots

    run_dir = Path(args.resume or args.out or ".")
    try:
        snaps = list_snapshots(run_dir)
    except FileNotFoundError:
        snaps = []
    if not snaps:
        return f"No snapshot had been written yet; `gan train --resume {run_dir}` starts the run again."
    return (f"Kept the last complete snapshot, {snaps[-1].path}; `gan train --resume {run_dir}` continues "
            "from it.")


def cmd_train(args) -> int:
    from .train import train

    out = Path(args.resume or args.out or ".")
    if not args.resume and args.out is not None:
        require_writable(out)
    _resolved_device(args.device)  # a missing GPU is reported before the data is read
    cfg = build_train_config(args)
    last = train(cfg, out, resume=bool(args.resume), device=args.device, progress=not args.quiet,
                 threads=args.threads)
    if args.json:
        from .checkpoint import kimg_from_name
        print(json.dumps({"run": str(out), "last_snapshot": str(last) if last else None,
                          "kimg": kimg_from_name(last.name) if last else None}))
    return 0


def cmd_dataset(args) -> int:
    from .dataset import prepare_dataset

    require_writable(args.out)
    summary = prepare_dataset(args.src, args.out, args.res, mode=args.mode, min_size=args.min_size,
                              progress=not args.quiet)
    _print_dataset_summary(summary, args.out, args.json)
    return 0


def _print_dataset_summary(summary: dict, out, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"out": str(out), **{k: summary[k] for k in ("count", "resolution", "rejected",
                                                                      "duplicates")}}))
        return
    print(f"kept {summary['count']} images at {summary['resolution']}x{summary['resolution']} in {out}; "
          f"rejected {len(summary['rejected'])}, exact duplicates {len(summary['duplicates'])}")
    for r in summary["rejected"]:
        print(f"  rejected {r['source']}: {r['reason']}")
    for d in summary["duplicates"]:
        print(f"  duplicate {d['source']} (same pixels as {d['duplicate_of']})")
    print(f"details: {Path(out) / 'dataset.json'}")


def cmd_avatars(args) -> int:
    from .dataset import write_avatar_dataset

    require_writable(args.out)
    summary = write_avatar_dataset(args.out, args.n, res=args.res, seed=args.seed, progress=not args.quiet)
    _print_dataset_summary(summary, args.out, args.json)
    return 0


def _load(args):
    """The device first (a missing GPU fails before anything is read), then the generator."""
    from .api import load_generator

    device = _resolved_device(args.device)
    return load_generator(args.ckpt, device=device)


def cmd_generate(args) -> int:
    import io

    from PIL import Image

    from harness_base.atomic import check_writable_dir, write_bytes_atomic

    require_writable(args.out)
    gen = _load(args)
    out = check_writable_dir(args.out)
    seeds = iter(args.seeds)
    for batch in gen.images(seeds=args.seeds, psi=args.psi, noise_mode=args.noise_mode,
                            batch_size=args.batch, progress=not args.quiet):
        for img in batch:
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG")
            write_bytes_atomic(out / f"seed{next(seeds):04d}.png", buf.getvalue())
    if args.json:
        print(json.dumps({"out": str(out), "images": len(args.seeds), "psi": args.psi,
                          "checkpoint": str(gen.path)}))
    else:
        print(f"wrote {len(args.seeds)} images to {out} (psi {args.psi}, {gen.path.name})")
    return 0


def cmd_truncation_grid(args) -> int:
    from .sample import save_png, truncation_grid

    require_writable(Path(args.out).parent)
    gen = _load(args)
    save_png(truncation_grid(gen.G, args.seeds, args.psi, noise_mode=args.noise_mode), args.out)
    _print_written(args, f"rows = seeds {args.seeds}, columns = psi {list(args.psi)}")
    return 0


def cmd_style_mix(args) -> int:
    from .sample import parse_style_layers, save_png, style_mix_grid

    require_writable(Path(args.out).parent)
    gen = _load(args)
    try:
        layers = parse_style_layers(args.styles, gen.resolution)
    except ValueError as exc:
        raise UsageError(f"--styles: {exc}") from None
    save_png(style_mix_grid(gen.G, args.rows, args.cols, layers, psi=args.psi, noise_mode=args.noise_mode),
             args.out)
    _print_written(args, f"rows {args.rows} take style layers {layers} from columns {args.cols}")
    return 0


def _print_written(args, what: str) -> None:
    if args.json:
        print(json.dumps({"out": str(args.out), "what": what}))
    else:
        print(f"wrote {args.out}: {what}")


def _sampling_args(p, out_default: str, what: str) -> None:
    p.add_argument("ckpt", help="checkpoint file or run dir (latest snapshot)")
    p.add_argument("--out", default=out_default, help=what)
    p.add_argument("--noise-mode", default="const", choices=["const", "random", "none"],
                   help="per-layer noise: fixed per layer (const), fresh (random) or off")
    cli.add_device(p)
    cli.add_quiet(p)
    cli.add_json(p, "where the output went")
    p.set_defaults(interrupt_note="Every image written so far is complete; run the command again to write them all.")


def _quiet_alias(p) -> None:
    cli.add_quiet(p)
    p.add_argument("--no-progress", dest="quiet", action="store_true", help="the same as --quiet")


def build_parser() -> argparse.ArgumentParser:
    from .config import PRECISIONS, PRESETS

    parser, add = cli.new_parser("gan", __doc__)

    p = add("dataset", "turn a folder or zip of images into a training set")
    p.add_argument("src", help="folder (searched recursively) or zip file")
    p.add_argument("out", help="new, empty output folder")
    p.add_argument("--res", type=power_of_two, required=True, help="output resolution (power of two)")
    p.add_argument("--mode", choices=["crop", "pad"], default="crop",
                   help="crop: centre square crop; pad: black bars, nothing cut off")
    p.add_argument("--min-size", type=cli.positive_int, default=None,
                   help="reject images smaller than this (short side for crop, long side for pad; default --res)")
    cli.add_quiet(p)
    cli.add_json(p, "the summary")
    p.set_defaults(func=cmd_dataset, interrupt_note="Nothing was written: the folder is renamed into place only "
                                                    "when complete.")

    p = add("avatars", "build the built-in cartoon-face demo data set")
    p.add_argument("out", help="new, empty output folder")
    p.add_argument("--n", type=cli.positive_int, default=5000, help="number of images")
    p.add_argument("--res", type=power_of_two, default=64, help="resolution")
    p.add_argument("--seed", type=cli.nonnegative_int, default=0, help="random seed (same seed, same images)")
    cli.add_quiet(p)
    cli.add_json(p, "the summary")
    p.set_defaults(func=cmd_avatars, interrupt_note="Nothing was written: the folder is renamed into place only "
                                                    "when complete.")

    p = add("train", "train a StyleGAN2 generator against a ResNet or ViT discriminator")
    p.add_argument("--data", help="training image folder (from `gan dataset` or `gan avatars`); with --resume: "
                                  "the run's data at its new location, if it moved")
    p.add_argument("--out", help="new run dir")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue this run from its latest snapshot")
    p.add_argument("--preset", choices=PRESETS, default=None,
                   help="starting configuration (default: gpu on a CUDA device, else cpu-tiny)")
    p.add_argument("--disc", choices=["resnet", "vit"], help="discriminator (default: resnet)")
    p.add_argument("--aug", choices=["ada", "fixed", "none"], help="augmentation: ada (default) adapts p")
    p.add_argument("--transfer", metavar="CKPT", help="initialise from another run's checkpoint")
    cli.add_device(p)
    p.add_argument("--threads", type=cli.positive_int, default=None, help="CPU threads (default: half the cores)")
    _quiet_alias(p)
    cli.add_json(p, "the last snapshot")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any config field, e.g. --set train.pl_decay=0.02 (repeatable)")
    for flag, _, typ, help_text in TRAIN_OVERRIDES:
        kwargs = {"type": typ} if typ is not None else {}
        if flag == "--precision":
            kwargs = {"choices": PRECISIONS}
        elif flag == "--mapping":
            kwargs = {"choices": ["standard", "per-res"]}
        if "default" not in help_text:
            help_text += " (default: the preset's, see gan/config.py)"
        p.add_argument(flag, default=None, help=help_text, **kwargs)
    for flag, _, help_text in TRAIN_SWITCHES:
        p.add_argument(flag, action="store_true", help=help_text)
    p.set_defaults(func=cmd_train, interrupt_note=_train_interrupt_note)

    p = add("generate", "write one PNG per seed")
    _sampling_args(p, "generated", "output folder")
    p.add_argument("--seeds", type=parse_seeds, required=True, help="e.g. 0-999 or 1,5,7")
    p.add_argument("--psi", type=cli.finite_float, default=1.0, help="truncation psi (1 = none)")
    p.add_argument("--batch", type=cli.positive_int, default=32, help="images per batch")
    p.set_defaults(func=cmd_generate)

    p = add("truncation-grid", "rows = seeds, columns = psi")
    _sampling_args(p, "truncation-grid.png", "output PNG")
    p.add_argument("--seeds", type=parse_seeds, default=[0, 1, 2, 3], help="row seeds")
    p.add_argument("--psi", type=cli.float_list, default=(1.2, 1, 0.7, 0.5, 0, -0.5, -1), help="column psis")
    p.set_defaults(func=cmd_truncation_grid)

    p = add("style-mix", "rows take the chosen style layers from the columns")
    _sampling_args(p, "style-mix.png", "output PNG")
    p.add_argument("--rows", type=parse_seeds, required=True, help="row-source seeds")
    p.add_argument("--cols", type=parse_seeds, required=True, help="column-source seeds")
    p.add_argument("--styles", default="coarse", help="coarse | middle | fine | indices like 0-3")
    p.add_argument("--psi", type=cli.finite_float, default=1.0, help="truncation psi (1 = none)")
    p.set_defaults(func=cmd_style_mix)
    return parser


def main(argv=None) -> int:
    return cli.run(build_parser(), argv, prog="gan")


if __name__ == "__main__":
    sys.exit(main())
