"""Serving-time defenses: output policies and the signals that survive them (docs/method.md §7).

Training-time defenses (weight decay, dropout, early stopping, label smoothing, DP-SGD) are recipe
options of :mod:`miaudit.models`; this package holds what a prediction API applies to a model's
output, as pure numpy functions shared by the audit and the prediction service, and the
deduplication of a language model's fine-tuning set (:func:`deduplicate`).
"""

from miaudit.defenses._dedup import DedupResult, deduplicate, minhash_signatures, normalise
from miaudit.defenses._exposed_signals import (
    LABEL_ONLY_SIGNALS,
    completed_probabilities,
    computable_signals,
    exposed_signals,
)
from miaudit.defenses._output_policy import (
    GRAMMAR,
    Exposed,
    ExposedLabels,
    ExposedScores,
    Full,
    LabelOnly,
    Noise,
    OutputPolicy,
    PolicyKind,
    Round,
    TopK,
    apply_policy,
    concat_exposed,
    full,
    label_only,
    noise,
    parse_policy,
    predicted_labels,
    project_to_simplex,
    round_probs,
    top_k,
)

__all__ = [
    "GRAMMAR",
    "LABEL_ONLY_SIGNALS",
    "DedupResult",
    "Exposed",
    "ExposedLabels",
    "ExposedScores",
    "Full",
    "LabelOnly",
    "Noise",
    "OutputPolicy",
    "PolicyKind",
    "Round",
    "TopK",
    "apply_policy",
    "completed_probabilities",
    "computable_signals",
    "concat_exposed",
    "deduplicate",
    "exposed_signals",
    "full",
    "label_only",
    "minhash_signatures",
    "noise",
    "normalise",
    "parse_policy",
    "predicted_labels",
    "project_to_simplex",
    "round_probs",
    "top_k",
]
