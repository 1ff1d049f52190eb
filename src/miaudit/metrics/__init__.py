"""Membership metrics in ``sklearn.metrics`` style (1 = member, higher score = member)."""

from miaudit.metrics._bootstrap import (
    DEFAULT_FPRS,
    MIN_NEGATIVES_AT_RATE,
    ROC_GRID,
    Evaluation,
    evaluate,
    paired_difference,
)
from miaudit.metrics._dp_power import (
    GUESS_GRID,
    choose_guesses,
    dirac_canary_llr,
    grid_designs,
    ideal_scores,
    min_detectable_epsilon,
    simulated_ideal_bounds,
)
from miaudit.metrics._epsilon import (
    ImpliedEpsilon,
    clopper_pearson,
    epsilon_lower_bound,
    implied_epsilon,
)
from miaudit.metrics._estimate import Estimate, ppv_key, tpr_key
from miaudit.metrics._fdp import GDP_LABEL, GaussianDpEstimate, gaussian_dp_estimate
from miaudit.metrics._one_run import (
    MultiRunAudit,
    OneRunAudit,
    multi_run_audit,
    one_run_audit,
    one_run_audit_grid,
    one_run_epsilon_lower_bound,
    one_run_max_certifiable_epsilon,
    one_run_p_value,
    pooled_one_run_audit,
)
from miaudit.metrics._roc import (
    balanced_accuracy_best,
    membership_advantage,
    ppv_at_fpr,
    roc_auc_score,
    roc_curve,
    tpr_at_fpr,
)

__all__ = [
    "DEFAULT_FPRS",
    "GDP_LABEL",
    "GUESS_GRID",
    "MIN_NEGATIVES_AT_RATE",
    "ROC_GRID",
    "Estimate",
    "Evaluation",
    "GaussianDpEstimate",
    "ImpliedEpsilon",
    "MultiRunAudit",
    "OneRunAudit",
    "balanced_accuracy_best",
    "choose_guesses",
    "clopper_pearson",
    "dirac_canary_llr",
    "epsilon_lower_bound",
    "evaluate",
    "gaussian_dp_estimate",
    "grid_designs",
    "ideal_scores",
    "implied_epsilon",
    "membership_advantage",
    "min_detectable_epsilon",
    "multi_run_audit",
    "one_run_audit",
    "one_run_audit_grid",
    "one_run_epsilon_lower_bound",
    "one_run_max_certifiable_epsilon",
    "one_run_p_value",
    "paired_difference",
    "pooled_one_run_audit",
    "ppv_at_fpr",
    "ppv_key",
    "roc_auc_score",
    "roc_curve",
    "simulated_ideal_bounds",
    "tpr_at_fpr",
    "tpr_key",
]
