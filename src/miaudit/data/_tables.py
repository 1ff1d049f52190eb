"""Reading arrays out of .npz, .parquet and .csv files: the one loader behind every format.

A file becomes a mapping ``name -> numpy array`` plus metadata. 2-D arrays (``logits``,
``probs``) may be stored as one array (npz), as a fixed-size list column (Parquet), or as wide
numbered columns ``logit_0 … logit_{C-1}`` / ``prob_0 …`` (Parquet and CSV).
"""

from __future__ import annotations

import json
import math
import mmap
import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from miaudit._io import npz_header_or_reason
from miaudit.errors import InputError

SUFFIXES = (".npz", ".parquet", ".csv")
#: A folder of ``<name>.npy`` files plus ``meta.json``: the large-data format. Arrays are opened
#: memory-mapped (``mmap_mode="r"``), so a store larger than memory can be read chunk by chunk.
NPY_DIR_META = "meta.json"
#: Records per chunk when memory-mapped arrays are read in pieces (validation, signals, attacks):
#: 65,536 records of a (models, records, classes) float32 store is a few MiB per model.
CHUNK_RECORDS = 1 << 16
_WIDE = {"logits": re.compile(r"^logit_(\d+)$"), "probs": re.compile(r"^prob_(\d+)$")}
META_KEY = "miaudit"


@dataclass(frozen=True)
class RawTable:
    """Arrays read from one file, before any validation of their meaning."""

    path: Path
    format: str
    arrays: dict[str, np.ndarray]
    meta: dict[str, object] = field(default_factory=dict)


def read_table(path: str | Path, field_name: str = "input") -> RawTable:
    """The arrays of one npz, Parquet or CSV file or ``.npy`` folder, each bounded before it is
    read (declared sizes, text lengths, decompression): every file miaudit reads is untrusted.
    A file that cannot be read, or would take far more memory than its size explains, is an
    :class:`InputError` naming ``field_name``."""
    p = Path(path)
    suffix = p.suffix.lower()
    if p.is_dir():
        return _read_npy_dir(p, field_name)
    if suffix not in SUFFIXES:
        raise InputError(
            field_name,
            f"unknown file type {p.suffix or '(none)'!r} of {str(p)!r}; expected one of {', '.join(SUFFIXES)}",
        )
    if not p.is_file():
        raise InputError(field_name, f"cannot read {str(p)!r}: no such file")
    try:
        if suffix == ".npz":
            return _read_npz(p)
        if suffix == ".parquet":
            return _read_parquet(p)
        return _read_csv(p)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parser failure is a bad file, reported in one line
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(field_name, f"cannot read {str(p)!r} as {suffix[1:]}: {msg}") from None


#: The arrays a reader looks for by name: always read (and refused in one line when their
#: shape is wrong). Any other array of two or more dimensions in an npz file is never
#: decompressed (an unused array could be a decompression bomb: 3 MB on disk, 3 GB in memory);
#: other one-dimensional arrays are extra columns (``--slices``).
NAMED_ARRAYS = frozenset(
    {"logits", "probs", "features", "keep", "label", "member", "record_id", "population"}
)


def _read_npz(p: Path) -> RawTable:
    try:
        with np.load(p, allow_pickle=False) as z:
            headers = {k: _npz_header(p, z, k) for k in z.files}  # nothing decompressed
            read = {k: h for k, h in headers.items() if _is_read(k, h)}
            _check_extra_columns(p, read)
            _check_declared_size(p, read)
            arrays = {k: _npz_array(p, z, k) for k in read}
    except InputError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise InputError("input", f"cannot read {str(p)!r} as npz: {exc}") from None
    meta: dict[str, object] = {}
    if META_KEY in arrays:
        meta = _meta_json(p, str(arrays.pop(META_KEY)))
    return RawTable(p, "npz", arrays, meta)


_Header = tuple[tuple[int, ...], np.dtype]


def _npz_header(p: Path, z: Any, name: str) -> _Header:
    """The header of one npz member, or an InputError naming it: a member that is not an array
    as ``np.savez`` writes one is refused before anything is decompressed (numpy would inflate
    a member without the ``.npy`` suffix, or of npy format 3.0, whole: red team, 350 KB files
    that took 530 to 830 MB)."""
    header = npz_header_or_reason(z, name)
    if isinstance(header, str):
        raise InputError(
            name,
            f"is not an array as numpy.savez writes one in {str(p)!r} ({header}); nothing was decompressed",
        )
    return header


def _is_read(name: str, header: _Header) -> bool:
    """Whether an npz member is one a reader uses, from its header alone: a named array or a
    column (1-D)."""
    return name in NAMED_ARRAYS or len(header[0]) < 2


#: Extra columns (1-D arrays no reader names: slices, feature columns) are decompressed only
#: when their headers say they are columns of this file: one value per record (the ``label``
#: array's length), at most :data:`MAX_COLUMN_ITEMSIZE` bytes each, and together no more than
#: :data:`EXTRA_COLUMNS_RATIO` times the named arrays (or :data:`EXTRA_COLUMNS_FLOOR`). A
#: 2 MB file with one 2 GB unused array was decompressed whole before.
MAX_COLUMN_ITEMSIZE = 1024
EXTRA_COLUMNS_RATIO = 64
EXTRA_COLUMNS_FLOOR = 256 * 2**20


def _check_extra_columns(p: Path, headers: dict[str, _Header]) -> None:
    label = headers.get("label")
    n = label[0][0] if label is not None and len(label[0]) == 1 else None
    named = extra = 0
    for name, header in headers.items():
        if name == META_KEY:
            continue
        shape, dtype = header
        size = _nbytes(header)
        if name in NAMED_ARRAYS:
            named += size
            continue
        if len(shape) == 1 and n is not None and shape[0] != n:
            raise InputError(
                name, f"has {_figure(shape[0])} values in {str(p)!r}; its label has {n} records"
            )
        if dtype.itemsize > MAX_COLUMN_ITEMSIZE:
            raise InputError(
                name,
                f"holds values of {dtype.itemsize} bytes each in {str(p)!r} (dtype {dtype.str}); a column's values are at most {MAX_COLUMN_ITEMSIZE}",
            )
        extra += size
    if extra > max(EXTRA_COLUMNS_FLOOR, EXTRA_COLUMNS_RATIO * named):
        raise InputError(
            "input",
            f"{str(p)!r} holds {_figure(extra)} bytes of extra columns, more than {EXTRA_COLUMNS_RATIO} times its named arrays ({named:,} bytes)",
        )


#: What the arrays read from a file may take once read (their headers' shapes times the bytes
#: of each value as read, :func:`_nbytes`; a Parquet file's column chunks, uncompressed and as
#: read), at most: :data:`DECLARED_RATIO`
#: times the file's size on disk, or :data:`DECLARED_FLOOR` for a small file. Real data hardly
#: compresses: float logits and probabilities 1-2x (deflate, measured), a boolean ``keep`` matrix
#: 6x, int64 0/1 columns 27x, one-hot float features 80x, while zeros deflate about 1,000x
#: (a 350 KB file declared 300 MiB: red team). 200x is far above the first and far below the
#: last; the floor keeps every file below 330 KB readable whatever it holds (64 MiB as read,
#: a few times that at the peak of an audit). Numbers count 8 bytes each, whatever their
#: width on disk.
DECLARED_RATIO = 200
DECLARED_FLOOR = 64 * 2**20


def _nbytes(header: _Header) -> int:
    """Bytes an array takes once read: numbers as the float64/int64 miaudit computes in (int8
    logits declared an eighth of what they became: a 125 KB file took 1.47 GB, red team), text
    at its own width. Exact: a header may claim 10**400 values."""
    shape, dtype = header
    width = dtype.itemsize if dtype.kind in "USV" else max(dtype.itemsize, 8)
    return math.prod(shape) * width


def _figure(n: int) -> str:
    """A byte count for a message: a header may declare 10**800 (a number too long to print)."""
    return f"{n:,}" if n < 10**15 else f"about 10^{len(str(n)) - 1}"


def _declared_cap(p: Path) -> int:
    return max(DECLARED_FLOOR, DECLARED_RATIO * p.stat().st_size)


def _check_declared_size(p: Path, headers: dict[str, _Header]) -> None:
    """Refuse, naming its largest array, a file whose arrays to be read declare more than
    :func:`_declared_cap` bytes, before any is decompressed (numpy reads what the header
    declares, however little the member holds)."""
    sizes = {name: _nbytes(header) for name, header in headers.items()}
    total, cap = sum(sizes.values()), _declared_cap(p)
    if total > cap:
        name = max(sizes, key=lambda k: sizes[k])
        shape, dtype = headers[name]
        shown = str(shape) if len(str(shape)) <= 60 else f"of {len(shape)} dimensions"
        raise InputError(
            name,
            f"declares {_figure(sizes[name])} bytes in {str(p)!r} (shape {shown}, dtype {dtype.str}): "
            f"the arrays read would take {_figure(total)} bytes, more than {DECLARED_RATIO} times the "
            f"file's {p.stat().st_size:,} bytes (or {DECLARED_FLOOR // 2**20} MiB); refused before decompressing",
        )


def _npz_array(p: Path, z: Any, name: str) -> np.ndarray:
    """One array of an npz file. An object array (numpy pickles it: ids taken from pandas, for
    instance) is refused naming the array and the fix, since unpickling a file can run code."""
    try:
        array: np.ndarray = z[name]
    except ValueError as exc:
        if "allow_pickle" not in str(exc):
            raise
        raise InputError(
            name,
            f"is stored in {str(p)!r} as a Python object array (pickled), which miaudit never loads "
            f"(loading a pickle can run code); save it as strings or numbers instead, e.g. "
            f"np.savez(..., {name}=np.asarray(values).astype(str)), or write the table to Parquet",
        ) from None
    return array


def _meta_json(p: Path, text: str | bytes) -> dict[str, object]:
    """The file's miaudit metadata: a JSON object, or an InputError naming the file."""
    try:
        meta = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested past reason
        raise InputError("metadata", f"the miaudit metadata of {str(p)!r} is not JSON") from None
    if not isinstance(meta, dict):
        raise InputError("metadata", f"the miaudit metadata of {str(p)!r} is not a JSON object")
    return meta


def _regular_file(path: Path, field_name: str) -> Path:
    """``path`` if it is a regular file of its folder: a link could point anywhere (another
    user's file, a device), and opening a FIFO would wait forever (red team)."""
    import stat

    try:
        mode = os.lstat(path).st_mode
    except OSError as exc:
        raise InputError(field_name, f"cannot read {str(path)!r} ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        kind = "a link" if stat.S_ISLNK(mode) else "not a regular file"
        raise InputError(
            field_name, f"{str(path)!r} is {kind}: a signals folder holds only its own files"
        )
    return path


def _read_npy_dir(p: Path, field_name: str) -> RawTable:
    meta_path = p / NPY_DIR_META
    if not meta_path.exists() and not meta_path.is_symlink():
        raise InputError(
            field_name,
            f"{str(p)!r} is a folder without {NPY_DIR_META}: not a folder of .npy signals",
        )
    meta = _meta_json(meta_path, _regular_file(meta_path, field_name).read_bytes())
    files = [_regular_file(f, field_name) for f in sorted(p.glob("*.npy"))]
    try:
        arrays = {f.stem: np.load(f, mmap_mode="r", allow_pickle=False) for f in files}
    except (OSError, ValueError) as exc:
        raise InputError(
            field_name, f"cannot read {str(p)!r} as a folder of .npy files: {exc}"
        ) from None
    return RawTable(p, "npy", arrays, meta)


def is_mapped(array: object) -> bool:
    """Whether ``array`` is (a view of) a memory-mapped file."""
    return _mapping(array) is not None


def release(array: object) -> None:
    """Drop the pages of a memory-mapped array from this process's resident memory (they stay
    in the OS page cache and are read back on the next access); a no-op for other arrays.

    Without it, reading a mapped file chunk by chunk still grows the resident set to the whole
    file: each page touched stays mapped.
    """
    mm = _mapping(array)
    if mm is not None and hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        mm.madvise(mmap.MADV_DONTNEED)


def record_chunks(array: np.ndarray, *, axis: int = 1, size: int | None = None) -> Iterator[slice]:
    """Slices that cover axis ``axis`` (the records) of ``array`` in order, ``size`` records at a
    time (default :data:`CHUNK_RECORDS`): the way to read an array larger than memory piece by
    piece.

    Each chunk's pages of a memory-mapped ``array`` are released (:func:`release`) once the
    caller has used it (when the next slice is asked for, and after the last), so the resident
    memory stays about one chunk; for an array in memory nothing is released. Typical use::

        if is_mapped(logits):
            for rows in record_chunks(logits, axis=1):
                out[:, rows] = f(logits[:, rows])
    """
    step = CHUNK_RECORDS if size is None else size
    if step < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    n = array.shape[axis]
    for lo in range(0, n, step):
        yield slice(lo, min(lo + step, n))
        release(array)


def _mapping(array: object) -> mmap.mmap | None:
    obj, seen = array, 0
    while obj is not None and seen < 64:  # views of views of a np.memmap, whose base is the mmap
        if isinstance(obj, mmap.mmap):
            return obj
        obj, seen = getattr(obj, "base", None), seen + 1
    return None


def _read_parquet(p: Path) -> RawTable:
    """A Parquet file's columns, each bounded before it is turned into numpy: what the footer
    declares (:func:`_parquet_declared`, checked before any data page is read), and text or
    bytes read as dictionaries so that each value's length and the decoded total are checked
    before the values are expanded (:func:`_check_text_column`: a 65 KB file held a
    dictionary-encoded column of one 200 KiB string per row, 1 GB once read: red team)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with pq.ParquetFile(p) as footer:  # the footer only
        schema = footer.schema_arrow
    if len(set(schema.names)) != len(schema.names):
        twice = next(n for n in schema.names if schema.names.count(n) > 1)
        raise InputError("input", f"{str(p)!r} has the column {twice!r} twice")
    text = [f.name for f in schema if _is_text(f.type)]
    for f in schema:
        if f.name not in text and _holds_text(f.type):
            raise InputError(
                f.name,
                f"holds text or bytes inside a list or struct in {str(p)!r}; miaudit reads text only as a column of its own",
            )
    # Parquet's own extension types (JSON text, UUIDs) read as their storage: pyarrow reads a
    # JSON column as a dictionary only so; each column is restored to its type below.
    with pq.ParquetFile(p, read_dictionary=text, arrow_extensions_enabled=False) as pf:
        declared = _parquet_declared(p, pf)
        _check_parquet_size(p, declared, "before reading it")
        table = pf.read()
    meta: dict[str, object] = {}
    md = schema.metadata or {}
    if META_KEY.encode() in md:
        meta = _meta_json(p, md[META_KEY.encode()])
    for name in text:  # values checked, then expanded to the type written
        declared[name] = _check_text_column(p, name, table.column(name))
        _check_parquet_size(p, declared, "before expanding its values", name)
    arrays: dict[str, np.ndarray] = {}
    for name in table.column_names:
        col = table.column(name)
        if col.type != schema.field(name).type:
            col = _as_written(col, schema.field(name).type)
        col = col.combine_chunks()
        if (
            pa.types.is_fixed_size_list(col.type)
            or pa.types.is_list(col.type)
            or pa.types.is_large_list(col.type)
        ):
            arrays[name] = _list_column_to_2d(name, col)
        else:
            arrays[name] = col.to_numpy(zero_copy_only=False)
    return RawTable(p, "parquet", _gather_wide(arrays), meta)


def _as_written(col: Any, arrow_type: Any) -> Any:
    """A column read as a dictionary or as its storage, as it was written (``arrow_type``)."""
    import pyarrow as pa

    if pa.types.is_dictionary(col.type) and not pa.types.is_dictionary(arrow_type):
        col = col.cast(col.type.value_type)  # dense values first: no cast to a view type
    return col if col.type == arrow_type else col.cast(arrow_type)


def _is_text(arrow_type: Any) -> bool:
    """Whether a pyarrow type is variable-length text or bytes (Parquet's BYTE_ARRAY), or a
    dictionary of them."""
    import pyarrow as pa

    t = arrow_type.value_type if pa.types.is_dictionary(arrow_type) else arrow_type
    if isinstance(t, pa.BaseExtensionType):
        t = t.storage_type
    return bool(
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_string_view(t)
        or pa.types.is_binary_view(t)
    )


def _holds_text(arrow_type: Any) -> bool:
    """Whether a pyarrow type is or nests text or bytes (a list of strings, a struct with one)."""
    import pyarrow as pa

    if _is_text(arrow_type):
        return True
    if isinstance(arrow_type, pa.BaseExtensionType):
        return _holds_text(arrow_type.storage_type)
    return any(_holds_text(arrow_type.field(i).type) for i in range(arrow_type.num_fields))


#: Bytes per value once read, by Parquet physical type: numbers as the float64/int64 miaudit
#: computes in (as npz's); BYTE_ARRAY counts an offset and a numpy pointer per value on top of
#: its pages (its values are checked once read).
_PHYSICAL_WIDTH = {"BOOLEAN": 8, "INT32": 8, "INT64": 8, "INT96": 12, "FLOAT": 8, "DOUBLE": 8}


def _parquet_declared(p: Path, pf: Any) -> dict[str, int]:
    """Bytes each top-level column declares in the footer, over every row group: the larger of
    its pages uncompressed and its values times their width (run-length and dictionary
    encodings store a million equal numbers in a few bytes). A fixed-size binary column of
    values longer than :data:`MAX_COLUMN_ITEMSIZE` is refused naming it."""
    md, top = pf.metadata, set(pf.schema_arrow.names)
    declared: dict[str, int] = {}
    for i in range(md.num_columns):
        leaf = pf.schema.column(i)
        name = leaf.path if leaf.path in top else leaf.path.split(".")[0]
        physical = leaf.physical_type
        if physical == "FIXED_LEN_BYTE_ARRAY" and leaf.length > MAX_COLUMN_ITEMSIZE:
            raise InputError(
                name,
                f"holds values of {leaf.length} bytes each in {str(p)!r}; a column's values are at most {MAX_COLUMN_ITEMSIZE}",
            )
        width = (
            leaf.length if physical == "FIXED_LEN_BYTE_ARRAY" else _PHYSICAL_WIDTH.get(physical, 16)
        )
        for g in range(md.num_row_groups):
            chunk = md.row_group(g).column(i)
            size = max(chunk.total_uncompressed_size, chunk.num_values * width)
            declared[name] = declared.get(name, 0) + size
    return declared


def _check_parquet_size(
    p: Path, declared: dict[str, int], when: str, name: str | None = None
) -> None:
    """Refuse a file whose columns would take more than :func:`_declared_cap` bytes, naming
    ``name`` (the column just counted) or else the largest."""
    total, cap = sum(declared.values()), _declared_cap(p)
    if total > cap:
        name = name or max(declared, key=lambda k: declared[k])
        raise InputError(
            name,
            f"declares {_figure(declared[name])} bytes in {str(p)!r}: the columns read would take {_figure(total)} bytes, "
            f"more than {DECLARED_RATIO} times the file's {p.stat().st_size:,} bytes (or {DECLARED_FLOOR // 2**20} MiB); refused {when}",
        )


def _check_text_column(p: Path, name: str, col: Any) -> int:
    """The bytes a text column read as a dictionary (``col``: a pyarrow ChunkedArray of
    dictionary arrays) takes expanded, counting an offset and a pointer per value, after
    checking that no value is longer than :data:`MAX_COLUMN_ITEMSIZE` bytes (refused naming
    the column otherwise): from the dictionaries' lengths, nothing expanded."""
    import pyarrow.compute as pc

    total = 0
    for chunk in col.chunks:
        lengths = pc.binary_length(chunk.dictionary).fill_null(0).to_numpy(zero_copy_only=False)
        longest = int(lengths.max()) if len(lengths) else 0
        if longest > MAX_COLUMN_ITEMSIZE:
            raise InputError(
                name,
                f"holds a value of {longest:,} bytes in {str(p)!r}; a column's values are at most {MAX_COLUMN_ITEMSIZE:,} bytes",
            )
        indices = chunk.indices.drop_null().to_numpy(zero_copy_only=False)
        total += int(lengths[indices].sum()) + 16 * len(chunk)
    return total


def _list_column_to_2d(name: str, col: Any) -> np.ndarray:
    """A pyarrow list column (``col``: pyarrow has no type information) as a 2-D array."""
    import pyarrow as pa

    if pa.types.is_fixed_size_list(col.type):
        flat = np.asarray(col.flatten().to_numpy(zero_copy_only=False))
        return flat.reshape(len(col), col.type.list_size)
    lengths = np.asarray(col.value_lengths().to_numpy(zero_copy_only=False))
    if len(lengths) and (lengths != lengths[0]).any():
        raise InputError(name, "rows have differing numbers of values")
    flat = np.asarray(col.flatten().to_numpy(zero_copy_only=False))
    return flat.reshape(len(col), int(lengths[0]) if len(lengths) else 0)


def _read_csv(p: Path) -> RawTable:
    import csv

    import pandas as pd

    try:
        # utf-8-sig: Excel's "CSV UTF-8" starts with a BOM, which made the first name
        # "\ufeffrecord_id" here (pandas strips it) and the ids numbers again (red team)
        with open(p, newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), [])
        # Ids are text as written: inferred as numbers, "0007" became 7 (check-record and the
        # pseudonyms then knew the record as "7": red team), and ids past 2**53 were rounded.
        ids_as_text = {"record_id": str} if "record_id" in header else None
        frame = pd.read_csv(p, dtype=ids_as_text)
    except pd.errors.EmptyDataError:
        raise InputError("input", f"{str(p)!r} is empty") from None
    except (pd.errors.ParserError, csv.Error, UnicodeDecodeError) as exc:
        raise InputError(
            "input",
            f"{str(p)!r} is not a readable UTF-8 CSV file ({str(exc).splitlines()[0][:200]})",
        ) from None
    seen: set[str] = set()
    for name in header:
        if name in seen:  # pandas would rename the second one and it would be silently ignored
            raise InputError("input", f"{str(p)!r} has the column {name!r} twice")
        seen.add(name)
    arrays = {str(c): frame[c].to_numpy() for c in frame.columns}
    return RawTable(p, "csv", _gather_wide(arrays), {})


def _gather_wide(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Fold ``logit_0 … logit_{C-1}`` columns into one ``logits`` array (likewise ``prob_*``)."""
    out = dict(arrays)
    for name, pattern in _WIDE.items():
        cols = sorted(
            ((int(m.group(1)), k) for k in arrays if (m := pattern.match(k))), key=lambda t: t[0]
        )
        if not cols:
            continue
        idx = [i for i, _ in cols]
        if idx != list(range(len(idx))):
            raise InputError(
                name, f"wide columns must be numbered 0..C-1 without gaps, got {idx[:5]}…"
            )
        if name in out:
            raise InputError(name, "given both as one column and as numbered columns")
        out[name] = np.column_stack([np.asarray(arrays[k], dtype=np.float64) for _, k in cols])
        for _, k in cols:
            del out[k]
    return out
