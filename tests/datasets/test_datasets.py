"""Built-in datasets, user files and leakage-free preprocessing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from miaudit.data import load_adult
from miaudit.datasets import (
    DataConfig,
    adult,
    breast_cancer,
    digits,
    fit_affine,
    load_dataset,
    purchase_like,
)
from miaudit.datasets._tabular import from_frame
from miaudit.engine import parse_config
from miaudit.errors import InputError


def test_adult_keeps_bundled_ids_and_encodes_columns() -> None:
    data = adult()
    frame = load_adult()
    np.testing.assert_array_equal(data.record_id, frame["record_id"].to_numpy())
    np.testing.assert_array_equal(data.label, frame["income"].to_numpy())
    assert len(data.numeric) == 6
    # Each categorical column is one-hot: exactly one 1 per record per column group.
    groups = {name.split("=")[0] for name in np.asarray(data.feature_names)[data.onehot]}
    assert len(groups) == 8
    assert np.allclose(data.features[:, data.onehot].sum(axis=1), 8)


def test_sklearn_bundled_sets_are_offline_and_shaped() -> None:
    d = digits()
    assert d.features.shape == (1797, 64) and d.image_shape == (1, 8, 8) and not d.mirror_invariant
    assert d.features.max() <= 1.0 and d.numeric.size == 0  # fixed scale: nothing fitted
    b = breast_cancer()
    assert b.features.shape == (569, 30) and b.n_classes == 2


def test_purchase_like_is_deterministic_and_flips_at_the_rate() -> None:
    a = purchase_like(n_records=2000, n_features=300, n_classes=20, flip_rate=0.1, seed=5)
    b = purchase_like(n_records=2000, n_features=300, n_classes=20, flip_rate=0.1, seed=5)
    c = purchase_like(n_records=2000, n_features=300, n_classes=20, flip_rate=0.1, seed=6)
    np.testing.assert_array_equal(a.features, b.features)
    assert not np.array_equal(a.features, c.features)
    # Records of one class differ from each other in about 2·p·(1−p) = 18% of bits.
    same = a.features[a.label == 0]
    frac = (same[0] != same[1:]).mean()
    assert abs(frac - 0.18) < 0.02


def test_preprocessing_is_fit_on_training_records_only() -> None:
    data = adult()
    train = np.arange(0, 1000)
    aff = fit_affine(data, train)
    # Changing every non-training record leaves the fitted map unchanged.
    from dataclasses import replace

    x = data.features.copy()
    x[1000:, data.numeric] *= 7.0
    x[1000:, data.onehot] = 1.0
    aff2 = fit_affine(replace(data, features=x), train)
    np.testing.assert_array_equal(aff.scale, aff2.scale)
    np.testing.assert_array_equal(aff.shift, aff2.shift)
    z = aff.apply(data.features[train])[:, data.numeric]
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.std(axis=0), 1.0, atol=1e-3)


def test_category_unseen_in_training_is_zeroed() -> None:
    frame = pd.DataFrame(
        {"x": [1.0, 2.0, 3.0, 4.0], "colour": ["red", "red", "blue", "green"], "y": [0, 1, 0, 1]}
    )
    from miaudit.datasets._tabular import from_frame

    data = from_frame(frame, name="t", label="y", record_id=np.arange(4), field="data")
    aff = fit_affine(data, np.array([0, 1, 2]))  # "green" only in record 3
    green = data.feature_names.index("colour=green")
    assert aff.apply(data.features)[3, green] == 0.0
    assert aff.apply(data.features)[2, data.feature_names.index("colour=blue")] == 1.0


def test_user_csv_with_label_and_ids(tmp_path) -> None:
    path = tmp_path / "d.csv"
    pd.DataFrame(
        {
            "pid": [10, 11, 12, 13],
            "age": [30, 40, 50, 60],
            "city": ["a", "b", "a", "b"],
            "sick": ["no", "yes", "no", "yes"],
        }
    ).to_csv(path, index=False)
    data = load_dataset(DataConfig(path=path, label="sick", id_column="pid"))
    assert data.record_id.tolist() == ["10", "11", "12", "13"]  # a CSV's ids are its text
    np.testing.assert_array_equal(data.label, [0, 1, 0, 1])
    assert data.feature_names == ("age", "city=a", "city=b")


def test_csv_ids_keep_their_leading_zeros(tmp_path) -> None:
    """Red team (record.md F10): an id column read by inference turned "0007" into 7, so the
    user's own ids matched no audited record; in Parquet they keep their type."""
    frame = pd.DataFrame({"pid": ["0007", "0010", "0100", "1000"], "age": [30, 40, 50, 60]})
    frame["y"] = [0, 1, 0, 1]
    frame.to_csv(tmp_path / "d.csv", index=False)
    data = load_dataset(DataConfig(path=tmp_path / "d.csv", label="y", id_column="pid"))
    assert data.record_id.tolist() == ["0007", "0010", "0100", "1000"]
    frame.assign(pid=[7, 10, 100, 1000]).to_parquet(tmp_path / "d.parquet")
    data = load_dataset(DataConfig(path=tmp_path / "d.parquet", label="y", id_column="pid"))
    assert data.record_id.tolist() == [7, 10, 100, 1000]
    frame.assign(pid=["1", "2", "", "4"]).to_csv(tmp_path / "gap.csv", index=False)
    with pytest.raises(InputError, match="missing ids") as info:
        load_dataset(DataConfig(path=tmp_path / "gap.csv", label="y", id_column="pid"))
    assert info.value.field == "data.id_column"


@pytest.mark.parametrize(
    ("columns", "cfg", "field"),
    [
        ({"a": [1, 2], "y": [0, 1]}, {"label": "z"}, "data.label"),
        ({"a": [1, None], "y": [0, 1]}, {"label": "y"}, "data.a"),
        ({"a": [1, 2], "y": [1, 1]}, {"label": "y"}, "data.label"),
        ({"a": [1, 2], "y": [0, 1]}, {"label": "y", "id_column": "pid"}, "data.id_column"),
    ],
)
def test_user_file_errors_name_the_field(tmp_path, columns, cfg, field) -> None:
    path = tmp_path / "d.parquet"
    pd.DataFrame(columns).to_parquet(path)
    with pytest.raises(InputError) as info:
        load_dataset(DataConfig(path=path, **cfg))
    assert info.value.field == field


def test_a_label_column_of_numbers_then_text_is_one_type(tmp_path) -> None:
    """Red team: pandas read the first chunk of a CSV's label column as numbers and the rest as
    text, and sorting them was an internal error (exit 1). Read whole, every label is text."""
    path = tmp_path / "mixed.csv"
    rows = [f"{i % 7}.5,{i % 2}" for i in range(300_000)] + ["1.5,yes"] * 5
    path.write_text("a,y\n" + "\n".join(rows) + "\n")
    data = load_dataset(DataConfig(path=path, label="y"))
    assert data.n_classes == 3  # "0", "1", "yes"
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "y": np.array([0, "yes", 1], dtype=object)})
    with pytest.raises(InputError, match="mixes values of types int, str") as info:
        from_frame(frame, name="f", label="y", record_id=np.arange(3), field="data")
    assert info.value.field == "data.label"


def test_data_config_needs_exactly_one_source() -> None:
    with pytest.raises(InputError) as info:
        parse_config({"data": {"dataset": "adult", "path": "x.csv", "label": "y"}})
    assert info.value.field == "data"
    with pytest.raises(InputError) as info:
        parse_config({"data": {"dataset": "mnist"}})
    assert info.value.field == "data.dataset"


def test_max_records_keeps_ids() -> None:
    data = load_dataset(DataConfig(dataset="breast-cancer", max_records=100, subset_seed=1))
    assert data.n_records == 100 and np.all(np.diff(data.record_id) > 0)
    again = load_dataset(DataConfig(dataset="breast-cancer", max_records=100, subset_seed=1))
    np.testing.assert_array_equal(data.record_id, again.record_id)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (1e300, "value 1e+300 at row 3 does not fit float32 (|x| ≤ 3.4e+38)"),
        (-1e39, "value -1e+39 at row 3 does not fit float32 (|x| ≤ 3.4e+38)"),
        (float("inf"), "value inf at row 3 is not finite"),
    ],
)
def test_a_feature_beyond_float32_is_refused_naming_its_column_and_row(
    tmp_path, value, problem
) -> None:
    """Red team (own model, finding 5a): a CSV feature of 1e300 passed the finiteness check (in
    float64), became inf in the cast to float32 with a RuntimeWarning on stderr, and the run
    ended in an internal error. It is refused in one line, before the cast, with no warning."""
    import warnings

    path = tmp_path / "big.csv"
    pd.DataFrame({"f0": [0.5] * 6, "f1": [1.0, 2.0, 3.0, value, 5.0, 6.0], "y": [0, 1] * 3}).to_csv(
        path, index=False
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputError) as info:
            load_dataset(DataConfig(path=path, label="y"))
    assert (info.value.field, info.value.problem) == ("data.f1", problem)
    # The largest float32 itself is kept.
    edge = pd.DataFrame({"f0": [float(np.finfo(np.float32).max), -1.0], "y": [0, 1]})
    data = from_frame(edge, name="e", label="y", record_id=np.arange(2), field="data")
    assert np.isfinite(data.features).all()


def test_a_parquet_dataset_that_bombs_is_refused_before_pandas_reads_it(tmp_path) -> None:
    """pandas read a few-KB Parquet dataset whose dictionary column expands to 200,000-byte
    values per row (1 GB) whole; the file is now bounded as every input file is."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 5_000
    city = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), ["A" * 200_000])
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"city": city, "y": np.arange(n) % 2}), path)
    assert path.stat().st_size < 1_000_000
    with pytest.raises(InputError, match="200,000 bytes") as info:
        load_dataset(DataConfig(path=path, label="y"))
    assert "\n" not in str(info.value)
