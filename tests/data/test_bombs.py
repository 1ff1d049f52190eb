"""Decompression bombs: what a file declares is bounded before anything is decompressed.

Red team: 350 KB npz files inflated a member without the ``.npy`` suffix, one of npy format
3.0, or an oversized ``features`` array (530 to 830 MB peak), and a 65 KB Parquet file a
dictionary-encoded column of one 200 KiB string per row (1 GB). The bombs here are the same
shapes at a few MiB, with the size floor lowered so that the ratio to the file's size decides.
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import miaudit.data._tables as tables
from miaudit.data import load_outputs, load_signals
from miaudit.errors import InputError

N = 2000


def _base(rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    rng = rng or np.random.default_rng(0)
    member = (np.arange(N) % 2).astype(np.int64)
    label = rng.integers(0, 3, N)
    logits = rng.normal(size=(N, 3)).astype(np.float32)
    logits[np.arange(N), label] += 1 + member
    return {"logits": logits, "label": label, "member": member}


def _npz(path, extra: dict[str, bytes], compress: int = zipfile.ZIP_DEFLATED) -> None:
    """``_base()`` as np.savez writes it, plus members of the given bytes."""
    with zipfile.ZipFile(path, "w", compress) as z:
        for name, value in _base().items():
            buf = io.BytesIO()
            np.save(buf, value)
            z.writestr(f"{name}.npy", buf.getvalue())
        for name, data in extra.items():
            z.writestr(name, data)


def _npy(array: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, version=version)
    return buf.getvalue()


ZEROS = b"\0" * (4 * 2**20)


@pytest.mark.parametrize(
    ("member", "data", "words"),
    [
        ("junk", ZEROS, "zip member 'junk' has no .npy suffix"),
        ("junk.npy", _npy(np.zeros(2**19), version=(3, 0)), r"npy format version \(3, 0\)"),
        ("junk.npy", b"PK not an array" + ZEROS, "the magic string is not correct"),
        ("junk.npy", b"", "the magic string is not correct|EOF"),
    ],
)
def test_a_member_whose_header_cannot_be_read_is_refused_by_name(tmp_path, member, data, words):
    """Red team: such a member was read whole (numpy returns a member without .npy as its bytes,
    and reads npy 3.0): 300 MiB of zeros from a 350 KB file, exit 0."""
    path = tmp_path / "o.npz"
    _npz(path, {member: data})
    with pytest.raises(InputError, match=words) as err:
        load_outputs(path)
    assert err.value.field == "junk"
    assert "nothing was decompressed" in str(err.value) and "\n" not in str(err.value)


def test_a_member_without_npy_suffix_cannot_stand_in_for_a_named_array(tmp_path):
    """numpy reads the member ``logits`` for z["logits"] even beside ``logits.npy`` (whose
    header alone was peeked at): the one that would be read is the one checked."""
    path = tmp_path / "o.npz"
    _npz(path, {"logits": ZEROS})
    with pytest.raises(InputError, match=r"zip member 'logits' has no \.npy suffix") as err:
        load_outputs(path)
    assert err.value.field == "logits"


def test_a_named_array_declaring_far_more_than_the_file_is_refused(tmp_path, monkeypatch):
    """Red team: a 300 MiB ``features`` array in a 358 KB file (no attack asked for features)
    was inflated whole; named arrays are read, so they count against the cap too."""
    monkeypatch.setattr(tables, "DECLARED_FLOOR", 2**20)
    path = tmp_path / "o.npz"
    _npz(path, {"features.npy": _npy(np.zeros((N, 2048)))})  # 32 MiB of zeros in a 56 KB file
    with pytest.raises(InputError, match="refused before decompressing") as err:
        load_outputs(path)
    assert err.value.field == "features"
    assert f"more than {tables.DECLARED_RATIO} times the file's" in str(err.value)


def test_narrow_numbers_count_as_the_float64_they_become(tmp_path, monkeypatch):
    """Red team: int8 logits declared an eighth of what they became once read (a 125 KB file
    took 1.47 GB): every number counts 8 bytes, whatever its width on disk."""
    monkeypatch.setattr(tables, "DECLARED_FLOOR", 2**20)
    n = 4096
    path = tmp_path / "o.npz"
    arrays = {
        "logits": np.zeros((n, 64), np.int8),  # 256 KiB inflated: 2 MiB as float64
        "label": np.zeros(n, np.int8),
        "member": (np.arange(n) % 2).astype(np.int8),
    }
    np.savez_compressed(path, **arrays)
    # below the (lowered) floor as int8, past it as the float64 they become
    assert sum(a.nbytes for a in arrays.values()) < 2**20 < 8 * arrays["logits"].nbytes
    assert path.stat().st_size * tables.DECLARED_RATIO < 2**20
    with pytest.raises(InputError, match="refused before decompressing") as err:
        load_outputs(path)
    assert err.value.field == "logits"


def test_a_header_declaring_an_unprintable_size_is_refused_in_a_short_line(tmp_path):
    """A header may claim 10**400 values per axis: counted exactly, reported in a few words."""
    buf = io.BytesIO()
    shape = (10**400, 10**400)
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f8", "fortran_order": False, "shape": shape}
    )
    path = tmp_path / "o.npz"
    _npz(path, {"features.npy": buf.getvalue()})
    with pytest.raises(InputError, match="declares about 10\\^800 bytes") as err:
        load_outputs(path)
    assert err.value.field == "features" and len(str(err.value)) < 400


def test_the_cap_counts_every_array_read_together(tmp_path, monkeypatch):
    """Two columns each under the cap, together over it (and each within 64 times the named
    arrays, the extra-column rule)."""
    monkeypatch.setattr(tables, "DECLARED_FLOOR", 2**20)
    monkeypatch.setattr(tables, "DECLARED_RATIO", 40)
    path = tmp_path / "o.npz"
    col = _npy(np.zeros(N, dtype="<U100"))  # 800 KB of zeros each
    _npz(path, {"a.npy": col, "b.npy": col})
    with pytest.raises(InputError, match="the arrays read would take") as err:
        load_outputs(path)
    assert err.value.field in {"a", "b"}


def test_real_data_is_far_within_the_ratio(tmp_path, monkeypatch):
    """With no floor, the ratio alone: float logits (1x), a boolean keep matrix (6x), one-hot
    float features (80x), string and bytes ids, the 0-d metadata string, np.savez and
    np.savez_compressed alike."""
    monkeypatch.setattr(tables, "DECLARED_FLOOR", 0)
    rng = np.random.default_rng(1)
    base = _base(rng)
    onehot = np.eye(50, dtype=np.float32)[rng.integers(0, 50, N)]
    meta = np.array(json.dumps({"schema": "miaudit.outputs/1"}))
    for save in (np.savez, np.savez_compressed):
        for ids in (
            np.array([f"r{i:05d}" for i in range(N)]),
            np.array([b"r%05d" % i for i in range(N)]),
        ):
            path = tmp_path / "o.npz"
            save(path, **base, record_id=ids, features=onehot, miaudit=meta)
            out = load_outputs(path)
            assert out.n_records == N
        keep = rng.random((16, N)) < 0.5
        logits = rng.normal(size=(16, N, 3)).astype(np.float32)
        save(path := tmp_path / "s.npz", logits=logits, label=base["label"], keep=keep)
        assert load_signals(path).keep.shape == (16, N)


def _parquet(path, extra: dict[str, pa.Array], **kwargs) -> None:
    base = _base()
    cols = {f"logit_{j}": base["logits"][:, j] for j in range(3)}
    table = pa.table({**cols, "label": base["label"], "member": base["member"], **extra})
    pq.write_table(table, path, **kwargs)


def _one_string(length: int, rows: int = N) -> pa.Array:
    return pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(rows, dtype=np.int32)), pa.array(["A" * length])
    )


def test_a_parquet_text_column_of_overlong_values_is_refused_unexpanded(tmp_path):
    """Red team: a 65 KB file whose dictionary-encoded column held one 200 KiB string per row
    took 1 GB once read (base file: 286 MB). A column's values are at most 1,024 bytes, as in
    npz; the lengths are read from the dictionary, nothing expanded."""
    path = tmp_path / "o.parquet"
    _parquet(path, {"junk": _one_string(200 * 1024)}, compression="zstd")
    with pytest.raises(InputError, match="holds a value of 204,800 bytes") as err:
        load_outputs(path)
    assert err.value.field == "junk" and "\n" not in str(err.value)


def test_a_parquet_text_column_expanding_past_the_cap_is_refused(tmp_path, monkeypatch):
    """Values within 1,024 bytes, but one per row of many rows: counted as they would expand."""
    monkeypatch.setattr(tables, "DECLARED_FLOOR", 2**20)
    path = tmp_path / "o.parquet"
    rows = 20_000  # 20 MB once expanded, a few KB on disk
    pq.write_table(
        pa.table({"label": np.zeros(rows, np.int64), "junk": _one_string(1000, rows)}), path
    )
    with pytest.raises(InputError, match="the columns read would take") as err:
        load_outputs(path)
    assert err.value.field == "junk"


def test_a_parquet_column_declaring_far_more_than_the_file_is_refused_unread(tmp_path, monkeypatch):
    """Run-length encoding stores a million equal numbers in a few bytes: the footer's value
    counts are checked before any page is read."""
    monkeypatch.setattr(tables, "DECLARED_FLOOR", 2**20)
    path = tmp_path / "o.parquet"
    rows = 2**19
    pq.write_table(
        pa.table(
            {
                "logit_0": np.zeros(rows),
                "logit_1": np.zeros(rows),
                "label": np.zeros(rows, dtype=np.int64),
            }
        ),
        path,
        compression="zstd",
    )
    read = pq.ParquetFile.read
    monkeypatch.setattr(pq.ParquetFile, "read", lambda *a, **k: pytest.fail("data was read"))
    with pytest.raises(InputError, match="refused before reading it") as err:
        tables.read_table(path)
    monkeypatch.setattr(pq.ParquetFile, "read", read)
    assert err.value.field in {"logit_0", "logit_1", "label"}


def test_parquet_text_nested_in_a_list_is_refused(tmp_path):
    path = tmp_path / "o.parquet"
    _parquet(path, {"tags": pa.array([["a"]] * N)})
    with pytest.raises(InputError, match="inside a list or struct") as err:
        load_outputs(path)
    assert err.value.field == "tags"


def test_parquet_text_columns_read_as_written(tmp_path, monkeypatch):
    """Text read as dictionaries comes back as it was written: string, large string, binary
    and categorical columns, nulls, several row groups, text ids; and real data is far within
    the ratio (no floor)."""
    monkeypatch.setattr(tables, "DECLARED_FLOOR", 0)
    ids = [f"id-{i:06d}" for i in range(N)]
    extra = {
        "record_id": pa.array(ids),
        "site": pa.array(["north", "south"] * (N // 2), type=pa.large_string()),
        "raw": pa.array([b"\x80", None] * (N // 2)),
        "grp": pa.array(["a", "b"] * (N // 2)).dictionary_encode(),
    }
    path = tmp_path / "o.parquet"
    _parquet(path, extra, row_group_size=700)
    out = load_outputs(path)
    assert out.record_id.tolist() == ids
    assert out.columns["site"].tolist()[:2] == ["north", "south"]
    assert out.columns["raw"].tolist()[:2] == [b"\x80", None]
    assert out.columns["grp"].tolist()[:2] == ["a", "b"]
    assert out.values.shape == (N, 3)
