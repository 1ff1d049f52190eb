"""Deduplication of a fine-tuning set: exact after normalisation, then near-duplicates by MinHash.

Repeated texts are what a language model memorises first (a secret seen 16 times is exposed far
more than one seen once), so removing duplicates before fine-tuning is a control to measure.
Two passes:

1. **exact**: texts equal after normalisation (Unicode NFKC, case folded, whitespace collapsed)
   keep their first occurrence;
2. **near**: word n-gram shingles, a MinHash signature of ``num_perm`` universal hashes
   ``(a·x + b) mod (2^31 − 1)``, locality-sensitive banding to find candidate pairs, and a
   pair is a duplicate when its estimated Jaccard similarity (the fraction of equal signature
   entries) is at least ``threshold``. Groups of duplicates (transitively) keep their first text.

Deterministic for a seed (the hash coefficients); shingles are hashed with BLAKE2b, not Python's
salted ``hash``.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from miaudit.errors import InputError

_PRIME = np.uint64((1 << 31) - 1)


@dataclass(frozen=True)
class DedupResult:
    """``keep``: indices of the texts kept, in order; how many each pass removed."""

    keep: np.ndarray
    exact_removed: int
    near_removed: int

    @property
    def removed(self) -> int:
        return self.exact_removed + self.near_removed


def normalise(text: str) -> str:
    """NFKC, case folded, runs of whitespace as one space, stripped.

    >>> normalise("  Hello\\tWORLD ")
    'hello world'
    """
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _shingles(text: str, ngram: int) -> np.ndarray:
    words = text.split()
    grams = (
        [" ".join(words[i : i + ngram]) for i in range(len(words) - ngram + 1)]
        if len(words) >= ngram
        else [" ".join(words)]
    )
    return np.array(
        sorted(
            {int.from_bytes(hashlib.blake2b(g.encode(), digest_size=4).digest()) for g in grams}
        ),
        dtype=np.uint64,
    )


def minhash_signatures(
    texts: Sequence[str], *, ngram: int = 3, num_perm: int = 64, seed: int = 0
) -> np.ndarray:
    """``(len(texts), num_perm)`` MinHash signatures of the normalised texts' word n-grams."""
    rng = np.random.default_rng([seed, 31])
    a = rng.integers(1, int(_PRIME), size=num_perm, dtype=np.uint64)
    b = rng.integers(0, int(_PRIME), size=num_perm, dtype=np.uint64)
    out = np.empty((len(texts), num_perm), dtype=np.uint64)
    for i, text in enumerate(texts):
        x = _shingles(normalise(text), ngram)
        # a < 2^31 and x < 2^32: a·x + b < 2^64, no overflow in uint64.
        out[i] = ((x[:, None] * a[None, :] + b[None, :]) % _PRIME).min(axis=0)
    return out


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def _near_duplicates(sig: np.ndarray, threshold: float, bands: int) -> list[int]:
    """For each row, the first row of its group of near-duplicates (union-find over pairs)."""
    n, num_perm = sig.shape
    rows = num_perm // bands
    parent = list(range(n))
    for band in range(bands):
        buckets: dict[bytes, list[int]] = {}
        for i in range(n):
            key = sig[i, band * rows : (band + 1) * rows].tobytes()
            buckets.setdefault(key, []).append(i)
        for members in buckets.values():
            for j in members[1:]:
                first = members[0]
                if np.mean(sig[first] == sig[j]) >= threshold:
                    ri, rj = _find(parent, first), _find(parent, j)
                    parent[max(ri, rj)] = min(ri, rj)
    return [_find(parent, i) for i in range(n)]


def deduplicate(
    texts: Sequence[str],
    *,
    threshold: float = 0.8,
    ngram: int = 3,
    num_perm: int = 64,
    bands: int = 16,
    seed: int = 0,
) -> DedupResult:
    """The texts to keep: exact duplicates (after :func:`normalise`) and near-duplicates
    (estimated Jaccard ≥ ``threshold`` of word ``ngram`` shingles) removed, first kept.

    >>> deduplicate(["A b c d", "a  B c d", "x y z w"]).keep.tolist()
    [0, 2]
    """
    if not 0.0 < threshold <= 1.0:
        raise InputError("threshold", f"must lie in (0, 1], got {threshold}")
    if ngram < 1:
        raise InputError("ngram", f"must be ≥ 1, got {ngram}")
    if bands < 1 or num_perm % bands:
        raise InputError("bands", f"must divide num_perm ({num_perm}), got {bands}")
    first_of: dict[str, int] = {}
    unique = [i for i, t in enumerate(texts) if first_of.setdefault(normalise(t), i) == i]
    if not unique:
        return DedupResult(np.array([], dtype=np.int64), 0, 0)
    sig = minhash_signatures([texts[i] for i in unique], ngram=ngram, num_perm=num_perm, seed=seed)
    roots = _near_duplicates(sig, threshold, bands)
    keep = np.array([unique[k] for k, r in enumerate(roots) if r == k], dtype=np.int64)
    return DedupResult(keep, len(texts) - len(unique), len(unique) - len(keep))
