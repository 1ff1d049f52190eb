"""Several small torch models as one computation: stacked weights, batched matmuls.

Model b of a stack owns slice ``[b]`` of every parameter tensor. Its forward pass reads only its
own slice and its own minibatch, so stacking changes how fast models train, not what they
compute (up to the last bits of a few values: batched kernels block and round differently).
Initial weights follow ``torch.nn.Linear``/``Conv2d`` defaults (uniform in ±1/sqrt(fan_in)),
drawn from each model's own generator.

A stack lives on one torch device (models/_device.py). Initial weights are drawn on the CPU from
the models' CPU generators and then moved, so every device starts from the same weights.
"""

from __future__ import annotations

import abc
import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from miaudit.models._recipe import Augmentation, CNNRecipe, MLPRecipe

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def uniform_init(shape: tuple[int, ...], fan_in: int, gen: torch.Generator) -> torch.Tensor:
    bound = 1.0 / math.sqrt(fan_in)
    return torch.empty(shape).uniform_(-bound, bound, generator=gen)


def flat_views(
    shapes: list[torch.Size], dtype: torch.dtype, device: torch.device | None = None
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One zeroed buffer and contiguous views of it with ``shapes``, back to back."""
    flat = torch.zeros(sum(s.numel() for s in shapes), dtype=dtype, device=device)
    views, start = [], 0
    for s in shapes:
        views.append(flat[start : start + s.numel()].view(s))
        start += s.numel()
    return flat, views


def mlp_layer_params(
    sizes: list[int], gen: torch.Generator
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One model's initial (weight (out, in), bias (out,)) per layer, in nn.Linear's layout."""
    return [
        (uniform_init((o, i), i, gen), uniform_init((o,), i, gen))
        for i, o in itertools.pairwise(sizes)
    ]


class StackedNet(abc.ABC):
    """Base: a list of stacked leaf parameters, a precision and the device they live on."""

    params: list[torch.Tensor]
    names: list[str]

    def __init__(self, precision: str, dropout: float, device: torch.device | None) -> None:
        self.dtype = DTYPES[precision]
        self.dropout = dropout
        self.device = torch.device("cpu") if device is None else device

    @property
    def n_models(self) -> int:
        return int(self.params[0].shape[0])

    def cast(self) -> list[torch.Tensor]:
        # bfloat16 mode: low-precision copies in the graph, float32 master weights for the
        # optimizer (the gradient flows back through the cast in float32).
        if self.dtype == torch.float32:
            return self.params
        return [p.to(self.dtype) for p in self.params]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in zip(self.names, self.params, strict=True)}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for n, p in zip(self.names, self.params, strict=True):
                p.copy_(state[n])
        self.sync_low()

    def sync_low(self) -> None:  # noqa: B027 - an optional hook; most nets keep no copies
        """Refresh low-precision copies of the weights kept between steps (none by default)."""

    def _drop(self, h: torch.Tensor, masks: list[torch.Tensor] | None) -> torch.Tensor:
        if masks is None:
            return h
        return h * masks.pop(0).to(h.dtype)

    @abc.abstractmethod
    def forward(self, x: torch.Tensor, masks: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Logits of every model: (n_models, batch, n_classes)."""

    @abc.abstractmethod
    def dropout_shapes(self, bs: int) -> list[tuple[int, int]]:
        """Shapes (per model) of the dropout masks of one step with ``bs`` records."""


class StackedMLP(StackedNet):
    """``n_models`` MLPs in_dim → hidden… → n_classes with ReLU (and dropout after each hidden)."""

    def __init__(
        self,
        recipe: MLPRecipe,
        in_dim: int,
        n_classes: int,
        gens: list[torch.Generator],
        device: torch.device | None = None,
    ) -> None:
        super().__init__(recipe.precision, recipe.dropout, device)
        self.sizes = [in_dim, *recipe.hidden, n_classes]
        per_model = [mlp_layer_params(self.sizes, g) for g in gens]
        stacked, self.names = [], []
        for layer in range(len(self.sizes) - 1):
            # bmm wants (in, out): store the transpose of nn.Linear's weight.
            stacked.append(torch.stack([m[layer][0].t() for m in per_model]))
            stacked.append(torch.stack([m[layer][1] for m in per_model]).unsqueeze(1))
            self.names += [f"layer{layer}.weight", f"layer{layer}.bias"]
        # Training computes gradients by hand (grad_step): no autograd graph, and every large
        # tensor of a step (low-precision weight copies, activations, gradients) lives in a
        # buffer reused from step to step. Fresh allocations of that size cost page faults
        # comparable to the matmuls themselves on one thread. Parameters, gradients and the
        # low-precision weights are each views of one flat buffer, so the optimizer can update,
        # widen and narrow them in one call each (StackedAdam).
        shapes = [t.shape for t in stacked]
        self.flat_params, self.params = flat_views(shapes, torch.float32, self.device)
        for p, t in zip(self.params, stacked, strict=True):
            p.copy_(t)
        # Gradients in the compute dtype: bfloat16 mode hands bfloat16 gradients to the optimizer.
        self.flat_grads, self.grads = flat_views(shapes, self.dtype, self.device)
        # bfloat16 mode: the weights the matmuls use, refreshed by sync_low() or by the optimizer.
        self.flat_low: torch.Tensor | None = None
        self.low: list[torch.Tensor] | None = None
        if self.dtype != torch.float32:
            self.flat_low, self.low = flat_views(shapes, self.dtype, self.device)
        self.sync_low()
        self._acts: dict[int, list[torch.Tensor]] = {}
        self._ones: dict[int, torch.Tensor] = {}

    def sync_low(self) -> None:
        """Refresh the low-precision weights from the float32 master weights."""
        if self.low is not None:
            for low, p in zip(self.low, self.params, strict=True):
                low.copy_(p)

    def dropout_shapes(self, bs: int) -> list[tuple[int, int]]:
        return [(bs, h) for h in self.sizes[1:-1]] if self.dropout > 0 else []

    def _activations(self, n: int) -> list[torch.Tensor]:
        if n not in self._acts:
            self._acts[n] = [
                torch.empty(self.n_models, n, o, dtype=self.dtype, device=self.device)
                for o in self.sizes[1:]
            ]
        return self._acts[n]

    @torch.no_grad()
    def grad_step(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        weight: torch.Tensor,
        masks: list[torch.Tensor] | None,
        label_smoothing: float,
    ) -> None:
        """Gradient of Σ_k Σ_i weight[k, i] · CE(model k on x[k, i], y[k, i]) into ``self.grads``
        (compute dtype), using the low-precision weights as they are (see :meth:`sync_low`).

        x (models, records, in_dim); y (models, records) int64; weight (models, records)
        float32 (1/batch size, 0 for padding); masks: dropout multipliers (0 or 1/keep) per
        hidden layer. Cross-entropy with label smoothing ε has gradient softmax − q with
        q = (1 − ε)·onehot + ε/C with respect to the logits.
        """
        n_layers = len(self.sizes) - 1
        ps = self.params if self.low is None else self.low
        acts = [x if x.dtype == self.dtype else x.to(self.dtype)]
        for layer, z in enumerate(self._activations(x.shape[1])):
            torch.baddbmm(ps[2 * layer + 1], acts[-1], ps[2 * layer], out=z)
            if layer < n_layers - 1:
                z.relu_()
                if masks:
                    z.mul_(masks[layer])
            acts.append(z)
        g = torch.softmax(acts[-1].float(), dim=-1)
        if label_smoothing:
            g.sub_(label_smoothing / g.shape[-1])
        _add_at_labels(g, y, label_smoothing - 1.0)
        g.mul_(weight.unsqueeze(-1))
        gz = g.to(self.dtype)
        for layer in range(n_layers - 1, -1, -1):
            gw, gb = self.grads[2 * layer], self.grads[2 * layer + 1]
            torch.bmm(acts[layer].transpose(1, 2), gz, out=gw)
            if self.low is None:
                torch.sum(gz, dim=1, keepdim=True, out=gb)
            else:
                # Σ over records as a matmul with ones: a strided bfloat16 reduction is several
                # times slower, and the result has the precision of the weight gradients.
                torch.bmm(self._ones_row(gz.shape[1]), gz, out=gb)
            if layer > 0:
                gh = torch.bmm(gz, ps[2 * layer].transpose(1, 2))
                if masks:
                    gh.mul_(masks[layer - 1])
                # ReLU's gradient: acts[layer] > 0 exactly where the unit was on (and kept).
                gz = torch.ops.aten.threshold_backward(gh, acts[layer], 0)

    def _ones_row(self, n: int) -> torch.Tensor:
        if n not in self._ones:
            self._ones[n] = torch.ones(self.n_models, 1, n, dtype=self.dtype, device=self.device)
        return self._ones[n]

    def forward(self, x: torch.Tensor, masks: list[torch.Tensor] | None = None) -> torch.Tensor:
        """x (models, records, in_dim) → logits (models, records, classes) float32."""
        ps = self.cast()
        h = x.to(self.dtype)
        last = len(ps) // 2 - 1
        for layer in range(last + 1):
            h = torch.baddbmm(ps[2 * layer + 1], h, ps[2 * layer])
            if layer < last:
                h = self._drop(torch.relu(h), masks)
        return h.float()


def _add_at_labels(g: torch.Tensor, y: torch.Tensor, value: float) -> None:
    """``g[k, i, y[k, i]] += value`` in place. On the CPU a scatter-add; on a GPU, where torch
    has no deterministic scatter-add over several dimensions, the same sums as a one-hot add
    (adding -0.0 elsewhere changes no value)."""
    if g.device.type == "cpu":
        g.scatter_add_(2, y.unsqueeze(-1), torch.full((*y.shape, 1), value))
    else:
        one_hot_add(g, y, value)


def one_hot_add(g: torch.Tensor, y: torch.Tensor, value: float) -> None:
    """``g[k, i, y[k, i]] += value`` in place through a one-hot tensor (any device)."""
    g.add_(F.one_hot(y, g.shape[-1]).to(g.dtype) * value)


class StackedCNN(StackedNet):
    """Small CNNs on (C, H, W) images, stacked as one grouped convolution (groups = models)."""

    def __init__(
        self,
        recipe: CNNRecipe,
        image_shape: tuple[int, int, int],
        n_classes: int,
        gens: list[torch.Generator],
        device: torch.device | None = None,
    ) -> None:
        super().__init__(recipe.precision, recipe.dropout, device)
        c, h, w = image_shape
        self.image_shape = image_shape
        convs = []
        chans = [c, *recipe.channels]
        for cin, cout in itertools.pairwise(chans):
            convs.append((cin, cout))
            h, w = h // 2, w // 2
        if h < 1 or w < 1:
            from miaudit.errors import InputError

            raise InputError(
                "model.channels",
                f"{len(recipe.channels)} pooled conv layers shrink a {image_shape[1]}×{image_shape[2]} image to nothing",
            )
        flat = chans[-1] * h * w
        self.dense_sizes = [flat, recipe.hidden, n_classes]
        self.n_convs = len(convs)
        per_model = []
        for g in gens:
            ps = []
            for cin, cout in convs:
                fan = cin * 9
                ps += [uniform_init((cout, cin, 3, 3), fan, g), uniform_init((cout,), fan, g)]
            for wt, b in mlp_layer_params(self.dense_sizes, g):
                ps += [wt.t().contiguous(), b.unsqueeze(0)]
            per_model.append(ps)
        self.params = [
            torch.stack([m[i] for m in per_model]).contiguous().to(self.device).requires_grad_()
            for i in range(len(per_model[0]))
        ]
        self.names = [f"conv{i}.{t}" for i in range(self.n_convs) for t in ("weight", "bias")] + [
            f"dense{i}.{t}" for i in range(2) for t in ("weight", "bias")
        ]

    def dropout_shapes(self, bs: int) -> list[tuple[int, int]]:
        return [(bs, self.dense_sizes[1])] if self.dropout > 0 else []

    def forward(self, x: torch.Tensor, masks: list[torch.Tensor] | None = None) -> torch.Tensor:
        """x (models, records, C·H·W) float32 → logits (models, records, classes) float32."""
        ps = self.cast()
        m, n = x.shape[:2]
        c, hh, ww = self.image_shape
        # (records, models·channels, H, W): model b's images sit in channel group b.
        h = x.to(self.dtype).view(m, n, c, hh, ww).transpose(0, 1).reshape(n, m * c, hh, ww)
        for i in range(self.n_convs):
            wt, b = ps[2 * i], ps[2 * i + 1]
            h = F.conv2d(h, wt.reshape(-1, *wt.shape[2:]), b.reshape(-1), padding=1, groups=m)
            h = F.max_pool2d(torch.relu(h), 2)
        h = h.reshape(n, m, -1).transpose(0, 1)
        w1, b1, w2, b2 = ps[2 * self.n_convs :]
        h = self._drop(torch.relu(torch.baddbmm(b1, h, w1)), masks)
        return torch.baddbmm(b2, h, w2).float()


def shift_images(
    x: torch.Tensor, shape: tuple[int, int, int], dy: torch.Tensor, dx: torch.Tensor
) -> torch.Tensor:
    """Shift each image of x (..., C·H·W) by (dy, dx) ∈ {-1, 0, 1}² pixels, zero-filled."""
    c, h, w = shape
    lead = x.shape[:-1]
    img = F.pad(x.reshape(-1, c, h, w), (1, 1, 1, 1))
    dy, dx = dy.reshape(-1).to(x.device), dx.reshape(-1).to(x.device)
    out = torch.zeros(img.shape[0], c, h, w, dtype=x.dtype, device=x.device)
    for sy in (-1, 0, 1):
        for sx in (-1, 0, 1):
            sel = (dy == sy) & (dx == sx)
            if sel.any():
                out[sel] = img[sel, :, 1 - sy : 1 - sy + h, 1 - sx : 1 - sx + w]
    return out.reshape(*lead, c * h * w)


def flip_images(x: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    c, h, w = shape
    return x.reshape(*x.shape[:-1], c, h, w).flip(-1).reshape(x.shape)


def query_views(
    x: torch.Tensor, shape: tuple[int, int, int], augment: Sequence[Augmentation]
) -> list[torch.Tensor]:
    """The inference queries of a recipe that trains with ``augment``: the image itself first,
    then its mirror (hflip), then one-pixel shifts (of the image, and of the mirror)."""
    bases = [x] + ([flip_images(x, shape)] if "hflip" in augment else [])
    out = list(bases)
    if "shift" in augment:
        n = x.shape[:-1].numel()
        for base in bases:
            for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                dys, dxs = torch.full((n,), dy), torch.full((n,), dx)
                out.append(shift_images(base, shape, dys, dxs))
    return out
