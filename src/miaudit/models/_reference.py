"""The obviously-correct slow version: one MLP at a time, plain ``nn.Sequential`` and
``torch.optim.Adam`` with torch defaults.

Same seeds, same initial weights, same minibatch order as the stacked engine; tests and the
engine benchmark compare the two.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from miaudit.datasets import Affine, Dataset
from miaudit.models._nets import mlp_layer_params
from miaudit.models._recipe import MLPRecipe
from miaudit.models._streams import ModelStreams
from miaudit.models._torch_train import split_validation


def plain_mlp(
    recipe: MLPRecipe, in_dim: int, n_classes: int, gen: torch.Generator
) -> nn.Sequential:
    sizes = [in_dim, *recipe.hidden, n_classes]
    layers: list[nn.Module] = []
    for i, (w, b) in enumerate(mlp_layer_params(sizes, gen)):
        lin = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def train_plain_mlp(
    recipe: MLPRecipe, data: Dataset, train_idx: np.ndarray, affine: Affine, streams: ModelStreams
) -> np.ndarray:
    """Train one MLP (no dropout, no early stopping) and return its logits on every record."""
    if (
        recipe.dropout
        or recipe.early_stopping
        or recipe.precision != "float32"
        or recipe.optimizer != "adam"
    ):
        raise ValueError(
            "the plain reference loop covers float32 Adam without dropout or early stopping"
        )
    gen = streams.torch_generator()
    model = plain_mlp(recipe, data.n_features, data.n_classes, gen)
    fit, _ = split_validation(recipe, np.asarray(train_idx), streams.numpy)
    x = torch.from_numpy(affine.apply(data.features))
    y = torch.from_numpy(data.label)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    for _ in range(recipe.epochs):
        perm = streams.numpy.permutation(fit)
        for start in range(0, len(perm), recipe.batch_size):
            idx = torch.from_numpy(perm[start : start + recipe.batch_size])
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
    with torch.no_grad():
        logits: torch.Tensor = model(x)  # nn.Module's __call__ is typed Any
    return logits.numpy()
