"""Logistic mixed model with crossed random intercepts (a GLMM), in numpy and scipy.

    correct ~ 0 + condition + (1 | participant) + (1 | image) [+ (1 | second image)]

Trials are clustered twice over: by the participant who answered and by the image that was shown.
The exact binomial test ignores both, the participant bootstrap only the first. This model
accounts for both at once (Baayen et al. 2008; the "GLMM with crossed participant and image
effects" of the study literature), so a condition whose images vary a lot in quality gets a wider
interval than the same number of trials on uniform images.

Fitting is the Laplace approximation: for given standard deviations of the random intercepts, the
fixed effects and the random intercepts are found together at their joint mode by Newton's method
(penalised IRLS), and the Laplace-approximated marginal log-likelihood is maximised over the log
standard deviations (lme4's `glmer(..., nAGQ = 0)` makes the same choice). Standard errors of the
fixed effects come from the inverse Hessian at the mode; they do not include the uncertainty of the
variance components, so intervals are slightly optimistic with very few participants or images.
The coefficients are on the logit scale: expit(coefficient) is the accuracy of a typical participant
on a typical image, which is below the raw pooled accuracy when either effect is large.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import optimize, sparse
from scipy import stats as sps
from scipy.linalg import cho_factor, cho_solve
from scipy.special import expit
from threadpoolctl import threadpool_limits

_LOG_SD_BOUNDS = (math.log(1e-3), math.log(20.0))


class MixedModelError(ValueError):
    """The data cannot support the model (for example a condition answered all right or all wrong)."""


@dataclass
class MixedModelFit:
    fixed_names: list[str]            # one coefficient per condition
    coef: np.ndarray                  # logit(accuracy of a typical participant on a typical image)
    se: np.ndarray
    group_names: list[str]            # "participant", "image", ...
    sd: np.ndarray                    # standard deviation of each random intercept, logit scale
    group_sizes: list[int]
    trials: int
    log_likelihood: float             # Laplace approximation, at the optimum
    converged: bool

    def accuracy(self, i: int) -> float:
        return float(expit(self.coef[i]))

    def interval(self, i: int, level: float = 0.95) -> tuple[float, float]:
        z = float(sps.norm.ppf(1 - (1 - level) / 2))
        return (float(expit(self.coef[i] - z * self.se[i])), float(expit(self.coef[i] + z * self.se[i])))

    def p_value(self, i: int) -> float:
        """Wald test of accuracy = 50% (coefficient 0), two-sided."""
        return float(2 * sps.norm.sf(abs(self.coef[i]) / self.se[i]))

    def tost_p(self, i: int, margin: float) -> float:
        """Wald TOST of 50% − margin < accuracy < 50% + margin: the larger one-sided p-value."""
        bound = math.log((0.5 + margin) / (0.5 - margin))       # logit(0.5 + margin) = −logit(0.5 − margin)
        z_low = (self.coef[i] + bound) / self.se[i]
        z_high = (bound - self.coef[i]) / self.se[i]
        return float(max(sps.norm.sf(z_low), sps.norm.sf(z_high)))


def _codes(values: Sequence) -> tuple[np.ndarray, list]:
    levels = sorted(set(values), key=str)
    index = {v: i for i, v in enumerate(levels)}
    return np.array([index[v] for v in values], dtype=np.int64), levels


def _log1pexp(eta: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, eta)


class _Problem:
    """Design matrices and the inner (mode-finding) step for fixed variance components.

    A holds the p fixed-effect columns, then each grouping factor's columns (sizes[k] of them); A @ v
    is the linear predictor of each trial. `big` is the grouping factor eliminated first: it must
    have one non-zero per trial (so that its block of the Hessian is diagonal)."""

    def __init__(self, y: np.ndarray, A: sparse.csr_matrix, p: int, sizes: list[int], big: int):
        self.y = y.astype(float)
        self.p, self.sizes = p, list(sizes)
        self.q = sum(self.sizes)
        self.A = A.tocsr()
        self.AT = self.A.T.tocsr()
        self.v = np.zeros(self.p + self.q)
        offsets = np.cumsum([self.p] + self.sizes)[:-1]
        self.big = offsets[big] + np.arange(self.sizes[big])

    @classmethod
    def indicators(cls, y: np.ndarray, fixed: np.ndarray, groups: list[np.ndarray]) -> "_Problem":
        """Indicator columns: one fixed effect per code of `fixed`, one random intercept per level of
        each group; the largest group is eliminated first."""
        n = y.size
        p = int(fixed.max()) + 1
        sizes = [int(g.max()) + 1 for g in groups]
        offsets = np.cumsum([p] + sizes)[:-1]
        cols = np.concatenate([fixed] + [g + off for g, off in zip(groups, offsets)])
        rows = np.tile(np.arange(n), 1 + len(groups))
        A = sparse.csr_matrix((np.ones(cols.size), (rows, cols)), shape=(n, p + sum(sizes)))
        return cls(y, A, p, sizes, int(np.argmax(sizes)))

    def precision(self, log_sd: np.ndarray) -> np.ndarray:
        return np.concatenate([np.zeros(self.p)] + [np.full(s, math.exp(-2 * ls)) for s, ls in zip(self.sizes, log_sd)])

    def objective(self, v: np.ndarray, lam: np.ndarray) -> float:
        eta = self.A @ v
        return float(self.y @ eta - _log1pexp(eta).sum() - 0.5 * (lam * v * v).sum())

    def _hessian(self, v: np.ndarray, lam: np.ndarray) -> "_Hessian":
        mu = expit(self.A @ v)
        return _Hessian((self.AT @ sparse.diags(mu * (1 - mu)) @ self.A).tocsr(), lam, self.big)

    def mode(self, log_sd: np.ndarray, max_iter: int = 100, tol: float = 1e-10):
        """Joint mode of (fixed, random) for these standard deviations, by damped Newton steps."""
        lam = self.precision(log_sd)
        v = self.v.copy()
        f = self.objective(v, lam)
        for _ in range(max_iter):
            grad = self.AT @ (self.y - expit(self.A @ v)) - lam * v
            step = self._hessian(v, lam).solve(grad)
            t = 1.0
            while True:
                f_new = self.objective(v + t * step, lam)
                if f_new >= f - 1e-12 or t < 1e-8:
                    break
                t /= 2
            v = v + t * step
            f = f_new
            if float(grad @ step) < tol:
                break
        else:
            raise MixedModelError("the mixed model's inner Newton iterations did not converge")
        self.v = v                        # warm start for the next variance components
        return v, f, self._hessian(v, lam), lam

    def laplace_loglik(self, log_sd: np.ndarray) -> float:
        _, f, hess, lam = self.mode(log_sd)
        return f + 0.5 * float(np.log(lam[self.p:]).sum()) - 0.5 * hess.logdet_random(self.p)


class _Hessian:
    """Negative Hessian of the penalised log-likelihood over (fixed, random), solved by eliminating the
    largest grouping factor first: each trial has one level of it, so its own block is diagonal and
    only the other columns (fixed effects and the smaller factors) need a dense Cholesky factor."""

    def __init__(self, h: sparse.csr_matrix, lam: np.ndarray, big: np.ndarray):
        rest = np.setdiff1d(np.arange(h.shape[0]), big)
        self.rest, self.big = rest, big
        self.d = h.diagonal()[big] + lam[big]
        self.b = h[rest][:, big].toarray()
        a = h[rest][:, rest].toarray() + np.diag(lam[rest])
        self.schur = cho_factor(a - (self.b / self.d) @ self.b.T)

    def solve(self, g: np.ndarray) -> np.ndarray:
        x = np.empty_like(g)
        x[self.rest] = cho_solve(self.schur, g[self.rest] - self.b @ (g[self.big] / self.d))
        x[self.big] = (g[self.big] - self.b.T @ x[self.rest]) / self.d
        return x

    def fixed_covariance(self, p: int) -> np.ndarray:
        """Top-left p × p block of the inverse (the fixed effects come first in `rest`)."""
        return cho_solve(self.schur, np.eye(self.rest.size)[:, :p])[:p]

    def logdet_random(self, p: int) -> float:
        """log det of the random-effects block: log|H| + log|(H⁻¹)_fixed|."""
        logdet_h = float(np.log(self.d).sum() + 2 * np.log(np.diag(self.schur[0])).sum())
        return logdet_h + float(np.linalg.slogdet(self.fixed_covariance(p))[1])


def fit_crossed_logistic(correct: Sequence[bool], condition: Sequence, groups: dict[str, Sequence]) -> MixedModelFit:
    """Fit correct ~ 0 + condition + Σ (1 | group) by the Laplace approximation.

    `groups` maps a name ("participant", "image", ...) to one label per trial. A condition whose
    trials are all correct or all wrong has no finite maximum: MixedModelError names it.
    """
    y = np.asarray(correct, dtype=float)
    if y.size == 0:
        raise MixedModelError("no trials to fit")
    fixed, fixed_names = _codes(list(condition))
    for i, name in enumerate(fixed_names):
        share = y[fixed == i].mean()
        if share in (0.0, 1.0):
            raise MixedModelError(f"condition {name!r}: every answer is {'right' if share else 'wrong'}, "
                                  "so its accuracy on the logit scale is unbounded; the mixed model cannot be fitted")
    codes, sizes = [], []
    for name, labels in groups.items():
        if len(labels) != y.size:
            raise MixedModelError(f"group {name!r} has {len(labels)} labels for {y.size} trials")
        c, levels = _codes(list(labels))
        codes.append(c)
        sizes.append(len(levels))
    problem = _Problem.indicators(y, fixed, codes)
    v, cov, log_sd, result = _fit(problem)
    return MixedModelFit(
        fixed_names=[str(n) for n in fixed_names], coef=v[:problem.p], se=np.sqrt(np.diag(cov)),
        group_names=list(groups), sd=np.exp(log_sd), group_sizes=sizes, trials=int(y.size),
        log_likelihood=float(-result.fun), converged=bool(result.success))


def _fit(problem: _Problem):
    """Maximise the Laplace log-likelihood over the log standard deviations: (mode, covariance of the
    fixed effects, log SDs, the optimiser's result)."""
    start = np.full(len(problem.sizes), math.log(0.5))
    # The matrices are a few hundred wide: one BLAS thread is fastest, and several threads on shared
    # cores slow these small factorisations down 20-fold.
    with threadpool_limits(1):
        result = optimize.minimize(lambda s: -problem.laplace_loglik(s), start, method="L-BFGS-B",
                                   bounds=[_LOG_SD_BOUNDS] * len(problem.sizes), options={"maxiter": 200})
        log_sd = np.asarray(result.x)
        v, _, hess, _ = problem.mode(log_sd)
        cov = hess.fixed_covariance(problem.p)
    return v, cov, log_sd, result


@dataclass
class BradleyTerryMixedFit:
    """logit P(left chosen) = side + s[left condition] − s[right condition] + u[participant]
    + w[left image] − w[right image]: Bradley–Terry strengths s (mean 0 over conditions) with a side
    bias, a random side bias per participant (u) and a random strength per image (w)."""
    conditions: list[str]
    strength: np.ndarray              # logit scale, mean 0
    strength_cov: np.ndarray
    side: float                       # logit of choosing the left image between equal strengths
    side_se: float
    group_names: list[str]
    sd: np.ndarray
    group_sizes: list[int]
    trials: int
    converged: bool

    def beats(self, i: int, j: int, level: float = 0.95) -> tuple[float, tuple[float, float]]:
        """P(a typical image of condition i is chosen over one of j), with its Wald interval."""
        diff = self.strength[i] - self.strength[j]
        se = math.sqrt(max(0.0, self.strength_cov[i, i] + self.strength_cov[j, j] - 2 * self.strength_cov[i, j]))
        z = float(sps.norm.ppf(1 - (1 - level) / 2))
        return float(expit(diff)), (float(expit(diff - z * se)), float(expit(diff + z * se)))


def fit_bradley_terry_mixed(chose_left: Sequence[bool], left_condition: Sequence, right_condition: Sequence,
                            participant: Sequence, left_image: Sequence, right_image: Sequence,
                            conditions: Sequence[str]) -> BradleyTerryMixedFit:
    """Fit the Bradley–Terry GLMM above by the Laplace approximation (the same fit as
    fit_crossed_logistic, with ±1 design columns). The first condition is the reference of the fit;
    strengths are reported centred (mean 0), with their covariance."""
    y = np.asarray(chose_left, dtype=float)
    n = y.size
    if n == 0:
        raise MixedModelError("no trials to fit")
    index = {c: k for k, c in enumerate(conditions)}
    k = len(conditions)
    people, people_levels = _codes(list(participant))
    images, image_levels = _codes(list(left_image) + list(right_image))
    rows, cols, vals = [np.arange(n)], [np.zeros(n, dtype=np.int64)], [np.ones(n)]   # the side bias
    for labels, sign in ((left_condition, 1.0), (right_condition, -1.0)):
        codes = np.array([index[c] for c in labels])
        keep = codes > 0                                       # condition 0 is the reference
        rows.append(np.arange(n)[keep])
        cols.append(codes[keep])                               # columns 1..k-1
        vals.append(np.full(int(keep.sum()), sign))
    rows.append(np.arange(n))
    cols.append(k + people)
    vals.append(np.ones(n))
    for half, sign in ((images[:n], 1.0), (images[n:], -1.0)):
        rows.append(np.arange(n))
        cols.append(k + len(people_levels) + half)
        vals.append(np.full(n, sign))
    sizes = [len(people_levels), len(image_levels)]
    A = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(n, k + sum(sizes)))
    problem = _Problem(y, A, k, sizes, big=0)                  # one participant per trial: eliminated first
    v, cov, log_sd, result = _fit(problem)
    # Strengths relative to the reference (0, s_2, ..., s_k), then centred: s − mean(s).
    to_centred = np.eye(k)[:, 1:] - np.full((k, k - 1), 1 / k)
    strength = to_centred @ v[1:k]
    return BradleyTerryMixedFit(
        conditions=list(conditions), strength=strength, strength_cov=to_centred @ cov[1:k, 1:k] @ to_centred.T,
        side=float(v[0]), side_se=float(math.sqrt(cov[0, 0])), group_names=["participant side bias", "image"],
        sd=np.exp(log_sd), group_sizes=sizes, trials=n, converged=bool(result.success))
