"""Overfitting and data-copying checks over features and distances (no images, no file I/O).

Three pieces:

* `nearest_neighbours`: exact k nearest training rows for each query row, Euclidean, computed in
  (query chunk x reference chunk) blocks with a running top-k, so no N x M matrix is ever held.
* `copy_check`: which generated samples look copied. Inception nearest neighbours give the top-K
  candidates, a caller-supplied pair distance (LPIPS, see `evalkit.extract.lpips.pair_distance_fn`)
  re-ranks them, and a sample is flagged when its nearest training image is closer than τ:
  calibrated on held-out real images for a stated false-alarm rate (`calibrated_threshold`), or,
  without them, the uncalibrated train→train rule (`copy_threshold`).
* `authenticity`: AuthPct (Alaa et al., ICML 2022, in the per-sample form of Stein et al.'s
  dgm-eval): the share of generated samples farther from their nearest training sample than that
  training sample is from its own nearest other training sample.
* `data_copying_ct`: the C_T test of Meehan, Chaudhuri & Dasgupta (AISTATS 2020), "A Non-Parametric
  Test to Detect Data-Copying in Generative Models", with its verdict read from the standardised
  z = C_T · Σw / √Σw² (`standardise_ct`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..errors import SampleSizeError

PairDistance = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _features(x, what: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (N, D), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contain NaN or infinity; the feature extractor or input images are broken")
    return arr


# ---------------------------------------------------------------------------------------------
# Nearest neighbours


@dataclass(frozen=True)
class Neighbours:
    """k nearest reference rows per query row, nearest first (ties broken by the lower index)."""
    indices: np.ndarray    # (N, k) int64 into the reference set
    distances: np.ndarray  # (N, k) float64 Euclidean distances


def nearest_neighbours(query, reference, k: int = 1, device: torch.device | str | None = None,
                       chunk: int = 2048, exclude=None, dtype: torch.dtype | None = None) -> Neighbours:
    """Exact k nearest neighbours of each `query` row among the `reference` rows (Euclidean).

    "Exact" means: the neighbours and distances that squared differences summed in float64 give
    (ties broken by the lower index), on any device and in any block precision. The blocks of at
    most `chunk` x `chunk` squared distances (|q|^2 + |r|^2 - 2 q.r on features centred on the
    reference mean; float64 on the CPU, float32 on a GPU, `dtype` overrides) only pre-select: each
    block value is within a proven rounding bound of the exact one (`_block_error_bound`), so every
    reference row whose lower bound does not exceed the current k-th smallest upper bound is a
    candidate, and candidates are re-checked exactly in float64 from their differences. `exclude`
    (N,) gives, per query row, a reference index to leave out (-1: none); use it for leave-one-out
    queries of the reference set against itself.
    """
    q = _features(query, "query features")
    r = _features(reference, "reference features")
    if q.shape[1] != r.shape[1]:
        raise ValueError(f"query has {q.shape[1]} dimensions, reference {r.shape[1]}; same feature extractor?")
    n, m = len(q), len(r)
    if exclude is not None:
        exclude = np.asarray(exclude, np.int64).reshape(-1)
        if exclude.shape != (n,):
            raise ValueError(f"exclude must have one entry per query row ({n}), got {exclude.shape}")
        if n and (exclude.min() < -1 or exclude.max() >= m):
            raise ValueError(f"exclude holds indices outside the reference set (0..{m - 1}, or -1 for none)")
    available = m - (1 if exclude is not None and n and (exclude >= 0).any() else 0)
    if k < 1 or k > available:
        raise SampleSizeError(f"asked for {k} nearest neighbours among {available} reference rows")
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    if n == 0:
        return Neighbours(np.zeros((0, k), np.int64), np.zeros((0, k), np.float64))
    device = _device(device)
    if dtype is None:
        dtype = torch.float64 if device.type == "cpu" else torch.float32
    centre = r.mean(axis=0, dtype=np.float64)
    q64, r64 = np.asarray(q, np.float64), np.asarray(r, np.float64)
    bound_factor = _block_error_bound(q.shape[1], dtype)
    r_norm = np.sqrt(np.einsum("ij,ij->i", r64 - centre, r64 - centre))

    def block(x: np.ndarray, start: int, stop: int) -> torch.Tensor:
        return torch.from_numpy(x[start:stop] - centre).to(device, dtype)

    r_blocks = [None] * ((m + chunk - 1) // chunk)
    indices = np.empty((n, k), np.int64)
    sq_dist = np.empty((n, k), np.float64)
    with _full_float32_matmul():
        for qs in range(0, n, chunk):
            qe = min(qs + chunk, n)
            qb = block(q64, qs, qe)
            q_sq = (qb * qb).sum(1, keepdim=True)
            q_norm = torch.from_numpy(np.sqrt(np.einsum("ij,ij->i", q64[qs:qe] - centre, q64[qs:qe] - centre)))
            q_norm = q_norm.to(device)
            best_i = np.full((qe - qs, k), -1, np.int64)
            best_d = np.full((qe - qs, k), np.inf)
            for bi, rs in enumerate(range(0, m, chunk)):
                re = min(rs + chunk, m)
                if r_blocks[bi] is None:
                    rb = block(r64, rs, re)
                    r_blocks[bi] = (rb, (rb * rb).sum(1), torch.from_numpy(r_norm[rs:re]).to(device))
                rb, r_sq, rn = r_blocks[bi]
                d2 = (q_sq + r_sq[None, :] - 2.0 * (qb @ rb.T)).clamp_min_(0.0).to(torch.float64)
                slack = bound_factor * (q_norm[:, None] + rn[None, :]).square()
                lower, upper = d2 - slack, d2 + slack
                if exclude is not None:
                    local = torch.from_numpy(exclude[qs:qe] - rs).to(device)
                    rows = torch.nonzero((local >= 0) & (local < re - rs)).flatten()
                    lower[rows, local[rows]] = float("inf")
                    upper[rows, local[rows]] = float("inf")
                # A row can be among the k nearest only if its lower bound is at most the k-th
                # smallest known exact value or upper bound.
                threshold = torch.from_numpy(best_d[:, k - 1]).to(device)
                if re - rs >= k:
                    threshold = torch.minimum(threshold, torch.topk(upper, k, dim=1, largest=False).values[:, -1])
                rows, cols = torch.nonzero(lower <= threshold[:, None], as_tuple=True)
                best_i, best_d = _merge_exact(best_i, best_d, rows.cpu().numpy(), cols.cpu().numpy() + rs,
                                              q64[qs:qe], r64, k)
            indices[qs:qe], sq_dist[qs:qe] = best_i, best_d
    return Neighbours(indices, np.sqrt(sq_dist))


def _block_error_bound(dim: int, dtype: torch.dtype) -> float:
    """c with |block d^2 - exact d^2| <= c (|a| + |b|)^2 for centred rows a, b of `dim` features.

    The block inputs are the centred rows rounded twice (float64, then `dtype`: relative error
    u' <= u + 2^-53 each), which moves |a - b|^2 by at most (2u' + u'^2)(|a| + |b|)^2; |a|^2 + |b|^2
    - 2 a.b evaluated with dim-term sums and two more additions errs by at most
    gamma_{dim+2}(u) (1 + u')^2 (|a| + |b|)^2, gamma_n(u) = n u / (1 - n u) (Higham, Accuracy and
    Stability of Numerical Algorithms, 2nd ed., section 3.1); the exact reference, differences
    squared and summed in float64, errs by gamma_{dim+2}(2^-53) (|a| + |b|)^2. The sum, doubled
    for the norms' own rounding, bounds the gap.
    """
    u64 = 2.0 ** -53
    u = {torch.float64: u64, torch.float32: 2.0 ** -24}.get(dtype)
    if u is None:
        raise ValueError(f"nearest_neighbours blocks must be float32 or float64, not {dtype}")

    def gamma(count: int, unit: float) -> float:
        return count * unit / (1 - count * unit)

    u_in = u + u64
    return 2.0 * (2 * u_in + u_in ** 2 + gamma(dim + 2, u) * (1 + u_in) ** 2 + gamma(dim + 2, u64))


class _full_float32_matmul:
    """float32 matmuls in full float32 (no TF32) inside the block, as the error bound assumes."""

    def __enter__(self):
        self.saved = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")

    def __exit__(self, *exc):
        torch.set_float32_matmul_precision(self.saved)


def _merge_exact(best_i, best_d, rows, cols, q64, r64, k, batch: int = 8192):
    """Add candidates (rows[j] of this query block, reference cols[j]) with their exact squared
    distances to the running best k per row; order by (distance, index)."""
    if len(rows) == 0:
        return best_i, best_d
    exact = np.empty(len(rows), np.float64)
    for s in range(0, len(rows), batch):
        diff = q64[rows[s:s + batch]] - r64[cols[s:s + batch]]
        exact[s:s + batch] = np.einsum("ij,ij->i", diff, diff)
    known = best_i >= 0
    all_rows = np.concatenate([np.nonzero(known)[0], rows])
    all_idx = np.concatenate([best_i[known], cols])
    all_d = np.concatenate([best_d[known], exact])
    order = np.lexsort((all_idx, all_d, all_rows))
    all_rows, all_idx, all_d = all_rows[order], all_idx[order], all_d[order]
    starts = np.flatnonzero(np.r_[True, all_rows[1:] != all_rows[:-1]])
    rank = np.arange(len(all_rows)) - np.repeat(starts, np.diff(np.r_[starts, len(all_rows)]))
    keep = rank < k
    best_i, best_d = best_i.copy(), best_d.copy()
    best_i[all_rows[keep], rank[keep]] = all_idx[keep]
    best_d[all_rows[keep], rank[keep]] = all_d[keep]
    return best_i, best_d


# ---------------------------------------------------------------------------------------------
# Re-ranking candidates with a perceptual distance


@dataclass(frozen=True)
class Reranked:
    """The `keep` best of K feature-space candidates per query, ordered by the pair distance."""
    indices: np.ndarray            # (N, keep) int64 reference indices, nearest by `distances` first
    distances: np.ndarray          # (N, keep) float64 pair (e.g. LPIPS) distances
    feature_distances: np.ndarray  # (N, keep) float64 feature-space distances of the same pairs
    candidates: int                # K: feature-space candidates examined per query


def rerank(candidates: Neighbours, pair_distance: PairDistance, keep: int = 3, query_ids=None,
           batch: int = 4096) -> Reranked:
    """Re-rank each query's K feature-space candidates by `pair_distance(query_ids, reference_ids)`
    (e.g. LPIPS of the images behind them) and keep the best `keep`.

    `pair_distance` receives two equal-length int64 arrays and returns one distance per pair; it is
    called with at most `batch` pairs at a time. `query_ids` maps query rows to the ids passed to
    it (default: the row numbers). Ties are broken by feature distance, then index.
    """
    idx, fd = candidates.indices, candidates.distances
    n, k = idx.shape
    if not 1 <= keep <= k:
        raise ValueError(f"keep must be between 1 and the number of candidates ({k}), got {keep}")
    ids = np.arange(n, dtype=np.int64) if query_ids is None else np.asarray(query_ids, np.int64).reshape(-1)
    if ids.shape != (n,):
        raise ValueError(f"query_ids must have one entry per query row ({n}), got {ids.shape}")
    flat_q = np.repeat(ids, k)
    flat_r = idx.reshape(-1)
    pd = np.empty(n * k, np.float64)
    for s in range(0, n * k, batch):
        e = min(s + batch, n * k)
        out = np.asarray(pair_distance(flat_q[s:e], flat_r[s:e]), np.float64).reshape(-1)
        if out.shape != (e - s,):
            raise ValueError(f"pair_distance returned {out.shape} for {e - s} pairs")
        if not np.isfinite(out).all():
            raise ValueError("pair_distance returned NaN or infinity")
        pd[s:e] = out
    pd = pd.reshape(n, k)
    order = np.lexsort((idx, fd, pd), axis=1)[:, :keep]
    return Reranked(np.take_along_axis(idx, order, 1), np.take_along_axis(pd, order, 1),
                    np.take_along_axis(fd, order, 1), k)


def _feature_only(nb: Neighbours, keep: int) -> Reranked:
    return Reranked(nb.indices[:, :keep], nb.distances[:, :keep], nb.distances[:, :keep], nb.indices.shape[1])


# ---------------------------------------------------------------------------------------------
# Copy check

COPY_PERCENTILE = 5.0
COPY_FRACTION = 0.5

NO_COPYING = "no sign of copying"


def copy_threshold(train_nn_distances, percentile: float = COPY_PERCENTILE, fraction: float = COPY_FRACTION,
                   metric: str = "LPIPS") -> tuple[float, str]:
    """τ = fraction × the `percentile`-th percentile of the training set's leave-one-out
    nearest-neighbour distances; returns (τ, the rule as text).

    Why: a generated sample that is a new draw from the data distribution is, relative to the
    training set, in the same position as a training image relative to the *other* training images,
    so the leave-one-out train→train distances are the reference distribution for "not copied".
    Flagging below a low percentile alone would flag that share of honest samples by construction;
    halving it asks for a sample to be at least twice as close to a training image as 95% of
    training images are to their nearest other one, which new samples almost never are while
    copies (exact, or with noise, a pixel shift, re-compression) sit near 0. The 5th percentile
    rather than the minimum keeps τ from collapsing when a few training images are duplicates of
    each other and is stable on a subsample of the training set.
    """
    d = np.asarray(train_nn_distances, np.float64).reshape(-1)
    if d.size == 0:
        raise SampleSizeError("the copy threshold needs at least one train→train nearest-neighbour distance")
    if not np.isfinite(d).all():
        raise ValueError("train→train distances contain NaN or infinity")
    if not 0 < percentile < 100 or not 0 < fraction <= 1:
        raise ValueError(f"percentile must be in (0, 100) and fraction in (0, 1], got {percentile}, {fraction}")
    p = float(np.percentile(d, percentile))
    tau = fraction * p
    rule = (f"τ = {fraction:g} × P{percentile:g} of the leave-one-out train→train nearest-neighbour {metric} "
            f"distances ({d.size} training images; P{percentile:g} = {p:.4g}) = {tau:.4g}; a sample is flagged "
            f"as a copy when its nearest training image is at {metric} distance ≤ τ")
    return tau, rule


FALSE_ALARM = 0.01

UNCALIBRATED_WARNING = ("the copy threshold is uncalibrated: it comes from the training set's own leave-one-out "
                        "distances, so how often a fresh, honest sample is flagged is unknown; pass held-out real "
                        "images (--heldout) to calibrate it for a stated false-alarm rate")


@dataclass(frozen=True)
class Threshold:
    """A copy threshold τ (flag when the nearest training distance is ≤ τ) and how it was set."""
    value: float
    rule: str                    # in words, for the output
    false_alarm: float | None    # share of fresh real images it flags (expected); None: unknown
    n: int                       # distances it was computed from
    calibrated: bool             # True: from held-out→train distances; False: the train→train rule
    warning: str | None = None


def calibrated_threshold(heldout_to_train_distances, false_alarm: float = FALSE_ALARM,
                         metric: str = "LPIPS") -> Threshold:
    """τ = the `false_alarm`-quantile of the held-out→train nearest-neighbour distances.

    Held-out real images are fresh draws from the data distribution, in the position an honest
    generated sample would be in, so the share of them at distance ≤ τ is the share of honest
    samples the check flags. The quantile is the order statistic d_(j), j = ⌊α(n + 1)⌋, of the n
    held-out distances: for a new sample exchangeable with them, P(d ≤ d_(j)) = j / (n + 1) ≤ α
    (the split-conformal quantile; Vovk et al. 2005, Lei et al. 2018), whatever the distribution.
    With fewer than 1/α − 1 held-out images no order statistic reaches α; then j = 1 and the
    rule states the rate 1/(n + 1) it has instead. The distances must be computed exactly like the
    generated samples' (same candidates, same re-ranking), or the guarantee does not carry over.
    """
    d = np.sort(np.asarray(heldout_to_train_distances, np.float64).reshape(-1))
    if d.size == 0:
        raise SampleSizeError("calibrating the copy threshold needs at least one held-out→train distance")
    if not np.isfinite(d).all():
        raise ValueError("held-out→train distances contain NaN or infinity")
    if not 0 < false_alarm < 1:
        raise ValueError(f"the false-alarm rate must be in (0, 1), got {false_alarm}")
    n = d.size
    j = int(np.floor(false_alarm * (n + 1) + 1e-9))
    note = ""
    if j < 1:
        j = 1
        note = (f" (a {100 * false_alarm:g}% rate needs at least {int(np.ceil(1 / false_alarm)) - 1} held-out images; "
                f"with {n} the smallest achievable is 1/(n + 1))")
    rate = j / (n + 1)
    tau = float(d[j - 1])
    rule = (f"threshold calibrated on {n} held-out images for a {100 * false_alarm:g}% "
            f"false-alarm rate: τ = the {_ordinal(j)} held-out→train nearest-neighbour {metric} distance = {tau:.4g}, "
            f"so a fresh real image is flagged with probability {rate:.3g}{note}; a sample is flagged as a copy "
            f"when its nearest training image is at {metric} distance ≤ τ")
    return Threshold(tau, rule, rate, n, True)


def _ordinal(j: int) -> str:
    if j == 1:
        return "smallest"
    suffix = "th" if 10 <= j % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(j % 10, "th")
    return f"{j}{suffix} smallest"


def train_rule_threshold(train_nn_distances, percentile: float = COPY_PERCENTILE, fraction: float = COPY_FRACTION,
                         metric: str = "LPIPS") -> Threshold:
    """The uncalibrated fallback (`copy_threshold`) as a Threshold, with its warning."""
    tau, rule = copy_threshold(train_nn_distances, percentile, fraction, metric)
    return Threshold(tau, rule + " (uncalibrated)", None, int(np.asarray(train_nn_distances).size), False,
                     UNCALIBRATED_WARNING)


def copy_verdict(flags) -> str:
    """Exactly "no sign of copying" or "N of M samples look copied — see grid"."""
    flags = np.asarray(flags, bool).reshape(-1)
    n = int(flags.sum())
    return NO_COPYING if n == 0 else f"{n} of {flags.size} samples look copied — see grid"


@dataclass
class CopyCheck:
    flags: np.ndarray               # (M,) bool: sample looks copied
    score: float                    # share of flagged samples
    tau: float                      # threshold on the nearest-neighbour distance
    rule: str                       # how τ was set, in words
    verdict: str                    # "no sign of copying" or "N of M samples look copied — see grid"
    metric: str                     # "LPIPS" (re-ranked) or "feature L2"
    neighbours: Reranked            # per sample: nearest training indices and distances
    train_nn_distances: np.ndarray  # (S,) leave-one-out train→train distances, computed the same way
    train_query_indices: np.ndarray  # (S,) which training images those are
    params: dict = field(default_factory=dict)
    threshold: Threshold | None = None  # τ with its rule, false-alarm rate and calibration
    heldout_nn_distances: np.ndarray | None = None  # (H,) held-out→train distances τ was calibrated on

    @property
    def nn_distances(self) -> np.ndarray:
        return self.neighbours.distances[:, 0]

    @property
    def flagged_indices(self) -> np.ndarray:
        return np.flatnonzero(self.flags)

    @property
    def n_flagged(self) -> int:
        return int(self.flags.sum())


def nearest_training(query_features, train_features, pairs: PairDistance | None = None, candidates: int = 10,
                     keep: int = 3, device: torch.device | str | None = None, chunk: int = 2048,
                     exclude=None, query_ids=None) -> Reranked:
    """Each query's `keep` nearest training images: `candidates` feature-space neighbours, re-ranked
    by `pairs(query_ids, train_idx)` (LPIPS) when given. The one procedure behind the generated
    samples', the held-out images' and the leave-one-out training distances, so they are comparable."""
    q = _features(query_features, "query features")
    t = _features(train_features, "training features")
    k = min(candidates, len(t) - (1 if exclude is not None else 0))
    nb = nearest_neighbours(q, t, k, device, chunk, exclude=exclude)
    return _feature_only(nb, keep) if pairs is None else rerank(nb, pairs, keep, query_ids=query_ids)


def copy_check(gen_features, train_features, gen_pairs: PairDistance | None = None,
               train_pairs: PairDistance | None = None, candidates: int = 10, keep: int = 3,
               train_queries: int | None = 1000, percentile: float = COPY_PERCENTILE,
               fraction: float = COPY_FRACTION, seed: int = 0, device: torch.device | str | None = None,
               chunk: int = 2048, *, heldout_features=None, heldout_pairs: PairDistance | None = None,
               false_alarm: float = FALSE_ALARM, threshold: Threshold | None = None) -> CopyCheck:
    """Flag generated samples that look copied from the training set.

    For every generated sample the `candidates` nearest training samples in feature space
    (Inception) are found; `gen_pairs(gen_idx, train_idx)` (LPIPS between the images) re-ranks
    them and the `keep` best are kept. A sample is flagged when its nearest distance is ≤ τ.

    τ, in order of preference: `threshold` as given; calibrated on `heldout_features` (with
    `heldout_pairs(heldout_idx, train_idx)`), the `false_alarm`-quantile of the held-out images'
    nearest-training distances found the same way (`calibrated_threshold`); else the uncalibrated
    train→train rule (`copy_threshold`) over `train_queries` training images (a seeded subsample;
    None: all) against the rest, leaving each one out, with `train_pairs(train_idx_a, train_idx_b)`
    — `threshold.warning` then says it is uncalibrated. Without pair functions the feature L2
    distances are used throughout.
    """
    g = _features(gen_features, "generated features")
    t = _features(train_features, "training features")
    calibrate = threshold is None and heldout_features is not None
    if calibrate and (gen_pairs is None) != (heldout_pairs is None):
        raise ValueError("pass both gen_pairs and heldout_pairs or neither: the threshold must be calibrated "
                         "with the same distance as the samples' nearest neighbours")
    if threshold is None and not calibrate and (gen_pairs is None) != (train_pairs is None):
        raise ValueError("pass both gen_pairs and train_pairs or neither: the threshold must be computed "
                         "with the same distance as the samples' nearest neighbours")
    if len(t) < 2:
        raise SampleSizeError(f"the copy check needs at least 2 training samples, got {len(t)}")
    if len(g) == 0:
        raise SampleSizeError("the copy check needs at least 1 generated sample")
    k_train = min(candidates, len(t) - 1)
    if not 1 <= keep <= k_train:
        raise ValueError(f"keep must be between 1 and min(candidates, n_train - 1) = {k_train}, got {keep}")
    metric = "feature L2" if gen_pairs is None else "LPIPS"
    gen_rr = nearest_training(g, t, gen_pairs, candidates, keep, device, chunk)
    sub = np.zeros(0, np.int64)
    train_nn = np.zeros(0, np.float64)
    heldout_nn = None
    if threshold is None and calibrate:
        h = _features(heldout_features, "held-out features")
        heldout_nn = nearest_training(h, t, heldout_pairs, candidates, keep, device, chunk).distances[:, 0]
        threshold = calibrated_threshold(heldout_nn, false_alarm, metric)
    elif threshold is None:
        rng = np.random.default_rng(seed)
        if train_queries is None or train_queries >= len(t):
            sub = np.arange(len(t), dtype=np.int64)
        else:
            if train_queries < 1:
                raise ValueError(f"train_queries must be positive, got {train_queries}")
            sub = np.sort(rng.choice(len(t), size=train_queries, replace=False)).astype(np.int64)
        train_nn = nearest_training(t[sub], t, train_pairs, candidates, keep, device, chunk, exclude=sub,
                                    query_ids=sub).distances[:, 0]
        threshold = train_rule_threshold(train_nn, percentile, fraction, metric)
    tau = threshold.value
    flags = gen_rr.distances[:, 0] <= tau
    params = {"candidates": candidates, "keep": keep, "train_queries": int(len(sub)), "percentile": percentile,
              "fraction": fraction, "seed": seed, "metric": metric, "calibrated": threshold.calibrated,
              "false_alarm": threshold.false_alarm, "threshold_n": threshold.n}
    return CopyCheck(flags, float(flags.mean()), tau, threshold.rule, copy_verdict(flags), metric, gen_rr, train_nn,
                     sub, params, threshold, heldout_nn)


# ---------------------------------------------------------------------------------------------
# AuthPct


@dataclass(frozen=True)
class Authenticity:
    authpct: float                  # 100 × share of authentic samples
    authentic: np.ndarray           # (M,) bool
    gen_nn_distances: np.ndarray    # (M,) distance of each sample to its nearest training sample
    train_nn_distances: np.ndarray  # (M,) that training sample's distance to its own nearest other one


def authenticity(gen_features, train_features, device: torch.device | str | None = None,
                 chunk: int = 2048) -> Authenticity:
    """AuthPct. A generated sample is authentic when its nearest training sample j is closer to some
    other training sample than to it: d(g, t_j) > min_{i≠j} d(t_j, t_i) (strict, as dgm-eval).

    Unlike the reference code, which builds the full train×train and train×gen distance matrices
    (about 2 × 10 GB at 50k), only the nearest neighbours are kept, and the leave-one-out distance
    is computed only for training samples that are some sample's nearest neighbour. Honest samples
    score below 100 too: fresh draws from the training distribution scored 70% (16-d Gaussian),
    79% (64-d) and 89% (2048-d) against 2000 training samples, and replacing half of them by
    near-copies halved those numbers. So compare AuthPct between checkpoints, or against held-out
    real images (`authenticity(heldout, train)`), rather than reading it on its own.
    """
    g = _features(gen_features, "generated features")
    t = _features(train_features, "training features")
    if len(t) < 2:
        raise SampleSizeError(f"AuthPct needs at least 2 training samples, got {len(t)}")
    if len(g) == 0:
        raise SampleSizeError("AuthPct needs at least 1 generated sample")
    gen_nb = nearest_neighbours(g, t, 1, device, chunk)
    nearest = gen_nb.indices[:, 0]
    used = np.unique(nearest)
    loo = nearest_neighbours(t[used], t, 1, device, chunk, exclude=used).distances[:, 0]
    train_nn = loo[np.searchsorted(used, nearest)]
    gen_nn = gen_nb.distances[:, 0]
    authentic = train_nn < gen_nn
    return Authenticity(float(100.0 * authentic.mean()), authentic, gen_nn, train_nn)


# ---------------------------------------------------------------------------------------------
# C_T (Meehan et al. 2020)

CT_PCA_DIMS = 64
CT_MAX_CELLS = 50
CT_MIN_GEN_PER_CELL = 20   # τ_n = 20 / m, as in the paper's experiments
CT_COPYING_BELOW = -3.0


def pca_fit(x, dims: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and the top `dims` principal directions (D, dims) of `x`, by scikit-learn's PCA
    (as the C_T reference code, casey-meehan/data-copying, uses), with a deterministic sign
    (largest-magnitude entry of each direction positive; distances do not depend on it)."""
    from sklearn.decomposition import PCA

    x = np.asarray(x, np.float64)
    dims = min(dims, x.shape[1], max(len(x) - 1, 1))
    # many more samples than dimensions (50k x 2048 Inception features): the D x D covariance's
    # eigendecomposition is exact and several times faster than an SVD of the data matrix
    solver = "covariance_eigh" if len(x) > 2 * x.shape[1] else "full"
    pca = PCA(n_components=dims, svd_solver=solver, random_state=seed).fit(x)
    comps = pca.components_.T
    signs = np.sign(comps[np.abs(comps).argmax(axis=0), np.arange(comps.shape[1])])
    return pca.mean_, comps * np.where(signs == 0, 1.0, signs)


def _sq_dists(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
    return np.maximum((x * x).sum(1)[:, None] - 2 * x @ centers.T + (centers * centers).sum(1)[None, :], 0.0)


def assign_cells(x, centers, chunk: int = 65536) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return np.concatenate([_sq_dists(x[s:s + chunk], centers).argmin(1) for s in range(0, len(x), chunk)]
                          or [np.zeros(0, np.int64)]).astype(np.int64)


def kmeans(x, k: int, seed: int = 0, n_init: int = 4, max_iter: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's k-means (k-means++ seeding, Lloyd iterations, best of `n_init` seeded runs), as the
    C_T reference code partitions the training set; returns (centers, labels)."""
    from sklearn.cluster import KMeans

    x = np.asarray(x, np.float64)
    if not 1 <= k <= len(x):
        raise SampleSizeError(f"k-means with {k} cells needs at least {k} points, got {len(x)}")
    km = KMeans(n_clusters=k, n_init=n_init, max_iter=max_iter, random_state=seed).fit(x)
    return km.cluster_centers_, km.labels_.astype(np.int64)


def mann_whitney_z(gen_distances, test_distances) -> tuple[float, float]:
    """Mann-Whitney U of the generated distances against the held-out ones and its z-score.

    U (scipy.stats.mannwhitneyu, the statistic of the generated sample) counts the (gen, test) pairs
    with gen > test, ties as ½. Under H0 it has mean mn/2 and variance mn(m+n+1)/12 × the tie
    correction (scipy.stats.tiecorrect; exact copies all sit at distance 0, so ties matter); z uses
    the continuity correction of Meehan et al.'s reference code: z = (U − mn/2 + 0.5) / sd. This is
    the z behind scipy's asymptotic one-sided ("less") p-value: p = Φ(z). z ≪ 0: generated samples
    are closer to the training set than held-out samples are. Returns (U, z).
    """
    from scipy.stats import mannwhitneyu, rankdata, tiecorrect

    q = np.asarray(gen_distances, np.float64).reshape(-1)
    p = np.asarray(test_distances, np.float64).reshape(-1)
    m, n = q.size, p.size
    if m == 0 or n == 0:
        raise SampleSizeError("the Mann-Whitney U test needs at least one sample in each group")
    u = float(mannwhitneyu(q, p, alternative="less", method="asymptotic").statistic)
    var = m * n * (m + n + 1) / 12 * tiecorrect(rankdata(np.concatenate([q, p])))
    if var <= 0:  # every distance equal: no evidence either way
        return u, 0.0
    return u, float((u - m * n / 2 + 0.5) / np.sqrt(var))


@dataclass(frozen=True)
class CTCell:
    cell: int
    n_train: int
    n_test: int
    n_gen: int
    test_share: float   # P_n(π): share of the held-out set in this cell (the weight)
    gen_share: float    # Q_m(π)
    included: bool      # Q_m(π) > τ_n and the cell has test and training samples
    z: float            # Z_U of the cell; NaN where it cannot be computed


@dataclass
class CTResult:
    c_t: float          # Σ w Z_U / Σ w over the included cells (Meehan et al.'s statistic)
    cells: list[CTCell]
    n_cells: int
    pca_dims: int
    tau_n: float
    interpretation: str
    params: dict = field(default_factory=dict)
    z: float = float("nan")   # standardised C_T: C_T · Σw / √Σw², ≈ N(0, 1) under no copying
    null_sd: float = float("nan")  # √Σw² / Σw: C_T's standard deviation under no copying
    verdict: str = ""   # "copying", "underfitting" or "not detectable"

    @property
    def cell_z(self) -> list[float]:
        """Z_U per cell (NaN where a cell lacks held-out, training or generated samples)."""
        return [c.z for c in self.cells]


def default_cells(n_test: int, n_gen: int) -> int:
    """On average ≥ 50 held-out and ≥ 50 generated samples per cell, at most 50 cells (the paper used
    50 cells for MNIST with 10k test/generated samples)."""
    return int(np.clip(min(n_test, n_gen) // 50, 1, CT_MAX_CELLS))


def standardise_ct(weights, z_cells) -> tuple[float, float, float]:
    """(C_T, its standardised form z, its null standard deviation) from the included cells'
    weights w = P_n(π) and Z_U(π).

    Under no copying the Z_U of different cells are independent and about N(0, 1) (given the
    training set, the generated and held-out distances in a cell are exchangeable), so
    C_T = Σ w Z_U / Σ w has standard deviation √Σw² / Σw (≈ 1/√k for k equal cells: 0.14 at 50
    cells, 0.58 at 3) and z = C_T · Σw / √Σw² is about N(0, 1) whatever the number of cells. A
    fixed cut on C_T itself (the paper's illustration reads C_T ≪ 0) therefore means a different
    false-alarm rate and power at every k; the cut on z does not.
    """
    w = np.asarray(weights, np.float64)
    zc = np.asarray(z_cells, np.float64)
    c_t = float(np.dot(w, zc) / w.sum())
    null_sd = float(np.sqrt((w ** 2).sum()) / w.sum())
    return c_t, c_t / null_sd, null_sd


def ct_verdict(z: float) -> str:
    if z < CT_COPYING_BELOW:
        return "copying"
    if z > -CT_COPYING_BELOW:
        return "underfitting"
    return "not detectable"


def ct_interpretation(c_t: float, z: float, n_gen: int, n_test: int, n_cells: int, n_used: int) -> str:
    head = (f"C_T = {c_t:.3f}, standardised z = {z:.2f} (C_T · Σw / √Σw²; ≈ N(0, 1) without copying) over "
            f"{n_used} of {n_cells} cells")
    if z < CT_COPYING_BELOW:
        return (f"{head}: z < {CT_COPYING_BELOW:g}, generated samples are systematically closer to the training "
                "set than held-out real images are — evidence of data copying")
    if z > -CT_COPYING_BELOW:
        return (f"{head}: z > {-CT_COPYING_BELOW:g}, generated samples are farther from the training set than "
                "held-out real images are (underfitting); no sign of data copying")
    return (f"{head}: no data-copying detectable at N = {n_gen} generated and {n_test} held-out samples, "
            f"k = {n_cells} cells (|z| ≤ {-CT_COPYING_BELOW:g})")


def data_copying_ct(train_features, test_features, gen_features, n_cells: int | None = None,
                    pca_dims: int = CT_PCA_DIMS, tau_n: float | None = None, seed: int = 0,
                    device: torch.device | str | None = None, chunk: int = 2048) -> CTResult:
    """The C_T data-copying statistic (Meehan et al. 2020), following the paper's recipe:

    1. PCA to `pca_dims` (64) dimensions, fitted on the training features; all distances below are
       Euclidean in that space.
    2. Partition it with k-means (k-means++, seeded) on the training features into `n_cells` cells
       (default `default_cells`: min(n_test, n_gen) // 50, between 1 and 50).
    3. In each cell π: nearest-training-neighbour distances, within the cell's training samples, of
       the generated samples (Q_m) and of the held-out samples (P_n); Z_U(π) is the z-scored
       Mann-Whitney U of the former against the latter (`mann_whitney_z`).
    4. C_T = Σ P_n(π) Z_U(π) / Σ P_n(π) over the cells with Q_m(π) > τ_n (default τ_n = 20/m: more
       than 20 generated samples), weighted by the held-out share P_n(π).
    5. The verdict is read from the standardised z = C_T · Σw / √Σw² (`standardise_ct`): z < −3
       copying, z > 3 underfitting, otherwise "no data-copying detectable at N = …, k = … cells".
       One-sided false-alarm rate of the copying verdict on honest samples ≈ Φ(−3) = 0.13%
       (bench/copying.py measures it and the power). Deterministic for a seed.
    """
    t = _features(train_features, "training features")
    p = _features(test_features, "held-out (test) features")
    q = _features(gen_features, "generated features")
    if not t.shape[1] == p.shape[1] == q.shape[1]:
        raise ValueError(f"feature dimensions differ: train {t.shape[1]}, test {p.shape[1]}, generated {q.shape[1]}")
    if len(p) < 1 or len(q) < 1:
        raise SampleSizeError(f"C_T needs held-out and generated samples; got {len(p)} and {len(q)}")
    m, n = len(q), len(p)
    k = default_cells(n, m) if n_cells is None else int(n_cells)
    if k < 1 or len(t) < 2 * k:
        raise SampleSizeError(f"C_T with {k} cells needs at least {2 * k} training samples, got {len(t)}")
    tau = CT_MIN_GEN_PER_CELL / m if tau_n is None else float(tau_n)

    mean, comps = pca_fit(t, pca_dims, seed)
    tt, pp, qq = ((np.asarray(x, np.float64) - mean) @ comps for x in (t, p, q))
    centers, t_cells = kmeans(tt, k, seed)
    p_cells, q_cells = assign_cells(pp, centers), assign_cells(qq, centers)

    cells: list[CTCell] = []
    for c in range(k):
        tc, pc, qc = tt[t_cells == c], pp[p_cells == c], qq[q_cells == c]
        test_share, gen_share = len(pc) / n, len(qc) / m
        z = float("nan")
        if len(tc) and len(pc) and len(qc):
            lq = nearest_neighbours(qc, tc, 1, device, chunk).distances[:, 0]
            lp = nearest_neighbours(pc, tc, 1, device, chunk).distances[:, 0]
            z = mann_whitney_z(lq, lp)[1]
        included = gen_share > tau and len(pc) > 0 and len(tc) > 0
        cells.append(CTCell(c, len(tc), len(pc), len(qc), test_share, gen_share, included, z))
    used = [c for c in cells if c.included]
    if not used:
        raise SampleSizeError(
            f"no cell holds more than τ_n = {tau:.3g} of the {m} generated samples together with held-out samples; "
            "use fewer cells or more samples")
    w = np.array([c.test_share for c in used])
    if w.sum() == 0:
        raise SampleSizeError("the cells that hold generated samples hold no held-out samples")
    c_t, z, null_sd = standardise_ct(w, [c.z for c in used])
    params = {"n_cells": k, "pca_dims": int(comps.shape[1]), "tau_n": tau, "seed": seed,
              "n_train": len(t), "n_test": n, "n_gen": m, "cells_used": len(used)}
    return CTResult(c_t, cells, k, int(comps.shape[1]), tau, ct_interpretation(c_t, z, m, n, k, len(used)),
                    params, z, null_sd, ct_verdict(z))
