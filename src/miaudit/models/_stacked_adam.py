"""Adam for a stack of models: one state and step count per model, a handful of calls per step.

``torch.optim.Adam(fused=True)`` over per-model views computes the right update, but its Python
side (grouping, a step increment per tensor) costs as much as the update on one core, and in
bfloat16 mode the gradients must be widened and the weights narrowed around it. Here one
``torch._fused_adam_`` call (the kernel ``torch.optim.Adam(fused=True)`` runs, so the float32
update is exactly its) updates every active model, with one step counter per model, and the
bfloat16 copies of the weights the next forward pass multiplies with are refreshed in place.

A model without a batch this step is left untouched, exactly as if it trained alone.
"""

from __future__ import annotations

import torch


class StackedAdam:
    """Adam (L2 ``weight_decay`` as ``torch.optim.Adam``) on stacked parameters (models, …).

    ``mirrors``: low-precision copies of the parameters, refreshed after every update, or None.
    """

    def __init__(
        self,
        params: list[torch.Tensor],
        *,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        mirrors: list[torch.Tensor] | None = None,
    ) -> None:
        self.params = params
        self.mirrors = mirrors
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.n_models = int(params[0].shape[0])
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        # torch.optim.Adam(fused=True) keeps each step count as a float32 scalar tensor; the
        # tensors of one model share its count.
        self.steps = [torch.zeros((), dtype=torch.float32) for _ in range(self.n_models)]
        self._wide: list[torch.Tensor] | None = None
        # Views for the usual step (every model active, the same gradient buffers), built once:
        # the cached gradient views keep their storage alive, so equal addresses mean equal buffers.
        self._cached: tuple[tuple[int, ...], tuple[list[torch.Tensor], ...]] | None = None

    def _lists(self, ks: list[int], grads: list[torch.Tensor]) -> tuple[list[torch.Tensor], ...]:
        """Per-(model, tensor) views: parameters, gradients, moments, step counts."""
        pairs = [(k, i) for k in ks for i in range(len(self.params))]
        return (
            [self.params[i][k] for k, i in pairs],
            [grads[i][k] for k, i in pairs],
            [self.exp_avg[i][k] for k, i in pairs],
            [self.exp_avg_sq[i][k] for k, i in pairs],
            [self.steps[k] for k, _ in pairs],
        )

    def _views(self, ks: list[int], grads: list[torch.Tensor]) -> tuple[list[torch.Tensor], ...]:
        if len(ks) < self.n_models:
            return self._lists(ks, grads)
        key = tuple(g.data_ptr() for g in grads)
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, self._lists(ks, grads))
        return self._cached[1]

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor], active: list[bool]) -> None:
        """One update of every active model; ``grads[i]`` is stacked like ``params[i]`` (float32,
        or low precision: widened first, as ``torch.optim.Adam`` would need)."""
        if any(g.dtype != torch.float32 for g in grads):
            if self._wide is None:
                self._wide = [torch.empty_like(p) for p in self.params]
            for w, g in zip(self._wide, grads, strict=True):
                w.copy_(g)
            grads = self._wide
        ks = [k for k, on in enumerate(active) if on]
        if not ks:
            return
        params, gs, m, v, steps = self._views(ks, grads)
        torch._foreach_add_([self.steps[k] for k in ks], 1)
        torch._fused_adam_(
            params, gs, m, v, [], steps,
            lr=self.lr, beta1=self.betas[0], beta2=self.betas[1], weight_decay=self.weight_decay,
            eps=self.eps, amsgrad=False, maximize=False,
        )
        if self.mirrors is not None:
            for low, p in zip(self.mirrors, self.params, strict=True):
                low.copy_(p)
