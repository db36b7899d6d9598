"""Adaptive discriminator augmentation: the 'bgc' pipeline (blit + geometric + colour) and the p heuristic.

Every op is an ordinary differentiable tensor op, so R1 can be taken *through* the augmentation.
Bilinear sampling goes through `gan/gradfix.py` by default (its own double backward, as
StyleGAN2-ADA's `grid_sample_gradfix`); `grid_sample="native"` uses torch's, which works on
torch 2.14.1 (anchors-gan-training.md section 2). The whole pipe runs in fp32, even inside a
reduced-precision region: in bf16, `affine_grid` misplaces sample points by up to 0.76 px at 256 px.

Each op fires independently per image with probability p; the integer and the fractional
translation each draw one gate per image for both axes together, as StyleGAN2-ADA does.

Geometric ops are one bilinear `grid_sample` with reflection padding. As in StyleGAN2-ADA, an image
whose transform resamples (scaling, arbitrary rotation, fractional translation) is upsampled 2x
with a 12-tap low-pass filter first and low-pass filtered and downsampled after, so that bilinear
interpolation blurs and aliases less. One difference: an image whose transform only moves whole
pixels (flips, quarter turns, integer translations, or nothing) is sampled at its own resolution,
which is exact, instead of also passing through the filters.

One deliberate change against StyleGAN2-ADA:
- p is clamped to [0, p_max] with p_max < 1 (SG2ADA clamps at 0 only and p can run past 1,
  which leaks augmentations into the generator, NVlabs/stylegan2-ada-pytorch#175).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import gradfix
from .precision import compute_region


def _halfband_lowpass(taps: int = 12, beta: float = 6.0) -> torch.Tensor:
    """Kaiser-windowed sinc with its cut-off at half the 2x-upsampled band (unit DC gain). Even
    length, so it is centred between two samples, as 2x resampling on pixel centres needs."""
    n = torch.arange(taps, dtype=torch.float64) - (taps - 1) / 2
    h = torch.sinc(n / 2) * torch.kaiser_window(taps, periodic=False, beta=beta, dtype=torch.float64)
    return (h / h.sum()).float()


LOWPASS = _halfband_lowpass()


def _filter_separable(x: torch.Tensor, pad: tuple[int, int], stride: int = 1) -> torch.Tensor:
    c = x.shape[1]
    f = LOWPASS.to(x.device, x.dtype)
    x = F.conv2d(F.pad(x, [pad[0], pad[1], 0, 0]), f.reshape(1, 1, 1, -1).expand(c, 1, 1, -1),
                 stride=(1, stride), groups=c)
    return F.conv2d(F.pad(x, [0, 0, pad[0], pad[1]]), f.reshape(1, 1, -1, 1).expand(c, 1, -1, 1),
                    stride=(stride, 1), groups=c)


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """2x upsampling on pixel centres: reflect-pad 3 px, zero-insert, low-pass, crop."""
    b, c, h, w = x.shape
    x = F.pad(x, [3, 3, 3, 3], mode="reflect")
    z = x.new_zeros(b, c, 2 * (h + 6), 2 * (w + 6))
    z[:, :, ::2, ::2] = x * 4
    return _filter_separable(z, (6, 5))[:, :, 6:-6, 6:-6]


def downsample2x(x: torch.Tensor) -> torch.Tensor:
    """The inverse step: reflect-pad 6 px, low-pass, keep every other sample, crop."""
    return _filter_separable(F.pad(x, [6, 6, 6, 6], mode="reflect"), (5, 5), stride=2)[:, :, 3:-3, 3:-3]


def _moves_whole_pixels(G: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Per image: does the output->input matrix only permute pixels (entries 0/±1, translation a
    whole number of pixels)? Then bilinear sampling at the image's own resolution is exact."""
    a = G[:, :2, :2]
    t = G[:, :2, 2] * torch.tensor([w / 2, h / 2], device=G.device, dtype=G.dtype)
    near = lambda v: (v - v.round()).abs().amax(dim=tuple(range(1, v.ndim))) < 1e-5  # noqa: E731
    return near(a) & near(t)


def warp(images: torch.Tensor, G: torch.Tensor, grid_sample: str = "gradfix") -> torch.Tensor:
    """Apply output->input matrices G [B, 3, 3] (grid_sample's [-1, 1] coordinates) with reflection
    padding, oversampling 2x the images whose transform resamples.

    G may live on the CPU while the images are on a GPU: the routing (which images resample) is then
    decided on the CPU, without waiting for the GPU."""
    def sample(x, m):
        grid = F.affine_grid(m[:, :2, :].to(x.device, x.dtype), list(x.shape), align_corners=False)
        if grid_sample == "gradfix":
            return gradfix.grid_sample(x, grid, padding_mode="reflection")
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    exact = _moves_whole_pixels(G, images.shape[2], images.shape[3])
    if bool(exact.all()):
        return sample(images, G)
    out = images
    whole = torch.nonzero(exact).flatten()
    if whole.numel():
        on = whole.to(images.device)
        out = out.index_copy(0, on, sample(images[on], G[whole]))
    idx = torch.nonzero(~exact).flatten()
    on = idx.to(images.device)
    return out.index_copy(0, on, downsample2x(sample(upsample2x(images[on]), G[idx])))


# Op strengths from SG2ADA's defaults.
XINT_MAX, SCALE_STD, ROTATE_MAX, ANISO_STD, XFRAC_STD = 0.125, 0.2, 1.0, 0.2, 0.125
BRIGHTNESS_STD, CONTRAST_STD, HUE_MAX, SATURATION_STD = 0.2, 0.5, 1.0, 1.0


def _eye(n: int, batch: int, device) -> torch.Tensor:
    return torch.eye(n, device=device).unsqueeze(0).repeat(batch, 1, 1)


def _matrix(rows, device) -> torch.Tensor:
    """Batched matrix from rows of scalars/[B] tensors."""
    batch = next(e.shape[0] for row in rows for e in row if torch.is_tensor(e))
    cols = [torch.as_tensor(e, dtype=torch.float32, device=device).expand(batch) if not torch.is_tensor(e) else e
            for row in rows for e in row]
    return torch.stack(cols, dim=1).reshape(batch, len(rows), len(rows[0]))


def translate2d(tx, ty):
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], tx.device)


def scale2d(sx, sy):
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], sx.device)


def rotate2d(theta):
    c, s = torch.cos(theta), torch.sin(theta)
    return _matrix([[c, -s, 0], [s, c, 0], [0, 0, 1]], theta.device)


def translate3d(t):
    return _matrix([[1, 0, 0, t], [0, 1, 0, t], [0, 0, 1, t], [0, 0, 0, 1]], t.device)


def scale3d(s):
    return _matrix([[s, 0, 0, 0], [0, s, 0, 0], [0, 0, s, 0], [0, 0, 0, 1]], s.device)


def rotate3d(axis: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Rodrigues rotation about a unit axis (3,), as 4x4 homogeneous matrices."""
    x, y, z = axis
    c, s = torch.cos(theta), torch.sin(theta)
    k = 1 - c
    return _matrix([[x * x * k + c, x * y * k - z * s, x * z * k + y * s, 0],
                    [y * x * k + z * s, y * y * k + c, y * z * k - x * s, 0],
                    [z * x * k - y * s, z * y * k + x * s, z * z * k + c, 0],
                    [0, 0, 0, 1]], theta.device)


def geometric_matrix(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """[B, 3, 3] output->input matrices in grid_sample's [-1, 1] coordinates. Every op's distribution
    is symmetric, so composing the inverse ops directly is equivalent to inverting the forward ones."""
    b, dev = params["xflip"].shape[0], params["xflip"].device
    G = _eye(3, b, dev)
    G = G @ scale2d(1 - 2 * params["xflip"], torch.ones(b, device=dev))
    G = G @ rotate2d(-math.pi / 2 * params["rotate90"])
    G = G @ translate2d(params["xint"][:, 0], params["xint"][:, 1])
    G = G @ scale2d(params["scale"], params["scale"])
    G = G @ rotate2d(-params["rotate_pre"])
    G = G @ scale2d(params["aniso"], 1 / params["aniso"])
    G = G @ rotate2d(-params["rotate_post"])
    return G @ translate2d(params["xfrac"][:, 0], params["xfrac"][:, 1])


def colour_matrix(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """[B, 4, 4] homogeneous colour transforms (brightness, contrast, luma flip, hue, saturation)."""
    b, dev = params["brightness"].shape[0], params["brightness"].device
    luma = torch.tensor([1.0, 1.0, 1.0], device=dev) / math.sqrt(3)
    luma4 = torch.cat([luma, torch.zeros(1, device=dev)])
    luma_outer = torch.outer(luma4, luma4).unsqueeze(0)
    C = _eye(4, b, dev)
    C = translate3d(params["brightness"]) @ C
    C = scale3d(params["contrast"]) @ C
    C = (_eye(4, b, dev) - 2 * luma_outer * params["lumaflip"].reshape(b, 1, 1)) @ C   # Householder about luma
    C = rotate3d(luma, params["hue"]) @ C
    return (luma_outer + (_eye(4, b, dev) - luma_outer) * params["saturation"].reshape(b, 1, 1)) @ C


class AugmentPipe(nn.Module):
    """Applies each bgc op independently per image with probability p (p is a float attribute), in fp32.

    `sample` draws every op's parameters and `apply` executes them; `forward` does both, drawing on
    the CPU (from torch's global generator, which training re-seeds every step), so one seed gives
    the same augmentation on any device, and the GPU never waits for the random draws."""

    def __init__(self, p: float = 0.0, grid_sample: str = "gradfix"):
        super().__init__()
        self.p = float(p)
        self.grid_sample = grid_sample

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.p <= 0:
            return images
        b, _, h, w = images.shape
        return self.apply(images, self.sample(b, h, w, "cpu"))

    def _gate(self, values: torch.Tensor, identity: float, prob: float | None = None) -> torch.Tensor:
        """Keep each image's value with probability p (or `prob`), else the identity value. `values`
        is [B] or [B, k]: one gate per image either way, shared by its k components."""
        fire = torch.rand(values.shape[0], device=values.device) < (self.p if prob is None else prob)
        fire = fire.reshape(-1, *([1] * (values.ndim - 1)))
        return torch.where(fire, values, torch.full_like(values, identity))

    def sample(self, b: int, h: int, w: int, device) -> dict[str, torch.Tensor]:
        """Every op's parameters for b images of h x w (the identity value where an op does not fire).
        Translations are in grid_sample units (2 = the image width); integer ones move whole pixels."""
        rand = lambda *shape: torch.rand(*shape, device=device)    # noqa: E731
        randn = lambda *shape: torch.randn(*shape, device=device)  # noqa: E731
        size = torch.tensor([w, h], device=device, dtype=torch.float32)
        p_rot = 1 - math.sqrt(max(1 - self.p, 0.0))  # two rotations: P(any) ~= p
        out = {}
        out["xflip"] = self._gate(torch.randint(0, 2, [b], device=device).float(), 0)
        out["rotate90"] = self._gate(torch.randint(0, 4, [b], device=device).float(), 0)
        out["xint"] = self._gate(torch.round((rand(b, 2) * 2 - 1) * XINT_MAX * size) * 2 / size, 0)
        out["scale"] = self._gate(torch.exp2(randn(b) * SCALE_STD), 1)
        out["rotate_pre"] = self._gate((rand(b) * 2 - 1) * math.pi * ROTATE_MAX, 0, p_rot)
        out["aniso"] = self._gate(torch.exp2(randn(b) * ANISO_STD), 1)
        out["rotate_post"] = self._gate((rand(b) * 2 - 1) * math.pi * ROTATE_MAX, 0, p_rot)
        out["xfrac"] = self._gate(randn(b, 2) * XFRAC_STD * 2, 0)
        out["brightness"] = self._gate(randn(b) * BRIGHTNESS_STD, 0)
        out["contrast"] = self._gate(torch.exp2(randn(b) * CONTRAST_STD), 1)
        out["lumaflip"] = self._gate(torch.randint(0, 2, [b], device=device).float(), 0)
        out["hue"] = self._gate((rand(b) * 2 - 1) * math.pi * HUE_MAX, 0)
        out["saturation"] = self._gate(torch.exp2(randn(b) * SATURATION_STD), 1)
        return out

    def apply(self, images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """The ops with `params` (on any device; the small matrices are built where they are)."""
        with compute_region(torch.float32, images.device.type):
            images = warp(images.float(), geometric_matrix(params), self.grid_sample)
            b, c, h, w = images.shape
            C = colour_matrix(params).to(images.device)
            x = C[:, :3, :3] @ images.reshape(b, c, h * w) + C[:, :3, 3:]
            return x.reshape(b, c, h, w)


class AdaptiveP:
    """The ADA heuristic: every `interval` minibatches, p += sign(r_t - target) * step, r_t = E[sign(D(real))]."""

    def __init__(self, pipe: AugmentPipe, target: float = 0.6, interval: int = 4, ada_kimg: float = 500.0,
                 p_max: float = 0.99, enabled: bool = True):
        if not 0 <= p_max < 1:
            raise ValueError("p_max must be in [0, 1)")
        self.pipe, self.target, self.interval, self.ada_kimg = pipe, target, interval, ada_kimg
        self.p_max, self.enabled = p_max, enabled
        self.sign_sum, self.count, self.last_rt = 0.0, 0, None

    def accumulate(self, real_logits: torch.Tensor) -> None:
        # Kept as a tensor so CUDA does not synchronise every minibatch.
        self.sign_sum = self.sign_sum + torch.sign(real_logits.detach().float()).sum()
        self.count += real_logits.numel()

    def step(self, batch_index: int, batch_size: int, sync=None) -> None:
        """Call after every minibatch; adjusts p every `interval` minibatches.

        `sync` (optional) sums (sign_sum, count) over processes so all ranks agree on p.
        """
        if not self.enabled or (batch_index + 1) % self.interval:
            return
        total, count = float(self.sign_sum), self.count
        if sync is not None:
            total, count = sync(total, count)
        if count:
            self.last_rt = total / count
            adjust = math.copysign(1.0, self.last_rt - self.target) * batch_size * self.interval / (self.ada_kimg * 1000)
            if self.last_rt == self.target:
                adjust = 0.0
            self.pipe.p = float(min(max(self.pipe.p + adjust, 0.0), self.p_max))
        self.sign_sum, self.count = 0.0, 0
