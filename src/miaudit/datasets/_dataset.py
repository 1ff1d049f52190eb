"""The in-memory dataset every recipe trains on, and its leakage-free preprocessing.

A ``Dataset`` holds one raw float32 matrix whose columns come in three groups:

* numeric columns, standardised with the mean and standard deviation of the records a model
  trains on (never of the whole pool: that would leak non-members' statistics into the model);
* one-hot columns over the vocabulary of the *whole file*, where a category that none of a
  model's training records has is zeroed for that model. That is the same function as a one-hot
  encoder fitted on the training records alone (an all-zero input column never moves its
  weights), yet every model of a unit shares one input width, so they can train as one batch;
* fixed columns (binary features, image pixels already scaled by a known constant) that need no
  fitting.

Each model's preprocessing is therefore one per-column affine map ``x * scale + shift``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Dataset:
    """Records, labels and stable ids, with the column groups that preprocessing needs.

    ``features`` is (n, d) float32; ``numeric`` and ``onehot`` index its columns (the rest are
    fixed); ``image_shape`` is (channels, height, width) for image data, whose ``features`` are
    the flattened pixels; ``mirror_invariant`` says whether a horizontal flip keeps the class.
    """

    name: str
    features: np.ndarray
    label: np.ndarray
    record_id: np.ndarray
    n_classes: int
    numeric: np.ndarray
    onehot: np.ndarray
    feature_names: tuple[str, ...]
    image_shape: tuple[int, int, int] | None = None
    mirror_invariant: bool = False

    @property
    def n_records(self) -> int:
        return int(self.features.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.features.shape[1])

    def fingerprint(self) -> str:
        """SHA-256 over everything that a trained model depends on (values, ids, column roles)."""
        h = hashlib.sha256()
        for arr in (self.features, self.label, self.numeric, self.onehot):
            a = np.ascontiguousarray(arr)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
        h.update(np.asarray(self.record_id).astype(str).tobytes())
        h.update(
            repr(
                (
                    self.name,
                    self.n_classes,
                    self.feature_names,
                    self.image_shape,
                    self.mirror_invariant,
                )
            ).encode()
        )
        return h.hexdigest()


@dataclass(frozen=True, eq=False)
class Affine:
    """One model's preprocessing: ``x * scale + shift`` per column (float32, shape (d,))."""

    scale: np.ndarray
    shift: np.ndarray

    def apply(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x * self.scale + self.shift, dtype=np.float32)


def fit_affine(data: Dataset, train_idx: np.ndarray) -> Affine:
    """Fit preprocessing on the records ``train_idx`` only (see the module docstring)."""
    d = data.n_features
    scale = np.ones(d, dtype=np.float64)
    shift = np.zeros(d, dtype=np.float64)
    rows = data.features[np.asarray(train_idx)]
    if data.numeric.size:
        block = rows[:, data.numeric].astype(np.float64)
        mean = block.mean(axis=0)
        std = block.std(axis=0)
        # A constant column carries no information: centre it and leave its scale alone.
        std = np.where(std > 0, std, 1.0)
        scale[data.numeric] = 1.0 / std
        shift[data.numeric] = -mean / std
    if data.onehot.size:
        seen = rows[:, data.onehot].any(axis=0)
        scale[data.onehot] = seen.astype(np.float64)
    return Affine(scale.astype(np.float32), shift.astype(np.float32))
