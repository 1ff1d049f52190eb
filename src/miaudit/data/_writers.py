"""Writing outputs and signals files (atomic; restricted where they hold membership)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Self

import numpy as np

from miaudit._io import atomic_path, dumps_json
from miaudit.data._tables import (
    CHUNK_RECORDS,
    META_KEY,
    NPY_DIR_META,
    is_mapped,
    release,
)
from miaudit.errors import InputError

if TYPE_CHECKING:
    from miaudit.data._outputs import ModelOutputs
    from miaudit.data._signals_store import SignalsStore


def _suffix(path: Path, allowed: tuple[str, ...]) -> str:
    s = path.suffix.lower()
    if s not in allowed:
        raise InputError("path", f"cannot write {s or '(none)'!r}; use one of {', '.join(allowed)}")
    return s


def write_outputs(outputs: ModelOutputs, path: Path) -> None:
    suffix = _suffix(path, (".npz", ".parquet"))
    arrays: dict[str, np.ndarray] = {
        outputs.kind: outputs.values,
        "label": outputs.label,
        "member": outputs.member,
        **({"record_id": outputs.record_id} if outputs.has_record_id else {}),
        **outputs.columns,
    }
    # Outputs with membership are the training roster: restricted.
    _write(path, suffix, arrays, {}, restricted=True)


def write_signals(store: SignalsStore, path: Path) -> None:
    if path.suffix == "":  # a folder of .npy files, read back memory-mapped
        with SignalsDirWriter(
            path, store.logits.shape, target=store.target, info=store.info.to_meta()
        ) as w:
            for lo in range(0, store.n_records, CHUNK_RECORDS):
                w.logits[:, lo : lo + CHUNK_RECORDS] = store.logits[:, lo : lo + CHUNK_RECORDS]
            w.finish(
                label=store.label,
                keep=store.keep,
                population=store.population,
                record_id=store.record_id,
            )
        return
    suffix = _suffix(path, (".npz", ".parquet", "(a folder: no suffix)"))
    arrays = {
        "logits": store.logits,
        "label": store.label,
        "keep": store.keep,
        "population": store.population,
        "record_id": store.record_id,
    }
    if suffix == ".parquet" and is_mapped(
        store.logits
    ):  # larger than memory: row groups of records
        with atomic_path(path, restricted=True) as tmp:
            _write_parquet_chunked(tmp, store)
        return
    if suffix == ".parquet":
        n = store.n_records
        arrays["logits"] = np.moveaxis(store.logits, 1, 0).reshape(n, -1)
        arrays["keep"] = store.keep.T
    _write(path, suffix, arrays, store.meta(), restricted=True)


def _write(
    path: Path,
    suffix: str,
    arrays: dict[str, np.ndarray],
    meta: dict[str, object],
    *,
    restricted: bool,
) -> None:
    with atomic_path(path, restricted=restricted) as tmp:
        if suffix == ".npz":
            payload = dict(arrays)
            if meta:
                payload[META_KEY] = np.array(dumps_json(meta))
            with tmp.open("wb") as fh:  # streamed: no second in-memory copy of the arrays
                np.savez(fh, **payload)  # type: ignore[arg-type]
        else:
            _write_parquet(tmp, arrays, meta)


def _write_parquet(tmp: Path, arrays: dict[str, np.ndarray], meta: dict[str, object]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = {}
    for name, arr in arrays.items():
        a = np.asarray(arr)
        if a.ndim == 2:
            cols[name] = pa.FixedSizeListArray.from_arrays(
                pa.array(np.ascontiguousarray(a).reshape(-1)), a.shape[1]
            )
        else:
            cols[name] = pa.array(a)
    table = pa.table(cols)
    if meta:
        table = table.replace_schema_metadata({META_KEY: dumps_json(meta)})
    pq.write_table(table, tmp)


def _write_parquet_chunked(tmp: Path, store: SignalsStore) -> None:
    """The Parquet layout of :func:`write_signals`, one row group per chunk of records."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def columns(lo: int, hi: int) -> dict[str, object]:
        lg = np.ascontiguousarray(np.moveaxis(store.logits[:, lo:hi], 1, 0)).reshape(hi - lo, -1)
        release(store.logits)
        keep = np.ascontiguousarray(store.keep[:, lo:hi].T)
        return {
            "logits": pa.FixedSizeListArray.from_arrays(pa.array(lg.reshape(-1)), lg.shape[1]),
            "label": pa.array(store.label[lo:hi]),
            "keep": pa.FixedSizeListArray.from_arrays(pa.array(keep.reshape(-1)), keep.shape[1]),
            "population": pa.array(store.population[lo:hi]),
            "record_id": pa.array(store.record_id[lo:hi]),
        }

    first = pa.table(columns(0, min(store.n_records, CHUNK_RECORDS)))
    schema = first.schema.with_metadata({META_KEY: dumps_json(store.meta())})
    with pq.ParquetWriter(tmp, schema) as writer:
        writer.write_table(first.cast(schema))
        for lo in range(CHUNK_RECORDS, store.n_records, CHUNK_RECORDS):
            writer.write_table(
                pa.table(columns(lo, min(store.n_records, lo + CHUNK_RECORDS))).cast(schema)
            )


class SignalsDirWriter:
    """Write a signals folder (``logits.npy``, ``label.npy``, ``keep.npy``, ``population.npy``,
    ``record_id.npy``, ``meta.json``) without holding the logits in memory.

    ``logits`` is a writable memory map of shape ``logits_shape`` (float32): fill it in chunks
    of records, then call :meth:`finish` with the other arrays. The folder is built beside
    ``path`` and renamed into place on success (0700, files 0600: it holds the keep matrix); on
    an error it is removed. Example::

        with SignalsDirWriter(path, (K, n, C)) as w:
            for lo in range(0, n, 65536):
                w.logits[:, lo : lo + 65536] = next_chunk()
            w.finish(label=label, keep=keep, population=population)
    """

    def __init__(
        self,
        path: Path,
        logits_shape: tuple[int, ...],
        *,
        target: int | None = None,
        info: dict[str, object] | None = None,
    ) -> None:
        from miaudit.data._signals_store import SIGNALS_SCHEMA

        self.path = Path(path)
        if len(logits_shape) not in (3, 4):
            raise InputError(
                "logits",
                f"must be (models × records × classes) or (models × records × queries × classes), got shape {logits_shape}",
            )
        self.meta = {
            "schema": SIGNALS_SCHEMA,
            "target": target,
            "logits_shape": [int(d) for d in logits_shape],
            "info": dict(info or {}),
        }
        self._tmp = self.path.parent / f".{self.path.name}.{os.getpid()}.tmp"
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp.mkdir(mode=0o700, parents=True)
        self.logits = np.lib.format.open_memmap(
            self._tmp / "logits.npy", mode="w+", dtype=np.float32, shape=tuple(logits_shape)
        )
        self._done = False

    def finish(
        self,
        *,
        label: np.ndarray,
        keep: np.ndarray,
        population: np.ndarray | None = None,
        record_id: np.ndarray | None = None,
    ) -> None:
        self.logits.flush()
        release(self.logits)
        arrays = {"label": label, "keep": keep, "population": population, "record_id": record_id}
        for name, arr in arrays.items():
            if arr is not None:
                np.save(self._tmp / f"{name}.npy", np.asarray(arr), allow_pickle=False)
        (self._tmp / NPY_DIR_META).write_text(dumps_json(self.meta), encoding="utf-8")
        self._done = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        del self.logits
        if exc_type is not None or not self._done:
            shutil.rmtree(self._tmp, ignore_errors=True)
            return
        for f in self._tmp.iterdir():
            os.chmod(f, 0o600)
        old = None
        if self.path.exists():  # replace a previous folder: move it aside, then remove it
            old = self.path.parent / f".{self.path.name}.{os.getpid()}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.path, old)
        os.replace(self._tmp, self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


class SignalsWriter:
    """Write a multi-model signals store from a training script, one model at a time.

    For reference models trained anywhere (a GPU cluster, another framework): the script needs
    numpy and this class only, never miaudit's engine. Give the records once (``label``,
    ``record_id``, optionally ``population``: records no model may train on, RMIA's z records),
    then, per model, its logits on every record and its keep row (which records it trained on).
    On leaving the ``with`` block without an error the store is checked and written atomically,
    restricted (0600: the keep matrix is the training roster); on an error nothing is left.
    ``path``: ``.npz``, ``.parquet``, or no suffix for a folder read back memory-mapped. Each
    model's logits wait on disk beside ``path`` until then, so memory holds one model at a time
    (and, for .npz/.parquet, the store once at the end). Then audit it:
    ``miaudit audit --signals PATH --out DIR`` (docs/signals-elsewhere.md). Example::

        with SignalsWriter("signals.npz", label=y, record_id=ids) as w:
            for k in range(8):
                keep = rng.random(len(y)) < 0.5
                model = train(x[keep], y[keep])
                w.add_model(model_logits(model, x), keep=keep)

    ``target``: the index of the one model to audit (default: none, every model takes a turn);
    ``info``: free-form JSON metadata kept in the store (e.g. ``{"dataset": "my-data"}``).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        label: np.ndarray,
        record_id: np.ndarray | None = None,
        population: np.ndarray | None = None,
        target: int | None = None,
        info: dict[str, object] | None = None,
    ) -> None:
        from miaudit.data import _validate as v

        self.path = Path(path)
        if self.path.suffix.lower() not in (".npz", ".parquet", ""):
            raise InputError(
                "path",
                f"cannot write signals as {self.path.suffix!r}; use .npz, .parquet or a folder (no suffix)",
            )
        self._label = np.asarray(label)
        if self._label.ndim != 1 or self._label.size == 0:
            raise InputError(
                "label", f"must be one label per record, got shape {self._label.shape}"
            )
        n = self._label.size
        self._record_id = v.record_ids("record_id", record_id, n)
        if self._record_id.shape != (n,):
            raise InputError("record_id", f"has shape {self._record_id.shape}, expected ({n},)")
        pop = np.zeros(n, dtype=bool) if population is None else np.asarray(population)
        if pop.shape != (n,):
            raise InputError(
                "population", f"has shape {pop.shape}, expected ({n},) (one per record)"
            )
        self._population = v.binary("population", pop, need_both=False).astype(bool)
        self._target, self._info = target, dict(info or {})
        self._keep: list[np.ndarray] = []
        self._shape: tuple[int, ...] | None = None
        self._tmp = self.path.parent / f".{self.path.name}.{os.getpid()}.models"
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp.mkdir(mode=0o700, parents=True)
        self._closed = False

    @property
    def n_models(self) -> int:
        return len(self._keep)

    def add_model(
        self,
        logits: np.ndarray,
        *,
        keep: np.ndarray | None = None,
        members: np.ndarray | None = None,
    ) -> int:
        """Add the next model: its logits on every record, (records, classes) or (records,
        queries, classes), and its training set as a ``keep`` mask or as ``members`` (record
        ids). Returns the model's index."""
        from miaudit.data import _validate as v

        k = len(self._keep)
        name = f"logits (model {k})"
        arr = v.finite_float(name, logits, np.float32)
        v.refuse_probabilities(
            name,
            arr,
            "give their logarithm as logits (np.log of the probabilities, clipped away from 0)",
        )
        n = self._label.size
        if arr.ndim not in (2, 3) or arr.shape[0] != n or arr.shape[-1] < 2:
            raise InputError(
                name,
                f"has shape {arr.shape}, expected (records, classes) or (records, queries, classes) with {n} records and ≥ 2 classes",
            )
        if self._shape is not None and arr.shape != self._shape:
            raise InputError(name, f"has shape {arr.shape}, the first model's was {self._shape}")
        self._shape = arr.shape
        row = self._keep_row(k, keep, members)
        np.save(self._tmp / f"{k}.npy", arr, allow_pickle=False)
        self._keep.append(row)
        return k

    def _keep_row(self, k: int, keep: np.ndarray | None, members: np.ndarray | None) -> np.ndarray:
        from miaudit.data import _validate as v

        n = self._label.size
        if (keep is None) == (members is None):
            raise InputError(
                f"keep (model {k})", "give the model's training set as keep= or members=, not both"
            )
        if keep is not None:
            arr = np.asarray(keep)
            if arr.shape != (n,):
                raise InputError(f"keep (model {k})", f"has shape {arr.shape}, expected ({n},)")
            row = v.binary(f"keep (model {k})", arr, need_both=False).astype(bool)
        else:
            index = {str(r): i for i, r in enumerate(self._record_id.tolist())}
            ids = [str(m) for m in np.asarray(members).reshape(-1).tolist()]
            unknown = [m for m in ids if m not in index]
            if unknown:
                raise InputError(
                    f"members (model {k})", f"record id {unknown[0]!r} is not among the records"
                )
            row = np.zeros(n, dtype=bool)
            row[[index[m] for m in ids]] = True
        if (row & self._population).any():
            i = int(np.argmax(row & self._population))
            raise InputError(
                f"keep (model {k})",
                f"the record in row {i} is a population record, which no model may train on (named by its row: error lines end up in logs)",
            )
        return row

    def _logits_shape(self) -> tuple[int, ...]:
        if self._shape is None:
            raise InputError("signals", "no model was added: call add_model once per model")
        return (len(self._keep), *self._shape)

    def _rows(self) -> dict[str, np.ndarray]:
        from miaudit.data import _validate as v

        assert self._shape is not None
        return {
            "label": v.integer_labels("label", self._label, self._shape[-1]),
            "keep": np.stack(self._keep),
            "population": self._population,
            "record_id": self._record_id,
        }

    def close(self) -> Path:
        """Check and write the store (the ``with`` block does this on a clean exit)."""
        from miaudit.data._signals_store import SignalsStore

        if self._closed:
            return self.path
        shape = self._logits_shape()
        rows = self._rows()
        if self._target is not None and not 0 <= self._target < shape[0]:
            raise InputError("target", f"model {self._target} is outside [0, {shape[0]})")
        if self.path.suffix == "":
            with SignalsDirWriter(self.path, shape, target=self._target, info=self._info) as w:
                for k in range(shape[0]):
                    w.logits[k] = np.load(self._tmp / f"{k}.npy", allow_pickle=False)
                w.finish(**rows)
        else:
            logits = np.stack([np.load(self._tmp / f"{k}.npy") for k in range(shape[0])])
            store = SignalsStore.from_arrays(
                logits=logits, target=self._target, info=self._info, **rows
            )
            write_signals(store, self.path)
        self._discard()
        return self.path

    def _discard(self) -> None:
        self._closed = True
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self._discard()
            return
        try:
            self.close()
        finally:
            self._discard()
