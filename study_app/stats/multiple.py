"""Adjusting p-values across conditions (several generators, checkpoints or ψ values): Holm for
the family-wise error rate, Benjamini–Hochberg for the false discovery rate. NaN p-values (a
condition without answers) stay NaN and are not counted in the number of tests m."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy import stats as sps


def _on_valid(pvalues: Sequence[float], adjust_valid: Callable[[np.ndarray], np.ndarray]) -> list[float]:
    """Apply `adjust_valid` (p-values without NaN, in their order -> adjusted) to the non-NaN ones."""
    p = np.asarray(pvalues, dtype=float)
    valid = ~np.isnan(p)
    adjusted = np.full(p.shape, np.nan)
    if valid.any():
        adjusted[valid] = adjust_valid(p[valid])
    return adjusted.tolist()


def _holm_step_down(p: np.ndarray) -> np.ndarray:
    order = np.argsort(p, kind="stable")
    m = p.size
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    return adjusted


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm (1979) step-down adjusted p-values: running max of (m − i)·p_(i), capped at 1.

    scipy has no Holm adjustment (scipy.stats.false_discovery_control covers the false discovery
    rate only); the tests check this one against statsmodels' multipletests(method="holm")."""
    return _on_valid(pvalues, _holm_step_down)


def benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    """Benjamini–Hochberg (1995) step-up adjusted p-values (false discovery rate):
    q_(i) = min over j ≥ i of m·p_(j) / j, capped at 1 (scipy.stats.false_discovery_control)."""
    return _on_valid(pvalues, lambda p: sps.false_discovery_control(p, method="bh"))


CORRECTIONS = {"holm": holm, "bh": benjamini_hochberg}
CORRECTION_NAMES = {"holm": "Holm (family-wise error)", "bh": "Benjamini–Hochberg (false discovery rate)"}


def check_correction(method: str) -> str:
    if method not in CORRECTIONS:
        raise ValueError(f"correction must be one of {sorted(CORRECTIONS)}, got {method!r}")
    return method


def adjust(pvalues: Sequence[float], method: str = "holm") -> list[float]:
    """Adjust p-values across conditions by the configured correction ("holm" or "bh")."""
    return CORRECTIONS[check_correction(method)](pvalues)
