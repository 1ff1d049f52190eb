"""Checks shared by every input format; each raises InputError naming the field."""

from __future__ import annotations

import numpy as np

from miaudit.data._tables import is_mapped, record_chunks
from miaudit.errors import InputError

#: A row of probabilities may differ from a sum of 1 by at most this much (absolute): the
#: rounding of probabilities given to 2 decimals, each value off by at most 0.005, for up to 10
#: classes (the outputs of an API that rounds, and float32 softmax of 1000 classes written with
#: 6 significant digits, are well within it). A row within it is normalised where it is read
#: (the signals take a log-softmax of log p, which divides by the row's sum).
PROB_SUM_TOL = 0.05
#: Outputs declared as logits are probabilities when at least this share of their rows are
#: (non-negative, summing to 1 within :data:`PROB_SUM_TOL`): one odd row, or rounding that puts
#: a few rows just outside, must not switch the check off (red team, own model F5).
PROB_ROWS_SHARE = 0.99
#: The largest finite float32 (about 3.4e38): logits and features are kept as float32.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def require(arrays: dict[str, np.ndarray], name: str) -> np.ndarray:
    if name not in arrays:
        raise InputError(name, "missing column or array")
    return arrays[name]


def finite_float(name: str, values: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    if np.iscomplexobj(values):  # a cast would silently drop the imaginary part
        raise InputError(name, "values are complex numbers; give real numbers")
    kind = np.asarray(values).dtype.kind
    if kind not in "biuf":  # numpy would turn text such as "1.5", or dates, into numbers
        raise InputError(name, f"values are not numeric (dtype {np.asarray(values).dtype})")
    try:
        with np.errstate(over="ignore"):  # a value beyond the target's range: refused below
            out: np.ndarray = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError):
        raise InputError(name, "values are not numeric") from None
    if is_mapped(out) and out.ndim >= 2:  # larger than memory, maybe: chunk over the records axis
        for rows in record_chunks(out, axis=1):
            part = out[:, rows]
            if not np.isfinite(part).all():
                bad = np.argwhere(~np.isfinite(part))[0]
                bad[1] += rows.start
                _refuse_non_finite(name, values, tuple(int(i) for i in bad))
        return out
    if not np.isfinite(out).all():
        bad = np.argwhere(~np.isfinite(out))[0]
        _refuse_non_finite(name, values, tuple(int(i) for i in bad))
    return out


def _refuse_non_finite(name: str, values: np.ndarray, index: tuple[int, ...]) -> None:
    """The refusal for the first non-finite value after the cast: NaN or inf in the input, or
    a finite value the cast to float32 turned into inf (it names the value and the range)."""
    source = np.asarray(values)[index]
    if np.isfinite(source):
        raise InputError(
            name,
            f"value {float(source):.6g} at index {index} does not fit float32 (|x| ≤ {FLOAT32_MAX:.3g})",
        )
    raise InputError(name, f"contains NaN or inf (first at index {index})")


def fits_float32(name: str, values: np.ndarray, where: str = "index") -> None:
    """Refuse finite ``values`` that a cast to float32 would turn into inf, naming the first
    one (its index, or its row when ``where="row"`` and ``values`` is (rows, columns))."""
    arr = np.asarray(values)
    if arr.dtype.kind != "f" or arr.dtype.itemsize <= 4 or arr.size == 0:
        return
    over = np.abs(arr) > FLOAT32_MAX  # NaN compares False: non-finite values are not checked
    with np.errstate(over="ignore"):
        over &= np.isinf(arr.astype(np.float32))  # just above the maximum rounds down to it
    if over.any():
        at = tuple(int(i) for i in np.argwhere(over)[0])
        place = f"row {at[0]}" if where == "row" else f"index {at}"
        raise InputError(
            name,
            f"value {float(arr[at]):.6g} at {place} does not fit float32 (|x| ≤ {FLOAT32_MAX:.3g})",
        )


def check_probabilities(name: str, probs: np.ndarray, fix: str = "pass them as logits") -> None:
    """Every row of ``probs`` must be ≥ 0 and sum to 1 within :data:`PROB_SUM_TOL` (rounded
    probabilities pass, and are read normalised); a negative value is refused as what it most
    likely is, log-probabilities or logits (``fix`` says what to do instead). The same rule
    makes logits "look like probabilities" (:func:`looks_like_probabilities`)."""
    if probs.size and probs.min() < 0:
        at = tuple(int(i) for i in np.argwhere(probs < 0)[0])
        row, value = at[0], float(probs[at])
        looks = "log-probabilities" if probs.max() <= 0 else "logits (or log-probabilities)"
        raise InputError(
            name,
            f"negative value {value:.6g} in row {row}: probabilities are never negative; "
            f"these look like {looks}: {fix}",
        )
    sums = probs.sum(axis=-1)
    off = np.abs(sums - 1.0) > PROB_SUM_TOL
    if off.any():
        where = np.unravel_index(int(np.argmax(off)), off.shape)
        raise InputError(
            name,
            f"row {tuple(int(i) for i in where)} sums to {float(sums[where]):.6g}, not 1 (tolerance {PROB_SUM_TOL})",
        )


def probability_rows(values: np.ndarray) -> tuple[int, int]:
    """(rows of ``values`` that are probabilities, rows): classes on the last axis; a row is
    probabilities when it is non-negative and sums to 1 within :data:`PROB_SUM_TOL`, the rule
    :func:`check_probabilities` holds every row of declared probabilities to (a row with NaN is
    not). Row by row, without a temporary the size of ``values``."""
    arr = np.asarray(values)
    if arr.ndim < 2 or arr.size == 0:
        return 0, 0
    with np.errstate(invalid="ignore"):
        ok = arr.min(axis=-1) >= 0
        ok &= np.abs(arr.sum(axis=-1, dtype=np.float64) - 1.0) <= PROB_SUM_TOL
    return int(np.count_nonzero(ok)), int(ok.size)


def looks_like_probabilities(values: np.ndarray) -> bool:
    """Whether ``values`` declared as logits (classes on the last axis) are probabilities: at
    least :data:`PROB_ROWS_SHARE` of their rows are, by the rule declared probabilities are
    accepted by (:func:`probability_rows`), so that data refused as probabilities for rounding
    is never read as logits either. False for an array with no rows. Real logits never land on
    that simplex row after row: a softmax is shift-invariant, and nothing pins their sum to 1."""
    prob, rows = probability_rows(values)
    return rows > 0 and prob >= PROB_ROWS_SHARE * rows


def refuse_probabilities(
    name: str, logits: np.ndarray, fix: str = "pass them as probs (kind='probs')"
) -> None:
    """Refuse ``logits`` that :func:`looks_like_probabilities`: read as logits they would go
    through a softmax a second time (flatter, wrong scores, and no error)."""
    if looks_like_probabilities(logits):
        prob, rows = probability_rows(logits)
        which = (
            "every row is non-negative and sums to 1"
            if prob == rows
            else f"{prob} of {rows} rows are non-negative and sum to 1"
        )
        raise InputError(
            name,
            f"{which}: these look like probabilities, "
            f"which read as logits would go through a softmax twice; {fix}",
        )


def integer_labels(name: str, values: np.ndarray, n_classes: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise InputError(name, "contains NaN or inf")
        if (arr != np.round(arr)).any():
            raise InputError(name, "labels must be integers")
    elif arr.dtype.kind not in "iub":
        raise InputError(name, f"labels must be integers, got {arr.dtype}")
    labels = arr.astype(np.int64)
    bad = (labels < 0) | (labels >= n_classes)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(name, f"label {int(labels[i])} at row {i} is outside [0, {n_classes})")
    return labels


def binary(name: str, values: np.ndarray, *, need_both: bool) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind == "b":
        out = arr.astype(np.int8)
    else:
        try:
            f = np.asarray(arr, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(name, "values must be 0 or 1") from None
        if not np.isin(f, (0.0, 1.0)).all():
            raise InputError(name, "values must be 0 or 1")
        out = f.astype(np.int8)
    if need_both and (out.min() == out.max()):
        which = "members" if out[0] == 1 else "non-members"
        raise InputError(
            name,
            f"only one membership class present (all {which}); need both members and non-members",
        )
    return out


def one_dimensional(name: str, values: object) -> np.ndarray:
    """``values`` as a 1-D array (one value per record), else a one-line refusal."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise InputError(name, f"must be one value per record (1-D), got shape {arr.shape}")
    return arr


def same_length(lengths: dict[str, int]) -> int:
    values = set(lengths.values())
    if len(values) > 1:
        desc = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise InputError("input", f"columns have differing lengths ({desc})")
    (n,) = values
    if n == 0:
        raise InputError("input", "no records (empty input)")
    return n


_NOT_UTF8 = (
    "record ids given as bytes must be UTF-8 text (binary ids such as 16-byte UUIDs: store "
    "their text form, e.g. str(uuid.UUID(bytes=b)))"
)


def _as_text(name: str, ids: np.ndarray) -> np.ndarray:
    if ids.dtype.kind == "S":
        try:
            return np.char.decode(ids, "utf-8")
        except UnicodeDecodeError:
            raise InputError(name, _NOT_UTF8) from None
    import pandas as pd

    if ids.dtype.kind == "O" and bool(pd.isna(ids).any()):  # None, NaN, pandas.NA
        raise InputError(name, "record ids have missing values (None or NaN)")
    if ids.dtype.kind == "O":
        # A Parquet binary column (or Arrow's uuid type) arrives as bytes objects, which
        # astype(str) decodes as ASCII: "internal error" on the first byte past 0x7f (red team)
        try:
            ids = np.array(
                [v.decode("utf-8") if isinstance(v, bytes | bytearray) else v for v in ids],
                dtype=object,
            )
        except UnicodeDecodeError:
            raise InputError(name, _NOT_UTF8) from None
    return ids.astype(str)


def record_ids(name: str, values: np.ndarray | None, n: int) -> np.ndarray:
    if values is None:
        return np.arange(n, dtype=np.int64)
    ids = np.asarray(values)
    if ids.ndim != 1:
        raise InputError(name, f"record ids must be one-dimensional, got shape {ids.shape}")
    if ids.dtype.kind in "OSbMmc":
        # Ids of any other type (pandas objects, bytes, dates...) are kept as their text: a
        # fixed-width unicode array, never a pickle. Integer ids stay integers (their
        # pseudonyms hash the same text either way).
        ids = _as_text(name, ids)
    if ids.dtype.kind == "f":
        if not np.isfinite(ids).all() or (ids != np.round(ids)).any():
            raise InputError(name, "record ids must be integers or strings")
        ids = ids.astype(np.int64)
    if len(np.unique(ids)) != len(ids):
        raise InputError(name, "record ids are not unique")
    if ids.dtype.kind == "U":
        _distinct_when_read(name, ids)
    return ids


def _distinct_when_read(name: str, ids: np.ndarray) -> None:
    """InputError when two ids differ only in Unicode form ("José" composed and decomposed,
    full-width digits): they print alike, so `miaudit ids` listed two look-alike records with
    two pseudonyms and check-record answered for whichever form was typed (red team)."""
    import unicodedata

    text = ids.tolist()
    if "".join(text).isascii():  # NFKC leaves ASCII as it is
        return
    seen: dict[str, str] = {}
    for rid in text:
        folded = unicodedata.normalize("NFKC", rid)
        if folded in seen and seen[folded] != rid:
            raise InputError(
                name,
                f"record ids {seen[folded]!a} and {rid!a} differ only in Unicode form: they read as one id",
            )
        seen.setdefault(folded, rid)
