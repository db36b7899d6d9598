"""Perceptual path length: parity with lpips.LPIPS(net="vgg") on the same image pairs, a generator
whose path length is known in closed form, the trimming rule, and the CLI."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from evalkit import cli
from evalkit.extract import weights
from evalkit.reports import ppl as ek_ppl

CPU = torch.device("cpu")


class LinearGenerator(torch.nn.Module):
    """image(w) = x0 + k (a·w) v: a known-answer generator (the mapping is the identity, one ws entry).

    Along any path the image moves along the fixed pattern v, so LPIPS(img(w), img(w + δ)) ≈ c (k a·δ)²
    with c = LPIPS's curvature at x0 along v (the offsets k a·w stay small, so c is the same for every path).
    It records what synthesis receives, so the test knows every path's step."""

    def __init__(self, x0: torch.Tensor, v: torch.Tensor, k: float, z_dim: int = 6, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.z_dim, self.k = z_dim, k
        self.register_buffer("a", torch.randn(z_dim, generator=g))
        self.register_buffer("x0", x0)
        self.register_buffer("v", v)
        self.seen, self.images = [], []

    def mapping(self, z):
        return z.unsqueeze(1)

    def synthesis(self, ws, noise_mode="random"):
        self.seen.append(ws[:, 0].clone())
        s = self.k * (ws[:, 0] @ self.a)
        img = self.x0.unsqueeze(0) + s.view(-1, 1, 1, 1) * self.v.unsqueeze(0)
        self.images.append(img.clone())
        return img


@pytest.fixture(scope="module")
def pattern():
    from gan.avatars import avatar_array

    face = avatar_array(1, seed=5, res=32)[0]
    g = torch.Generator().manual_seed(1)
    # a textured base: on flat colour regions LPIPS's curvature jumps with tiny offsets, on texture it is
    # steady (within about 4 % for offsets up to 0.05 and steps up to 0.01, measured)
    x0 = (torch.from_numpy(face).permute(2, 0, 1).float() / 127.5 - 1) * 0.6 + 0.3 * torch.randn(3, 32, 32, generator=g)
    v = torch.randn(3, 32, 32, generator=g) * 0.5
    return x0, v


def _up(x):
    return F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False, antialias=False)


@pytest.mark.parametrize("space", ["w", "z"])
def test_path_distances_equal_reference_lpips_on_the_same_pairs(pattern, ref_vgg, space):
    gen = LinearGenerator(*pattern, k=1.0)
    eps = 1e-2
    d = ek_ppl.path_distances(gen, 12, epsilon=eps, space=space, batch_size=5, device=CPU)
    img0 = torch.cat(gen.images[0::2])
    img1 = torch.cat(gen.images[1::2])
    with torch.no_grad():
        expected = ref_vgg(_up(img0), _up(img1)).reshape(-1).double().numpy() / eps ** 2
    assert d.shape == (12,) and (expected > 0).all()
    np.testing.assert_allclose(d, expected, rtol=1e-4)


def test_linear_generator_path_length_is_known(pattern, ref_vgg):
    """d_i = c k² (a·(w1 - w0))², with a·(w1 - w0) ~ N(0, 2|a|²) in W: PPL_wend is c k² 2|a|² times the
    1-99 % trimmed mean of a χ²₁ variable, which is (F₃(q99) - F₃(q1)) / 0.98 (x f₁(x) = f₃(x))."""
    x0, v = pattern
    k, eps, n = 0.005, 0.2, 160
    gen = LinearGenerator(x0, v, k=k)
    with torch.no_grad():   # LPIPS's curvature along v at x0, from the reference model
        h = 1e-3
        c = ref_vgg(_up(x0[None]), _up((x0 + h * v)[None])).item() / h ** 2
    d = ek_ppl.path_distances(gen, n, epsilon=eps, space="w", batch_size=50, device=CPU)

    # every path: its own step, from the latents the generator received
    w0, w1 = torch.cat(gen.seen[0::2]).double(), torch.cat(gen.seen[1::2]).double()
    step = ((w1 - w0) @ gen.a.double()).numpy() * k / eps       # k a·(w1 - w0)
    np.testing.assert_allclose(d, c * step ** 2, rtol=0.08)

    # the trimmed mean against the closed form, within its stated interval's reach
    a2 = float(gen.a.double().square().sum())
    q1, q99 = stats.chi2.ppf([0.01, 0.99], 1)
    truth = c * k ** 2 * 2 * a2 * (stats.chi2.cdf(q99, 3) - stats.chi2.cdf(q1, 3)) / 0.98
    value, lo, hi, label = ek_ppl.summarise(d)
    assert lo < truth < hi, (lo, truth, hi)
    assert hi - lo < 0.6 * truth                     # a meaningful interval, not an arbitrarily wide one
    assert "bootstrap" in label and f"{n} paths" in label


def test_trimmed_mean_follows_stylegan2_ada():
    x = np.random.default_rng(0).lognormal(0, 2, size=(3, 517))
    for row, got in zip(x, ek_ppl.trimmed_mean(x, axis=1)):
        lo, hi = np.percentile(row, 1, method="lower"), np.percentile(row, 99, method="higher")
        assert got == pytest.approx(np.extract((row >= lo) & (row <= hi), row).mean(), rel=1e-12)
        assert got < row.mean()   # the heavy tail is cut


def test_slerp_stays_on_the_sphere_and_moves_by_the_angle():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 7, generator=g, dtype=torch.float64), torch.randn(4, 7, generator=g, dtype=torch.float64)
    t = torch.full((4, 1), 0.3, dtype=torch.float64)
    p = ek_ppl.slerp(a, b, t)
    torch.testing.assert_close(p.norm(dim=1), torch.ones(4, dtype=torch.float64))
    an, bn = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    theta = torch.acos((an * bn).sum(1))
    torch.testing.assert_close(torch.acos((an * p).sum(1)), 0.3 * theta)


def test_cli_on_a_run_dir_measures_the_latest_snapshot(tiny_run, capsys):
    assert cli.main(["ppl", str(tiny_run), "--num", "8", "--device", "cpu", "--json", "-q"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metric"] == "ppl_wend" and out["num_samples"] == 8 and out["lpips"] == "lpips-0.1.4/vgg/v0.1"
    assert out["ci_low"] <= out["ppl"] <= out["ci_high"] and out["ppl"] > 0
    assert any("latest snapshot" in n for n in out["notes"]) and any("upsampled" in n for n in out["notes"])
    col = ek_ppl.ppl_column(tiny_run, num_samples=4, space="z", device="cpu")
    assert col["ppl_metric"] == "ppl_zend" and col["ppl_num"] == 4 and "bootstrap" in col["ppl_interval"]
    assert cli.main(["ppl", str(tiny_run / "nothing-here"), "--num", "4"]) == 1
    assert "does not exist" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, avatars32):
    from gan.train import train

    from .conftest import tiny_gan_config

    run_dir = tmp_path_factory.mktemp("ppl-run") / "run"
    train(tiny_gan_config(avatars32, total_kimg=0.008), run_dir, progress=False, device="cpu", threads=1)
    return run_dir


def test_missing_vgg_weights_say_how_to_install(env_without_weights):
    from evalkit.errors import WeightsError
    from evalkit.extract import lpips as ek_lpips

    ek_lpips.clear_cache()
    try:
        with pytest.raises(WeightsError, match="LPIPS-VGG16.*not installed.*evalkit weights install"):
            ek_lpips.load_lpips(CPU, "vgg")
    finally:
        ek_lpips.clear_cache()
