"""Single-model outputs: what a model said about records whose membership is known."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from miaudit.data import _validate as v
from miaudit.data._tables import RawTable, read_table
from miaudit.errors import InputError

Kind = Literal["logits", "probs"]
_RESERVED = {"logits", "probs", "label", "member", "record_id"}


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
    """

    values: np.ndarray
    kind: Kind
    label: np.ndarray
    member: np.ndarray
    record_id: np.ndarray
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    has_record_id: bool = True

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
        lengths = {kind: raw.shape[0], "label": len(label), "member": len(member)}
        if record_id is not None:
            lengths["record_id"] = len(record_id)
        lengths.update({k: len(c) for k, c in columns.items()})
        n = v.same_length(lengths)
        if raw.shape[1] < 2:
            raise InputError(kind, f"need at least 2 classes, got {raw.shape[1]}")
        # float32 stays float32 (a 1,000,000 × 1,000 input would double in float64); signals
        # are computed in float64 chunk by chunk anyway.
        values = v.finite_float(kind, raw, np.float32 if raw.dtype == np.float32 else np.float64)
        if kind == "probs":
            v.check_probabilities(kind, values)
        labels = v.integer_labels("label", label, raw.shape[1])
        members = v.binary("member", member, need_both=True)
        ids = v.record_ids("record_id", record_id, n)
        return cls(values, kind, labels, members, ids, columns, has_record_id=record_id is not None)

    @classmethod
    def from_table(cls, table: RawTable) -> ModelOutputs:
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
        )

    def save(self, path: str | Path) -> None:
        """Write as .npz or .parquet (atomically)."""
        from miaudit.data._writers import write_outputs

        write_outputs(self, Path(path))


def load_outputs(path: str | Path) -> ModelOutputs:
    """Load single-model outputs from .npz, .parquet or .csv and validate them."""
    return ModelOutputs.from_table(read_table(path, "outputs"))
