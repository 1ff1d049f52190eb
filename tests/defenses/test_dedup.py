"""Deduplication of a fine-tuning set: exact after normalisation, near by MinHash."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from miaudit.defenses import deduplicate, minhash_signatures, normalise
from miaudit.errors import InputError


def _jaccard(a: str, b: str, n: int = 3) -> float:
    def grams(t: str) -> set[str]:
        w = normalise(t).split()
        return {" ".join(w[i : i + n]) for i in range(len(w) - n + 1)}

    ga, gb = grams(a), grams(b)
    return len(ga & gb) / len(ga | gb)


def test_exact_duplicates_after_normalisation_keep_the_first() -> None:
    texts = ["Call me at 555", "call  ME at 555 ", "Another text entirely here", "CALL ME AT 555"]
    result = deduplicate(texts)
    assert result.keep.tolist() == [0, 2] and result.exact_removed == 2
    assert result.near_removed == 0


def test_near_duplicates_are_removed_and_distinct_texts_kept() -> None:
    words = [f"w{i}" for i in range(40)]
    base = " ".join(words)
    near = " ".join([*words[:39], "changed"])  # Jaccard of 3-grams 37/39 ≈ 0.95
    far = " ".join(reversed(words))
    result = deduplicate([base, far, near], threshold=0.8)
    assert result.keep.tolist() == [0, 1] and result.near_removed == 1


def test_signature_agreement_estimates_jaccard() -> None:
    rng = np.random.default_rng(0)
    vocab = [f"t{i}" for i in range(60)]
    texts = [" ".join(rng.choice(vocab, size=30)) for _ in range(6)]
    texts += [" ".join(t.split()[:20] + ["x"] * 10) for t in texts[:3]]
    sig = minhash_signatures(texts, num_perm=256)
    for i, j in itertools.combinations(range(len(texts)), 2):
        estimate = float(np.mean(sig[i] == sig[j]))
        assert estimate == pytest.approx(_jaccard(texts[i], texts[j]), abs=0.12)  # ≈ 4 s.e. at 256


def test_repeated_canaries_collapse_to_one() -> None:
    texts = ["ann's account number is 12345"] * 16 + ["bob's account number is 99999"] * 4
    assert deduplicate(texts).keep.tolist() == [0, 16]


def test_deterministic_for_a_seed() -> None:
    texts = [f"record {i} of the pool with words {i % 7}" for i in range(50)]
    assert (deduplicate(texts, seed=1).keep == deduplicate(texts, seed=1).keep).all()


@pytest.mark.parametrize(
    "kwargs, field",
    [({"threshold": 0.0}, "threshold"), ({"ngram": 0}, "ngram"), ({"bands": 5}, "bands")],
)
def test_bad_input_names_the_input(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(InputError, match=field):
        deduplicate(["a b c"], **kwargs)  # type: ignore[arg-type]
