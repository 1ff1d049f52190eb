"""Outputs declared as logits that are per-class sigmoid probabilities (a multi-label or
one-vs-rest head, a torch module ending in ``nn.Sigmoid``): read as logits they go through a
softmax, and every signal is computed from the wrong numbers without a word (red team).

Exact softmax rows are refused by :func:`miaudit.data.looks_like_probabilities`; sigmoid rows
do not sum to 1, so that rule lets them through.
"""

from __future__ import annotations

import numpy as np

from miaudit.data import looks_like_probabilities

#: Fewest rows on which logits with every value in [0, 1] are refused as sigmoid outputs. A
#: trained model's logits leave [0, 1] on some class of almost every row, but a handful of rows
#: can stay inside by chance (an untrained network's logits sit near its small biases, as on
#: the ONNX load's trial batch of two zero records), so fewer rows are not evidence and pass.
MIN_SIGMOID_ROWS = 20

#: How to fix sigmoid outputs, in every refusal.
SIGMOID_FIX = (
    "give the scores before the sigmoid (export the module without its final nn.Sigmoid, or "
    "pass log(p / (1 − p))): they are the per-class logits"
)


def looks_like_sigmoids(values: np.ndarray) -> bool:
    """Whether ``values`` declared as logits (classes on the last axis) are per-class sigmoid
    probabilities: at least :data:`MIN_SIGMOID_ROWS` rows, every value in [0, 1], some row not
    constant, and not softmax rows (those are refused as probabilities, with their own fix). A
    constant row has the same softmax whatever its value, so outputs of constant rows (all
    zeros) are read right either way and pass.

    >>> p = np.tile([0.7, 0.2, 0.4], (20, 1))
    >>> looks_like_sigmoids(p), looks_like_sigmoids(p[:19]), looks_like_sigmoids(p - 1)
    (True, False, False)
    >>> looks_like_sigmoids(np.zeros((20, 3)))
    False
    """
    arr = np.asarray(values)
    if arr.ndim < 2 or arr.size == 0 or arr.size // arr.shape[-1] < MIN_SIGMOID_ROWS:
        return False
    with np.errstate(invalid="ignore"):  # NaN compares False: refused as non-finite elsewhere
        inside = bool(arr.min() >= 0) and bool(arr.max() <= 1)
    if not inside or not bool((np.ptp(arr, axis=-1) > 0).any()):
        return False
    return not looks_like_probabilities(arr)


def sigmoid_problem(where: str, values: np.ndarray) -> str:
    """The one-line refusal of ``values`` (from ``where``) that :func:`looks_like_sigmoids`."""
    rows = np.asarray(values).size // np.asarray(values).shape[-1]
    return (
        f"{where} gives values all in [0, 1] on {rows:,} records, in rows that do not sum to 1: "
        "these look like per-class sigmoid probabilities (a multi-label or one-vs-rest head, "
        "nn.Sigmoid), not logits, and read as logits they would go through a softmax; "
        + SIGMOID_FIX
    )
