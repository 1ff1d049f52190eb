"""Simulated sequence signals (no language model): per-token log-probabilities of texts under a
target, its base model and reference fine-tunes, where a model that trained on a text gives its
tokens ``boost`` more log-probability (a planted membership signal; 0 for the null)."""

from __future__ import annotations

import numpy as np

from miaudit.signals import ModelTokens, SequenceStore
from tests.simulate import complementary_keep


def _tokens(
    rng: np.random.Generator, lengths: np.ndarray, difficulty: np.ndarray, boost: np.ndarray
) -> ModelTokens:
    """Token log-probabilities around each text's own difficulty, raised by ``boost`` per text."""
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    per_token = np.repeat(difficulty + boost, lengths)
    log_prob = -np.abs(per_token + 0.7 * rng.normal(size=per_token.size))
    mean = -np.abs(np.repeat(difficulty, lengths) * 0.8 + 0.2 * rng.normal(size=per_token.size))
    var = 0.2 + rng.random(per_token.size)
    return ModelTokens(offsets.astype(np.int64), log_prob, mean, var)


def sequence_store(
    seed: int = 0, *, n: int = 240, pairs: int = 2, population: int = 60, boost: float = 0.6
) -> SequenceStore:
    """Target (keep row 0), base, ``2·pairs`` references on complementary halves of the pool."""
    rng = np.random.default_rng(seed)
    pop = np.zeros(n, dtype=bool)
    pop[rng.permutation(n)[:population]] = True
    # Row 0 is the target; its complementary partner (row 1) is no reference of it.
    keep = np.delete(complementary_keep(rng, 2 * pairs + 2, n), 1, axis=0)
    keep[:, pop] = False
    lengths = rng.integers(4, 30, n)
    difficulty = 1.0 + 2.0 * rng.random(n)  # per-text: some texts are easy for every model
    roles = ["target", "base", *["reference"] * (2 * pairs)]
    keep = np.vstack([keep[:1], np.zeros((1, n), bool), keep[1:]])
    models = tuple(
        _tokens(rng, lengths, difficulty, -boost * keep[k] + (0.3 if role == "base" else 0.0))
        for k, role in enumerate(roles)
    )
    zlib = (lengths * (3 + difficulty)).astype(np.int64)
    return SequenceStore(
        record_id=np.array([f"t{i}" for i in range(n)]),
        zlib_bytes=zlib,
        models=models,
        roles=tuple(roles),  # type: ignore[arg-type]
        keep=keep,
        population=pop,
    )


def permuted(store: SequenceStore, perm: np.ndarray) -> SequenceStore:
    """The same store with its records in the order ``perm``."""

    def tokens(m: ModelTokens) -> ModelTokens:
        parts = [np.arange(m.offsets[i], m.offsets[i + 1]) for i in perm]
        idx = np.concatenate(parts)
        offsets = np.concatenate([[0], np.cumsum(m.n_tokens[perm])]).astype(np.int64)
        return ModelTokens(offsets, m.log_prob[idx], m.mean[idx], m.var[idx])

    return SequenceStore(
        record_id=store.record_id[perm],
        zlib_bytes=store.zlib_bytes[perm],
        models=tuple(tokens(m) for m in store.models),
        roles=store.roles,
        keep=store.keep[:, perm],
        population=store.population[perm],
    )
