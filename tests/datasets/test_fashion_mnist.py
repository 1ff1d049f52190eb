"""Fashion-MNIST read from Debian's dataset-fashion-mnist: the IDX parser on files made here, the
checksum and missing-file errors, and the real files (skipped where the package is missing,
except under CI, where scripts/system-deps.sh installs it)."""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import pytest

from miaudit.data import FASHION_MNIST_CLASSES, load_fashion_mnist, parse_idx
from miaudit.data._fashion_mnist import FASHION_MNIST_ENV, fashion_mnist_folder
from miaudit.datasets import DataConfig, fashion_mnist, load_dataset
from miaudit.errors import InputError


def _idx(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}i", *arr.shape) + arr.tobytes()


def test_parse_idx_round_trips_and_refuses_bad_files() -> None:
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(parse_idx(_idx(arr)), arr)
    with pytest.raises(InputError, match="magic"):
        parse_idx(b"\x00\x00\x0d\x01" + struct.pack(">i", 1) + b"\x00\x00\x00\x00")
    with pytest.raises(InputError, match="header says"):
        parse_idx(_idx(arr)[:-1])


def test_missing_or_altered_files_are_one_line_errors(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    assert fashion_mnist_folder() == tmp_path
    with pytest.raises(InputError, match="dataset-fashion-mnist"):
        load_fashion_mnist()
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (tmp_path / f"{stem}.gz").write_bytes(gzip.compress(_idx(np.zeros(3, np.uint8))))
    with pytest.raises(InputError, match="sha256"):
        load_fashion_mnist()


@pytest.fixture(scope="module")
def real():
    if not (fashion_mnist_folder() / "t10k-labels-idx1-ubyte.gz").is_file():
        if os.environ.get("CI") == "true":
            pytest.fail("dataset-fashion-mnist missing (scripts/system-deps.sh installs it)")
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    return fashion_mnist()


def test_real_files_give_70000_balanced_images_with_stable_ids(real) -> None:
    assert real.features.shape == (70_000, 784) and real.image_shape == (1, 28, 28)
    assert real.mirror_invariant and real.n_classes == len(FASHION_MNIST_CLASSES) == 10
    assert (
        real.features.dtype == np.float32
        and 0.0 <= real.features.min() < real.features.max() <= 1.0
    )
    np.testing.assert_array_equal(real.record_id, np.arange(70_000))
    # 6,000 training and 1,000 test images per class (the published split).
    np.testing.assert_array_equal(np.bincount(real.label[:60_000]), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(real.label[60_000:]), np.full(10, 1000))
    # The published first labels (train: ankle boot, t-shirt; test: ankle boot, pullover).
    assert real.label[:2].tolist() == [9, 0] and real.label[60_000:60_002].tolist() == [9, 2]


def test_config_names_it_and_subsets_keep_ids(real) -> None:
    data = load_dataset(DataConfig(dataset="fashion-mnist", max_records=500, subset_seed=3))
    assert data.n_records == 500 and data.name == "fashion-mnist"
    np.testing.assert_array_equal(data.features, real.features[data.record_id])
