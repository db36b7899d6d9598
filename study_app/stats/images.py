"""Per-image counts: how often each generated image fooled people and how often each real image
was judged real, with Wilson intervals and a shrunken (beta-binomial) rate for images seen only a
few times (raw rates of ~2 views mean little: the Stein et al. 2023 per-image data)."""
from __future__ import annotations

from typing import Iterable

import numpy as np

from .proportions import wilson_interval
from .results import ImageStat
from .rows import is_single_row


def _beta_binomial_shrink(judged: np.ndarray, views: np.ndarray) -> np.ndarray:
    """Empirical-Bayes rates: each image pulled toward its group's mean by method-of-moments strength."""
    total = views.sum()
    if total == 0:
        return np.full(views.shape, np.nan)
    pbar = judged.sum() / total
    if views.size < 2 or pbar in (0.0, 1.0):
        return (judged + pbar) / (views + 1)
    rates = judged / np.maximum(views, 1)
    observed_var = np.sum(views * (rates - pbar) ** 2) / total
    tau2 = observed_var - pbar * (1 - pbar) * np.mean(1 / np.maximum(views, 1))
    strength = 1000.0 if tau2 <= 0 else float(np.clip(pbar * (1 - pbar) / tau2 - 1, 1.0, 1000.0))
    return (judged + strength * pbar) / (views + strength)


def image_stats(rows: Iterable[dict], *, min_views: int) -> list[ImageStat]:
    """Per-image counts from main trials: how often each fake fooled people (was picked as, or judged,
    real) and how often each real image was picked as or judged real."""
    counts: dict[tuple[str, str, str], list[int]] = {}
    for r in rows:
        if r["trial_kind"] != "main":
            continue
        if is_single_row(r):   # one image: judged real or not
            judged_real = r["chosen_side"] == "real"
            shown = (("real", r["real_image"]),) if r["real_side"] == "real" else (("fake", r["fake_image"]),)
            for role, image in shown:
                c = counts.setdefault((role, r["condition"], image), [0, 0])
                c[0] += 1
                c[1] += judged_real
            continue
        chose_real = bool(r["correct"])
        for role, image in (("fake", r["fake_image"]), ("real", r["real_image"])):
            c = counts.setdefault((role, r["condition"], image), [0, 0])
            c[0] += 1
            c[1] += (not chose_real) if role == "fake" else chose_real
    out: list[ImageStat] = []
    groups: dict[tuple[str, str], list[tuple[str, int, int]]] = {}
    for (role, cond, image), (views, judged) in counts.items():
        groups.setdefault((role, cond), []).append((image, views, judged))
    for (role, cond), items in sorted(groups.items()):
        views = np.array([v for _, v, _ in items], dtype=float)
        judged = np.array([j for _, _, j in items], dtype=float)
        shrunk = _beta_binomial_shrink(judged, views)
        for (image, v, j), s in zip(items, shrunk):
            low, high = wilson_interval(j, v)
            out.append(ImageStat(image=image, role=role, condition=cond, views=v, judged_real=j, rate=j / v,
                                 ci_low=low, ci_high=high, shrunk_rate=float(s), undersampled=v < min_views))
    out.sort(key=lambda s: (s.condition, s.role, -s.rate, s.image))
    return out
