"""Writing outputs and signals files (atomic; restricted where they hold membership)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from miaudit._io import atomic_path
from miaudit.data._tables import META_KEY
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
    suffix = _suffix(path, (".npz", ".parquet"))
    arrays = {"logits": store.logits, "label": store.label, "keep": store.keep, "population": store.population, "record_id": store.record_id}
    if suffix == ".parquet":
        n = store.n_records
        arrays["logits"] = np.moveaxis(store.logits, 1, 0).reshape(n, -1)
        arrays["keep"] = store.keep.T
    _write(path, suffix, arrays, store.meta(), restricted=True)


def _write(path: Path, suffix: str, arrays: dict[str, np.ndarray], meta: dict[str, object], *, restricted: bool) -> None:
    with atomic_path(path, restricted=restricted) as tmp:
        if suffix == ".npz":
            buf = io.BytesIO()
            payload = dict(arrays)
            if meta:
                payload[META_KEY] = np.array(json.dumps(meta))
            np.savez(buf, **payload)  # type: ignore[arg-type]
            tmp.write_bytes(buf.getbuffer())
        else:
            _write_parquet(tmp, arrays, meta)


def _write_parquet(tmp: Path, arrays: dict[str, np.ndarray], meta: dict[str, object]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = {}
    for name, arr in arrays.items():
        a = np.asarray(arr)
        if a.ndim == 2:
            cols[name] = pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(a).reshape(-1)), a.shape[1])
        else:
            cols[name] = pa.array(a)
    table = pa.table(cols)
    if meta:
        table = table.replace_schema_metadata({META_KEY: json.dumps(meta)})
    pq.write_table(table, tmp)
