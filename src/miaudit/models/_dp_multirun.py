"""Many small DP-SGD runs trained at once, for the multi-run DP audit (docs/dp.md, "Multi-run
mode"; docs/method.md §18).

R copies of a small ``torch-mlp`` recipe are stacked (``torch.func.stack_module_state``) and
trained together in chunks: per-sample gradients by ``vmap(vmap(grad))``, each clipped to C
(Opacus's factor min(1, C / (‖g‖ + 1e-6))), each run Poisson-sampling its own batches at rate
q, Gaussian noise σ·C on every coordinate of each run's clipped sum, divided by Opacus's
expected batch size, then the recipe's optimizer (Adam or SGD work coordinate-wise, so one
optimizer over the stacked tensors is R independent ones).

Each run holds one Dirac gradient canary (C·e_j on its own coordinate j), included by that
run's coin: when included it is Poisson-sampled into each step and added to the clipped sum
before the noise, exactly as a record is. Its score is the per-step likelihood ratio of the
released coordinate with the other records' clipped sum there removed (as ``GradientCanaries``).

No privacy accounting here: σ, q and the steps come from the caller, who asks Opacus's
accountant what they spend.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from miaudit.models._dp import _step_llr

#: Runs trained together (memory: runs × the largest batch × the model's coordinates floats).
CHUNK_RUNS = 100
#: Faults the batched trainer can plant (the others need Opacus's per-record machinery).
BATCHED_FAULTS = ("none", "zero_noise")


@dataclasses.dataclass(frozen=True)
class BatchedMechanism:
    """What every run does: noise σ (units of C), clipping norm C, rate q, steps, optimizer."""

    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    steps: int
    optimizer: str
    lr: float
    weight_decay: float = 0.0
    momentum: float = 0.0
    fault: str = "none"
    label_smoothing: float = 0.0


@dataclasses.dataclass(frozen=True)
class BatchedRuns:
    """Per run: its canary's score (higher = included) and its test accuracy."""

    scores: np.ndarray
    accuracy: np.ndarray


def _optimizer(params: list[torch.Tensor], mech: BatchedMechanism) -> torch.optim.Optimizer:
    if mech.optimizer == "adam":
        return torch.optim.Adam(params, lr=mech.lr, weight_decay=mech.weight_decay)
    return torch.optim.SGD(
        params, lr=mech.lr, momentum=mech.momentum, weight_decay=mech.weight_decay
    )


def _per_sample_grads(base: nn.Module, label_smoothing: float) -> Any:
    """(stacked params, x (G, B, d), y (G, B)) → per-run, per-sample gradients (G, B, …)."""
    from torch.func import functional_call, grad, vmap

    def loss(params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = functional_call(base, params, (x.unsqueeze(0),))
        return F.cross_entropy(out, y.unsqueeze(0), label_smoothing=label_smoothing)

    return vmap(vmap(grad(loss), in_dims=(None, 0, 0)), in_dims=(0, 0, 0))


def _poisson_batches(
    n: int, runs: int, q: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each run's Poisson batch as (indices (G, B), valid (G, B)), padded to the largest."""
    mask = torch.rand(runs, n, generator=gen) < q
    counts = mask.sum(1)
    width = max(1, int(counts.max()))
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)[:, :width]
    return order, torch.arange(width)[None, :] < counts[:, None]


def _flat(tensors: dict[str, torch.Tensor], runs: int) -> torch.Tensor:
    return torch.cat([t.reshape(runs, -1) for t in tensors.values()], dim=1)


class _ChunkState:
    """One chunk's stacked weights, optimizer, canaries and running scores."""

    def __init__(
        self,
        modules: list[nn.Module],
        coords: np.ndarray,
        included: np.ndarray,
        mech: BatchedMechanism,
    ) -> None:
        from torch.func import stack_module_state

        params, _ = stack_module_state(modules)
        self.params = {k: v.detach().requires_grad_(False) for k, v in params.items()}
        self.shapes = [v.shape[1:] for v in self.params.values()]
        self.runs = len(modules)
        self.coords = torch.from_numpy(coords.astype(np.int64))
        self.included = torch.from_numpy(included.astype(bool))
        self.opt = _optimizer(list(self.params.values()), mech)
        self.scores = np.zeros(self.runs)

    def step(self, released: torch.Tensor, denominator: float) -> None:
        """Set each stacked tensor's gradient from the released sums, and step."""
        at = 0
        for t, shape in zip(self.params.values(), self.shapes, strict=True):
            size = math.prod(shape)
            t.grad = (released[:, at : at + size] / denominator).reshape(self.runs, *shape)
            at += size
        self.opt.step()


def _one_step(
    state: _ChunkState,
    grads_fn: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    mech: BatchedMechanism,
    gen: torch.Generator,
) -> None:
    n, runs, c = x.shape[0], state.runs, mech.max_grad_norm
    idx, valid = _poisson_batches(n, runs, mech.sample_rate, gen)
    grads = _flat(grads_fn(state.params, x[idx], y[idx]), runs * idx.shape[1])
    grads = grads.reshape(runs, idx.shape[1], -1)
    factor = (c / (grads.norm(dim=2) + 1e-6)).clamp(max=1.0) * valid
    summed = torch.einsum("gb,gbp->gp", factor, grads)
    rows = torch.arange(runs)
    others = summed[rows, state.coords].double()
    sampled = state.included & (torch.rand(runs, generator=gen) < mech.sample_rate)
    summed[rows, state.coords] += c * sampled.to(summed.dtype)
    sigma = 0.0 if mech.fault == "zero_noise" else mech.noise_multiplier
    released = summed + sigma * c * torch.randn(summed.shape, generator=gen)
    obs = ((released[rows, state.coords].double() - others) / c).numpy()
    state.scores += _step_llr(obs, mech.noise_multiplier, mech.sample_rate)
    state.step(released, max(1.0, mech.sample_rate * n))  # Opacus's expected batch size


def train_dp_runs(
    modules: list[nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    coords: np.ndarray,
    included: np.ndarray,
    mech: BatchedMechanism,
    seed: int,
) -> BatchedRuns:
    """Train ``modules`` (one per run, its initial weights) as R DP-SGD runs with one Dirac
    gradient canary each (``coords[i]``, included when ``included[i]``), ``CHUNK_RUNS`` at a
    time; ``seed`` fixes each chunk's sampling and noise. Returns scores and test accuracies."""
    from torch.func import functional_call, vmap

    if mech.fault not in BATCHED_FAULTS:
        raise ValueError(f"fault {mech.fault!r} is not plantable in batched runs")
    scores, accuracy = [], []
    for ci, start in enumerate(range(0, len(modules), CHUNK_RUNS)):
        part = slice(start, start + CHUNK_RUNS)
        state = _ChunkState(modules[part], coords[part], included[part], mech)
        base = modules[start]
        grads_fn = _per_sample_grads(base, mech.label_smoothing)
        gen = torch.Generator().manual_seed(
            int(np.random.SeedSequence([seed, ci]).generate_state(1)[0])
        )
        for _ in range(mech.steps):
            _one_step(state, grads_fn, x, y, mech, gen)
        with torch.no_grad():
            logits = vmap(lambda p, net=base: functional_call(net, p, (x_test,)))(state.params)
        accuracy.append((logits.argmax(-1) == y_test[None, :]).float().mean(1).numpy())
        scores.append(state.scores)
    return BatchedRuns(np.concatenate(scores), np.concatenate(accuracy).astype(np.float64))
