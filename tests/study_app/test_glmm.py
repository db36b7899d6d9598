"""The crossed-effects logistic GLMM (study_app.stats.glmm) and the choice of multiple-comparison correction."""
import math
import warnings

import numpy as np
import pytest
from scipy.special import expit, logit
from statsmodels.stats.multitest import multipletests

from study_app import ConfigError, Study, stats
from study_app.config import StudyConfig, config_from_dict, dump_config
from study_app.stats.glmm import MixedModelError, fit_crossed_logistic

try:
    import tomllib
except ImportError:  # pragma: no cover
    import tomli as tomllib


def crossed_rows(n_participants, n_images, trials, accuracy, sd_participant, sd_image, *, seed, condition="A",
                 first_participant=1):
    """Paired-design trial rows whose correctness has known participant and fake-image effects (logit scale)."""
    rng = np.random.default_rng(seed)
    person = rng.normal(0, sd_participant, n_participants)
    image = rng.normal(0, sd_image, n_images)
    rows = []
    for i in range(n_participants):
        for t, img in enumerate(rng.choice(n_images, trials, replace=False)):
            correct = bool(rng.random() < expit(logit(accuracy) + person[i] + image[img]))
            side = "left" if t % 2 else "right"
            rows.append(dict(participant=first_participant + i, participant_status="completed", trial_index=t,
                             trial_kind="main", condition=condition, real_image=f"real/{rng.integers(400)}.png",
                             fake_image=f"{condition}/{img}.png", real_side=side,
                             chosen_side=side if correct else ("right" if side == "left" else "left"),
                             correct=correct, rt_ms=900.0))
    return rows


@pytest.fixture(scope="module")
def two_conditions():
    return (crossed_rows(60, 50, 30, 0.62, 0.5, 0.9, seed=1, condition="A")
            + crossed_rows(60, 50, 30, 0.52, 0.5, 0.9, seed=2, condition="B", first_participant=1))


def _fit(rows):
    return fit_crossed_logistic([r["correct"] for r in rows], [r["condition"] for r in rows],
                                {"participant": [r["participant"] for r in rows],
                                 "image": [r["fake_image"] for r in rows]})


def test_without_clustering_it_is_the_plain_binomial_estimate():
    rng = np.random.default_rng(0)
    y = rng.random(3000) < 0.58
    fit = fit_crossed_logistic(y, ["A"] * y.size, {"participant": rng.integers(0, 50, y.size),
                                                  "image": rng.integers(0, 150, y.size)})
    p = y.mean()
    assert fit.coef[0] == pytest.approx(logit(p), abs=2e-3)
    assert fit.se[0] == pytest.approx(1 / math.sqrt(y.size * p * (1 - p)), rel=0.02)
    assert fit.sd.max() < 0.2                      # no real clustering: the variance components shrink away


def test_agrees_with_statsmodels_variational_bayes_glmm(two_conditions):
    import pandas as pd
    from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM
    fit = _fit(two_conditions)
    frame = pd.DataFrame({"y": [float(r["correct"]) for r in two_conditions],
                          "c": [r["condition"] for r in two_conditions],
                          "p": [r["participant"] for r in two_conditions],
                          "i": [r["fake_image"] for r in two_conditions]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = BinomialBayesMixedGLM.from_formula(
            "y ~ 0 + c", {"p": "0 + C(p)", "i": "0 + C(i)"}, frame).fit_vb()
    # A different approximation (variational Bayes vs Laplace) of the same model: close, not identical.
    assert fit.coef == pytest.approx(np.asarray(reference.fe_mean), abs=0.05)
    assert fit.sd == pytest.approx(np.exp(np.asarray(reference.vcp_mean)), rel=0.15)


def test_recovers_the_simulated_truth_and_widens_the_interval(two_conditions):
    fit = _fit(two_conditions)
    assert fit.fixed_names == ["A", "B"]
    for i, truth in enumerate((0.62, 0.52)):
        low, high = fit.interval(i)
        assert low < truth < high
    assert fit.sd[0] == pytest.approx(0.5, abs=0.25) and fit.sd[1] == pytest.approx(0.9, abs=0.3)
    # The images differ a lot in how telling they are: the interval must be wider than the naive one.
    a = [r["correct"] for r in two_conditions if r["condition"] == "A"]
    naive_se = 1 / math.sqrt(len(a) * np.mean(a) * (1 - np.mean(a)))
    assert fit.se[0] > 1.5 * naive_se


def test_a_condition_answered_all_right_is_refused_with_its_name():
    with pytest.raises(MixedModelError, match="condition 'B'.*every answer is right"):
        fit_crossed_logistic([True, False, True, True, True], ["A", "A", "B", "B", "B"],
                             {"participant": [1, 2, 1, 2, 3]})


def test_analyse_reports_the_mixed_model(two_conditions):
    report = stats.analyse(two_conditions, conditions=["A", "B"], bootstrap_resamples=200)
    mm = report.mixed_model
    assert mm.formula.endswith("(1 | fake image) + (1 | real image)")
    assert [c.condition for c in mm.conditions] == ["A", "B"] and mm.trials == len(two_conditions)
    assert mm.group_sizes["participant"] == 60 and mm.group_sizes["fake image"] == 100
    a = mm.conditions[0]
    assert a.ci[0] < 0.62 < a.ci[1] and a.p_value < 0.05 and not a.equivalent
    assert [c.p_value_adjusted for c in mm.conditions] == pytest.approx(stats.holm([c.p_value for c in mm.conditions]))
    text = stats.format_report(report)
    assert "Mixed model (GLMM, Laplace)" in text and "typical accuracy" in text
    assert report.to_dict()["mixed_model"]["conditions"][0]["condition"] == "A"
    assert stats.analyse(two_conditions, conditions=["A", "B"], bootstrap_resamples=200,
                         mixed_model=False).mixed_model is None


def test_mixed_model_needs_enough_participants_and_says_why():
    few = crossed_rows(3, 20, 10, 0.6, 0.1, 0.1, seed=3)
    report = stats.analyse(few, conditions=["A"], bootstrap_resamples=200)
    assert report.mixed_model.conditions == [] and "3 analysed participants" in report.mixed_model.note
    assert "not fitted" in stats.format_report(report)


def test_single_design_uses_each_shown_image_as_an_item():
    from study_app.simulate import simulated_single_rows
    rows = simulated_single_rows(20, 20, 0.7, 0.4, seed=4)
    mm = stats.analyse(rows, conditions=["A"], design="single", bootstrap_resamples=200).mixed_model
    assert mm.formula == "correct ~ 0 + condition + (1 | participant) + (1 | image)"
    shown = {(r["real_side"], r["real_image"] if r["real_side"] == "real" else r["fake_image"])
             for r in rows if r["trial_kind"] == "main"}
    assert mm.group_sizes["image"] == len(shown)
    assert mm.conditions[0].ci[0] < 0.65 < mm.conditions[0].ci[1]      # (0.7 + 0.6) / 2 correct


# -- multiple comparisons ----------------------------------------------------------------------------------

def test_benjamini_hochberg_matches_statsmodels():
    p = [0.01, 0.04, 0.03, 0.2, 0.005, 0.04]
    assert stats.benjamini_hochberg(p) == pytest.approx(list(multipletests(p, method="fdr_bh")[1]))
    assert math.isnan(stats.benjamini_hochberg([0.01, float("nan")])[1])
    assert stats.benjamini_hochberg([0.01, float("nan")])[0] == pytest.approx(0.01)   # NaN not counted
    with pytest.raises(ValueError, match="correction must be one of"):
        stats.adjust(p, "bonferroni")


def test_configured_correction_reaches_the_report(make_study):
    rows = (crossed_rows(30, 40, 20, 0.58, 0.2, 0.2, seed=5, condition="A")
            + crossed_rows(30, 40, 20, 0.55, 0.2, 0.2, seed=6, condition="B", first_participant=100)
            + crossed_rows(30, 40, 20, 0.5, 0.2, 0.2, seed=7, condition="C", first_participant=200))
    report = stats.analyse(rows, conditions=["A", "B", "C"], correction="bh", bootstrap_resamples=200)
    raw = [c.p_value for c in report.conditions]
    assert [c.p_value_adjusted for c in report.conditions] == pytest.approx(stats.benjamini_hochberg(raw))
    assert report.correction == "bh" and any("Benjamini–Hochberg" in n for n in report.notes)

    study_dir = make_study()
    study = Study(study_dir)
    before = study.config.fingerprint()
    study.config.analysis.correction = "bh"
    assert study.config.fingerprint() != before     # a changed analysis plan is a different plan
    study.config.analysis.correction = "holm"
    assert study.config.fingerprint() == before


def test_new_analysis_fields_keep_old_fingerprints_and_are_validated():
    data = tomllib.loads(dump_config(StudyConfig(conditions=[])))
    data["conditions"] = [{"label": "A"}]
    old = dict(data, analysis={k: v for k, v in data["analysis"].items() if k not in ("correction", "mixed_model")})
    assert config_from_dict(old).fingerprint() == config_from_dict(data).fingerprint()
    with pytest.raises(ConfigError, match="analysis.correction must be 'holm'.*'bh'"):
        config_from_dict(dict(data, analysis=dict(data["analysis"], correction="fdr"))).validate()
