"""The training loop.

`Trainer` owns the networks, optimisers and augmentation and does one minibatch (`step`);
`train()` adds the data stream, logging, snapshots, resume and transfer around it.

Exact resume: all randomness of a minibatch comes from the global torch RNG, re-seeded at the
start of every step from (seed, step, rank), and the data order is a fixed permutation per
epoch seeded by (seed, epoch). So the RNG state *is* (seed, step, images seen), which the
checkpoint stores along with the networks, optimiser moments, ADA p (and its pending r_t
counts) and the path-length mean. A resumed run therefore repeats the uninterrupted one.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from harness_base.atomic import check_writable_dir, remove_stale_temp_files, write_text_atomic
from harness_base.device import select_device
from harness_base.errors import HarnessError

from . import checkpoint as ckpt
from .augment import AdaptiveP, AugmentPipe
from .config import RESOLVED_KEY, RunConfig, vit_patch_geometry
from .dataset import load_image_folder
from .loss import StyleGAN2Loss
from .nets import build_discriminator, build_generator
from .precision import DTYPES, nan_to_num_grads, native_bf16, resolve_precision, set_tf32
from .sample import image_grid, save_png, snapshot_grid

RUN_CONFIG, RUN_LOG = "config.json", "log.jsonl"
FEW_IMAGES = 2   # at or below this many training images, a run gets a warning about what it is worth


class TrainingDiverged(HarnessError):
    """A loss or weight became NaN/inf; the last good snapshot is kept and nothing newer is written."""


class DataMoved(HarnessError):
    """The training data of a run being resumed is not where the run left it, or is different."""


def seed_for(*keys) -> int:
    """A 63-bit seed derived from integers/strings, stable across processes and platforms."""
    words = [k if isinstance(k, int) else int.from_bytes(str(k).encode()[:8].ljust(8, b"\0"), "little")
             for k in keys]
    return int(np.random.SeedSequence(words).generate_state(2, dtype=np.uint32).astype(np.uint64)
               .dot([1 << 31, 1]))


class Distributed:
    """torchrun support: one process per GPU (or CPU process with gloo), gradients averaged by hand."""

    def __init__(self, device: str = "auto"):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        # auto / cuda / cuda:N / LOCAL_RANK -> an indexed device (harness_base/device.py)
        self.device = select_device(device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if self.world > 1 and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def average_grads(self, module: torch.nn.Module) -> None:
        if self.world == 1:
            return
        params = [p for p in module.parameters() if p.grad is not None]
        flat = torch.cat([p.grad.flatten() for p in params])
        torch.distributed.all_reduce(flat)
        flat /= self.world
        for p, g in zip(params, flat.split([p.numel() for p in params])):
            p.grad.copy_(g.reshape(p.shape))

    def sum_floats(self, *values: float) -> list[float]:
        if self.world == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def check_in_sync(self, *modules: torch.nn.Module) -> None:
        """Every rank must hold the same weights; a silent divergence would make rank 0's snapshot a lie."""
        if self.world == 1:
            return
        with torch.no_grad():
            total = torch.stack([p.double().sum() for m in modules for p in m.parameters()]).sum().reshape(1)
        lo, hi = total.clone(), total.clone()
        torch.distributed.all_reduce(lo, op=torch.distributed.ReduceOp.MIN)
        torch.distributed.all_reduce(hi, op=torch.distributed.ReduceOp.MAX)
        if lo.item() != hi.item():
            raise RuntimeError(f"ranks hold different weights (checksums {lo.item()} .. {hi.item()})")

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def lazy_ratio(reg_interval: int) -> float:
    return reg_interval / (reg_interval + 1) if reg_interval > 0 else 1.0


def lazy_adam(params, lr: float, betas, eps: float, reg_interval: int, fused: bool = False) -> torch.optim.Adam:
    """Adam with SG2ADA's lazy-regularisation correction (lr and betas scaled by c/(c+1)).
    `fused`: torch's single-kernel Adam step (CUDA parameters only)."""
    ratio = lazy_ratio(reg_interval)
    # float(): torch 2.14 rejects betas=(0, 0.99) with mixed int/float types.
    return torch.optim.Adam(params, lr=lr * ratio, betas=(float(betas[0]) ** ratio, float(betas[1]) ** ratio),
                            eps=eps, **({"fused": True} if fused else {}))


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class Trainer:
    """G, D, G_ema, optimisers, augmentation and loss; `step()` runs one minibatch of all phases."""

    def __init__(self, cfg: RunConfig, dist: Distributed):
        self.cfg, self.dist, self.device = cfg, dist, dist.device
        t = cfg.train
        self.precision = resolve_precision(t.precision, self.device.type, native_bf16(self.device))
        torch.manual_seed(seed_for(t.seed, "init"))  # identical initial weights on every rank
        self.G = build_generator(cfg).to(self.device).train()
        self.D = build_discriminator(cfg).to(self.device).train()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)  # sampled in fp32
        reduced = DTYPES[self.precision]
        for net in (self.G.synthesis, self.D):
            net.set_reduced_dtype(reduced)
            net.channels_last = t.channels_last
        self.augment_pipe = AugmentPipe(cfg.augment.p, grid_sample=cfg.augment.grid_sample)
        a = cfg.augment
        self.ada = AdaptiveP(self.augment_pipe, a.target, a.interval, a.ada_kimg, a.p_max, enabled=a.ada)
        self.g_reg_interval = t.g_reg_interval if t.pl_weight > 0 else 0
        self.d_reg_interval = t.d_reg_interval if t.r1_gamma > 0 else 0
        self.fused_adam = t.fused_adam and self.device.type == "cuda"
        self.opt_G = lazy_adam(self.G.parameters(), t.g_lr, t.betas, t.eps, self.g_reg_interval, self.fused_adam)
        self.opt_D = lazy_adam(self.D.parameters(), t.d_lr, t.betas, t.eps, self.d_reg_interval, self.fused_adam)
        # fp16 needs loss scaling (its range ends at 65504); bf16 has fp32's range and needs none.
        scaling = self.precision == "fp16"
        self.scalers = {name: torch.amp.GradScaler(self.device.type, enabled=scaling) for name in ("G", "D")}
        self.loss = StyleGAN2Loss(self.G, self.D, self.augment_pipe, t)
        self.per_rank_batch = t.batch // dist.world
        self.nimg, self.step_index = 0, 0

    # -- one minibatch ---------------------------------------------------------------------
    def step(self, real_uint8: torch.Tensor) -> dict[str, torch.Tensor]:
        """Gmain, [G path length], Dmain, [D R1]; returns detached losses (not yet synchronised)."""
        t, i = self.cfg.train, self.step_index
        torch.manual_seed(seed_for(t.seed, "step", i, self.dist.rank))
        real = real_uint8.to(self.device, non_blocking=True).float() / 127.5 - 1
        b, z_dim = real.shape[0], self.G.z_dim
        losses = {}
        losses["G"] = self._phase(self.G, self.D, self.opt_G, lambda: self.loss.g_main(
            torch.randn(b, z_dim, device=self.device)), self.scalers["G"])
        if self.g_reg_interval and i % self.g_reg_interval == 0:
            losses["pl"] = self._phase(self.G, self.D, self.opt_G, lambda: self.loss.g_path_length(
                torch.randn(b, z_dim, device=self.device), gain=self.g_reg_interval))
        real_logits = {}

        def d_main():
            loss, real_logits["x"] = self.loss.d_main(real, torch.randn(b, z_dim, device=self.device))
            return loss
        losses["D"] = self._phase(self.D, self.G, self.opt_D, d_main, self.scalers["D"])
        self.ada.accumulate(real_logits["x"])
        if self.d_reg_interval and i % self.d_reg_interval == 0:
            losses["r1"] = self._phase(self.D, self.G, self.opt_D,
                                       lambda: self.loss.d_r1(real, gain=self.d_reg_interval))
        self._update_ema()
        self.nimg += t.batch
        self.step_index += 1
        self.ada.step(i, t.batch, sync=lambda s, c: self.dist.sum_floats(s, c))
        return losses

    def _phase(self, trained, frozen, opt, loss_fn, scaler=None) -> torch.Tensor:
        """One backward and optimiser step. `scaler` (fp16 main phases): dynamic loss scaling, whose
        step is skipped, and the scale lowered, when the unscaled gradients hold inf or NaN. Otherwise
        NaN gradients become 0 and infinities ±1e5 before the step (StyleGAN2-ADA)."""
        trained.requires_grad_(True)
        frozen.requires_grad_(False)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        if scaler is not None and scaler.is_enabled():
            scaler.scale(loss).backward()
            self.dist.average_grads(trained)
            scaler.unscale_(opt)      # records inf/NaN for scaler.step before they are cleaned below
            nan_to_num_grads(trained)
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            self.dist.average_grads(trained)
            nan_to_num_grads(trained)
            opt.step()
        return loss.detach()

    # -- what this run resolved to ---------------------------------------------------------
    def resolved(self, data=None) -> dict:
        """Device, precision of every part, parameter counts and learning rates as this trainer runs
        them; written to config.json ('resolved'), into every checkpoint and to the first log line."""
        cfg, t = self.cfg, self.cfg.train
        reduced = self.precision

        def by_resolution(net, reduced_blocks):
            return {f"{b.resolution}px": reduced if b.reduced else "fp32" for b in reduced_blocks}

        synthesis = self.G.synthesis
        g_prec = {"mapping": "fp32", **by_resolution(synthesis, synthesis.blocks), "skip_image": "fp32"}
        if cfg.disc == "vit":
            patch, ext = vit_patch_geometry(cfg.vit, cfg.resolution)
            d_prec = {"patch_embed": reduced if self.D.num_reduced_blocks else "fp32",
                      **{f"block{i}": reduced if i < self.D.num_reduced_blocks else "fp32"
                         for i in range(len(self.D.blocks))},
                      "attention_distances": "fp32", "isn_sigma": "fp32", "norm_mbstd_head": "fp32"}
            d_arch = {"patch": patch, "extend": ext, "window": patch + 2 * ext, "stride": patch,
                      "tokens": self.D.num_patches, "dim": cfg.vit.dim, "depth": cfg.vit.depth,
                      "heads": cfg.vit.heads, "mbstd_group": cfg.vit.mbstd_group,
                      "mbstd_channels": cfg.vit.mbstd_channels if cfg.vit.mbstd_group else 0}
        else:
            d_prec = {**by_resolution(self.D, self.D.blocks), "epilogue_mbstd_logits": "fp32"}
            d_arch = {"channel_base": cfg.resnet.channel_base, "channel_max": cfg.resnet.channel_max,
                      "mbstd_group": cfg.resnet.mbstd_group, "mbstd_channels": cfg.resnet.mbstd_channels}
        out = {
            "device": str(self.device), "world_size": self.dist.world, "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None,
            "precision": {"requested": t.precision, "reduced": reduced,
                          "loss_scaling": self.scalers["G"].is_enabled(), "G": g_prec, "D": d_prec,
                          "augment": "fp32", "r1": "fp32", "path_length": "fp32", "sampling": "fp32"},
            "tf32": bool(t.tf32 and self.device.type == "cuda"),
            "channels_last": bool(t.channels_last), "fused_adam": self.fused_adam,
            "grid_sample": cfg.augment.grid_sample,
            "networks": {
                "G": {"params": parameter_count(self.G), "lr": t.g_lr,
                      "lr_effective": t.g_lr * lazy_ratio(self.g_reg_interval),
                      "mapping": cfg.G.mapping, "mapping_layers": cfg.G.mapping_layers},
                "D": {"kind": cfg.disc, "params": parameter_count(self.D), "lr": t.d_lr,
                      "lr_effective": t.d_lr * lazy_ratio(self.d_reg_interval), **d_arch},
            },
        }
        if data is not None:
            out["data"] = {"images": len(data), "mirror": bool(t.mirror),
                           "effective_images": len(data) * (2 if t.mirror else 1), "listing": data.listing}
        return out

    @torch.no_grad()
    def _update_ema(self) -> None:
        """G_ema = lerp with a half-life of ema_kimg thousand images (optionally ramped up early on)."""
        t = self.cfg.train
        ema_nimg = t.ema_kimg * 1000
        if t.ema_rampup:
            ema_nimg = min(ema_nimg, self.nimg * t.ema_rampup)
        beta = 0.5 ** (t.batch / max(ema_nimg, 1e-8))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    # -- checkpoint state ------------------------------------------------------------------
    def scalar_state(self) -> dict:
        return {"nimg": self.nimg, "kimg": self.nimg / 1000, "step": self.step_index,
                "ada_p": self.augment_pipe.p, "ada_sign_sum": float(self.ada.sign_sum),
                "ada_count": self.ada.count, "ada_last_rt": self.ada.last_rt,
                "pl_mean": float(self.loss.pl_mean), "seed": self.cfg.train.seed,
                "rng": "global torch RNG re-seeded each step from (seed, step, rank); "
                       "data order: per-epoch permutation seeded by (seed, epoch)",
                "world_size": self.dist.world,
                **{f"grad_scaler_{k}": v.state_dict() for k, v in self.scalers.items() if v.is_enabled()}}

    def save(self, path: Path, resolved: dict | None = None) -> None:
        for name, module in (("G", self.G), ("D", self.D), ("G_ema", self.G_ema)):
            if not all(torch.isfinite(p).all() for p in module.parameters()):
                raise TrainingDiverged(f"{name} has non-finite weights at kimg {self.nimg / 1000:.3f}; "
                                       "not writing a snapshot")
        ckpt.save_checkpoint(path, {"G": self.G, "D": self.D, "G_ema": self.G_ema},
                             {"G": self.opt_G, "D": self.opt_D}, self.cfg.to_dict(), self.scalar_state(),
                             resolved=resolved)

    def load(self, path: Path) -> None:
        meta = ckpt.read_metadata(path)
        for name, module in (("G", self.G), ("D", self.D), ("G_ema", self.G_ema)):
            ckpt.load_module(module, path, name)
        ckpt.load_optimizer(self.opt_G, path, "G", meta["param_groups"]["G"])
        ckpt.load_optimizer(self.opt_D, path, "D", meta["param_groups"]["D"])
        s = meta["state"]
        self.nimg, self.step_index = int(s["nimg"]), int(s["step"])
        self.augment_pipe.p = float(s["ada_p"])
        self.ada.sign_sum, self.ada.count, self.ada.last_rt = s["ada_sign_sum"], s["ada_count"], s["ada_last_rt"]
        self.loss.pl_mean.fill_(s["pl_mean"])
        for name, scaler in self.scalers.items():
            if scaler.is_enabled() and f"grad_scaler_{name}" in s:
                scaler.load_state_dict(s[f"grad_scaler_{name}"])

    def transfer_from(self, path: Path) -> str:
        """Initialise G, G_ema (and D if the checkpoint has the same kind of D) from another run.

        Shapes must match exactly; a different discriminator type starts from a fresh D.
        """
        meta = ckpt.read_metadata(path)
        their_disc = meta["config"].get("disc")
        report = []
        for name, module in (("G", self.G), ("G_ema", self.G_ema), ("D", self.D)):
            if name == "D" and their_disc != self.cfg.disc:
                report.append(f"D: not transferred (checkpoint has a {their_disc} D)")
                continue
            own, theirs = module.state_dict(), ckpt.load_tensors(path, name)
            mismatched = [k for k in own if k not in theirs or theirs[k].shape != own[k].shape]
            if mismatched:
                raise ValueError(
                    f"{path} is from another configuration: {len(mismatched)} of {len(own)} {name} tensors "
                    f"are missing or differ in shape (e.g. {', '.join(mismatched[:3])}). --transfer needs the "
                    "same resolution, z/w dims, mapping and channel sizes.")
            module.load_state_dict({k: theirs[k] for k in own})
            report.append(f"{name}: {len(own)} tensors")
        return "; ".join(report)


class DataStream:
    """Minibatches in a per-epoch random order; batch k is a pure function of (seed, images seen).

    mirror: the data set is the images and their x-flips (StyleGAN2-ADA `--mirror`), so an epoch
    holds 2N distinct images, each original and each flip exactly once."""

    def __init__(self, images: torch.Tensor, seed: int, rank: int = 0, world: int = 1, mirror: bool = False):
        self.images, self.seed, self.rank, self.world, self.mirror = images, seed, rank, world, mirror
        self._perms: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.images) * (2 if self.mirror else 1)

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            self._perms = {e: p for e, p in self._perms.items() if e >= epoch - 1}
            g = torch.Generator().manual_seed(seed_for(self.seed, "data", epoch))
            self._perms[epoch] = torch.randperm(len(self), generator=g)
        return self._perms[epoch]

    def batch(self, nimg: int, global_batch: int) -> torch.Tensor:
        per_rank = global_batch // self.world
        n, n_images = len(self), len(self.images)
        positions = range(nimg + self.rank * per_rank, nimg + (self.rank + 1) * per_rank)
        idx = torch.stack([self._perm(pos // n)[pos % n] for pos in positions])
        batch = self.images[idx % n_images]
        flipped = idx >= n_images
        if bool(flipped.any()):
            batch[flipped] = batch[flipped].flip(-1)
        return batch


# -- run dir helpers ----------------------------------------------------------------------

def flatten_config(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten_config(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return out


# What `--resume` may change: the length of the run, and where its (unchanged) data now lives.
RESUMABLE_FIELDS = ("train.total_kimg", "data")


def config_differences(a: dict, b: dict, ignore=RESUMABLE_FIELDS) -> list[str]:
    fa, fb = flatten_config(a), flatten_config(b)
    return [f"{k}: {fa.get(k)!r} vs {fb.get(k)!r}" for k in sorted(set(fa) | set(fb))
            if k not in ignore and fa.get(k) != fb.get(k)]


def _truncate_log(log_path: Path, nimg: int) -> None:
    """Drop log lines written after the snapshot we resume from (they will be written again)."""
    if not log_path.exists():
        return
    keep = []
    for line in log_path.read_text().splitlines():
        try:
            if json.loads(line)["nimg"] <= nimg:
                keep.append(line)
        except (ValueError, KeyError):
            continue  # a line torn by a kill mid-write
    write_text_atomic(log_path, "".join(l + "\n" for l in keep))


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB -> MiB (process peak RSS)


def default_cpu_threads() -> int:
    """Half the cores: on a small shared machine two intra-op threads per process made tiny-network
    steps 4-10x *slower* under load (OpenMP oversubscription), and two CPU runs can go side by side."""
    return max(1, (os.cpu_count() or 2) // 2)


def describe(resolved: dict) -> str:
    """One line: each network's parameters, learning rate and precision, the device and the data."""
    prec, nets = resolved["precision"], resolved["networks"]
    reduced = prec["reduced"]

    def parts(d: dict) -> str:
        low = [k for k, v in d.items() if v != "fp32"]
        return f"{reduced} in {'/'.join(low)}, fp32 elsewhere" if low else "fp32"

    g, d = nets["G"], nets["D"]
    line = (f"G {g['params'] / 1e6:.2f}M params, lr {g['lr']:g} ({parts(prec['G'])}); "
            f"D {d['kind']} {d['params'] / 1e6:.2f}M params, lr {d['lr']:g} ({parts(prec['D'])})")
    if d["kind"] == "vit":
        line += f", {d['tokens']} tokens of {d['window']} px at stride {d['stride']}"
    line += (f", minibatch-std group {d['mbstd_group'] or 'off'}; device {resolved['device']}"
             f"{' (' + resolved['gpu'] + ')' if resolved.get('gpu') else ''}, TF32 {'on' if resolved['tf32'] else 'off'}"
             f"{', fp16 loss scaling' if prec['loss_scaling'] else ''}")
    if "data" in resolved:
        data = resolved["data"]
        line += f"; data {data['images']} images" + (f" x2 mirrored = {data['effective_images']}" if data["mirror"] else "")
    return line


def few_images_warning(n: int, folder) -> str:
    return (f"warning: {folder} holds only {n} training image{'s' if n != 1 else ''}. A generator trained on so "
            "few can at best reproduce them: its samples say nothing about how it generalises, the copy check "
            "will flag them as copies, and an FID against this set is meaningless (it needs thousands of "
            "images). Use at least a few hundred images for a result worth reading.")


def _check_same_data(run_dir: Path, recorded: dict | None, data, cfg: RunConfig) -> None:
    """On resume from a new --data path: the folder must hold the run's images (same names and sizes)."""
    if not recorded or "listing" not in recorded:
        return
    if recorded["listing"] != data.listing:
        raise DataMoved(
            f"{cfg.data} does not hold the training data of {run_dir}: its file names or sizes differ from the "
            f"{recorded['images']} images the run was trained on. Pass the folder that holds the run's own "
            "images (gan train --resume RUN --data PATH), or start a new run on this data with --out.")


def train(cfg: RunConfig, run_dir: str | Path, resume: bool = False, device: str = "auto",
          progress: bool = True, on_step=None, threads: int | None = None, log=None) -> Path | None:
    """Train until cfg.train.total_kimg; returns the last snapshot path.

    resume: continue `run_dir` from its latest complete snapshot (config must match except
    train.total_kimg and, for data that moved, data). on_step(trainer): test hook called after
    every minibatch. threads: CPU intra-op threads (default: half the cores); ignored on CUDA.
    log: where progress messages go (default: stderr of the main process).
    """
    from tqdm import tqdm

    cfg.validate()
    run_dir = Path(run_dir)
    dist = Distributed(device)
    if dist.device.type == "cpu":
        torch.set_num_threads(threads or default_cpu_threads())
    if log is None or not dist.is_main:
        log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if dist.is_main else (lambda msg: None)
    t = cfg.train
    if t.batch % dist.world:
        raise ValueError(f"batch {t.batch} is not divisible by the {dist.world} processes")
    ckpt_dir, sample_dir = run_dir / "checkpoints", run_dir / "samples"
    if not resume and (run_dir / RUN_CONFIG).exists():
        raise FileExistsError(f"{run_dir} already holds a run; continue it with --resume {run_dir} "
                              "or choose a new --out")
    if resume and cfg.data and not Path(cfg.data).is_dir():
        raise DataMoved(f"the training data of {run_dir}, {cfg.data}, is not there any more (moved or deleted). Put "
                        f"it back there, or pass its new location: gan train --resume {run_dir} --data NEW_PATH")
    created_run_dir = not run_dir.exists()
    if dist.is_main:
        check_writable_dir(run_dir, "the run folder")  # before any work: a read-only --out fails now
    try:
        data = load_image_folder(cfg.data, cfg.resolution, progress=progress and dist.is_main)
        trainer = Trainer(cfg, dist)
    except BaseException:
        if created_run_dir and dist.is_main and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()
        raise
    if dist.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        set_tf32(t.tf32)
    if len(data) <= FEW_IMAGES:
        log(few_images_warning(len(data), data.folder))
    last_snapshot = None
    recorded_data = None
    if resume:
        from .api import list_snapshots  # late import: api imports this module's constants
        if dist.is_main:
            stale = remove_stale_temp_files(ckpt_dir) + remove_stale_temp_files(sample_dir)
            if stale:
                log(f"removed {len(stale)} partial file(s) left by an interrupted write")
        dist.barrier()
        snapshots = list_snapshots(run_dir)
        if (run_dir / RUN_CONFIG).is_file():
            recorded_data = json.loads((run_dir / RUN_CONFIG).read_text()).get(RESOLVED_KEY, {}).get("data")
        if snapshots:
            last_snapshot = snapshots[-1].path
            meta = ckpt.read_metadata(last_snapshot)
            diffs = config_differences(meta["config"], cfg.to_dict())
            if diffs:
                raise ValueError(f"{last_snapshot} was written with a different configuration: "
                                 + "; ".join(diffs))
            recorded_data = meta["resolved"].get("data", recorded_data)
            _check_same_data(run_dir, recorded_data, data, cfg)
            trainer.load(last_snapshot)
            log(f"resuming from {last_snapshot.name} (kimg {trainer.nimg / 1000:.3f}, p {trainer.augment_pipe.p:.3f})")
        else:
            _check_same_data(run_dir, recorded_data, data, cfg)
            log("no complete snapshot yet: starting this run again from the beginning")
    elif cfg.transfer:
        log(f"transfer learning from {cfg.transfer}: {trainer.transfer_from(Path(cfg.transfer))}")
    resolved = trainer.resolved(data)
    log(describe(resolved))
    if dist.is_main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        sample_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / RUN_CONFIG, json.dumps({**cfg.to_dict(), RESOLVED_KEY: resolved}, indent=1))
        if trainer.nimg == 0:
            _truncate_log(run_dir / RUN_LOG, -1)
            (run_dir / RUN_LOG).touch()
            n = min(t.grid_size ** 2, len(data))
            reals = data.images[torch.randperm(len(data), generator=torch.Generator().manual_seed(t.seed))[:n]]
            save_png(image_grid(reals.permute(0, 2, 3, 1).numpy(), cols=t.grid_size), sample_dir / "reals.png")
        else:
            _truncate_log(run_dir / RUN_LOG, trainer.nimg)
    dist.barrier()

    stream = DataStream(data.images, t.seed, dist.rank, dist.world, mirror=t.mirror)
    total_nimg = int(round(t.total_kimg * 1000))
    log_every = max(int(round(t.log_kimg * 1000)), 1)
    snap_every = max(int(round(t.snapshot_kimg * 1000)), 1)
    grid_seeds = list(range(t.grid_size ** 2))
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    tick_time, tick_nimg, start_time = time.perf_counter(), trainer.nimg, time.perf_counter()
    bar = tqdm(total=round(t.total_kimg, 3), initial=round(trainer.nimg / 1000, 3), unit="kimg",
               disable=not (progress and dist.is_main), dynamic_ncols=True,
               bar_format="{l_bar}{bar}| {n:.2f}/{total:.2f} kimg [{elapsed}<{remaining}{postfix}]")
    log_file = open(run_dir / RUN_LOG, "a") if dist.is_main else None
    try:
        while trainer.nimg < total_nimg:
            prev_nimg = trainer.nimg
            losses = trainer.step(stream.batch(trainer.nimg, t.batch))
            values = torch.stack(list(losses.values()))
            if not bool(torch.isfinite(values).all()):
                bad = [k for k, v in losses.items() if not torch.isfinite(v)]
                raise TrainingDiverged(
                    f"loss {', '.join(bad)} became NaN/inf at kimg {trainer.nimg / 1000:.3f}; stopped. "
                    f"Last good snapshot: {last_snapshot or 'none yet'}. Resuming would replay the same "
                    f"steps; start a new run from it with --transfer and a lower --glr/--dlr or higher --gamma.")
            for k, v in losses.items():
                sums[k] = sums.get(k, 0) + v
                counts[k] = counts.get(k, 0) + 1
            bar.update(round(trainer.nimg / 1000, 3) - round(prev_nimg / 1000, 3))
            if on_step is not None:
                on_step(trainer)
            done = trainer.nimg >= total_nimg
            crossed = lambda every: trainer.nimg // every > prev_nimg // every  # noqa: E731
            snapshot_now = done or crossed(snap_every)
            if snapshot_now or crossed(log_every):
                now = time.perf_counter()
                synced = dist.sum_floats(*[float(sums[k]) for k in sums])
                entry = {"kimg": trainer.nimg / 1000, "nimg": trainer.nimg, "step": trainer.step_index,
                         **{f"loss_{k}": s / (counts[k] * dist.world) for k, s in zip(sums, synced)},
                         "ada_p": trainer.augment_pipe.p, "r_t": trainer.ada.last_rt,
                         "img_per_s": (trainer.nimg - tick_nimg) / max(now - tick_time, 1e-9),
                         "s_per_kimg": (now - tick_time) / max((trainer.nimg - tick_nimg) / 1000, 1e-9),
                         "time_s": now - start_time, "peak_mem_mb": peak_memory_mb(dist.device)}
                sums, counts, tick_time, tick_nimg = {}, {}, now, trainer.nimg
                if log_file:
                    log_file.write(json.dumps(entry) + "\n")
                    log_file.flush()
                bar.set_postfix_str(f"{entry['img_per_s']:.1f} img/s, G {entry.get('loss_G', 0):.3f}, "
                                    f"D {entry.get('loss_D', 0):.3f}, p {entry['ada_p']:.3f}", refresh=False)
            if snapshot_now:
                path = ckpt_dir / ckpt.snapshot_name(trainer.nimg)
                dist.check_in_sync(trainer.G, trainer.D)
                if dist.is_main:
                    # Checkpoint first: a full disk then leaves no sample grid without its checkpoint.
                    trainer.save(path, resolved)
                    grid = snapshot_grid(trainer.G_ema, grid_seeds, cols=t.grid_size)
                    save_png(grid, sample_dir / f"samples-{trainer.nimg / 1000:010.3f}.png")
                dist.barrier()
                last_snapshot = path
    finally:
        bar.close()
        if log_file:
            log_file.close()
        dist.close()
    log(f"done: {trainer.nimg / 1000:.3f} kimg; last snapshot {last_snapshot}")
    return last_snapshot
