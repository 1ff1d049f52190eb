"""The ``python`` recipe kind: the user's training function, any framework; the engine keeps the
models' outputs (logits on every record), not the fitted objects.

How a fitted object's outputs become its logits (docs/own-model.md):

1. A callable without ``predict_proba`` (a torch module, a function): its outputs are the
   logits, (records, classes), as returned. Outputs that look like probabilities
   (``miaudit.data.looks_like_probabilities``) are refused: read as logits they would go
   through a softmax twice, and so are per-class sigmoid values
   (``miaudit.models.looks_like_sigmoids``: every value in [0, 1], rows not summing to 1).
2. Otherwise the raw margins, where the framework has them: XGBoost's
   ``predict(x, output_margin=True)``, LightGBM's ``predict(x, raw_score=True)``, else
   ``decision_function`` (through a scikit-learn ``Pipeline``'s transforms to its last step).
   They are used only when they *are* the model's logits: their softmax (sigmoid for one binary
   margin) must reproduce ``predict_proba`` within ``MARGIN_TOLERANCE`` on every record. An
   SVM's decision values, or one-vs-rest scores, fail this and are not used. Margins keep
   what clipped probabilities lose: a record the model is sure of keeps its distance from the
   boundary instead of a probability of exactly 1.0.
3. Otherwise ``predict_log_proba``, or the log of ``predict_proba``.

Cases 2 and 3 store log-probabilities (a log-softmax of the margins), one column per class of
the data (``classes_`` maps the object's columns); a class the model gives no probability (or
never saw in its training records) gets ``min(LOG_FLOOR, the row's lowest finite value − 1)``,
so it ranks below every class the model does give some.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.special import logsumexp

from miaudit.data import fits_float32, looks_like_probabilities
from miaudit.datasets import Dataset
from miaudit.errors import InputError
from miaudit.models._output_kind import looks_like_sigmoids, sigmoid_problem
from miaudit.models._sklearn import LOG_FLOOR

#: How far softmax(margins) may be from ``predict_proba`` (absolute, per entry) for the margins
#: to count as the model's logits: float32 frameworks agree to about 1e-7; a different score
#: (an SVM's distances, one-vs-rest sigmoids) is off by far more.
MARGIN_TOLERANCE = 1e-4

#: Keyword arguments of ``predict`` that return raw margins (XGBoost, LightGBM).
_MARGIN_KEYWORDS = ("output_margin", "raw_score")


def train_python_model(
    train: Callable[..., Any],
    params: dict[str, Any],
    data: Dataset,
    train_idx: np.ndarray,
    seed: int,
) -> np.ndarray:
    """Fit one model with the user's ``train`` on records ``train_idx``; its (records, classes)
    float32 logits on every record of ``data``."""
    from miaudit.models._user_code import code_name, users_code

    x = np.ascontiguousarray(data.features, dtype=np.float32)
    # The fitted object's predict_proba, decision_function or call are the user's code too.
    with users_code("model.train", code_name(train)):
        fitted = train(x[train_idx], data.label[train_idx], seed, **params)
        return fitted_logits(fitted, x, data.n_classes)


def fitted_logits(fitted: Any, x: np.ndarray, n_classes: int) -> np.ndarray:
    """A fitted object's logits on ``x`` as the module docstring says: (records, classes) float32."""
    if not hasattr(fitted, "predict_proba"):
        if not callable(fitted):
            raise InputError(
                "model.train",
                f"returned a {type(fitted).__name__}, which has no predict_proba and is not callable",
            )
        return _called_logits(fitted, x, n_classes)
    proba = np.asarray(fitted.predict_proba(x), dtype=np.float64)
    if proba.ndim != 2 or proba.shape[0] != len(x):
        raise InputError(
            "model.train",
            f"predict_proba gave shape {proba.shape}, expected ({len(x)}, classes)",
        )
    log_p = _margin_log_proba(fitted, x, proba)
    if log_p is None:
        log_p = _log_proba(fitted, x, proba)
    return _per_class(log_p, _classes(fitted, proba.shape[1], n_classes), n_classes)


def _called_logits(fitted: Callable[..., Any], x: np.ndarray, n_classes: int) -> np.ndarray:
    out = fitted(x)
    if hasattr(out, "detach"):  # a torch tensor
        out = out.detach().cpu().numpy()
    try:
        raw = np.asarray(out, dtype=np.float64)  # float32 and float64 exactly; checked below
    except (TypeError, ValueError):
        raise InputError(
            "model.train", f"the returned callable gave {type(out).__name__} values, not numbers"
        ) from None
    if raw.shape != (len(x), n_classes):
        raise InputError(
            "model.train",
            f"the returned callable gave shape {raw.shape}, expected ({len(x)}, {n_classes}) logits",
        )
    if not np.isfinite(raw).all():
        at = tuple(int(i) for i in np.argwhere(~np.isfinite(raw))[0])
        raise InputError(
            "model.train",
            f"the returned callable gave logit {raw[at]} at index {at}: logits must be finite",
        )
    try:
        fits_float32("model.train", raw)  # logits are kept as float32
    except InputError as exc:
        raise InputError("model.train", f"the returned callable's logits: {exc.problem}") from None
    if looks_like_probabilities(raw):  # read as logits, a softmax would be applied twice
        raise InputError(
            "model.train",
            "the returned callable gives rows that are non-negative and sum to 1: probabilities "
            "(predict_proba, a softmax), which read as logits would go through a softmax twice; "
            "return a callable giving logits (or log-probabilities), or the fitted object itself "
            "(its predict_proba is read as probabilities)",
        )
    if looks_like_sigmoids(raw):
        raise InputError("model.train", sigmoid_problem("the returned callable", raw))
    return raw.astype(np.float32)


def raw_margins(fitted: Any, x: np.ndarray) -> np.ndarray | None:
    """The framework's raw margins of ``fitted`` on ``x``, or None if it has none."""
    from sklearn.pipeline import Pipeline

    if isinstance(fitted, Pipeline) and len(fitted.steps) > 1:
        x, fitted = fitted[:-1].transform(x), fitted[-1]
    predict = getattr(fitted, "predict", None)
    if callable(predict):
        try:
            keywords = inspect.signature(predict).parameters
        except (TypeError, ValueError):
            keywords = {}  # type: ignore[assignment]  # a builtin without a signature
        for kw in _MARGIN_KEYWORDS:
            if kw in keywords:
                return np.asarray(predict(x, **{kw: True}), dtype=np.float64)
    decision = getattr(fitted, "decision_function", None)
    if callable(decision):
        return np.asarray(decision(x), dtype=np.float64)
    return None


def _margin_log_proba(fitted: Any, x: np.ndarray, proba: np.ndarray) -> np.ndarray | None:
    """log-softmax of the raw margins when they reproduce ``proba``; else None."""
    margins = raw_margins(fitted, x)
    if margins is None:
        return None
    if margins.ndim == 1 or (margins.ndim == 2 and margins.shape[1] == 1):
        margins = np.stack([np.zeros(len(x)), margins.reshape(-1)], axis=1)
    if margins.shape != proba.shape or not np.isfinite(margins).all():
        return None
    log_p: np.ndarray = margins - logsumexp(margins, axis=1, keepdims=True)
    if np.abs(np.exp(log_p) - proba).max() > MARGIN_TOLERANCE:
        return None
    return log_p


def _log_proba(fitted: Any, x: np.ndarray, proba: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        if callable(getattr(fitted, "predict_log_proba", None)):
            log_p = np.asarray(fitted.predict_log_proba(x), dtype=np.float64)
            if log_p.shape == proba.shape:
                return log_p
        log_proba: np.ndarray = np.log(proba)
    return log_proba


def _classes(fitted: Any, columns: int, n_classes: int) -> np.ndarray:
    """The data class of each of the object's columns (its ``classes_``, else 0…columns−1)."""
    classes = getattr(fitted, "classes_", None)
    cls = np.arange(columns) if classes is None else np.asarray(classes)
    if (
        cls.shape != (columns,)
        or cls.dtype.kind not in "iu"
        or (cls.size and (cls.min() < 0 or cls.max() >= n_classes))
    ):
        raise InputError(
            "model.train",
            f"the fitted object's classes {cls.tolist()[:10]} are not {columns} of the data's class ids 0…{n_classes - 1}",
        )
    return cls.astype(np.int64)


def _per_class(log_p: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """One column per data class; classes without probability get the row's floor."""
    full = np.full((len(log_p), n_classes), -np.inf)
    full[:, classes] = log_p
    finite = np.isfinite(full)
    if np.isnan(full).any():
        raise InputError("model.train", "the fitted object's probabilities contain NaN")
    row_min = np.where(finite, full, np.inf).min(axis=1, keepdims=True)
    floor = np.minimum(LOG_FLOOR, row_min - 1.0)
    with np.errstate(over="ignore"):  # a log-probability below float32's range: the engine
        return np.where(finite, full, floor).astype(np.float32)  # refuses the unit, naming train
