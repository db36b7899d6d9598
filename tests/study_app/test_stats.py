"""Statistics: a small study at chance, agreement with statsmodels and scipy, and recovery of simulated truths."""
import math

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import binom_tost, proportion_confint

from study_app import stats
from study_app.simulate import simulated_rows


# -- a small study at chance: 26 people x 12 pairs, 153 of 312 right (49%) ---------------------------

def test_a_small_study_at_chance_is_not_evidence_of_indistinguishability():
    k, n = 153, 312
    assert stats.binomial_test(k, n) == pytest.approx(0.78, abs=0.005)
    low, high = stats.clopper_pearson_interval(k, n)
    assert (round(100 * low, 1), round(100 * high, 1)) == (43.4, 54.7)
    assert stats.power_binomial(n, 0.55) == pytest.approx(0.42, abs=0.01)
    low90, high90 = stats.clopper_pearson_interval(k, n, 0.90)
    assert (round(100 * low90, 1), round(100 * high90, 1)) == (44.2, 53.8)
    assert stats.tost_binomial(k, n, 0.05) > 0.05            # equivalence within ±5 points not shown
    assert stats.dprime_2afc(k / n) == pytest.approx(-0.034, abs=0.002)


def test_the_small_study_through_the_full_analysis_is_inconclusive():
    # 26 participants x 12 main trials, 153 correct in all.
    rng = np.random.default_rng(0)
    correct = np.zeros(312, dtype=bool)
    correct[rng.choice(312, 153, replace=False)] = True
    rows = [dict(participant=i // 12, participant_status="completed", trial_kind="main", condition="small",
                 real_image=f"r{i % 12}", fake_image=f"f{i % 12}", real_side="left" if i % 2 else "right",
                 chosen_side=("left" if i % 2 else "right") if c else ("right" if i % 2 else "left"),
                 correct=bool(c), rt_ms=1000.0) for i, c in enumerate(correct)]
    report = stats.analyse(rows, conditions=["small"], trials_per_participant=12, bootstrap_resamples=2000)
    res = report.conditions[0]
    assert (res.participants, res.trials, res.correct) == (26, 312, 153)
    assert not res.different and not res.equivalent
    assert "INCONCLUSIVE" in res.verdict and "NOT supported" in res.verdict
    assert "NOT supported" in report.verdict
    assert report.power.participants_to_detect == 85          # 786 trials x design effect 1.297 / 12
    text = stats.format_report(report)
    assert "43.4%" in text and "VERDICT" in text


# -- agreement with reference implementations -------------------------------------------------------------

@pytest.mark.parametrize("k, n", [(0, 10), (3, 10), (153, 312), (60, 100), (100, 100), (1, 2)])
def test_intervals_match_statsmodels(k, n):
    assert stats.clopper_pearson_interval(k, n) == pytest.approx(proportion_confint(k, n, method="beta"), abs=1e-9)
    assert stats.wilson_interval(k, n) == pytest.approx(proportion_confint(k, n, method="wilson"), abs=1e-9)


@pytest.mark.parametrize("n", [1, 2, 12, 40, 312])
def test_the_kept_formulas_equal_scipys_functions(n):
    """wilson_interval and two_sided_pvalues are written out for speed (stats/proportions.py says why);
    they must give what scipy.stats.binomtest gives."""
    from scipy.stats import binomtest

    from study_app.stats.proportions import two_sided_pvalues

    for level in (0.9, 0.95):
        for k in range(n + 1):
            ci = binomtest(k, n).proportion_ci(level, "wilson")
            assert stats.wilson_interval(k, n, level) == pytest.approx((ci.low, ci.high), abs=1e-14)
    for p0 in (0.5, 0.45, 0.3):
        reference = [binomtest(k, n, p0).pvalue for k in range(n + 1)]
        assert two_sided_pvalues(n, p0) == pytest.approx(reference, rel=1e-12, abs=1e-15)


def test_participant_level_tests_agree_with_the_t_distribution():
    acc = [0.5, 0.6, 0.7, 0.55, 0.65]
    mean, se, df = np.mean(acc), np.std(acc, ddof=1) / math.sqrt(5), 4
    from scipy.stats import t

    assert stats.t_test_participants(acc) == pytest.approx(2 * t.sf(abs(mean - 0.5) / se, df), rel=1e-12)
    tost = max(t.sf((mean - 0.45) / se, df), t.cdf((mean - 0.55) / se, df))
    assert stats.tost_participants(acc, 0.05) == pytest.approx(tost, rel=1e-12)
    assert (stats.t_test_participants([0.6] * 4), stats.t_test_participants([0.5] * 4)) == (0.0, 1.0)
    assert (stats.tost_participants([0.52] * 4, 0.05), stats.tost_participants([0.6] * 4, 0.05)) == (0.0, 1.0)
    assert math.isnan(stats.t_test_participants([0.5]))


@pytest.mark.parametrize("k, n, margin", [(153, 312, 0.05), (500, 1000, 0.05), (520, 1000, 0.03), (10, 12, 0.1)])
def test_tost_matches_statsmodels(k, n, margin):
    reference = binom_tost(k, n, 0.5 - margin, 0.5 + margin)[0]
    assert stats.tost_binomial(k, n, margin) == pytest.approx(float(reference), rel=1e-9)


def test_holm_matches_statsmodels():
    p = [0.01, 0.04, 0.03, 0.2, 0.005]
    assert stats.holm(p) == pytest.approx(list(multipletests(p, method="holm")[1]))
    assert math.isnan(stats.holm([0.01, float("nan")])[1])


def test_power_and_sample_size_match_the_published_table():
    assert [stats.trials_needed(p, power) for p, power in ((0.55, 0.8), (0.55, 0.9), (0.6, 0.8), (0.6, 0.9),
                                                             (0.65, 0.8), (0.65, 0.9))] == [786, 1055, 199, 263, 90, 114]
    # Exact TOST, margin ±5 points, truth 50%: ≈856 by normal approximation; the exact test needs 861.
    assert 850 <= stats.trials_needed_tost(0.05, 0.8) <= 870
    # Clustering (ICC 0.027): 85 x 12, 37 x 50, 29 x 100 participants for 80% power at 55%.
    assert [stats.participants_needed(786, m, 0.027) for m in (12, 50, 100)] == [85, 37, 29]
    assert stats.power_clustered(85, 12, 0.55, 0.027) == pytest.approx(0.8, abs=0.02)


def test_dprime_and_position_bias():
    assert stats.dprime_2afc(0.76) == pytest.approx(math.sqrt(2) * 0.7063, abs=1e-3)
    assert stats.dprime_2afc(1.0, n=50) == pytest.approx(math.sqrt(2) * 2.326, abs=1e-2)   # 1 - 1/(2n)
    d, c = stats.position_sdt(80, 100, 60, 100)     # says "left" a lot regardless of the truth
    assert c < -0.3 and d > 0
    d_unbiased, c_unbiased = stats.position_sdt(70, 100, 30, 100)
    assert abs(c_unbiased) < 1e-9


# -- recovering simulated truths ------------------------------------------------------------------------

@pytest.mark.parametrize("accuracy", [0.5, 0.62])
def test_simulated_participants_are_recovered_within_their_interval(accuracy):
    """Across simulated studies with clustered participants, the participant-bootstrap interval
    covers the true accuracy about 95% of the time and the estimate is unbiased."""
    covered, estimates = 0, []
    runs = 60
    for seed in range(runs):
        rows = simulated_rows(30, 20, accuracy, icc=0.05, seed=seed)
        report = stats.analyse(rows, conditions=["A"], trials_per_participant=20, bootstrap_resamples=1000, seed=seed)
        res = report.conditions[0]
        covered += res.ci_bootstrap[0] <= accuracy <= res.ci_bootstrap[1]
        estimates.append(res.accuracy)
    assert covered / runs >= 0.85
    assert np.mean(estimates) == pytest.approx(accuracy, abs=0.01)


def test_icc_estimate_recovers_the_simulated_correlation():
    rows = simulated_rows(400, 40, 0.6, icc=0.1, seed=1)
    per = {}
    for r in rows:
        per.setdefault(r["participant"], []).append(r["correct"])
    k = [sum(v) for v in per.values()]
    n = [len(v) for v in per.values()]
    assert stats.icc_binary(k, n) == pytest.approx(0.1, abs=0.03)
    independent = simulated_rows(400, 40, 0.6, icc=0.0, seed=2)
    per = {}
    for r in independent:
        per.setdefault(r["participant"], []).append(r["correct"])
    assert stats.icc_binary([sum(v) for v in per.values()], [len(v) for v in per.values()]) < 0.02


def test_a_clear_effect_is_called_distinguishable_and_true_chance_with_enough_data_equivalent():
    strong = stats.analyse(simulated_rows(40, 30, 0.75, seed=3), conditions=["A"], bootstrap_resamples=1000)
    assert strong.conditions[0].different and "DISTINGUISHABLE" in strong.conditions[0].verdict
    chance = stats.analyse(simulated_rows(120, 40, 0.5, seed=4), conditions=["A"], bootstrap_resamples=1000)
    res = chance.conditions[0]
    assert res.equivalent and not res.different and "IS SUPPORTED" in res.verdict
    assert "supported for every condition" in chance.verdict


def test_holm_is_applied_across_conditions():
    rows = simulated_rows(30, 20, 0.56, seed=5, condition="A") + simulated_rows(30, 20, 0.5, seed=6, condition="B",
                                                                                 first_participant=100)
    report = stats.analyse(rows, conditions=["A", "B"], bootstrap_resamples=500)
    raw = [c.p_value for c in report.conditions]
    assert [c.p_value_adjusted for c in report.conditions] == pytest.approx(stats.holm(raw))
    assert report.conditions[0].p_value_adjusted >= report.conditions[0].p_value


def test_exclusions_follow_the_pre_declared_rule():
    good = simulated_rows(10, 10, 0.6, seed=7, attention_checks=2, attention_accuracy=1.0)
    bad = simulated_rows(3, 10, 0.6, seed=8, attention_checks=2, attention_accuracy=0.0, first_participant=50)
    report = stats.analyse(good + bad, conditions=["A"], min_attention_correct=1.0, bootstrap_resamples=500)
    assert sorted(report.excluded) == [50, 51, 52]
    assert "attention checks 0/2" in report.excluded[50]
    assert report.participants_analysed == 10 and report.conditions[0].participants == 10
    lenient = stats.analyse(good + bad, conditions=["A"], min_attention_correct=0.0, bootstrap_resamples=500)
    assert lenient.excluded == {}
    fast = stats.exclusions(good, min_attention_correct=0.0, exclude_median_rt_below_ms=100_000)
    assert len(fast) == 10 and "median response time" in fast[1]


def test_incomplete_participants_are_left_out_unless_asked():
    rows = simulated_rows(5, 10, 0.6, seed=9)
    for r in rows:
        if r["participant"] == 1:
            r["participant_status"] = "in_progress"
    assert stats.analyse(rows, conditions=["A"], bootstrap_resamples=200).conditions[0].participants == 4
    assert stats.analyse(rows, conditions=["A"], include_incomplete=True,
                         bootstrap_resamples=200).conditions[0].participants == 5


def test_per_image_fool_rates_flag_undersampled_images():
    rows = []
    for i in range(60):
        image = "A/popular.png" if i < 50 else "A/rare.png"
        fooled = i % 5 == 0 if i < 50 else True
        rows.append(dict(participant=i, participant_status="completed", trial_kind="main", condition="A",
                         real_image=f"real/{i % 7}.png", fake_image=image, real_side="left",
                         chosen_side="right" if fooled else "left", correct=not fooled, rt_ms=900.0))
    images = {s.image: s for s in stats.image_stats(rows, min_views=10) if s.role == "fake"}
    popular, rare = images["A/popular.png"], images["A/rare.png"]
    assert (popular.views, popular.judged_real, popular.undersampled) == (50, 10, False)
    assert popular.ci_low < 0.2 < popular.ci_high
    assert (rare.views, rare.judged_real, rare.rate, rare.undersampled) == (10, 10, 1.0, False)
    assert rare.shrunk_rate < rare.rate                        # pulled toward the condition's mean
    few = {s.image: s for s in stats.image_stats(rows[:55], min_views=10)}
    assert few["A/rare.png"].undersampled
