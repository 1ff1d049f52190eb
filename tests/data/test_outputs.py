"""One loader, one validation: every format loads the same outputs; every bad input is named."""

from __future__ import annotations

import os
import stat

import numpy as np
import pandas as pd
import pytest

from miaudit.data import ModelOutputs, SignalsStore, load_outputs, load_signals
from miaudit.errors import InputError
from tests.conftest import simulated_outputs


def _frame(o: ModelOutputs) -> pd.DataFrame:
    cols = {f"logit_{j}": o.values[:, j] for j in range(o.n_classes)}
    return pd.DataFrame(
        {**cols, "label": o.label, "member": o.member, "record_id": o.record_id, **o.columns}
    )


@pytest.mark.parametrize("suffix", [".npz", ".parquet", ".csv"])
def test_every_format_loads_the_same_outputs(tmp_path, suffix):
    o = simulated_outputs(n=50)
    path = tmp_path / f"out{suffix}"
    if suffix == ".csv":
        _frame(o).to_csv(path, index=False)
    else:
        o.save(path)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # membership: restricted
    back = load_outputs(path)
    np.testing.assert_allclose(back.values, o.values, rtol=1e-15)
    np.testing.assert_array_equal(back.label, o.label)
    np.testing.assert_array_equal(back.member, o.member)
    # a CSV's ids are its text (test_csv_ids_are_read_as_written); the other formats keep a type
    ids = o.record_id.astype(str) if suffix == ".csv" else o.record_id
    np.testing.assert_array_equal(back.record_id, ids)
    assert list(back.columns) == ["group"]
    assert back.kind == "logits"


def test_csv_ids_are_read_as_written(tmp_path):
    """Red team: CSV ids with leading zeros were inferred as integers ("0007" became 7), so
    check-record and the pseudonyms no longer matched the user's ids; ids past 2**53 were
    rounded. The same ids in Parquet or npz keep their type."""
    o = simulated_outputs(n=50)
    frame = _frame(o)
    frame["record_id"] = [f"{i:04d}" for i in range(50)]
    frame.loc[49, "record_id"] = str(2**53 + 1)
    frame.to_csv(tmp_path / "ids.csv", index=False)
    back = load_outputs(tmp_path / "ids.csv")
    assert back.record_id.tolist() == frame["record_id"].tolist()
    assert back.record_id[7] == "0007"
    # Excel's "CSV UTF-8" writes a byte-order mark first: the first column's name held it
    frame[["record_id", *[c for c in frame.columns if c != "record_id"]]].to_csv(
        tmp_path / "bom.csv", index=False, encoding="utf-8-sig"
    )
    assert load_outputs(tmp_path / "bom.csv").record_id[7] == "0007"
    frame["record_id"] = np.arange(50, dtype=np.int64)
    frame.to_parquet(tmp_path / "ids.parquet")
    assert load_outputs(tmp_path / "ids.parquet").record_id.dtype.kind == "i"
    frame["record_id"] = [str(i) if i else "" for i in range(50)]  # a missing id
    frame.to_csv(tmp_path / "gap.csv", index=False)
    with pytest.raises(InputError, match="missing values"):
        load_outputs(tmp_path / "gap.csv")


def test_parquet_wide_columns_and_probs(tmp_path):
    p = np.array([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    df = pd.DataFrame(
        {"prob_0": p[:, 0], "prob_1": p[:, 1], "label": [1, 0, 1], "member": [1, 0, 0]}
    )
    df.to_parquet(tmp_path / "w.parquet")
    o = load_outputs(tmp_path / "w.parquet")
    assert o.kind == "probs" and o.n_classes == 2 and not o.has_record_id
    np.testing.assert_array_equal(o.record_id, [0, 1, 2])


def _write_csv(path, **cols):
    pd.DataFrame(cols).to_csv(path, index=False)


GOOD = {
    "logit_0": [0.1, 0.2, 0.3],
    "logit_1": [0.3, 0.1, 0.0],
    "label": [0, 1, 1],
    "member": [1, 0, 1],
}


def _bad(**changes):
    cols = {**GOOD, **changes}
    return {k: v for k, v in cols.items() if v is not None}


BAD_CSV = [
    (_bad(label=None), "label: missing column"),
    (_bad(member=None), "member: missing column"),
    (_bad(logit_0=None, logit_1=None), "need 'logits' or 'probs'"),
    (_bad(logit_0=[0.1, float("nan"), 0.3]), "logits: contains NaN or inf"),
    (_bad(logit_1=[0.1, float("inf"), 0.3]), "logits: contains NaN or inf"),
    (_bad(label=[0, 2, 1]), "label: label 2 at row 1 is outside \\[0, 2\\)"),
    (_bad(label=[0, -1, 1]), "outside"),
    (_bad(label=[0, 0.5, 1]), "labels must be integers"),
    (_bad(member=[1, 1, 1]), "only one membership class"),
    (_bad(member=[1, 2, 0]), "member: values must be 0 or 1"),
    (_bad(record_id=[4, 4, 5]), "record_id: record ids are not unique"),
    (  # red team: two look-alike records, two pseudonyms, check-record answered either
        _bad(record_id=["Jos\u00e9", "Jose\u0301", "Ana"]),
        r"record_id: record ids 'Jos\\xe9' and 'Jose\\u0301' differ only in Unicode form",
    ),
    (_bad(record_id=["\uff11", "1", "2"]), "differ only in Unicode form"),  # full-width 1
    (
        {
            "prob_0": [0.5, -0.1, 0.3],
            "prob_1": [0.5, 1.1, 0.7],
            "label": [0, 1, 1],
            "member": [1, 0, 1],
        },
        "probs: negative value -0.1 in row 1: probabilities are never negative; these look like logits",
    ),
    (
        {
            "prob_0": [0.5, 0.2, 0.3],
            "prob_1": [0.5, 0.2, 0.7],
            "label": [0, 1, 1],
            "member": [1, 0, 1],
        },
        "probs: row \\(1,\\) sums to 0.4",
    ),
    ({"logit_0": [], "logit_1": [], "label": [], "member": []}, "empty input"),
    (
        {"logit_0": [0.1, 0.2], "logit_2": [0.1, 0.2], "label": [0, 1], "member": [0, 1]},
        "without gaps",
    ),
]


@pytest.mark.parametrize("cols,message", BAD_CSV)
def test_bad_csv_inputs(tmp_path, cols, message):
    path = tmp_path / "bad.csv"
    _write_csv(path, **cols)
    with pytest.raises(InputError, match=message):
        load_outputs(path)


def test_differing_lengths_in_npz(tmp_path):
    np.savez(
        tmp_path / "d.npz",
        logits=np.zeros((3, 2)),
        label=np.zeros(2, int),
        member=np.array([0, 1, 0]),
    )
    with pytest.raises(InputError, match="differing lengths"):
        load_outputs(tmp_path / "d.npz")


def test_both_logits_and_probs(tmp_path):
    np.savez(
        tmp_path / "b.npz",
        logits=np.zeros((2, 2)),
        probs=np.full((2, 2), 0.5),
        label=[0, 1],
        member=[0, 1],
    )
    with pytest.raises(InputError, match="exactly one"):
        load_outputs(tmp_path / "b.npz")


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("x.json", b"{}", "unknown file type '.json'"),
        ("x.npz", b"not a zip", "cannot read"),
        ("x.parquet", b"PAR1garbage", "cannot read"),
        ("x.csv", b"", "is empty"),
    ],
)
def test_unreadable_files(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        load_outputs(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_outputs(tmp_path / "nope.parquet")


def _store(k=4, n=6, c=3, queries=None):
    rng = np.random.default_rng(0)
    shape = (k, n, c) if queries is None else (k, n, queries, c)
    keep = np.zeros((k, n), bool)
    keep[0::2, :4:2] = True
    keep[1::2, 1:4:2] = True
    pop = np.zeros(n, bool)
    pop[4:] = True
    return SignalsStore.from_arrays(
        logits=rng.normal(size=shape).astype(np.float32),
        label=rng.integers(0, c, n),
        keep=keep,
        population=pop,
        record_id=np.array([f"r{i}" for i in range(n)]),
        target=0,
        info={"dataset": "test"},
    )


@pytest.mark.parametrize("suffix", [".npz", ".parquet"])
@pytest.mark.parametrize("queries", [None, 2])
def test_signals_round_trip(tmp_path, suffix, queries):
    s = _store(queries=queries)
    path = tmp_path / f"sig{suffix}"
    s.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    back = load_signals(path)
    np.testing.assert_array_equal(back.logits, s.logits)
    assert back.logits.dtype == np.float32
    np.testing.assert_array_equal(back.keep, s.keep)
    np.testing.assert_array_equal(back.population, s.population)
    np.testing.assert_array_equal(back.record_id, s.record_id)
    assert (
        back.target == 0
        and back.info.to_meta() == {"dataset": "test"}
        and back.n_queries == (queries or 1)
    )


def test_signals_validation():
    s = _store()
    with pytest.raises(InputError, match="keep: keep matrix has shape \\(3, 6\\), expected"):
        SignalsStore.from_arrays(logits=s.logits, label=s.label, keep=s.keep[:3])
    keep = s.keep.copy()
    keep[0, 5] = True
    with pytest.raises(InputError, match="population"):
        SignalsStore.from_arrays(logits=s.logits, label=s.label, keep=keep, population=s.population)
    with pytest.raises(InputError, match="target"):
        SignalsStore.from_arrays(logits=s.logits, label=s.label, keep=s.keep, target=9)
    bad = s.logits.copy()
    bad[1, 2, 0] = np.nan
    with pytest.raises(InputError, match="logits: contains NaN"):
        SignalsStore.from_arrays(logits=bad, label=s.label, keep=s.keep)


def test_outputs_loader_points_to_signals_loader(tmp_path):
    _store().save(tmp_path / "s.npz")
    with pytest.raises(InputError, match="load_signals"):
        load_outputs(tmp_path / "s.npz")


def test_no_partial_file_on_failure(tmp_path, monkeypatch):
    import miaudit.data._writers as w

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(w, "_write_parquet", boom)
    with pytest.raises(RuntimeError):
        simulated_outputs(n=20).save(tmp_path / "o.parquet")
    assert list(tmp_path.iterdir()) == []


def _npz_with(path, extra: dict[str, dict]) -> None:
    """Three records, and for each extra name only a header (its data never needed)."""
    import io
    import zipfile

    from numpy.lib import format as npf

    arrays = {
        "logits": np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.5]]),
        "label": np.array([0, 1, 0]),
        "member": np.array([1, 0, 1]),
    }
    with zipfile.ZipFile(path, "w") as z:
        for name, value in arrays.items():
            buf = io.BytesIO()
            np.save(buf, value)
            z.writestr(f"{name}.npy", buf.getvalue())
        for name, header in extra.items():
            buf = io.BytesIO()
            npf.write_array_header_1_0(buf, {"fortran_order": False, **header})
            z.writestr(f"{name}.npy", buf.getvalue() + b"\0" * 64)


@pytest.mark.parametrize(
    ("header", "words"),
    [
        ({"descr": "<f8", "shape": (250_000_000,)}, "its label has 3 records"),
        ({"descr": "<U100000", "shape": (3,)}, "a column's values are at most 1024"),
    ],
)
def test_an_unused_column_is_refused_from_its_header(tmp_path, header, words):
    """Red team: a 2 MB file with one 2 GB one-dimensional array no reader uses was decompressed
    whole (2.2 GB peak). A column's header must say one value per record, of bounded size."""
    path = tmp_path / "o.npz"
    _npz_with(path, {"pad": header})
    with pytest.raises(InputError, match=words) as err:
        load_outputs(path)
    assert err.value.field == "pad"


def test_extra_columns_far_larger_than_the_named_arrays_are_refused(tmp_path, monkeypatch):
    import miaudit.data._tables as tables

    monkeypatch.setattr(tables, "EXTRA_COLUMNS_FLOOR", 1000)
    path = tmp_path / "o.npz"
    _npz_with(path, {f"c{i}": {"descr": "<f8", "shape": (3,)} for i in range(300)})
    with pytest.raises(InputError, match="bytes of extra columns"):
        load_outputs(path)


def test_an_npz_array_no_reader_uses_is_never_decompressed(tmp_path):
    """A 2-D array miaudit does not read (a red team's 3 MB file held one of 3 GB) is skipped
    from its header alone: here its header claims 3 TB over a kilobyte of data, which loading
    would refuse; 1-D arrays stay extra columns."""
    import io
    import zipfile

    from numpy.lib import format as npf

    arrays = {
        "logits": np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.5]]),
        "label": np.array([0, 1, 0]),
        "member": np.array([1, 0, 1]),
        "site": np.array([3, 4, 5]),
    }
    path = tmp_path / "extra.npz"
    with zipfile.ZipFile(path, "w") as z:
        for name, value in arrays.items():
            buf = io.BytesIO()
            np.save(buf, value)
            z.writestr(f"{name}.npy", buf.getvalue())
        buf = io.BytesIO()
        npf.write_array_header_1_0(
            buf, {"descr": "<f8", "fortran_order": False, "shape": (400, 10**9)}
        )
        z.writestr("embeddings.npy", buf.getvalue() + b"\0" * 1024)
    out = load_outputs(path)
    assert out.n_records == 3 and "embeddings" not in out.columns
    assert out.columns["site"].tolist() == [3, 4, 5]
    with zipfile.ZipFile(path, "a") as z:  # a reader's own array is read: refused from its size
        buf = io.BytesIO()
        npf.write_array_header_1_0(
            buf, {"descr": "<f8", "fortran_order": False, "shape": (3, 10**9)}
        )
        z.writestr("features.npy", buf.getvalue())
    with pytest.raises(InputError, match="refused before decompressing") as err:
        load_outputs(path)
    assert err.value.field == "features"


def test_a_signals_folder_holds_only_its_own_regular_files(tmp_path):
    """Red team: a FIFO named like an array hung the loader forever, and a link to a file
    outside the folder was followed; both are refused in one line, as is meta.json nested past
    what a JSON parser can read."""
    rng = np.random.default_rng(0)
    keep = np.zeros((4, 10), dtype=bool)
    keep[::2, :5] = True
    keep[1::2, 5:] = True
    store = SignalsStore.from_arrays(
        logits=rng.normal(size=(4, 10, 3)), label=rng.integers(0, 3, 10), keep=keep
    )
    folder = tmp_path / "store"
    store.save(folder)
    assert load_signals(folder).n_records == 10
    os.mkfifo(folder / "zzz_extra.npy")
    with pytest.raises(InputError, match=r"zzz_extra\.npy' is not a regular file"):
        load_signals(folder)
    (folder / "zzz_extra.npy").unlink()
    outside = tmp_path / "outside.npy"
    np.save(outside, store.keep)
    (folder / "keep.npy").unlink()
    (folder / "keep.npy").symlink_to(outside)
    with pytest.raises(InputError, match=r"keep\.npy' is a link"):
        load_signals(folder)
    (folder / "keep.npy").unlink()
    np.save(folder / "keep.npy", store.keep)
    (folder / "meta.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputError, match=r"metadata.*is not JSON"):
        load_signals(folder)


def _probs(n: int = 6, c: int = 3, seed: int = 0) -> np.ndarray:
    e = np.exp(np.random.default_rng(seed).normal(size=(n, c)))
    return e / e.sum(axis=1, keepdims=True)


def test_probabilities_given_as_logits_are_refused(tmp_path) -> None:
    """Red team (own model, finding 2c): probabilities stored as ``logits`` were put through a
    softmax a second time, silently: flatter scores and wrong AUCs. Every row ≥ 0 and summing
    to 1 is refused, with the fix."""
    p = _probs()
    np.savez(tmp_path / "o.npz", logits=p, label=[0, 1, 2] * 2, member=[0, 1] * 3)
    with pytest.raises(InputError) as info:
        load_outputs(tmp_path / "o.npz")
    assert info.value.field == "logits"
    assert info.value.problem.startswith(
        "every row is non-negative and sums to 1: these look like probabilities"
    )
    assert "give them as probs" in info.value.problem
    # Off by 1e-4 (CSV rounding) is still probabilities; as probs the same values load.
    rounded = np.round(p, 4)
    with pytest.raises(InputError, match="look like probabilities"):
        ModelOutputs.from_arrays(logits=rounded, label=[0, 1, 2] * 2, member=[0, 1] * 3)
    assert ModelOutputs.from_arrays(probs=p, label=[0, 1, 2] * 2, member=[0, 1] * 3).kind == "probs"


@pytest.mark.parametrize(
    "logits",
    [
        [[0.3, 0.7], [1.0, 0.0], [0.2, 0.1]],  # some rows on the simplex, not all
        [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]],  # a constant model
        [[0.5, 0.6], [0.4, 0.7], [0.0, 1.2]],  # non-negative, sums off 1
        [[-0.5, 1.5], [0.4, 0.6], [0.3, 0.7]],  # sums to 1, one negative value
    ],
)
def test_logits_that_are_not_probabilities_are_kept(logits) -> None:
    """No false positive on degenerate but genuine logits: only (nearly) every row ≥ 0 and
    summing to 1 is refused (at least 99% of rows: here all three)."""
    o = ModelOutputs.from_arrays(logits=np.array(logits), label=[0, 1, 1], member=[0, 1, 0])
    assert o.kind == "logits"


def test_log_probabilities_given_as_probs_say_what_they_look_like() -> None:
    """Red team (own model, finding 2): log-probabilities given as ``probs`` said "negative
    probability in row 0"; the message says what they look like and what to do."""
    with pytest.raises(InputError) as info:
        ModelOutputs.from_arrays(probs=np.log(_probs()), label=[0, 1, 2] * 2, member=[0, 1] * 3)
    assert info.value.field == "probs"
    assert "these look like log-probabilities: give them as logits" in info.value.problem


def test_signals_logits_beyond_float32_name_the_value_without_a_warning() -> None:
    """Red team (own model, finding 5b): float64 logits of 1e39 (finite) were reported as
    "contains NaN or inf" after a RuntimeWarning from the cast to float32."""
    import warnings

    logits = np.zeros((2, 4, 2))
    logits[1, 2, 0] = 1e39
    keep = np.array([[1, 0, 1, 0], [0, 1, 0, 1]], dtype=bool)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputError) as info:
            SignalsStore.from_arrays(logits=logits, label=[0, 1, 0, 1], keep=keep)
    assert info.value.field == "logits"
    assert (
        info.value.problem == "value 1e+39 at index (1, 2, 0) does not fit float32 (|x| ≤ 3.4e+38)"
    )
    logits[1, 2, 0] = np.inf  # a real inf is still called one
    with pytest.raises(InputError, match=r"contains NaN or inf \(first at index \(1, 2, 0\)\)"):
        SignalsStore.from_arrays(logits=logits, label=[0, 1, 0, 1], keep=keep)


def test_binary_record_ids_in_parquet_are_utf8_text_or_one_line(tmp_path):
    """Red team: a Parquet record_id column of bytes (latin-1 text, raw 16-byte UUIDs) ended in
    "internal error (UnicodeDecodeError ...)", exit 1; UTF-8 bytes are their text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    o = simulated_outputs(n=40)
    table = pa.Table.from_pandas(_frame(o), preserve_index=False)
    col = table.column_names.index("record_id") if "record_id" in table.column_names else None
    utf8 = pa.array([f"café-{i}".encode() for i in range(40)], pa.binary())
    latin1 = pa.array([f"café-{i}".encode("latin-1") for i in range(40)], pa.binary())
    for name, ids in (("utf8", utf8), ("latin1", latin1)):
        t = (
            table.set_column(col, "record_id", ids)
            if col is not None
            else table.append_column("record_id", ids)
        )
        pq.write_table(t, tmp_path / f"{name}.parquet")
    assert load_outputs(tmp_path / "utf8.parquet").record_id[3] == "café-3"
    with pytest.raises(InputError, match=r"record_id.*must be UTF-8 text.*UUID"):
        load_outputs(tmp_path / "latin1.parquet")


def _rounded_probs(n: int = 2000, c: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """A confident softmax of 10 classes rounded to 2 decimals, as an API may give it: most
    rows are more than 1e-3 off a sum of 1 (each value off by at most 0.005)."""
    rng = np.random.default_rng(3)
    y = np.arange(n) % c
    z = rng.normal(size=(n, c)) + 6.0 * np.eye(c)[y]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    rounded = np.round(e / e.sum(axis=1, keepdims=True), 2)
    assert (np.abs(rounded.sum(axis=1) - 1) > 1e-3).mean() > 0.3
    return rounded, y


def test_rounded_probabilities_load_as_probs_and_are_refused_as_logits() -> None:
    """Red team (own model, F5): probabilities rounded to 2 decimals were refused as probs
    ("sums to 0.99, not 1") and accepted as logits, softmaxed twice. One rule now decides both
    (rows non-negative and within PROB_SUM_TOL of 1): they load as probs, and are refused as
    logits."""
    rounded, y = _rounded_probs()
    member = np.arange(len(y)) % 2
    assert ModelOutputs.from_arrays(probs=rounded, label=y, member=member).kind == "probs"
    with pytest.raises(InputError, match="look like probabilities"):
        ModelOutputs.from_arrays(logits=rounded, label=y, member=member)


def test_one_odd_row_does_not_switch_the_check_off() -> None:
    """Red team (own model, F5): one row of 1,797 summing to 0.9 let every other row of
    probabilities through as logits. At least 99% of rows decide; the refusal says how many."""
    p = _probs(n=1797, c=10)
    p[5] *= 0.9
    y, member = np.arange(1797) % 10, np.arange(1797) % 2
    with pytest.raises(InputError) as info:
        ModelOutputs.from_arrays(logits=p, label=y, member=member)
    assert info.value.problem.startswith(
        "1796 of 1797 rows are non-negative and sum to 1: these look like"
    )
    # As probs the odd row is still refused, naming it: it is not a probability row.
    with pytest.raises(InputError, match=r"row \(5,\) sums to 0.9"):
        ModelOutputs.from_arrays(probs=p, label=y, member=member)
    # Fewer than 99% of rows on the simplex: kept as logits (a model that is not a softmax).
    p[:20] *= 0.5
    assert ModelOutputs.from_arrays(logits=p, label=y, member=member).kind == "logits"
