"""Trial planning: seeded per participant, sides balanced within, images balanced across participants."""
from collections import Counter

from study_app import Study
from study_app.planning import assigned_conditions, plan_trials


def _plans(study, n, prefix="tok"):
    return [plan_trials(study.config, study.manifest, f"{prefix}{k}", k) for k in range(n)]


def test_plan_shape_and_determinism(make_study):
    study = Study(make_study(trials_per_condition=6, practice_trials=3, attention_checks=2))
    plan = plan_trials(study.config, study.manifest, "token-1", 0)
    assert plan == plan_trials(study.config, study.manifest, "token-1", 0)          # reproducible
    assert plan != plan_trials(study.config, study.manifest, "token-2", 0)          # per-participant order
    assert [t.index for t in plan] == list(range(len(plan)))
    kinds = Counter(t.kind for t in plan)
    assert kinds == {"practice": 3, "main": 12, "attention": 2}
    assert [t.kind for t in plan[:3]] == ["practice"] * 3                             # practice first
    assert plan[3].kind == "main"                                                     # never opens with a check
    assert Counter(t.condition for t in plan if t.kind == "main") == {"A": 6, "B": 6}
    for t in plan:
        assert study.manifest.get(t.real_image).role == "real"
        assert study.manifest.get(t.fake_image).role == ("attention" if t.kind == "attention" else "fake")
        if t.kind != "attention":
            assert t.fake_image.startswith(f"{t.condition}/")
        assert {t.left_image, t.right_image} == {t.real_image, t.fake_image}


def test_real_side_is_balanced_within_each_condition(make_study):
    study = Study(make_study(trials_per_condition=7))
    for plan in _plans(study, 20):
        for cond in ("A", "B"):
            sides = Counter(t.real_side for t in plan if t.kind == "main" and t.condition == cond)
            assert abs(sides["left"] - sides["right"]) <= 1
    # The odd trial out is not always on the same side, and orders differ between participants.
    odd = Counter(max(("left", "right"), key=Counter(t.real_side for t in p if t.condition == "A").get)
                  for p in _plans(study, 40))
    assert odd["left"] > 5 and odd["right"] > 5


def test_no_image_repeats_within_a_participant_when_the_pool_is_large_enough(make_study):
    study = Study(make_study(trials_per_condition=8))  # 24 reals for 16 main pairs, 16 fakes per condition
    for plan in _plans(study, 10):
        main = [t for t in plan if t.kind == "main"]
        assert len({t.real_image for t in main}) == len(main)
        assert len({t.fake_image for t in main}) == len(main)
        practice = [t for t in plan if t.kind == "practice"]
        assert not {t.real_image for t in practice} & {t.real_image for t in main}


def test_images_are_balanced_across_participants(make_study):
    study = Study(make_study(trials_per_condition=4))
    views = Counter(t.fake_image for p in _plans(study, 12) for t in p if t.kind == "main")
    per_condition = {c: [views[i] for i in study.manifest.ids("fake", c)] for c in ("A", "B")}
    # 12 participants x 4 pairs = 48 views over 16 fakes per condition: exactly 3 each.
    assert per_condition == {"A": [3] * 16, "B": [3] * 16}
    real_views = Counter(t.real_image for p in _plans(study, 12) for t in p if t.kind == "main")
    assert max(real_views.values()) - min(real_views[i] for i in study.manifest.ids("real")) <= 1


def test_between_design_assigns_conditions_in_turn(make_study):
    study = Study(make_study(assignment="between", trials_per_condition=5))
    assert [assigned_conditions(study.config, k) for k in range(4)] == [["A"], ["B"], ["A"], ["B"]]
    plan = plan_trials(study.config, study.manifest, "t", 1)
    assert {t.condition for t in plan if t.kind == "main"} == {"B"}
    assert sum(t.kind == "main" for t in plan) == 5


def test_attention_checks_are_spread_through_the_main_block(make_study):
    study = Study(make_study(trials_per_condition=10, attention_checks=4, practice_trials=0))
    for plan in _plans(study, 10):
        positions = [t.index for t in plan if t.kind == "attention"]
        assert len(positions) == 4 and positions[0] > 0
        # one check in each quarter of the sequence
        quarters = [p * 4 // len(plan) for p in positions]
        assert sorted(set(quarters)) == [0, 1, 2, 3]
