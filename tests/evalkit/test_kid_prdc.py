"""KID against clean-fid, precision/recall/density/coverage against the prdc package, and the
conventions, chunking, precision policy and bad-input messages of evalkit.metrics.{kid,prdc}."""
import contextlib
import io

import numpy as np
import pytest

from evalkit.errors import SampleSizeError
from evalkit.metrics import prdc as prdc_module
from evalkit.metrics.kid import kid
from evalkit.metrics.prdc import knn_radii, prdc, prdc_counts


def reference_prdc(real, fake, k):
    from prdc import compute_prdc

    with contextlib.redirect_stdout(io.StringIO()):  # compute_prdc prints the set sizes
        return compute_prdc(real_features=real, fake_features=fake, nearest_k=k)


def assert_same_as_prdc_package(real, fake, result, k_pr=3, k_dc=5):
    """P/R against prdc at k_pr and D/C against prdc at k_dc, compared as exact counts."""
    n, m = len(real), len(fake)
    ref_pr, ref_dc = reference_prdc(real, fake, k_pr), reference_prdc(real, fake, k_dc)
    assert round(result.precision * m) == round(ref_pr["precision"] * m)
    assert round(result.recall * n) == round(ref_pr["recall"] * n)
    assert round(result.density * k_dc * m) == round(ref_dc["density"] * k_dc * m)
    assert round(result.coverage * n) == round(ref_dc["coverage"] * n)
    assert result.precision == pytest.approx(ref_pr["precision"], rel=1e-12)
    assert result.density == pytest.approx(ref_dc["density"], rel=1e-12)


def gaussian_sets(seed, n, m, d, scale=1.1, shift=0.2, offset=0.0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(n, d)) + offset
    fake = rng.normal(size=(m, d)) * scale + shift + offset
    return real.astype(dtype), fake.astype(dtype)


def brute_sq_radii(x, k):
    x = np.asarray(x, np.float64)
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    return np.sort(d, axis=1)[:, k]


# --------------------------------------------------------------------------------------------------
# parity with the prdc package


@pytest.mark.parametrize("seed,n,m,d,scale,shift", [
    (0, 1000, 1500, 64, 1.1, 0.2),
    (1, 1500, 1000, 32, 1.0, 0.5),
    (2, 1000, 1500, 64, 0.8, 0.0),   # fakes narrower than reals: high precision, low recall
    (3, 1200, 800, 16, 1.3, -0.3),
])
@pytest.mark.parametrize("strict", [True, False])
def test_matches_prdc_package(seed, n, m, d, scale, shift, strict):
    real, fake = gaussian_sets(seed, n, m, d, scale, shift)
    result = prdc(real, fake, k_pr=3, k_dc=5, strict=strict)
    # continuous data: no distance equals a radius, so `<=` and `<` agree with prdc's `<`
    assert_same_as_prdc_package(real, fake, result)
    assert (result.k_pr, result.k_dc, result.strict, result.num_real, result.num_fake) == (3, 5, strict, n, m)
    assert 0 < result.precision < 1 and 0 < result.recall < 1  # a non-trivial case


def test_matches_prdc_package_float32_with_offset():
    # float32 input and a large common offset (translated away before the float32 tiles)
    real, fake = gaussian_sets(4, 900, 700, 48, offset=50.0, dtype=np.float32)
    assert_same_as_prdc_package(real, fake, prdc(real, fake, strict=True))


def test_undecidable_float32_entries_are_recomputed_in_float64():
    # Two tight clusters far from their common mean: the norms are ~1e4 times the squared
    # distances that matter, so float32 cannot decide many memberships on its own.
    rng = np.random.default_rng(5)
    centres = np.stack([np.full(32, 30.0), np.full(32, -30.0)])
    real = centres[rng.integers(0, 2, 800)] + rng.normal(size=(800, 32)) * 0.05
    fake = centres[rng.integers(0, 2, 600)] + rng.normal(size=(600, 32)) * 0.06
    result = prdc(real, fake, strict=True)
    assert result.rechecked > 0
    assert_same_as_prdc_package(real, fake, result)


def test_torch_backend_and_tensor_input_agree_with_numpy():
    import torch

    real, fake = gaussian_sets(6, 500, 400, 24)
    ref = prdc(real, fake)
    assert prdc(real, fake, device="cpu") == ref
    assert prdc(torch.from_numpy(real), torch.from_numpy(fake)) == ref
    # same neighbours; the float64 sums may round differently in the last bit
    np.testing.assert_allclose(knn_radii(torch.from_numpy(real), (3, 5)), knn_radii(real, (3, 5)), rtol=1e-13)


# --------------------------------------------------------------------------------------------------
# conventions


def test_radius_excludes_the_point_itself():
    x = np.array([[0.0], [1.0], [3.0], [7.0]])
    # nearest other point: 1, 1, 2, 4 ; second nearest other point: 3, 2, 3, 6
    assert np.array_equal(knn_radii(x, 1), [1.0, 1.0, 2.0, 4.0])
    assert np.array_equal(knn_radii(x, 2), [3.0, 2.0, 3.0, 6.0])
    assert np.array_equal(knn_radii(x, (1, 2), squared=True), [[1, 1, 4, 16], [9, 4, 9, 36]])


@pytest.mark.parametrize("device", [None, "cpu"])
def test_knn_radii_equal_brute_force(device):
    real, _ = gaussian_sets(7, 700, 1, 16)
    got = knn_radii(real, (1, 3, 5), squared=True, device=device)
    for row, k in zip(got, (1, 3, 5)):
        np.testing.assert_allclose(row, brute_sq_radii(real, k), rtol=1e-12, atol=0)


@pytest.mark.parametrize("device", [None, "cpu"])
def test_knn_radii_with_massive_ties_take_the_exact_path(device):
    # every point repeated 20 times: float32 candidates cannot be told apart, rows are rescanned
    rng = np.random.default_rng(8)
    x = np.repeat(rng.normal(size=(30, 8)), 20, axis=0).astype(np.float32)
    x = np.concatenate([x, rng.normal(size=(50, 8)).astype(np.float32)])
    widened = []
    original = prdc_module._widen_rows

    def spy(s, rows, *args):
        widened.append(len(rows))
        return original(s, rows, *args)

    prdc_module._widen_rows = spy
    try:
        got = knn_radii(x, (3, 5), squared=True, chunk_size=64, device=device)
    finally:
        prdc_module._widen_rows = original
    assert sum(widened) >= 600
    assert (got[:, :600] == 0).all()
    np.testing.assert_allclose(got[0], brute_sq_radii(x, 3), rtol=1e-12, atol=0)
    np.testing.assert_allclose(got[1], brute_sq_radii(x, 5), rtol=1e-12, atol=0)


@pytest.mark.parametrize("device", [None, "cpu"])
def test_duplicates_separate_le_from_strict_as_documented(device):
    # Integer features (all distances exact in every precision). Each real point has 3 exact copies,
    # so its k=3 radius is 0. A fake identical to a real point is inside that ball with `<=`,
    # outside with prdc's `<`.
    rng = np.random.default_rng(9)
    base = rng.choice(1000, size=(40, 6), replace=True).astype(np.float64) * 10  # 40 distinct points
    real = np.repeat(base, 4, axis=0)                                          # radius 0 at k=3
    fake = np.concatenate([base[:20], base[:20] + 5000.0])                     # 20 copies, 20 far away
    fake = np.repeat(fake, 4, axis=0)                                          # fake radii 0 too
    le = prdc(real, fake, k_pr=3, k_dc=3, device=device)
    lt = prdc(real, fake, k_pr=3, k_dc=3, strict=True, device=device)
    assert (le.precision, le.recall, le.coverage) == (0.5, 0.5, 0.5)
    assert le.density == pytest.approx(80 * 4 / (3 * 160))  # each copy lies in its 4 duplicates' balls
    assert (lt.precision, lt.recall, lt.density, lt.coverage) == (0.0, 0.0, 0.0, 0.0)
    ref = reference_prdc(real, fake, 3)
    assert (ref["precision"], ref["recall"], ref["density"], ref["coverage"]) == (0.0, 0.0, 0.0, 0.0)


def test_identical_sets_give_full_precision_recall_coverage():
    real, _ = gaussian_sets(10, 600, 1, 20)
    for strict in (False, True):
        result = prdc(real, real.copy(), strict=strict)
        assert (result.precision, result.recall, result.coverage) == (1.0, 1.0, 1.0)
    assert_same_as_prdc_package(real, real.copy(), prdc(real, real.copy(), strict=True))


def test_far_apart_sets_give_zero():
    real, fake = gaussian_sets(11, 400, 300, 16)
    result = prdc(real, fake + 1000.0)
    assert (result.precision, result.recall, result.density, result.coverage) == (0.0, 0.0, 0.0, 0.0)


# --------------------------------------------------------------------------------------------------
# chunking and bounded memory


@pytest.mark.parametrize("strict", [False, True])
def test_chunked_equals_one_chunk(strict):
    real, fake = gaussian_sets(12, 150, 110, 12)
    real[:10] = real[10:20]  # some duplicates too
    whole = prdc(real, fake, chunk_size=10_000, strict=strict)
    for chunk in (1, 7, 64):
        assert prdc(real, fake, chunk_size=chunk, strict=strict) == whole
        assert np.array_equal(knn_radii(real, (3, 5), chunk_size=chunk), knn_radii(real, (3, 5), chunk_size=10_000))


def test_no_tile_exceeds_the_chunk(monkeypatch):
    shapes = []
    original = prdc_module._sqdist32

    def spy(a, b, na, nb):
        out = original(a, b, na, nb)
        shapes.append(out.shape)
        return out

    monkeypatch.setattr(prdc_module, "_sqdist32", spy)
    real, fake = gaussian_sets(13, 300, 250, 8)
    prdc(real, fake, chunk_size=64)
    assert shapes and max(max(s) for s in shapes) <= 64


def test_counts_from_given_radii_match_prdc():
    real, fake = gaussian_sets(14, 500, 450, 16)
    rr = knn_radii(real, (3, 5), squared=True)
    rf = knn_radii(fake, 3, squared=True)
    counts = prdc_counts(real, fake, rr[0], rr[1], rf, chunk_size=100)
    result = prdc(real, fake)
    assert counts.precision_hits == round(result.precision * 450)
    assert counts.recall_hits == round(result.recall * 500)
    assert counts.density_hits == round(result.density * 5 * 450)
    assert counts.coverage_hits == round(result.coverage * 500)


# --------------------------------------------------------------------------------------------------
# bad input


def test_k_not_below_the_sample_count_is_a_clear_error():
    real, fake = gaussian_sets(15, 5, 3, 4)
    with pytest.raises(SampleSizeError, match=r"k_pr=3 needs at least 4 samples in the fake set.*N=3.*"
                                              r"lower k_pr to at most 2 or add samples"):
        prdc(real, fake)
    with pytest.raises(SampleSizeError, match=r"k_dc=5 needs at least 6 samples in the real set.*N=5"):
        prdc(real, gaussian_sets(15, 5, 10, 4)[1])
    with pytest.raises(SampleSizeError, match=r"k=4 needs at least 5 samples.*N=3"):
        knn_radii(fake, 4)


def test_bad_features_are_clear_errors():
    real, fake = gaussian_sets(16, 50, 40, 8)
    with pytest.raises(ValueError, match="8 dimensions and fake features 9"):
        prdc(real, np.zeros((40, 9)))
    bad = fake.copy()
    bad[17, 3] = np.nan
    with pytest.raises(ValueError, match=r"fake features contain NaN or infinity \(first at row 17\)"):
        prdc(real, bad)
    bad[17, 3] = np.inf
    with pytest.raises(ValueError, match="NaN or infinity"):
        prdc(real, bad, device="cpu")
    with pytest.raises(ValueError, match="2-D"):
        prdc(real[0], fake)
    with pytest.raises(ValueError, match="k_pr must be a positive integer"):
        prdc(real, fake, k_pr=0)
    with pytest.raises(ValueError, match="chunk_size"):
        prdc(real, fake, chunk_size=0)


# --------------------------------------------------------------------------------------------------
# KID


def naive_kid(f1, f2, num_subsets, max_subset_size, seed):
    """Straight from the definition, with the documented draw order; returns the per-subset values."""
    rng = np.random.RandomState(seed)
    m = min(len(f1), len(f2), max_subset_size)
    d = f1.shape[1]
    values = []
    for _ in range(num_subsets):
        x = f2[rng.choice(len(f2), m, replace=False)].astype(np.float64)
        y = f1[rng.choice(len(f1), m, replace=False)].astype(np.float64)
        kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
        off = lambda k: k.sum() - np.trace(k)  # noqa: E731
        values.append(off(kxx) / (m * (m - 1)) + off(kyy) / (m * (m - 1)) - 2 * kxy.sum() / m ** 2)
    return np.array(values)


@pytest.mark.parametrize("n1,n2,d,subsets,max_size", [(300, 250, 64, 20, 100), (500, 700, 32, 10, 1000),
                                                       (120, 90, 2048, 5, 1000)])
def test_kid_equals_clean_fid_float64(n1, n2, d, subsets, max_size):
    from cleanfid.fid import kernel_distance

    rng = np.random.default_rng(n1 + d)
    f1 = np.abs(rng.normal(size=(n1, d))) * 0.5
    f2 = np.abs(rng.normal(size=(n2, d))) * 0.55 + 0.01
    np.random.seed(7)
    ref = kernel_distance(f1, f2, num_subsets=subsets, max_subset_size=max_size)
    result = kid(f1, f2, num_subsets=subsets, max_subset_size=max_size, seed=7)
    assert abs(result.mean / ref - 1) <= 1e-6
    assert result.subset_size == min(n1, n2, max_size) and result.num_subsets == subsets
    values = naive_kid(f1, f2, subsets, max_size, 7)
    assert result.mean == pytest.approx(values.mean(), rel=1e-9)
    assert result.std == pytest.approx(values.std(), rel=1e-9)


def test_kid_float32_features_within_documented_tolerance():
    from cleanfid.fid import kernel_distance

    rng = np.random.default_rng(17)
    f1 = (np.abs(rng.normal(size=(400, 64))) * 0.5).astype(np.float32)
    f2 = (np.abs(rng.normal(size=(300, 64))) * 0.55 + 0.01).astype(np.float32)
    np.random.seed(0)
    ref = kernel_distance(f1, f2, num_subsets=20, max_subset_size=200)
    assert abs(kid(f1, f2, 20, 200, seed=0).mean / ref - 1) <= 1e-4


def test_kid_leaves_the_global_rng_alone_and_runs_on_torch():
    import torch

    rng = np.random.default_rng(18)
    f1, f2 = rng.normal(size=(200, 16)), rng.normal(size=(150, 16)) + 0.3
    np.random.seed(123)
    before = np.random.random()
    np.random.seed(123)
    result = kid(f1, f2, 10, 100, seed=1)
    assert np.random.random() == before
    on_torch = kid(torch.from_numpy(f1), torch.from_numpy(f2), 10, 100, seed=1)
    assert on_torch.mean == pytest.approx(result.mean, rel=1e-12)
    assert on_torch.std == pytest.approx(result.std, rel=1e-12)
    assert kid(f1, f2, 10, 100, seed=2).mean != result.mean


def test_kid_bad_input():
    rng = np.random.default_rng(19)
    f1, f2 = rng.normal(size=(20, 8)), rng.normal(size=(20, 8))
    with pytest.raises(ValueError, match="8 dimensions and features2 9"):
        kid(f1, rng.normal(size=(20, 9)))
    bad = f2.copy()
    bad[3, 3] = np.inf
    with pytest.raises(ValueError, match="NaN or infinity"):
        kid(f1, bad)
    with pytest.raises(SampleSizeError, match="at least 2 samples"):
        kid(f1, f2[:1])
    with pytest.raises(ValueError, match="num_subsets"):
        kid(f1, f2, num_subsets=0)
    with pytest.raises(ValueError, match="2-D"):
        kid(f1[0], f2)
