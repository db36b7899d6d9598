"""Networks, ops, augmentation and ADA: shapes, gradients, ISN training, truncation, style mixing."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gan.augment import AdaptiveP, AugmentPipe
from gan.config import preset, vit_patch_geometry
from gan.loss import StyleGAN2Loss
from gan.nets import build_discriminator, build_generator, num_ws_for
from gan.nets.generator import modulated_conv2d
from gan.nets.layers import downsample2d, fir_filter, upsample2d
from gan.nets.vit import ImprovedSpectralNorm, L2Attention
from gan.sample import parse_style_layers, style_mix_ws

from .conftest import small_cfg


@pytest.mark.parametrize("res", [16, 32, 64])
@pytest.mark.parametrize("disc", ["resnet", "vit"])
def test_shapes(res, disc):
    torch.manual_seed(0)
    cfg = small_cfg(res, disc)
    G, D = build_generator(cfg), build_discriminator(cfg)
    img = G(torch.randn(3, 32))
    assert img.shape == (3, 3, res, res)
    assert G.num_ws == num_ws_for(res) == 2 * int(math.log2(res)) - 2
    assert D(img).shape == (3,)


@pytest.mark.parametrize("res", [16, 32, 64])
def test_vit_patches_cover_every_pixel(res):
    torch.manual_seed(0)
    cfg = small_cfg(res, "vit")
    D = build_discriminator(cfg)
    patch, ext = vit_patch_geometry(cfg.vit, res)
    assert D.num_patches == (res // patch) ** 2
    assert (res + 2 * ext - D.kernel) % patch == 0  # the padded grid ends exactly at the border
    x = torch.randn(2, 3, res, res, requires_grad=True)
    (grad,) = torch.autograd.grad(D(x).sum(), x)
    per_pixel = grad.abs().sum(dim=(0, 1))
    for corner in [(0, 0), (0, -1), (-1, 0), (-1, -1)]:
        assert per_pixel[corner] > 0, f"corner {corner} does not influence D at {res} px"
    assert (per_pixel > 0).all(), f"{int((per_pixel == 0).sum())} pixels never seen by the ViT-D"


def test_isn_weights_are_trained_by_the_optimiser():
    torch.manual_seed(0)
    D = build_discriminator(small_cfg(32, "vit"))
    opt = torch.optim.Adam(D.parameters(), lr=1e-2, betas=(0.0, 0.99))
    attn = D.blocks[0].attn
    original = attn.to_qk.parametrizations.weight.original
    assert any(p is original for g in opt.param_groups for p in g["params"])
    before_original, before_weight = original.detach().clone(), attn.to_qk.weight.detach().clone()
    opt.zero_grad()
    D(torch.randn(4, 3, 32, 32)).square().mean().backward()
    assert original.grad is not None and original.grad.abs().sum() > 0
    opt.step()
    assert not torch.equal(original, before_original)
    assert not torch.equal(attn.to_qk.weight, before_weight)
    # ...and the parametrised module still reads the trained tensor, not a stale copy.
    assert attn.to_qk.parametrizations.weight.original is original


def test_isn_keeps_initial_spectral_norm():
    torch.manual_seed(0)
    w = torch.randn(24, 16) * 3
    isn = ImprovedSpectralNorm(w)
    for _ in range(30):  # power iteration converges while W is fixed
        out = isn(w * 5)
    assert torch.linalg.matrix_norm(out, ord=2).item() == pytest.approx(isn.sigma_init.item(), rel=1e-4)
    assert isn.sigma_init.item() == pytest.approx(torch.linalg.matrix_norm(w, ord=2).item(), rel=1e-5)


def test_l2_attention_is_tied_squared_distance():
    torch.manual_seed(0)
    attn = L2Attention(dim=8, heads=2).eval()
    x = torch.randn(2, 5, 8)
    qk = attn.to_qk(x).reshape(2, 5, 2, 4).transpose(1, 2)
    v = attn.to_v(x).reshape(2, 5, 2, 4).transpose(1, 2)
    naive = -((qk.unsqueeze(3) - qk.unsqueeze(2)) ** 2).sum(-1) / 2.0  # sqrt(d_head) = 2
    expected = attn.to_out((naive.softmax(-1) @ v).transpose(1, 2).reshape(2, 5, 8))
    torch.testing.assert_close(attn(x), expected, rtol=1e-5, atol=1e-5)
    assert not hasattr(attn, "to_q") and not hasattr(attn, "to_k")


@pytest.mark.parametrize("disc", ["resnet", "vit"])
def test_r1_through_ada_gives_finite_gradients(disc):
    torch.manual_seed(0)
    cfg = small_cfg(32, disc)
    G, D = build_generator(cfg), build_discriminator(cfg)
    pipe = AugmentPipe(p=0.8)
    loss = StyleGAN2Loss(G, D, pipe, cfg.train)
    real = torch.rand(4, 3, 32, 32) * 2 - 1
    r1 = loss.d_r1(real, gain=1.0)
    assert torch.isfinite(r1) and r1 > 0
    r1.backward()
    grads = [p.grad for p in D.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


def test_augment_identity_at_p0_and_differentiable():
    x = torch.rand(6, 3, 16, 16, requires_grad=True)
    assert AugmentPipe(0.0)(x) is x
    torch.manual_seed(0)
    y = AugmentPipe(0.9)(x)
    assert y.shape == x.shape and not torch.allclose(y, x)
    (g,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    (gg,) = torch.autograd.grad(g.square().sum(), x)  # double backward through grid_sample
    assert torch.isfinite(gg).all() and gg.abs().sum() > 0


def test_xflip_only_is_exact_pixel_flip():
    """Blit ops land on pixel centres: an x-flip must move pixels without interpolation."""
    from gan.augment import geometric_matrix, warp

    torch.manual_seed(0)
    pipe = AugmentPipe(1 - 1e-9)
    x = torch.rand(1, 3, 8, 8)
    for _ in range(8):
        drawn = pipe.sample(1, 8, 8, "cpu")
        blit = {**AugmentPipe(0.0).sample(1, 8, 8, "cpu"), "xflip": drawn["xflip"], "rotate90": drawn["rotate90"]}
        y = warp(x, geometric_matrix(blit))
        candidates = [torch.rot90(t, k, dims=(2, 3)) for t in (x, x.flip(3)) for k in range(4)]
        assert min((y - c).abs().max().item() for c in candidates) < 1e-5


def test_translations_gate_x_and_y_jointly_with_probability_p():
    """One gate per image for both axes (StyleGAN2-ADA augment.py), so P(translated) = p, not
    1 - (1 - p)^2 as with a gate per axis."""
    torch.manual_seed(0)
    p, n = 0.3, 20000
    params = AugmentPipe(p).sample(n, 256, 256, "cpu")
    sigma = math.sqrt(p * (1 - p) / n)
    frac_moved = params["xfrac"] != 0
    assert torch.equal(frac_moved[:, 0], frac_moved[:, 1])            # never one axis alone
    assert abs(frac_moved[:, 0].float().mean().item() - p) < 4 * sigma
    int_moved = params["xint"] != 0
    any_axis = int_moved.any(1).float().mean().item()
    one_axis = (int_moved[:, 0] ^ int_moved[:, 1]).float().mean().item()
    assert abs(any_axis - p) < 4 * sigma + 0.3 / 64 ** 2               # a gated shift rounds to 0 px rarely
    assert one_axis < 0.05 * any_axis       # only when one coordinate rounds to 0 px (about 2/64 of them)
    assert torch.equal(params["xint"] * 128, torch.round(params["xint"] * 128))   # whole pixels at 256 px


def test_ada_p_rises_when_d_overfits_and_falls_otherwise():
    pipe = AugmentPipe(0.5)
    ada = AdaptiveP(pipe, target=0.6, interval=4, ada_kimg=1.0, p_max=0.99)
    for i in range(4):  # r_t = 1 > 0.6: D is confident on reals -> more augmentation
        ada.accumulate(torch.ones(8))
        ada.step(i, batch_size=8)
    assert ada.last_rt == 1.0
    assert pipe.p == pytest.approx(0.5 + 8 * 4 / 1000)
    for i in range(4, 8):  # r_t = 0 < 0.6 -> less augmentation
        ada.accumulate(torch.tensor([1.0, -1.0] * 4))
        ada.step(i, batch_size=8)
    assert ada.last_rt == 0.0
    assert pipe.p == pytest.approx(0.5)
    for i in range(8, 8 + 4 * 200):  # p stays inside [0, p_max]
        ada.accumulate(torch.ones(8))
        ada.step(i, batch_size=8)
    assert pipe.p == 0.99 < 1
    for i in range(2000, 2000 + 4 * 300):
        ada.accumulate(-torch.ones(8))
        ada.step(i, batch_size=8)
    assert pipe.p == 0.0


@pytest.mark.parametrize("mapping", ["standard", "per-res"])
def test_truncation_psi_one_and_zero(mapping):
    torch.manual_seed(0)
    G = build_generator(small_cfg(32, mapping=mapping))
    z = torch.randn(5, 32)
    G.mapping(torch.randn(64, 32), update_w_avg=True)  # non-trivial w_avg
    w_avg = G.mapping.w_avg_per_ws()
    assert w_avg.abs().sum() > 0
    torch.testing.assert_close(G.mapping(z, psi=1.0), G.mapping.embed(z), rtol=0, atol=0)
    ws0 = G.mapping(z, psi=0.0)
    torch.testing.assert_close(ws0, w_avg.unsqueeze(0).expand(5, -1, -1), rtol=0, atol=1e-6)
    cut = G.mapping(z, psi=0.0, truncation_cutoff=2)
    torch.testing.assert_close(cut[:, :2], ws0[:, :2])
    torch.testing.assert_close(cut[:, 2:], G.mapping.embed(z)[:, 2:])
    w_neg = G.mapping(z, psi=-1.0)  # psi < 0 mirrors through w_avg
    torch.testing.assert_close(w_neg, 2 * w_avg - G.mapping.embed(z), rtol=1e-5, atol=1e-5)


def test_per_resolution_mapping_gives_each_level_its_own_style():
    torch.manual_seed(0)
    G = build_generator(small_cfg(32, mapping="per-res"))
    ws = G.mapping(torch.randn(2, 32))
    levels = G.mapping.level_of_ws.tolist()
    assert levels == [0, 0, 1, 1, 2, 2, 3, 3]
    assert not torch.allclose(ws[:, 0], ws[:, 2])            # different levels, different styles
    torch.testing.assert_close(ws[:, 2], ws[:, 3])           # same level, same style
    # dense after the concatenation: same parameter count for every level after the first
    sizes = [sum(p.numel() for p in lvl.parameters()) for lvl in G.mapping.levels]
    assert len(set(sizes[1:])) == 1 and G.mapping.w_avg.shape == (4, 32)


def test_style_layers_and_mixing_take_the_right_layers():
    assert parse_style_layers("coarse", 64) == [0, 1, 2, 3]
    assert parse_style_layers("middle", 64) == [4, 5, 6, 7]
    assert parse_style_layers("fine", 64) == [8, 9]
    assert parse_style_layers("0-2,5", 64) == [0, 1, 2, 5]
    with pytest.raises(ValueError, match="no 'fine' style layers"):
        parse_style_layers("fine", 32)
    with pytest.raises(ValueError, match="indices in 0-7"):
        parse_style_layers("3-9", 32)
    torch.manual_seed(0)
    G = build_generator(small_cfg(32)).eval()
    row_ws, col_ws, mixed = style_mix_ws(G, [1, 2], [3, 4, 5], [0, 1, 2, 3])
    assert mixed.shape == (2, 3, 8, 32)
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(mixed[i, j, :4], col_ws[j, :4], rtol=0, atol=0)
            torch.testing.assert_close(mixed[i, j, 4:], row_ws[i, 4:], rtol=0, atol=0)


def test_fir_resampling_preserves_constants():
    f = fir_filter()
    x = torch.full((1, 2, 8, 8), 3.0)
    up, down = upsample2d(x, f), downsample2d(x, f)
    assert up.shape == (1, 2, 16, 16) and down.shape == (1, 2, 4, 4)
    torch.testing.assert_close(up[:, :, 2:-2, 2:-2], torch.full_like(up[:, :, 2:-2, 2:-2], 3.0))
    torch.testing.assert_close(down[:, :, 1:-1, 1:-1], torch.full_like(down[:, :, 1:-1, 1:-1], 3.0))


def test_modulated_conv_matches_per_sample_weights():
    torch.manual_seed(0)
    x, w, s = torch.randn(3, 4, 6, 6), torch.randn(5, 4, 3, 3), torch.randn(3, 4)
    out = modulated_conv2d(x, w, s, padding=1)
    for i in range(3):  # reference: modulate and demodulate the weights of each sample
        wi = w * s[i].reshape(1, -1, 1, 1)
        wi = wi / wi.square().sum(dim=[1, 2, 3], keepdim=True).add(1e-8).sqrt()
        torch.testing.assert_close(out[i:i + 1], F.conv2d(x[i:i + 1], wi, padding=1), rtol=1e-4, atol=1e-5)


def _rotation(degrees: float) -> torch.Tensor:
    t = math.radians(degrees)
    return torch.tensor([[math.cos(t), -math.sin(t), 0.0], [math.sin(t), math.cos(t), 0.0], [0.0, 0.0, 1.0]])[None]


def _bilinear_only(x, G):
    grid = F.affine_grid(G[:, :2, :], list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def test_oversampled_resampling_keeps_detail_and_aliases_less():
    """A 2x-oversampled rotation (as in StyleGAN2-ADA) keeps more of a fine grating than bilinear
    sampling at the image's own resolution, and folds less of it into low frequencies."""
    from gan.augment import downsample2x, upsample2x, warp

    smooth = F.interpolate(torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)), size=32,
                           mode="bicubic", align_corners=False)
    assert (downsample2x(upsample2x(smooth)) - smooth).abs().max() < 0.01      # the filter pair is ~lossless
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")

    def amplitude_and_alias(out, f):
        out = out[0, 0, 16:-16, 16:-16]
        power = torch.fft.fft2(out - out.mean()).abs() ** 2
        radius = torch.hypot(torch.fft.fftfreq(32)[:, None], torch.fft.fftfreq(32)[None, :])
        return out.std().item(), (power[radius < f - 0.08].sum() / power.sum()).item()

    for f in (0.3, 0.4):
        grating = torch.cos(2 * math.pi * f * xx)[None, None]
        amp_over, alias_over = amplitude_and_alias(warp(grating, _rotation(37)), f)
        amp_plain, alias_plain = amplitude_and_alias(_bilinear_only(grating, _rotation(37)), f)
        if f == 0.3:
            assert amp_over > amp_plain * 1.05                         # bilinear at 1x blurs more
        else:
            assert alias_over < alias_plain * 0.8                      # and aliases more near Nyquist


def test_whole_pixel_moves_skip_the_filters_and_mixed_batches_route_per_image():
    from gan.augment import warp

    x = torch.rand(3, 3, 16, 16)
    quarter = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])[None]
    shift = torch.tensor([[1.0, 0.0, 4 / 16], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])[None]   # 2 pixels
    G = torch.cat([quarter, shift, _rotation(20)])
    y = warp(x, G)
    assert (y[0] - torch.rot90(x[0], 1, dims=(1, 2))).abs().max() < 1e-5   # exact up to float rounding
    assert (y[1, :, :, :-2] - x[1, :, :, 2:]).abs().max() < 1e-5          # no filtering
    assert torch.allclose(y[2:], warp(x[2:], G[2:]))                    # the resampled one, as if alone
    assert not torch.allclose(y[2:], _bilinear_only(x[2:], G[2:]))
