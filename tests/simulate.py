"""The test suite's one simulator: model outputs with a known, planted membership signal.

Every simulated model here is built from two primitives, so that a test's numbers depend on its
seed and parameters only, never on which copy of a simulator it imported:

- :func:`complementary_keep` — reference models trained in complementary pairs (model 2j keeps a
  record iff model 2j+1 does not), so every record is IN for exactly k/2 models;
- :func:`true_class_logits` — standard-normal logits with ``boost`` added to the true class
  (a member's boost is larger: that is the leak).

The higher-level simulators keep the draw order of the copies they replaced, so the numbers that
tests were calibrated on did not move.
"""

from __future__ import annotations

import numpy as np

from miaudit.data import ModelOutputs


def complementary_keep(rng: np.random.Generator, k: int, n: int) -> np.ndarray:
    """(k, n) bool membership of k reference models in complementary pairs."""
    half = rng.random((k // 2, n)) < 0.5
    keep = np.empty((k, n), dtype=bool)
    keep[0::2], keep[1::2] = half, ~half
    return keep


def true_class_logits(
    rng: np.random.Generator, labels: np.ndarray, classes: int, boost: np.ndarray | float
) -> np.ndarray:
    """(n, classes) standard-normal logits with ``boost`` added to each record's true class."""
    n = labels.shape[0]
    z = rng.normal(size=(n, classes))
    z[np.arange(n), labels] += boost
    return z


def simulated_outputs(
    n: int = 2000, classes: int = 3, shift: float = 1.0, seed: int = 0
) -> ModelOutputs:
    """Saved outputs whose true-class logit is larger for members by ``shift`` (0 = no leak);
    half the records are members; integer ids from 1000; a two-valued column ``group``."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    m = np.zeros(n, dtype=np.int8)
    m[rng.permutation(n)[: n // 2]] = 1
    z = true_class_logits(rng, y, classes, 1.0 + shift * m)
    return ModelOutputs.from_arrays(
        logits=z,
        label=y,
        member=m,
        record_id=np.arange(1000, 1000 + n),
        columns={"group": rng.choice(["a", "b"], n)},
    )


def subgroup_outputs(
    n: int = 600, seed: int = 0, *, id_base: int = 0, rare_fraction: float = 0.15
) -> ModelOutputs:
    """Three classes, members fitted better than non-members, and a small ``rare`` group whose
    members leak more (column ``group``: rare / common)."""
    rng = np.random.default_rng(seed)
    member = (rng.random(n) < 0.5).astype(np.int8)
    label = rng.integers(0, 3, n)
    group = np.where(rng.random(n) < rare_fraction, "rare", "common")
    logits = true_class_logits(rng, label, 3, 1.0 + 1.5 * member + 1.5 * member * (group == "rare"))
    return ModelOutputs.from_arrays(
        logits=logits,
        label=label,
        member=member,
        record_id=id_base + np.arange(n),
        columns={"group": group},
    )


def string_id_outputs(n: int = 600, seed: int = 0, shift: float = 1.5) -> ModelOutputs:
    """Three classes, members' true-class logit larger by ``shift``; string ids ``r0, r1, …``."""
    rng = np.random.default_rng(seed)
    member = rng.random(n) < 0.5
    label = rng.integers(0, 3, n)
    logits = true_class_logits(rng, label, 3, shift * member)
    return ModelOutputs.from_arrays(
        label=label,
        member=member.astype(np.int8),
        logits=logits,
        record_id=np.array([f"r{i}" for i in range(n)]),
    )
