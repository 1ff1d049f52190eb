"""Turn a table (pandas DataFrame) into a ``Dataset``: numeric, one-hot and label columns."""

from __future__ import annotations

import numpy as np
import pandas as pd

from miaudit.datasets._dataset import Dataset
from miaudit.errors import InputError


def from_frame(
    frame: pd.DataFrame,
    *,
    name: str,
    label: str,
    record_id: np.ndarray,
    field: str,
    numeric: list[str] | None = None,
    categorical: list[str] | None = None,
) -> Dataset:
    """Encode ``frame``; columns are numeric or categorical by dtype unless given explicitly.

    Labels become 0..C-1 in sorted order of their values. Missing values are refused (naming
    the column) rather than imputed: imputing with pool statistics would leak non-members.
    """
    if label not in frame.columns:
        raise InputError(
            f"{field}.label",
            f"no column {label!r}; columns are {', '.join(map(str, frame.columns))}",
        )
    feats = [c for c in frame.columns if c != label]
    if numeric is None or categorical is None:
        numeric = [
            c
            for c in feats
            if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
        ]
        categorical = [c for c in feats if c not in numeric]
    if not numeric and not categorical:
        raise InputError(field, "no feature columns besides the label")
    _refuse_missing(frame, [*numeric, *categorical, label], field)
    y_raw = frame[label].to_numpy()
    try:
        classes, y = np.unique(y_raw, return_inverse=True)
    except TypeError:  # values of types that do not compare, e.g. numbers and text
        kinds = sorted({type(v).__name__ for v in y_raw})
        raise InputError(
            f"{field}.label",
            f"column {label!r} mixes values of types {', '.join(kinds)}; give one type of label",
        ) from None
    if len(classes) < 2:
        raise InputError(f"{field}.label", f"column {label!r} has a single class {classes[0]!r}")
    x, names = _encode(frame, numeric, categorical)
    _refuse_out_of_range(x[:, : len(numeric)], numeric, field)
    n_num = len(numeric)
    return Dataset(
        name=name,
        features=x.astype(np.float32),
        label=y.astype(np.int64),
        record_id=record_id,
        n_classes=len(classes),
        numeric=np.arange(n_num, dtype=np.int64),
        onehot=np.arange(n_num, x.shape[1], dtype=np.int64),
        feature_names=tuple(names),
    )


def _refuse_missing(frame: pd.DataFrame, columns: list[str], field: str) -> None:
    for col in columns:
        missing = frame[col].isna().to_numpy()
        if missing.any():
            raise InputError(
                f"{field}.{col}",
                f"missing value at row {int(np.argmax(missing))}; fill or drop it before auditing",
            )


def _refuse_out_of_range(x: np.ndarray, numeric: list[str], field: str) -> None:
    """The numeric columns (float64) must hold finite values that fit float32, the features'
    dtype: the first value that does not is refused, naming its column and row."""
    from miaudit.data import fits_float32

    bad = ~np.isfinite(x)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise InputError(
            f"{field}.{numeric[col]}", f"value {x[row, col]} at row {row} is not finite"
        )
    for j, col_name in enumerate(numeric):
        fits_float32(f"{field}.{col_name}", x[:, j], where="row")


def _encode(
    frame: pd.DataFrame, numeric: list[str], categorical: list[str]
) -> tuple[np.ndarray, list[str]]:
    """(float64 features: the numeric columns, then one one-hot block per categorical column
    in sorted order of its values; their names)."""
    blocks = [frame[numeric].to_numpy(dtype=np.float64)] if numeric else []
    names = [str(c) for c in numeric]
    for col in categorical:
        values = frame[col].astype(str).to_numpy()
        vocab, codes = np.unique(values, return_inverse=True)
        blocks.append(np.eye(len(vocab), dtype=np.float64)[codes])
        names += [f"{col}={v}" for v in vocab]
    return np.concatenate(blocks, axis=1), names
