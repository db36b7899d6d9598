"""Training configuration as plain dataclasses, plus the named presets.

Every size that matters is a field here, so a run is fully described by `RunConfig.to_dict()`
(written to `config.json` and into every checkpoint's metadata) and rebuilt by `from_dict`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

# What --precision accepts (gan/precision.py resolves it); here so `gan --help` needs no torch.
PRECISIONS = ("auto", "bf16", "fp16", "fp32")


# config.json's record of what a run resolved to on its machine (device, precision per part,
# parameter counts, learning rates, data size): written next to the config, never read back into it.
RESOLVED_KEY = "resolved"


def is_power_of_two(n: int) -> bool:
    return isinstance(n, int) and n > 0 and (n & (n - 1)) == 0


@dataclass
class GeneratorConfig:
    z_dim: int = 512
    w_dim: int = 512
    mapping: str = "standard"        # "standard" (the StyleGAN2 MLP) or "per-res" (one style per resolution level)
    mapping_layers: int = 2          # standard: MLP depth; per-res: shared trunk depth before the levels
    mapping_lr_mult: float = 0.01
    w_avg_beta: float = 0.995
    channel_base: int = 16384        # channels at resolution r: min(channel_base // r, channel_max)
    channel_max: int = 512
    conv_clamp: float | None = 256.0
    num_reduced_res: int = 4         # the N highest resolutions run in reduced precision (StyleGAN2-ADA num_fp16_res)


@dataclass
class ResNetDConfig:
    channel_base: int = 16384
    channel_max: int = 512
    mbstd_group: int = 4
    mbstd_channels: int = 1
    conv_clamp: float | None = 256.0
    num_reduced_res: int = 4         # the N highest-resolution blocks run in reduced precision; epilogue fp32


@dataclass
class ViTDConfig:
    dim: int = 384
    depth: int = 6
    heads: int = 6
    mlp_ratio: float = 4.0
    patch: int = 0                   # patch stride in pixels; 0 = resolution // 16 (a 16x16 token grid)
    extend: int = -1                 # overlap on each side; -1 = max(patch // 4, 1)
    dropout: float = 0.0
    mbstd_group: int = 4             # minibatch-std group size on the class token before the head (0 = off)
    mbstd_channels: int = 1
    num_reduced_blocks: int = -1     # transformer blocks in reduced precision, from the input side (-1 = all)


@dataclass
class TrainConfig:
    batch: int = 32                  # global batch (split across GPUs under torchrun)
    total_kimg: float = 5000.0
    snapshot_kimg: float = 100.0
    log_kimg: float = 4.0            # one log.jsonl line per this many kimg
    g_lr: float = 0.0025
    d_lr: float = 0.0025
    betas: tuple[float, float] = (0.0, 0.99)
    eps: float = 1e-8
    r1_gamma: float = 0.0256
    d_reg_interval: int = 16         # lazy R1 every this many minibatches (0 = no R1)
    pl_weight: float = 2.0           # path-length regularisation weight (0 = off)
    g_reg_interval: int = 4
    pl_batch_shrink: int = 2
    pl_decay: float = 0.01
    style_mixing: float = 0.9        # probability of mixing two latents during training
    ema_kimg: float = 10.0           # G_ema half-life in thousands of images
    ema_rampup: float | None = 0.05  # cap the half-life at this fraction of the images seen (None = off)
    precision: str = "auto"          # auto | bf16 | fp16 | fp32 for the reduced-precision blocks (gan/precision.py)
    tf32: bool = False               # let fp32 matmuls/convs use TF32 on Ampere+ GPUs (StyleGAN2-ADA: off)
    mirror: bool = False             # add every image's x-flip to the data (doubles the distinct images)
    channels_last: bool = False      # NHWC activations in the reduced-precision blocks (GPU speed lever)
    fused_adam: bool = False         # torch's fused Adam kernel on CUDA (GPU speed lever)
    seed: int = 0
    grid_size: int = 8               # the snapshot sample grid is grid_size x grid_size seeds


@dataclass
class AugmentConfig:
    ada: bool = True                 # adaptive p; if False p stays at `p`
    p: float = 0.0                   # initial (or fixed) augmentation probability
    target: float = 0.6              # r_t target
    interval: int = 4                # adjust p every this many minibatches
    ada_kimg: float = 500.0          # p can move by 1.0 per this many kimg
    p_max: float = 0.99              # p stays in [0, p_max] with p_max < 1 (see augment.py)
    grid_sample: str = "gradfix"     # "gradfix": own double backward (StyleGAN2-ADA grid_sample_gradfix); "native"


@dataclass
class RunConfig:
    data: str = ""                   # absolute path of the training image folder
    resolution: int = 64
    disc: str = "resnet"             # "resnet" or "vit"
    preset: str | None = None
    G: GeneratorConfig = field(default_factory=GeneratorConfig)
    resnet: ResNetDConfig = field(default_factory=ResNetDConfig)
    vit: ViTDConfig = field(default_factory=ViTDConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    transfer: str | None = None      # checkpoint the networks were initialised from

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        d = {k: v for k, v in d.items() if k != RESOLVED_KEY}
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        subs = {"G": GeneratorConfig, "resnet": ResNetDConfig, "vit": ViTDConfig,
                "train": TrainConfig, "augment": AugmentConfig}
        for key, sub_cls in subs.items():
            if key in d:
                d[key] = _sub_from_dict(sub_cls, d[key], key)
        return cls(**d)

    def validate(self) -> "RunConfig":
        """Raise ValueError naming the bad field and what would be valid."""
        if not is_power_of_two(self.resolution) or self.resolution < 8:
            raise ValueError(f"resolution {self.resolution} is not a power of two >= 8 "
                             "(use 16, 32, 64, 128, 256, ...)")
        if self.disc not in ("resnet", "vit"):
            raise ValueError(f"disc must be 'resnet' or 'vit', not {self.disc!r}")
        if self.G.mapping not in ("standard", "per-res"):
            raise ValueError(f"G.mapping must be 'standard' or 'per-res', not {self.G.mapping!r}")
        if self.disc == "vit":
            if self.resolution < 16:
                raise ValueError("the ViT discriminator needs resolution >= 16")
            patch, ext = vit_patch_geometry(self.vit, self.resolution)
            if self.resolution % patch:
                raise ValueError(f"vit.patch {patch} does not divide resolution {self.resolution}")
            if self.vit.dim % self.vit.heads:
                raise ValueError(f"vit.dim {self.vit.dim} is not divisible by vit.heads {self.vit.heads}")
            if self.vit.mbstd_group < 0 or self.vit.mbstd_channels < 1:
                raise ValueError("vit.mbstd_group must be >= 0 (0 = off) and vit.mbstd_channels >= 1")
            if self.vit.dim % self.vit.mbstd_channels:
                raise ValueError(f"vit.dim {self.vit.dim} is not divisible by vit.mbstd_channels {self.vit.mbstd_channels}")
        if self.G.num_reduced_res < 0 or self.resnet.num_reduced_res < 0:
            raise ValueError("G.num_reduced_res and resnet.num_reduced_res must be >= 0 (0 = all fp32)")
        t = self.train
        if t.batch < 1:
            raise ValueError("train.batch must be >= 1")
        if t.precision not in PRECISIONS:
            raise ValueError(f"train.precision must be one of {', '.join(PRECISIONS)}, not {t.precision!r}")
        if self.augment.grid_sample not in ("gradfix", "native"):
            raise ValueError(f"augment.grid_sample must be 'gradfix' or 'native', not {self.augment.grid_sample!r}")
        if not 0.0 <= self.augment.p_max < 1.0:
            raise ValueError("augment.p_max must be in [0, 1)")
        if not 0.0 <= self.augment.p <= self.augment.p_max:
            raise ValueError(f"augment.p must be in [0, {self.augment.p_max}]")
        for name in ("g_lr", "d_lr", "total_kimg", "snapshot_kimg", "log_kimg"):
            if getattr(t, name) <= 0:
                raise ValueError(f"train.{name} must be > 0")
        return self


def _sub_from_dict(sub_cls, values: dict, key: str):
    known = {f.name for f in dataclasses.fields(sub_cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown config keys in {key!r}: {sorted(unknown)}")
    values = dict(values)
    if "betas" in values:
        values["betas"] = tuple(float(b) for b in values["betas"])  # JSON lists -> float tuple
    return sub_cls(**values)


def vit_patch_geometry(vit: ViTDConfig, resolution: int) -> tuple[int, int]:
    """(patch stride, overlap per side) for a resolution, resolving the 'auto' values."""
    patch = vit.patch or max(resolution // 16, 2)
    ext = vit.extend if vit.extend >= 0 else max(patch // 4, 1)
    return patch, ext


def auto_train_config(resolution: int) -> TrainConfig:
    """SG2ADA's `--cfg=auto` rules for one GPU (anchors-gan-training.md section 1)."""
    batch = max(min(4096 // resolution, 32), 1)
    return TrainConfig(batch=batch, r1_gamma=0.0002 * resolution ** 2 / batch, ema_kimg=batch * 10 / 32)


def preset(name: str, resolution: int | None = None, disc: str = "resnet") -> RunConfig:
    """A named starting point; CLI flags override single fields afterwards.

    cpu-tiny: 32 px, a few hundred thousand parameters per network, so one network pair trains at
      tens of images/s on a 2-core CPU and shows recognisable colour/layout within minutes.
    smoke: cpu-tiny with 32-channel networks and batch 4, for tests and smoke runs.
    gpu: SG2ADA `auto` at 64 px (cbase 16384, map depth 2); ViT-D with a 16x16 grid of patches
      overlapping by a quarter patch on each side (at 256 px: 24 px windows at stride 16, the
      geometry of the CcccYxx/stylegan2-ada-pytorch ViT-D), dim 384, 6 blocks, and a 10x smaller D
      learning rate (at 0.0025 that ViT-D failed to train: Chang 2023, "Anime ViT-StyleGAN2", UCLA CS188
      project page, https://ucladeepvision.github.io/CS188-Projects-2023Winter/2023/03/25/team09-AnimeGAN.html).
    """
    if name == "cpu-tiny":
        res = resolution or 32
        cfg = RunConfig(
            resolution=res, disc=disc, preset=name,
            G=GeneratorConfig(z_dim=64, w_dim=64, mapping_layers=2, channel_base=1024, channel_max=64),
            resnet=ResNetDConfig(channel_base=1024, channel_max=64, mbstd_group=4),
            vit=ViTDConfig(dim=64, depth=2, heads=4, mlp_ratio=2.0, patch=max(res // 8, 2)),
            train=TrainConfig(batch=8, total_kimg=6.0, snapshot_kimg=1.5, log_kimg=0.2,
                              g_lr=0.002, d_lr=0.002, r1_gamma=0.05, pl_weight=0.0,
                              ema_kimg=0.5, ema_rampup=0.05, style_mixing=0.5, grid_size=6),
            augment=AugmentConfig(ada_kimg=20.0),
        )
        if disc == "vit":
            cfg.train.d_lr = 0.001
        return cfg
    if name == "smoke":
        # cpu-tiny shrunk until a step takes tens of milliseconds: for tests and `evalkit demo --preset smoke`
        cfg = preset("cpu-tiny", resolution, disc)
        cfg.preset = name
        cfg.G.z_dim = cfg.G.w_dim = 32
        cfg.G.channel_max = cfg.resnet.channel_max = 32
        cfg.vit.dim, cfg.vit.heads = 32, 2
        cfg.train.batch = 4
        cfg.train.grid_size = 2
        return cfg
    if name == "gpu":
        res = resolution or 64
        train = auto_train_config(res)
        train.snapshot_kimg = 50.0
        cfg = RunConfig(resolution=res, disc=disc, preset=name, train=train,
                        vit=ViTDConfig(dim=384, depth=6, heads=6, patch=0, extend=-1))
        if disc == "vit":
            cfg.train.d_lr = 0.00025
        return cfg
    raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")


PRESETS = ("cpu-tiny", "smoke", "gpu")
