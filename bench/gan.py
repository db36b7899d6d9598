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


def _measure(disc: str, res: int, device: str, warmup: int, steps: int, threads: int | None,
             batch: int | None, queue) -> None:
    import torch

    from gan.config import preset
    from gan.train import Distributed, Trainer

    from gan.train import default_cpu_threads

    torch.set_num_threads(threads or default_cpu_threads())
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cfg = preset("cpu-tiny" if device == "cpu" else "gpu", res, disc)
    cfg.data = "(random data)"
    cfg.augment.p, cfg.augment.ada = 0.2, False
    if batch:
        cfg.train.batch = batch
    trainer = Trainer(cfg.validate(), Distributed(device))
    real = torch.randint(0, 256, (cfg.train.batch, 3, res, res), dtype=torch.uint8)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()
    for _ in range(warmup):
        trainer.step(real)
    sync()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step(real)
    sync()
    seconds = time.perf_counter() - start
    images = steps * cfg.train.batch
    if device == "cuda":
        peak = f"{torch.cuda.max_memory_allocated() / 2 ** 20:.0f} MiB (CUDA)"
    else:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        peak = f"{rss:.0f} MiB RSS (+{rss - base_rss:.0f})"
    params = sum(p.numel() for p in trainer.G.parameters()), sum(p.numel() for p in trainer.D.parameters())
    queue.put({"disc": disc, "res": res, "device": device if device == "cpu" else torch.cuda.get_device_name(),
               "batch": cfg.train.batch, "img_s": images / seconds, "s_kimg": seconds / images * 1000,
               "peak": peak, "params": f"{params[0] / 1e6:.2f}M+{params[1] / 1e6:.2f}M",
               "threads": torch.get_num_threads()})


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
