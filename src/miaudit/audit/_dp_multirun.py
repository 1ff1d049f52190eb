"""Multi-run mode of ``miaudit dp-audit`` (docs/dp.md, "Multi-run mode"; docs/method.md §18).

R DP-SGD runs of a small ``torch-mlp`` recipe, each with one Dirac gradient canary included by
its own seeded fair coin, trained many at once (models' ``train_dp_runs``); each run's canary
is scored by the per-step likelihood ratio (the other records' clipped sum removed) and guessed
"included" when its score exceeds a threshold fixed before training; Clopper–Pearson over the
runs gives the bound (metrics' ``multi_run_epsilon_lower_bound``), with its ceiling.

- **Claim**: what Opacus's accountant records for the runs' σ, q and steps (σ found by Opacus
  for the recipe's target ε, as ``make_private_with_epsilon`` does). Never miaudit's maths.
- **Threshold rule**: the excluded-score quantile at the FPR of metrics' ``FPR_GRID`` with the
  largest mean simulated bound of R ideal runs under the *claimed* mechanism (21 simulations
  seeded by the design alone). Unlike the one-run guess rule (aimed at a violation: its
  guesses are ranks, free of any scale), the threshold sits on the claimed mechanism's score
  scale, and a threshold tuned to a mechanism with less noise lands where that scale puts
  few scores at the claim (measured: a third of the ideal bound at ε = 4).
- **Ideal bound**: the median simulated bound of R ideal runs under the claim at that threshold
  (the best any attacker can expect with R runs); the audit's bound is printed beside it.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable

import numpy as np

from miaudit.audit._dp_audit_power import Mechanism, planned_mechanism
from miaudit.audit._results import PrivacySpent, _Record
from miaudit.datasets import Dataset
from miaudit.errors import InputError
from miaudit.metrics import (
    FPR_GRID,
    bound_at_threshold,
    multi_run_ceiling,
    multi_run_epsilon_lower_bound,
    null_thresholds,
    simulated_multi_run_bounds,
)
from miaudit.models import DPConfig, MLPRecipe, spent_epsilon

#: Simulations behind the threshold rule and the ideal bound (mean for the rule, median shown).
MULTI_RUN_SIMULATIONS = 21
_RULE_SEED = 31


class MultiRun(_Record):
    """A multi-run audit's counts, threshold, ceiling and ideal bound (dp_audit.json /3)."""

    runs: int
    runs_in: int
    runs_out: int
    true_positives: int
    false_positives: int
    threshold: float
    planned_false_positive_rate: float
    ceiling: float
    ideal_bound: float
    ideal_bound_low: float
    ideal_bound_high: float
    share_of_ideal: float | None
    threshold_rule: str
    seconds: float

    def line(self) -> str:
        share = (
            ""
            if self.share_of_ideal is None
            else f"; this audit reached {self.share_of_ideal:.0%} of it"
        )
        return (
            f"multi-run: {self.true_positives} of {self.runs_in} included and {self.false_positives} of "
            f"{self.runs_out} excluded runs above the threshold; Clopper–Pearson ceiling ε ≤ {self.ceiling:.3f} "
            f"(the most {self.runs} runs could ever show); an ideal attacker under the claim reaches ε ≥ "
            f"{self.ideal_bound:.3f} with {self.runs} runs (median of {MULTI_RUN_SIMULATIONS} simulations, "
            f"{self.ideal_bound_low:.3f}–{self.ideal_bound_high:.3f}){share}"
        )


def multi_run_p_value(tp: int, n_in: int, fp: int, n_out: int, claim: float, delta: float) -> float:
    """The smallest significance at which the Clopper–Pearson bound exceeds ``claim`` (1 when
    none does): the bound grows with the significance, so bisection finds it."""

    def above(alpha: float) -> bool:
        bound = multi_run_epsilon_lower_bound(tp, n_in, fp, n_out, delta=delta, significance=alpha)
        return bound > claim

    if not above(1.0 - 1e-12):
        return 1.0
    lo, hi = 0.0, 1.0 - 1e-12
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if above(mid) else (mid, hi)
    return hi


@functools.lru_cache(maxsize=16)  # a pure function of the design: audits of one design share it
def threshold_rule(
    runs: int, sigma: float, q: float, steps: int, delta: float, significance: float
) -> tuple[float, float, np.ndarray]:
    """(threshold, its planned FPR, the ideal bounds at it over the simulations)."""
    seeds = np.random.SeedSequence([_RULE_SEED, runs]).generate_state(MULTI_RUN_SIMULATIONS + 1)
    thresholds = null_thresholds(
        claimed_sigma=sigma, sample_rate=q, steps=steps, seed=int(seeds[0])
    )
    sims = simulated_multi_run_bounds(
        runs,
        thresholds,
        true_sigma=sigma,
        claimed_sigma=sigma,
        sample_rate=q,
        steps=steps,
        delta=delta,
        significance=significance,
        seeds=[int(s) for s in seeds[1:]],
    )
    best = int(np.argmax(sims.mean(axis=0)))  # first of equals: the lowest FPR
    return float(thresholds[best]), FPR_GRID[best], sims[:, best]


def check_multi_run_recipe(recipe: object, runs: int) -> MLPRecipe:
    """The recipe as multi-run mode needs it: a DP-SGD ``torch-mlp`` with a plantable fault."""
    from miaudit.models import BATCHED_FAULTS

    if not isinstance(recipe, MLPRecipe) or recipe.dp is None:
        raise InputError("model", "multi-run mode audits a DP-SGD 'torch-mlp' recipe ([model].dp)")
    if recipe.dp.fault not in BATCHED_FAULTS:
        raise InputError(
            "model.dp.fault", f"multi-run mode can plant {', '.join(BATCHED_FAULTS)} only"
        )
    if recipe.optimizer not in ("adam", "sgd"):
        raise InputError("model.optimizer", "multi-run mode trains with 'adam' or 'sgd'")
    if recipe.dropout > 0:  # red team: vmap refused the random masks, an internal error
        raise InputError(
            "model.dropout",
            f"multi-run mode trains without dropout (its batched runs draw no dropout masks), got {recipe.dropout}; set 0 or audit without --multi-run",
        )
    if runs < 2:
        raise InputError("runs", f"multi-run mode needs at least 2 runs, got {runs}")
    return recipe


def _modules(recipe: MLPRecipe, data: Dataset, seeds: list[int]) -> list[object]:
    import torch

    from miaudit.models import build_net, single_model

    out: list[object] = []
    for start in range(0, len(seeds), 256):  # one stacked build per block of runs
        gens = [torch.Generator().manual_seed(s) for s in seeds[start : start + 256]]
        net = build_net(recipe, data, gens)
        out += [single_model(recipe, net, k) for k in range(len(gens))]
    return out


def _privacy(dp: DPConfig, mech: Mechanism, claim: float) -> PrivacySpent:
    return PrivacySpent(
        epsilon=claim,
        delta=dp.delta,
        accountant=dp.accountant,
        noise_multiplier=mech.noise_multiplier,
        max_grad_norm=dp.max_grad_norm,
        sample_rate=mech.sample_rate,
        steps=mech.steps,
        poisson_sampling=True,
        ghost_clipping=False,
        fault_injection=dp.fault,
        randomness=dp.randomness,
    )


def run_multi(
    recipe: MLPRecipe,
    data: Dataset,
    runs: int,
    base: np.ndarray,
    held: np.ndarray,
    seed: int,
    threads: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Mechanism]:
    """Train the R runs: (scores, included, test accuracies, the mechanism the accountant is told)."""
    import torch

    from miaudit.models import BatchedMechanism, fit_preprocessing, torch_threads, train_dp_runs

    dp = recipe.dp
    assert dp is not None
    mech = planned_mechanism(dp, recipe.batch_size, recipe.epochs, base.size)
    ss = np.random.SeedSequence([seed, 37])
    plan = np.random.default_rng(ss.spawn(1)[0])
    # Both made before training: each run's coin and its canary's coordinate.
    included = plan.random(runs) < 0.5
    init_seeds = [int(s) for s in plan.integers(0, 2**62, size=runs)]
    mask = np.zeros(data.n_records, dtype=bool)
    mask[held] = True
    (affine,), _ = fit_preprocessing(recipe, data, [base], mask)
    label = np.asarray(data.label).astype(np.int64)
    with torch_threads(threads):
        modules = _modules(recipe, data, init_seeds)
        n_params = sum(p.numel() for p in modules[0].parameters())  # type: ignore[attr-defined]
        coords = plan.integers(0, n_params, size=runs)
        res = train_dp_runs(
            modules,  # type: ignore[arg-type]
            torch.from_numpy(affine.apply(data.features[base])),
            torch.from_numpy(label[base]),
            torch.from_numpy(affine.apply(data.features[held])),
            torch.from_numpy(label[held]),
            coords,
            included,
            BatchedMechanism(
                noise_multiplier=mech.noise_multiplier,
                max_grad_norm=dp.max_grad_norm,
                sample_rate=mech.sample_rate,
                steps=mech.steps,
                optimizer=recipe.optimizer,
                lr=recipe.lr,
                weight_decay=recipe.weight_decay,
                momentum=recipe.momentum,
                fault=dp.fault,
                label_smoothing=recipe.label_smoothing,
            ),
            _mechanism_seed(dp, int(plan.integers(2**62))),
        )
    return res.scores, included, res.accuracy, mech


def _mechanism_seed(dp: DPConfig, seeded: int) -> int:
    """The runs' sampling and noise seed: the plan's, or a secret one under ``randomness =
    "secret"`` (the privacy record said "secret" while the runs stayed seeded: red team)."""
    import secrets

    return seeded if dp.randomness == "seeded" else secrets.randbits(62)


def multi_run_test(
    recipe: MLPRecipe,
    data: Dataset,
    runs: int,
    significance: float,
    split: tuple[np.ndarray, np.ndarray],
    seed: int,
    threads: int,
    say: Callable[[str], None],
) -> tuple[MultiRun, float, float, PrivacySpent, np.ndarray]:
    """Plan, train and test: (the multi-run record, the bound, its p-value at the claim, the
    privacy record, the runs' test accuracies)."""
    dp = recipe.dp
    assert dp is not None
    mech = planned_mechanism(dp, recipe.batch_size, recipe.epochs, split[0].size)
    claim = spent_epsilon(
        mech.noise_multiplier, mech.sample_rate, mech.steps, dp.delta, dp.accountant
    )
    t, fpr, ideal = threshold_rule(
        runs, mech.noise_multiplier, mech.sample_rate, mech.steps, dp.delta, significance
    )
    say(
        f"design: {runs} runs × 1 Dirac gradient canary (each included by its own fair coin); guess 'included' when its "
        f"likelihood-ratio score > {t:.4g} (the claimed mechanism's {fpr:g} false-positive quantile, fixed now); "
        f"claimed ε = {claim:.3f} (δ = {dp.delta:g}, {dp.accountant}); ceiling ≈ "
        f"{multi_run_ceiling(runs // 2, runs - runs // 2, delta=dp.delta, significance=significance):.3f}"
    )
    t0 = time.perf_counter()
    scores, included, acc, mech = run_multi(recipe, data, runs, *split, seed, threads)
    seconds = time.perf_counter() - t0
    bound, tp, fp = bound_at_threshold(
        scores, included, t, delta=dp.delta, significance=significance
    )
    n_in = int(included.sum())
    n_out = runs - n_in
    median = float(np.median(ideal))
    record = MultiRun(
        runs=runs,
        runs_in=n_in,
        runs_out=n_out,
        true_positives=tp,
        false_positives=fp,
        threshold=t,
        planned_false_positive_rate=fpr,
        ceiling=multi_run_ceiling(n_in, n_out, delta=dp.delta, significance=significance),
        ideal_bound=median,
        ideal_bound_low=float(ideal.min()),
        ideal_bound_high=float(ideal.max()),
        share_of_ideal=bound / median if median > 0 else None,
        threshold_rule="the claimed mechanism's false-positive quantile (grid "
        + ", ".join(f"{f:g}" for f in FPR_GRID)
        + f") with the largest mean simulated bound of {runs} ideal runs under the claim; seeded by the design",
        seconds=round(seconds, 1),
    )
    p = multi_run_p_value(tp, n_in, fp, n_out, claim, dp.delta) if math.isfinite(claim) else None
    return record, bound, (1.0 if p is None else p), _privacy(dp, mech, claim), acc
