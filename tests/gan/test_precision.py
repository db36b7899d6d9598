"""Where reduced precision is used (gan/precision.py), the grid_sample gradfix, and gradient clean-up."""
from __future__ import annotations

import pytest
import torch

from gan.augment import AugmentPipe
from gan.loss import StyleGAN2Loss
from gan.nets import build_discriminator, build_generator
from gan.precision import nan_to_num_grads, resolve_precision
from gan.train import Distributed, Trainer
from harness_base.errors import UsageError

from .conftest import small_cfg


@pytest.mark.parametrize("requested, device, native, expected", [
    ("auto", "cuda", True, "bf16"), ("auto", "cuda", False, "fp16"), ("auto", "cpu", False, "fp32"),
    ("fp32", "cuda", True, "fp32"), ("fp16", "cuda", True, "fp16"), ("bf16", "cuda", True, "bf16"),
    ("bf16", "cpu", False, "bf16"), ("fp32", "cpu", False, "fp32"),
])
def test_precision_policy(requested, device, native, expected):
    assert resolve_precision(requested, device, native) == expected


@pytest.mark.parametrize("requested, device, native, message", [
    ("bf16", "cuda", False, "no native bf16"), ("fp16", "cpu", False, "needs a GPU"), ("half", "cuda", True, "one of"),
])
def test_precision_policy_refuses_what_the_device_cannot_do(requested, device, native, message):
    with pytest.raises(UsageError, match=message):
        resolve_precision(requested, device, native)


def _dtype_recorder(records: dict, name: str):
    def hook(module, inputs, output):
        records.setdefault(name, set()).add(output.dtype)
    return hook


@pytest.mark.parametrize("disc", ["resnet", "vit"])
def test_under_an_autocast_stand_in_the_sensitive_parts_stay_fp32(disc, tmp_path):
    """CPU autocast to bf16 stands in for a GPU's mixed precision around a whole training phase:
    the mapping output, the ADA-warped images (affine_grid / grid_sample / filters) and D's logits
    are fp32 and equal their fp32 values exactly, while the high-resolution blocks run in bf16."""
    cfg = small_cfg(32, disc)
    cfg.G.num_reduced_res = cfg.resnet.num_reduced_res = 2       # 16 and 32 px reduced; 4 and 8 px fp32
    cfg.train.precision = "bf16"
    cfg.data = str(tmp_path)
    torch.manual_seed(0)
    trainer = Trainer(cfg.validate(), Distributed("cpu"))
    assert trainer.precision == "bf16"
    G, D = trainer.G, trainer.D
    records = {}
    G.mapping.register_forward_hook(_dtype_recorder(records, "mapping"))
    trainer.augment_pipe.register_forward_hook(_dtype_recorder(records, "augment"))
    for block in G.synthesis.blocks:
        block.conv1.register_forward_hook(_dtype_recorder(records, f"G{block.resolution}"))
    z, real = torch.randn(4, 32), torch.rand(4, 3, 32, 32) * 2 - 1
    pipe = AugmentPipe(0.5)
    params = pipe.sample(4, 32, 32, "cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ws = G.mapping(z)
        augmented = pipe.apply(real, params)
        logits = D(augmented)
        g_loss = trainer.loss.g_main(z)
    assert ws.dtype == augmented.dtype == logits.dtype == torch.float32
    assert torch.equal(ws, G.mapping(z))                         # not merely cast back: computed in fp32
    assert torch.equal(augmented, pipe.apply(real, params))
    assert records["mapping"] == records["augment"] == {torch.float32}
    assert records["G4"] == records["G8"] == {torch.float32}
    assert records["G16"] == records["G32"] == {torch.bfloat16}
    g_loss.backward()
    assert torch.isfinite(g_loss) and all(torch.isfinite(p.grad).all() for p in G.parameters() if p.grad is not None)
    resolved = trainer.resolved()["precision"]
    assert resolved["G"] == {"mapping": "fp32", "4px": "fp32", "8px": "fp32", "16px": "bf16", "32px": "bf16",
                             "skip_image": "fp32"}
    assert resolved["augment"] == resolved["r1"] == resolved["path_length"] == "fp32"


def test_r1_and_path_length_run_in_fp32_even_with_reduced_blocks(tmp_path):
    cfg = small_cfg(32, "resnet")
    cfg.train.precision = "bf16"
    cfg.data = str(tmp_path)
    torch.manual_seed(0)
    trainer = Trainer(cfg.validate(), Distributed("cpu"))
    seen = set()
    for block in trainer.D.blocks:
        block.conv1.register_forward_hook(lambda m, i, o: seen.add(o.dtype))
    trainer.loss.d_r1(torch.rand(4, 3, 32, 32) * 2 - 1, gain=1.0)
    assert seen == {torch.float32}
    seen.clear()
    trainer.loss.d_main(torch.rand(4, 3, 32, 32) * 2 - 1, torch.randn(4, 32))
    assert torch.bfloat16 in seen


def _r1_grads(disc: str, grid_sample: str) -> list[torch.Tensor]:
    torch.manual_seed(0)
    cfg = small_cfg(32, disc)
    G, D = build_generator(cfg), build_discriminator(cfg)
    pipe = AugmentPipe(0.8, grid_sample=grid_sample)
    loss = StyleGAN2Loss(G, D, pipe, cfg.train)
    torch.manual_seed(1)
    r1 = loss.d_r1(torch.rand(4, 3, 32, 32) * 2 - 1, gain=1.0)
    r1.backward()
    return [r1.detach()] + [p.grad.clone() for p in D.parameters() if p.grad is not None]


@pytest.mark.parametrize("disc", ["resnet", "vit"])
def test_grid_sample_gradfix_gives_torchs_r1_gradients(disc):
    fixed, native = _r1_grads(disc, "gradfix"), _r1_grads(disc, "native")
    assert len(fixed) == len(native) > 1
    for a, b in zip(fixed, native):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert fixed[0] > 0


def test_grid_sample_gradfix_second_derivatives_are_exact():
    from gan.gradfix import grid_sample

    torch.manual_seed(0)
    x = torch.randn(2, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    theta = torch.tensor([[[0.9, -0.3, 0.1], [0.2, 1.1, -0.05]]] * 2, dtype=torch.float64)
    grid = torch.nn.functional.affine_grid(theta, [2, 2, 5, 6], align_corners=False)
    for mode in ("reflection", "zeros"):
        assert torch.autograd.gradcheck(lambda t: grid_sample(t, grid, mode), (x,))
        assert torch.autograd.gradgradcheck(lambda t: grid_sample(t, grid, mode) ** 2, (x,))


def test_nan_and_inf_gradients_are_cleaned_before_the_step():
    layer = torch.nn.Linear(3, 2)
    layer(torch.ones(1, 3)).sum().backward()
    layer.weight.grad[0, 0], layer.weight.grad[0, 1], layer.bias.grad[1] = float("nan"), float("inf"), -float("inf")
    nan_to_num_grads(layer)
    assert layer.weight.grad[0, 0] == 0 and layer.weight.grad[0, 1] == 1e5 and layer.bias.grad[1] == -1e5
    assert layer.weight.grad[1, 2] == 1.0                          # finite gradients untouched
