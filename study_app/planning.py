"""Trial planning: which pairs a participant sees, on which side the real image is, in what order.

Deterministic: a plan is a pure function of (config, manifest, participant token, participant
number), so it can be rebuilt and checked; the app still stores each plan with the participant so
that editing the config mid-study cannot change a running participant's trials.

Balance:
- across participants: each set of images is put in a study-seeded order once, and participant
  number k takes the next block of it (a rotation), so every image is shown equally often (±1)
  and no image repeats within a participant while the set is large enough;
- within a participant: in each condition the real image is on the left in half the trials
  (the odd one out at random) and the order is shuffled with a per-participant seed.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np

from .config import StudyConfig
from .manifest import Manifest

SIDES = ("left", "right")
KINDS = ("practice", "main", "attention")


@dataclass(frozen=True)
class Trial:
    index: int          # position in the participant's sequence, from 0 (practice trials first)
    kind: str           # "practice", "main" or "attention"
    condition: str      # condition label; "" for attention checks
    real_image: str     # manifest ids
    fake_image: str
    real_side: str      # "left" or "right"

    @property
    def left_image(self) -> str:
        return self.real_image if self.real_side == "left" else self.fake_image

    @property
    def right_image(self) -> str:
        return self.fake_image if self.real_side == "left" else self.real_image

    def is_correct(self, chosen_side: str) -> bool:
        return chosen_side == self.real_side

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


def _balanced_sides(n: int, rng: np.random.Generator) -> list[str]:
    sides = ["left", "right"] * (n // 2)
    if n % 2:
        sides.append(SIDES[int(rng.integers(2))])
    return [sides[i] for i in rng.permutation(n)]


def assigned_conditions(config: StudyConfig, participant_seq: int) -> list[str]:
    """Conditions shown to participant number `participant_seq` (0-based arrival order)."""
    labels = config.condition_labels()
    if config.design.assignment == "between":
        return [labels[participant_seq % len(labels)]]
    return labels


def plan_trials(config: StudyConfig, manifest: Manifest, token: str, participant_seq: int) -> list[Trial]:
    """The full trial sequence for one participant: practice, then main trials with attention checks."""
    design = config.design
    rng = participant_rng(design.seed, token)
    conditions = assigned_conditions(config, participant_seq)
    # Rotation index among the participants who share this participant's conditions.
    rotation = participant_seq // len(config.conditions) if design.assignment == "between" else participant_seq
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

    # Attention checks: a real image against its scrambled copy, spread evenly through the main block.
    attention_ids = manifest.ids("attention")
    n_att = design.attention_checks if attention_ids else 0
    if n_att:
        chosen = [attention_ids[i % len(attention_ids)] for i in rng.permutation(max(n_att, len(attention_ids)))[:n_att]]
        att_sides = _balanced_sides(n_att, rng)
        n_main = len(main_trials)
        # Insert from the back so earlier insertion points stay valid; never before the first main pair.
        for k in reversed(range(n_att)):
            lo = k * n_main // n_att + 1
            hi = max(lo, (k + 1) * n_main // n_att)
            pos = int(rng.integers(lo, hi + 1))
            img = manifest.get(chosen[k])
            main_trials.insert(pos, ("", img.derived_from, img.id, att_sides[k]))

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

    kinds = ["practice"] * len(practice) + ["attention" if cond == "" else "main" for cond, *_ in main_trials]
    return [Trial(index=i, kind=kind, condition=cond, real_image=real, fake_image=fake, real_side=side)
            for i, (kind, (cond, real, fake, side)) in enumerate(zip(kinds, practice + main_trials))]
