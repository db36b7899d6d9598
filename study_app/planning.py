"""Trial planning: which pairs (or single images) a participant sees, where the real one is, in what order.

Deterministic: a plan is a pure function of (config, manifest, participant token, participant
number), so it can be rebuilt and checked; the app still stores each plan with the participant so
that editing the config mid-study cannot change a running participant's trials.

Balance:
- across participants: each set of images is put in a study-seeded order once, and participant
  number k takes the next block of it (a rotation), so every image is shown equally often (±1)
  and no image repeats within a participant while the set is large enough;
- within a participant: in each condition the real image is on the left in half the trials
  (the odd one out at random) and the order is shuffled with a per-participant seed.

The single-image design (design.kind = "single") shows one image per trial. In each condition half
the trials show a real image and half a generated one; with an odd trial count the extra trial is
real for every other participant (alternating by arrival and by condition), so that the rotation
blocks still tile the study-wide orders and every image is shown equally often (±1). A single trial
is a Trial whose `real_side` holds the correct answer, "real" or "fake", and whose `real_image` or
`fake_image` (the other one is "") names the image shown. Attention checks show a scrambled image,
whose correct answer is "fake" (generated).

The pairwise design (design.kind = "pairwise") shows two generated images from different
conditions and asks which looks more real: every pair of conditions comes up trials_per_condition
times per participant, each condition on the left in half of them (the odd one out at random), and
each condition's images rotate across participants as above. A pairwise trial has no right answer:
its `left_condition` / `right_condition` name the conditions, `real_image` / `fake_image` hold the
left / right image and `real_side` is "". Its attention checks are those of the paired design (a
real image against its scrambled copy: the real one looks more real).
"""
from __future__ import annotations

import hashlib
import itertools
from dataclasses import asdict, dataclass

import numpy as np

from .config import StudyConfig
from .manifest import Manifest

SIDES = ("left", "right")       # answers in the paired design: the side chosen as real
TRUTHS = ("real", "fake")       # answers in the single design: the image is judged real or generated
KINDS = ("practice", "main", "attention")


@dataclass(frozen=True)
class Trial:
    index: int          # position in the participant's sequence, from 0 (practice trials first)
    kind: str           # "practice", "main" or "attention"
    condition: str      # condition label; "" for attention checks
    real_image: str     # manifest ids. Single design: the image shown if it is real, else ""
    fake_image: str     # single design: the image shown if it is generated (or scrambled), else ""
    real_side: str      # the correct answer. Paired: "left" or "right"; single: "real" or "fake"; pairwise: ""
    left_condition: str = ""    # pairwise: the condition of the left image (real_image holds it)
    right_condition: str = ""   # pairwise: the condition of the right image (fake_image holds it)

    @property
    def design(self) -> str:
        if self.left_condition:
            return "pairwise"
        return "single" if self.real_side in TRUTHS else "paired"

    @property
    def answers(self) -> tuple[str, str]:
        """The answers this trial accepts: ("left", "right") or ("real", "fake")."""
        return TRUTHS if self.real_side in TRUTHS else SIDES

    @property
    def image(self) -> str:
        """Single design: the one image shown."""
        return self.real_image or self.fake_image

    @property
    def left_image(self) -> str:
        return self.real_image if self.real_side in ("left", "") else self.fake_image

    @property
    def right_image(self) -> str:
        return self.fake_image if self.real_side in ("left", "") else self.real_image

    def is_correct(self, answer: str) -> bool:
        """Whether the answer is right; a pairwise trial has no right answer (always False)."""
        return answer == self.real_side

    def chosen_condition(self, answer: str) -> str:
        """Pairwise: the condition of the image chosen as more real."""
        return self.left_condition if answer == "left" else self.right_condition

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Trial":
        return cls(**data)


def _stable_int(*parts) -> int:
    """A 64-bit integer from strings/ints that is the same on every machine and Python version."""
    return int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:8], "little")


def participant_rng(study_seed: int, token: str) -> np.random.Generator:
    return np.random.default_rng([study_seed & 0xFFFFFFFF, _stable_int("participant", token)])


def _study_order(study_seed: int, what: str, ids: list[str]) -> list[str]:
    """The study-wide shuffled order of an image set (the same for every participant)."""
    rng = np.random.default_rng([study_seed & 0xFFFFFFFF, _stable_int("order", what)])
    return [ids[i] for i in rng.permutation(len(ids))]


def _rotation_block(order: list[str], participant_number: int, size: int) -> list[str]:
    start = participant_number * size
    return [order[(start + j) % len(order)] for j in range(size)]


def _balanced_sides(n: int, rng: np.random.Generator, values: tuple[str, str] = SIDES) -> list[str]:
    sides = list(values) * (n // 2)
    if n % 2:
        sides.append(values[int(rng.integers(2))])
    return [sides[i] for i in rng.permutation(n)]


def _insert_attention(main_trials: list, checks: list, rng: np.random.Generator) -> None:
    """Insert attention-check tuples into main_trials, one in each equal stretch, never first."""
    n_att, n_main = len(checks), len(main_trials)
    # Insert from the back so earlier insertion points stay valid; never before the first main trial.
    for k in reversed(range(n_att)):
        lo = k * n_main // n_att + 1
        hi = max(lo, (k + 1) * n_main // n_att)
        pos = int(rng.integers(lo, hi + 1))
        main_trials.insert(pos, checks[k])


def _rotation(config: StudyConfig, participant_seq: int) -> int:
    """Rotation index among the participants who share this participant's conditions."""
    return participant_seq // len(config.conditions) if config.design.assignment == "between" else participant_seq


def _trials(practice: list, main_trials: list) -> list[Trial]:
    kinds = ["practice"] * len(practice) + ["attention" if cond == "" else "main" for cond, *_ in main_trials]
    return [Trial(index=i, kind=kind, condition=cond, real_image=real, fake_image=fake, real_side=side)
            for i, (kind, (cond, real, fake, side)) in enumerate(zip(kinds, practice + main_trials))]


def assigned_conditions(config: StudyConfig, participant_seq: int) -> list[str]:
    """Conditions shown to participant number `participant_seq` (0-based arrival order)."""
    labels = config.condition_labels()
    if config.design.assignment == "between":
        return [labels[participant_seq % len(labels)]]
    return labels


def plan_trials(config: StudyConfig, manifest: Manifest, token: str, participant_seq: int) -> list[Trial]:
    """The full trial sequence for one participant: practice, then main trials with attention checks."""
    if config.design.kind == "single":
        return _plan_single(config, manifest, token, participant_seq)
    if config.design.kind == "pairwise":
        return _plan_pairwise(config, manifest, token, participant_seq)
    design = config.design
    rng = participant_rng(design.seed, token)
    conditions = assigned_conditions(config, participant_seq)
    rotation = _rotation(config, participant_seq)
    m = design.trials_per_condition

    real_order = _study_order(design.seed, "real", manifest.ids("real"))
    if not real_order:
        raise ValueError("the manifest has no real images")
    reals = _rotation_block(real_order, rotation, m * len(conditions))

    main: list[tuple[str, str, str]] = []  # (condition, real, fake)
    used_fakes: set[str] = set()
    for c, label in enumerate(conditions):
        fake_ids = manifest.ids("fake", label)
        if not fake_ids:
            raise ValueError(f"the manifest has no fake images for condition {label!r}")
        fakes = _rotation_block(_study_order(design.seed, f"fake:{label}", fake_ids), rotation, m)
        used_fakes.update(fakes)
        main += [(label, reals[c * m + j], fakes[j]) for j in range(m)]
    sides = [s for c in range(len(conditions)) for s in _balanced_sides(m, rng)]
    main_trials = [(cond, real, fake, side) for (cond, real, fake), side in zip(main, sides)]
    main_trials = [main_trials[i] for i in rng.permutation(len(main_trials))]

    _paired_attention(design, manifest, main_trials, rng)

    # Practice pairs from images this participant will not see in the main block, when there are any.
    practice = []
    if design.practice_trials:
        spare_reals = [r for r in real_order if r not in set(reals)] or real_order
        spare_fakes = {label: [f for f in manifest.ids("fake", label) if f not in used_fakes] or manifest.ids("fake", label)
                       for label in conditions}
        p_sides = _balanced_sides(design.practice_trials, rng)
        for k in range(design.practice_trials):
            label = conditions[k % len(conditions)]
            real = spare_reals[int(rng.integers(len(spare_reals)))]
            fake = spare_fakes[label][int(rng.integers(len(spare_fakes[label])))]
            practice.append((label, real, fake, p_sides[k]))

    return _trials(practice, main_trials)


def _paired_attention(design, manifest: Manifest, main_trials: list, rng: np.random.Generator,
                      make=lambda real, scrambled, side: ("", real, scrambled, side)) -> None:
    """Attention checks of the paired and pairwise designs: a real image against its scrambled copy,
    spread evenly through the main block (`make` builds the inserted tuple)."""
    attention_ids = manifest.ids("attention")
    n_att = design.attention_checks if attention_ids else 0
    if n_att:
        chosen = [attention_ids[i % len(attention_ids)] for i in rng.permutation(max(n_att, len(attention_ids)))[:n_att]]
        att_sides = _balanced_sides(n_att, rng)
        _insert_attention(main_trials, [make(manifest.get(chosen[k]).derived_from, chosen[k], att_sides[k])
                                        for k in range(n_att)], rng)


def condition_pairs(labels: list[str]) -> list[tuple[str, str]]:
    """Pairwise design: every unordered pair of conditions, in config order."""
    return list(itertools.combinations(labels, 2))


def _plan_pairwise(config: StudyConfig, manifest: Manifest, token: str, participant_seq: int) -> list[Trial]:
    """Pairwise design: two generated images from different conditions; which looks more real?"""
    design = config.design
    rng = participant_rng(design.seed, token)
    labels = config.condition_labels()
    pairs = condition_pairs(labels)
    m = design.trials_per_condition
    per_condition = m * (len(labels) - 1)   # trials in which each condition appears
    images = {}
    for label in labels:
        fake_ids = manifest.ids("fake", label)
        if not fake_ids:
            raise ValueError(f"the manifest has no fake images for condition {label!r}")
        images[label] = _rotation_block(_study_order(design.seed, f"fake:{label}", fake_ids), participant_seq,
                                        per_condition)
    taken = dict.fromkeys(labels, 0)
    main = []   # (kind, condition, left image, right image, side, left condition, right condition)
    for a, b in pairs:
        for a_side in _balanced_sides(m, rng):
            img_a, img_b = images[a][taken[a]], images[b][taken[b]]
            taken[a] += 1
            taken[b] += 1
            left, right = ((a, img_a), (b, img_b)) if a_side == "left" else ((b, img_b), (a, img_a))
            main.append(("main", "", left[1], right[1], "", left[0], right[0]))
    main = [main[i] for i in rng.permutation(len(main))]
    _paired_attention(design, manifest, main, rng,
                      make=lambda real, scrambled, side: ("attention", "", real, scrambled, side, "", ""))
    practice = []
    if design.practice_trials:
        used = {img for block in images.values() for img in block}
        spare = {label: [f for f in manifest.ids("fake", label) if f not in used] or manifest.ids("fake", label)
                 for label in labels}
        for k in range(design.practice_trials):
            a, b = pairs[k % len(pairs)]
            if rng.integers(2):
                a, b = b, a
            practice.append(("practice", "", spare[a][int(rng.integers(len(spare[a])))],
                             spare[b][int(rng.integers(len(spare[b])))], "", a, b))
    return [Trial(index=i, kind=kind, condition=cond, real_image=left, fake_image=right, real_side=side,
                  left_condition=lc, right_condition=rc)
            for i, (kind, cond, left, right, side, lc, rc) in enumerate(practice + main)]


def _parity_count(r: int, parity: int) -> int:
    """How many j in 0..r-1 have j % 2 == parity."""
    return (r + 1) // 2 if parity == 0 else r // 2


def real_count(trials_per_condition: int, rotation: int, condition_index: int) -> int:
    """Single design: real-image trials of one condition for one participant. Half the trials; with an
    odd count the extra trial is real when rotation + condition_index is even, else generated."""
    m = trials_per_condition
    return m // 2 + int(m % 2 == 1 and (rotation + condition_index) % 2 == 0)


def _plan_single(config: StudyConfig, manifest: Manifest, token: str, participant_seq: int) -> list[Trial]:
    """Single design: one image per trial, half real and half generated in each condition."""
    design = config.design
    rng = participant_rng(design.seed, token)
    conditions = assigned_conditions(config, participant_seq)
    rotation = _rotation(config, participant_seq)
    m, half, odd = design.trials_per_condition, design.trials_per_condition // 2, design.trials_per_condition % 2
    n_cond = len(conditions)

    real_order = _study_order(design.seed, "real", manifest.ids("real"))
    if not real_order:
        raise ValueError("the manifest has no real images")
    # The blocks of all earlier participants tile the study-wide orders: start where they ended.
    real_start = rotation * n_cond * half + odd * sum(_parity_count(rotation, c % 2) for c in range(n_cond))
    n_reals = [real_count(m, rotation, c) for c in range(n_cond)]
    reals = [real_order[(real_start + j) % len(real_order)] for j in range(sum(n_reals))]

    main: list[tuple[str, str, str, str]] = []  # (condition, real, fake, correct answer)
    used_fakes: set[str] = set()
    taken = 0
    for c, label in enumerate(conditions):
        fake_ids = manifest.ids("fake", label)
        if not fake_ids:
            raise ValueError(f"the manifest has no fake images for condition {label!r}")
        fake_order = _study_order(design.seed, f"fake:{label}", fake_ids)
        fake_start = rotation * half + odd * _parity_count(rotation, 1 - c % 2)
        fakes = [fake_order[(fake_start + j) % len(fake_order)] for j in range(m - n_reals[c])]
        used_fakes.update(fakes)
        main += [(label, real, "", "real") for real in reals[taken:taken + n_reals[c]]]
        main += [(label, "", fake, "fake") for fake in fakes]
        taken += n_reals[c]
    main_trials = [main[i] for i in rng.permutation(len(main))]

    # Attention checks: a scrambled image (answer: generated), spread evenly through the main block.
    attention_ids = manifest.ids("attention")
    n_att = design.attention_checks if attention_ids else 0
    if n_att:
        chosen = [attention_ids[i % len(attention_ids)] for i in rng.permutation(max(n_att, len(attention_ids)))[:n_att]]
        _insert_attention(main_trials, [("", "", image, "fake") for image in chosen], rng)

    # Practice images, real and generated in turn at random, from images the main block does not use.
    practice = []
    if design.practice_trials:
        spare_reals = [r for r in real_order if r not in set(reals)] or real_order
        spare_fakes = {label: [f for f in manifest.ids("fake", label) if f not in used_fakes] or manifest.ids("fake", label)
                       for label in conditions}
        truths = _balanced_sides(design.practice_trials, rng, TRUTHS)
        for k, truth in enumerate(truths):
            label = conditions[k % n_cond]
            if truth == "real":
                practice.append((label, spare_reals[int(rng.integers(len(spare_reals)))], "", "real"))
            else:
                practice.append((label, "", spare_fakes[label][int(rng.integers(len(spare_fakes[label])))], "fake"))
    return _trials(practice, main_trials)
