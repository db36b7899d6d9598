"""Bootstrap confidence interval for FID.

Each draw resamples the real and the fake features independently, with replacement, at their own
sizes, and recomputes FID exactly as `fid.frechet_distance(*feature_stats(real[i1]), *feature_stats(fake[i2]))`
would (N−1-normalised covariances, float64). Draw b uses the index vectors from
`bootstrap_indices(n_real, n_fake, num_bootstrap, seed)`: one `np.random.default_rng(seed)`, per draw first
`integers(0, n_real, n_real)` then `integers(0, n_fake, n_fake)`.

What the interval covers
------------------------
`low, high` is the basic (pivotal) interval (2·FID − q_hi, 2·FID − q_lo), q the draws' quantiles at
(1 ∓ confidence)/2 (numpy's linear quantiles), see `basic_interval`. Because it reflects the draws
across the estimate, it also removes the bootstrap's estimate of FID's small-sample bias, so it is an
interval for the population FID: the FID between the generator's distribution and the distribution
the reference set was drawn from (the N → ∞ limit that FID∞ estimates), not for the expected FID at
this N. Measured on Gaussians with a known population FID (200 repetitions, 200 draws, nominal 95%):
8-d with 300 + 300 samples, it covered the population FID in 97% of repetitions and the expected
FID at N = 300 in 50%; 32-d with 80 + 80, 94% and 0% (there E[FID_80] is 9.3 against a population
FID of 1.04). With fewer images per dimension the bootstrap underestimates the bias (a resample's
~63% distinct rows are then far from the linear regime): at 32-d the basic interval covered the
population FID in 62% of 50 repetitions with 64 + 64 samples and in 16% with 40 + 40, and `covers`
then says so. The raw percentile interval [q_lo, q_hi] covered the population FID in 0% of both
(and the expected FID in 56% and 0%): the draws sit above the estimate by about as much as the
estimate sits above the population value. `covers` says
this in words, with the set sizes; the same sentence is used by `evalkit metrics` and the README.

Why it is fast, and still exact
-------------------------------
The direct route (np.cov of the resample, then eigh + eigh + SVD in `frechet_distance`) costs ~3 s per
FID at 2048-d on a small CPU, too slow for 100 draws. Per draw this module instead:

* centres each set once on its full-sample mean (X̃ = X − m) and keeps only the distinct rows drawn, with
  their multiplicities w; with δ = Σ w x̃ / n the resample's mean shift, Σ* = (X̃ᵀ diag(w) X̃ − n δ δᵀ) / (n − 1)
  exactly, and Tr Σ* = (Σ w ||x̃||² − n ||δ||²) / (n − 1);
* gets Tr √(Σ1* Σ2*) without any matrix square root, by whichever exact route costs fewer flops for the
  expected number of distinct rows (`CrossGram.cheaper`):
  - the cross-Gram route (`CrossGram`, chosen when the sets are small against the dimension, e.g. N up
    to ~2000 at 2048-d): Σ_k* = F_k F_kᵀ with F_k = (√w (x̃ − δ_k))ᵀ / √(n_k − 1), so Tr √ is the
    nuclear norm of F1ᵀ F2, whose entries are read off G = X̃1 X̃2ᵀ, computed once: a draw does no work
    in the d dimensions, only one eigenvalue solve of the size of the smaller resample;
  - the d x d route: with Σ1* = L Lᵀ (Cholesky), Σ1* Σ2* is similar to the symmetric M = Lᵀ Σ2* L, so
    Tr √(Σ1* Σ2*) = Σ √λ(M) from one symmetric eigenvalue solve (values only); for a set drawn with fewer
    distinct rows than dimensions the exact factor F replaces its covariance (the non-zero eigenvalues
    of Σ1* Σ2* are those of Fᵀ Σ_other F);
  every eigenvalue route is used only when a bound on its error (`_sqrt_sum`) stays below
  SQRT_SUM_TOLERANCE = 1e-8 of Tr √; otherwise Tr √ is a sum of singular values of the same factors;
* anything else (degenerate features) falls back to `fid.trace_sqrt_product`, the robust path.

The value of a draw equals `frechet_distance` on the same resample to ~1e-13 relative (tested at 1e-8,
on every route). Measured with `python -m bench.intervals` on the 2-core development CPU, one BLAS
thread: on Inception features of 400 + 400 cartoon faces a draw takes 5 ms (0.25 s per 50 draws)
against 2.5 s for one FID from features; at 2048-d with 1000 + 1000 synthetic features 0.04–0.1 s; at
10k + 10k float32 (the d x d route) 2.3 s against 7.2 s for the direct route (13 s vs 46 s with
OpenBLAS's two threads on a loaded machine). LAPACK's threaded eigen-solvers degrade badly when the
cores are shared: on such a machine run with OPENBLAS_NUM_THREADS=1 (or inside
`threadpoolctl.threadpool_limits(1)`). `device` (or torch-tensor input) runs the same algebra with
torch in float64 on that device.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, NamedTuple

import numpy as np

from .arrays import feature_matrix, tensor_device
from .backend import NumpyOps, TorchOps
from .fid import check_sample_size, trace_sqrt_product

__all__ = ["BootstrapResult", "fid_bootstrap", "bootstrap_indices", "basic_interval", "covers_text",
           "SQRT_SUM_TOLERANCE"]

SQRT_SUM_TOLERANCE = 1e-8  # error bound on Tr √ above which an eigenvalue route hands over to singular values


@dataclass(frozen=True)
class BootstrapResult:
    fid: float            # FID of the full sets (same computation, all weights 1)
    low: float            # basic bootstrap interval for the population FID (see `covers`)
    high: float
    std: float            # standard deviation of the bootstrap FIDs (ddof=1)
    samples: np.ndarray   # the num_bootstrap FIDs, in draw order
    confidence: float = 0.95
    covers: str = ""      # what [low, high] is an interval for, in words


FEW_PER_DIM = 2.5   # below this many images per feature dimension the bias is only partly removed


def covers_text(confidence: float, num_bootstrap: int, n_real: int, n_fake: int, dims: int,
                what: str = "FID") -> str:
    """The label of a basic FID interval: what it covers, what it resamples, and when it falls short."""
    text = (f"{confidence:.0%} basic bootstrap interval for the population {what} (the generator against the "
            "distribution the reference set was drawn from: the N → ∞ value, small-sample bias removed), "
            f"from {num_bootstrap} resamples of the N = {n_fake} generated and {n_real} reference images "
            "(resamples the generated and reference sets)")
    if min(n_real, n_fake) < FEW_PER_DIM * dims:
        text += (f"; with fewer than {FEW_PER_DIM:g} images per feature dimension ({dims}) the bias is only partly "
                 "removed and the interval lies above the population value (on Gaussians it covered it in 62% of "
                 "repetitions at N = 2 × dims and 16% at 1.25 × dims)")
    return text


def basic_interval(estimate: float, samples, confidence: float) -> tuple[float, float]:
    """Basic (pivotal) bootstrap interval: (2·est − q_hi, 2·est − q_lo), q the draws' quantiles.

    It treats draw − estimate as a stand-in for estimate − truth (Davison & Hinkley 1997, §5.2), so it
    also subtracts the bootstrap's estimate of the bias: for FID, whose upward small-sample bias acts
    the same way on a resample as on the sample, the interval is one for the population value (see
    the module doc for its measured coverage).
    """
    samples = np.asarray(samples, np.float64)
    q_lo, q_hi = np.quantile(samples, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(2 * estimate - q_hi), float(2 * estimate - q_lo)


def bootstrap_indices(n_real: int, n_fake: int, num_bootstrap: int, seed: int = 0
                      ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The (real, fake) resampling index vectors of each draw, in order."""
    rng = np.random.default_rng(seed)
    for _ in range(num_bootstrap):
        yield rng.integers(0, n_real, n_real), rng.integers(0, n_fake, n_fake)


class Draw(NamedTuple):
    """A resample's statistics: mean, trace of the covariance, and either the d x d covariance, an exact
    low-rank factor of it, or (`cross`-Gram route) neither: then only its rows and multiplicities."""
    mean: object
    cov: object
    factor: object
    trace: float
    rows: object = None
    weights: object = None


class _Centred:
    """A feature set centred once on its full-sample mean; resampled statistics from multiplicities."""

    def __init__(self, la, x):
        self.la = la
        self.n, self.d = x.shape
        x = la.f64(x)
        self.mean = x.mean(0)
        self.xc = x - self.mean
        self._sq = None

    def draw(self, idx, light: bool = False) -> Draw:
        """Statistics of the resample x[idx] (rows repeated by multiplicity). `light`: no covariance or
        factor, for the cross-Gram route, whose trace comes from the rows' squared norms."""
        counts = np.bincount(np.asarray(idx), minlength=self.n)
        rows = np.flatnonzero(counts)
        n_draw = int(counts.sum())
        w = self.la.f64(counts[rows].astype(np.float64))
        ri = self.la.index(rows)
        xr = self.xc[ri]
        delta = (w @ xr) / n_draw
        if light:  # Σ w ||x̃ − δ||² = Σ w ||x̃||² − n ||δ||²
            if self._sq is None:
                self._sq = (self.xc * self.xc).sum(1)
            trace = (float(w @ self._sq[ri]) - n_draw * float(delta @ delta)) / (n_draw - 1)
            return Draw(self.mean + delta, None, None, trace, ri, w)
        if len(rows) < self.d:  # exact factor: columns √w (x̃ − δ) / √(n−1)
            factor = ((xr - delta) * (w ** 0.5 / (n_draw - 1) ** 0.5)[:, None]).T
            return Draw(self.mean + delta, None, factor, float((factor * factor).sum()), ri, w)
        b = xr * (w ** 0.5)[:, None]
        cov = (b.T @ b - n_draw * self.la.outer(delta, delta)) / (n_draw - 1)
        return Draw(self.mean + delta, cov, None, float(cov.diagonal().sum()), ri, w)


def _reflect_out(la, m, u, axis):
    """m with the unit direction u (m's null vector along `axis`) rotated onto the first coordinate by a
    Householder reflection and that coordinate dropped: the same non-zero singular values, one fewer row
    (axis 0) or column (axis 1)."""
    v = u.clone() if la.is_torch else u.copy()
    v[0] += 1.0 if float(u[0]) >= 0 else -1.0   # the stable sign: no cancellation in v
    v = v / float((v @ v) ** 0.5)
    if axis == 0:
        return (m - 2.0 * la.outer(v, v @ m))[1:]
    return (m - 2.0 * la.outer(m @ v, v))[:, 1:]


class CrossGram:
    """Tr √(Σ1* Σ2*) for resamples of two fixed sets from their cross Gram matrix G = X̃1 X̃2ᵀ.

    With F_k = (√w (x̃ − δ_k))ᵀ / √(n_k − 1) over a resample's distinct rows, Σ_k* = F_k F_kᵀ exactly and
    Tr √(Σ1* Σ2*) is the nuclear norm of P = F1ᵀ F2, an n1' x n2' matrix whose entries are
    (G_ij − x̃_i·δ2 − δ1·x̃_j + δ1·δ2) scaled by √(w_i w_j / ((n1−1)(n2−1))): all read off G, so a draw
    does no work in the d feature dimensions. P has the null vectors √w1 (left) and √w2 (right) by
    construction; one Householder reflection on each side removes them, so the Gram matrix of the
    deflated P is generically non-singular and its eigenvalues usually pass the error bound of
    `_sqrt_sum`; when they do not, P's singular values are summed instead (exact either way). Building G costs
    2·n1·n2·d once; a draw costs about 2·m1·m2·min(m1, m2) plus one min(m1, m2)-sized eigenvalue solve
    (m the distinct rows), against (m1 + m2)·d² + O(d³) for the d x d route: `cheaper` says which.
    """

    def __init__(self, la, c1: _Centred, c2: _Centred):
        self.la = la
        self.n1, self.n2 = c1.n, c2.n
        self.g = c1.xc @ c2.xc.T

    @staticmethod
    def cheaper(m1: float, m2: float, d: int, max_entries: float = 5e7) -> bool:
        """Whether draws with about m1 and m2 distinct rows cost fewer flops this way than by the d-space
        routes of `_trace_sqrt` (and G, n1 x n2 float64, stays under `max_entries`)."""
        lo = min(m1, m2)
        gram = 2 * m1 * m2 * lo + 10 * lo ** 3
        if max(m1, m2) < d:     # both exact factors: F1ᵀ F2 costs 2·m1·m2·d
            dspace = 2 * m1 * m2 * d + 10 * lo ** 3
        elif lo < d:            # one covariance (syrk) and one factor
            dspace = max(m1, m2) * d * d + 2 * d * d * lo + 10 * lo ** 3
        else:                   # two covariances, Cholesky, congruence, eigenvalues
            dspace = (m1 + m2) * d * d + 10 * d ** 3
        return gram < dspace and m1 * m2 <= max_entries

    def trace_sqrt(self, s1: Draw, s2: Draw) -> float:
        la = self.la
        n1 = float(s1.weights.sum())
        n2 = float(s2.weights.sum())
        g = self.g[s1.rows][:, s2.rows]
        w1, w2 = s1.weights, s2.weights
        x1_d2 = g @ w2 / n2                      # x̃_i · δ2
        d1_x2 = w1 @ g / n1                      # δ1 · x̃_j
        d1_d2 = float(w1 @ x1_d2) / n1
        r1, r2 = w1 ** 0.5, w2 ** 0.5
        p = (g - x1_d2[:, None] - d1_x2[None, :] + d1_d2) * la.outer(r1, r2 / ((n1 - 1) * (n2 - 1)) ** 0.5)
        p = _reflect_out(la, p, r1 / float((r1 @ r1) ** 0.5), 0)
        p = _reflect_out(la, p, r2 / float((r2 @ r2) ** 0.5), 1)
        wide = p.shape[0] <= p.shape[1]
        value = _sqrt_sum(la.eigvalsh(p @ p.T if wide else p.T @ p), p.shape[1] if wide else p.shape[0])
        return value if value is not None else float(la.svdvals(p).sum())


def _sqrt_sum(lam, inner: int):
    """Σ √λ over the computed eigenvalues of a PSD product S = AᵀA (A with `inner` rows) when that sum
    is accurate to SQRT_SUM_TOLERANCE relative, else None (the callers then take singular values).

    The computed eigenvalues carry absolute errors of about η = (1 + √inner)·ε·λ_max: ε·‖S‖₂ from the
    symmetric solver (the LAPACK Users' Guide's practical bound, §4.7.1) and √inner·ε·‖S‖₂ from rounding
    the inner-products of the product (the probabilistic bound of Higham & Mary 2019). √ amplifies them
    near 0: a computed λ ≤ η stands for anything in [0, 2η] (error ≤ √η), one above it is off by at most
    η / (2√λ); the sum of those bounds must stay below the tolerance times Σ √λ. Measured on Inception
    features of 400–1000 cartoon faces: bounds 2e-11…2e-9, actual errors 5e-16…6e-13 against the SVD;
    exact zero eigenvalues (a product of rank below its size) push the bound above the tolerance.
    """
    if hasattr(lam, "cpu"):
        lam = lam.cpu().numpy()
    lam = np.clip(np.asarray(lam, np.float64), 0.0, None)
    top = float(lam.max())
    if not top > 0:
        return None
    eta = (1.0 + inner ** 0.5) * np.finfo(np.float64).eps * top
    roots = np.sqrt(lam)
    errors = np.where(lam > eta, eta / (2 * np.maximum(roots, np.sqrt(eta))), np.sqrt(eta))
    total = float(roots.sum())
    return total if float(errors.sum()) <= SQRT_SUM_TOLERANCE * total else None


def _trace_sqrt(la, s1: Draw, s2: Draw, low1=None, cross: CrossGram | None = None) -> float:
    """Tr √(Σ1 Σ2) for the statistics of two resamples.

    `low1`: the Cholesky factor of Σ1 when the caller already has it (a shared reference resample
    compared with two generated sets, `paired.py`), so it is not factorised twice. `cross`: the two
    sets' `CrossGram`, for draws made with `light=True`."""
    if cross is not None:
        return cross.trace_sqrt(s1, s2)
    c1, f1, c2, f2 = s1.cov, s1.factor, s2.cov, s2.factor
    if f1 is None and f2 is None:  # both d x d: Σ1 = L Lᵀ, Σ1 Σ2 ~ Lᵀ Σ2 L (symmetric)
        low = la.cholesky(c1) if low1 is None else low1
        if low is not None:
            value = _sqrt_sum(la.eigvalsh(low.T @ c2 @ low), low.shape[0])
            if value is not None:
                return value
        return trace_sqrt_product(la.numpy(c1), la.numpy(c2))
    if f2 is None or (f1 is not None and f1.shape[1] < f2.shape[1]):
        c1, f1, c2, f2 = c2, f2, c1, f1  # side 2 carries the narrower exact factor F2 (Σ2 = F2 F2ᵀ)
    # the non-zero eigenvalues of Σ1 Σ2 are those of F2ᵀ Σ1 F2 (r2 x r2)
    prod = None if f1 is None else f1.T @ f2
    value = _sqrt_sum(la.eigvalsh(prod.T @ prod if prod is not None else f2.T @ (c1 @ f2)),
                      prod.shape[0] if prod is not None else f2.shape[0])
    if value is not None:
        return value
    if prod is None:  # near-singular spectrum: singular values of A1ᵀ F2 with Σ1 = A1 A1ᵀ instead
        low = la.cholesky(c1)
        if low is None:
            return trace_sqrt_product(la.numpy(c1), la.numpy(f2 @ f2.T))
        prod = low.T @ f2
    return float(la.svdvals(prod).sum())


def _fid(la, s1: Draw, s2: Draw, low1=None, cross: CrossGram | None = None) -> float:
    diff = s1.mean - s2.mean
    value = float(diff @ diff) + s1.trace + s2.trace - 2 * _trace_sqrt(la, s1, s2, low1, cross)
    if not np.isfinite(value):
        raise FloatingPointError("a bootstrap FID came out non-finite; the features are corrupt")
    return value


def expected_distinct(n: int) -> float:
    """Expected number of distinct rows in a size-n resample with replacement of n rows (≈ 0.632 n)."""
    return n * (1.0 - (1.0 - 1.0 / n) ** n)


def cross_gram_if_cheaper(la, c1: _Centred, c2: _Centred, m1: float, m2: float) -> CrossGram | None:
    """The two sets' `CrossGram` when draws of about m1 and m2 distinct rows are cheaper through it."""
    return CrossGram(la, c1, c2) if CrossGram.cheaper(m1, m2, c1.d) else None


def check_bootstrap_options(num_bootstrap, confidence) -> None:
    """The arguments every bootstrap here shares: at least 2 resamples, a confidence in (0, 1)."""
    if isinstance(num_bootstrap, bool) or not isinstance(num_bootstrap, (int, np.integer)) or num_bootstrap < 2:
        raise ValueError(f"num_bootstrap must be an integer >= 2, got {num_bootstrap!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence!r}")


def fid_bootstrap(real_features, fake_features, num_bootstrap: int = 100, seed: int = 0,
                  confidence: float = 0.95, device=None) -> BootstrapResult:
    """FID of the full sets with a basic bootstrap interval for the population FID (see the module doc)."""
    real = feature_matrix(real_features, "real_features", "FID")
    fake = feature_matrix(fake_features, "fake_features", "FID")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real features have {real.shape[1]} dimensions and fake features {fake.shape[1]}; "
                         "extract both with the same feature extractor")
    check_bootstrap_options(num_bootstrap, confidence)
    check_sample_size(len(real), real.shape[1], "the real set")
    check_sample_size(len(fake), fake.shape[1], "the fake set")
    if device is None:
        device = tensor_device(real_features, fake_features)
    la = NumpyOps() if device is None else TorchOps(device)
    r, f = _Centred(la, real), _Centred(la, fake)
    cross = cross_gram_if_cheaper(la, r, f, expected_distinct(r.n), expected_distinct(f.n))
    light = cross is not None
    full = _fid(la, r.draw(np.arange(r.n), light), f.draw(np.arange(f.n), light), cross=cross)
    samples = np.array([_fid(la, r.draw(i1, light), f.draw(i2, light), cross=cross)
                        for i1, i2 in bootstrap_indices(r.n, f.n, int(num_bootstrap), seed)])
    low, high = basic_interval(full, samples, confidence)
    return BootstrapResult(fid=full, low=low, high=high, std=float(samples.std(ddof=1)), samples=samples,
                           confidence=float(confidence),
                           covers=covers_text(confidence, int(num_bootstrap), r.n, f.n, r.d))
