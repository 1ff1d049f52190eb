"""Membership-inference attacks: pure functions from signal arrays to scores (higher = member)."""

from miaudit.attacks._class_dependent import ClassDependentResult, class_dependent_scores
from miaudit.attacks._label_only import (
    QUERY_ATTACKS,
    ImageAugment,
    QueryAttack,
    QueryAttackResult,
    augmentation_robustness_attack,
    boundary_distance_attack,
    exposed_threshold_scores,
    gap_query_attack,
    noise_robustness_attack,
    recipe_augmentations,
    threshold_attacks_under,
)
from miaudit.attacks._lira import lira_offline, lira_online
from miaudit.attacks._oracle import CountingOracle, LocalOracle, Oracle, QueryCounter
from miaudit.attacks._reference import (
    LiraAttack,
    MlLeaksAttack,
    PairedScores,
    ReferenceAttack,
    RmiaAttack,
    ShadowAttack,
    complementary_pairs,
    cross_fitted_rmia_a,
    leave_one_model_out,
    leave_one_model_out_each,
    paired_reference_sets,
    score_target,
)
from miaudit.attacks._rmia import DEFAULT_A as RMIA_DEFAULT_A
from miaudit.attacks._rmia import (
    calibrate_rmia_a,
    rmia_offline,
    rmia_online,
    rmia_probability,
    rmia_ratio,
    rmia_scores_from_ratios,
)
from miaudit.attacks._shadow import ml_leaks, shadow_attack
from miaudit.attacks._threshold import (
    SPECS as THRESHOLD_SPECS,
)
from miaudit.attacks._threshold import (
    THRESHOLD_ATTACKS,
    ThresholdAttack,
    gap_attack,
    loss_attack,
    threshold_score,
)

#: Attacks on a single model's outputs: the five thresholds and their class-dependent forms.
OUTPUT_ATTACKS: tuple[str, ...] = THRESHOLD_ATTACKS + tuple(
    f"{a}_by_class" for a in THRESHOLD_ATTACKS
)

__all__ = [
    "OUTPUT_ATTACKS",
    "QUERY_ATTACKS",
    "RMIA_DEFAULT_A",
    "THRESHOLD_ATTACKS",
    "THRESHOLD_SPECS",
    "ClassDependentResult",
    "CountingOracle",
    "ImageAugment",
    "LiraAttack",
    "LocalOracle",
    "MlLeaksAttack",
    "Oracle",
    "PairedScores",
    "QueryAttack",
    "QueryAttackResult",
    "QueryCounter",
    "ReferenceAttack",
    "RmiaAttack",
    "ShadowAttack",
    "ThresholdAttack",
    "augmentation_robustness_attack",
    "boundary_distance_attack",
    "calibrate_rmia_a",
    "class_dependent_scores",
    "complementary_pairs",
    "cross_fitted_rmia_a",
    "exposed_threshold_scores",
    "gap_attack",
    "gap_query_attack",
    "leave_one_model_out",
    "leave_one_model_out_each",
    "lira_offline",
    "lira_online",
    "loss_attack",
    "ml_leaks",
    "noise_robustness_attack",
    "paired_reference_sets",
    "recipe_augmentations",
    "rmia_offline",
    "rmia_online",
    "rmia_probability",
    "rmia_ratio",
    "rmia_scores_from_ratios",
    "score_target",
    "shadow_attack",
    "threshold_attacks_under",
    "threshold_score",
]
