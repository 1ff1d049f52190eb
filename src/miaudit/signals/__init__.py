"""Signals: per-record quantities computed from a model's output (docs/method.md §1), and sequence
signals of causal language models on texts (docs/method.md §13)."""

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
from miaudit.signals._sequence import (
    SEQUENCE_SCHEMA,
    ModelTokens,
    Role,
    SequenceStore,
    load_sequence_signals,
    sequence_signals,
    write_sequence_signals,
    zlib_bytes,
)

__all__ = [
    "SEQUENCE_SCHEMA",
    "SIGNALS",
    "ModelTokens",
    "Role",
    "SequenceStore",
    "compute_signals",
    "confidence",
    "correctness",
    "entropy",
    "load_sequence_signals",
    "log_softmax",
    "loss",
    "modified_entropy",
    "scaled_logit",
    "sequence_signals",
    "softmax",
    "write_sequence_signals",
    "zlib_bytes",
]
