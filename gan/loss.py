"""StyleGAN2 losses: non-saturating logistic loss, lazy R1 (through the augmentation), path length.

Each method returns a scalar to call `.backward()` on; regularisers are already multiplied by
their lazy interval ("gain"), as in StyleGAN2-ADA's `training/loss.py`.

Precision: the main phases run G and D as they are set (their highest-resolution blocks in the
reduced type, see `gan/precision.py`); R1 and path length run both networks entirely in fp32.
The losses themselves are computed from fp32 logits.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .augment import AugmentPipe
from .config import TrainConfig
from .precision import full_precision


class StyleGAN2Loss:
    def __init__(self, G, D, augment_pipe: AugmentPipe, cfg: TrainConfig):
        self.G, self.D, self.augment_pipe, self.cfg = G, D, augment_pipe, cfg
        self.pl_mean = torch.zeros([], device=next(G.parameters()).device)

    def run_G(self, z: torch.Tensor, update_w_avg: bool = True):
        """Generate with style mixing: with probability `style_mixing` the ws after a random
        cutoff come from a second latent (which does not move w_avg)."""
        mapping = self.G.mapping
        ws = mapping(z, update_w_avg=update_w_avg)
        if self.cfg.style_mixing > 0:
            num_ws = ws.shape[1]
            cutoff = torch.randint(1, num_ws, [], device=ws.device) if num_ws > 1 else torch.tensor(num_ws)
            cutoff = torch.where(torch.rand([], device=ws.device) < self.cfg.style_mixing,
                                 cutoff, torch.full_like(cutoff, num_ws))
            mixed = mapping(torch.randn_like(z))
            take_second = torch.arange(num_ws, device=ws.device) >= cutoff
            ws = torch.where(take_second.reshape(1, -1, 1), mixed, ws)
        return self.G.synthesis(ws, noise_mode="random"), ws

    def run_D(self, img: torch.Tensor) -> torch.Tensor:
        return self.D(self.augment_pipe(img)).float()

    def g_main(self, z: torch.Tensor) -> torch.Tensor:
        img, _ = self.run_G(z)
        logits = self.run_D(img)
        return F.softplus(-logits).mean()  # -log sigmoid(D(G(z)))

    def g_path_length(self, z: torch.Tensor, gain: float) -> torch.Tensor:
        """Path-length regulariser in fp32: |J_w^T y| should stay near its running mean."""
        batch = max(z.shape[0] // self.cfg.pl_batch_shrink, 1)
        with full_precision(self.G.synthesis):
            img, ws = self.run_G(z[:batch])
        noise = torch.randn_like(img) / np.sqrt(img.shape[2] * img.shape[3])
        (grads,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
        lengths = grads.square().sum(2).mean(1).sqrt()
        pl_mean = self.pl_mean.lerp(self._mean_across_ranks(lengths.mean().detach()), self.cfg.pl_decay)
        self.pl_mean.copy_(pl_mean.detach())
        penalty = (lengths - pl_mean).square()
        # `img[:, 0, 0, 0] * 0` keeps the synthesis graph in the backward, as SG2ADA does.
        return (img[:, 0, 0, 0] * 0 + penalty * self.cfg.pl_weight).mean() * gain

    def d_main(self, real: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """softplus(D(G(z))) + softplus(-D(x)); returns (loss, real logits for the ADA heuristic)."""
        with torch.no_grad():
            fake, _ = self.run_G(z, update_w_avg=False)
        fake_logits = self.run_D(fake)
        real_logits = self.run_D(real)
        loss = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
        return loss, real_logits.detach()

    def d_r1(self, real: torch.Tensor, gain: float) -> torch.Tensor:
        """gamma/2 * |grad_x D(aug(x))|^2, differentiated through the augmentation, in fp32."""
        real = real.detach().requires_grad_(True)
        with full_precision(self.D):
            logits = self.run_D(real)
        (grads,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
        penalty = grads.square().sum([1, 2, 3])
        return (logits * 0 + penalty * (self.cfg.r1_gamma / 2)).mean() * gain

    @staticmethod
    def _mean_across_ranks(value: torch.Tensor) -> torch.Tensor:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            value = value.clone()
            torch.distributed.all_reduce(value)
            value /= torch.distributed.get_world_size()
        return value
