"""Signal detection: d′ and the criterion c of either design (Macmillan & Creelman, "Detection
Theory: A User's Guide"; Hautus 1995 for the log-linear correction)."""
from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

SDT_CORRECTION = ("log-linear correction (Hautus 1995): H = (hits + 0.5) / (real trials + 1), "
                  "F = (false alarms + 0.5) / (fake trials + 1), applied to every table")


def dprime_2afc(proportion_correct: float, n: int | None = None) -> float:
    """d′ of an unbiased observer in 2AFC: √2·z(PC) (psyphy's dprime.mAFC(Pc, 2));
    PC of 0 or 1 is moved in by 1/(2n)."""
    pc = proportion_correct
    if n:
        pc = min(max(pc, 1 / (2 * n)), 1 - 1 / (2 * n))
    if not 0 < pc < 1:
        return math.copysign(math.inf, pc - 0.5)
    return float(math.sqrt(2) * sps.norm.ppf(pc))


def loglinear_rate(k, n):
    """(k + 0.5) / (n + 1): the log-linear correction, which keeps rates of 0 and 1 finite in z."""
    return (np.asarray(k, dtype=float) + 0.5) / (np.asarray(n, dtype=float) + 1)


def position_sdt(real_left_chose_left: int, real_left: int, real_right_chose_left: int,
                 real_right: int) -> tuple[float, float]:
    """(d′, c) of a 2AFC observer with a possible side bias, from hit and false-alarm rates of
    'left' answers (log-linear correction, Hautus 1995). c < 0: a bias toward the left image."""
    zh = float(sps.norm.ppf(loglinear_rate(real_left_chose_left, real_left)))
    zf = float(sps.norm.ppf(loglinear_rate(real_right_chose_left, real_right)))
    return (zh - zf) / math.sqrt(2), -(zh + zf) / 2


def sdt_yes_no(hits: int, signal_trials: int, false_alarms: int, noise_trials: int) -> tuple[float, float]:
    """(d′, c) of a yes/no observer: d′ = z(H) − z(F), c = −(z(H) + z(F)) / 2.

    Single-image design: the "signal" is a real image and "yes" the answer "real", so H is the share
    of real images judged real and F the share of generated images judged real (the fool rate).
    c > 0 is a bias toward answering "generated", c < 0 toward "real". H and F use the log-linear
    correction (Hautus 1995) on every table, not only on rates of 0 or 1, so that d′ is finite and
    has no jump where a count reaches 0 or n."""
    if signal_trials <= 0 or noise_trials <= 0:
        return (math.nan, math.nan)
    zh = float(sps.norm.ppf(loglinear_rate(hits, signal_trials)))
    zf = float(sps.norm.ppf(loglinear_rate(false_alarms, noise_trials)))
    return (zh - zf, -(zh + zf) / 2)
