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


def test_flat_buffers_match_per_model_views() -> None:
    """The one-call path over flat buffers against the per-model path. The fused kernel rounds
    each tensor's last (numel mod vector width) elements in scalar code, so the paths may differ
    in the last bit of a few elements (module docstring): equal within 1e-6 relative, and the
    bfloat16 mirrors always equal the float32 weights rounded."""
    from miaudit.models._nets import flat_views
    from miaudit.models._stacked_adam import FlatBuffers

    g = torch.Generator().manual_seed(2)
    start = [
        torch.randn(3, 7, 5, generator=g),
        torch.randn(3, 1, 5, generator=g),
        torch.randn(3, 5, 3, generator=g),
    ]
    shapes = [p.shape for p in start]
    flat_p, params = flat_views(shapes, torch.float32)
    flat_g, grads = flat_views(shapes, torch.bfloat16)
    flat_low, mirrors = flat_views(shapes, torch.bfloat16)
    for p, s in zip(params, start, strict=True):
        p.copy_(s)
    fast = StackedAdam(
        params,
        lr=0.01,
        weight_decay=0.01,
        mirrors=mirrors,
        flat=FlatBuffers(flat_p, flat_g, flat_low),
    )
    ref = [s.clone() for s in start]
    slow = StackedAdam(ref, lr=0.01, weight_decay=0.01)
    # five steps of every model (one flat call each), one with model 1 benched (per-model views),
    # then every model again (step counts now differ: per-model views)
    schedule = [[True] * 3] * 5 + [[True, False, True]] + [[True] * 3] * 2
    for _step, active in enumerate(schedule):
        for gr in grads:
            gr.copy_(torch.randn(gr.shape, generator=g))
        fast.step(grads, active)
        slow.step([gr.float() for gr in grads], active)
        for p, r, m in zip(params, ref, mirrors, strict=True):
            torch.testing.assert_close(p, r, rtol=1e-6, atol=1e-7)
            assert torch.equal(m, p.to(torch.bfloat16))
    assert fast.counts == [8, 7, 8]
