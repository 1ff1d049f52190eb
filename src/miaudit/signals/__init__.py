"""Signals: per-record quantities computed from a model's output (docs/method.md §1)."""

from miaudit.signals._compute import (
    SIGNALS,
    compute_signals,
    confidence,
    correctness,
    entropy,
    log_softmax,
    loss,
    modified_entropy,
    scaled_logit,
    softmax,
)

__all__ = [
    "SIGNALS",
    "compute_signals",
    "confidence",
    "correctness",
    "entropy",
    "log_softmax",
    "loss",
    "modified_entropy",
    "scaled_logit",
    "softmax",
]
