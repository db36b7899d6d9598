"""`python -m bench gan`: training throughput of the StyleGAN2 generator against both discriminators.

Each row runs in a fresh process (so peak memory belongs to that row) and times full training
steps of `gan.train.Trainer` -- G main, lazy path length, D main, lazy R1 through ADA at p = 0.2,
EMA -- on random uint8 data already in memory, after warm-up steps. The measured window is a
multiple of 16 steps, so lazy regularisation is represented in its real proportion.

CPU rows use the cpu-tiny preset's networks at 32 and 64 px; GPU rows (only when CUDA is
available) use the gpu preset at 64, 128 and 256 px. Next to them: StyleGAN2-ADA's published
s/kimg for one V100 (README, `--cfg=auto`) and StyleGAN3's for one A100 (docs/configs.md), from
anchors-gan-training.md section 4. Those are for the official networks and batch sizes, so they
are a scale reference, not a like-for-like comparison.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time

# (res) -> published single-GPU s/kimg, see anchors-gan-training.md section 4.
PUBLISHED = {
    128: "SG2ADA V100 12.8-13.7; SG3 A100 6.79",
    256: "SG2ADA V100 21.6-24.2; SG3 A100 12.53",
}
CPU_ANCHOR = {32: "official nets cbase 2048, non-lazy: ~111 (anchors sec. 6)"}


def measure_training(disc: str, res: int, device: str, warmup: int, steps: int, threads: int | None = None,
                     batch: int | None = None, precision: str = "auto", switches: tuple[str, ...] = (),
                     window: int = 16, preset_name: str | None = None) -> dict:
    """Time `steps` full training steps after `warmup` ones, in windows of `window` steps (a window of
    16 holds every lazy regularisation phase in its real proportion). CPU rows use the cpu-tiny
    preset's networks, GPU rows the gpu preset. `switches`: TrainConfig booleans to turn on
    (channels_last, fused_adam, tf32). `preset_name` overrides the preset (the GPU check's dry run: smoke)."""
    import statistics

    import torch

    from gan.config import preset
    from gan.train import Distributed, Trainer, default_cpu_threads, parameter_count

    if device == "cpu":
        torch.set_num_threads(threads or default_cpu_threads())
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cfg = preset(preset_name or ("cpu-tiny" if device == "cpu" else "gpu"), res, disc)
    cfg.data = "(random data)"
    cfg.augment.p, cfg.augment.ada = 0.2, False
    cfg.train.precision = precision
    for name in switches:
        setattr(cfg.train, name, True)
    if batch:
        cfg.train.batch = batch
    trainer = Trainer(cfg.validate(), Distributed(device))
    cuda = trainer.device.type == "cuda"
    if cuda:
        from gan.precision import set_tf32

        torch.backends.cudnn.benchmark = True  # as gan train sets them
        set_tf32(cfg.train.tf32)
    real = torch.randint(0, 256, (cfg.train.batch, 3, res, res), dtype=torch.uint8)   # uploaded every step

    def sync():
        if cuda:
            torch.cuda.synchronize()
    for _ in range(warmup):
        trainer.step(real)
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    windows = []
    for start in range(0, steps, window):
        n = min(window, steps - start)
        t = time.perf_counter()
        for _ in range(n):
            trainer.step(real)
        sync()
        windows.append((time.perf_counter() - t) / (n * cfg.train.batch) * 1000)
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2 ** 20
        peak_text = f"{peak:.0f} MiB (CUDA)"
    else:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        peak, peak_text = rss, f"{rss:.0f} MiB RSS (+{rss - base_rss:.0f})"
    s_kimg = statistics.median(windows)
    return {"disc": disc, "res": res, "device": torch.cuda.get_device_name() if cuda else "cpu",
            "batch": cfg.train.batch, "precision": trainer.precision, "switches": list(switches),
            "img_s": 1000 / s_kimg, "s_kimg": s_kimg, "s_kimg_windows": windows, "peak_mib": peak,
            "peak": peak_text, "params_G": parameter_count(trainer.G), "params_D": parameter_count(trainer.D),
            "params": f"{parameter_count(trainer.G) / 1e6:.2f}M+{parameter_count(trainer.D) / 1e6:.2f}M",
            "threads": torch.get_num_threads()}


def _measure(disc: str, res: int, device: str, warmup: int, steps: int, threads: int | None,
             batch: int | None, queue) -> None:
    queue.put(measure_training(disc, res, device, warmup, steps, threads, batch))


def run_row(*args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(*args, queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"benchmark row {args[:3]} failed (exit code {proc.exitcode})")
    return queue.get()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench gan", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-res", default="32,64", help="CPU resolutions (default 32,64)")
    parser.add_argument("--gpu-res", default="64,128,256", help="GPU resolutions (default 64,128,256)")
    parser.add_argument("--discs", default="resnet,vit")
    parser.add_argument("--steps", type=int, default=16, help="timed steps per row (multiple of 16 recommended)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads (default: half the cores, as `gan train` uses)")
    parser.add_argument("--no-cpu", action="store_true")
    args = parser.parse_args(argv)
    import torch

    discs = args.discs.split(",")
    jobs = [] if args.no_cpu else [(d, int(r), "cpu") for r in args.cpu_res.split(",") for d in discs]
    if torch.cuda.is_available():
        jobs += [(d, int(r), "cuda") for r in args.gpu_res.split(",") for d in discs]
    header = f"{'disc':<7}{'res':>5}  {'device':<22}{'batch':>6}{'img/s':>9}{'s/kimg':>9}  {'peak memory':<24}{'params G+D':<14}reference s/kimg (published)"
    print(header)
    print("-" * len(header))
    rows = []
    for disc, res, device in jobs:
        steps = args.steps if device == "cpu" else max(args.steps, 32)
        row = run_row(disc, res, device, args.warmup, steps, args.threads, None)
        rows.append(row)
        ref = PUBLISHED.get(res, "-") if device != "cpu" else CPU_ANCHOR.get(res, "-")
        print(f"{row['disc']:<7}{row['res']:>5}  {row['device'][:21]:<22}{row['batch']:>6}{row['img_s']:>9.1f}"
              f"{row['s_kimg']:>9.1f}  {row['peak']:<24}{row['params']:<14}{ref}", flush=True)
    if not torch.cuda.is_available():
        print("GPU rows (64, 128, 256 px, gpu preset): no GPU available")
    print(f"CPU threads per row: {rows[0]['threads'] if rows else '-'}; ADA p = 0.2; timings vary with machine load.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
