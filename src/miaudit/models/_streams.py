"""Per-model random streams.

Model k of a run with seed s draws everything from ``SeedSequence(s, spawn_key=(1, k))`` (the
k-th child of a ``SeedSequence(s).spawn`` under key 1; key 0 is the membership plan's): a numpy
Generator for data order and validation splits, a torch Generator for initial weights,
dropout and augmentations. A model's draws never depend on other models, on how many models
the run has, or on which unit trains it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

PLAN_KEY = 0
MODEL_KEY = 1


def model_seed_sequence(seed: int, model: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(seed, spawn_key=(MODEL_KEY, model))


def plan_seed_sequence(seed: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(seed, spawn_key=(PLAN_KEY,))


@dataclass
class ModelStreams:
    """The two generators of one model (mutable: they advance as the model trains)."""

    numpy: np.random.Generator
    torch_seed: int
    sklearn_seed: int

    @classmethod
    def of(cls, seed: int, model: int) -> ModelStreams:
        ss = model_seed_sequence(seed, model)
        np_ss, torch_ss, sk_ss = ss.spawn(3)
        torch_seed = int(torch_ss.generate_state(1, np.uint64)[0] >> np.uint64(1))
        sk_seed = int(sk_ss.generate_state(1, np.uint32)[0] >> np.uint32(1))
        return cls(np.random.default_rng(np_ss), torch_seed, sk_seed)

    def torch_generator(self) -> torch.Generator:
        import torch

        g = torch.Generator()
        g.manual_seed(self.torch_seed)
        return g
