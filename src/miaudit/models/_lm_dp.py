"""DP fine-tuning of the LoRA adapters through Opacus.

Only the adapters train (the base is frozen and public), so the per-sample gradients Opacus
computes are those of the adapters' ``nn.Linear`` layers. Records are padded to the context so
that Opacus's Poisson loader sees fixed shapes. The noise σ is Opacus's, found for the target ε
over the fine-tuning's steps by its accountant (``noise_for_epsilon``: Opacus's search, bounded); the ε spent is read back from the accountant,
never computed here.

ε is per record. A text inserted n times in the fine-tuning set is n records to the
accountant: by group privacy the guarantee for it is only (n·ε, n·e^{(n−1)ε}·δ)-DP
(docs/method.md, "Secrets and exposure").
"""

from __future__ import annotations

import math
import secrets
import warnings
from collections.abc import Sequence
from typing import Any

import torch

from miaudit.models._dp import quiet_empty_batches, require_opacus
from miaudit.models._dp_sigma import check_delta, noise_for_epsilon, poisson_schedule
from miaudit.models._lm import pad_batch, token_loss
from miaudit.models._lm_recipe import LMFinetune


def _padded(seqs: Sequence[Sequence[int]], pad_id: int, width: int) -> tuple[torch.Tensor, ...]:
    ids, mask, _ = pad_batch([list(s) for s in seqs], pad_id)
    if ids.shape[1] < width:
        extra = width - ids.shape[1]
        ids = torch.nn.functional.pad(ids, (0, extra), value=pad_id)
        mask = torch.nn.functional.pad(mask, (0, extra), value=0)
    return ids, mask


def dp_finetune(
    model: Any, seqs: Sequence[Sequence[int]], ft: LMFinetune, *, pad_id: int, seed: int
) -> dict[str, Any]:
    """Train ``model``'s trainable parameters (the LoRA adapters) with DP-SGD, in place.

    Returns the privacy record: ε spent, δ, accountant, σ, clipping norm, sampling rate, steps.
    """
    require_opacus()
    with warnings.catch_warnings(), quiet_empty_batches():
        # Opacus's advice about its defaults (secure RNG off, RDP orders) is not about this run.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        return _dp_finetune(model, seqs, ft, pad_id=pad_id, seed=seed)


def _sigma(ft: LMFinetune, n: int, batches: int) -> float:
    """What make_private_with_epsilon does, with Opacus's σ search bounded (an ε no σ reaches is
    an InputError, never a search for ever) over the Poisson rounds actually run; δ < 1/n."""
    dp = ft.dp
    assert dp is not None
    check_delta(dp.delta, n, "model.finetune.dp.delta")
    q, steps = poisson_schedule(n, ft.batch_size, ft.epochs)
    assert q == 1 / batches
    return noise_for_epsilon(
        dp.epsilon, dp.delta, q, steps, dp.accountant, field="model.finetune.dp.epsilon"
    )


def _dp_finetune(
    model: Any, seqs: Sequence[Sequence[int]], ft: LMFinetune, *, pad_id: int, seed: int
) -> dict[str, Any]:
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    dp = ft.dp
    assert dp is not None
    ids, mask = _padded(seqs, pad_id, max(len(s) for s in seqs))
    # the mechanism's randomness: the config's seed, or secret (models/_recipe.py, DPConfig)
    order, noise = (
        (seed + 1, seed + 2)
        if dp.randomness == "seeded"
        else (secrets.randbits(62), secrets.randbits(62))
    )
    loader = DataLoader(
        TensorDataset(ids, mask),
        batch_size=min(ft.batch_size, len(seqs)),
        shuffle=True,
        generator=torch.Generator().manual_seed(order),
    )
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=ft.learning_rate, weight_decay=0.0)
    engine = PrivacyEngine(accountant=dp.accountant)
    private, optimizer, dl = engine.make_private(
        module=model,
        optimizer=opt,
        data_loader=loader,
        noise_multiplier=_sigma(ft, len(seqs), len(loader)),
        max_grad_norm=dp.max_grad_norm,
        poisson_sampling=True,
        noise_generator=torch.Generator().manual_seed(noise),
        grad_sample_mode="hooks",
    )
    private.train()
    steps = _dp_steps(
        private, optimizer, dl, ft.epochs, torch.full((1, 2), pad_id, dtype=ids.dtype)
    )
    private.eval()
    try:
        eps = float(engine.get_epsilon(dp.delta))
    except (ValueError, ZeroDivisionError, OverflowError, RuntimeError):
        eps = math.inf
    private._close()  # remove Opacus's hooks: the model is merged and saved as a plain one
    return {
        "epsilon": eps,
        "delta": dp.delta,
        "accountant": dp.accountant,
        "noise_multiplier": float(optimizer.noise_multiplier),
        "max_grad_norm": dp.max_grad_norm,
        "sample_rate": float(dl.sample_rate),
        "steps": steps,
        "randomness": dp.randomness,
    }


def _dp_steps(private: Any, optimizer: Any, dl: Any, epochs: int, placeholder: torch.Tensor) -> int:
    """Every Poisson round a DP-SGD step; the number of steps taken.

    An empty batch is a step too, as the accountant assumes (skipping it under-reported ε: red
    team). GPT-2 cannot run on no rows, so that step runs on ``placeholder`` (one public row of
    pads) with its loss weighted 0: its clipped gradient is exactly 0 and the step is noise
    alone, as Opacus's own empty-batch step is."""
    steps = 0
    for _ in range(epochs):
        for batch_ids, batch_mask in dl:
            if len(batch_ids) == 0:
                ones = torch.ones_like(placeholder)
                loss: Any = 0.0 * token_loss(private, placeholder, ones).sum()
            else:
                loss = token_loss(private, batch_ids, batch_mask).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
    return steps
