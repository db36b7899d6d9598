"""Precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020) from
k-nearest-neighbour balls, in bounded memory, with every membership decided as float64 decides it.

Conventions
-----------
* Features: whatever the caller passes, one row per image. evalkit passes Inception pool3 (2048-d);
  StyleGAN2-ADA, torch-fidelity and the official code use VGG16 fc2 (4096-d). Values are comparable
  only for the same feature extractor, the same k and similar sample counts.
* Distances are Euclidean. The radius of a point is the distance to its k-th nearest neighbour in
  its own set **not counting the point itself**, i.e. the (k+1)-th smallest distance with the
  point's own zero distance counted: `kthvalue(k+1)` in StyleGAN2-ADA / torch-fidelity,
  `argpartition(..., k+1)` in prdc. Other samples identical to the point are neighbours like any
  other: a point with k or more exact copies in its own set has radius 0.
* k = 3 for precision/recall (`k_pr`), k = 5 for density/coverage (`k_dc`). Real radii are taken at
  both k, fake radii at `k_pr`. (The prdc package uses one k for all four metrics.)
* Membership: a sample lies in a ball when its distance is **<=** the radius, as in StyleGAN2-ADA,
  torch-fidelity and the official TF code. `strict=True` uses `<` for all four metrics, as the prdc
  package does. With continuous features the two agree; they differ only when a distance equals a
  radius exactly, typically with exact duplicates: a fake identical to a real point whose radius is 0
  (the point has >= k copies among the reals) is inside with `<=` and outside with `<`.
* precision = fraction of fakes inside at least one real k_pr-ball;
  recall    = fraction of reals inside at least one fake k_pr-ball;
  density   = (1 / k_dc) * mean over fakes of the number of real k_dc-balls containing the fake;
  coverage  = fraction of reals whose k_dc-ball contains at least one fake.
  All four are column (precision, density) or row (recall, coverage) reductions of the real x fake
  distance block compared with the radii, so `prdc_counts` gets them in ONE pass over that block.

Precision policy
----------------
Squared distances are compared with squared radii (no square roots). The reference for every
decision is the float64 value d = Σ (x − y)² computed from the original features (differences first,
so exact duplicates give exactly 0). Bulk distances are computed in float32 as ||a||² + ||b||² − 2 a·b
tile by tile with a BLAS / cuBLAS matmul (TF32 and other reduced-precision matmul modes are switched
off while it runs), after translating both sets by a common mean, which shrinks the norms and hence
the rounding error. float32 is trusted only where it provably decides like the reference:

* The float32 error is bounded rigorously: |d32 − d| <= (||a||² + ||b||²) (γ_D + 16u), with
  u = 2⁻²⁴ and γ_D = D u / (1 − D u), the textbook worst case of a length-D float32 dot product,
  plus the roundings of the translation, the norms and the two additions, with slack.
* A membership is settled in float32 only when d32 lies outside radius² ± that bound. Entries inside
  it are recomputed in float64 and decided there, unless the sample's answer is already settled
  (recall, precision and coverage need only one hit; density counts every entry). `rechecked` counts
  the recomputed entries. They are rare when the norms are comparable to the distances that matter
  (13 of 10⁸ entries for the benchmark's 10k x 10k isotropic 2048-d Gaussians, 0-3 per test case on
  random data); when they are not, e.g. tight clusters far from the common mean, many entries are
  recomputed (about half in the two-cluster test), which is slower but still exact.
* Radii: the K = k_max + 1 + 8 smallest float32 distances of each row are collected tile by tile.
  For each k, the candidates whose float32 distance is within 2 bounds of the (k+1)-th smallest are
  recomputed in float64 (usually just that one), which identifies the exact (k+1)-th smallest value.
  A row is accepted only when the bound proves no point outside its candidates can matter; other rows
  (ties within rounding, e.g. many duplicates) are rescanned and every point within the bound is
  recomputed in float64.

Hence tile size, device and work order cannot change a result, and `strict=True` equals the prdc
package except where a distance lies within rounding of a radius (prdc uses sklearn distances:
float64 for float64 input, rounded to float32 for float32 input).

Memory: the inputs, O(chunk_size² + chunk_size·D) working memory and O(N·K) candidate state; no
N x M matrix is formed (prdc forms three full ones: 3 x 10 GB in float32 at 50k x 50k).

Devices: numpy input with device=None runs on the CPU with numpy alone (torch is not imported, which
keeps the process ~600 MB smaller); torch tensors run on their own device; an explicit `device`
("cpu", "cuda", torch.device) runs torch on that device, copying numpy input there once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import SampleSizeError
from .backend import ops_for

__all__ = ["PRDCResult", "PRDCCounts", "prdc", "prdc_counts", "knn_radii", "margin_factor",
           "DEFAULT_CHUNK_CPU", "DEFAULT_CHUNK_CUDA"]

DEFAULT_CHUNK_CPU = 2048   # tile edge: a 2048 x 2048 float32 tile is 16 MB
DEFAULT_CHUNK_CUDA = 8192  # 256 MB per tile
CANDIDATE_PAD = 8          # extra float32 nearest-neighbour candidates kept per row for the float64 pass
_U32 = 2.0 ** -24
_PAIR_BUDGET_CPU = 1 << 17  # float64 elements per batch of pairwise float64 distances: 1 MB stays in cache
_PAIR_BUDGET_CUDA = 1 << 24


@dataclass(frozen=True)
class PRDCCounts:
    """Raw counts from one pass over the real x fake distances."""
    precision_hits: int  # fakes inside at least one real k_pr-ball
    recall_hits: int     # reals inside at least one fake k_pr-ball
    density_hits: int    # (fake, real k_dc-ball containing it) pairs
    coverage_hits: int   # reals whose k_dc-ball contains at least one fake
    num_real: int
    num_fake: int
    rechecked: int       # real x fake distances recomputed in float64 because float32 could not decide


@dataclass(frozen=True)
class PRDCResult:
    precision: float
    recall: float
    density: float
    coverage: float
    k_pr: int
    k_dc: int
    strict: bool      # True: membership is `<` (prdc package); False: `<=` (StyleGAN2-ADA, torch-fidelity)
    num_real: int
    num_fake: int
    rechecked: int    # real x fake distances recomputed in float64 (diagnostic)


def _chunk(ops, chunk_size):
    if chunk_size is None:
        return DEFAULT_CHUNK_CUDA if ops.on_cuda else DEFAULT_CHUNK_CPU
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    return int(chunk_size)


# --------------------------------------------------------------------------------------------------
# validation and per-set state


def margin_factor(dims: int) -> float:
    """c with |d32 − d| <= c (||a||² + ||b||²) for the float32 tile distances (see the module doc)."""
    du = dims * _U32
    if du >= 0.25:
        raise ValueError(f"{dims} feature dimensions are too many for float32 distances with a useful error bound")
    return (du / (1.0 - du) + 16.0 * _U32) * (1.0 + 1e-6)


def _prepare(ops, x, name):
    x = ops.prepare(x, name)
    if x.ndim != 2:
        raise ValueError(f"{name} features must be a 2-D array (N, D), got shape {tuple(x.shape)}")
    if x.shape[1] < 1:
        raise ValueError(f"{name} features have no dimensions (shape {tuple(x.shape)})")
    return x


def _check_dims(real, fake):
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real features have {real.shape[1]} dimensions and fake features {fake.shape[1]}; "
                         "extract both with the same feature extractor")


def _check_k(k, what, n, name):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{what} must be a positive integer, got {k!r}")
    if k >= n:
        fix = f"lower {what} to at most {n - 1} or add samples" if n >= 2 else "add samples"
        raise SampleSizeError(
            f"{what}={k} needs at least {k + 1} samples in the {name} set (a radius is the distance to the "
            f"{k}-th nearest neighbour other than the point itself), but it has N={n}: {fix}.")


def _column_stats(ops, x, chunk, name):
    """Float64 column sums and the sum of squared norms, checking every value is finite on the way
    (chunked: no N x D temporaries)."""
    total = ops.zeros64(x.shape[1])
    squares = 0.0
    for a0 in range(0, x.shape[0], chunk):
        c = x[a0:a0 + chunk]
        if not ops.all_finite(c):
            raise ValueError(f"{name} features contain NaN or infinity (first at row {a0 + ops.first_bad_row(c)}); "
                             "the feature extractor or the input images are broken")
        total += ops.colsum64(c)
        squares += ops.sqsum64(c)
    return total, squares


def _translation(ops, stats, count):
    """The common mean when translating by it shrinks the mean squared norm by more than ~10% (so the
    error bound and the rechecks shrink); otherwise None: tiles are then the raw rows (for float32 input a
    view, no copy)."""
    mu = sum(t for t, _ in stats) / count
    mean_sq = sum(s for _, s in stats) / count
    offset = float((mu * mu).sum())
    return mu if offset > 0.1 * max(mean_sq - offset, 0.0) else None


class _Set:
    """A feature set translated by `mu`: float32 tiles on demand, float64 norms of exactly those tiles."""

    def __init__(self, ops, x, mu64, chunk):
        self.ops, self.x, self.n, self.chunk = ops, x, x.shape[0], chunk
        self.mu64, self.mu32 = mu64, (None if mu64 is None else ops.f32(mu64))
        self.norms = ops.zeros64(self.n)
        for a0 in range(0, self.n, chunk):
            self.norms[a0:a0 + chunk] = ops.sqnorm64(self.tile(a0, a0 + chunk))
        self.norms32 = ops.f32(self.norms)
        self.max_norm = ops.max(self.norms)

    def tile(self, a0, a1):
        return self.ops.centred32(self.x[a0:a1], self.mu64, self.mu32)

    def rows(self, idx):
        return self.ops.centred32(self.x[idx], self.mu64, self.mu32)


def _sqdist32(a32, b32, na32, nb32):
    """Float32 squared distances of a tile: ||a||² + ||b||² − 2 a·b (not clamped; the bound covers it)."""
    f = a32 @ b32.T
    f *= -2
    f += na32[:, None]
    f += nb32[None, :]
    return f


def _sq64_pairs(ops, x, ii, y, jj):
    """Float64 Σ (x_i − y_j)² for index pairs, from the original features, in bounded batches."""
    n = len(ii)
    out = ops.zeros64(n)
    step = max(1, (_PAIR_BUDGET_CUDA if ops.on_cuda else _PAIR_BUDGET_CPU) // x.shape[1])
    for p0 in range(0, n, step):
        out[p0:p0 + step] = ops.pair_sq64(x, ii[p0:p0 + step], y, jj[p0:p0 + step])
    return out


def _bounds(ops, r2, delta):
    """float32 thresholds lo < r² − δ and hi > r² + δ, the rounding of the cast included."""
    slack = delta + 4 * _U32 * (abs(r2) + delta)
    return ops.f32(r2 - slack), ops.f32(r2 + slack)


# --------------------------------------------------------------------------------------------------
# k-NN radii


def _knn_sq_radii(s: _Set, ks):
    """Squared k-NN radii (float64, shape (len(ks), N)), the point itself counted as the 1st neighbour."""
    ops, n, chunk = s.ops, s.n, s.chunk
    dims = s.x.shape[1]
    kmax = max(ks)
    kk = min(kmax + 1 + CANDIDATE_PAD, n)
    run_v = ops.full32((n, kk), float("inf"))  # float32 distances of the current candidates
    run_i = ops.full_idx((n, kk), 0)           # their indices
    bands = [(a0, min(a0 + chunk, n)) for a0 in range(0, n, chunk)]

    def merge_dense(r0, r1, vals, idx):
        v, j = ops.topk_small(ops.cat([run_v[r0:r1], vals], 1), kk)
        ci = ops.cat([run_i[r0:r1], idx], 1)
        run_v[r0:r1] = v
        run_i[r0:r1] = ops.take_along(ci, j)

    def merge_sparse(rows, cols, vals):
        """Insert (row, col, value) entries, all below their row's current K-th value."""
        if not len(rows):
            return
        aff, inv = ops.unique_inverse(rows)
        na = len(aff)
        all_r = ops.cat([ops.repeat(ops.arange(na), kk), inv])
        all_v = ops.cat([run_v[aff].reshape(-1), vals])
        all_c = ops.cat([run_i[aff].reshape(-1), cols])
        o1 = ops.argsort_stable(all_v)
        order = o1[ops.argsort_small_ints(all_r[o1], na)]  # by row, then value
        counts = ops.bincount(all_r, na)
        starts = ops.cumsum(counts) - counts
        sel = order[(starts[:, None] + ops.arange(kk)[None, :]).reshape(-1)]
        run_v[aff] = all_v[sel].reshape(na, kk)
        run_i[aff] = all_c[sel].reshape(na, kk)

    with ops.matmul_guard():
        # diagonal tiles first, so every row has candidates and a threshold before the sparse merges
        for a0, a1 in bands:
            a = s.tile(a0, a1)
            f = _sqdist32(a, a, s.norms32[a0:a1], s.norms32[a0:a1])
            v, i = ops.topk_small(f, kk)
            merge_dense(a0, a1, v, i + a0)
        # off-diagonal tiles (I < J) serve the rows of I directly and the rows of J transposed
        for bi, (a0, a1) in enumerate(bands):
            a = None
            for b0, b1 in bands[bi + 1:]:
                a = s.tile(a0, a1) if a is None else a
                f = _sqdist32(a, s.tile(b0, b1), s.norms32[a0:a1], s.norms32[b0:b1])
                ii, jj = ops.nonzero(f < ops.max1(run_v[a0:a1])[:, None])
                merge_sparse(ii + a0, jj + b0, f[ii, jj])
                ii, jj = ops.nonzero(f < ops.max1(run_v[b0:b1])[None, :])
                merge_sparse(jj + b0, ii + a0, f[ii, jj])
                del f

        c = margin_factor(dims)
        out = ops.zeros64((len(ks), n))
        bad_rows, bad_limits = [], []
        step = max(1, (1 << 16) // kk)
        for r0 in range(0, n, step):
            r1 = min(r0 + step, n)
            _exact_radii(s, ks, kk, run_v[r0:r1], run_i[r0:r1], r0, out, c, bad_rows, bad_limits)
        if bad_rows:
            _widen_rows(s, ops.cat(bad_rows), ops.cat(bad_limits), ks, out)
    return out


def _exact_radii(s, ks, kk, vals, idx, r0, out, c, bad_rows, bad_limits):
    """Float64 radii of rows r0.. from their float32 candidates (see the module doc)."""
    ops = s.ops
    rows = vals.shape[0]
    order = ops.argsort1(vals)
    sv = ops.f64(ops.take_along(vals, order))       # candidate float32 distances, ascending
    si = ops.take_along(idx, order)
    delta2 = 2 * (s.norms[r0:r0 + rows] + s.max_norm) * c  # twice the per-row error bound
    windows, below = [], []
    union = None
    for k in ks:
        centre = sv[:, k]
        lo, hi = centre - delta2, centre + delta2
        w = (sv >= lo[:, None]) & (sv <= hi[:, None])  # candidates that may hold the (k+1)-th value
        windows.append(w)
        below.append(ops.count(sv < lo[:, None], 1))   # surely below it
        union = w if union is None else union | w
    ri, ci = ops.nonzero(union)
    t = ops.full64((rows, kk), float("inf"))
    t[ri, ci] = _sq64_pairs(ops, s.x, ri + r0, s.x, si[ri, ci])
    ar = ops.arange(rows)
    for q, k in enumerate(ks):
        tq = ops.sort1(ops.where(windows[q], t, float("inf")))
        out[q, r0:r0 + rows] = tq[ar, k - below[q]]
    if kk < s.n:  # a point outside the candidates is at least sv[:, -1] away: it must lie beyond every window
        limit = sv[:, max(ks)] + delta2
        bad = ops.flatnonzero(sv[:, kk - 1] <= limit)
        if len(bad):
            bad_rows.append(bad + r0)
            bad_limits.append(limit[bad])


def _widen_rows(s: _Set, rows, limits, ks, out):
    """Exact radii for rows whose candidates could not be proven complete. `limits` is the (k_max+1)-th
    smallest candidate float32 distance plus two error bounds: every point with a float64 distance up to
    any wanted radius has a float32 distance below it, so recomputing those in float64 is exact."""
    ops, n, chunk = s.ops, s.n, s.chunk
    for g0 in range(0, len(rows), 64):
        g = rows[g0:g0 + 64]
        limit = limits[g0:g0 + 64]
        a = s.rows(g)
        li_parts, lj_parts = [], []
        for b0 in range(0, n, chunk):
            b1 = min(b0 + chunk, n)
            f = _sqdist32(a, s.tile(b0, b1), s.norms32[g], s.norms32[b0:b1])
            li, lj = ops.nonzero(ops.f64(f) <= limit[:, None])
            li_parts.append(li)
            lj_parts.append(lj + b0)
        li, lj = ops.cat(li_parts), ops.cat(lj_parts)
        t = _sq64_pairs(ops, s.x, g[li], s.x, lj)
        for r in range(len(g)):
            tr = ops.sort(t[li == r])
            for q, k in enumerate(ks):
                out[q, int(g[r])] = tr[k]


def knn_radii(features, k: int | Sequence[int] = 3, *, device=None, chunk_size: int | None = None,
              squared: bool = False) -> np.ndarray:
    """Distance of each point to its k-th nearest neighbour in its own set, the point itself not counted
    ((k+1)-th smallest distance including the point's own zero). `k` may be a sequence: one row per k.

    Returns float64 numpy: shape (N,) for an int k, (len(k), N) for a sequence. `squared=True` returns
    the squared radii exactly as the decisions use them (the float64 Σ (x − y)² of the neighbour).
    """
    ops = ops_for(device, features)
    x = _prepare(ops, features, "the")
    single = isinstance(k, (int, np.integer)) and not isinstance(k, bool)
    ks = (k,) if single else tuple(k)
    if not ks:
        raise ValueError("k must be a positive integer or a non-empty sequence of them")
    for kv in ks:
        _check_k(kv, "k", x.shape[0], "feature")
    chunk = _chunk(ops, chunk_size)
    mu = _translation(ops, [_column_stats(ops, x, chunk, "the")], x.shape[0])
    out = ops.numpy(_knn_sq_radii(_Set(ops, x, mu, chunk), tuple(int(v) for v in ks)))
    if not squared:
        out = np.sqrt(out)
    return out[0] if single else out


# --------------------------------------------------------------------------------------------------
# the one pass over real x fake


def _prdc_counts(r: _Set, f: _Set, r_pr, r_dc, f_pr, strict) -> PRDCCounts:
    ops, chunk = r.ops, r.chunk
    n, m = r.n, f.n
    c = margin_factor(r.x.shape[1])
    prec = ops.zeros_bool(m)
    dens = ops.zeros_int(m)
    cov = ops.zeros_bool(n)
    rec = ops.zeros_bool(n)
    rechecked = 0
    with ops.matmul_guard():
        for a0 in range(0, n, chunk):
            a1 = min(a0 + chunk, n)
            a = r.tile(a0, a1)
            nr_a = r.norms[a0:a1]
            max_a = ops.max(nr_a)
            for b0 in range(0, m, chunk):
                b1 = min(b0 + chunk, m)
                nf_b = f.norms[b0:b1]
                d = _sqdist32(a, f.tile(b0, b1), r.norms32[a0:a1], f.norms32[b0:b1])
                d_row = (nr_a + ops.max(nf_b)) * c
                d_col = (nf_b + max_a) * c
                lo_pr, hi_pr = _bounds(ops, r_pr[a0:a1], d_row)
                lo_dc, hi_dc = _bounds(ops, r_dc[a0:a1], d_row)
                lo_f, hi_f = _bounds(ops, f_pr[b0:b1], d_col)

                # "sure": inside the ball whatever the rounding; "maybe": within the bound of its edge.
                # lo < hi, so sure ⊆ (d <= hi) and equal counts mean nothing is undecided (the usual case).
                undecided = []
                sure = d <= lo_pr[:, None]                    # surely inside a real k_pr-ball
                prec[b0:b1] |= sure.any(0)
                maybe = d <= hi_pr[:, None]
                if int(ops.count(maybe, None)) != int(ops.count(sure, None)):
                    # undecided entries matter only for fakes not yet known to be inside some ball
                    undecided.append(maybe & ~sure & ~prec[b0:b1][None, :])
                sure = d <= lo_dc[:, None]                    # surely inside a real k_dc-ball
                dens[b0:b1] += ops.count(sure, 0)
                cov[a0:a1] |= sure.any(1)
                maybe = d <= hi_dc[:, None]
                if int(ops.count(maybe, None)) != int(ops.count(sure, None)):
                    undecided.append(maybe & ~sure)           # density needs every one
                sure = d <= lo_f[None, :]                     # surely inside a fake k_pr-ball
                rec[a0:a1] |= sure.any(1)
                maybe = d <= hi_f[None, :]
                if int(ops.count(maybe, None)) != int(ops.count(sure, None)):
                    undecided.append(maybe & ~sure & ~rec[a0:a1][:, None])
                del sure, maybe
                if not undecided:
                    continue
                amb = undecided[0]
                for more in undecided[1:]:
                    amb |= more
                ii, jj = ops.nonzero(amb)
                dv = d[ii, jj]
                gi, gj = ii + a0, jj + b0
                t = _sq64_pairs(ops, r.x, gi, f.x, gj)
                rechecked += len(gi)

                def hit(lo, hi, r2):
                    undecided = (dv > lo) & (dv <= hi)
                    return undecided & ((t < r2) if strict else (t <= r2))

                hit_pr = hit(lo_pr[ii], hi_pr[ii], r_pr[gi])
                hit_dc = hit(lo_dc[ii], hi_dc[ii], r_dc[gi])
                hit_f = hit(lo_f[jj], hi_f[jj], f_pr[gj])
                prec[gj[hit_pr]] = True
                ops.add_counts(dens, gj[hit_dc])
                cov[gi[hit_dc]] = True
                rec[gi[hit_f]] = True
    return PRDCCounts(precision_hits=int(prec.sum()), recall_hits=int(rec.sum()), density_hits=int(dens.sum()),
                      coverage_hits=int(cov.sum()), num_real=n, num_fake=m, rechecked=int(rechecked))


def _common_sets(ops, real, fake, chunk):
    stats = [_column_stats(ops, real, chunk, "real"), _column_stats(ops, fake, chunk, "fake")]
    mu = _translation(ops, stats, real.shape[0] + fake.shape[0])
    return _Set(ops, real, mu, chunk), _Set(ops, fake, mu, chunk)


def prdc_counts(real, fake, real_sq_radii_pr, real_sq_radii_dc, fake_sq_radii_pr, *, strict: bool = False,
                device=None, chunk_size: int | None = None) -> PRDCCounts:
    """One chunked pass over the real x fake squared distances, against given squared radii
    (e.g. `knn_radii(..., squared=True)`), yielding the precision, recall, density and coverage counts."""
    ops = ops_for(device, real, fake)
    r = _prepare(ops, real, "real")
    f = _prepare(ops, fake, "fake")
    _check_dims(r, f)
    radii = []
    for name, rad, size in (("real_sq_radii_pr", real_sq_radii_pr, r.shape[0]),
                            ("real_sq_radii_dc", real_sq_radii_dc, r.shape[0]),
                            ("fake_sq_radii_pr", fake_sq_radii_pr, f.shape[0])):
        rad = ops.f64(ops.prepare(rad, name))
        if tuple(rad.shape) != (size,):
            raise ValueError(f"{name} must have shape ({size},), got {tuple(rad.shape)}")
        if not ops.all_finite(rad) or bool((rad < 0).any()):
            raise ValueError(f"{name} must be finite and non-negative squared radii")
        radii.append(rad)
    rs, fs = _common_sets(ops, r, f, _chunk(ops, chunk_size))
    return _prdc_counts(rs, fs, *radii, bool(strict))


def prdc(real, fake, k_pr: int = 3, k_dc: int = 5, *, device=None, chunk_size: int | None = None,
         strict: bool = False) -> PRDCResult:
    """Precision and recall at k_pr, density and coverage at k_dc (conventions in the module doc)."""
    ops = ops_for(device, real, fake)
    r = _prepare(ops, real, "real")
    f = _prepare(ops, fake, "fake")
    _check_dims(r, f)
    n, m = r.shape[0], f.shape[0]
    _check_k(k_pr, "k_pr", n, "real")
    _check_k(k_pr, "k_pr", m, "fake")
    _check_k(k_dc, "k_dc", n, "real")
    k_pr, k_dc = int(k_pr), int(k_dc)
    rs, fs = _common_sets(ops, r, f, _chunk(ops, chunk_size))
    real_radii = _knn_sq_radii(rs, (k_pr, k_dc))
    fake_radii = _knn_sq_radii(fs, (k_pr,))
    counts = _prdc_counts(rs, fs, real_radii[0], real_radii[1], fake_radii[0], bool(strict))
    return PRDCResult(precision=counts.precision_hits / m, recall=counts.recall_hits / n,
                      density=counts.density_hits / (k_dc * m), coverage=counts.coverage_hits / n,
                      k_pr=k_pr, k_dc=k_dc, strict=bool(strict), num_real=n, num_fake=m,
                      rechecked=counts.rechecked)


# Precision/recall/density/coverage depend on the sample counts themselves: k-NN balls shrink as a set
# grows, so two samples of one distribution score well below 1 at small N, and unequal real and
# generated counts shift precision against recall. Measured for samples of one 64-d Gaussian: coverage
# 0.71 at 1000 real / 300 generated and 0.97 at 300 / 300; precision and recall 0.61-0.67 in both.
SMALL_PRDC_COUNT = 5000   # below this per set, `evalkit metrics` warns and quotes the perfect-model score


def equal_count_indices(n_real: int, n_fake: int, seed: int = 0) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Row indices that bring both sets to min(n_real, n_fake): a sorted random subset (without
    replacement, `np.random.default_rng(seed)`) of the larger set, None for a set used whole."""
    m = min(n_real, n_fake)
    rng = np.random.default_rng(seed)
    pick = lambda n: None if n == m else np.sort(rng.choice(n, m, replace=False))  # noqa: E731
    return pick(n_real), pick(n_fake)


def perfect_model_baseline(real, size: int, k_pr: int = 3, k_dc: int = 5, seed: int = 0, *,
                           device=None) -> PRDCResult:
    """What a perfect model scores at `size` per set: P/R/D/C between two disjoint random subsets of
    the real set (`size` each, or half the real set when it has fewer than 2·size), seeded."""
    n = len(real)
    m = min(int(size), n // 2)
    perm = np.random.default_rng(seed).permutation(n)
    real = real.detach().cpu().numpy() if hasattr(real, "detach") else np.asarray(real)
    return prdc(real[np.sort(perm[:m])], real[np.sort(perm[m:2 * m])], k_pr, k_dc, device=device)


def small_count_warning(num_real: int, num_fake: int, baseline: PRDCResult, note: str = "") -> str:
    """The warning for P/R/D/C from fewer than SMALL_PRDC_COUNT samples per set, quoting `baseline`."""
    return (f"precision/recall/density/coverage come from {num_real} real and {num_fake} generated samples"
            f"{note}, fewer than {SMALL_PRDC_COUNT} per set: at this size they are set by the sample count as much "
            f"as by the model. A perfect model (two disjoint samples of the real set, {baseline.num_real} each, "
            f"k = {baseline.k_pr}/{baseline.k_dc}) scores precision {baseline.precision:.3f}, recall "
            f"{baseline.recall:.3f}, density {baseline.density:.3f}, coverage {baseline.coverage:.3f}; compare "
            f"against those values, not against 1, and use {SMALL_PRDC_COUNT} or more images per set for "
            "numbers you report.")
