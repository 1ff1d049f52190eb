"""Built-in datasets, all offline: UCI Adult (bundled), scikit-learn's bundled digits and
breast cancer, Fashion-MNIST (from Debian's ``dataset-fashion-mnist``), and a synthetic
Purchase-like generator."""

from __future__ import annotations

import numpy as np

from miaudit.data import (
    ADULT_CATEGORICAL,
    ADULT_LABEL,
    ADULT_NUMERIC,
    load_adult,
    load_fashion_mnist,
)
from miaudit.datasets._dataset import Dataset
from miaudit.datasets._tabular import from_frame

EMPTY = np.zeros(0, dtype=np.int64)


def adult() -> Dataset:
    """UCI Adult: 48,842 records, 6 numeric and 8 categorical columns, label ``income``."""
    frame = load_adult()
    ids = frame["record_id"].to_numpy(dtype=np.int64)
    return from_frame(
        frame[[*ADULT_NUMERIC, *ADULT_CATEGORICAL, ADULT_LABEL]],
        name="adult",
        label=ADULT_LABEL,
        record_id=ids,
        field="data",
        numeric=ADULT_NUMERIC,
        categorical=ADULT_CATEGORICAL,
    )


def digits() -> Dataset:
    """scikit-learn's bundled 8×8 digits (1,797 images, 10 classes); ids are row numbers.

    Pixels (0–16) are divided by 16, a fixed constant, so nothing is fitted. Not mirror
    invariant: a flipped 2 or 5 is another digit.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    n = len(x)
    return Dataset(
        name="digits",
        features=x,
        label=bunch.target.astype(np.int64),
        record_id=np.arange(n, dtype=np.int64),
        n_classes=10,
        numeric=EMPTY,
        onehot=EMPTY,
        feature_names=tuple(f"pixel_{i}" for i in range(64)),
        image_shape=(1, 8, 8),
        mirror_invariant=False,
    )


def fashion_mnist() -> Dataset:
    """Fashion-MNIST: 70,000 grey 28×28 clothing images, 10 classes; ids are the row numbers
    (training file, then test file), so they hold on any machine with the published files.

    Pixels (0–255) are divided by 255, a fixed constant, so nothing is fitted. Mirror invariant:
    a mirrored shoe, shirt or bag is still one (the classes are the kinds of garment).
    """
    images, labels = load_fashion_mnist()
    n = len(images)
    return Dataset(
        name="fashion-mnist",
        features=(images.reshape(n, -1).astype(np.float32) / np.float32(255.0)),
        label=labels,
        record_id=np.arange(n, dtype=np.int64),
        n_classes=10,
        numeric=EMPTY,
        onehot=EMPTY,
        feature_names=tuple(f"pixel_{i}" for i in range(28 * 28)),
        image_shape=(1, 28, 28),
        mirror_invariant=True,
    )


def breast_cancer() -> Dataset:
    """scikit-learn's bundled Wisconsin breast cancer (569 records, 30 numeric features)."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    n, d = bunch.data.shape
    return Dataset(
        name="breast-cancer",
        features=bunch.data.astype(np.float32),
        label=bunch.target.astype(np.int64),
        record_id=np.arange(n, dtype=np.int64),
        n_classes=2,
        numeric=np.arange(d, dtype=np.int64),
        onehot=EMPTY,
        feature_names=tuple(str(f) for f in bunch.feature_names),
    )


def purchase_like(
    n_records: int = 10_000,
    n_features: int = 600,
    n_classes: int = 100,
    flip_rate: float = 0.1,
    seed: int = 0,
) -> Dataset:
    """A synthetic stand-in for Purchase-100 (shopping baskets clustered into 100 classes).

    ``n_classes`` random binary prototypes over ``n_features`` items (each item present with
    probability 1/2); record i draws its class uniformly, copies that prototype and flips each
    bit independently with probability ``flip_rate``. Features are 0/1 and left as they are.
    The same arguments give the same records on every machine (numpy PCG64).
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    prototypes = rng.random((n_classes, n_features)) < 0.5
    y = rng.integers(0, n_classes, size=n_records)
    flips = rng.random((n_records, n_features)) < flip_rate
    x = (prototypes[y] ^ flips).astype(np.float32)
    return Dataset(
        name="purchase",
        features=x,
        label=y.astype(np.int64),
        record_id=np.arange(n_records, dtype=np.int64),
        n_classes=n_classes,
        numeric=EMPTY,
        onehot=EMPTY,
        feature_names=tuple(f"item_{i}" for i in range(n_features)),
    )
