"""StackedAdam against torch.optim.Adam on each model alone."""

from __future__ import annotations

import torch

from miaudit.models._stacked_adam import StackedAdam


def _stack(seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(3, 5, 4, generator=g), torch.randn(3, 1, 4, generator=g)]


def test_each_model_updates_exactly_as_torch_adam_alone() -> None:
    params = _stack(0)
    alone = [[p[k].clone().requires_grad_() for p in params] for k in range(3)]
    opts = [torch.optim.Adam(ps, lr=0.01, weight_decay=0.1, fused=True) for ps in alone]
    stacked = StackedAdam(params, lr=0.01, weight_decay=0.1)
    # Model 1 sits out step 2 (no batch): its state, step count included, must not move.
    schedule = [[True, True, True], [True, False, True], [True, True, True]]
    for step, active in enumerate(schedule):
        grads = _stack(100 + step)
        stacked.step(grads, active)
        for k, on in enumerate(active):
            if on:
                for a, gr in zip(alone[k], grads, strict=True):
                    a.grad = gr[k].clone()
                opts[k].step()
    for k in range(3):
        for p, a in zip(params, alone[k], strict=True):
            assert torch.equal(p[k], a.detach())


def test_low_precision_gradients_are_widened_and_mirrors_refreshed() -> None:
    params, ref = _stack(1), _stack(1)
    mirrors = [p.to(torch.bfloat16) for p in params]
    low = StackedAdam(params, lr=0.01, mirrors=mirrors)
    wide = StackedAdam(ref, lr=0.01)
    grads = [g.to(torch.bfloat16) for g in _stack(7)]
    low.step(grads, [True] * 3)
    wide.step([g.float() for g in grads], [True] * 3)
    for p, r, m in zip(params, ref, mirrors, strict=True):
        assert torch.equal(p, r)
        assert torch.equal(m, p.to(torch.bfloat16))
