"""The single-image design (design.kind = "single", HYPE∞ style): one image per trial, "real or
generated?". Planning balance, the app flow, storage rules, statistics and export."""
import csv
import io
import math
import sys
from collections import Counter

import pytest
from scipy.stats import norm

from study_app import ConfigError, Study, load_config, stats
from study_app.cli import main
from study_app.config import CONFIG_FILENAME, StudyConfig, config_from_dict, dump_config
from study_app.export import CODEBOOK, SINGLE_CODEBOOK, codebook_csv, export_columns
from study_app.planning import plan_trials, real_count
from study_app.simulate import AppSession, simulated_single_rows

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _single(make_study, **overrides):
    return make_study(design="single", **overrides)


def _plans(study, n, prefix="tok"):
    return [plan_trials(study.config, study.manifest, f"{prefix}{k}", k) for k in range(n)]


# -- config ---------------------------------------------------------------------------------------------

def test_init_writes_the_design_with_its_own_texts(make_study):
    study_dir = _single(make_study)
    text = (study_dir / CONFIG_FILENAME).read_text()
    assert 'kind = "single"' in text and "# kind:" in text             # commented, both designs explained
    config = load_config(study_dir)
    assert config.design.kind == "single"
    assert "one image" in config.texts.instructions and "pairs" not in config.texts.instructions
    assert "side by side" not in config.texts.briefing
    # Texts left out of the file default to the single design's, not the paired design's.
    data = tomllib.loads(text)
    del data["texts"]["instructions"]
    assert config_from_dict(data).texts.instructions == config.texts.instructions


def test_paired_stays_the_default_and_keeps_its_fingerprint():
    data = tomllib.loads(dump_config(StudyConfig(conditions=[])))
    data["conditions"] = [{"label": "A"}]
    assert config_from_dict(data).design.kind == "paired"
    without_kind = dict(data, design={k: v for k, v in data["design"].items() if k != "kind"})
    # A study.toml written before design.kind existed reads as paired, with the same fingerprint.
    assert config_from_dict(without_kind).fingerprint() == config_from_dict(data).fingerprint()
    single = dict(data, design=dict(data["design"], kind="single"))
    assert config_from_dict(single).fingerprint() != config_from_dict(data).fingerprint()
    with pytest.raises(ConfigError, match="design.kind"):
        config_from_dict(dict(data, design=dict(data["design"], kind="triple")))


def test_cli_init_with_design_single(tmp_path, image_sets, capsys):
    study_dir = tmp_path / "study"
    assert main(["init", str(study_dir), "--real", str(image_sets["real"]), "--fake", str(image_sets["A"]),
                 "--design", "single", "--trials", "6", "--seed", "3"]) == 0
    assert "single-image design" in capsys.readouterr().out
    assert Study(study_dir).config.design.kind == "single"


# -- planning ---------------------------------------------------------------------------------------------

def test_plan_is_half_real_half_generated_per_condition_and_seeded(make_study):
    study = Study(_single(make_study, trials_per_condition=6, practice_trials=4, attention_checks=2))
    plan = plan_trials(study.config, study.manifest, "token-1", 0)
    assert plan == plan_trials(study.config, study.manifest, "token-1", 0)          # reproducible
    assert plan != plan_trials(study.config, study.manifest, "token-2", 0)          # per-participant order
    assert Counter(t.kind for t in plan) == {"practice": 4, "main": 12, "attention": 2}
    assert [t.kind for t in plan[:4]] == ["practice"] * 4 and plan[4].kind == "main"
    for t in plan:
        assert t.design == "single" and t.answers == ("real", "fake")
        assert (t.real_image == "") != (t.fake_image == "")                          # exactly one image shown
        role = study.manifest.get(t.image).role
        if t.kind == "attention":
            assert (role, t.real_side, t.condition) == ("attention", "fake", "")   # scrambled: "generated"
        else:
            assert role == t.real_side                                              # "real" or "fake"
            if role == "fake":
                assert t.fake_image.startswith(f"{t.condition}/")
    for cond in ("A", "B"):
        assert Counter(t.real_side for t in plan if t.kind == "main" and t.condition == cond) == {"real": 3, "fake": 3}
    assert Counter(t.real_side for t in plan if t.kind == "practice") == {"real": 2, "fake": 2}
    main = [t for t in plan if t.kind == "main"]
    assert len({t.image for t in main}) == len(main)                                # no repeats
    assert not {t.image for t in plan[:4]} & {t.image for t in main}                # practice images are spare ones


def test_odd_trial_counts_alternate_the_extra_real_image(make_study):
    study = Study(_single(make_study, trials_per_condition=5, practice_trials=0, attention_checks=0))
    for k, plan in enumerate(_plans(study, 8)):
        for c, cond in enumerate(("A", "B")):
            reals = sum(t.real_side == "real" for t in plan if t.condition == cond)
            assert reals == real_count(5, k, c) in (2, 3)
    # Over two consecutive participants every condition has exactly 5 real and 5 generated images.
    totals = Counter((t.condition, t.real_side) for plan in _plans(study, 2) for t in plan)
    assert totals == {("A", "real"): 5, ("A", "fake"): 5, ("B", "real"): 5, ("B", "fake"): 5}


@pytest.mark.parametrize("m, participants", [(4, 16), (5, 12)])
def test_images_are_balanced_across_participants(make_study, m, participants):
    study = Study(_single(make_study, trials_per_condition=m))
    plans = _plans(study, participants)
    fake_views = Counter(t.fake_image for p in plans for t in p if t.kind == "main" and t.fake_image)
    for c, cond in enumerate(("A", "B")):
        counts = [fake_views[i] for i in study.manifest.ids("fake", cond)]
        assert max(counts) - min(counts) <= 1
        assert sum(counts) == sum(m - real_count(m, k, c) for k in range(participants))
    real_views = Counter(t.real_image for p in plans for t in p if t.kind == "main" and t.real_image)
    counts = [real_views[i] for i in study.manifest.ids("real")]
    assert max(counts) - min(counts) <= 1
    if m == 4:   # 16 participants x 2 generated images = 32 views of 16 fakes: exactly 2 each
        assert set(fake_views.values()) == {2}


def test_between_design_gives_each_participant_one_condition(make_study):
    study = Study(_single(make_study, assignment="between", trials_per_condition=4))
    for k, plan in enumerate(_plans(study, 4)):
        main = [t for t in plan if t.kind == "main"]
        assert {t.condition for t in main} == {("A", "B")[k % 2]}
        assert Counter(t.real_side for t in main) == {"real": 2, "fake": 2}


# -- the app and storage -------------------------------------------------------------------------------

def test_full_run_stores_exactly_the_planned_trials(make_study):
    study_dir = _single(make_study, completion_code="DONE-1", practice_trials=2)
    study = Study(study_dir)
    session = AppSession(study_dir).consent()
    token = session.token
    assert "one image" in session.texts() and "start-trials" in session.button_keys()
    plan = study.store.get_participant(token).plan

    def choose(index):  # right on even trials, wrong on odd ones
        truth = plan[index].real_side
        return truth if index % 2 == 0 else ("fake" if truth == "real" else "real")

    feedback = []
    while session.step(choose) is not None:
        if any(k.startswith("feedback-next-") for k in session.button_keys()):
            feedback.append(("Correct" in session.texts(), "this image was" in session.texts()))
        elif session.current_trial() is not None:
            assert set(session.answer_options()) == {"real", "fake"}
    rows = [r for r in study.store.trial_rows() if r["participant"] == study.store.get_participant(token).id]
    assert [(r["trial_index"], r["trial_kind"], r["real_image"], r["fake_image"], r["real_side"]) for r in rows] == \
        [(t.index, t.kind, t.real_image, t.fake_image, t.real_side) for t in plan]
    assert [r["chosen_side"] for r in rows] == [choose(t.index) for t in plan]
    assert [r["correct"] for r in rows] == [i % 2 == 0 for i in range(len(plan))]
    assert all(r["rt_ms"] is not None and r["shown_at"] is not None for r in rows)
    assert feedback == [(True, True), (False, True)]                 # feedback after each practice image only
    main = [t for t in plan if t.kind == "main"]
    assert f"{sum(t.index % 2 == 0 for t in main)} of {len(main)}" in " ".join(m.value for m in session.at.metric)
    text = session.texts()
    assert "DONE-1" in text and study.store.get_participant(token).deletion_code in text
    assert "generated ones in red" in text                            # which images were real
    assert study.store.get_participant(token).status == "completed"


def test_repeated_submit_from_a_second_tab_stores_one_row(make_study):
    study_dir = _single(make_study)
    study = Study(study_dir)
    first = AppSession(study_dir).consent()
    first.click("start-trials")
    second = AppSession(study_dir, {"p": first.token})
    assert first.current_trial() == second.current_trial() == 0
    first.answer("real")
    second.answer("fake")                                             # stale: trial 0 is already answered
    assert "That image was already answered" in second.texts()
    rows = study.store.trial_rows()
    assert len(rows) == 1 and rows[0]["chosen_side"] == "real"
    assert second.current_trial() == 1


def test_new_session_with_the_same_token_resumes(make_study):
    study_dir = _single(make_study, practice_trials=1)
    study = Study(study_dir)
    session = AppSession(study_dir).consent()
    session.click("start-trials")
    session.answer("real")
    session.click("feedback-next-0")
    session.click("start-main")
    session.answer("fake")
    token = session.token
    resumed = AppSession(study_dir, {"p": token})
    assert resumed.current_trial() == 2 and resumed.token == token
    resumed.run_to_end()
    state = study.store.get_participant(token)
    assert state.finished and len(study.store.trial_rows()) == len(state.plan)
    assert "deletion code" in AppSession(study_dir, {"p": token}).texts()


def test_withdrawal_and_deletion_code_work_as_in_the_paired_design(make_study):
    study_dir = _single(make_study)
    study = Study(study_dir)
    done = AppSession(study_dir).consent()
    done.run_to_end()
    leaving = AppSession(study_dir).consent()
    leaving.click("start-trials")
    leaving.answer("fake")
    leaving.at.checkbox(key="withdraw-confirm").check()
    leaving.click("withdraw")
    assert study.store.get_participant(leaving.token) is None and study.store.counts()["withdrawn"] == 1
    assert study.store.withdraw_by_code(study.store.get_participant(done.token).deletion_code)
    assert study.store.trial_rows() == []


def test_storage_takes_only_the_answers_of_the_trials_design(make_study):
    study = Study(_single(make_study))
    state = study.new_participant()
    with pytest.raises(ValueError, match="takes the answers"):
        study.store.record_answer(state.token, 0, "left")
    assert study.store.record_answer(state.token, 0, "real").status == "recorded"
    assert study.store.record_answer(state.token, 0, "fake").status == "duplicate"


def test_timed_presentation_mounts_the_single_image_component(make_study):
    study_dir = _single(make_study, presentation="timed", exposure_ms=500, mask_ms=100, practice_trials=0)
    session = AppSession(study_dir).consent()
    session.click("start-trials")
    data = session.timed_data()
    assert session.current_trial() == 0 and len(data["images"]) == 1 and data["exposure_ms"] == 500
    assert [c["value"] for c in data["choices"]] == ["real", "fake"] and "R: real" in session.texts()


def test_admin_page_shows_the_single_design_results(make_study, signed_in_admin):
    study_dir = _single(make_study)
    AppSession(study_dir).consent().run_to_end()
    admin = signed_in_admin(study_dir)
    table = admin.at.dataframe[0].value
    assert {"real error", "fool rate", "d′", "c"} <= set(table.columns)
    assert "Single-image design" in admin.texts()


# -- statistics -------------------------------------------------------------------------------------------

def test_dprime_and_criterion_on_a_known_table():
    # 30 of 40 real images judged real, 12 of 40 generated images judged real. Log-linear correction:
    # H = 30.5/41 = 0.74390, F = 12.5/41 = 0.30488; z(H) = 0.65542, z(F) = -0.51042 (normal table)
    # d′ = 0.65542 + 0.51042 = 1.16585;  c = -(0.65542 - 0.51042)/2 = -0.07250
    d, c = stats.sdt_yes_no(30, 40, 12, 40)
    assert d == pytest.approx(1.16585, abs=1e-4) and c == pytest.approx(-0.07250, abs=1e-4)
    # Perfect answers stay finite: H = 20.5/21, F = 0.5/21, z = ±1.98075.
    d, c = stats.sdt_yes_no(20, 20, 0, 20)
    assert d == pytest.approx(3.96150, abs=1e-4) and c == pytest.approx(0.0, abs=1e-12)
    # A liberal observer (says "real" a lot): c < 0.
    d, c = stats.sdt_yes_no(45, 50, 35, 50)
    assert d == pytest.approx(0.72493, abs=1e-4) and c == pytest.approx(-0.87562, abs=1e-4)
    assert all(math.isnan(v) for v in stats.sdt_yes_no(0, 0, 3, 10))


def _table_rows(hits, n_real, fooled, n_fake, participant=1):
    """Main-trial rows of one participant with the given hit / fool counts."""
    rows = []
    for i in range(n_real):
        rows.append(dict(participant=participant, participant_status="completed", trial_kind="main", condition="A",
                         real_image=f"real/{i}.png", fake_image="", real_side="real",
                         chosen_side="real" if i < hits else "fake", correct=i < hits, rt_ms=900.0))
    for i in range(n_fake):
        rows.append(dict(participant=participant, participant_status="completed", trial_kind="main", condition="A",
                         real_image="", fake_image=f"A/{i}.png", real_side="fake",
                         chosen_side="real" if i < fooled else "fake", correct=i >= fooled, rt_ms=900.0))
    return rows


def test_error_rates_on_real_and_generated_images_are_separate():
    # Two participants: 30/40 real judged real and 12/40 fakes judged real between them.
    rows = _table_rows(16, 20, 5, 20, participant=1) + _table_rows(14, 20, 7, 20, participant=2)
    report = stats.analyse(rows, conditions=["A"], design="single", bootstrap_resamples=500)
    res = report.conditions[0]
    assert isinstance(res, stats.SingleConditionResult) and report.design == "single"
    assert (res.real_trials, res.real_judged_fake, res.fake_trials, res.fake_judged_real) == (40, 10, 40, 12)
    assert res.real_error == pytest.approx(0.25) and res.fake_error == pytest.approx(0.30)
    assert (res.hit_rate, res.false_alarm_rate) == (pytest.approx(0.75), pytest.approx(0.30))
    assert res.accuracy == pytest.approx((30 + 28) / 80)
    assert res.dprime == pytest.approx(1.16585, abs=1e-4) and res.criterion_c == pytest.approx(-0.07250, abs=1e-4)
    assert res.real_error_ci_exact == pytest.approx(stats.clopper_pearson_interval(10, 40))
    assert res.fake_error_ci_wilson == pytest.approx(stats.wilson_interval(12, 40))
    assert res.real_answer_rate == pytest.approx(42 / 80)
    assert "log-linear" in res.sdt_correction
    text = stats.format_report(report)
    assert "Real images judged generated: 10/40 = 25.0%" in text
    assert "Generated images judged real (fool rate): 12/40 = 30.0%" in text
    assert "d′ = 1.17" in text and "c = -0.07" in text and "Hautus 1995" in text
    fakes = [s for s in report.images if s.role == "fake"]
    reals = [s for s in report.images if s.role == "real"]
    assert sum(s.views for s in fakes) == 40 and sum(s.judged_real for s in fakes) == 12
    assert sum(s.views for s in reals) == 40 and sum(s.judged_real for s in reals) == 30
    assert all(s.undersampled for s in report.images)                  # 2 views each, under min_views 10


@pytest.mark.parametrize("hit_rate, false_alarm_rate", [(0.7, 0.4), (0.55, 0.5)])
def test_simulated_hit_and_false_alarm_rates_are_recovered_within_their_intervals(hit_rate, false_alarm_rate):
    """Simulated studies with participants who differ: the participant-bootstrap intervals of the
    real-image error, the fool rate and d′ cover the truth about 95% of the time."""
    true_d = norm.ppf(hit_rate) - norm.ppf(false_alarm_rate)
    runs, covered = 40, Counter()
    for seed in range(runs):
        rows = simulated_single_rows(30, 40, hit_rate, false_alarm_rate, icc=0.03, seed=seed)
        res = stats.analyse(rows, conditions=["A"], design="single", bootstrap_resamples=1000,
                            seed=seed).conditions[0]
        covered["real"] += res.real_error_ci_bootstrap[0] <= 1 - hit_rate <= res.real_error_ci_bootstrap[1]
        covered["fake"] += res.fake_error_ci_bootstrap[0] <= false_alarm_rate <= res.fake_error_ci_bootstrap[1]
        covered["d"] += res.dprime_ci_bootstrap[0] <= true_d <= res.dprime_ci_bootstrap[1]
        covered["acc"] += res.ci_bootstrap[0] <= (hit_rate + 1 - false_alarm_rate) / 2 <= res.ci_bootstrap[1]
    assert all(covered[k] / runs >= 0.85 for k in ("real", "fake", "d", "acc")), covered


def test_single_verdicts_follow_the_paired_rules():
    strong = stats.analyse(simulated_single_rows(40, 30, 0.8, 0.3, seed=3), conditions=["A"], design="single",
                           bootstrap_resamples=500)
    assert strong.conditions[0].different and "DISTINGUISHABLE" in strong.conditions[0].verdict
    assert "classified the images" in strong.conditions[0].verdict
    chance = stats.analyse(simulated_single_rows(120, 40, 0.5, 0.5, seed=4), conditions=["A"], design="single",
                           bootstrap_resamples=500)
    res = chance.conditions[0]
    assert res.equivalent and not res.different and "supported for every condition" in chance.verdict
    little = stats.analyse(simulated_single_rows(10, 20, 0.5, 0.5, seed=5), conditions=["A"], design="single",
                           bootstrap_resamples=500)
    assert "INCONCLUSIVE" in little.conditions[0].verdict and "× 20 images" in little.conditions[0].verdict


def test_holm_exclusions_and_empty_conditions():
    rows = (simulated_single_rows(30, 20, 0.6, 0.45, seed=5, condition="A", attention_checks=2)
            + simulated_single_rows(30, 20, 0.5, 0.5, seed=6, condition="B", first_participant=100)
            + simulated_single_rows(3, 20, 0.6, 0.4, seed=7, condition="A", first_participant=200,
                                    attention_checks=2, attention_accuracy=0.0))
    report = stats.analyse(rows, conditions=["A", "B", "C"], design="single", bootstrap_resamples=300)
    assert sorted(report.excluded) == [200, 201, 202] and "attention checks 0/2" in report.excluded[200]
    a, b, c = report.conditions
    assert [a.p_value_adjusted, b.p_value_adjusted] == pytest.approx(stats.holm([a.p_value, b.p_value]))
    assert c.trials == 0 and c.verdict.startswith("NO DATA") and math.isnan(c.real_error)
    text = stats.format_report(report)
    assert "(no answers yet)" in text and "VERDICT" in text
    stats.analyse([], conditions=["A"], design="single").to_dict()        # JSON-ready with nothing yet


def test_rows_of_the_other_design_are_left_out_with_a_note():
    paired = [dict(r, condition="A") for r in _table_rows(5, 5, 0, 0, participant=9)]
    for r in paired:
        r.update(real_side="left", chosen_side="left", fake_image="A/x.png")
    report = stats.analyse(_table_rows(15, 20, 5, 20) + paired, conditions=["A"], design="single",
                           bootstrap_resamples=200)
    assert report.participants_total == 1 and "other design" in report.notes[0]


# -- export -----------------------------------------------------------------------------------------------

def test_export_columns_match_the_codebook(make_study, tmp_path):
    study_dir = _single(make_study)
    study = Study(study_dir)
    session = AppSession(study_dir).consent()
    plan = study.store.get_participant(session.token).plan
    session.run_to_end(choose=lambda i: "real")
    exported = list(csv.DictReader(io.StringIO(study.export_csv())))
    codebook = [row["column"] for row in csv.DictReader(io.StringIO(codebook_csv(design="single")))]
    assert list(exported[0]) == codebook == list(SINGLE_CODEBOOK) == export_columns(design="single")
    assert {"image", "image_truth", "answer", "judged_real"} <= set(codebook)
    assert not {"real_image", "fake_image", "real_side", "chosen_side", "chose_fake"} & set(codebook)
    assert [r["image"] for r in exported] == [t.image for t in plan]
    assert [r["image_truth"] for r in exported] == [t.real_side for t in plan]
    assert all(r["answer"] == "real" and r["judged_real"] == "1" for r in exported)
    assert all(r["correct"] == str(int(r["image_truth"] == "real")) for r in exported)
    assert list(study.export_records(include_platform_ids=True)[0]) == export_columns(True, design="single")
    assert list(CODEBOOK) == export_columns()                           # the paired export is unchanged
    out = tmp_path / "out" / "trials.csv"
    assert main(["export", str(study_dir), "--out", str(out)]) == 0
    assert [r["column"] for r in csv.DictReader((tmp_path / "out" / "trials_codebook.csv").open())] == codebook
    assert list(csv.DictReader(out.open()))[0].keys() == exported[0].keys()
    assert main(["stats", str(study_dir)]) == 0


def test_switching_the_design_in_study_toml_warns_about_the_other_designs_texts(make_study, capsys):
    study_dir = make_study()                                           # paired, with the paired texts
    path = study_dir / CONFIG_FILENAME
    path.write_text(path.read_text().replace('kind = "paired"', 'kind = "single"'))
    assert main(["check", str(study_dir)]) == 0
    out = capsys.readouterr().out
    assert "texts.instructions is the default text of the paired design" in out and "texts.contact" not in out


@pytest.mark.parametrize("presentation", ["buttons", "timed"])
def test_a_token_with_a_double_underscore_still_runs(make_study, monkeypatch, presentation):
    """Tokens are URL-safe base64 and now and then contain "__", which Streamlit refuses inside a
    component key: the components on the trial page (R/G keys, timed trial) must not use it raw."""
    import study_app.storage as storage

    monkeypatch.setattr(storage, "new_token", lambda: "ab__cd-Token__x")
    study_dir = _single(make_study, practice_trials=0, presentation=presentation)
    session = AppSession(study_dir).consent()
    assert session.token == "ab__cd-Token__x"
    plan = Study(study_dir).store.get_participant(session.token).plan
    assert session.run_to_end(lambda i: plan[i].real_side) == len(plan)
    assert Study(study_dir).store.get_participant(session.token).status == "completed"
