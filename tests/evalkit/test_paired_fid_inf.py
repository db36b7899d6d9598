"""Paired ΔFID bootstrap and FID∞/KID∞: exact against the direct computation on the same resamples and
subsets, calibrated on Gaussians whose population FID is known in closed form, and honest verdicts."""
import warnings

import numpy as np
import pytest
from scipy import stats

from evalkit.errors import SampleSizeError
from evalkit.metrics.bootstrap import basic_interval
from evalkit.metrics.fid import SmallSampleWarning, feature_stats, fid_from_features, frechet_distance
from evalkit.metrics.fid_inf import default_grid, fid_infinity, kid_infinity
from evalkit.metrics.kid import kid
from evalkit.metrics.paired import paired_fid_difference, paired_indices

D = 8
MU_A, SD_A = np.full(D, 0.15), np.full(D, 1.1)
MU_B, SD_B = np.full(D, 0.10), np.linspace(0.8, 1.3, D)


def population_fid(mu, sd):
    """FID between N(0, I) and N(mu, diag(sd²)): |mu|² + Σ (1 + sd² − 2 sd)."""
    return float(mu @ mu + np.sum(1 + sd ** 2 - 2 * sd))


def gaussian_sets(seed, n_real=300, n_a=300, n_b=300):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n_real, D)), MU_A + SD_A * rng.normal(size=(n_a, D)),
            MU_B + SD_B * rng.normal(size=(n_b, D)))


def direct_deltas(real, a, b, num, seed):
    out = []
    for ir, ia, ib in paired_indices(len(real), len(a), len(b), num, seed):
        ref = feature_stats(real[ir])
        out.append(frechet_distance(*ref, *feature_stats(a[ia])) - frechet_distance(*ref, *feature_stats(b[ib])))
    return np.array(out)


@pytest.mark.parametrize("n_real,n_a,n_b,d", [(400, 300, 350, 16), (60, 300, 40, 64)])
def test_paired_difference_equals_the_direct_computation(n_real, n_a, n_b, d):
    # first case: the d x d route; second: fewer distinct rows than dimensions, the cross-Gram route
    rng = np.random.default_rng(d)
    real, a, b = rng.normal(size=(n_real, d)), rng.normal(size=(n_a, d)) * 1.1, rng.normal(size=(n_b, d)) + 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)
        res = paired_fid_difference(real, a, b, num_bootstrap=20, seed=5, confidence=0.9, a="ckpt1", b="ckpt2")
        draws = direct_deltas(real, a, b, 20, seed=5)
    assert res.delta_fid == pytest.approx(fid_from_features(real, a) - fid_from_features(real, b), rel=1e-9)
    low, high = basic_interval(res.delta_fid, draws, 0.9)
    assert (res.ci_low, res.ci_high) == pytest.approx((low, high), rel=1e-8)
    assert low == pytest.approx(2 * res.delta_fid - np.quantile(draws, 0.95), rel=1e-12)
    assert res.p_a_better == np.mean(draws < 0)
    assert (res.n_real, res.n_a, res.n_b, res.num_bootstrap) == (n_real, n_a, n_b, 20)
    d_ = res.to_dict()
    assert {"a", "b", "delta_fid", "ci_low", "ci_high", "p_a_better", "covers"} <= set(d_)
    assert d_["a"] == "ckpt1"
    assert "90% paired basic bootstrap interval for the population FID(A) − FID(B)" in d_["covers"]
    assert f"of this reference set of {n_real}" in d_["covers"]


def test_paired_interval_covers_the_population_difference():
    """Nominal 95%: covers the known population ΔFID in >= 90% of 50 independent repetitions."""
    true = population_fid(MU_A, SD_A) - population_fid(MU_B, SD_B)
    hits = 0
    for rep in range(50):
        res = paired_fid_difference(*gaussian_sets(rep), num_bootstrap=200, seed=rep)
        hits += res.ci_low <= true <= res.ci_high
    assert hits >= 45, f"covered the population ΔFID in {hits} of 50 repetitions"


def test_verdict_names_a_winner_only_when_the_interval_excludes_zero():
    real, a, b = gaussian_sets(1, 2000, 2000, 2000)
    far = 0.8 + 1.0 * b  # a clearly worse model B
    res = paired_fid_difference(real, a, far, num_bootstrap=100, seed=0)
    assert res.ci_high < 0 and res.p_a_better == 1.0
    assert res.verdict("run-1", "run-2").startswith("run-1 is better than run-2 (ΔFID = ")
    flipped = paired_fid_difference(real, far, a, num_bootstrap=100, seed=0, a="x", b="y")
    assert flipped.verdict().startswith("y is better than x")
    # two samples of one distribution: no ranking can be claimed
    same = paired_fid_difference(real, a[:1000], a[1000:], num_bootstrap=100, seed=0)
    assert same.ci_low < 0 < same.ci_high
    text = same.verdict("A", "B")
    assert text.startswith("no difference detectable at N = 1000 generated and 2000 reference images")
    assert "better than" not in text


def test_paired_bad_input():
    real, a, b = gaussian_sets(2, 50, 40, 40)
    with pytest.raises(ValueError, match="8, 8 and 5 dimensions"):
        paired_fid_difference(real, a, b[:, :5])
    with pytest.raises(ValueError, match="num_bootstrap"):
        paired_fid_difference(real, a, b, num_bootstrap=1)
    with pytest.raises(SampleSizeError, match="at least 2"):
        paired_fid_difference(real, a[:1], b)


def test_fid_infinity_fixed_reference_points_are_exact_and_the_fit_is_least_squares():
    real, a, _ = gaussian_sets(3, 500, 600)
    ns = [200, 300, 400, 600]
    res = fid_infinity(real, a, ns=ns, seed=7, reference="fixed")
    rng = np.random.default_rng(7)  # documented draw order: one subset of the generated set per N
    direct = [fid_from_features(real, a[rng.choice(600, n, replace=False)]) for n in ns]
    np.testing.assert_allclose(res.values, direct, rtol=1e-9)
    fit = stats.linregress(1 / np.array(ns), direct)
    assert res.value == pytest.approx(fit.intercept, rel=1e-9)
    assert res.slope == pytest.approx(fit.slope, rel=1e-9)
    assert res.stderr == pytest.approx(fit.intercept_stderr, rel=1e-6)
    resid = np.array(direct) - (fit.intercept + fit.slope / np.array(ns))
    assert res.residual == pytest.approx(np.sqrt(np.mean(resid ** 2)), rel=1e-6)
    assert res.n_reference == [500] * 4 and "this reference set's statistics (500 images" in res.covers
    assert set(res.to_dict()) >= {"value", "slope", "residual", "ns", "values", "covers"}


def test_fid_infinity_removes_the_small_sample_bias():
    """On Gaussians with a known population FID, FID∞'s mean over repetitions is within its standard
    error of the truth, while plain FID at the same N is biased upward by many standard errors."""
    true = population_fid(MU_A, SD_A)
    inf, plain = [], []
    for rep in range(40):
        real, a, _ = gaussian_sets(100 + rep)
        res = fid_infinity(real, a, seed=rep)
        inf.append(res.value)
        plain.append(fid_from_features(real, a))
    assert res.ns == default_grid(300) and res.ns[0] == 150 and res.ns[-1] == 300 and len(res.ns) == 15
    se_inf = np.std(inf, ddof=1) / np.sqrt(len(inf))
    se_plain = np.std(plain, ddof=1) / np.sqrt(len(plain))
    assert abs(np.mean(inf) - true) < 3 * se_inf
    assert np.mean(plain) - true > 6 * se_plain
    assert res.slope > 0  # FID_N falls towards FID∞ as N grows


def test_fid_infinity_is_within_its_stated_error():
    """FID∞ ± 1.96 × total_error (fit error and the FID bootstrap's spread) covers the population FID
    in most repetitions; the fit's own standard error alone is documented as too small."""
    from evalkit.metrics.bootstrap import fid_bootstrap
    from evalkit.metrics.fid_inf import total_error

    true = population_fid(MU_A, SD_A)
    hits = 0
    for rep in range(40):
        real, a, _ = gaussian_sets(200 + rep)
        res = fid_infinity(real, a, seed=rep)
        err = total_error(res.stderr, fid_bootstrap(real, a, num_bootstrap=100, seed=rep).std)
        assert err > res.stderr
        hits += abs(res.value - true) <= 1.96 * err
    assert hits >= 34, f"within 1.96 standard errors in {hits} of 40 repetitions"


def test_kid_infinity_agrees_with_unbiased_kid():
    real, a, _ = gaussian_sets(4, 1500, 1500)
    res = kid_infinity(real, a, seed=0, num_subsets=60, max_subset_size=500)
    ref = kid(real, a, num_subsets=200, max_subset_size=500, seed=1)
    assert res.value == pytest.approx(ref.mean, abs=4 * ref.std)
    assert "KID∞" in res.covers and len(res.values) == len(res.ns)


def test_fid_infinity_bad_input():
    real, a, _ = gaussian_sets(5, 50, 40)
    with pytest.raises(ValueError, match="at least 3 distinct sizes"):
        fid_infinity(real, a, ns=[20, 40])
    with pytest.raises(ValueError, match="between 2 and the 40 generated"):
        fid_infinity(real, a, ns=[10, 20, 50])
    with pytest.raises(ValueError, match="reference must be"):
        fid_infinity(real, a, reference="both")


def _feature_set(x, label, **meta):
    from evalkit.extract.featureset import FeatureSet

    return FeatureSet(label=label, kind="folder", path=f"/{label}", features=x, mu=x.mean(0),
                      sigma=np.cov(x, rowvar=False), num=len(x), meta=meta)


def test_metrics_carry_fid_inf_equal_count_prdc_and_their_conventions():
    from evalkit.metrics.prdc import perfect_model_baseline, prdc
    from evalkit.reports.evaluate import compute_metrics, format_metrics

    rng = np.random.default_rng(0)
    d = 2048  # the default (Inception) feature space's width, as compute_metrics checks
    real = rng.normal(size=(1000, d)).astype(np.float32)
    fake = (rng.normal(size=(300, d)) * 1.05).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)
        out = compute_metrics(_feature_set(real, "real"), _feature_set(fake, "generated", num_gen=300, seed=7,
                                                                        noise_mode="random", psi=1.0),
                              ("fid", "pr", "dc"), seed=3, bootstrap=5)
    assert out["fid_inf_error"] == pytest.approx(np.hypot(out["fid_inf_stderr"], out["fid_boot_std"]))
    conv = out["conventions"]
    assert conv["extractor"].startswith("inception") and conv["seed"] == 3
    assert conv["fid"]["num_real"] == 1000 and conv["fid"]["num_fake"] == 300
    assert conv["fid_inf"]["ns"][0] == 150 and conv["fid_inf"]["ns"][-1] == 300
    assert conv["prdc"]["subsampled"] == {"set": "real", "from": 1000, "to": 300}
    assert conv["generation"] == {"num_gen": 300, "seed": 7, "noise_mode": "random", "psi": 1.0}
    assert "fid_inf" in out and np.isfinite(out["fid_inf"]) and "FID∞" in out["fid_inf_covers"]
    # P/R/D/C at equal counts: the seeded subset of the real set, exactly as documented
    ir = np.sort(np.random.default_rng(3).choice(1000, 300, replace=False))
    ref = prdc(real[ir], fake)
    assert (out["precision"], out["recall"], out["coverage"]) == (ref.precision, ref.recall, ref.coverage)
    assert out["prdc_num_real"] == out["prdc_num_fake"] == 300
    base = perfect_model_baseline(real, 300, seed=3)
    assert out["prdc_perfect_model"]["coverage"] == base.coverage and base.num_real == 300
    warn = next(w for w in out["warnings"] if w.startswith("precision/recall/density/coverage"))
    assert ("come from 300 real and 300 generated samples (the real set subsampled from 1000 to equal counts, "
            "seed 3), fewer than 5000 per set") in warn
    assert f"A perfect model (two disjoint samples of the real set, 300 each, k = 3/5) scores precision " \
           f"{base.precision:.3f}, recall {base.recall:.3f}, density {base.density:.3f}, coverage " \
           f"{base.coverage:.3f}" in warn
    assert any("FID∞ was fitted on subsets down to 150 images, fewer than the 2048" in w for w in out["warnings"])
    assert sum("bias is O(1/N) at every N and depends on the generator" in w for w in out["warnings"]) == 2
    assert "the bias is only partly removed" in out["fid_ci_covers"]
    assert not any("equal sample counts" in w for w in out["warnings"])
    text = format_metrics(out)
    assert "(k=3, N = 300 real / 300 generated)" in text and "a perfect model at 300 per set" in text
    assert "metric seed 3; generated with seeds 7…306, num gen 300, psi 1.0, noise mode random" in text


def test_perfect_model_baseline_is_what_a_perfect_model_scores():
    """The quoted baseline is P/R/D/C between two documented disjoint subsets of the real set, and a
    generator that samples the real distribution exactly scores about that, far from 1 at small N."""
    from evalkit.metrics.prdc import equal_count_indices, perfect_model_baseline, prdc

    rng = np.random.default_rng(11)
    real, perfect = rng.normal(size=(2000, 32)), rng.normal(size=(1000, 32))
    base = perfect_model_baseline(real, 300, seed=2)
    perm = np.random.default_rng(2).permutation(2000)
    ref = prdc(real[np.sort(perm[:300])], real[np.sort(perm[300:600])])
    assert (base.precision, base.recall, base.density, base.coverage) == \
        (ref.precision, ref.recall, ref.density, ref.coverage)
    ir, jf = equal_count_indices(2000, 300, seed=5)
    assert jf is None and len(ir) == 300 == len(np.unique(ir))
    got = prdc(real[ir], perfect[:300])
    for name in ("precision", "recall", "coverage"):
        assert abs(getattr(got, name) - getattr(base, name)) < 0.1, name
    assert base.precision < 0.9 and base.recall < 0.9  # why comparing with 1 misleads at this size
    assert perfect_model_baseline(real[:500], 300).num_real == 250  # half the real set when it is short
