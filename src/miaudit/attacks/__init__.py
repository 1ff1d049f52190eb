"""Membership-inference attacks: pure functions from signal arrays to scores (higher = member)."""

from miaudit.attacks._class_dependent import ClassDependentResult, class_dependent_scores
from miaudit.attacks._threshold import (
    SPECS as THRESHOLD_SPECS,
    THRESHOLD_ATTACKS,
    ThresholdAttack,
    gap_attack,
    loss_attack,
    threshold_score,
)

#: Attacks on a single model's outputs: the five thresholds and their class-dependent forms.
OUTPUT_ATTACKS: tuple[str, ...] = THRESHOLD_ATTACKS + tuple(f"{a}_by_class" for a in THRESHOLD_ATTACKS)

__all__ = [
    "OUTPUT_ATTACKS", "THRESHOLD_ATTACKS", "THRESHOLD_SPECS", "ClassDependentResult", "ThresholdAttack",
    "class_dependent_scores", "gap_attack", "loss_attack", "threshold_score",
]
