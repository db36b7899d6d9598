"""Nearest neighbours, the copy check, C_T and the nearest-neighbour grid.

Synthetic features for the statistics; a small end-to-end run on rendered avatars (Inception
candidates re-ranked by LPIPS) for the copy check; tiny images for the grid.
"""
import numpy as np
import pytest
import torch
from PIL import Image
from scipy.spatial.distance import cdist
from scipy.stats import mannwhitneyu, norm

from evalkit.reports import copycheck_grid
from evalkit.metrics import copying

CPU = torch.device("cpu")


def _mixture(rng, n, means, scale=1.0):
    return means[rng.integers(len(means), size=n)] + scale * rng.standard_normal((n, means.shape[1]))


def _brute_force(q, r, k, exclude=None):
    d = cdist(q, r)
    if exclude is not None:
        d[np.arange(len(q)), exclude] = np.inf
    idx = np.array([np.lexsort((np.arange(r.shape[0]), row))[:k] for row in d])
    return idx, np.take_along_axis(d, idx, 1)


# ---------------------------------------------------------------------------------------------
# nearest neighbours


@pytest.mark.parametrize("chunk", [1, 37, 4096])
def test_chunked_nearest_neighbours_equal_brute_force(chunk):
    rng = np.random.default_rng(0)
    q = rng.standard_normal((150, 16)).astype(np.float32) + 5
    r = rng.standard_normal((230, 16)).astype(np.float32) + 5
    nb = copying.nearest_neighbours(q, r, k=5, device=CPU, chunk=chunk)
    idx, dist = _brute_force(q.astype(np.float64), r.astype(np.float64), 5)
    np.testing.assert_array_equal(nb.indices, idx)
    np.testing.assert_allclose(nb.distances, dist, rtol=1e-12, atol=0)


def test_float32_blocks_as_used_on_a_gpu_give_the_same_neighbours():
    rng = np.random.default_rng(10)
    q = rng.standard_normal((60, 32)).astype(np.float32) * 4 + 50
    r = rng.standard_normal((200, 32)).astype(np.float32) * 4 + 50
    nb = copying.nearest_neighbours(q, r, k=4, device=CPU, chunk=64, dtype=torch.float32)
    idx, dist = _brute_force(q.astype(np.float64), r.astype(np.float64), 4)
    np.testing.assert_array_equal(nb.indices, idx)
    np.testing.assert_allclose(nb.distances, dist, rtol=1e-12)  # recomputed exactly in float64


def _near_ties(seed: int = 11):
    """Two clusters far from the reference mean (centring cannot help) holding rows 1e-3 apart, so
    float32 block distances (|q|^2 ~ 4e6, rounding ~0.2) cannot rank them; float64 differences can."""
    rng = np.random.default_rng(seed)
    centres = np.zeros((2, 24))
    centres[:, 0] = [-1000.0, 1000.0]
    r = centres[rng.integers(2, size=300)] + 1e-3 * rng.standard_normal((300, 24))
    q = r[rng.integers(300, size=40)] + 1e-4 * rng.standard_normal((40, 24))
    return q, r


def test_float32_candidate_selection_is_exact_for_near_ties():
    q, r = _near_ties()
    idx, dist = _brute_force(q, r, 3)
    for chunk in (32, 4096):
        nb = copying.nearest_neighbours(q, r, k=3, device=CPU, chunk=chunk, dtype=torch.float32)
        np.testing.assert_array_equal(nb.indices, idx)
        np.testing.assert_allclose(nb.distances, dist, rtol=1e-9)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_nearest_neighbours_on_cuda_equal_the_cpu_exactly():
    q, r = _near_ties(12)
    rng = np.random.default_rng(3)
    for qq, rr in ((q, r), (rng.standard_normal((500, 2048)).astype(np.float32),
                            rng.standard_normal((3000, 2048)).astype(np.float32))):
        on_cpu = copying.nearest_neighbours(qq, rr, k=5, device=CPU, chunk=1024)
        on_gpu = copying.nearest_neighbours(qq, rr, k=5, device="cuda", chunk=1024)
        np.testing.assert_array_equal(on_gpu.indices, on_cpu.indices)
        np.testing.assert_array_equal(on_gpu.distances, on_cpu.distances)


def test_leave_one_out_neighbours_and_exact_copies():
    rng = np.random.default_rng(1)
    r = rng.standard_normal((120, 8)) * 3 + 1000.0  # large offset: the mm formula alone would lose copies
    sub = np.array([0, 5, 17, 63, 119])
    nb = copying.nearest_neighbours(r[sub], r, k=3, device=CPU, chunk=16, exclude=sub)
    idx, dist = _brute_force(r[sub], r, 3, exclude=sub)
    np.testing.assert_array_equal(nb.indices, idx)
    assert all(s not in row for s, row in zip(sub, nb.indices))
    np.testing.assert_allclose(nb.distances, dist, rtol=1e-12)
    copies = copying.nearest_neighbours(r[sub], r, k=1, device=CPU, chunk=16)
    np.testing.assert_array_equal(copies.indices[:, 0], sub)
    np.testing.assert_array_equal(copies.distances[:, 0], 0.0)  # exactly 0, recomputed from differences


def test_nearest_neighbours_refuses_bad_input():
    with pytest.raises(ValueError, match="dimensions"):
        copying.nearest_neighbours(np.zeros((2, 3)), np.zeros((4, 5)), device=CPU)
    with pytest.raises(copying.SampleSizeError):
        copying.nearest_neighbours(np.zeros((2, 3)), np.zeros((4, 3)), k=5, device=CPU)
    with pytest.raises(ValueError, match="NaN"):
        copying.nearest_neighbours(np.full((2, 3), np.nan), np.zeros((4, 3)), device=CPU)


def test_rerank_orders_candidates_by_the_pair_distance():
    rng = np.random.default_rng(2)
    truth_q = rng.standard_normal((40, 6))
    truth_r = rng.standard_normal((300, 6))
    # features are a noisy proxy of the "images" (truth); the pair distance sees the truth
    fq = truth_q + 0.3 * rng.standard_normal(truth_q.shape)
    fr = truth_r + 0.3 * rng.standard_normal(truth_r.shape)
    cand = copying.nearest_neighbours(fq, fr, k=10, device=CPU)
    calls = []
    offset = 1000  # query ids passed through to the pair function

    def pairs(qi, ri):
        calls.append(len(qi))
        return np.linalg.norm(truth_q[qi - offset] - truth_r[ri], axis=1)

    rr = copying.rerank(cand, pairs, keep=3, query_ids=np.arange(40) + offset, batch=7)
    assert max(calls) <= 7 and sum(calls) == 400
    assert rr.indices.shape == rr.distances.shape == rr.feature_distances.shape == (40, 3) and rr.candidates == 10
    for i in range(40):
        true = np.linalg.norm(truth_q[i] - truth_r[cand.indices[i]], axis=1)
        order = np.argsort(true)[:3]
        np.testing.assert_array_equal(rr.indices[i], cand.indices[i][order])
        np.testing.assert_allclose(rr.distances[i], true[order])
        np.testing.assert_allclose(rr.feature_distances[i], cand.distances[i][order])
    with pytest.raises(ValueError, match="returned"):
        copying.rerank(cand, lambda a, b: np.zeros(3), keep=3)


# ---------------------------------------------------------------------------------------------
# copy check on synthetic features


@pytest.fixture(scope="module")
def feature_world():
    rng = np.random.default_rng(3)
    means = rng.normal(0, 3, (6, 32))
    train = _mixture(rng, 400, means)
    return rng, means, train


def test_copy_check_flags_exactly_the_planted_copies(feature_world):
    rng, means, train = feature_world
    src = rng.choice(len(train), 12, replace=False)
    planted = np.concatenate([train[src[:6]], train[src[6:]] + 1e-3 * rng.standard_normal((6, 32))])
    gen = np.concatenate([planted, _mixture(rng, 88, means)])
    perm = rng.permutation(len(gen))
    gen = gen[perm]
    planted_rows = np.flatnonzero(perm < 12)

    res = copying.copy_check(gen, train, candidates=10, keep=3, device=CPU, chunk=64)
    np.testing.assert_array_equal(res.flagged_indices, planted_rows)
    assert res.verdict == "12 of 100 samples look copied — see grid"
    assert res.score == pytest.approx(0.12)
    # each planted copy's nearest neighbour is its source
    np.testing.assert_array_equal(res.neighbours.indices[planted_rows, 0], src[perm[planted_rows]])
    assert res.metric == "feature L2"
    p5 = np.percentile(res.train_nn_distances, 5)
    assert res.tau == pytest.approx(0.5 * p5)
    assert "0.5 × P5" in res.rule and "leave-one-out" in res.rule
    assert len(res.train_nn_distances) == len(train)


def test_copy_check_without_copies_says_so(feature_world):
    rng, means, train = feature_world
    res = copying.copy_check(_mixture(rng, 100, means), train, device=CPU, train_queries=200, seed=5)
    assert res.verdict == "no sign of copying"
    assert res.n_flagged == 0 and res.score == 0.0
    assert len(res.train_query_indices) == 200 and len(np.unique(res.train_query_indices)) == 200
    again = copying.copy_check(_mixture(np.random.default_rng(9), 5, means), train, device=CPU, train_queries=200,
                               seed=5)
    np.testing.assert_array_equal(again.train_query_indices, res.train_query_indices)  # seeded


def test_copy_threshold_and_verdict_strings():
    tau, rule = copying.copy_threshold(np.arange(1, 101, dtype=float))
    assert tau == pytest.approx(0.5 * np.percentile(np.arange(1, 101), 5))
    assert "P5" in rule and "≤ τ" in rule
    assert copying.copy_verdict([False, False]) == "no sign of copying"
    assert copying.copy_verdict([True, False, True]) == "2 of 3 samples look copied — see grid"
    with pytest.raises(ValueError, match="both"):
        copying.copy_check(np.zeros((2, 3)), np.ones((5, 3)), gen_pairs=lambda a, b: a, device=CPU)


# ---------------------------------------------------------------------------------------------
# AuthPct


def _dgm_eval_authpct(train, gen):
    """dgm-eval's metrics/authpct.py formula, written out with full torch.cdist matrices."""
    t, g = torch.from_numpy(train), torch.from_numpy(gen)
    real = torch.cdist(t, t)
    real.fill_diagonal_(float("inf"))
    to_gen = torch.cdist(t, g).min(dim=0)
    authentic = real.min(dim=0).values[to_gen.indices] < to_gen.values
    return 100.0 * authentic.double().mean().item()


@pytest.mark.parametrize("chunk", [7, 4096])
def test_authpct_equals_the_dgm_eval_formula(feature_world, chunk):
    rng, means, train = feature_world
    gen = _mixture(rng, 150, means)
    result = copying.authenticity(gen, train, device=CPU, chunk=chunk)
    assert result.authpct == pytest.approx(_dgm_eval_authpct(train, gen), abs=1e-9)
    assert 0 < result.authpct < 100 and result.authentic.shape == (150,)


def test_authpct_falls_with_planted_copies_and_refuses_tiny_sets(feature_world):
    rng, means, train = feature_world
    fresh = copying.authenticity(_mixture(rng, 200, means), train, device=CPU).authpct
    copies = train[:100] + 1e-6 * rng.standard_normal((100, train.shape[1]))
    half = copying.authenticity(np.concatenate([copies, _mixture(rng, 100, means)]), train, device=CPU)
    assert not half.authentic[:100].any()            # a near-copy is never authentic
    assert half.authpct < 0.6 * fresh
    with pytest.raises(copying.SampleSizeError, match="at least 2 training samples"):
        copying.authenticity(train[:3], train[:1], device=CPU)


# ---------------------------------------------------------------------------------------------
# C_T


# The hand-written PCA, k-means and Mann-Whitney z that C_T used before it moved to scikit-learn and
# scipy (kept here as an independent second implementation for the parity test below).

def _ref_pca_fit(x, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and the top `dims` principal directions (D, dims) of `x`, in float64, with a
    deterministic sign (largest-magnitude entry of each direction positive)."""
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=0)
    xc = x - mean
    dims = min(dims, x.shape[1], max(len(x) - 1, 1))
    if len(x) > x.shape[1]:
        vals, vecs = np.linalg.eigh(xc.T @ xc)
        comps = vecs[:, np.argsort(vals)[::-1][:dims]]
    else:
        # fewer samples than dimensions: eigenvectors of the n x n Gram matrix map to the principal
        # directions (xcᵀ u / ‖xcᵀ u‖); ~50x cheaper than an SVD of the n x D matrix at D = 2048
        vals, vecs = np.linalg.eigh(xc @ xc.T)
        top = np.argsort(vals)[::-1][:dims]
        comps = xc.T @ vecs[:, top]
        comps /= np.maximum(np.linalg.norm(comps, axis=0), np.finfo(np.float64).tiny)
    signs = np.sign(comps[np.abs(comps).argmax(axis=0), np.arange(comps.shape[1])])
    return mean, comps * np.where(signs == 0, 1.0, signs)


def _ref_kmeans(x, k: int, seed: int = 0, n_init: int = 4, max_iter: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means with k-means++ seeding, best of `n_init` seeded runs; (centers, labels)."""
    x = np.asarray(x, np.float64)
    if not 1 <= k <= len(x):
        raise copying.SampleSizeError(f"k-means with {k} cells needs at least {k} points, got {len(x)}")
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(n_init):
        centers = np.empty((k, x.shape[1]))
        centers[0] = x[rng.integers(len(x))]
        d2 = copying._sq_dists(x, centers[:1])[:, 0]
        for c in range(1, k):
            total = d2.sum()
            i = rng.choice(len(x), p=d2 / total) if total > 0 else rng.integers(len(x))
            centers[c] = x[i]
            d2 = np.minimum(d2, copying._sq_dists(x, centers[c:c + 1])[:, 0])
        labels = None
        for _ in range(max_iter):
            dist = copying._sq_dists(x, centers)
            new = dist.argmin(1)
            if labels is not None and np.array_equal(new, labels):
                break
            labels = new
            for c in range(k):
                members = labels == c
                if members.any():
                    centers[c] = x[members].mean(0)
                else:  # empty cell: restart it at the point farthest from its centre
                    far = dist[np.arange(len(x)), labels].argmax()
                    centers[c] = x[far]
                    labels[far] = c
        inertia = copying._sq_dists(x, centers)[np.arange(len(x)), labels].sum()
        if best is None or inertia < best[0]:
            best = (inertia, centers.copy(), labels.copy())
    return best[1], best[2]


def _ref_mann_whitney_z(gen_distances, test_distances) -> tuple[float, float]:
    """Mann-Whitney U of the generated distances against the held-out ones and its z-score.

    U = R_gen − m(m+1)/2 (R_gen: rank sum of the m generated distances in the pooled sample, ties
    given their average rank) counts the (gen, test) pairs with gen > test, ties as ½. Under H0 it
    has mean mn/2 and variance mn(m+n+1)/12; z uses the paper's continuity correction:
    z = (U − mn/2 + 0.5) / √(mn(m+n+1)/12). z ≪ 0: generated samples are closer to the training
    set than held-out samples are. Returns (U, z).
    """
    from scipy.stats import rankdata

    q = np.asarray(gen_distances, np.float64).reshape(-1)
    p = np.asarray(test_distances, np.float64).reshape(-1)
    m, n = q.size, p.size
    if m == 0 or n == 0:
        raise copying.SampleSizeError("the Mann-Whitney U test needs at least one sample in each group")
    ranks = rankdata(np.concatenate([q, p]))
    u = float(ranks[:m].sum() - m * (m + 1) / 2)
    z = (u - m * n / 2 + 0.5) / np.sqrt(m * n * (m + n + 1) / 12)
    return u, float(z)


def test_mann_whitney_z_matches_scipy_and_corrects_for_ties():
    rng = np.random.default_rng(4)
    q, p = rng.standard_normal(37) - 0.3, rng.standard_normal(52)
    u, z = copying.mann_whitney_z(q, p)
    ref = mannwhitneyu(q, p, alternative="less", method="asymptotic", use_continuity=True)
    assert u == pytest.approx(ref.statistic)
    assert z == pytest.approx(norm.ppf(ref.pvalue), rel=1e-9)
    assert (u, z) == pytest.approx(_ref_mann_whitney_z(q, p), rel=1e-12)  # no ties: the old formula
    # exact copies: a block of zero distances; the tie-corrected z is scipy's and larger in magnitude
    q_tied = np.concatenate([np.zeros(15), np.abs(q[:22])])
    u, z = copying.mann_whitney_z(q_tied, np.abs(p))
    ref = mannwhitneyu(q_tied, np.abs(p), alternative="less", method="asymptotic", use_continuity=True)
    assert z == pytest.approx(norm.ppf(ref.pvalue), rel=1e-9)
    assert abs(z) > abs(_ref_mann_whitney_z(q_tied, np.abs(p))[1])


def test_sklearn_ct_equals_the_hand_written_implementation(monkeypatch):
    """On well-separated clusters both k-means implementations find the same partition, so C_T,
    its cells and Z_U agree to rounding."""
    rng = np.random.default_rng(21)
    means = rng.normal(0, 12, (6, 20))
    train, test = _mixture(rng, 1200, means), _mixture(rng, 600, means)
    gen = np.concatenate([train[:60] + 1e-3, _mixture(rng, 540, means)])
    new = copying.data_copying_ct(train, test, gen, n_cells=6, pca_dims=8, device=CPU)
    monkeypatch.setattr(copying, "pca_fit", lambda x, dims, seed=0: _ref_pca_fit(x, dims))
    monkeypatch.setattr(copying, "kmeans", _ref_kmeans)
    monkeypatch.setattr(copying, "mann_whitney_z", _ref_mann_whitney_z)
    old = copying.data_copying_ct(train, test, gen, n_cells=6, pca_dims=8, device=CPU)
    key = lambda c: (c.n_train, c.n_test, c.n_gen)  # cell numbering differs between implementations
    assert sorted(map(key, new.cells)) == sorted(map(key, old.cells))
    assert sorted(c.z for c in new.cells) == pytest.approx(sorted(c.z for c in old.cells), rel=1e-9)
    assert new.c_t == pytest.approx(old.c_t, rel=1e-9)


@pytest.fixture(scope="module")
def ct_world():
    rng = np.random.default_rng(5)
    means = rng.normal(0, 3, (5, 24))
    return rng, means, _mixture(rng, 1500, means), _mixture(rng, 750, means)


def test_ct_is_strongly_negative_for_a_copying_generator(ct_world):
    rng, means, train, test = ct_world
    gen = train[rng.choice(len(train), 750, replace=False)] + 0.01 * rng.standard_normal((750, 24))
    res = copying.data_copying_ct(train, test, gen, device=CPU)
    assert res.c_t < -3 and res.z < -3 and res.verdict == "copying", res.z
    assert "evidence of data copying" in res.interpretation
    assert res.n_cells == 15 and res.pca_dims == 24 and res.tau_n == pytest.approx(20 / 750)


def test_ct_is_near_zero_for_fresh_samples_and_deterministic(ct_world):
    rng, means, train, test = ct_world
    gen = _mixture(rng, 750, means)
    res = copying.data_copying_ct(train, test, gen, n_cells=8, pca_dims=16, device=CPU, seed=1)
    assert abs(res.z) < 3 and res.verdict == "not detectable", res.z
    assert "no data-copying detectable at N = 750 generated and 750 held-out samples, k = 8 cells" in res.interpretation
    assert res.pca_dims == 16 and len(res.cells) == 8 and len(res.cell_z) == 8
    assert sum(c.n_train for c in res.cells) == 1500 and sum(c.n_test for c in res.cells) == 750
    assert sum(c.test_share for c in res.cells) == pytest.approx(1.0)
    for c in res.cells:
        assert c.included == (c.gen_share > res.tau_n and c.n_test > 0)
    used = [c for c in res.cells if c.included]
    w = np.array([c.test_share for c in used])
    assert res.c_t == pytest.approx(np.dot(w, [c.z for c in used]) / w.sum())
    assert res.null_sd == pytest.approx(np.sqrt((w ** 2).sum()) / w.sum())
    assert res.z == pytest.approx(res.c_t / res.null_sd)
    again = copying.data_copying_ct(train, test, gen, n_cells=8, pca_dims=16, device=CPU, seed=1)
    assert again.c_t == res.c_t and again.cells == res.cells


def test_ct_is_positive_for_an_underfitting_generator(ct_world):
    rng, means, train, test = ct_world
    res = copying.data_copying_ct(train, test, _mixture(rng, 750, means, scale=1.6), n_cells=8, device=CPU)
    assert res.z > 3 and res.verdict == "underfitting" and "underfitting" in res.interpretation


def _ct_sets(rng, n, copy_share=0.0, dims=8, components=6):
    means = rng.normal(0, 2.5, (components, dims))
    train, test = _mixture(rng, n, means), _mixture(rng, n, means)
    gen = _mixture(rng, n, means)
    c = int(round(copy_share * n))
    gen[:c] = train[rng.choice(n, c, replace=False)]
    return train, test, gen


@pytest.mark.parametrize("cells", [3, 20, 50])
def test_ct_null_spread_is_sqrt_sum_w2_over_sum_w(cells):
    """Honest samples: over repetitions, sd(C_T) ≈ √Σw²/Σw (shrinking with the cell count) while the
    standardised z keeps sd ≈ 1 at every cell count; the copying verdict does not fire."""
    rng = np.random.default_rng(100 + cells)
    n = 40 * cells + 400
    reps = [copying.data_copying_ct(*_ct_sets(rng, n), n_cells=cells, device=CPU, seed=r) for r in range(24)]
    c_t = np.array([r.c_t for r in reps])
    z = np.array([r.z for r in reps])
    predicted = np.mean([r.null_sd for r in reps])
    # 24 repetitions estimate an sd to about ±15% (1 SE); allow ±45%
    assert 0.55 * predicted < c_t.std(ddof=1) < 1.45 * predicted, (c_t.std(ddof=1), predicted)
    assert 0.55 < z.std(ddof=1) < 1.45 and abs(z.mean()) < 0.8, (z.mean(), z.std(ddof=1))
    assert sum(r.verdict == "copying" for r in reps) == 0


@pytest.mark.parametrize("cells", [3, 20, 50])
def test_ten_percent_exact_copies_are_called_copying_at_every_cell_count(cells):
    """With 2000 samples per set, 10% exact copies give z ≈ −0.05·√(6N) ≈ −5.5 whatever k (each copy
    removes about n/2 from U); C_T itself would read about −0.8 at 50 cells."""
    rng = np.random.default_rng(200 + cells)
    res = copying.data_copying_ct(*_ct_sets(rng, 2000, copy_share=0.10), n_cells=cells, device=CPU)
    assert res.z < -3 and res.verdict == "copying", (res.c_t, res.z)
    assert "evidence of data copying" in res.interpretation


# ---------------------------------------------------------------------------------------------
# end to end: Inception candidates, LPIPS re-ranking, rendered avatars


def test_planted_copies_are_found_through_lpips_reranking(tmp_path):
    from gan.avatars import avatar_array

    from evalkit.extract.features import features_of_arrays
    from evalkit.extract.lpips import pair_distance_fn

    train = avatar_array(40, seed=0, res=32)
    rng = np.random.default_rng(6)
    exact_src = np.array([2, 9, 17, 25, 33])
    noisy_src = np.array([4, 12, 21])
    shift_src = np.array([30, 38])
    noisy = np.clip(train[noisy_src] + rng.normal(0, 4, train[noisy_src].shape), 0, 255).round().astype(np.uint8)
    shifted = np.concatenate([train[shift_src][:, :, :1], train[shift_src][:, :, :-1]], axis=2)  # 1 px right
    planted = np.concatenate([train[exact_src], noisy, shifted])
    gen = np.concatenate([planted, avatar_array(20, seed=1, res=32)])
    perm = rng.permutation(len(gen))
    gen = gen[perm]
    planted_rows = np.flatnonzero(perm < 10)
    sources = np.concatenate([exact_src, noisy_src, shift_src])

    feats = features_of_arrays([np.concatenate([train, gen])], device=CPU)
    train_f, gen_f = feats[:40], feats[40:]
    res = copying.copy_check(gen_f, train_f, gen_pairs=pair_distance_fn(gen, train, CPU),
                             train_pairs=pair_distance_fn(train, train, CPU), candidates=10, keep=3,
                             train_queries=None, device=CPU)
    np.testing.assert_array_equal(res.flagged_indices, planted_rows)
    assert res.verdict == "10 of 30 samples look copied — see grid"
    assert res.metric == "LPIPS" and "LPIPS" in res.rule
    np.testing.assert_array_equal(res.neighbours.indices[planted_rows, 0], sources[perm[planted_rows]])
    exact_rows = np.flatnonzero(perm < 5)
    np.testing.assert_array_equal(res.neighbours.distances[exact_rows, 0], 0.0)

    # the grid for the flagged rows plus two others renders
    rows = np.concatenate([res.flagged_indices, np.flatnonzero(~res.flags)[:2]])
    out = copycheck_grid.render_neighbour_grid(gen[rows], train[res.neighbours.indices[rows]], res.neighbours.distances[rows],
                                 res.flags[rows], tmp_path / "grid.png",
                                 feature_distances=res.neighbours.feature_distances[rows],
                                 titles=[f"gen {i}" for i in rows], caption=res.verdict)
    with Image.open(out) as im:
        assert im.size == (copycheck_grid.GridLayout(len(rows), 4, 96).width, copycheck_grid.GridLayout(len(rows), 4, 96).height)


# ---------------------------------------------------------------------------------------------
# grid


def _frame_ring(arr, box):
    x0, y0, x1, y1 = box
    b = copycheck_grid.BORDER
    ring = np.concatenate([arr[y0:y0 + b, x0:x1 + 1].reshape(-1, 3), arr[y1 - b + 1:y1 + 1, x0:x1 + 1].reshape(-1, 3),
                           arr[y0:y1 + 1, x0:x0 + b].reshape(-1, 3), arr[y0:y1 + 1, x1 - b + 1:x1 + 1].reshape(-1, 3)])
    return ring


def test_grid_layout_size_and_flag_marker(tmp_path):
    rng = np.random.default_rng(7)
    samples = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    neighbours = rng.integers(0, 256, (2, 3, 32, 32, 3), dtype=np.uint8)
    out = copycheck_grid.render_neighbour_grid(samples, neighbours, rng.random((2, 3)), [False, True], tmp_path / "g.png",
                                 feature_distances=rng.random((2, 3)) * 20, titles=["a", "b"])
    cell = 96  # 32 px upscaled x3
    b, pad, line = copycheck_grid.BORDER, copycheck_grid.PAD, copycheck_grid.LINE_H
    width = pad + 4 * (cell + 2 * b + pad)
    height = (pad + 2 * line) + 2 * (cell + 2 * b + 3 * line + pad) + pad
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (width, height)
        arr = np.asarray(im.convert("RGB"))
    layout = copycheck_grid.GridLayout(2, 4, cell)
    red = np.array(copycheck_grid.FLAG_COLOUR)
    for col in range(4):
        assert (_frame_ring(arr, layout.frame_box(1, col)) == red).all()       # flagged row: red frames
        assert not (_frame_ring(arr, layout.frame_box(0, col)) == red).all(1).any()  # other row: none
    # the image is upscaled with nearest neighbour: each source pixel becomes a 3x3 block
    x0, y0, _, _ = layout.frame_box(0, 0)
    np.testing.assert_array_equal(arr[y0 + b:y0 + b + cell, x0 + b:x0 + b + cell],
                                  samples[0].repeat(3, 0).repeat(3, 1))


def test_grid_accepts_mixed_sizes_and_grayscale(tmp_path):
    rng = np.random.default_rng(8)
    samples = [rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)]
    neighbours = [[rng.integers(0, 256, (64, 64), dtype=np.uint8), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)]]
    out = copycheck_grid.render_neighbour_grid(samples, neighbours, [[0.1, 0.2]], [True], tmp_path / "m.png", caption="τ ≤ 0.1 —")
    layout = copycheck_grid.GridLayout(1, 3, 128)  # longest side 64, x2
    with Image.open(out) as im:
        assert im.size == (layout.width, layout.height)
    with pytest.raises(ValueError, match="distances"):
        copycheck_grid.render_neighbour_grid(samples, neighbours, [[0.1]], [True], tmp_path / "x.png")
