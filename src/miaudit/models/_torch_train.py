"""Train a stack of torch models (one training unit) and record their logits on every record.

Each model keeps its own minibatch order, dropout masks, augmentations and optimizer state
(step counts included), so the stack computes what training each model alone would compute;
the 1-epoch equality with a plain one-model loop is tested (tests/models) and benchmarked.

The stack, the records and the labels live on the training device (models/_device.py); random
draws are made on the CPU by the models' own generators and moved there, and the logits and
weights come back to the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from miaudit.datasets import Affine, Dataset
from miaudit.models._nets import (
    StackedCNN,
    StackedMLP,
    StackedNet,
    flip_images,
    query_views,
    shift_images,
)
from miaudit.models._recipe import Augmentation, CNNRecipe, MLPRecipe
from miaudit.models._stacked_adam import FlatBuffers, StackedAdam
from miaudit.models._streams import ModelStreams
from miaudit.models._train import UnitResult

#: Records per forward pass when computing logits on the whole dataset.
EVAL_CHUNK = 2048


def build_net(
    recipe: MLPRecipe | CNNRecipe,
    data: Dataset,
    gens: list[torch.Generator],
    device: torch.device | None = None,
) -> StackedNet:
    if isinstance(recipe, CNNRecipe):
        assert data.image_shape is not None
        return StackedCNN(recipe, data.image_shape, data.n_classes, gens, device)
    return StackedMLP(recipe, data.n_features, data.n_classes, gens, device)


def split_validation(
    recipe: MLPRecipe | CNNRecipe, train_idx: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(records to fit on, validation records), both from the model's own training half."""
    if recipe.early_stopping is None:
        return train_idx, train_idx[:0]
    perm = rng.permutation(train_idx)
    n_val = max(1, round(recipe.early_stopping.validation_fraction * len(perm)))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


class _ViewsOptimizer:
    """A torch optimizer over per-model views of the stacked weights (SGD): each model gets
    its own state, and a model with no batch this step is skipped, exactly as if it trained
    alone."""

    def __init__(
        self, opt: torch.optim.Optimizer, views: list[list[torch.Tensor]], net: StackedNet
    ) -> None:
        self.opt, self.views, self.net = opt, views, net

    def step(self, grads: list[torch.Tensor], active: list[bool]) -> None:
        for k, on in enumerate(active):
            for v, g in zip(self.views[k], grads, strict=True):
                v.grad = (g[k] if g.dtype == torch.float32 else g[k].float()) if on else None
        self.opt.step()
        for vs in self.views:
            for v in vs:
                v.grad = None
        self.net.sync_low()


def make_optimizer(recipe: MLPRecipe | CNNRecipe, net: StackedNet) -> StackedAdam | _ViewsOptimizer:
    if recipe.optimizer == "adam":
        if isinstance(net, StackedMLP):
            flat = FlatBuffers(net.flat_params, net.flat_grads, net.flat_low)
            return StackedAdam(
                net.params,
                lr=recipe.lr,
                weight_decay=recipe.weight_decay,
                mirrors=net.low,
                flat=flat,
            )
        return StackedAdam(net.params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    views = [[p.detach()[k] for p in net.params] for k in range(net.n_models)]
    sgd = torch.optim.SGD(
        [v for vs in views for v in vs],
        lr=recipe.lr,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
    )
    return _ViewsOptimizer(sgd, views, net)


def augment_batch(
    x: torch.Tensor,
    shape: tuple[int, int, int],
    augment: Sequence[Augmentation],
    gen: torch.Generator,
) -> torch.Tensor:
    """Random training augmentation of one model's batch x (records, C·H·W)."""
    n = x.shape[0]
    if "hflip" in augment:
        flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
        x = torch.where(flip[:, None], flip_images(x, shape), x)
    if "shift" in augment:
        d = torch.randint(-1, 2, (2, n), generator=gen).to(x.device)
        x = shift_images(x, shape, d[0], d[1])
    return x


class _Batcher:
    """Gathers each model's minibatch into one (models, rows, features) tensor."""

    def __init__(
        self,
        data: Dataset,
        affines: list[Affine],
        dtype: torch.dtype = torch.float32,
        device: torch.device | None = None,
    ) -> None:
        self.device = torch.device("cpu") if device is None else device
        self.x = torch.from_numpy(np.ascontiguousarray(data.features))
        scale = np.stack([a.scale for a in affines])
        shift = np.stack([a.shift for a in affines])
        # Fixed-column data (binary, pixels) needs no per-model map: skip two passes per step,
        # and hold the records in the compute dtype once (a cast commutes with the gather, so
        # the bits are those of casting every batch).
        self.identity = bool((scale == 1).all() and (shift == 0).all())
        if self.identity:
            self.x = self.x.to(dtype)
        self.x = self.x.to(self.device)
        self.scale = torch.from_numpy(scale).unsqueeze(1).to(self.device)
        self.shift = torch.from_numpy(shift).unsqueeze(1).to(self.device)
        self._buffers: dict[tuple[int, ...], torch.Tensor] = {}

    def gather(self, idx: np.ndarray, *, reuse: bool = False) -> torch.Tensor:
        """Rows ``idx`` (models, rows) → (models, rows, features). With ``reuse`` the result
        lives in a buffer that the next such call overwrites (no fresh pages every step)."""
        flat = torch.from_numpy(idx).reshape(-1).to(self.device)
        if reuse:
            buf = self._buffers.get(idx.shape)
            if buf is None:
                buf = self._buffers[idx.shape] = torch.empty(
                    flat.numel(), self.x.shape[1], dtype=self.x.dtype, device=self.device
                )
            xb = torch.index_select(self.x, 0, flat, out=buf).view(*idx.shape, -1)
        else:
            xb = self.x.index_select(0, flat).view(*idx.shape, -1)
        return xb if self.identity else torch.addcmul(self.shift, xb, self.scale)

    def rows(self, start: int, stop: int) -> torch.Tensor:
        xb = self.x[start:stop].unsqueeze(0)
        return (
            xb.expand(self.scale.shape[0], -1, -1)
            if self.identity
            else torch.addcmul(self.shift, xb, self.scale)
        )


@contextmanager
def flush_denormals() -> Iterator[None]:
    """Treat subnormal floats as zero while training.

    Adam's first moment of a weight whose gradient stays zero (a dead ReLU unit, an input
    feature absent from the batch) shrinks by β1 every step and turns subnormal after some
    700 steps; subnormal arithmetic is so slow on x86 that it doubled the time of Adam's
    update late in a 20-epoch run. Values below 1.2e-38 change no update in float32 or bfloat16.
    The flag is per thread: with ``engine.threads`` > 1, torch's other intra-op threads keep
    subnormals (slower, and another reason the thread count is part of the cache key). torch
    offers no way to read the flag, so it is switched off afterwards.
    """
    supported = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if supported:
            torch.set_flush_denormal(False)


@flush_denormals()
def train_stacked(
    recipe: MLPRecipe | CNNRecipe,
    data: Dataset,
    train_sets: list[np.ndarray],
    affines: list[Affine],
    streams: list[ModelStreams],
    on_epoch: Callable[[int], None] | None = None,
    *,
    device: torch.device | None = None,
) -> UnitResult:
    """Train one model per entry of ``train_sets`` (record positions in ``data``), stacked,
    on ``device`` (default: the CPU)."""
    m = len(train_sets)
    gens = [s.torch_generator() for s in streams]
    net = build_net(recipe, data, gens, device)
    splits = [
        split_validation(recipe, np.asarray(t), s.numpy)
        for t, s in zip(train_sets, streams, strict=True)
    ]
    fit_sets = [f for f, _ in splits]
    batcher = _Batcher(data, affines, net.dtype, net.device)
    y = torch.from_numpy(data.label).to(net.device)
    # Each model has its own optimizer state and step count; a model with no batch this step
    # is skipped, exactly as if it trained alone.
    opt = make_optimizer(recipe, net)
    augment = recipe.augment if isinstance(recipe, CNNRecipe) else []
    bs = recipe.batch_size
    stopper = _EarlyStopper(recipe, net, [v for _, v in splits], batcher, y)
    for epoch in range(recipe.epochs):
        perms = [s.numpy.permutation(f) for s, f in zip(streams, fit_sets, strict=True)]
        steps = max(math.ceil(len(p) / bs) for p in perms)
        for step in range(steps):
            chunks = [p[step * bs : (step + 1) * bs] for p in perms]
            active = [k for k in range(m) if len(chunks[k]) and not stopper.stopped[k]]
            if not active:
                continue
            _train_step(net, opt, batcher, y, chunks, active, gens, recipe, augment, data)
        stopper.after_epoch(epoch)
        if on_epoch is not None:
            on_epoch(epoch)
        if stopper.all_stopped:
            break
    kept = stopper.restore_best(recipe.epochs)
    logits = predict_stacked(net, batcher, data, augment)
    return UnitResult(state_on_cpu(net), logits, kept)


def state_on_cpu(net: StackedNet) -> dict[str, torch.Tensor]:
    """The stack's weights as CPU tensors (on the CPU already: the copy state_dict makes)."""
    return {name: t.cpu() for name, t in net.state_dict().items()}


def _train_step(
    net: StackedNet,
    opt: StackedAdam | _ViewsOptimizer,
    batcher: _Batcher,
    y: torch.Tensor,
    chunks: list[np.ndarray],
    active: list[int],
    gens: list[torch.Generator],
    recipe: MLPRecipe | CNNRecipe,
    augment: Sequence[Augmentation],
    data: Dataset,
) -> None:
    """One optimizer step of every active model on its own minibatch ``chunks[k]``."""
    m = len(chunks)
    width = max(len(c) for c in chunks)
    idx = np.zeros((m, width), dtype=np.int64)
    weight = np.zeros((m, width), dtype=np.float32)
    for k in active:
        c = chunks[k]
        idx[k, : len(c)] = c
        weight[k, : len(c)] = 1.0 / len(c)
    xb = batcher.gather(idx, reuse=True)
    if augment:
        assert data.image_shape is not None
        xb = xb.clone()
        for k in active:
            n_k = len(chunks[k])
            xb[k, :n_k] = augment_batch(xb[k, :n_k], data.image_shape, augment, gens[k])
    masks = _dropout_masks(net, width, chunks, active, gens, recipe.dropout)
    yb = y[torch.from_numpy(idx).to(y.device)]
    w = torch.from_numpy(weight).to(y.device)
    if isinstance(net, StackedMLP):
        net.grad_step(xb, yb, w, masks, recipe.label_smoothing)
        grads = net.grads
    else:
        logits = net.forward(xb, masks)
        per_record = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            yb.reshape(-1),
            reduction="none",
            label_smoothing=recipe.label_smoothing,
        )
        # What Tensor.backward() calls; unlike that method, this function is typed.
        torch.autograd.backward((per_record * w.reshape(-1)).sum())
        grads = [p.grad for p in net.params]  # type: ignore[misc]
    on = set(active)
    opt.step(grads, [k in on for k in range(m)])
    if not isinstance(net, StackedMLP):
        for p in net.params:
            p.grad = None


def _dropout_masks(
    net: StackedNet,
    width: int,
    chunks: list[np.ndarray],
    active: list[int],
    gens: list[torch.Generator],
    dropout: float,
) -> list[torch.Tensor] | None:
    """Each hidden layer's (models, width, units) inverted-dropout mask: each active model's
    rows drawn from its own generator, zero elsewhere; None without dropout."""
    shapes = net.dropout_shapes(width)
    if not shapes:
        return None
    keep = 1.0 - dropout
    m = len(chunks)
    masks = []
    for rows, cols in shapes:
        mk = torch.zeros(m, rows, cols)
        for k in active:
            mk[k, : len(chunks[k])] = (
                torch.empty(len(chunks[k]), cols).bernoulli_(keep, generator=gens[k]) / keep
            )
        masks.append(mk.to(device=net.device, dtype=net.dtype))
    return masks


class _EarlyStopper:
    """Per-model early stopping on the model's own validation records (no-op when off)."""

    def __init__(
        self,
        recipe: MLPRecipe | CNNRecipe,
        net: StackedNet,
        val_sets: list[np.ndarray],
        batcher: _Batcher,
        y: torch.Tensor,
    ) -> None:
        self.cfg = recipe.early_stopping
        self.net, self.val_sets, self.batcher, self.y = net, val_sets, batcher, y
        m = len(val_sets)
        self.stopped = [False] * m
        self.best = [math.inf] * m
        self.best_epoch = [-1] * m
        self.bad = [0] * m
        self.best_state: list[list[torch.Tensor] | None] = [None] * m

    @property
    def all_stopped(self) -> bool:
        return self.cfg is not None and all(self.stopped)

    def after_epoch(self, epoch: int) -> None:
        if self.cfg is None:
            return
        losses = self._val_losses()
        for k, loss in enumerate(losses):
            if self.stopped[k]:
                continue
            if loss < self.best[k]:
                self.best[k], self.best_epoch[k], self.bad[k] = loss, epoch, 0
                self.best_state[k] = [p.detach()[k].clone() for p in self.net.params]
            else:
                self.bad[k] += 1
                self.stopped[k] = self.bad[k] >= self.cfg.patience

    def restore_best(self, epochs: int) -> list[int]:
        if self.cfg is None:
            return [epochs - 1] * len(self.val_sets)
        with torch.no_grad():
            for k, state in enumerate(self.best_state):
                assert state is not None
                for p, s in zip(self.net.params, state, strict=True):
                    p[k].copy_(s)
        self.net.sync_low()
        return list(self.best_epoch)

    @torch.no_grad()
    def _val_losses(self) -> list[float]:
        m = len(self.val_sets)
        width = max(len(v) for v in self.val_sets)
        idx = np.zeros((m, width), dtype=np.int64)
        for k, v in enumerate(self.val_sets):
            idx[k, : len(v)] = v
        logits = self.net.forward(self.batcher.gather(idx))
        ce = F.cross_entropy(
            logits.transpose(1, 2),
            self.y[torch.from_numpy(idx).to(self.y.device)],
            reduction="none",
        )
        return [float(ce[k, : len(v)].mean()) for k, v in enumerate(self.val_sets)]


@torch.no_grad()
def predict_stacked(
    net: StackedNet, batcher: _Batcher, data: Dataset, augment: Sequence[Augmentation]
) -> np.ndarray:
    """Logits of every model on every record: (models, n, classes), or (models, n, queries,
    classes) when the recipe trains with augmentations."""
    outs = []
    for start in range(0, data.n_records, EVAL_CHUNK):
        xb = batcher.rows(start, min(start + EVAL_CHUNK, data.n_records))
        if augment:
            assert data.image_shape is not None
            outs.append(
                torch.stack(
                    [net.forward(q) for q in query_views(xb, data.image_shape, augment)], dim=2
                )
            )
        else:
            outs.append(net.forward(xb))
    return torch.cat(outs, dim=1).cpu().numpy().astype(np.float32, copy=False)
