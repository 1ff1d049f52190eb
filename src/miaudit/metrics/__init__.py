"""Membership metrics in ``sklearn.metrics`` style (1 = member, higher score = member)."""

from miaudit.metrics._bootstrap import (
    DEFAULT_FPRS,
    MIN_NEGATIVES_AT_RATE,
    ROC_GRID,
    Evaluation,
    evaluate,
    paired_difference,
)
from miaudit.metrics._epsilon import (
    ImpliedEpsilon,
    clopper_pearson,
    epsilon_lower_bound,
    implied_epsilon,
)
from miaudit.metrics._estimate import Estimate, ppv_key, tpr_key
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
    "MIN_NEGATIVES_AT_RATE",
    "ROC_GRID",
    "Estimate",
    "Evaluation",
    "ImpliedEpsilon",
    "MultiRunAudit",
    "OneRunAudit",
    "balanced_accuracy_best",
    "clopper_pearson",
    "epsilon_lower_bound",
    "evaluate",
    "implied_epsilon",
    "membership_advantage",
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
    "tpr_at_fpr",
    "tpr_key",
]
