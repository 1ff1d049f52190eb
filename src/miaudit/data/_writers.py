"""Writing outputs and signals files (atomic; restricted where they hold membership)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Self

import numpy as np

from miaudit._io import atomic_path
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
                payload[META_KEY] = np.array(json.dumps(meta))
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
        table = table.replace_schema_metadata({META_KEY: json.dumps(meta)})
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
    schema = first.schema.with_metadata({META_KEY: json.dumps(store.meta())})
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
        (self._tmp / NPY_DIR_META).write_text(json.dumps(self.meta), encoding="utf-8")
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
