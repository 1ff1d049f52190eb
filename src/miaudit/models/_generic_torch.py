"""The generic per-model trainer of the ``torch-module`` kind: the user's ``nn.Module`` (built by
their factory), trained one model at a time with the recipe's optimizer, epochs, batch size,
weight decay, label smoothing and early stopping, or with their own ``train_step``.

The stacked engine (models/_torch_train.py) stays the fast path for the built-in MLP and CNN;
this one runs any architecture. Model k's bits depend only on its own streams
(models/_streams.py): its weights are initialised and its random layers draw from torch's
global generator seeded with the model's torch seed (inside ``torch.random.fork_rng``, so the
caller's generator is left as it was), and its minibatch order and validation split come from
its numpy generator, as in the stacked engine. On CPU a seed reproduces a model bit for bit
(for a fixed thread count, which the cache key holds).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from miaudit.datasets import Affine, Dataset
from miaudit.errors import InputError, UserCodeError
from miaudit.models._nets import query_views
from miaudit.models._recipe import TorchModuleRecipe
from miaudit.models._streams import ModelStreams
from miaudit.models._torch_train import EVAL_CHUNK, augment_batch, flush_denormals
from miaudit.models._train import UnitResult
from miaudit.models._user_code import code_name, users_code

#: ``train_step(module, features, labels, optimizer)``: one optimizer step on a minibatch.
TrainStep = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, torch.optim.Optimizer], Any]


@dataclass(frozen=True)
class ModuleCode:
    """The user's code for a ``torch-module`` recipe, imported: the factory and the optional
    train step."""

    factory: Callable[..., Any]
    train_step: TrainStep | None = None


@flush_denormals()
def train_modules(
    recipe: TorchModuleRecipe,
    code: ModuleCode,
    data: Dataset,
    train_sets: list[np.ndarray],
    affines: list[Affine],
    streams: list[ModelStreams],
    *,
    on_epoch: Callable[[int, int], None] | None = None,
    device: str = "cpu",
) -> UnitResult:
    """Train one module per entry of ``train_sets`` (record positions in ``data``), one after
    another; ``on_epoch(model_position, epoch)`` after each epoch. Returns their weights
    stacked (tensor name → (models, …)), their logits (models, records, classes) and the
    epoch whose weights each kept."""
    states, logits, kept = [], [], []
    y = torch.from_numpy(np.ascontiguousarray(data.label, dtype=np.int64)).to(device)
    with _deterministic(device):
        for i, (t, a, s) in enumerate(zip(train_sets, affines, streams, strict=True)):
            x = torch.from_numpy(a.apply(data.features).astype(np.float32)).to(device)
            report = functools.partial(on_epoch, i) if on_epoch is not None else None
            state, out, epoch = _train_one(
                recipe, code, x, y, np.asarray(t), s, data, on_epoch=report
            )
            states.append(state)
            logits.append(out)
            kept.append(epoch)
    return UnitResult(_stack(states), np.stack(logits), kept)


def _train_one(
    recipe: TorchModuleRecipe,
    code: ModuleCode,
    x: torch.Tensor,
    y: torch.Tensor,
    train_idx: np.ndarray,
    stream: ModelStreams,
    data: Dataset,
    on_epoch: Callable[[int], None] | None,
) -> tuple[dict[str, torch.Tensor], np.ndarray, int]:
    """One model: (its weights on CPU, its logits on every record — per query when the recipe
    augments — and the epoch it kept). Initialisation, random layers and augmentations draw
    from torch's global generator seeded with the model's torch seed, in that order."""
    n_classes = data.n_classes
    with torch.random.fork_rng(devices=_cuda_indices(x.device)):
        torch.manual_seed(stream.torch_seed)
        module = build_module(code.factory, recipe.params, x.shape[1], n_classes).to(x.device)
        _check_outputs(module, x[:2], n_classes)
        views = _Views(recipe, data.image_shape)
        opt = make_optimizer(recipe, module)
        fit, val = split_validation(recipe, train_idx, stream.numpy)
        best = _Best(recipe, val)
        bs = recipe.batch_size
        initial = [p.detach().clone() for p in module.parameters()]
        for epoch in range(recipe.epochs):
            module.train()
            perm = torch.from_numpy(stream.numpy.permutation(fit)).to(x.device)
            for start in range(0, len(perm), bs):
                rows = perm[start : start + bs]
                _step(recipe, code.train_step, module, views.train(x[rows]), y[rows], opt)
            if on_epoch is not None:
                on_epoch(epoch)
            if best.after_epoch(epoch, module, x, y):
                break
        _refuse_untrained(recipe, code.train_step, initial, module)
        kept = best.restore(module, recipe.epochs)
        logits = views.predict(module, x)
    _refuse_probabilities(code, logits)
    state = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
    return state, logits, kept


def _refuse_untrained(
    recipe: TorchModuleRecipe,
    train_step: TrainStep | None,
    initial: list[torch.Tensor],
    module: torch.nn.Module,
) -> None:
    """InputError when training left every parameter as initialised: a train_step that never
    steps the optimizer (or returns early) gave untrained networks, audited as references
    without a word (red team)."""
    if recipe.epochs and all(
        torch.equal(a, p.detach()) for a, p in zip(initial, module.parameters(), strict=True)
    ):
        field = "model.train_step" if train_step is not None else "model.factory"
        raise InputError(
            field,
            f"training changed none of the module's parameters in {recipe.epochs} epoch(s): "
            + (
                f"does {code_name(train_step)} call optimizer.step() after the backward pass?"
                if train_step is not None
                else "are they trainable, and is model.lr above 0?"
            ),
        )


def _refuse_probabilities(code: ModuleCode, logits: np.ndarray) -> None:
    """InputError, before the unit is saved, when the trained module's outputs look like
    probabilities (a module ending in ``nn.Softmax``): read as logits they would go through a
    softmax twice, and every score would be wrong without a word (red team, own model F2); or
    per-class sigmoid values (a module ending in ``nn.Sigmoid``), whose softmax is as wrong."""
    from miaudit.data import looks_like_probabilities
    from miaudit.models._output_kind import looks_like_sigmoids, sigmoid_problem

    if looks_like_probabilities(logits):
        raise InputError(
            "model.factory",
            f"the module {code_name(code.factory)} builds gives rows that are non-negative and "
            "sum to 1 on the records: probabilities (does it end in nn.Softmax?), which read as "
            "logits would go through a softmax twice; return logits (or log-probabilities: "
            "nn.LogSoftmax) from its forward",
        )
    if looks_like_sigmoids(logits):
        raise InputError(
            "model.factory", sigmoid_problem(f"the module {code_name(code.factory)} builds", logits)
        )


class _Views:
    """The recipe's augmentations: random ones on each training batch (drawn from torch's
    global generator, which the caller seeded), and the fixed query views at prediction
    (the image first; models/_nets.py ``query_views``), as the stacked CNN does."""

    def __init__(self, recipe: TorchModuleRecipe, shape: tuple[int, int, int] | None) -> None:
        self.augment, self.shape = recipe.augment, shape
        assert not self.augment or shape is not None  # check_recipe_for_data refused it

    def train(self, xb: torch.Tensor) -> torch.Tensor:
        if not self.augment or self.shape is None:
            return xb
        return augment_batch(xb, self.shape, self.augment, torch.default_generator)

    def predict(self, module: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
        """(records, classes), or (records, queries, classes) with augmentations."""
        if not self.augment or self.shape is None:
            return predict_module(module, x)
        queries = query_views(x, self.shape, self.augment)
        return np.stack([predict_module(module, q) for q in queries], axis=1)


def build_module(
    factory: Callable[..., Any], params: dict[str, Any], n_features: int, n_classes: int
) -> torch.nn.Module:
    """``factory(n_features, n_classes, **params)``, checked to be an ``nn.Module``."""
    try:
        with users_code("model.factory", code_name(factory)):
            module = factory(n_features, n_classes, **params)
    except UserCodeError as exc:
        if not isinstance(exc.__cause__, TypeError):
            raise
        raise InputError("model.params", f"the factory refused them: {exc.__cause__}") from None
    if not isinstance(module, torch.nn.Module):
        raise InputError(
            "model.factory", f"returned a {type(module).__name__}, not a torch.nn.Module"
        )
    return module


def saved_module(
    recipe: TorchModuleRecipe,
    state: dict[str, torch.Tensor],
    position: int,
    n_features: int,
    n_classes: int,
    *,
    trust_code: bool = False,
) -> torch.nn.Module:
    """Model ``position`` of a saved ``torch-module`` unit (its stacked ``weights.safetensors``),
    rebuilt by the recipe's factory (the user's code: ``trust_code``) in eval mode."""
    from miaudit.models._user_code import check_code_trust, code_folder, load_function

    check_code_trust(recipe, trust_code)
    with code_folder(recipe.path):
        factory = load_function(recipe, "model.factory")
        module = build_module(factory, recipe.params, n_features, n_classes)
    names = module.state_dict().keys()
    module.load_state_dict({n: state[n][position] for n in names})
    return module.eval()


def make_optimizer(recipe: TorchModuleRecipe, module: torch.nn.Module) -> torch.optim.Optimizer:
    """The recipe's optimizer over the module's parameters (Adam's weight decay is L2, as in
    ``torch.optim.Adam`` and the stacked engine)."""
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise InputError("model.factory", "the module has no trainable parameters")
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.SGD(
        params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
    )


def split_validation(
    recipe: TorchModuleRecipe, train_idx: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(records to fit on, validation records), both from the model's own training half; the
    same draws as the stacked engine's."""
    if recipe.early_stopping is None:
        return train_idx, train_idx[:0]
    perm = rng.permutation(train_idx)
    n_val = max(1, round(recipe.early_stopping.validation_fraction * len(perm)))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _step(
    recipe: TorchModuleRecipe,
    train_step: TrainStep | None,
    module: torch.nn.Module,
    xb: torch.Tensor,
    yb: torch.Tensor,
    opt: torch.optim.Optimizer,
) -> None:
    if train_step is not None:
        with users_code("model.train_step", code_name(train_step)):
            train_step(module, xb, yb, opt)
        return
    opt.zero_grad(set_to_none=True)
    with users_code("model.factory", f"the forward of {type(module).__name__}"):
        out = module(xb)
    loss = F.cross_entropy(out, yb, label_smoothing=recipe.label_smoothing)
    torch.autograd.backward(loss)
    opt.step()


class _Best:
    """Early stopping on the model's own validation records (a no-op without it): the weights
    of the epoch with the lowest validation loss, and whether ``patience`` epochs passed
    without improvement."""

    def __init__(self, recipe: TorchModuleRecipe, val: np.ndarray) -> None:
        self.cfg, self.val = recipe.early_stopping, val
        self.loss, self.epoch, self.bad = math.inf, -1, 0
        self.state: dict[str, torch.Tensor] | None = None

    def after_epoch(
        self, epoch: int, module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> bool:
        """Record the epoch; True when training should stop."""
        if self.cfg is None:
            return False
        rows = torch.from_numpy(self.val).to(x.device)
        loss = float(F.cross_entropy(_eval_logits(module, x[rows]), y[rows]))
        if loss < self.loss:
            self.loss, self.epoch, self.bad = loss, epoch, 0
            self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            return False
        self.bad += 1
        return self.bad >= self.cfg.patience

    def restore(self, module: torch.nn.Module, epochs: int) -> int:
        """Load the kept weights; the epoch they are from."""
        if self.cfg is None or self.state is None:
            return epochs - 1
        module.load_state_dict(self.state)
        return self.epoch


@torch.no_grad()
def _eval_logits(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    was = module.training
    module.eval()
    try:
        out: torch.Tensor = module(x)
    finally:
        module.train(was)
    return out.float()


def predict_module(module: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """The module's logits (eval mode) on every row of ``x``: (rows, classes) float32."""
    outs = [_eval_logits(module, x[s : s + EVAL_CHUNK]) for s in range(0, len(x), EVAL_CHUNK)]
    return torch.cat(outs).cpu().numpy().astype(np.float32, copy=False)


def _check_outputs(module: torch.nn.Module, xb: torch.Tensor, n_classes: int) -> None:
    """A module that does not map (rows, features) to (rows, classes) is refused before training."""
    try:
        out = _eval_logits(module, xb)
    except Exception as exc:  # noqa: BLE001 - any failure of the user's forward, in one line
        raise InputError(
            "model.factory",
            f"the module fails on a ({len(xb)}, {xb.shape[1]}) float32 batch: {type(exc).__name__}: {exc}",
        ) from None
    if tuple(out.shape) != (len(xb), n_classes):
        raise InputError(
            "model.factory",
            f"the module maps a ({len(xb)}, {xb.shape[1]}) batch to shape {tuple(out.shape)}, expected ({len(xb)}, {n_classes}) logits",
        )


def _stack(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Per-model weights → tensor name → (models, …), the stacked engine's file layout."""
    first = states[0]
    for s in states[1:]:
        if s.keys() != first.keys() or any(s[k].shape != first[k].shape for k in first):
            raise InputError(
                "model.factory",
                "built modules with different weights for different models; it must build one architecture",
            )
    return {k: torch.stack([s[k] for s in states]) for k in first}


def _cuda_indices(device: torch.device) -> list[int]:
    """The CUDA devices whose generators ``fork_rng`` must save (none on CPU)."""
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


@contextmanager
def _deterministic(device: str) -> Iterator[None]:
    """Deterministic kernels where torch offers them, on a CUDA device (CPU kernels already
    are, for a fixed thread count); the previous settings are restored."""
    if not device.startswith("cuda"):
        yield
        return
    # cuBLAS needs a fixed workspace to be deterministic; read when cuBLAS starts.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[1:]
