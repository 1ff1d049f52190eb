"""Signals that survive an output policy, computed from what the policy exposes (docs/method.md §1).

A threshold attack against a restricted API can only use what the API returns. This module fills
in what a policy hid with a stated estimate, then computes the signals with
:func:`miaudit.signals.compute_signals`, so every attack on signals runs unchanged.

Conventions (each hidden value is replaced by an estimate consistent with what is exposed; the
completed row is renormalised by ``compute_signals``):

============  =======================================================================================
policy        signals and how they are computed
============  =======================================================================================
full          all six, exactly
noise:σ       all six, from the noisy (simplex-projected) scores as if they were the model's
round:d       all six, from the rounded values; a value shown as 0 lies in [0, ½·10⁻ᵈ] and is read
              as the midpoint ¼·10⁻ᵈ (so the loss stays finite and ordered below every shown value)
top-k         all six, from the *maximum-entropy completion*: the unexposed mass 1 − Σ(top-k) is
              spread evenly over the C − k hidden classes (each then stays ≤ the k-th value, as the
              truth does). Confidence, loss and scaled logit are exact when y is in the top-k and
              an estimate (≤ the k-th value) otherwise; entropy and modified entropy are estimates.
label-only    correctness only; robustness signals need more queries (see
              :mod:`miaudit.attacks` label-only attacks through an oracle)
============  =======================================================================================

Correctness is always ``labels_exposed == y``: every policy returns the model's predicted label.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from miaudit.defenses._output_policy import (
    Exposed,
    ExposedScores,
    Full,
    LabelOnly,
    Noise,
    OutputPolicy,
    Round,
    TopK,
    parse_policy,
)
from miaudit.errors import InputError
from miaudit.signals import SIGNALS, compute_signals

LABEL_ONLY_SIGNALS: tuple[str, ...] = ("correctness",)


def computable_signals(policy: OutputPolicy | str) -> tuple[str, ...]:
    """The signals (names from :data:`miaudit.signals.SIGNALS`) an attacker can compute under ``policy``.

    Examples
    --------
    >>> computable_signals("label-only")
    ('correctness',)
    >>> len(computable_signals("top-1"))
    6
    """
    pol = parse_policy(policy, field="policy")
    return LABEL_ONLY_SIGNALS if isinstance(pol, LabelOnly) else SIGNALS


def completed_probabilities(exposed: ExposedScores) -> np.ndarray:
    """The (n, C) positive vectors the signals are computed from (see the module's table)."""
    v = np.asarray(exposed.values, dtype=np.float64)
    match exposed.policy:
        case TopK(k=k) if k < v.shape[1]:
            shown = v > 0
            hidden = (~shown).sum(axis=1, keepdims=True)
            rest = np.clip(1.0 - v.sum(axis=1, keepdims=True), 0.0, None)
            fill = np.where(hidden > 0, rest / np.maximum(hidden, 1), 0.0)
            # A row whose top-k already sums to 1 (up to rounding) leaves nothing to spread: the
            # hidden classes get the smallest positive share instead of an exact 0.
            fill = np.maximum(fill, np.finfo(np.float64).tiny)
            return np.where(shown, v, fill)
        case Round(decimals=d):
            return np.where(v > 0, v, 0.25 * 10.0 ** (-d))
        case Full() | Noise() | TopK():
            return v
    raise InputError(
        "exposed.policy", f"no signals defined for policy {exposed.policy}"
    )  # pragma: no cover


def exposed_signals(
    exposed: Exposed, labels: np.ndarray, *, which: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Compute the signals that ``exposed``'s policy lets an attacker compute.

    Parameters
    ----------
    exposed : ExposedScores or ExposedLabels
        What the API returned for n records.
    labels : ndarray of shape (n,)
        The records' true classes.
    which : sequence of str, optional
        Signals to compute; default every computable one (:func:`computable_signals`).

    Returns
    -------
    dict of str to ndarray of shape (n,)
        Only computable signals; keys are :data:`miaudit.signals.SIGNALS` names.

    Raises
    ------
    InputError
        When ``which`` asks for a signal the policy hides (e.g. loss under label-only).

    Examples
    --------
    >>> from miaudit.defenses import apply_policy
    >>> out = apply_policy("top-1", np.array([[0.7, 0.2, 0.1]]))
    >>> sorted(exposed_signals(out, np.array([2]), which=("confidence", "correctness")).items())
    [('confidence', array([0.15])), ('correctness', array([0.]))]
    """
    y = np.asarray(labels)
    if y.shape != (len(exposed),):
        raise InputError("labels", f"has shape {y.shape}, expected ({len(exposed)},)")
    allowed = computable_signals(exposed.policy)
    wanted = tuple(allowed if which is None else which)
    unknown = [s for s in wanted if s not in SIGNALS]
    if unknown:
        raise InputError("which", f"unknown signals {unknown}; known: {', '.join(SIGNALS)}")
    hidden = [s for s in wanted if s not in allowed]
    if hidden:
        raise InputError(
            "which",
            f"{', '.join(hidden)} cannot be computed under {exposed.policy}; computable: {', '.join(allowed)}",
        )
    y = y.astype(np.int64)
    out: dict[str, np.ndarray] = {}
    if "correctness" in wanted:
        out["correctness"] = (exposed.labels == y).astype(np.float64)
    rest = tuple(s for s in wanted if s != "correctness")
    if rest:
        assert isinstance(exposed, ExposedScores)  # label-only allows correctness alone
        out.update(compute_signals(completed_probabilities(exposed), y, kind="probs", which=rest))
    return {name: out[name] for name in wanted}
