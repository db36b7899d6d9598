"""The pairwise design (design.kind = "pairwise"): planning, the app, the Bradley–Terry ranking with
its participant bootstrap and mixed model, power, and the evalkit report section next to FID."""
import itertools
import warnings
from collections import Counter

import numpy as np
import pytest
from scipy.special import expit

from study_app import ConfigError, Study, stats
from study_app.simulate import AppSession, simulated_pairwise_rows
from study_app.stats.pairwise import bradley_terry, rank_conditions, win_table

TRUE = {"A": 0.6, "B": 0.0, "C": -0.6}


@pytest.fixture(scope="module")
def simulated():
    return simulated_pairwise_rows(40, 10, TRUE, seed=3, sd_participant=0.3)


def test_mm_fit_is_the_maximum_likelihood_of_a_logistic_regression(simulated):
    from sklearn.linear_model import LogisticRegression

    labels = list(TRUE)
    x = np.zeros((len(simulated), 3))
    for i, r in enumerate(simulated):
        x[i, labels.index(r["left_condition"])] += 1
        x[i, labels.index(r["right_condition"])] -= 1
    y = np.array([r["chosen_side"] == "left" for r in simulated])
    # Both the left-right design and its mirror image: the likelihood of pairs without a side term.
    reference = LogisticRegression(C=np.inf, fit_intercept=False, tol=1e-10, max_iter=10_000).fit(
        np.vstack([x, -x]), np.concatenate([y, ~y]))
    expected = reference.coef_[0] - reference.coef_[0].mean()
    ours = bradley_terry(win_table(simulated, labels), virtual_wins=0.0)
    assert ours == pytest.approx(expected, abs=1e-6)


def test_recovers_known_strengths_within_its_intervals(simulated):
    ranking = rank_conditions(simulated, list(TRUE), resamples=2000, seed=1)
    assert ranking.conditions == ["A", "B", "C"]
    truth = np.array(list(TRUE.values())) - np.mean(list(TRUE.values()))
    for name, (low, high) in zip(ranking.conditions, ranking.strength_ci):
        assert low < truth[list(TRUE).index(name)] < high
    for h in ranking.pairs:
        true_p = expit(TRUE[h.a] - TRUE[h.b])
        assert h.p_beats_ci[0] < true_p < h.p_beats_ci[1]
        assert h.p_beats_ci[0] < h.p_beats < h.p_beats_ci[1]
    a_over_c = ranking.pair("A", "C")
    assert a_over_c.different and a_over_c.bootstrap_share > 0.99 and "A looks more real than C" in a_over_c.verdict


def test_equal_conditions_are_not_called_different():
    rows = simulated_pairwise_rows(30, 8, {"A": 0.0, "B": 0.0}, seed=5)
    ranking = rank_conditions(rows, ["A", "B"], resamples=1000)
    h = ranking.pair(*ranking.conditions)
    assert not h.different and "no difference detectable at N = 240" in h.verdict and "not evidence" in h.verdict


def test_a_condition_that_always_wins_keeps_a_finite_strength():
    wins = np.array([[0, 20], [0, 0]])
    strength = bradley_terry(wins)                  # 0.5 virtual wins each way: log(20.5 / 0.5) apart
    assert np.isfinite(strength).all() and strength[0] - strength[1] == pytest.approx(np.log(20.5 / 0.5), rel=1e-6)


def test_mixed_model_agrees_with_statsmodels_and_finds_the_participant_spread():
    import pandas as pd
    from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM

    from study_app.stats.glmm import fit_bradley_terry_mixed

    rows = simulated_pairwise_rows(50, 8, TRUE, seed=9, sd_participant=0.8, side_bias=0.2)
    labels = list(TRUE)
    fit = fit_bradley_terry_mixed([r["chosen_side"] == "left" for r in rows], [r["left_condition"] for r in rows],
                                  [r["right_condition"] for r in rows], [r["participant"] for r in rows],
                                  [r["real_image"] for r in rows], [r["fake_image"] for r in rows], labels)
    assert fit.strength == pytest.approx(np.array(list(TRUE.values())), abs=0.15)
    assert 0.5 < fit.sd[0] < 1.2 and fit.side == pytest.approx(0.2, abs=0.15)
    # The same model by variational Bayes: fixed effects side, B − A, C − A; random participant intercepts.
    x = np.zeros((len(rows), 3))
    x[:, 0] = 1
    for i, r in enumerate(rows):
        for condition, sign in ((r["left_condition"], 1), (r["right_condition"], -1)):
            if condition != "A":
                x[i, labels.index(condition)] += sign
    people = sorted({r["participant"] for r in rows})
    z = np.zeros((len(rows), len(people)))
    for i, r in enumerate(rows):
        z[i, people.index(r["participant"])] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = BinomialBayesMixedGLM(np.array([r["chosen_side"] == "left" for r in rows], float), x, z,
                                          np.zeros(len(people), dtype=int)).fit_vb()
    ours_vs_a = fit.strength[1:] - fit.strength[0]
    assert ours_vs_a == pytest.approx(np.asarray(reference.fe_mean)[1:], abs=0.1)


def test_power_plan_of_one_pair():
    two = stats.pairwise_power_plan(2, 10, 0.6, 0.0)
    assert two.comparisons_needed == stats.trials_needed(0.6, 0.8) == 199 and two.participants_needed == 20
    three = stats.pairwise_power_plan(3, 10, 0.6, 0.05)
    assert three.alpha_per_pair == pytest.approx(0.05 / 3)
    assert three.comparisons_needed == stats.trials_needed(0.6, 0.8, alpha=0.05 / 3) > two.comparisons_needed
    assert three.participants_needed == stats.participants_needed(three.comparisons_needed, 10, 0.05)


def test_plan_balances_pairs_sides_and_images(make_study):
    study = Study(make_study(conditions=("A", "B"), design="pairwise", trials_per_condition=4, attention_checks=1,
                             practice_trials=1))
    plans = [study.new_participant().plan for _ in range(4)]
    for plan in plans:
        main = [t for t in plan if t.kind == "main"]
        assert len(main) == 4 and {(t.left_condition, t.right_condition) for t in main} == {("A", "B"), ("B", "A")}
        assert Counter(t.left_condition for t in main) == {"A": 2, "B": 2}          # sides balanced
        assert all(t.real_image.startswith(f"{t.left_condition}/") and t.fake_image.startswith(f"{t.right_condition}/")
                   for t in main)
        (check,) = [t for t in plan if t.kind == "attention"]
        assert check.design == "paired" and check.fake_image.startswith("attention/")
    shown = Counter(img for plan in plans for t in plan if t.kind == "main" for img in (t.real_image, t.fake_image))
    assert set(shown.values()) == {1} and len(shown) == 32     # 4 participants x 4 pairs: all 2 x 16 fakes once


def test_pairwise_needs_two_conditions(make_study):
    with pytest.raises(ConfigError, match="at least two"):
        make_study(conditions=("A",), design="pairwise")


def test_app_session_and_report(make_study):
    study_dir = make_study(conditions=("A", "B"), design="pairwise", trials_per_condition=4, practice_trials=1)
    study = Study(study_dir)
    for k in range(6):
        session = AppSession(study_dir).consent()
        plan = study.store.get_participant(session.token).plan

        def prefer_a(index):   # everyone prefers condition A; attention checks answered right
            t = plan[index]
            if t.kind == "attention":
                return t.real_side
            return "left" if t.left_condition == "A" else "right"

        if k == 0:
            session.click("start-trials")
            assert "looks more real" in session.texts() and session.answer_options() == ["left", "right"]
            session.answer("left")
            assert "no right or wrong answer" in session.texts()
        session.run_to_end(prefer_a)
        assert "Thank you" in session.texts() and "Your score" not in session.texts()
    report = study.analyse()
    assert report.design == "pairwise" and report.ranking.conditions == ["A", "B"]
    assert report.conditions[0].condition == "A" and report.conditions[0].accuracy == 1.0
    assert report.ranking.pair("A", "B").different
    text = stats.format_report(report)
    assert "Ranking (Bradley–Terry)" in text and "A looks more real than B" in text
    frame = report.to_frame("ranking")
    assert list(frame.a) == ["A", "B"] and {"p_beats_ci_low", "p_beats_ci_high"} <= set(frame.columns)
    trials = study.trials()
    main = trials[trials.trial_kind == "main"]
    assert (main.chosen_condition == "A").all() and main.attention_correct.isna().all()
    assert (trials[trials.trial_kind == "attention"].attention_correct == True).all()   # noqa: E712


def _everyone_prefers(make_study, favourite: str):
    """A pairwise study of A and B whose 3 participants chose `favourite`'s image every time."""
    study_dir = make_study(conditions=("A", "B"), design="pairwise", trials_per_condition=3, practice_trials=0,
                           attention_checks=0)
    study = Study(study_dir)
    for _ in range(3):
        state = study.new_participant()
        for t in state.plan:
            study.store.record_answer(state.token, t.index, "left" if t.left_condition == favourite else "right")
    return study_dir


def test_report_section_puts_the_ranking_next_to_fid(make_study):
    from harness.study_section import study_section

    study_dir = _everyone_prefers(make_study, "B")
    section = study_section(study_dir, rows=[{"name": "A", "fid": 12.5}, {"name": "B", "fid": 30.25},
                                             {"name": "other", "fid": 1.0}])
    assert section.title == "Human study: ranking next to FID"
    first, second = section.data["table"]
    assert (first["condition"], first["fid"], second["condition"], second["fid"]) == ("B", 30.25, "A", 12.5)
    assert "30.25" in section.text.splitlines()[1] and "B" in section.text.splitlines()[1]
    assert "order is" not in section.summary          # no ranking by FID without the paired interval
    assert "paired comparisons" in section.summary
    alone = study_section(study_dir)              # without the report's rows: no FID column values
    assert all(t["fid"] is None for t in alone.data["table"])


def test_admin_page_shows_the_ranking(make_study, signed_in_admin):
    admin = signed_in_admin(_everyone_prefers(make_study, "A"))
    assert "Ranking (Bradley–Terry)" in [s.value for s in admin.at.subheader]
    tables = [t.value for t in admin.at.dataframe]
    ranking = next(t for t in tables if "P(beats B)" in t.columns)
    assert list(ranking["condition"]) == ["A", "B"] and ranking["P(beats B)"].iloc[0].startswith("0.")
