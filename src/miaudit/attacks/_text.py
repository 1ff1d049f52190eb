"""Attacks on causal language models from sequence signals (docs/method.md §13).

Each scores the records of a :class:`~miaudit.signals.SequenceStore`'s pool (the records that
are not population records, in store order; higher = member) from the audited model's per-token
statistics, and, for the calibrated ones, the base model's or reference fine-tunes':

- ``text_loss``: the mean log-probability of the text's tokens, −(its loss) (Yeom et al. 2018;
  for LMs, Carlini et al. 2021's perplexity);
- ``zlib``: −loss / zlib bytes (Carlini et al., USENIX Security 2021): texts that are easy
  for any compressor are not evidence of memorisation;
- ``min_k``: the mean of the lowest k % (20 %) token log-probabilities (Shi et al., ICLR 2024);
- ``min_k_plus``: the same on (log p − μ)/σ, standardised by the moments of log p(z) under the
  model's own next-token distribution (Zhang et al., "Min-K%++", 2024);
- ``reference_ratio``: loss of the base model − loss of the audited model: the likelihood ratio
  to the model it was fine-tuned from (Carlini et al. 2021; Mireshghallah et al. 2022);
- ``text_lira_online`` / ``text_lira_offline`` / ``text_rmia_online`` / ``text_rmia_offline``:
  the existing LiRA and RMIA (:func:`~miaudit.attacks.lira_online`, …) on the per-sequence
  statistic s = mean token log-probability of the audited model and of reference fine-tunes
  (RMIA's likelihood is the per-token geometric mean exp(s) ∈ (0, 1]; offline RMIA's ``a``
  calibrated on the references, never the tabular default).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from miaudit.attacks._lira import lira_offline, lira_online
from miaudit.attacks._rmia import (
    DEFAULT_A,
    calibrate_rmia_a,
    can_calibrate_rmia_a,
    rmia_offline,
    rmia_online,
)
from miaudit.errors import InputError
from miaudit.signals import ModelTokens, SequenceStore

#: The fraction of lowest-scoring tokens min-k % and min-k %++ average (the papers' 20 %).
MIN_K = 0.2


@dataclass(frozen=True, eq=False)
class SequenceInputs:
    """Input of a ``SEQUENCE_SIGNALS`` attack: the store and the attack's randomness."""

    store: SequenceStore
    seed: np.random.SeedSequence | int = 0


def mean_log_prob(tokens: ModelTokens) -> np.ndarray:
    """Per record: the mean log-probability of its scored tokens (−loss), float64."""
    sums = np.add.reduceat(tokens.log_prob, tokens.offsets[:-1]) if tokens.log_prob.size else 0.0
    out: np.ndarray = np.asarray(sums, dtype=np.float64) / tokens.n_tokens
    return out


def lowest_fraction_mean(values: np.ndarray, offsets: np.ndarray, k: float = MIN_K) -> np.ndarray:
    """Per record: the mean of its ⌈k·L⌉ lowest values (L its token count; at least one).

    Examples
    --------
    >>> lowest_fraction_mean(np.array([-1.0, -5.0, -2.0, -3.0]), np.array([0, 3, 4]), k=0.5)
    array([-3.5, -3. ])
    """
    if not 0 < k <= 1:
        raise InputError("k", f"must be in (0, 1], got {k}")
    out = np.empty(offsets.size - 1)
    for i in range(out.size):
        part = np.sort(values[offsets[i] : offsets[i + 1]])
        out[i] = part[: max(1, int(np.ceil(k * part.size)))].mean()
    return out


def standardised_log_prob(tokens: ModelTokens) -> np.ndarray:
    """Per token: (log p(x_t) − μ_t) / σ_t (Min-K%++); a position whose next-token distribution
    has no spread (σ_t = 0, a one-hot prediction) contributes 0."""
    sd = np.sqrt(tokens.var)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, (tokens.log_prob - tokens.mean) / sd, 0.0)
    out: np.ndarray = z
    return out


def _pool(store: SequenceStore) -> np.ndarray:
    pool: np.ndarray = ~store.population
    return pool


def text_loss_scores(x: SequenceInputs) -> np.ndarray:
    s = x.store
    out: np.ndarray = mean_log_prob(s.models[s.target])[_pool(s)]
    return out


def zlib_scores(x: SequenceInputs) -> np.ndarray:
    s = x.store
    ratio: np.ndarray = mean_log_prob(s.models[s.target]) / s.zlib_bytes
    out: np.ndarray = ratio[_pool(s)]
    return out


def min_k_scores(x: SequenceInputs) -> np.ndarray:
    s = x.store
    t = s.models[s.target]
    out: np.ndarray = lowest_fraction_mean(t.log_prob, t.offsets)[_pool(s)]
    return out


def min_k_plus_scores(x: SequenceInputs) -> np.ndarray:
    s = x.store
    t = s.models[s.target]
    out: np.ndarray = lowest_fraction_mean(standardised_log_prob(t), t.offsets)[_pool(s)]
    return out


def reference_ratio_scores(x: SequenceInputs) -> np.ndarray:
    s = x.store
    if s.base is None:
        raise InputError(
            "sequence signals", "reference_ratio needs the base model's signals (role 'base')"
        )
    diff = mean_log_prob(s.models[s.target]) - mean_log_prob(s.models[s.base])
    out: np.ndarray = diff[_pool(s)]
    return out


def _reference_statistics(s: SequenceStore) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    refs = s.references
    if len(refs) < 2:
        raise InputError(
            "references",
            f"sequence-level LiRA and RMIA need ≥ 2 reference fine-tunes, got {len(refs)}",
        )
    target = mean_log_prob(s.models[s.target])
    ref_stat = np.stack([mean_log_prob(s.models[k]) for k in refs])
    return target, ref_stat, s.keep[refs]


def lira_scores(online: bool) -> Callable[[SequenceInputs], np.ndarray]:
    def run(x: SequenceInputs) -> np.ndarray:
        target, refs, keep = _reference_statistics(x.store)
        pool = _pool(x.store)
        if online:
            return lira_online(target[pool], refs[:, pool], keep[:, pool])
        return lira_offline(target[pool], refs[:, pool], keep[:, pool])

    return run


def _offline_a(ref_p: np.ndarray, keep: np.ndarray, pop: np.ndarray) -> float:
    """Offline RMIA's ``a``, calibrated on the references (one plays the target, its partner
    left out; the RMIA paper's offline recipe), as for tabular models. A sequence's
    probability (its mean per-token probability, a few per cent) is far from a class
    probability, so the tabular default would let the constant (1 − a)/2 swamp p_OUT."""
    pool_keep = keep[:, ~pop]  # population texts are in no model: they would hide a complement
    if not can_calibrate_rmia_a(pool_keep):
        return DEFAULT_A  # one complementary pair: no reference left to calibrate on
    return calibrate_rmia_a(ref_p[:, ~pop], pool_keep)


def rmia_scores(online: bool) -> Callable[[SequenceInputs], np.ndarray]:
    def run(x: SequenceInputs) -> np.ndarray:
        target, refs, keep = _reference_statistics(x.store)
        pop = x.store.population
        if not pop.any():
            raise InputError(
                "population",
                "sequence-level RMIA needs population texts (no model trained on them)",
            )
        p, ref_p = np.exp(target), np.exp(refs)
        score = (
            rmia_online(p, ref_p, pop)
            if online
            else rmia_offline(p, ref_p, keep, pop, a=_offline_a(ref_p, keep, pop))
        )
        out: np.ndarray = score[~pop]
        return out

    return run
