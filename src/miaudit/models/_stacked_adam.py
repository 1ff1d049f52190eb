"""Adam for a stack of models: one state and step count per model, a handful of calls per step.

``torch.optim.Adam(fused=True)`` over per-model views computes the right update, but its Python
side (grouping, a step increment per tensor) costs as much as the update on one core, and in
bfloat16 mode the gradients must be widened and the weights narrowed around it. Here
``torch._fused_adam_`` (the kernel ``torch.optim.Adam(fused=True)`` runs, so the float32 update
is exactly its) updates every active model at once, with one step counter per model, and the
bfloat16 copies of the weights the next forward pass multiplies with are refreshed in place.

When the parameters are views of one flat buffer (``flat``) and every model takes the same step,
as they do unless training sets differ in size or early stopping benched a model, the update,
the widening and the narrowing are one call each over the whole buffer. The kernel is
elementwise but rounds the last ``numel mod vector width`` elements of each tensor in scalar code,
so this path and the per-model one can differ in the last bit of a few elements: a model's bits
depend on its unit's layout (as the batched matmuls' blocking already makes them), and are
reproducible for a given layout, which the cache key fixes. A model without a batch this step
is left untouched, exactly as if it trained alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True, eq=False)
class FlatBuffers:
    """One buffer each behind the stacked parameters, their gradients (any dtype) and,
    optionally, their low-precision mirrors: ``params[i]`` views ``params_flat``."""

    params: torch.Tensor
    grads: torch.Tensor
    mirrors: torch.Tensor | None = None


class StackedAdam:
    """Adam (L2 ``weight_decay`` as ``torch.optim.Adam``) on stacked parameters (models, …).

    ``mirrors``: low-precision copies of the parameters, refreshed after every update, or None.
    ``flat``: the buffers the parameters, gradients and mirrors are views of, or None.
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
        flat: FlatBuffers | None = None,
    ) -> None:
        self.params, self.mirrors, self.flat = params, mirrors, flat
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.n_models = int(params[0].shape[0])
        if flat is not None:
            self._m_flat, self._v_flat = (
                torch.zeros_like(flat.params),
                torch.zeros_like(flat.params),
            )
            self.exp_avg = [self._like(self._m_flat, p) for p in params]
            self.exp_avg_sq = [self._like(self._v_flat, p) for p in params]
        else:
            self.exp_avg = [torch.zeros_like(p) for p in params]
            self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        # torch.optim.Adam(fused=True) keeps each step count as a float32 scalar tensor; the
        # tensors of one model share its count. ``counts`` mirrors them in Python.
        # On the parameters' device, as the fused kernel wants them.
        self.steps = [
            torch.zeros((), dtype=torch.float32, device=params[0].device)
            for _ in range(self.n_models)
        ]
        self.counts = [0] * self.n_models
        self._wide: torch.Tensor | None = None
        self._cached: tuple[tuple[int, ...], tuple[list[torch.Tensor], ...]] | None = None

    def _like(self, buffer: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """The view of ``buffer`` at the place ``p`` has in the flat parameter buffer."""
        assert self.flat is not None
        start = (p.data_ptr() - self.flat.params.data_ptr()) // p.element_size()
        return buffer[start : start + p.numel()].view(p.shape)

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
        if (
            len(ks) < self.n_models or self.flat is None
        ):  # without flat buffers, gradients are new each step
            return self._lists(ks, grads)
        # Built once for the usual step: the cached gradient views keep their storage alive,
        # so equal addresses mean equal buffers.
        key = tuple(g.data_ptr() for g in grads)
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, self._lists(ks, grads))
        return self._cached[1]

    def _adam(
        self,
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        m: list[torch.Tensor],
        v: list[torch.Tensor],
        steps: list[torch.Tensor],
    ) -> None:
        torch._fused_adam_(
            params,
            grads,
            m,
            v,
            [],
            steps,
            lr=self.lr,
            beta1=self.betas[0],
            beta2=self.betas[1],
            weight_decay=self.weight_decay,
            eps=self.eps,
            amsgrad=False,
            maximize=False,
        )

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor], active: list[bool]) -> None:
        """One update of every active model; ``grads[i]`` is stacked like ``params[i]`` (float32,
        or low precision: widened first, as ``torch.optim.Adam`` would need)."""
        ks = [k for k, on in enumerate(active) if on]
        if not ks:
            return
        torch._foreach_add_([self.steps[k] for k in ks], 1)
        for k in ks:
            self.counts[k] += 1
        flat = self.flat
        if (
            flat is not None
            and len(ks) == self.n_models
            and len(set(self.counts)) == 1
            and all(self._is_view(g, flat.grads) for g in grads)
        ):
            g = flat.grads
            if g.dtype != torch.float32:
                if self._wide is None:
                    self._wide = torch.empty_like(flat.params)
                g = self._wide.copy_(g)
            self._adam([flat.params], [g], [self._m_flat], [self._v_flat], [self.steps[0]])
            if flat.mirrors is not None:
                flat.mirrors.copy_(flat.params)
            return
        if any(g.dtype != torch.float32 for g in grads):
            grads = [g.float() for g in grads]
        self._adam(*self._views(ks, grads))
        if self.mirrors is not None:
            for low, p in zip(self.mirrors, self.params, strict=True):
                low.copy_(p)

    @staticmethod
    def _is_view(t: torch.Tensor, buffer: torch.Tensor) -> bool:
        start = buffer.data_ptr()
        return start <= t.data_ptr() < start + buffer.numel() * buffer.element_size()
