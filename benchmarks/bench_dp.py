"""DP-SGD cost: time per epoch through Opacus, per-sample gradients (hooks) and ghost clipping,
against plain training of the same single model with the same data loader and optimizer.

PERFORMANCE.md (measured elsewhere): hooks ≈ 38× plain SGD on an MLP, ghost clipping ≈ 1.7×.
Also shown: the engine's stacked trainer per model (16 models as one computation, divided by 16),
the path a non-DP recipe takes. One torch thread throughout.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks._schema import BenchResult

CLAIM = "DP-SGD time per epoch (Opacus hooks and ghost clipping) against plain training of the same MLP — reported"


def _time_epochs(fn, epochs: int) -> float:  # type: ignore[no-untyped-def]
    """Seconds per epoch between the ends of the first and the last of epochs + 1 epochs: set-up
    (Opacus wrapping) and the final accounting are not epochs."""
    fn(1, lambda _e: None)  # warm-up (imports, allocations, Opacus hooks)
    stamps: list[float] = []
    fn(epochs + 1, lambda _e: stamps.append(time.perf_counter()))
    return (stamps[-1] - stamps[0]) / epochs


def run(size: str) -> BenchResult:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from miaudit.datasets import DataConfig, fit_affine, load_dataset
    from miaudit.models import ModelStreams, parse_recipe
    from miaudit.models._dp import single_model, train_one_dp
    from miaudit.models._torch_train import build_net, train_stacked

    torch.set_num_threads(1)
    full = size == "full"
    n = 5000 if full else 1000
    epochs = 4 if full else 2
    data = load_dataset(DataConfig(dataset="purchase", purchase={"n_records": 2 * n}))
    idx = np.arange(n)
    affine = fit_affine(data, idx)
    x = torch.from_numpy(affine.apply(data.features[idx]))
    y = torch.from_numpy(data.label[idx].astype(np.int64))
    base = {"kind": "torch-mlp", "hidden": [256, 256], "batch_size": 128, "lr": 1e-3}

    def plain(e: int, on_epoch) -> None:  # type: ignore[no-untyped-def]
        recipe = parse_recipe({**base, "epochs": e})
        module = single_model(
            recipe, build_net(recipe, data, [torch.Generator().manual_seed(0)]), 0
        )
        opt = torch.optim.Adam(module.parameters(), lr=1e-3)
        loader = DataLoader(
            TensorDataset(x, y),
            batch_size=128,
            shuffle=True,
            generator=torch.Generator().manual_seed(0),
        )
        loss_fn = torch.nn.CrossEntropyLoss()
        for _ in range(e):
            for xb, yb in loader:
                opt.zero_grad(set_to_none=True)
                loss_fn(module(xb), yb).backward()
                opt.step()
            on_epoch(_)

    def dp(ghost: bool):  # type: ignore[no-untyped-def]
        def go(e: int, on_epoch) -> None:  # type: ignore[no-untyped-def]
            recipe = parse_recipe(
                {
                    **base,
                    "epochs": e,
                    "dp": {"noise_multiplier": 1.0, "ghost_clipping": ghost, "accountant": "rdp"},
                }
            )
            module = single_model(
                recipe, build_net(recipe, data, [torch.Generator().manual_seed(0)]), 0
            )
            train_one_dp(recipe, module, x, y, ModelStreams.of(0, 0), None, on_epoch)

        return go

    def stacked(e: int, on_epoch) -> None:  # type: ignore[no-untyped-def]
        recipe = parse_recipe({**base, "epochs": e})
        train_stacked(
            recipe,
            data,
            [idx] * 16,
            [affine] * 16,
            [ModelStreams.of(0, k) for k in range(16)],
            on_epoch=on_epoch,
        )

    t_plain = _time_epochs(plain, epochs)
    t_hooks = _time_epochs(dp(False), epochs)
    t_ghost = _time_epochs(dp(True), epochs)
    t_stacked = _time_epochs(stacked, epochs) / 16
    figures = {
        "records": n,
        "epochs_timed": epochs,
        "mlp": "600-256-256-100",
        "batch_size": 128,
        "threads": 1,
        "plain_s_per_epoch": round(t_plain, 4),
        "dp_hooks_s_per_epoch": round(t_hooks, 4),
        "dp_ghost_s_per_epoch": round(t_ghost, 4),
        "stacked_engine_s_per_epoch_per_model": round(t_stacked, 4),
        "hooks_over_plain": round(t_hooks / t_plain, 2),
        "ghost_over_plain": round(t_ghost / t_plain, 2),
        "hooks_over_ghost": round(t_hooks / t_ghost, 2),
    }
    table = "\n".join(
        [
            "| training (one model, 600-256-256-100, batch 128, 1 thread) | s / epoch | × plain |",
            "|---|---:|---:|",
            f"| plain (torch.nn, Adam, same loader) | {t_plain:.3f} | 1.00 |",
            f"| DP-SGD, Opacus per-sample gradients (hooks) | {t_hooks:.3f} | {t_hooks / t_plain:.2f} |",
            f"| DP-SGD, Opacus ghost clipping | {t_ghost:.3f} | {t_ghost / t_plain:.2f} |",
            f"| engine's stacked trainer, per model (16 stacked, no DP) | {t_stacked:.3f} | {t_stacked / t_plain:.2f} |",
        ]
    )
    notes = [
        f"{n} Purchase-like records (600 binary features, 100 classes); DP: σ = 1, clipping norm 1, Poisson sampling; time per epoch measured between epoch ends (set-up and final accounting excluded), {epochs} epoch(s) after a warm-up run.",
        "A recipe with 'dp' trains its models one at a time through Opacus; without it the engine trains them stacked.",
    ]
    return BenchResult(
        name="dp", claim=CLAIM, figures=figures, table=table, passed=None, notes=notes
    )
