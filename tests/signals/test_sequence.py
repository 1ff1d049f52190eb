"""Reading sequence-signals files (signals/_sequence.py, docs/formats.md): only the named arrays
are decompressed, each after its header's shape is checked against the record and model counts;
malformed metadata, compressed lengths below 1 and membership flags other than 0/1 are refused
in one line naming the file or the field."""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

import miaudit.signals._sequence as sequence
from miaudit.errors import InputError
from miaudit.signals import load_sequence_signals, write_sequence_signals
from tests.simulate_text import sequence_store


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _rewrite(tmp_path: Path, compressed: bool = False, **changes: object) -> Path:
    """A valid store's file with some arrays (or the metadata dict, ``meta``) replaced."""
    arrays = _arrays(write_sequence_signals(sequence_store(), tmp_path / "good.npz"))
    if "meta" in changes:
        value = changes.pop("meta")
        arrays["miaudit"] = np.array(value if isinstance(value, str) else json.dumps(value))
    arrays.update({k: np.asarray(v) for k, v in changes.items()})
    dest = tmp_path / "changed.npz"
    (np.savez_compressed if compressed else np.savez)(dest, **arrays)
    return dest


def _header_only(path: Path, name: str, shape: tuple[int, ...], dtype: str) -> None:
    """Add (or replace) member ``name`` with a header declaring ``shape`` and 16 bytes of data:
    decompressing it would allocate the whole declared array, then fail at the missing data."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": dtype, "fortran_order": False, "shape": shape}
    )
    members = {}
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist() if n != f"{name}.npy"}
    with zipfile.ZipFile(path, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
        z.writestr(f"{name}.npy", buf.getvalue() + bytes(16))


def test_an_array_the_format_does_not_name_is_never_decompressed(tmp_path) -> None:
    store = sequence_store()
    path = write_sequence_signals(store, tmp_path / "s.npz")
    _header_only(path, "junk", (10**8,), "<f8")  # 800 MB declared (a bomb, were it read)
    back = load_sequence_signals(path)
    assert back.roles == store.roles
    np.testing.assert_array_equal(back.models[0].log_prob, store.models[0].log_prob)


@pytest.mark.parametrize(
    ("name", "shape", "dtype"),
    [("keep", (6, 10**8), "|b1"), ("log_prob", (10**8,), "<f8"), ("record_id", (3, 4), "<i8")],
)
def test_a_named_array_is_refused_from_its_header_when_its_shape_is_not_the_records(
    tmp_path, name, shape, dtype
) -> None:
    path = write_sequence_signals(sequence_store(), tmp_path / "s.npz")
    _header_only(path, name, shape, dtype)
    with pytest.raises(InputError, match=r"^\w+: has shape \(.*\) in s\.npz; "):
        load_sequence_signals(path)


def test_arrays_that_inflate_past_the_cap_are_refused(tmp_path, monkeypatch) -> None:
    store = sequence_store()
    flat = dataclasses.replace(
        store,
        models=tuple(
            dataclasses.replace(
                m,
                log_prob=np.full_like(m.log_prob, -1.0),
                mean=np.full_like(m.mean, -1.0),
                var=np.ones_like(m.var),
            )
            for m in store.models
        ),
    )
    monkeypatch.setattr(sequence, "INFLATION_FLOOR", 0)
    stored = write_sequence_signals(flat, tmp_path / "stored.npz")  # np.savez: uncompressed
    assert load_sequence_signals(stored).n_records == store.n_records
    squeezed = tmp_path / "squeezed.npz"
    np.savez_compressed(squeezed, **_arrays(stored))
    with pytest.raises(InputError, match=r"squeezed\.npz holds .* more than 64 times its size"):
        load_sequence_signals(squeezed)


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ("{not json", r"metadata: the miaudit metadata of changed\.npz is not JSON"),
        ("[1, 2]", r"metadata: the miaudit metadata of changed\.npz is not a JSON object"),
        (
            {"schema": sequence.SEQUENCE_SCHEMA},
            r"metadata roles: must be a list of strings in changed\.npz",
        ),
        ({"schema": sequence.SEQUENCE_SCHEMA, "roles": "target"}, "metadata roles: must be a list"),
        ({"schema": sequence.SEQUENCE_SCHEMA, "roles": [1, 2]}, "metadata roles: must be a list"),
        (
            {"schema": sequence.SEQUENCE_SCHEMA, "roles": ["target"], "names": 5},
            "metadata names: must be a list",
        ),
    ],
)
def test_malformed_metadata_is_one_line_naming_the_file_and_field(tmp_path, meta, message) -> None:
    with pytest.raises(InputError, match=message):
        load_sequence_signals(_rewrite(tmp_path, meta=meta))


@pytest.mark.parametrize("value", [0, -57])
def test_a_compressed_length_below_one_is_refused(tmp_path, value) -> None:
    store = sequence_store()
    zl = store.zlib_bytes.copy()
    zl[3] = value  # 0 everywhere scored AUC 0.5; negative reversed zlib's ranking
    with pytest.raises(InputError, match=r"zlib_bytes: must be ≥ 1"):
        load_sequence_signals(_rewrite(tmp_path, zlib_bytes=zl))
    with pytest.raises(InputError, match=r"zlib_bytes: must be ≥ 1"):
        dataclasses.replace(store, zlib_bytes=zl)


@pytest.mark.parametrize("name", ["keep", "population"])
def test_membership_flags_other_than_0_1_are_refused(tmp_path, name) -> None:
    store = sequence_store()
    flags = getattr(store, name).astype(np.int64) * 7  # astype(bool) read 7 as True
    with pytest.raises(InputError, match=rf"{name}: must hold only 0/1 .* in changed\.npz"):
        load_sequence_signals(_rewrite(tmp_path, **{name: flags}))


def test_a_file_that_is_no_npz_is_one_line(tmp_path) -> None:
    np.save(tmp_path / "x.npy", np.zeros(3))
    (tmp_path / "x.npz").write_bytes((tmp_path / "x.npy").read_bytes())
    with pytest.raises(InputError, match=r"sequence signals: cannot read x\.npz"):
        load_sequence_signals(tmp_path / "x.npz")


def test_narrow_arrays_are_counted_as_the_64_bit_numbers_they_become(tmp_path, monkeypatch) -> None:
    """Red team: a 235 KB file of float16 zeros (20 M tokens per model) peaked at 1.2 GB: its
    headers said 2 bytes a value, the reader makes 8 (and the floor was 256 MiB)."""
    monkeypatch.setattr(sequence, "INFLATION_FLOOR", 0)
    monkeypatch.setattr(sequence, "MAX_INFLATION", 2)
    wide = _rewrite(tmp_path)
    assert load_sequence_signals(wide).n_records > 0  # 64-bit values: about the file's size
    arrays = _arrays(wide)
    narrow = {k: arrays[k].astype(np.float16) for k in ("log_prob", "mean", "var")}
    (tmp_path / "n").mkdir()
    with pytest.raises(InputError, match="more than 2 times its size"):
        load_sequence_signals(_rewrite(tmp_path / "n", **narrow))


class _Stats:
    def __init__(self, n: int) -> None:
        self.log_prob, self.mean, self.var = np.full(n, -1.0), np.full(n, -1.0), np.ones(n)


class _Model:
    """Scores the first ``context`` characters of each text, one token per character."""

    def __init__(self, context: int) -> None:
        self.context = context

    def token_stats(self, texts, batch_size=16):  # type: ignore[no-untyped-def]
        return [_Stats(min(len(t), self.context)) for t in texts]

    def scored_chars(self, texts):  # type: ignore[no-untyped-def]
        return [min(len(t), self.context) for t in texts]


def test_zlib_bytes_is_of_the_prefix_the_target_scored_whatever_its_place() -> None:
    texts = ["a fairly long text about a knee and a parcel " * 3, "short one"]
    store = sequence.sequence_signals(
        [_Model(1000), _Model(20)], ["base", "target"], texts, np.array([1, 0])
    )
    assert store.zlib_bytes.tolist() == sequence.zlib_bytes([texts[0][:20], texts[1]]).tolist()
    assert store.zlib_bytes[0] != sequence.zlib_bytes(texts[:1])[0]


def test_a_target_that_cannot_say_what_it_scored_is_refused_before_scoring() -> None:
    """Compressing the whole text for such a model would repeat the bug for long texts."""

    class Bare:
        def token_stats(self, texts, batch_size=16):  # type: ignore[no-untyped-def]
            raise AssertionError("scored before the refusal")

    with pytest.raises(InputError, match=r"^models: the target model \(Bare\) has no scored_chars"):
        sequence.sequence_signals([Bare()], ["target"], ["some text"], np.array([1]))
    Bare.scored_chars = lambda self, texts: [len(t) + 1 for t in texts]  # type: ignore[attr-defined]
    with pytest.raises(InputError, match=r"^models: scored_chars gave 10 for text 0, of 9 char"):
        sequence.sequence_signals([Bare()], ["target"], ["some text"], np.array([1]))
    with pytest.raises(InputError, match=r"^roles: 2 roles for 1 models"):
        sequence.sequence_signals([_Model(9)], ["target", "base"], ["text"], np.array([1]))
