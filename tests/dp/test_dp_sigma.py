"""The σ search for a target ε (models/_dp_sigma.py): Opacus's search, bounded, and the claim's
checks before training (δ < 1/n, σ found for ε)."""

from __future__ import annotations

import math
import time
import warnings

import pytest

pytest.importorskip("opacus")

from miaudit.errors import InputError
from miaudit.models import (
    check_delta,
    check_dp_claim,
    check_finetune_dp,
    noise_for_epsilon,
    parse_recipe,
    poisson_schedule,
)
from miaudit.models._dp_sigma import MAX_SEARCH_SECONDS, search_sigma


@pytest.mark.parametrize(
    ("accountant", "epsilon", "q", "steps"),
    [("rdp", 2.0, 0.25, 16), ("rdp", 8.0, 0.1, 30), ("prv", 1.0, 0.2, 15)],
)
def test_sigma_is_opacus_bit_for_bit(accountant, epsilon, q, steps):
    """Ordinary targets: exactly Opacus's get_noise_multiplier (so no golden output moves)."""
    from opacus.accountants.utils import get_noise_multiplier

    with warnings.catch_warnings():  # Opacus's RDP order-range advice
        warnings.simplefilter("ignore", UserWarning)
        expected = get_noise_multiplier(
            target_epsilon=epsilon,
            target_delta=1e-5,
            sample_rate=q,
            steps=steps,
            accountant=accountant,
        )
    assert noise_for_epsilon(epsilon, 1e-5, q, steps, accountant) == expected


def _prv_like(threshold: float = 0.08, scale: float = 50.0):
    """ε(σ) as PRV gives it: ∞ below ``threshold``, scale/σ above (at most scale/threshold)."""
    calls = []

    def eps(sigma: float) -> float:
        calls.append(sigma)
        return math.inf if sigma < threshold else scale / sigma

    return eps, calls


def test_an_unreachable_target_is_refused_not_searched_for_ever():
    eps, calls = _prv_like()
    with pytest.raises(InputError) as err:
        search_sigma(eps, 1e9, field="model.dp.epsilon", where="(test)")
    assert err.value.field == "model.dp.epsilon"
    assert "no noise multiplier reaches ε = 1e+09" in err.value.problem
    # the largest finite ε is 50 / 0.08 = 625: the advice is a reachable ε just below it
    advice = float(err.value.problem.rsplit("use ε ≤ ", 1)[1])
    assert 600 <= advice <= 625
    assert len(calls) < 30  # Opacus's loop never ended here
    # ...and the advised ε is found (within Opacus's tolerance 0.01 below it)
    sigma = search_sigma(_prv_like()[0], advice, field="f", where="")
    assert advice - 0.01 <= 50 / sigma <= advice


def test_a_reachable_target_next_to_the_infinite_region_is_found():
    sigma = search_sigma(_prv_like()[0], 600.0, field="f", where="")
    assert 600 - 0.01 <= 50 / sigma <= 600


def test_too_small_a_target_is_an_input_error():
    with pytest.raises(InputError, match=r"--epsilons: ε = 1e-09 is too small"):
        search_sigma(lambda s: 1.0 / s, 1e-9, field="--epsilons", where="")


def test_the_search_time_is_capped():
    now = iter(range(0, 10_000, 100))  # every clock reading 100 s later
    with pytest.raises(InputError, match=rf"took over {MAX_SEARCH_SECONDS:g} s"):
        search_sigma(lambda s: 1.0 / s, 0.5, field="f", where="", clock=lambda: float(next(now)))


@pytest.mark.timeout(120)
def test_prv_at_a_huge_epsilon_is_refused_within_bounded_time():
    """The red team's hang (ε = 1e9, PRV, q = 1/8, 16 steps): refused in ≈ 20 s on the CI
    machine (Opacus's own search never returned)."""
    t = time.monotonic()
    with pytest.raises(InputError, match=r"model\.dp\.epsilon: no noise multiplier reaches"):
        noise_for_epsilon(1e9, 1e-5, 0.125, 16, "prv")
    assert time.monotonic() - t < 90


def test_prv_at_a_tiny_epsilon_is_an_input_error():
    with pytest.raises(InputError, match=r"model\.dp\.epsilon: ε = 1e-06 is too small"):
        noise_for_epsilon(1e-6, 1e-5, 0.125, 16, "prv")


def test_steps_are_the_poisson_rounds_run():
    """Opacus's loader samples at 1 / len(loader) and runs int(1 / q) rounds per epoch; its
    int(epochs / q) can be one fewer (75 batches, 3 epochs: 224), so σ is found for the steps."""
    assert poisson_schedule(75 * 32, 32, 3) == (1 / 75, 225)
    assert int(3 / (1 / 75)) == 224  # what passing epochs to Opacus counted
    assert poisson_schedule(93, 1, 1) == (1 / 93, 92)  # Opacus's sampler: int(1 / (1 / 93))
    assert poisson_schedule(10, 64, 4) == (1.0, 4)  # batch larger than the data: q = 1


def test_the_recorded_epsilon_lands_under_the_target():
    """B1: at 75 batches and 3 epochs the σ found before this fix recorded ε ≈ 4.00004 > 4."""
    from opacus.accountants import create_accountant

    q, steps = poisson_schedule(75 * 32, 32, 3)
    sigma = noise_for_epsilon(4.0, 1e-5, q, steps, "rdp")
    acc = create_accountant("rdp")
    acc.history = [(sigma, q, steps)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        eps = acc.get_epsilon(1e-5)
    assert 4.0 - 0.01 <= eps <= 4.0


def test_delta_must_be_below_one_over_n():
    check_delta(1e-5, 99_999, "model.dp.delta")
    with pytest.raises(InputError, match=r"model\.dp\.delta: δ = 1e-05 is not below 1/n"):
        check_delta(1e-5, 100_000, "model.dp.delta")
    with pytest.raises(InputError, match=r"--delta: δ = 0.5 is not below 1/n = 0.00417"):
        check_delta(0.5, 240, "--delta")


def test_the_claim_is_checked_for_every_training_set_size():
    recipe = parse_recipe(
        {"kind": "torch-mlp", "epochs": 2, "batch_size": 30, "dp": {"epsilon": 1e-6}}
    )
    with pytest.raises(InputError, match=r"model\.dp\.epsilon: ε = 1e-06 is too small"):
        check_dp_claim(recipe, [240, 241])
    big_delta = parse_recipe(
        {"kind": "torch-mlp", "dp": {"epsilon": 1.0, "delta": 0.5, "accountant": "rdp"}}
    )
    with pytest.raises(InputError, match=r"model\.dp\.delta"):
        check_dp_claim(big_delta, [240])
    sigma_given = parse_recipe({"kind": "torch-mlp", "dp": {"noise_multiplier": 1.0}})
    check_dp_claim(sigma_given, [240])  # σ given: nothing to search
    with pytest.raises(InputError, match=r"model\.dp\.delta"):
        check_dp_claim(sigma_given.model_copy(update={"dp": big_delta.dp}), [240])


def test_the_language_models_fine_tuning_is_checked_too():
    with pytest.raises(InputError, match=r"model\.finetune\.dp\.delta"):
        check_finetune_dp(1.0, 0.1, "rdp", 16, 2, [64])
    with pytest.raises(InputError, match=r"--epsilons: ε = 1e-06 is too small"):
        check_finetune_dp(1e-6, 1e-5, "rdp", 16, 2, [64], epsilon_field="--epsilons")


def test_workers_take_the_coordinators_sigma_instead_of_searching_again(tmp_path, monkeypatch):
    """A PRV search is seconds (≈ 7 s at ε = 4 over 400 steps): the coordinator's checks find
    σ once and each unit's job carries it, so a fresh worker process trains without searching."""
    from miaudit.datasets import load_dataset
    from miaudit.engine import check_dp_plan, make_plan, parse_config
    from miaudit.engine._run import unit_jobs
    from miaudit.engine._unit import run_unit
    from miaudit.models import _dp_sigma

    cfg = parse_config(
        {
            "data": {"dataset": "breast-cancer"},
            "plan": {"models": 2, "unit_size": 2},  # one unit: one job to follow
            "model": {"kind": "torch-mlp", "hidden": [8], "epochs": 1, "dp": {"epsilon": 4.0}},
            "engine": {"workers": 0, "threads": 1, "progress": False},
        }
    )
    data = load_dataset(cfg.data)
    plan = make_plan(cfg, data.n_records)
    sigmas = check_dp_plan(cfg, plan)
    assert sigmas and all(q[0] == 4.0 and q[4] == "prv" for q, _ in sigmas)
    (job,) = unit_jobs(cfg, data, plan, tmp_path, sigmas=sigmas)

    def no_search(*_a, **_k):
        raise AssertionError("searched again")

    monkeypatch.setattr(_dp_sigma, "_FOUND", {})  # a fresh worker process
    monkeypatch.setattr(_dp_sigma, "search_sigma", no_search)
    assert run_unit(job).key == job.key
    monkeypatch.setattr(_dp_sigma, "_FOUND", {})
    (without,) = unit_jobs(cfg, data, plan, tmp_path / "other")
    with pytest.raises(AssertionError, match="searched again"):
        run_unit(without)
