"""Per-record signals from a model's output (docs/method.md §1), computed stably.

Every function takes ``values`` of shape (..., C), logits or probabilities (``kind``), and
``labels`` of shape (...), and returns float64 arrays of shape (...). Probabilities are turned
into log-probabilities and treated like logits, so one code path serves both. Work is done in
float64 in row chunks, so float32 input of 1,000,000 × 1,000 never needs a float64 copy of the
whole array.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np

Kind = Literal["logits", "probs"]
SIGNALS = ("loss", "confidence", "scaled_logit", "entropy", "modified_entropy", "correctness")
_CHUNK_ELEMENTS = 1 << 22  # ~32 MB of float64 per chunk


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Log-probabilities of logits (..., C), float64: z − max − log1p(Σ_{j ≠ argmax} e^{z_j − max}).

    The log1p form keeps the top class's log-probability exact when it is within 1e-16 of 0
    (p_top rounds to 1.0): the loss of a confidently correct record stays informative instead of
    tying at 0. Log-probabilities map to themselves.

    Examples
    --------
    >>> float(log_softmax(np.array([40.0, 0.0]))[0])
    -4.248354255291589e-18
    """
    z = np.asarray(z, dtype=np.float64)
    top = z.argmax(axis=-1)[..., None]
    shifted = z - np.take_along_axis(z, top, axis=-1)
    rest = np.exp(shifted)
    np.put_along_axis(rest, top, 0.0, axis=-1)
    lp: np.ndarray = shifted - np.log1p(rest.sum(axis=-1, keepdims=True))
    return lp


def softmax(z: np.ndarray) -> np.ndarray:
    """Probabilities of logits (..., C), float64: e^{z − max} normalised per row."""
    x = np.asarray(z, dtype=np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    p: np.ndarray = e / e.sum(axis=-1, keepdims=True)
    return p


def _logsumexp_except(lp: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """log Σ_{j ≠ idx} exp(lp_j) per row: log(1 − p_idx) without cancellation."""
    masked = lp.copy()
    np.put_along_axis(masked, idx[..., None], -np.inf, axis=-1)
    m = masked.max(axis=-1, keepdims=True)
    finite_m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out: np.ndarray = np.log(np.exp(masked - finite_m).sum(axis=-1)) + finite_m[..., 0]
    return out


def _chunk_signals(
    values: np.ndarray, kind: Kind, labels: np.ndarray, which: tuple[str, ...]
) -> dict[str, np.ndarray]:
    if kind == "probs":
        # A saved probability of 0 means "underflowed in the producer's dtype": read it as that
        # dtype's smallest positive number, so φ, loss and Mentr stay finite when p_y = 1.0.
        tiny = np.finfo(values.dtype if values.dtype.kind == "f" else np.float64).smallest_subnormal
        z = np.log(np.maximum(np.asarray(values, dtype=np.float64), float(tiny)))
    else:
        z = np.asarray(values, dtype=np.float64)
    lp = log_softmax(z)
    y = labels[..., None]
    lp_y = np.take_along_axis(lp, y, axis=-1)[..., 0]
    out: dict[str, np.ndarray] = {}
    if "loss" in which:
        out["loss"] = 0.0 - lp_y
    if "confidence" in which:
        out["confidence"] = np.exp(lp_y)
    if "scaled_logit" in which or "modified_entropy" in which:
        lse_other = _logsumexp_except(lp, labels)  # log(1 − p_y)
        if "scaled_logit" in which:
            out["scaled_logit"] = lp_y - lse_other
    p = np.exp(lp)
    if "entropy" in which:
        with np.errstate(invalid="ignore"):
            out["entropy"] = 0.0 - np.where(p > 0, p * lp, 0.0).sum(axis=-1)
    if "modified_entropy" in which:
        # log(1 − p_i): the complement of the row's largest class is summed directly; every
        # other class has p_i ≤ ½, where log1p(−p_i) is accurate (Mächler 2012, log1mexp).
        top = lp.argmax(axis=-1)
        with np.errstate(divide="ignore"):  # the top class's −inf is replaced just below
            log_1m = np.log1p(-p)
        np.put_along_axis(log_1m, top[..., None], _logsumexp_except(lp, top)[..., None], axis=-1)
        term_y = np.where(lp_y < 0, -np.exp(lse_other) * lp_y, 0.0)  # −(1 − p_y) log p_y
        with np.errstate(invalid="ignore"):
            prod = np.where(p > 0, p * log_1m, 0.0)
        np.put_along_axis(prod, y, 0.0, axis=-1)
        out["modified_entropy"] = 0.0 + term_y - prod.sum(axis=-1)
    if "correctness" in which:
        out["correctness"] = (z.argmax(axis=-1) == labels).astype(np.float64)
    return out


def compute_signals(
    values: np.ndarray,
    labels: np.ndarray,
    *,
    kind: Kind = "logits",
    which: tuple[str, ...] = SIGNALS,
) -> dict[str, np.ndarray]:
    """Compute the named signals for every record, in row chunks.

    Args:
        values: (..., C) logits or probabilities.
        labels: (...) integer classes.
        kind: ``"logits"`` or ``"probs"``.
        which: subset of :data:`SIGNALS`.

    Returns:
        ``{name: float64 array of shape labels.shape}``.

    Example:
        >>> compute_signals(np.array([[2.0, 0.0]]), np.array([0]), which=("loss",))["loss"].round(4)
        array([0.1269])
    """
    unknown = set(which) - set(SIGNALS)
    if unknown:
        raise ValueError(f"unknown signals {sorted(unknown)}; known: {SIGNALS}")
    values = np.asarray(values)
    labels = np.asarray(labels, dtype=np.int64)
    lead = labels.shape
    flat_v = values.reshape(-1, values.shape[-1])
    flat_y = np.broadcast_to(labels, lead).reshape(-1)
    n = flat_y.shape[0]
    rows = max(1, _CHUNK_ELEMENTS // max(1, values.shape[-1]))
    out = {name: np.empty(n, dtype=np.float64) for name in which}
    for start in range(0, n, rows):
        part = _chunk_signals(
            flat_v[start : start + rows], kind, flat_y[start : start + rows], tuple(which)
        )
        for name in which:
            out[name][start : start + rows] = part[name]
    return {name: arr.reshape(lead) for name, arr in out.items()}


def _one(name: str) -> Callable[..., np.ndarray]:
    def signal(values: np.ndarray, labels: np.ndarray, *, kind: Kind = "logits") -> np.ndarray:
        return compute_signals(values, labels, kind=kind, which=(name,))[name]

    signal.__name__ = name
    signal.__doc__ = f"The {name.replace('_', ' ')} signal of each record (docs/method.md §1); see :func:`compute_signals`."
    return signal


loss = _one("loss")
confidence = _one("confidence")
scaled_logit = _one("scaled_logit")
entropy = _one("entropy")
modified_entropy = _one("modified_entropy")
correctness = _one("correctness")
