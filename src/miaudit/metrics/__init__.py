"""Membership metrics in ``sklearn.metrics`` style (1 = member, higher score = member)."""

from miaudit.metrics._bootstrap import DEFAULT_FPRS, ROC_GRID, Evaluation, evaluate, paired_difference
from miaudit.metrics._epsilon import ImpliedEpsilon, clopper_pearson, epsilon_lower_bound, implied_epsilon
from miaudit.metrics._estimate import Estimate, ppv_key, tpr_key
from miaudit.metrics._roc import (
    balanced_accuracy_best,
    membership_advantage,
    ppv_at_fpr,
    roc_auc_score,
    roc_curve,
    tpr_at_fpr,
)

__all__ = [
    "DEFAULT_FPRS", "ROC_GRID", "Estimate", "Evaluation", "ImpliedEpsilon", "balanced_accuracy_best",
    "clopper_pearson", "epsilon_lower_bound", "evaluate", "implied_epsilon", "membership_advantage",
    "paired_difference", "ppv_at_fpr", "ppv_key", "roc_auc_score", "roc_curve", "tpr_at_fpr", "tpr_key",
]
