"""`evalkit demo`: the whole harness on an embedded data set, end to end, in one command.

1. build the cartoon-face data set (python-avatars) and a held-out set of the same kind;
2. train two generators — one against the ResNet discriminator, one against the ViT;
3. score every snapshot of both (FID against the training data, curve per run);
4. for the best snapshot of each (chosen on the selection seeds), on fresh report seeds: every
   metric with a bootstrap interval, FID/KID against the held-out set and the train–held-out gap,
   a truncation sweep over ψ in [0.5, 1] (a best ψ only where it beats ψ = 1 beyond a paired
   interval) and the copy check against the training data (with C_T against the held-out set);
5. write the comparison report (Markdown, CSV, LaTeX, HTML, summary), ranking the two generators
   only by a paired bootstrap of their FID difference;
6. create a study dir with held-out real images and samples of both generators as conditions,
   and print the command that hosts the quiz.

Re-running continues where it stopped: finished training runs are kept (unfinished ones resume),
features and per-snapshot FIDs come from the cache, and an existing study dir (which may hold
answers) is never overwritten.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from harness_base.atomic import write_text_atomic
from harness_base.errors import HarnessError


@dataclass(frozen=True)
class DemoPreset:
    resolution: int
    num_train: int
    num_heldout: int
    kimg: float               # training length per discriminator
    snapshot_kimg: float
    num_gen: int              # samples per snapshot FID and for the full metrics
    sweep_num_gen: int        # samples per psi
    copycheck_num_gen: int
    bootstrap: int
    study_fakes: int          # generated images per condition in the study
    trials_per_condition: int
    gan_preset: str
    psis: tuple = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)   # truncation trades diversity for quality in [0.5, 1]
    train_queries: int = 1000     # training images whose own nearest neighbours set the copy threshold
    ppl_num: int = 10_000         # paths for the PPL column
    # The calibration scale's stand-ins (evalkit calibrate); each costs one feature pass over the held-out set.
    calibrate_standins: tuple = ("heldout", "blur-1", "blur-2", "jpeg-20", "noise-16", "half-modes", "copies-10",
                                 "copies-50")


PRESETS = {
    # Used by the test suite: every step runs, on a few dozen images, in a few minutes.
    "smoke": DemoPreset(resolution=32, num_train=64, num_heldout=32, kimg=0.032, snapshot_kimg=0.016, num_gen=32,
                        sweep_num_gen=16, copycheck_num_gen=16, bootstrap=5, study_fakes=12, trials_per_condition=4,
                        gan_preset="smoke", psis=(1.0, 0.5), ppl_num=16,
                        calibrate_standins=("heldout", "blur-2", "copies-50")),
    # The default: a 2-core CPU, about 20 minutes. Inception features (~0.045 s per image on 2 cores)
    # dominate: 1200 real + 2 x (4 snapshots x 300 on selection seeds + 300 on report seeds + 6 psi x 150)
    # generated images; the copy check reuses the psi = 1 samples of the sweep.
    "cpu": DemoPreset(resolution=32, num_train=1000, num_heldout=200, kimg=12.0, snapshot_kimg=3.0, num_gen=300,
                      sweep_num_gen=150, copycheck_num_gen=150, bootstrap=50, study_fakes=40, trials_per_condition=10,
                      gan_preset="cpu-tiny", train_queries=300, ppl_num=1000),
    # A GPU: 64 px, long enough that samples look like faces.
    "gpu": DemoPreset(resolution=64, num_train=5000, num_heldout=1000, kimg=600.0, snapshot_kimg=50.0,
                      num_gen=10_000, sweep_num_gen=5_000, copycheck_num_gen=1_000, bootstrap=100, study_fakes=100,
                      trials_per_condition=20, gan_preset="gpu"),
}


def _stage(log, number: int, text: str) -> None:
    log(f"\n== [{number}/6] {text}")


def _make_avatars(folder: Path, n: int, seed: int, res: int, log) -> Path:
    from gan.avatars import write_avatars

    if folder.is_dir() and len(list(folder.glob("*.png"))) == n:
        log(f"{folder}: {n} images already there")
        return folder
    write_avatars(folder, n, seed=seed, res=res, progress=True)
    return folder


def _train_config(preset: DemoPreset, data: Path, disc: str):
    from gan.config import preset as gan_preset

    cfg = gan_preset(preset.gan_preset, preset.resolution, disc)
    cfg.data = str(data.resolve())
    cfg.train.total_kimg = preset.kimg
    cfg.train.snapshot_kimg = preset.snapshot_kimg
    cfg.train.log_kimg = min(cfg.train.log_kimg, preset.snapshot_kimg)
    return cfg.validate()


def _train(preset: DemoPreset, data: Path, run_dir: Path, disc: str, device, log, progress: bool) -> Path:
    from gan.api import list_snapshots
    from gan.train import train

    snaps = list_snapshots(run_dir) if (run_dir / "config.json").is_file() else []
    if snaps and snaps[-1].kimg >= preset.kimg - 1e-9:
        log(f"{run_dir}: finished earlier ({snaps[-1].kimg:g} kimg), kept")
        return run_dir
    cfg = _train_config(preset, data, disc)
    resume = bool(snaps)
    log(f"{run_dir}: {'resuming' if resume else 'training'} {disc} discriminator to {preset.kimg:g} kimg at "
        f"{preset.resolution} px")
    train(cfg, run_dir, resume=resume, device=device, progress=progress)
    return run_dir


def _write_samples(checkpoint: str, out: Path, n: int, seed: int, device) -> Path:
    from PIL import Image

    from gan.api import load_generator

    out.mkdir(parents=True, exist_ok=True)
    generator = load_generator(checkpoint, device=device)
    index = 0
    for batch in generator.images(seeds=range(seed, seed + n)):
        for image in batch:
            Image.fromarray(image).save(out / f"seed{seed + index:06d}.png")
            index += 1
    return out


def run_demo(out: str | Path = "results/demo", preset_name: str = "cpu", device=None, log=print,
             progress: bool = True) -> dict:
    from evalkit.reports.report import ReportOptions, build_report
    from harness_base.atomic import check_writable_dir
    from harness_base.device import select_device

    if preset_name not in PRESETS:
        raise HarnessError(f"unknown demo preset {preset_name!r}; choose one of {', '.join(PRESETS)}.")
    preset = PRESETS[preset_name]
    out = check_writable_dir(Path(out))
    device = select_device(device)
    started = time.perf_counter()
    timings = {}

    def lap(name, t0):
        timings[name] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    _stage(log, 1, f"data: {preset.num_train} training and {preset.num_heldout} held-out cartoon faces at "
                   f"{preset.resolution} px")
    train_dir = _make_avatars(out / "data" / "train", preset.num_train, 0, preset.resolution, log)
    heldout_dir = _make_avatars(out / "data" / "heldout", preset.num_heldout, 1, preset.resolution, log)
    lap("data", t0)

    t0 = time.perf_counter()
    _stage(log, 2, "training one generator per discriminator (ResNet, ViT)")
    runs = {disc: _train(preset, train_dir, out / "runs" / disc, disc, str(device), log, progress)
            for disc in ("resnet", "vit")}
    lap("training", t0)

    t0 = time.perf_counter()
    _stage(log, 3, "evaluation: FID of every snapshot, then metrics, truncation sweep and copy check of the best; "
                   "the comparison report")
    opts = ReportOptions(num_gen=preset.num_gen, sweep_num_gen=preset.sweep_num_gen, copycheck_num_gen=preset.copycheck_num_gen,
                         psis=preset.psis, bootstrap=preset.bootstrap, heldout=str(heldout_dir),
                         train_queries=preset.train_queries, ppl_num=preset.ppl_num,
                         calibrate_standins=preset.calibrate_standins)
    report = build_report([runs["resnet"], runs["vit"]], out, opts=opts, device=device, progress=progress, log=log,
                          title="Demo: StyleGAN2 with a ResNet vs a ViT discriminator on cartoon faces")
    lap("evaluation", t0)

    t0 = time.perf_counter()
    _stage(log, 4, "study: held-out real faces vs samples of both generators")
    study_dir = out / "study"
    best = {row["name"]: item["checkpoint"] for row, item in zip(report["rows"], report["items"])}
    from study_app import init_study, serve_command

    if (study_dir / "study.toml").exists():
        log(f"{study_dir} already exists (it may hold answers); left as it is")
    else:
        fakes = [(name, _write_samples(ckpt, out / "study-images" / name, preset.study_fakes, 10_000, device))
                 for name, ckpt in best.items()]
        init_study(study_dir, heldout_dir, fakes, title="Real or generated? Cartoon faces",
                   trials_per_condition=preset.trials_per_condition, practice_trials=2, attention_checks=2)
    lap("study", t0)

    _stage(log, 5, "summary")
    summary = report["summary"].replace("**", "")
    log(summary)
    total = round(time.perf_counter() - started, 1)
    _stage(log, 6, "done")
    command = f"STUDY_ADMIN_PASSWORD=choose-a-long-password {serve_command(study_dir)}"
    result = {"out": str(out), "preset": preset_name, "settings": {k: (list(v) if isinstance(v, tuple) else v)
                                                                   for k, v in asdict(preset).items()},
              "runs": {k: str(v) for k, v in runs.items()}, "best_checkpoints": best,
              "report": report["files"], "study_dir": str(study_dir), "serve_command": command,
              "timings_s": {**timings, "total": total},
              "best_fid": {row["name"]: row["fid"] for row in report["rows"]},
              "heldout_fid": {row["name"]: row["fid_heldout"] for row in report["rows"]},
              "comparisons": [{k: c[k] for k in ("a", "b", "delta_fid", "ci_low", "ci_high", "p_a_better", "verdict")}
                              for c in report["comparisons"]],
              "selection_seeds": report["selection_seeds"], "report_seeds": report["report_seeds"],
              "device": str(device)}
    write_text_atomic(out / "demo.json", json.dumps(result, indent=2))
    log(f"report: {report['files']['html']}")
    log(f"wall time: {total:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in timings.items())})")
    log(f"host the quiz:\n  {command}")
    return result
