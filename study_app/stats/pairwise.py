"""Head-to-head comparisons of conditions (design.kind = "pairwise"): a Bradley–Terry model.

Each main trial shows an image of condition i and one of condition j, and the participant picks the
one that looks more real. Bradley & Terry (1952): P(i chosen over j) = π_i / (π_i + π_j), with
strengths s = log π (here centred to mean 0). Fitted by the MM algorithm of Hunter (2004), which
needs only the table of wins and is vectorised over bootstrap resamples (one resample of the
participants per row); tests check it against scikit-learn's logistic regression on the ±1 design,
which maximises the same likelihood. `VIRTUAL_WINS` virtual wins each way for every compared pair
keep the strengths finite when a condition won (or lost) every comparison, in the full data or in a
resample (the analogue of the log-linear correction of d′); its pull toward equal strengths is
that of 1 comparison per pair.

The intervals come from the participant bootstrap: participants are resampled with replacement and
the model refitted, so the intervals carry the spread between people. A head-to-head difference is
claimed only when the exact binomial test of that pair's own comparisons (Holm-adjusted across
pairs) and the bootstrap interval of P(i beats j) both exclude 50%.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .multiple import adjust
from .power import PairwisePowerPlan
from .proportions import binomial_test, wilson_interval
from .resampling import bootstrap_sums, percentile_interval

VIRTUAL_WINS = 0.5


def win_table(rows: Sequence[dict], conditions: Sequence[str]) -> np.ndarray:
    """wins[i, j]: comparisons in which condition i was chosen over condition j."""
    index = {c: k for k, c in enumerate(conditions)}
    wins = np.zeros((len(conditions), len(conditions)))
    for r in rows:
        left, right = index[r["left_condition"]], index[r["right_condition"]]
        winner, loser = (left, right) if r["chosen_side"] == "left" else (right, left)
        wins[winner, loser] += 1
    return wins


def bradley_terry(wins: np.ndarray, *, virtual_wins: float = VIRTUAL_WINS, max_iter: int = 10_000,
                  tol: float = 1e-10) -> np.ndarray:
    """Bradley–Terry log-strengths (mean 0) from a win table wins[..., i, j] (any leading batch axes),
    by Hunter's (2004) MM iteration π_i ← W_i / Σ_j n_ij / (π_i + π_j). `virtual_wins` is added both
    ways to every pair compared at least once. Without it the maximum-likelihood strengths exist only
    when the comparison graph is strongly connected (no condition always wins or always loses)."""
    wins = np.asarray(wins, dtype=float)
    compared = (wins + np.swapaxes(wins, -1, -2)) > 0
    wins = wins + virtual_wins * compared
    n = wins + np.swapaxes(wins, -1, -2)                   # comparisons of each pair
    total_wins = wins.sum(axis=-1)
    met = n.sum(axis=-1) > 0                               # a condition never compared keeps π = 1
    k = wins.shape[-1]
    pi = np.ones(wins.shape[:-1])
    for _ in range(max_iter):
        denominator = (n / (pi[..., :, None] + pi[..., None, :])).sum(axis=-1)
        new = np.where(met, total_wins / np.where(denominator > 0, denominator, 1.0), 1.0)
        new = new / np.exp(np.log(np.maximum(new, 1e-300)).mean(axis=-1, keepdims=True))  # geometric mean 1
        done = np.max(np.abs(np.log(np.maximum(new, 1e-300)) - np.log(pi))) < tol
        pi = new
        if done:
            break
    strength = np.log(np.maximum(pi, 1e-300))
    return strength - strength.mean(axis=-1, keepdims=True) if k else strength


def beats(strength: np.ndarray) -> np.ndarray:
    """P[..., i, j] = P(i chosen over j) = π_i / (π_i + π_j)."""
    diff = strength[..., :, None] - strength[..., None, :]
    return 1.0 / (1.0 + np.exp(-diff))


@dataclass
class HeadToHead:
    """Condition a against condition b."""
    a: str
    b: str
    a_wins: int                        # comparisons of a with b that a won
    comparisons: int
    win_rate: float                    # a_wins / comparisons
    win_rate_ci: tuple[float, float]   # Wilson 95%
    p_value: float                     # exact binomial test of a_wins vs 50%
    p_value_adjusted: float            # Holm across pairs
    p_beats: float                     # Bradley–Terry P(a chosen over b), from all comparisons
    p_beats_ci: tuple[float, float]    # participant bootstrap 95%
    bootstrap_share: float             # share of bootstrap resamples in which a's strength exceeds b's
    different: bool
    verdict: str


@dataclass
class PairwiseMixedModel:
    """The Bradley–Terry GLMM (glmm.fit_bradley_terry_mixed): strengths of a typical image with a
    random side bias per participant and a random strength per image."""
    conditions: list[str]
    strength: list[float]
    strength_se: list[float]
    beats: dict[str, dict[str, tuple[float, float, float]]]   # a -> b -> (P(a over b), low, high), Wald 95%
    side_bias: float                   # P(left chosen) between equal strengths
    random_sd: dict[str, float]
    group_sizes: dict[str, int]
    trials: int
    converged: bool
    note: str = ""


@dataclass
class RankingReport:
    """Conditions ranked by Bradley–Terry strength, with every head-to-head comparison."""
    conditions: list[str]              # in rank order, strongest first
    strength: list[float]              # same order; logit scale, mean 0
    strength_ci: list[tuple[float, float]]
    pairs: list[HeadToHead]            # every ordered pair (a, b), a ranked above b first
    trials: int
    participants: int
    left_choice_rate: float
    position_p_value: float
    virtual_wins: float
    resamples: int
    alpha: float
    mixed_model: PairwiseMixedModel | None = None
    power: PairwisePowerPlan | None = None
    description: str = ""
    notes: list[str] = field(default_factory=list)

    def pair(self, a: str, b: str) -> HeadToHead:
        return next(p for p in self.pairs if p.a == a and p.b == b)

    def beats_table(self) -> list[dict]:
        """One row per condition: its rank, strength and P(it beats each other condition)."""
        out = []
        for rank, (c, s, ci) in enumerate(zip(self.conditions, self.strength, self.strength_ci), start=1):
            row = {"rank": rank, "condition": c, "strength": round(s, 3),
                   "strength 95% CI": f"{ci[0]:.2f} to {ci[1]:.2f}"}
            for other in self.conditions:
                if other != c:
                    h = self.pair(c, other)
                    row[f"P(beats {other})"] = f"{h.p_beats:.2f} ({h.p_beats_ci[0]:.2f}–{h.p_beats_ci[1]:.2f})"
            out.append(row)
        return out


def _head_to_head_verdict(h: HeadToHead) -> str:
    if h.different:
        a_wins = h.p_beats > 0.5
        winner, loser = (h.a, h.b) if a_wins else (h.b, h.a)
        rate = h.win_rate if a_wins else 1 - h.win_rate
        low, high = h.p_beats_ci if a_wins else (1 - h.p_beats_ci[1], 1 - h.p_beats_ci[0])
        return (f"{winner} looks more real than {loser}: chosen in {rate:.0%} of {h.comparisons} comparisons "
                f"(exact p_adj = {h.p_value_adjusted:.3g}); P({winner} beats {loser}) = "
                f"{max(h.p_beats, 1 - h.p_beats):.2f}, participant-bootstrap 95% CI {low:.2f}–{high:.2f}.")
    return (f"{h.a} vs {h.b}: no difference detectable at N = {h.comparisons} comparisons ({h.a} chosen "
            f"{h.win_rate:.0%}, exact p_adj = {h.p_value_adjusted:.3g}; P({h.a} beats {h.b}) = {h.p_beats:.2f}, "
            f"bootstrap 95% CI {h.p_beats_ci[0]:.2f}–{h.p_beats_ci[1]:.2f}). This is not evidence that they look "
            "equally real.")


def rank_conditions(rows: Sequence[dict], conditions: Sequence[str], *, alpha: float = 0.05,
                    resamples: int = 10_000, seed: int = 0, virtual_wins: float = VIRTUAL_WINS,
                    mixed_model: PairwiseMixedModel | None = None) -> RankingReport:
    """The ranking from pairwise main-trial rows (keys participant, left_condition, right_condition,
    chosen_side): Bradley–Terry strengths with participant-bootstrap intervals, and each pair's
    head-to-head test. Conditions without any comparison keep strength 0 and NaN intervals."""
    conditions = list(conditions)
    k = len(conditions)
    people = sorted({r["participant"] for r in rows})
    per = {p: [] for p in people}
    for r in rows:
        per[r["participant"]].append(r)
    tables = np.array([win_table(per[p], conditions).ravel() for p in people]).reshape(len(people), k * k)
    wins = tables.sum(axis=0).reshape(k, k) if people else np.zeros((k, k))
    strength = bradley_terry(wins, virtual_wins=virtual_wins)
    nan2 = (math.nan, math.nan)
    if people:
        sums = bootstrap_sums(tables.T, resamples=resamples, seed=seed).reshape(resamples, k, k)
        boot = bradley_terry(sums, virtual_wins=virtual_wins)
        boot_beats = beats(boot)
        strength_ci = [percentile_interval(boot[:, i]) for i in range(k)]
    else:
        boot = boot_beats = None
        strength_ci = [nan2] * k
    model_beats = beats(strength)

    pairs, p_values = [], []
    for i, j in itertools.combinations(range(k), 2):
        n = int(wins[i, j] + wins[j, i])
        p_values.append(binomial_test(int(wins[i, j]), n) if n else math.nan)
    adjusted = dict(zip(itertools.combinations(range(k), 2), adjust(p_values, "holm")))
    for i, j in itertools.permutations(range(k), 2):
        n = int(wins[i, j] + wins[j, i])
        ci = percentile_interval(boot_beats[:, i, j]) if boot is not None and n else nan2
        p = binomial_test(int(wins[i, j]), n) if n else math.nan
        p_adj = adjusted[(min(i, j), max(i, j))]
        different = bool(p_adj < alpha and (ci[0] > 0.5 or ci[1] < 0.5))
        h = HeadToHead(a=conditions[i], b=conditions[j], a_wins=int(wins[i, j]), comparisons=n,
                       win_rate=wins[i, j] / n if n else math.nan, win_rate_ci=wilson_interval(int(wins[i, j]), n),
                       p_value=p, p_value_adjusted=p_adj, p_beats=float(model_beats[i, j]), p_beats_ci=ci,
                       bootstrap_share=float(np.mean(boot[:, i] > boot[:, j])) if boot is not None else math.nan,
                       different=different, verdict="")
        h.verdict = _head_to_head_verdict(h) if n else f"{h.a} vs {h.b}: no comparisons yet."
        pairs.append(h)

    order = sorted(range(k), key=lambda i: -strength[i])
    rank = {i: r for r, i in enumerate(order)}
    pairs.sort(key=lambda h: (rank[conditions.index(h.a)], rank[conditions.index(h.b)]))
    left = sum(r["chosen_side"] == "left" for r in rows)
    return RankingReport(
        conditions=[conditions[i] for i in order], strength=[float(strength[i]) for i in order],
        strength_ci=[strength_ci[i] for i in order], pairs=pairs, trials=len(rows), participants=len(people),
        left_choice_rate=left / len(rows) if rows else math.nan,
        position_p_value=binomial_test(left, len(rows)) if rows else math.nan,
        virtual_wins=virtual_wins, resamples=resamples, alpha=alpha, mixed_model=mixed_model,
        description=(f"Bradley–Terry strengths (log scale, mean 0) and P(row beats column) = π_row / (π_row + π_column) "
                     f"from {len(rows)} comparisons by {len(people)} participants; 95% intervals from {resamples} "
                     f"participant-bootstrap resamples; {virtual_wins:g} virtual wins each way per compared pair."))


def condition_stats(rows: Sequence[dict], label: str) -> tuple[int, int, dict[int, list[int]]]:
    """(wins, comparisons, participant -> [wins, comparisons]) of one condition in pairwise rows."""
    per: dict[int, list[int]] = {}
    for r in rows:
        if label not in (r["left_condition"], r["right_condition"]):
            continue
        won = (r["left_condition"] if r["chosen_side"] == "left" else r["right_condition"]) == label
        c = per.setdefault(r["participant"], [0, 0])
        c[0] += won
        c[1] += 1
    return sum(c[0] for c in per.values()), sum(c[1] for c in per.values()), per
