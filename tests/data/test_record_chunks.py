"""``record_chunks``: the public way to read an array larger than memory, chunk by chunk."""

from __future__ import annotations

import numpy as np
import pytest

import miaudit.data._tables as tables
from miaudit.data import CHUNK_RECORDS, is_mapped, record_chunks


def test_slices_cover_the_records_axis_in_order() -> None:
    a = np.zeros((2, 10, 3))
    assert list(record_chunks(a, size=4)) == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert list(record_chunks(a, axis=-2, size=5)) == [slice(0, 5), slice(5, 10)]
    assert list(record_chunks(a, axis=0, size=5)) == [slice(0, 2)]
    assert list(record_chunks(np.zeros((2, 0)))) == []
    assert list(record_chunks(np.zeros((1, CHUNK_RECORDS + 1)))) == [
        slice(0, CHUNK_RECORDS),
        slice(CHUNK_RECORDS, CHUNK_RECORDS + 1),
    ]
    with pytest.raises(ValueError, match="size"):
        list(record_chunks(a, size=0))


def test_pages_are_released_after_each_chunk_is_used(tmp_path, monkeypatch) -> None:
    path = tmp_path / "a.npy"
    np.save(path, np.arange(30, dtype=np.float32).reshape(3, 10))
    mapped = np.load(path, mmap_mode="r")
    assert is_mapped(mapped)
    events: list[str] = []
    real = tables.release
    monkeypatch.setattr(tables, "release", lambda arr: (events.append("release"), real(arr)))
    total = 0.0
    for rows in record_chunks(mapped, size=4):
        events.append(f"use {rows.start}")
        total += float(mapped[:, rows].sum())
    assert total == float(np.arange(30).sum())
    assert events == ["use 0", "release", "use 4", "release", "use 8", "release"]
