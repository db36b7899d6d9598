"""GPU checks (marked `cuda`, skipped without a GPU; `python -m bench gpu` runs them on one).

Each compares the CUDA path with the CPU path on identical weights and data, or runs a short
training on the GPU end to end in every precision mode.
"""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from gan.api import list_snapshots, load_generator
from gan.augment import AugmentPipe
from gan.checkpoint import read_metadata
from gan.loss import StyleGAN2Loss
from gan.nets import build_discriminator, build_generator
from gan.precision import native_bf16
from gan.train import Distributed, train

from .conftest import small_cfg, tiny_config

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture(autouse=True)
def no_tf32():
    from gan.precision import set_tf32
    set_tf32(False)   # the comparisons below are fp32 against fp32


def test_cuda_resolves_to_an_indexed_device_and_set_device_accepts_it():
    for spec in ("cuda", "auto", "cuda:0"):
        dist = Distributed(spec)
        assert dist.device == torch.device("cuda:0")


def _r1(device: str, disc: str, reduced: torch.dtype, grid_sample: str, real: torch.Tensor):
    torch.manual_seed(0)
    cfg = small_cfg(32, disc)
    G, D = build_generator(cfg), build_discriminator(cfg)
    G, D = G.to(device), D.to(device)
    D.set_reduced_dtype(reduced)
    loss = StyleGAN2Loss(G, D, AugmentPipe(0.5, grid_sample=grid_sample), cfg.train)
    torch.manual_seed(7)                      # the augmentation is drawn on the CPU: the same on both devices
    r1 = loss.d_r1(real.to(device), gain=1.0)
    r1.backward()
    return r1.detach().cpu(), [p.grad.detach().cpu() for p in D.parameters() if p.grad is not None]


@pytest.mark.parametrize("disc", ["resnet", "vit"])
@pytest.mark.parametrize("mode", ["fp32", "mixed"])
@pytest.mark.parametrize("grid_sample", ["gradfix", "native"])
def test_r1_through_ada_on_cuda_equals_the_cpu(disc, mode, grid_sample):
    """p = 0.5, the same batch and weights: the R1 penalty and its gradient with respect to every D
    weight agree. In the mixed mode the D's blocks are set to bf16/fp16 as in training, and R1 must
    still be computed in fp32."""
    reduced = torch.float32 if mode == "fp32" else (torch.bfloat16 if native_bf16(torch.device("cuda")) else torch.float16)
    real = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    cpu_r1, cpu_grads = _r1("cpu", disc, torch.float32, grid_sample, real)
    gpu_r1, gpu_grads = _r1("cuda", disc, reduced, grid_sample, real)
    assert cpu_r1 > 0
    torch.testing.assert_close(gpu_r1, cpu_r1, rtol=1e-4, atol=0)
    for g_cpu, g_gpu in zip(cpu_grads, gpu_grads):
        assert torch.isfinite(g_gpu).all()
        assert (g_gpu - g_cpu).norm() <= 1e-3 * g_cpu.norm() + 1e-8


def test_mixed_precision_d_logits_stay_close_to_fp32_on_cuda():
    torch.manual_seed(0)
    cfg = small_cfg(32, "resnet")
    cfg.resnet.num_reduced_res = 2
    D = build_discriminator(cfg).cuda()
    x = torch.rand(16, 3, 32, 32, device="cuda") * 2 - 1
    full = D(x)
    D.set_reduced_dtype(torch.bfloat16 if native_bf16(torch.device("cuda")) else torch.float16)
    mixed = D(x)
    assert mixed.dtype == torch.float32
    assert (mixed - full).abs().max() <= 0.05 * full.abs().max()


@pytest.mark.parametrize("precision", ["auto", "fp16", "fp32"])
def test_a_short_run_trains_saves_and_samples_on_the_gpu(tmp_path, toy_data, precision):
    cfg = tiny_config(toy_data, total_kimg=0.032, snapshot_kimg=0.016, log_kimg=0.008)
    cfg.train.precision = precision
    cfg.G.num_reduced_res = cfg.resnet.num_reduced_res = 2
    cfg.train.channels_last = cfg.train.fused_adam = precision == "auto"
    run = tmp_path / "run"
    train(cfg, run, progress=False, device="cuda")
    resolved = json.loads((run / "config.json").read_text())["resolved"]
    expected = {"auto": "bf16" if native_bf16(torch.device("cuda")) else "fp16"}.get(precision, precision)
    assert resolved["precision"]["reduced"] == expected and resolved["device"] == "cuda:0"
    assert resolved["precision"]["loss_scaling"] == (expected == "fp16")
    state = read_metadata(list_snapshots(run)[-1].path)["state"]
    assert ("grad_scaler_G" in state) == (expected == "fp16")
    images = np.concatenate(list(load_generator(run, device="cpu").images(seeds=range(4))))
    on_gpu = np.concatenate(list(load_generator(run, device="cuda").images(seeds=range(4))))
    assert np.abs(images.astype(int) - on_gpu.astype(int)).max() <= 2     # fp32 sampling on both devices


def test_resume_on_the_gpu_continues_exactly(tmp_path, toy_data):
    cfg = tiny_config(toy_data, total_kimg=0.016, snapshot_kimg=0.008, log_kimg=0.008)
    cfg.train.precision = "fp32"
    ref = tmp_path / "ref"
    train(copy.deepcopy(cfg), ref, progress=False, device="cuda")
    part = tmp_path / "part"
    short = copy.deepcopy(cfg)
    short.train.total_kimg = 0.008
    train(short, part, progress=False, device="cuda")
    train(copy.deepcopy(cfg), part, resume=True, progress=False, device="cuda")
    a = load_generator(ref, device="cpu").G.state_dict()
    b = load_generator(part, device="cpu").G.state_dict()
    for key in a:
        # cuDNN may pick other (equally valid) algorithms in the two processes: equal up to rounding
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-4, msg=key)
