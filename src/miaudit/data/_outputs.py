"""Single-model outputs: what a model said about records whose membership is known."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from miaudit.data import _validate as v
from miaudit.data._tables import RawTable, read_table
from miaudit.errors import InputError

Kind = Literal["logits", "probs"]
#: How to fix outputs given under the wrong name (the refusals of ``_validate``).
_AS_PROBS = "give them as probs (the array or column 'probs', or prob_0 … prob_<C-1>)"
_AS_LOGITS = "give them as logits (the array or column 'logits', or logit_0 … logit_<C-1>)"
_RESERVED = {"logits", "probs", "label", "member", "record_id", "features"}


@dataclass(frozen=True, eq=False)
class ModelOutputs:
    """One model's outputs on n records.

    Attributes:
        values: (n, C) logits or probabilities (float32 input stays float32, else float64).
        kind: whether ``values`` are ``"logits"`` or ``"probs"``.
        label: (n,) true class in [0, C).
        member: (n,) 1 = in the model's training set, 0 = not.
        record_id: (n,) unique ids (the row number when the input had none).
        columns: extra per-record columns, usable as slices.
        features: (n, d) float64 features of the records, when given (attacks that regress on
            them, e.g. QMIA); None otherwise. Images given as (n, H, W) or (n, C, H, W) are
            kept flat, their shape in ``image_shape``.
        image_shape: (C, H, W) when the features are images, else None.
    """

    values: np.ndarray
    kind: Kind
    label: np.ndarray
    member: np.ndarray
    record_id: np.ndarray
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    has_record_id: bool = True
    features: np.ndarray | None = None
    image_shape: tuple[int, int, int] | None = None

    @property
    def n_records(self) -> int:
        return int(self.label.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.values.shape[1])

    @classmethod
    def from_arrays(
        cls,
        *,
        label: np.ndarray,
        member: np.ndarray,
        logits: np.ndarray | None = None,
        probs: np.ndarray | None = None,
        record_id: np.ndarray | None = None,
        columns: dict[str, np.ndarray] | None = None,
        features: np.ndarray | None = None,
    ) -> ModelOutputs:
        """Validate arrays and build outputs; every problem raises :class:`InputError`."""
        if (logits is None) == (probs is None):
            raise InputError(
                "logits/probs",
                "give exactly one of 'logits' or 'probs'"
                if logits is not None
                else "missing column or array: need 'logits' or 'probs'",
            )
        kind: Kind = "logits" if logits is not None else "probs"
        raw = np.asarray(logits if logits is not None else probs)
        if raw.ndim != 2:
            raise InputError(kind, f"must be 2-D (records × classes), got shape {raw.shape}")
        columns = dict(columns or {})
        label, member = v.one_dimensional("label", label), v.one_dimensional("member", member)
        lengths = {kind: raw.shape[0], "label": len(label), "member": len(member)}
        if record_id is not None:
            lengths["record_id"] = len(v.one_dimensional("record_id", record_id))
        lengths.update({k: len(c) for k, c in columns.items()})
        n = v.same_length(lengths)
        if raw.shape[1] < 2:
            raise InputError(kind, f"need at least 2 classes, got {raw.shape[1]}")
        # float32 stays float32 (a 1,000,000 × 1,000 input would double in float64); signals
        # are computed in float64 chunk by chunk anyway.
        values = v.finite_float(kind, raw, np.float32 if raw.dtype == np.float32 else np.float64)
        if kind == "probs":
            v.check_probabilities(kind, values, _AS_LOGITS)
        else:
            v.refuse_probabilities(kind, values, _AS_PROBS)
        labels = v.integer_labels("label", label, raw.shape[1])
        members = v.binary("member", member, need_both=True)
        ids = v.record_ids("record_id", record_id, n)
        feats, shape = checked_features(features, n)
        return cls(
            values,
            kind,
            labels,
            members,
            ids,
            columns,
            has_record_id=record_id is not None,
            features=feats,
            image_shape=shape,
        )

    @classmethod
    def from_table(
        cls, table: RawTable, feature_columns: Sequence[str] | None = None
    ) -> ModelOutputs:
        arrays = table.arrays
        if "keep" in arrays:
            raise InputError(
                "input",
                f"{str(table.path)!r} holds multi-model signals (it has a keep matrix); load it with load_signals",
            )
        columns = {
            k: np.asarray(a)
            for k, a in arrays.items()
            if k not in _RESERVED and np.asarray(a).ndim == 1
        }
        return cls.from_arrays(
            label=v.require(arrays, "label"),
            member=v.require(arrays, "member"),
            logits=arrays.get("logits"),
            probs=arrays.get("probs"),
            record_id=arrays.get("record_id"),
            columns=columns,
            features=table_features(arrays, feature_columns),
        )

    def save(self, path: str | Path) -> None:
        """Write as .npz or .parquet (atomically)."""
        from miaudit.data._writers import write_outputs

        write_outputs(self, Path(path))


def load_outputs(path: str | Path, feature_columns: Sequence[str] | None = None) -> ModelOutputs:
    """Load single-model outputs from .npz, .parquet or .csv and validate them.

    ``feature_columns``: the columns holding the records' features (docs/formats.md); by
    default the 2-D array or list column ``features``, if any.
    """
    return ModelOutputs.from_table(read_table(path, "outputs"), feature_columns)


# --- features and population records (QMIA) ------------------------------------------------------


def checked_features(
    features: np.ndarray | None, n: int, name: str = "features"
) -> tuple[np.ndarray | None, tuple[int, int, int] | None]:
    """(n, d) finite float64 features and, for images given as (n, H, W) or (n, C, H, W),
    their (C, H, W) with the images flattened; (None, None) when none are given."""
    if features is None:
        return None, None
    f = np.asarray(features)
    if f.ndim not in (2, 3, 4) or f.shape[0] != n:
        raise InputError(
            name,
            f"must be (records, features) = ({n}, d), or images ({n}, H, W) / ({n}, C, H, W), got shape {f.shape}",
        )
    if 0 in f.shape[1:]:
        raise InputError(name, "has no columns")
    shape = None
    if f.ndim == 4 and f.shape[-1] in (1, 3, 4) and f.shape[1] not in (1, 3, 4):
        raise InputError(
            name,
            f"images of shape {f.shape} look channels-last (n, H, W, C): give them channels-first (n, C, H, W)",
        )
    if f.ndim > 2:
        c, h, w = (1, *f.shape[1:]) if f.ndim == 3 else f.shape[1:]
        shape = (int(c), int(h), int(w))
        f = f.reshape(n, -1)
    return v.finite_float(name, f), shape


def table_features(
    arrays: dict[str, np.ndarray], feature_columns: Sequence[str] | None
) -> np.ndarray | None:
    """The features of a table: the named 1-D columns side by side, else its ``features``
    array (npz) or list column (Parquet), else None."""
    if not feature_columns:
        return arrays.get("features")
    taken = [c for c in feature_columns if c in ("member", "record_id", "label")]
    if taken:  # the label is given to the regressors already; membership never is
        raise InputError(
            "--features", f"{taken[0]!r} is not a feature column: name the records' features"
        )
    missing = [c for c in feature_columns if c not in arrays]
    if missing:
        raise InputError("--features", f"no column {missing[0]!r} in the input")
    cols = [np.asarray(arrays[c]) for c in feature_columns]
    bad = [
        c
        for c, a in zip(feature_columns, cols, strict=True)
        if a.ndim != 1 or a.dtype.kind not in "biuf"
    ]
    if bad:
        raise InputError("--features", f"column {bad[0]!r} is not a numeric column")
    return np.column_stack(cols)


def load_records(
    path: str | Path, columns: Sequence[str] | None = None, field_name: str = "records"
) -> np.ndarray:
    """Records as a model takes them, (n, d) finite float64: an npz file's ``features`` array,
    or a Parquet/CSV file's ``columns`` (every column when None) side by side, or its
    ``features`` list column. InputError naming ``field_name`` otherwise."""
    table = read_table(path, field_name)
    arrays = table.arrays
    if "features" in arrays and (not columns or table.format == "npz"):
        x = np.asarray(arrays["features"])  # an npz file's records are its features array
    elif table.format == "npz":
        raise InputError(field_name, f"{str(path)!r} has no 'features' array")
    else:
        names = list(columns) if columns else list(arrays)
        missing = [c for c in names if c not in arrays]
        if missing:
            raise InputError(field_name, f"{str(path)!r} has no column {missing[0]!r}")
        cols = [np.asarray(arrays[c]) for c in names]
        bad = [
            c for c, a in zip(names, cols, strict=True) if a.ndim != 1 or a.dtype.kind not in "biuf"
        ]
        if bad:
            raise InputError(field_name, f"column {bad[0]!r} of {str(path)!r} is not numeric")
        x = np.column_stack(cols) if cols else np.empty((0, 0))
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise InputError(field_name, f"{str(path)!r} holds no records (shape {x.shape})")
    return v.finite_float(field_name, x)


@dataclass(frozen=True, eq=False)
class PopulationOutputs:
    """The audited model's outputs on population records: records known to be outside its
    training set (``miaudit attack --population``). As :class:`ModelOutputs`, without
    membership (every record is a non-member)."""

    values: np.ndarray
    kind: Kind
    label: np.ndarray
    record_id: np.ndarray
    features: np.ndarray | None
    has_record_id: bool = True
    image_shape: tuple[int, int, int] | None = None

    @property
    def n_records(self) -> int:
        return int(self.label.shape[0])

    @classmethod
    def from_table(
        cls, table: RawTable, feature_columns: Sequence[str] | None = None
    ) -> PopulationOutputs:
        arrays = table.arrays
        n = len(v.one_dimensional("population.label", v.require(arrays, "label")))
        if "member" in arrays:
            member = v.one_dimensional("population.member", arrays["member"])
            if len(member) != n:
                raise InputError(
                    "population.member", f"has {len(member)} values for {n} population records"
                )
            if v.binary("population.member", member, need_both=False).any():
                raise InputError(
                    "population.member",
                    "population records are known non-members: member must be 0 throughout (or absent)",
                )
        if n < 2:  # the stand-in below needs a record of each class: say what is wrong instead
            raise InputError(
                "population",
                f"holds {n} record(s); a population is many known non-members (QMIA needs at least 50)",
            )
        stand_in = np.zeros(n, dtype=np.int8)
        stand_in[:1] = 1  # validation wants both classes; the population has none of its own
        try:
            checked = ModelOutputs.from_arrays(
                label=arrays["label"],
                member=stand_in,
                logits=arrays.get("logits"),
                probs=arrays.get("probs"),
                record_id=arrays.get("record_id"),
                features=table_features(arrays, feature_columns),
            )
        except InputError as exc:
            raise _population_field(exc) from None
        return cls(
            checked.values,
            checked.kind,
            checked.label,
            checked.record_id,
            checked.features,
            checked.has_record_id,
            checked.image_shape,
        )


def load_population(
    path: str | Path, feature_columns: Sequence[str] | None = None
) -> PopulationOutputs:
    """Load the audited model's outputs on population records (.npz, .parquet or .csv):
    ``logits`` or ``probs``, ``label``, optional ``record_id`` and the features."""
    try:
        table = read_table(path, "population")
    except InputError as exc:
        raise _population_field(exc) from None
    return PopulationOutputs.from_table(table, feature_columns)


def _population_field(exc: InputError) -> InputError:
    """``exc`` naming the population's input (``population.<field>``), not the audited
    outputs'; an option (``--features``) or a population field stays as it is."""
    if exc.field.startswith(("population", "-")):
        return exc
    return InputError(f"population.{exc.field}", exc.problem)
