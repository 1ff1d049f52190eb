"""The multi-model signals format: many models' outputs on one pool of records.

Written by the training engine, read by reference-model attacks (LiRA, RMIA, shadow models).
A team that trained its reference models elsewhere writes the same file and gets the same
attacks.

Arrays (stored in ``.npz`` or ``.parquet``; schema ``SIGNALS_SCHEMA``):

==============  ==========================  =================================================
name            shape / dtype               meaning
==============  ==========================  =================================================
``logits``      (K, n, C) or (K, n, A, C)   model k's logits on record i (A augmentation
                float32                     queries, the un-augmented query first)
``label``       (n,) int64                  true class
``keep``        (K, n) bool                 record i was in model k's training set
``population``  (n,) bool                   record outside the plan's pool: no model trained
                                            on it (RMIA's z records)
``record_id``   (n,) int64 or str           stable, unique record ids
==============  ==========================  =================================================

The pool (``~population``, :attr:`SignalsStore.pool`) is part of the store: the records the
plan drew memberships from, fixed before any was drawn, and the records every attack evaluates.
Schema 2 says so. Schema 1 files (still read) came from engines that inferred the population as
"records no model trained on"; for plans other than complementary pairs that set depends on the
models' own membership and leaks it into the evaluation (``miaudit.engine._plan``).

Metadata: ``schema`` (format version), ``target`` (index of the audited model, or null when
every model takes a turn as target), ``info`` (:class:`SignalsInfo`: dataset, recipe, plan…;
a store written elsewhere may hold other keys too, kept as given).
In Parquet, one row per record: ``logits`` and ``keep`` are list columns (flattened K·A·C and
K values) and the shape lives in the file's ``miaudit`` metadata.
For stores larger than memory, a folder (no suffix) holds one ``<name>.npy`` per array and the
metadata in ``meta.json``; ``logits.npy`` is opened memory-mapped (docs/scale.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from miaudit.data import _validate as v
from miaudit.data._tables import RawTable, read_table
from miaudit.errors import InputError

SIGNALS_SCHEMA = "miaudit.signals/2"
#: Older schemas this version reads (their arrays have the same names and shapes).
READABLE_SCHEMAS = ("miaudit.signals/1", SIGNALS_SCHEMA)


class SignalsInfo(BaseModel):
    """How a signals store was made: what the engine records (every field optional, since a
    store written elsewhere may give none of them; other keys are kept as given).

    ``recipe`` and ``privacy`` are the models layer's records as it wrote them (the recipe's
    fields; per DP-trained model, what its accountant spent), carried here without reading them.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    dataset: str | None = None
    data_fingerprint: str | None = None
    recipe: dict[str, Any] | None = None
    seed: int | None = None
    plan: str | None = None
    pool_fraction: float | None = None
    unit_size: int | None = None
    #: Cache keys of the units, in model order (model k is in unit k // unit_size).
    units: list[str] = []
    versions: str | None = None
    threads: int | None = None
    #: The torch device the models trained on ("cpu", "cuda", "cuda:N"; engine.device).
    device: str | None = None
    privacy: list[dict[str, Any]] = []
    preprocessing: dict[str, Any] | None = None
    #: The store's target is a model trained elsewhere (audited without retraining).
    external_target: bool = False

    @classmethod
    def of(cls, info: SignalsInfo | Mapping[str, Any] | None) -> SignalsInfo:
        """``info`` as a record; InputError naming the field that does not fit."""
        if isinstance(info, SignalsInfo):
            return info
        try:
            return cls.model_validate(dict(info or {}))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            raise InputError(f"metadata.info.{where}", first["msg"]) from None

    def to_meta(self) -> dict[str, Any]:
        """The JSON metadata: the fields that were given (a store read and written again keeps
        its metadata as it was)."""
        return self.model_dump(mode="json", exclude_unset=True)


@dataclass(frozen=True, eq=False)
class SignalsStore:
    logits: np.ndarray
    label: np.ndarray
    keep: np.ndarray
    population: np.ndarray
    record_id: np.ndarray
    target: int | None = None
    info: SignalsInfo = field(default_factory=SignalsInfo)

    @property
    def n_models(self) -> int:
        return int(self.logits.shape[0])

    @property
    def pool(self) -> np.ndarray:
        """(n,) bool: the plan's pool, the records that are evaluated (``~population``)."""
        return ~self.population

    @property
    def n_records(self) -> int:
        return int(self.logits.shape[1])

    @property
    def n_classes(self) -> int:
        return int(self.logits.shape[-1])

    @property
    def n_queries(self) -> int:
        """Augmentation queries per record (1 when the logits have no query axis)."""
        return int(self.logits.shape[2]) if self.logits.ndim == 4 else 1

    @classmethod
    def from_arrays(
        cls,
        *,
        logits: np.ndarray,
        label: np.ndarray,
        keep: np.ndarray,
        population: np.ndarray | None = None,
        record_id: np.ndarray | None = None,
        target: int | None = None,
        info: SignalsInfo | Mapping[str, Any] | None = None,
    ) -> SignalsStore:
        logits = np.asarray(logits)
        if logits.ndim not in (3, 4):
            raise InputError(
                "logits",
                f"must be (models × records × classes) or (models × records × queries × classes), got shape {logits.shape}",
            )
        k, n = logits.shape[:2]
        if k == 0 or n == 0:
            raise InputError("logits", f"no models or no records (shape {logits.shape})")
        if logits.shape[-1] < 2:
            raise InputError("logits", f"need at least 2 classes, got {logits.shape[-1]}")
        logits = v.finite_float("logits", logits, np.float32)
        keep_arr = np.asarray(keep)
        if keep_arr.shape != (k, n):
            raise InputError(
                "keep",
                f"keep matrix has shape {keep_arr.shape}, expected (models, records) = {(k, n)}",
            )
        keep_arr = v.binary("keep", keep_arr, need_both=False).astype(bool)
        n_label = v.same_length({"logits (records axis)": n, "label": len(label)})
        labels = v.integer_labels("label", label, logits.shape[-1])
        pop = np.zeros(n, dtype=bool) if population is None else np.asarray(population)
        if pop.shape != (n_label,):
            raise InputError("population", f"has shape {pop.shape}, expected ({n},)")
        pop = v.binary("population", pop, need_both=False).astype(bool)
        if (keep_arr[:, pop]).any():
            i = int(np.argmax(keep_arr[:, pop].any(axis=0)))
            raise InputError(
                "population",
                f"population record at position {i} of the mask is in some model's training set (keep)",
            )
        if target is not None and not (0 <= int(target) < k):
            raise InputError("target", f"target model {target} is outside [0, {k})")
        ids = v.record_ids("record_id", record_id, n)
        return cls(
            logits,
            labels,
            keep_arr,
            pop,
            ids,
            None if target is None else int(target),
            SignalsInfo.of(info),
        )

    @classmethod
    def from_table(cls, table: RawTable) -> SignalsStore:
        arrays, meta = table.arrays, checked_meta(table.meta, need_shape=table.format == "parquet")
        logits = v.require(arrays, "logits")
        keep = v.require(arrays, "keep")
        if table.format == "parquet":  # one row per record: unflatten with the stored shape
            shape = meta["logits_shape"]
            n = logits.shape[0]
            per_record = [int(s) for s in shape[2:]]
            k = int(shape[0])
            if logits.size != n * k * int(np.prod(per_record)):
                raise InputError(
                    "logits",
                    f"list column holds {logits.shape[1] if logits.ndim == 2 else '?'} values per record, metadata says {k}×{per_record}",
                )
            logits = np.moveaxis(logits.reshape(n, k, *per_record), 0, 1)
            keep = np.asarray(keep).T
        target = meta.get("target")
        return cls.from_arrays(
            logits=logits,
            label=v.require(arrays, "label"),
            keep=keep,
            population=arrays.get("population"),
            record_id=arrays.get("record_id"),
            target=None if target is None else int(target),
            info=meta.get("info"),
        )

    def meta(self) -> dict[str, Any]:
        return {
            "schema": SIGNALS_SCHEMA,
            "target": self.target,
            "logits_shape": list(self.logits.shape),
            "info": self.info.to_meta(),
        }

    def save(self, path: str | Path) -> None:
        """Write as .npz or .parquet, or as a folder of .npy files when ``path`` has no suffix
        (read back memory-mapped: the format for stores larger than memory). Atomically;
        restricted 0600: it holds the keep matrix."""
        from miaudit.data._writers import write_signals

        write_signals(self, Path(path))


#: The signals metadata (a recipe, a plan) is a few levels deep; deeper is refused, since
#: serialisers stop short of Python's parser (pydantic at about 500 levels).
MAX_META_DEPTH = 32


def _depth(value: Any, level: int = 0) -> int:
    """How deeply ``value`` (parsed JSON) nests, counted no further than past the limit."""
    if level > MAX_META_DEPTH or not isinstance(value, dict | list):
        return level
    items = value.values() if isinstance(value, dict) else value
    return max((_depth(v, level + 1) for v in items), default=level + 1)


def checked_meta(meta: Any, *, need_shape: bool) -> dict[str, Any]:
    """The signals metadata, checked field by field (it comes from the file: untrusted)."""
    if not isinstance(meta, dict):
        raise InputError("metadata", "the signals metadata must be a JSON object")
    schema = meta.get("schema")
    if schema is not None and schema not in READABLE_SCHEMAS:
        raise InputError(
            "schema",
            f"unsupported signals schema {str(schema)[:80]!r}; this miaudit reads {', '.join(map(repr, READABLE_SCHEMAS))}",
        )
    target = meta.get("target")
    if target is not None and (
        isinstance(target, bool) or not isinstance(target, int) or target < 0
    ):
        raise InputError(
            "metadata.target", f"must be a model index ≥ 0 or null, got {str(target)[:80]!r}"
        )
    info = meta.get("info")
    if info is not None and not isinstance(info, dict):
        raise InputError("metadata.info", "must be a JSON object")
    if _depth(meta) > MAX_META_DEPTH:  # it is written again with the results (red team)
        raise InputError("metadata", f"is nested more than {MAX_META_DEPTH} levels deep")
    shape = meta.get("logits_shape")
    if need_shape or shape is not None:
        ok = (
            isinstance(shape, list)
            and len(shape) in (3, 4)
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape)
        )
        if not ok:
            raise InputError(
                "metadata.logits_shape",
                "must be [models, records, (queries,) classes] as positive integers (the file's miaudit metadata)",
            )
    return meta


def load_signals(path: str | Path) -> SignalsStore:
    """Load a multi-model signals file (.npz or .parquet) or folder (.npy files, written by
    ``save`` or :class:`~miaudit.data._writers.SignalsDirWriter`) and validate it.

    From a folder the logits stay memory-mapped (validated chunk by chunk): attacks read them
    in chunks of records, so a store larger than memory can be audited."""
    table = read_table(path, "signals")
    if table.format == "csv":
        raise InputError("signals", "multi-model signals are stored as .npz or .parquet, not .csv")
    return SignalsStore.from_table(table)


def _copy_batch(
    batch: Any,
    logits: np.ndarray,
    lo: int,
    columns: dict[str, list[np.ndarray]],
    shape: list[int],
) -> int:
    """One Parquet batch of records: its logits into ``logits`` from record ``lo`` on, its
    other columns appended to ``columns``; returns how many records it held."""
    from miaudit.data._tables import _list_column_to_2d

    k, n, per = int(shape[0]), int(shape[1]), [int(d) for d in shape[2:]]
    names = batch.schema.names
    lg = _list_column_to_2d("logits", batch.column(names.index("logits")))
    m = lg.shape[0]
    if lo + m > n or lg.shape[1] != k * int(np.prod(per)):
        raise InputError("logits", f"the list column does not match the metadata's shape {shape}")
    logits[:, lo : lo + m] = np.moveaxis(lg.reshape(m, k, *per), 0, 1)
    for name, parts in columns.items():
        if name in names:
            col = batch.column(names.index(name))
            parts.append(
                _list_column_to_2d(name, col).T
                if name == "keep"
                else col.to_numpy(zero_copy_only=False)
            )
    return int(m)


def signals_to_folder(src: str | Path, dest: str | Path) -> SignalsStore:
    """Convert a signals file to the memory-mapped folder format and open it.

    A Parquet file is read in batches of records (row groups), so converting it needs memory
    for one batch, not the store; an .npz file is loaded whole (a zip member cannot be mapped).
    Returns ``load_signals(dest)``.
    """
    from miaudit.data._writers import SignalsDirWriter

    src, dest = Path(src), Path(dest)
    if src.suffix.lower() != ".parquet":
        load_signals(src).save(dest)
        return load_signals(dest)
    import json

    import pyarrow.parquet as pq

    from miaudit.data._tables import CHUNK_RECORDS, META_KEY

    try:
        pf = pq.ParquetFile(src)
        meta = json.loads((pf.schema_arrow.metadata or {})[META_KEY.encode()].decode())
    except (OSError, ValueError, KeyError) as exc:
        raise InputError("signals", f"cannot read {str(src)!r} as Parquet signals: {exc}") from None
    shape = checked_meta(meta, need_shape=True)["logits_shape"]
    n = int(shape[1])
    columns: dict[str, list[np.ndarray]] = {
        "label": [],
        "keep": [],
        "population": [],
        "record_id": [],
    }
    with SignalsDirWriter(
        dest,
        tuple(int(d) for d in shape),
        target=meta.get("target"),
        info=dict(meta.get("info") or {}),
    ) as w:
        lo = 0
        for batch in pf.iter_batches(batch_size=CHUNK_RECORDS):
            lo += _copy_batch(batch, w.logits, lo, columns, shape)
        if lo != n:
            raise InputError("logits", f"the file holds {lo} records, its metadata says {n}")
        if not columns["label"] or not columns["keep"]:
            raise InputError("signals", "Parquet signals need 'label' and 'keep' columns")
        w.finish(
            label=np.concatenate(columns["label"]),
            keep=np.concatenate(columns["keep"], axis=1),
            population=np.concatenate(columns["population"]) if columns["population"] else None,
            record_id=np.concatenate(columns["record_id"]) if columns["record_id"] else None,
        )
    return load_signals(dest)
