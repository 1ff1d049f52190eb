"""The one public way to train a unit of torch models: stacked training, or DP-SGD through Opacus
when the recipe has ``dp``; both return a :class:`UnitResult`.

Importing this module does not import torch (the coordinating process of a run imports
``miaudit.models`` and never trains); the trainers are imported when a unit is trained.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from miaudit.datasets import Affine, Dataset
from miaudit.models._device import training_device
from miaudit.models._recipe import CNNRecipe, MLPRecipe
from miaudit.models._streams import ModelStreams

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True, eq=False)
class UnitResult:
    """What training one unit of torch models gives.

    ``state``: stacked weights, tensor name → (models, …), on the CPU; ``logits``: (models, n[, queries],
    classes) float32 on every record of the data; ``kept_epoch``: per model, the epoch whose
    weights it kept (early stopping); ``privacy``: per model, the DP-SGD privacy record (ε spent
    by the accountant, δ, σ, clipping norm, sampling rate, steps, …), or None for a recipe
    without ``dp``.
    """

    state: dict[str, torch.Tensor]
    logits: np.ndarray
    kept_epoch: list[int]
    privacy: list[dict[str, Any]] | None = None


def train_unit(
    recipe: MLPRecipe | CNNRecipe,
    data: Dataset,
    train_sets: list[np.ndarray],
    affines: list[Affine],
    streams: list[ModelStreams],
    *,
    on_epoch: Callable[[int], None] | None = None,
    threads: int | None = None,
    device: str = "cpu",
) -> UnitResult:
    """Train one torch model per entry of ``train_sets`` (record positions in ``data``).

    ``affines``: each model's fitted preprocessing; ``streams``: each model's random streams
    (:meth:`ModelStreams.of`), which alone decide its bits. A recipe with ``dp`` trains its
    models one at a time with DP-SGD (Opacus, the ``dp`` extra) and records their privacy;
    otherwise they train together, stacked. ``on_epoch(e)`` is called after epoch ``e``
    (0-based; once per model and epoch under DP-SGD). ``threads``: torch's intra-op threads
    while training (restored afterwards; part of what decides the bits). ``device``: "cpu",
    "cuda" or "cuda:N" (models/_device.py: deterministic settings on a GPU; the results come
    back on the CPU either way); an unknown or absent device is an InputError naming
    ``engine.device``.
    """
    with torch_threads(threads), training_device(device) as dev:
        if recipe.dp is not None:
            from miaudit.models._dp import train_dp

            return train_dp(recipe, data, train_sets, affines, streams, on_epoch, device=dev)
        from miaudit.models._torch_train import train_stacked

        return train_stacked(recipe, data, train_sets, affines, streams, on_epoch, device=dev)


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Torch's intra-op thread count set to ``threads`` for a block, then restored (None: as is)."""
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
