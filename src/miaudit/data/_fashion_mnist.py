"""Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017; MIT, © Zalando SE), read offline from the files
that Debian's ``dataset-fashion-mnist`` package installs (provenance and checksums:
``_bundled/fashion_mnist/PROVENANCE.md``). Nothing is copied into miaudit, nothing downloaded.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np

from miaudit.errors import InputError

FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
#: Another folder holding the same four files (a system without Debian's package).
FASHION_MNIST_ENV = "MIAUDIT_FASHION_MNIST_DIR"
FASHION_MNIST_CLASSES = (
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
FASHION_MNIST_ATTRIBUTION = (
    "Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017, arXiv:1708.07747), MIT licence, © 2017 Zalando SE"
)
#: sha256 of each uncompressed file, as Debian's package ships them.
_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
_IDX_TYPES = {0x08: np.uint8}


def parse_idx(raw: bytes, *, name: str = "IDX file") -> np.ndarray:
    """An IDX array (MNIST's format: zero, zero, type code, rank, big-endian int32 sizes, data).

    >>> parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9])).tolist()
    [7, 8, 9]
    """
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise InputError(name, "is not an unsigned-byte IDX file (bad magic number)")
    rank = raw[3]
    head = 4 + 4 * rank
    if len(raw) < head:
        raise InputError(name, "is cut short inside its header")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">i4", count=rank, offset=4))
    if len(raw) - head != int(np.prod(shape)):
        raise InputError(name, f"holds {len(raw) - head} bytes of data, its header says {shape}")
    return np.frombuffer(raw, dtype=_IDX_TYPES[raw[2]], offset=head).reshape(shape)


def fashion_mnist_folder() -> Path:
    """Where the four files are: ``$MIAUDIT_FASHION_MNIST_DIR`` or Debian's folder."""
    return Path(os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DIR)


def _read(folder: Path, stem: str) -> np.ndarray:
    path = folder / f"{stem}.gz"
    if not path.is_file():
        raise InputError(
            "fashion-mnist",
            f"no {path}: install Debian's {FASHION_MNIST_PACKAGE} (scripts/system-deps.sh) "
            f"or set {FASHION_MNIST_ENV} to a folder holding its four files",
        )
    raw = gzip.decompress(path.read_bytes())
    if hashlib.sha256(raw).hexdigest() != _SHA256[stem]:
        raise InputError("fashion-mnist", f"{path} is not the published file (sha256 differs)")
    return parse_idx(raw, name=str(path))


def load_fashion_mnist() -> tuple[np.ndarray, np.ndarray]:
    """All 70,000 images (uint8, (70000, 28, 28)) and labels (int64), training file first.

    The row number is the record id (0–59,999 the training file, then the test file's), so
    ids are the same on every machine with the published files (their sha256 is checked).
    """
    folder = fashion_mnist_folder()
    images = [_read(folder, f"{part}-images-idx3-ubyte") for part in ("train", "t10k")]
    labels = [_read(folder, f"{part}-labels-idx1-ubyte") for part in ("train", "t10k")]
    return np.concatenate(images), np.concatenate(labels).astype(np.int64)
