"""Multi-run DP audit: the batched trainer scores like the ideal attacker and a zero-noise
fault collapses its scores (models' ``train_dp_runs``; docs/dp.md, "Multi-run mode")."""

from __future__ import annotations

import math

import numpy as np
import pytest

from miaudit.metrics import simulated_scores

torch = pytest.importorskip("torch")


def test_batched_runs_score_like_the_ideal_and_zero_noise_collapses():
    from torch import nn

    from miaudit.models import BatchedMechanism, train_dp_runs

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(120, 6, generator=g), torch.randint(0, 3, (120,), generator=g)
    runs = 60

    def modules() -> list[nn.Module]:
        torch.manual_seed(0)
        return [nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3)) for _ in range(runs)]

    rng = np.random.default_rng(0)
    coords, inc = rng.integers(0, 43, runs), rng.random(runs) < 0.5
    mech = BatchedMechanism(
        noise_multiplier=0.5,
        max_grad_norm=1.0,
        sample_rate=0.25,
        steps=40,
        optimizer="sgd",
        lr=0.1,
    )
    res = train_dp_runs(modules(), x, y, x, y, coords, inc, mech, seed=0)
    assert res.scores.shape == (runs,) and np.all((res.accuracy >= 0) & (res.accuracy <= 1))
    ideal = simulated_scores(
        inc, true_sigma=0.5, claimed_sigma=0.5, sample_rate=0.25, steps=40, rng=rng
    )
    for side in (inc, ~inc):  # the same distribution: means within 4 standard errors
        se = math.sqrt(ideal[side].var() / side.sum() * 2)
        assert abs(res.scores[side].mean() - ideal[side].mean()) < 4 * se
    zero = train_dp_runs(
        modules(),
        x,
        y,
        x,
        y,
        coords,
        inc,
        BatchedMechanism(**{**mech.__dict__, "fault": "zero_noise"}),
        seed=0,
    )
    assert np.ptp(zero.scores[~inc]) == pytest.approx(0.0, abs=1e-9)  # no noise: one value
    assert zero.scores[inc].min() >= zero.scores[~inc].max()


def test_batched_gradients_follow_the_recipes_label_smoothing():
    """Red team: the batched trainer's loss ignored label_smoothing, so multi-run audits trained
    another recipe than the one declared. Each per-sample gradient now equals autograd's on the
    recipe's loss."""
    from torch import nn
    from torch.func import stack_module_state

    from miaudit.models._dp_multirun import _per_sample_grads

    torch.manual_seed(1)
    nets = [nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)) for _ in range(2)]
    params, _ = stack_module_state(nets)
    x, y = torch.randn(2, 6, 5), torch.randint(0, 3, (2, 6))
    for smoothing in (0.0, 0.2):
        got = _per_sample_grads(nets[0], smoothing)(params, x, y)
        for g in range(2):
            for b in range(6):
                nets[g].zero_grad()
                out = nets[g](x[g, b].unsqueeze(0))
                nn.functional.cross_entropy(
                    out, y[g, b].unsqueeze(0), label_smoothing=smoothing
                ).backward()
                for name, p in nets[g].named_parameters():
                    torch.testing.assert_close(got[name][g, b], p.grad, atol=1e-6, rtol=1e-5)


def test_secret_randomness_reaches_the_multi_run_mechanism():
    """dp-audit --multi-run trained its runs from the plan's seed whatever model.dp.randomness
    said, and recorded "secret" (red team: two audits byte-identical)."""
    from miaudit.audit._dp_multirun import run_multi
    from miaudit.datasets import DataConfig, load_dataset
    from miaudit.models import parse_recipe

    data = load_dataset(
        DataConfig(
            dataset="purchase", purchase={"n_records": 200, "n_features": 10, "n_classes": 3}
        )
    )
    base, held = np.arange(0, 150), np.arange(150, 200)

    def scores(randomness: str) -> np.ndarray:
        recipe = parse_recipe(
            {
                "kind": "torch-mlp",
                "hidden": [4],
                "epochs": 1,
                "batch_size": 50,
                "dp": {"noise_multiplier": 1.0, "randomness": randomness},
            }
        )
        return run_multi(recipe, data, 4, base, held, seed=3, threads=1)[0]

    np.testing.assert_array_equal(scores("seeded"), scores("seeded"))
    assert not np.array_equal(scores("secret"), scores("secret"))
