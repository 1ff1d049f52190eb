"""Membership-inference attacks: pure functions from signal arrays to scores (higher = member)."""

from miaudit.attacks._builtin import register_builtin_attacks
from miaudit.attacks._class_dependent import ClassDependentResult, class_dependent_scores
from miaudit.attacks._combined import CombinedAttack
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
from miaudit.attacks._partners import complementary_partners
from miaudit.attacks._qmia import QmiaModel, QmiaSettings, fit_qmia, qmia_scores
from miaudit.attacks._qmia_net import ImageRegressor, ImageRegressorSettings
from miaudit.attacks._reference import (
    LiraAttack,
    MlLeaksAttack,
    PairedScores,
    PairScorer,
    ReferenceAttack,
    RmiaAttack,
    ShadowAttack,
    check_reference_attack,
    complementary_pairs,
    cross_fitted_rmia_a,
    leave_one_model_out,
    leave_one_model_out_each,
    paired_reference_sets,
    reads_balanced_references,
    score_target,
)
from miaudit.attacks._registry import (
    BASELINE_ATTACK,
    AttackScores,
    AttackSpec,
    DecisionRule,
    Family,
    Need,
    OutputSignals,
    PopulationSignals,
    QueryCost,
    QueryInputs,
    ReferenceSettings,
    SignalKind,
    attack_spec,
    fit_outputs,
    output_attacks_under,
    reference_attack,
    register_attack,
    registered_attacks,
    score_outputs,
    score_queries,
    score_sequences,
    unregister_attack,
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
from miaudit.attacks._shrinkage import lira_shrunk_offline, lira_shrunk_online
from miaudit.attacks._text import (
    MIN_K,
    SequenceInputs,
    lowest_fraction_mean,
    mean_log_prob,
    standardised_log_prob,
)
from miaudit.attacks._text_blind import (
    BLIND_CITATION,
    BLIND_DESCRIPTION,
    BLIND_FOLDS,
    BLIND_MAX_CHARS,
    BLIND_NAME,
    BLIND_PERMUTATIONS,
    BlindBaseline,
    blind_baseline,
    blind_baseline_scores,
    blind_texts,
    shifted_split_note,
)
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

register_builtin_attacks()

#: miaudit's own attacks on a single model's outputs (the five thresholds and their
#: class-dependent forms); ``registered_attacks(signal_kind=SignalKind.MODEL_OUTPUTS)`` also
#: lists attacks registered later.
OUTPUT_ATTACKS: tuple[str, ...] = tuple(
    s.name
    for s in registered_attacks(signal_kind=SignalKind.MODEL_OUTPUTS)
    if not s.needs & {Need.POPULATION, Need.FEATURES}  # QMIA: only where a population is given
)

__all__ = [
    "BASELINE_ATTACK",
    "BLIND_CITATION",
    "BLIND_DESCRIPTION",
    "BLIND_FOLDS",
    "BLIND_MAX_CHARS",
    "BLIND_NAME",
    "BLIND_PERMUTATIONS",
    "MIN_K",
    "OUTPUT_ATTACKS",
    "QUERY_ATTACKS",
    "RMIA_DEFAULT_A",
    "THRESHOLD_ATTACKS",
    "THRESHOLD_SPECS",
    "AttackScores",
    "AttackSpec",
    "BlindBaseline",
    "ClassDependentResult",
    "CombinedAttack",
    "CountingOracle",
    "DecisionRule",
    "Family",
    "ImageAugment",
    "ImageRegressor",
    "ImageRegressorSettings",
    "LiraAttack",
    "LocalOracle",
    "MlLeaksAttack",
    "Need",
    "Oracle",
    "OutputSignals",
    "PairScorer",
    "PairedScores",
    "PopulationSignals",
    "QmiaModel",
    "QmiaSettings",
    "QueryAttack",
    "QueryAttackResult",
    "QueryCost",
    "QueryCounter",
    "QueryInputs",
    "ReferenceAttack",
    "ReferenceSettings",
    "RmiaAttack",
    "SequenceInputs",
    "ShadowAttack",
    "SignalKind",
    "ThresholdAttack",
    "attack_spec",
    "augmentation_robustness_attack",
    "blind_baseline",
    "blind_baseline_scores",
    "blind_texts",
    "boundary_distance_attack",
    "calibrate_rmia_a",
    "check_reference_attack",
    "class_dependent_scores",
    "complementary_pairs",
    "complementary_partners",
    "cross_fitted_rmia_a",
    "exposed_threshold_scores",
    "fit_outputs",
    "fit_qmia",
    "gap_attack",
    "gap_query_attack",
    "leave_one_model_out",
    "leave_one_model_out_each",
    "lira_offline",
    "lira_online",
    "lira_shrunk_offline",
    "lira_shrunk_online",
    "loss_attack",
    "lowest_fraction_mean",
    "mean_log_prob",
    "ml_leaks",
    "noise_robustness_attack",
    "output_attacks_under",
    "paired_reference_sets",
    "qmia_scores",
    "reads_balanced_references",
    "recipe_augmentations",
    "reference_attack",
    "register_attack",
    "registered_attacks",
    "rmia_offline",
    "rmia_online",
    "rmia_probability",
    "rmia_ratio",
    "rmia_scores_from_ratios",
    "score_outputs",
    "score_queries",
    "score_sequences",
    "score_target",
    "shadow_attack",
    "shifted_split_note",
    "standardised_log_prob",
    "threshold_attacks_under",
    "threshold_score",
    "unregister_attack",
]
