"""FID bootstrap: every draw equals frechet_distance on the same resample, for each of the fast routes and
the fallback; the interval, spread and seeding behave as documented; bad input is a clear error."""
import warnings

import numpy as np
import pytest

from evalkit.errors import SampleSizeError
from evalkit.metrics import bootstrap as bootstrap_module
from evalkit.metrics.backend import NumpyOps, TorchOps
from evalkit.metrics.bootstrap import bootstrap_indices, fid_bootstrap
from evalkit.metrics.fid import SmallSampleWarning, feature_stats, fid_from_features, frechet_distance


def correlated_sets(seed, n1, n2, d):
    rng = np.random.default_rng(seed)
    mix = np.eye(d) + rng.normal(size=(d, d)) * 0.3 / np.sqrt(d)
    real = rng.normal(size=(n1, d)) @ mix + 1.0
    fake = (rng.normal(size=(n2, d)) @ mix) * 1.2 + 1.1
    return real, fake


def draw_values(real, fake, num, seed, device=None):
    """The FIDs of the first `num` draws, through the module's own per-draw path."""
    la = NumpyOps() if device is None else TorchOps(device)
    r, f = bootstrap_module._Centred(la, real), bootstrap_module._Centred(la, fake)
    return [bootstrap_module._fid(la, r.draw(i1), f.draw(i2))
            for i1, i2 in bootstrap_indices(len(real), len(fake), num, seed)]


def direct_values(real, fake, num, seed):
    return [frechet_distance(*feature_stats(real[i1]), *feature_stats(fake[i2]))
            for i1, i2 in bootstrap_indices(len(real), len(fake), num, seed)]


@pytest.fixture
def count_fallbacks(monkeypatch):
    calls = []
    original = bootstrap_module.trace_sqrt_product

    def spy(s1, s2):
        calls.append(s1.shape)
        return original(s1, s2)

    monkeypatch.setattr(bootstrap_module, "trace_sqrt_product", spy)
    return calls


@pytest.mark.parametrize("n1,n2,d", [
    (600, 500, 128),   # more distinct rows than dimensions on both sides: Cholesky + eigenvalues
    (90, 70, 128),     # fewer on both sides: exact low-rank data factors
    (600, 60, 128),    # mixed
])
@pytest.mark.parametrize("device", [None, "cpu"])
def test_draw_equals_frechet_distance_on_the_same_resample(n1, n2, d, device, count_fallbacks):
    real, fake = correlated_sets(n1 + n2, n1, n2, d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)
        ours = draw_values(real, fake, 3, seed=11, device=device)
        ref = direct_values(real, fake, 3, seed=11)
    np.testing.assert_allclose(ours, ref, rtol=1e-8, atol=0)
    assert count_fallbacks == []  # none of these needed the slow path


def cross_gram_values(real, fake, idx, device=None):
    la = NumpyOps() if device is None else TorchOps(device)
    r, f = bootstrap_module._Centred(la, real), bootstrap_module._Centred(la, fake)
    cross = bootstrap_module.CrossGram(la, r, f)
    return [bootstrap_module._fid(la, r.draw(i1, light=True), f.draw(i2, light=True), cross=cross)
            for i1, i2 in idx]


@pytest.mark.parametrize("n1,n2,d", [(90, 70, 128), (600, 60, 128), (300, 300, 64)])
@pytest.mark.parametrize("device", [None, "cpu"])
def test_cross_gram_route_equals_frechet_distance(n1, n2, d, device):
    """The Gram route reads every draw's Tr √ off X̃1 X̃2ᵀ: bootstrap draws and subsets without
    replacement (FID∞'s points) equal the direct computation on the same rows."""
    real, fake = correlated_sets(n1 * n2, n1, n2, d)
    rng = np.random.default_rng(1)
    idx = list(bootstrap_indices(n1, n2, 3, seed=5))
    idx.append((rng.choice(n1, n1 // 2, replace=False), rng.choice(n2, (2 * n2) // 3, replace=False)))
    ref = [frechet_distance(*feature_stats(real[i1]), *feature_stats(fake[i2])) for i1, i2 in idx]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)
        np.testing.assert_allclose(cross_gram_values(real, fake, idx, device), ref, rtol=1e-8, atol=0)


def test_cross_gram_route_stays_exact_when_its_eigenvalue_test_fails(monkeypatch):
    """Two nearly collinear sets make the deflated Gram matrix near-singular: the route then takes
    singular values, and still equals the direct computation."""
    rng = np.random.default_rng(2)
    basis = rng.normal(size=(3, 64))
    real = rng.normal(size=(80, 3)) @ basis + 1e-7 * rng.normal(size=(80, 64))
    fake = rng.normal(size=(70, 3)) @ basis * 1.3 + 1e-7 * rng.normal(size=(70, 64))
    calls = []
    original = NumpyOps.svdvals
    monkeypatch.setattr(NumpyOps, "svdvals", staticmethod(lambda a: calls.append(a.shape) or original(a)))
    idx = list(bootstrap_indices(80, 70, 2, seed=0))
    ref = [frechet_distance(*feature_stats(real[i1]), *feature_stats(fake[i2])) for i1, i2 in idx]
    np.testing.assert_allclose(cross_gram_values(real, fake, idx), ref, rtol=1e-6, atol=1e-9)
    assert len(calls) == 2


@pytest.mark.parametrize("n,d,expected", [(1000, 2048, True), (2000, 2048, True), (5000, 2048, False),
                                          (300, 16, False)])
def test_cross_gram_route_is_chosen_where_it_costs_less(n, d, expected):
    m = bootstrap_module.expected_distinct(n)
    assert bootstrap_module.CrossGram.cheaper(m, m, d) is expected


def test_degenerate_features_fall_back_and_stay_exact(count_fallbacks):
    real, fake = correlated_sets(3, 400, 300, 64)
    real[:, 5] = 0.25  # a constant feature: the real covariance is singular
    ours = draw_values(real, fake, 2, seed=4)
    np.testing.assert_allclose(ours, direct_values(real, fake, 2, seed=4), rtol=1e-8, atol=0)
    assert len(count_fallbacks) == 2


@pytest.mark.slow  # the direct reference path alone takes 10-60 s at 2048-d on a loaded 2-core CPU
def test_draw_equals_frechet_distance_at_2048_dims():
    real, fake = correlated_sets(5, 2300, 2200, 2048)
    ours = draw_values(real, fake, 1, seed=0)
    np.testing.assert_allclose(ours, direct_values(real, fake, 1, seed=0), rtol=1e-8, atol=0)


def test_result_fields():
    real, fake = correlated_sets(6, 300, 250, 16)
    result = fid_bootstrap(real, fake, num_bootstrap=50, seed=3, confidence=0.9)
    assert result.fid == pytest.approx(fid_from_features(real, fake), rel=1e-10)
    assert result.samples.shape == (50,)
    np.testing.assert_allclose(result.samples, direct_values(real, fake, 50, seed=3), rtol=1e-8)
    q5, q95 = np.quantile(result.samples, [0.05, 0.95])
    assert (result.low, result.high) == pytest.approx((2 * result.fid - q95, 2 * result.fid - q5), rel=1e-12)
    assert result.low < result.high
    assert result.covers.startswith("90% basic bootstrap interval for the population FID")
    assert "50 resamples of the N = 250 generated and 300 reference images" in result.covers
    assert "only partly removed" not in result.covers  # 250 images for 16 dimensions
    few = fid_bootstrap(*correlated_sets(6, 40, 30, 16), num_bootstrap=5)
    assert "fewer than 2.5 images per feature dimension (16) the bias is only partly removed" in few.covers
    assert result.std == pytest.approx(result.samples.std(ddof=1), rel=1e-12)
    assert result.confidence == 0.9
    again = fid_bootstrap(real, fake, num_bootstrap=50, seed=3, confidence=0.9)
    assert np.array_equal(again.samples, result.samples)
    assert not np.array_equal(fid_bootstrap(real, fake, num_bootstrap=50, seed=4).samples, result.samples)


def test_interval_covers_the_population_fid():
    """On Gaussians with a known population FID the basic interval covers it at about the nominal rate,
    while the raw percentile interval, lying above the estimate as FID's bias does, almost never does."""
    d = 8
    mu, sd = np.full(d, 0.15), np.full(d, 1.1)
    true = float(mu @ mu + np.sum(1 + sd ** 2 - 2 * sd))  # FID(N(0, I), N(mu, diag(sd²)))
    basic = percentile = 0
    for rep in range(50):
        rng = np.random.default_rng(rep)
        real, fake = rng.normal(size=(300, d)), mu + sd * rng.normal(size=(300, d))
        res = fid_bootstrap(real, fake, num_bootstrap=200, seed=rep)
        basic += res.low <= true <= res.high
        lo, hi = np.quantile(res.samples, [0.025, 0.975])
        percentile += lo <= true <= hi
    assert basic >= 45, f"basic interval covered the population FID in {basic} of 50 repetitions"
    assert percentile <= 5


def test_resamples_are_independent_with_replacement():
    draws = list(bootstrap_indices(500, 300, 20, seed=0))
    i1, i2 = draws[0]
    assert i1.shape == (500,) and i2.shape == (300,)
    assert i1.max() < 500 and i2.max() < 300
    assert len(np.unique(i1)) < 500  # with replacement: repeats
    assert 0.55 < np.mean([len(np.unique(a)) / 500 for a, _ in draws]) < 0.71  # ~1 − 1/e distinct
    assert not np.array_equal(draws[0][0], draws[1][0])


def test_spread_shrinks_with_more_samples():
    # the bootstrap std of FID scales roughly like 1/sqrt(n): 4x the samples, about half the spread
    small = fid_bootstrap(*correlated_sets(7, 800, 800, 8), num_bootstrap=200, seed=1)
    large = fid_bootstrap(*correlated_sets(7, 3200, 3200, 8), num_bootstrap=200, seed=1)
    assert 1.4 < small.std / large.std < 2.8


def test_torch_input_runs_on_its_device_and_agrees():
    import torch

    real, fake = correlated_sets(8, 200, 150, 12)
    ref = fid_bootstrap(real, fake, num_bootstrap=5, seed=2)
    on_torch = fid_bootstrap(torch.from_numpy(real), torch.from_numpy(fake), num_bootstrap=5, seed=2)
    np.testing.assert_allclose(on_torch.samples, ref.samples, rtol=1e-10)
    assert on_torch.fid == pytest.approx(ref.fid, rel=1e-10)


def test_bad_input():
    real, fake = correlated_sets(9, 50, 40, 4)
    with pytest.raises(ValueError, match="4 dimensions and fake features 5"):
        fid_bootstrap(real, np.zeros((40, 5)))
    bad = fake.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        fid_bootstrap(real, bad)
    with pytest.raises(SampleSizeError, match="at least 2"):
        fid_bootstrap(real[:1], fake)
    with pytest.raises(ValueError, match="confidence"):
        fid_bootstrap(real, fake, confidence=1.0)
    with pytest.raises(ValueError, match="num_bootstrap"):
        fid_bootstrap(real, fake, num_bootstrap=1)
    with pytest.warns(SmallSampleWarning):
        fid_bootstrap(real[:3], fake, num_bootstrap=2)
