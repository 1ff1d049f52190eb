"""DP-SGD through Opacus: a torch recipe with ``dp`` trains its models one at a time.

Opacus clips per-sample gradients, adds Gaussian noise and accounts for the privacy spent; this
module builds each model as a plain ``torch.nn`` module with the same initial weights the
stacked engine would give it, trains it under a :class:`opacus.PrivacyEngine`, writes the
weights back into the stack, and records per model the ε spent (from Opacus's accountant,
"rdp" or "prv" — never our own maths), δ, σ, the sampling rate and the steps.

Poisson sampling (the assumption of the accountants) is Opacus's ``DPDataLoader``; ghost
clipping is Opacus's fast gradient clipping (``grad_sample_mode="ghost"``: per-sample gradient
norms without per-sample gradients; PERFORMANCE.md: ~1.7× plain SGD against ~38× for hooks).

``DPConfig.fault`` is FAULT INJECTION, to audit the auditor: "zero_noise" adds no noise and
"no_clipping" does not clip, while the optimizer — and so the accountant — keep the configured
σ; "undercounted_steps" tells the accountant one step in ten (σ calibrated, for a target ε, to a
tenth of the epochs, so the recorded ε is about the target while the training takes ten times the
steps). The recorded ε is then wrong, and ``miaudit dp-audit`` must say FAILED.

On a GPU (``engine.device``) each model, its records and Opacus's noise live on the device; the
data order and augmentations are drawn on the CPU as before, the noise by a generator of the
device seeded from the model's stream (so a GPU run's noise differs from a CPU run's).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import secrets
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from miaudit.datasets import Affine, Dataset
from miaudit.errors import InputError
from miaudit.models._dp_sigma import UNDERCOUNT, dp_sigma_args, noise_for_epsilon
from miaudit.models._nets import StackedCNN, StackedMLP, StackedNet
from miaudit.models._recipe import Augmentation, CNNRecipe, DPConfig, MLPRecipe
from miaudit.models._streams import ModelStreams
from miaudit.models._torch_train import (
    _Batcher,
    augment_batch,
    build_net,
    predict_stacked,
    state_on_cpu,
)
from miaudit.models._train import UnitResult


def require_opacus() -> Any:
    """Import opacus or say how to install it (the ``dp`` extra)."""
    try:
        import opacus
    except ImportError:
        raise InputError(
            "model.dp", "DP-SGD needs Opacus: pip install 'miaudit[dp]' (opacus>=1.5)"
        ) from None
    return opacus


class _MLP(nn.Module):
    def __init__(self, sizes: list[int], dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
                if dropout > 0:
                    layers.append(nn.Dropout(dropout))
        self.net = nn.Sequential(*layers)
        self.linears = [m for m in layers if isinstance(m, nn.Linear)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)  # nn.Module's __call__ is typed Any
        return out


class _CNN(nn.Module):
    def __init__(self, stacked: StackedCNN, dropout: float) -> None:
        super().__init__()
        c, _, _ = stacked.image_shape
        self.shape = stacked.image_shape
        chans = [c] + [int(stacked.params[2 * i].shape[1]) for i in range(stacked.n_convs)]
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, 3, padding=1) for a, b in itertools.pairwise(chans)
        )
        flat, hidden, classes = stacked.dense_sizes
        self.fc1, self.fc2 = nn.Linear(flat, hidden), nn.Linear(hidden, classes)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.view(x.shape[0], *self.shape)
        for conv in self.convs:
            h = torch.max_pool2d(torch.relu(conv(h)), 2)
        out: torch.Tensor = self.fc2(self.drop(torch.relu(self.fc1(h.flatten(1)))))
        return out


def _pairs(
    module: nn.Module, stacked: StackedNet
) -> list[
    tuple[
        torch.Tensor,
        torch.Tensor,
        Callable[[torch.Tensor], torch.Tensor],
        Callable[[torch.Tensor], torch.Tensor],
    ]
]:
    """(module tensor, stacked tensor, stacked slice → module layout, module → stacked slice layout)."""
    out = []
    if isinstance(module, _MLP):
        for i, lin in enumerate(module.linears):
            w, b = stacked.params[2 * i], stacked.params[2 * i + 1]
            out.append((lin.weight, w, lambda t: t.t(), lambda t: t.t()))
            out.append((lin.bias, b, lambda t: t.reshape(-1), lambda t: t.reshape(1, -1)))
    else:
        assert isinstance(module, _CNN)
        for i, conv in enumerate(module.convs):
            assert isinstance(conv, nn.Conv2d) and conv.bias is not None  # ModuleList: Modules
            out += [
                (conv.weight, stacked.params[2 * i], lambda t: t, lambda t: t),
                (conv.bias, stacked.params[2 * i + 1], lambda t: t, lambda t: t),
            ]
        k = 2 * len(module.convs)
        for j, lin in enumerate((module.fc1, module.fc2)):
            out.append((lin.weight, stacked.params[k + 2 * j], lambda t: t.t(), lambda t: t.t()))
            out.append(
                (
                    lin.bias,
                    stacked.params[k + 2 * j + 1],
                    lambda t: t.reshape(-1),
                    lambda t: t.reshape(1, -1),
                )
            )
    return out


def single_model(recipe: MLPRecipe | CNNRecipe, stacked: StackedNet, k: int) -> nn.Module:
    """Model ``k`` of a stack as a plain float32 ``nn.Module`` holding a copy of its weights."""
    module: nn.Module
    if isinstance(stacked, StackedCNN):
        module = _CNN(stacked, recipe.dropout)
    else:
        assert isinstance(stacked, StackedMLP)
        module = _MLP(stacked.sizes, recipe.dropout)
    with torch.no_grad():
        for mod_t, st, to_mod, _ in _pairs(module, stacked):
            mod_t.copy_(to_mod(st.detach()[k]))
    return module.to(stacked.device)


def _write_back(module: nn.Module, stacked: StackedNet, k: int) -> None:
    with torch.no_grad():
        for mod_t, st, _, to_st in _pairs(module, stacked):
            st[k].copy_(to_st(mod_t.detach()))


def _no_noise(self: Any) -> None:
    """FAULT INJECTION (DPConfig.fault = "zero_noise"): the clipped sum, no noise."""
    from opacus.optimizers.optimizer import _check_processed_flag, _mark_as_processed

    for p in self.params:
        _check_processed_flag(p.summed_grad)
        p.grad = p.summed_grad.view_as(p).clone()
        _mark_as_processed(p.summed_grad)


def _inject_fault(optimizer: Any, fault: str) -> None:
    """Break the optimizer as ``fault`` says; its ``noise_multiplier`` (what the accountant reads)
    stays the configured σ."""
    import types

    if fault == "zero_noise":
        optimizer.add_noise = types.MethodType(_no_noise, optimizer)
    elif fault == "no_clipping":
        clip = optimizer.clip_and_accumulate
        norm = optimizer.max_grad_norm

        def unclipped() -> None:
            optimizer.max_grad_norm = math.inf
            try:
                clip()
            finally:
                optimizer.max_grad_norm = norm

        optimizer.clip_and_accumulate = unclipped
    elif fault == "undercounted_steps":
        told = optimizer.step_hook  # the accountant's hook, called once per step
        count = itertools.count()

        def every_tenth(opt: Any) -> None:
            if next(count) % UNDERCOUNT == 0:
                told(opt)

        optimizer.step_hook = every_tenth


@dataclass(eq=False)
class GradientCanaries:
    """White-box Dirac gradient canaries for auditing DP-SGD (docs/method.md §6; Steinke, Nasr &
    Jagielski, NeurIPS 2023; Nasr et al., USENIX Security 2023).

    Canary i is a record whose clipped gradient is ``max_grad_norm`` · e_{coords[i]} (a unit
    vector along one flattened parameter coordinate). When ``included`` (its coin flip, made
    before training) it is Poisson-sampled into each step with the data's sampling rate, its
    gradient added to the clipped sum before the noise — exactly as DP-SGD treats a record.

    ``scores[i]`` is the per-step likelihood-ratio score: at each step the audit observes the
    released noisy sum on coordinate coords[i] *and* the other records' clipped sum there (the
    DP guarantee holds against an adversary who knows the other records and their sampling), so
    x = (released − others) / C is b + N(0, σ²) with b ~ Bernoulli(q) when included, 0 when
    not; the score sums log[(1 − q) + q·exp((2x − 1)/(2σ²))] over steps (σ, q: what the
    accountant is told). ``sum_scores[i]`` is the older score, the released sum alone summed
    over steps. Higher = included.
    """

    coords: np.ndarray
    included: np.ndarray
    seed: int
    scores: np.ndarray | None = None
    sum_scores: np.ndarray | None = None


def _step_llr(x: np.ndarray, sigma: float, q: float) -> np.ndarray:
    """metrics' ``dirac_canary_llr`` (models sits below metrics and cannot import it)."""
    z = (2.0 * x - 1.0) / (2.0 * sigma * sigma)
    return z if q >= 1.0 else np.logaddexp(math.log1p(-q), math.log(q) + z)


def _attach_canaries(optimizer: Any, canaries: GradientCanaries, sample_rate: float) -> None:
    params = list(optimizer.params)
    offsets = np.cumsum([0] + [p.numel() for p in params])
    owner = np.searchsorted(offsets, canaries.coords, side="right") - 1
    local = canaries.coords - offsets[owner]
    where = [
        (k, mine, torch.from_numpy(local[mine]))
        for k, mine in ((k, np.flatnonzero(owner == k)) for k in range(len(params)))
        if mine.size
    ]
    rng = np.random.default_rng(canaries.seed)
    scores = canaries.scores = np.zeros(canaries.coords.size)
    sums = canaries.sum_scores = np.zeros(canaries.coords.size)
    release = optimizer.add_noise
    norm = float(optimizer.max_grad_norm)
    sigma = float(optimizer.noise_multiplier)

    def read(k: int, at: torch.Tensor, grad: torch.Tensor) -> np.ndarray:
        return np.asarray(grad.reshape(-1)[at.to(grad.device)].double().cpu().numpy())

    def add_noise_with_canaries() -> None:
        others = np.zeros(canaries.coords.size)
        for k, mine, at in where:
            others[mine] = read(k, at, params[k].summed_grad)
        sampled = canaries.included & (rng.random(canaries.coords.size) < sample_rate)
        for k, mine, at in where:
            sel = sampled[mine]
            if sel.any():
                g = params[k].summed_grad
                g.view(-1).index_add_(
                    0,
                    at[sel].to(g.device),
                    torch.full((int(sel.sum()),), norm, dtype=g.dtype, device=g.device),
                )
        release()
        released = np.zeros(canaries.coords.size)
        for k, mine, at in where:
            released[mine] = read(k, at, params[k].grad)
        sums[:] += released
        scores[:] += _step_llr((released - others) / norm, sigma, sample_rate)

    optimizer.add_noise = add_noise_with_canaries


def _epsilon(engine: Any, delta: float) -> float:
    try:
        eps = float(engine.get_epsilon(delta))
    except (ValueError, ZeroDivisionError, OverflowError, RuntimeError):
        return math.inf
    return eps if math.isfinite(eps) else math.inf


def train_one_dp(
    recipe: MLPRecipe | CNNRecipe,
    module: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    stream: ModelStreams,
    image_shape: tuple[int, int, int] | None,
    on_epoch: Callable[[int], None] | None = None,
    canaries: GradientCanaries | None = None,
) -> dict[str, Any]:
    """Train ``module`` in place with DP-SGD on records ``x`` (already preprocessed), labels ``y``.

    ``canaries``: white-box gradient canaries inserted in every step (their scores are filled in).

    Returns the privacy record: ε spent (the accountant's), δ, accountant, σ, clipping norm,
    sampling rate, steps, ghost clipping, and the fault-injection setting.
    """
    require_opacus()
    with warnings.catch_warnings(), quiet_empty_batches():
        # Opacus's advice (secure RNG off, backward hooks on inputs without grad, RDP order
        # ranges) is about its defaults, not about this run: keep it out of users' logs.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        return _train_one_dp(recipe, module, x, y, stream, image_shape, on_epoch, canaries)


@contextlib.contextmanager
def quiet_empty_batches() -> Iterator[None]:
    """Opacus's data loader logs a warning when a run's first Poisson batch is empty; such a
    batch is an ordinary step of the mechanism (noise alone), not a problem of the run."""
    logger = logging.getLogger("opacus.data_loader")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _train_one_dp(
    recipe: MLPRecipe | CNNRecipe,
    module: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    stream: ModelStreams,
    image_shape: tuple[int, int, int] | None,
    on_epoch: Callable[[int], None] | None,
    canaries: GradientCanaries | None,
) -> dict[str, Any]:
    from opacus import PrivacyEngine

    dp = recipe.dp
    assert dp is not None
    seeds = stream.numpy.integers(0, 2**62, size=3)  # data order, noise, augmentations
    if dp.randomness == "secret":  # the mechanism's own randomness, unknown to any replay
        seeds[:2] = [secrets.randbits(62), secrets.randbits(62)]
    engine = PrivacyEngine(accountant=dp.accountant)
    model, optimizer, crit, dl = _make_private(
        engine, recipe, dp, module, x, y, int(seeds[0]), int(seeds[1])
    )
    sigma = float(optimizer.noise_multiplier)
    _inject_fault(optimizer, dp.fault)
    sample_rate = float(
        dl.sample_rate
    )  # Poisson sampling: the only kind DPConfig accepts (the accountants assume it)
    if canaries is not None:
        _attach_canaries(optimizer, canaries, sample_rate)
    augment = recipe.augment if isinstance(recipe, CNNRecipe) else []
    aug_gen = torch.Generator().manual_seed(int(seeds[2]))
    model.train()
    with torch.random.fork_rng():
        torch.manual_seed(stream.torch_seed)  # dropout masks: the model's own stream
        steps = _dp_epochs(
            recipe.epochs, model, optimizer, crit, dl, augment, image_shape, aug_gen, on_epoch
        )
    model.eval()
    return {
        "epsilon": _epsilon(engine, dp.delta),
        "delta": dp.delta,
        "accountant": dp.accountant,
        "noise_multiplier": sigma,
        "max_grad_norm": dp.max_grad_norm,
        "sample_rate": sample_rate,
        "steps": steps,
        "poisson_sampling": dp.poisson_sampling,
        "ghost_clipping": dp.ghost_clipping,
        "fault_injection": dp.fault,
        "randomness": dp.randomness,
    }


def _make_private(
    engine: Any,
    recipe: MLPRecipe | CNNRecipe,
    dp: DPConfig,
    module: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loader_seed: int,
    noise_seed: int,
) -> tuple[nn.Module, Any, Any, Any]:
    """The module, its DP optimizer, the loss and the Poisson data loader, as Opacus's
    ``engine`` makes them private (σ given, or found for the target ε). Under ghost clipping
    the loss is Opacus's, whose ``backward()`` runs its two passes."""
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(
        TensorDataset(x, y),
        batch_size=min(recipe.batch_size, len(x)),
        shuffle=True,
        generator=torch.Generator().manual_seed(loader_seed),
    )
    params = list(module.parameters())
    if recipe.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(
            params, lr=recipe.lr, weight_decay=recipe.weight_decay
        )
    else:
        opt = torch.optim.SGD(
            params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
        )
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    common = {
        "module": module,
        "optimizer": opt,
        "data_loader": loader,
        "criterion": criterion,
        "max_grad_norm": dp.max_grad_norm,
        "poisson_sampling": dp.poisson_sampling,
        # Opacus draws the noise on the parameters' device, with a generator of that device.
        "noise_generator": torch.Generator(device=x.device).manual_seed(noise_seed),
        "grad_sample_mode": "ghost" if dp.ghost_clipping else "hooks",
    }
    if dp.epsilon is not None:
        # What make_private_with_epsilon does, with the σ search (a pure function of these
        # numbers, ≈ 0.3 s per accountant call) done once per process instead of per model,
        # bounded, over the Poisson rounds the training runs (FAULT INJECTION
        # "undercounted_steps": a tenth of the epochs, as its accountant counts).
        q, steps = dp_sigma_args(recipe, len(x))
        assert q == 1 / len(loader)
        sigma = noise_for_epsilon(dp.epsilon, dp.delta, q, steps, engine.accountant.mechanism())
        made = engine.make_private(noise_multiplier=sigma, **common)
    else:
        made = engine.make_private(noise_multiplier=dp.noise_multiplier, **common)
    if dp.ghost_clipping:  # ghost clipping wraps the loss too
        model, optimizer, crit, dl = made
    else:
        (model, optimizer, dl), crit = made, criterion
    return model, optimizer, crit, dl


def _dp_epochs(
    epochs: int,
    model: nn.Module,
    optimizer: Any,
    crit: Any,
    dl: Any,
    augment: Sequence[Augmentation],
    image_shape: tuple[int, int, int] | None,
    aug_gen: torch.Generator,
    on_epoch: Callable[[int], None] | None,
) -> int:
    """Train ``epochs`` epochs of DP-SGD steps; the number of steps taken."""
    steps = 0
    for epoch in range(epochs):
        for xb, yb in dl:
            if augment and len(xb):
                assert image_shape is not None
                xb = augment_batch(xb, image_shape, augment, aug_gen)
            # An empty Poisson batch is a step too: Opacus adds the noise alone and its
            # accountant counts it. Every sampling round must be a step, as the accountant
            # assumes (red team: skipping them under batch_size 1 recorded ε 0.84 for rounds
            # worth 1.0; whether a round is skipped depends on whether a record was drawn).
            optimizer.zero_grad(set_to_none=True)
            loss = crit(model(xb), yb)
            loss.backward()
            optimizer.step()
            steps += 1
        if on_epoch is not None:
            on_epoch(epoch)
    return steps


def train_dp(
    recipe: MLPRecipe | CNNRecipe,
    data: Dataset,
    train_sets: list[np.ndarray],
    affines: list[Affine],
    streams: list[ModelStreams],
    on_epoch: Callable[[int], None] | None = None,
    *,
    device: torch.device | None = None,
) -> UnitResult:
    """The engine's unit training for a recipe with ``dp``: each model alone through Opacus,
    same inputs and outputs as :func:`~miaudit.models._torch_train.train_stacked`
    (:func:`~miaudit.models.train_unit` chooses between them), on ``device`` (default: the
    CPU)."""
    require_opacus()
    gens = [s.torch_generator() for s in streams]
    net = build_net(recipe, data, gens, device)
    privacy = []
    for k, (t, a, s) in enumerate(zip(train_sets, affines, streams, strict=True)):
        idx = np.asarray(t)
        x = torch.from_numpy(a.apply(data.features[idx])).to(net.device)
        y = torch.from_numpy(np.asarray(data.label)[idx].astype(np.int64)).to(net.device)
        module = single_model(recipe, net, k)
        privacy.append(train_one_dp(recipe, module, x, y, s, data.image_shape, on_epoch))
        _write_back(module, net, k)
    batcher = _Batcher(data, affines, net.dtype, net.device)
    augment = recipe.augment if isinstance(recipe, CNNRecipe) else []
    logits = predict_stacked(net, batcher, data, augment)
    return UnitResult(state_on_cpu(net), logits, [recipe.epochs - 1] * len(train_sets), privacy)


def privacy_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The claim of a set of DP-trained models: the largest ε any spent, δ and the accountant."""
    if not records:
        return {}
    return {
        "epsilon": max(r["epsilon"] for r in records),
        "delta": records[0]["delta"],
        "accountant": records[0]["accountant"],
        "noise_multiplier": records[0]["noise_multiplier"],
        "models": len(records),
    }


__all__ = [
    "DPConfig",
    "GradientCanaries",
    "privacy_summary",
    "require_opacus",
    "single_model",
    "train_dp",
    "train_one_dp",
]
