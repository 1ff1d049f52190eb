"""Black-box canaries calibrated on reference runs (``DpAuditDesign.reference_runs``).

A black-box canary's score (minus the loss on its wrong label) mixes two things: how the
canary's inclusion moved the model, and how any model of this recipe treats that input anyway
(some random labels are simply likely for some inputs). Reference runs measure the second. They
train the recipe again on the *same* canaries (inputs and labels) with fresh coin flips and
fresh model seeds, and the audited run's score of a canary becomes its score minus the canary's
mean over the reference runs.

For out-of-distribution canaries the reference runs also choose how far out of distribution
the inputs lie: each canary's input is its held-out-marginal draw moved away from the held-out
mean by a factor ``a`` in :data:`OOD_SCALES` (``x → μ + a·(x − μ)``; larger inputs move the
model's output on them more per unit of clipped gradient, but also vary more from run to run).
Every scale is trained on :data:`SELECTION_RUNS` reference runs and scored by the audit's own
statistic, leave-one-out: each reference run in turn plays the audited run, centred by the
others, and its right guesses among the design's (k₊, k₋) are counted. The scale with the most
right guesses on average is kept (ties: the smaller scale), its reference runs topped up to
``reference_runs``.

Why the test stays valid: the canaries, their labels, the scale and the centring are all fixed
by runs whose coin flips are independent of the audited run's; the score of the audited run is
then a fixed function of its released model and of the canary's identity, which is all the
one-run test of Steinke, Nasr & Jagielski asks (their guesses may use any such function).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from miaudit.audit._results import _Record
from miaudit.metrics import one_run_guesses

#: Input scales tried for out-of-distribution canaries (1: the held-out marginals' draw itself).
OOD_SCALES: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
#: Reference runs per scale used to choose it (leave-one-out needs at least two).
SELECTION_RUNS = 4

#: (plan with its coin flips, model seed) → the canaries' black-box scores in that run.
ScorePlan = Callable[[Any, np.random.SeedSequence], np.ndarray]


class ReferenceCalibration(_Record):
    """How the audited runs' canaries were calibrated: reference runs per audited run, the
    scales tried (out-of-distribution canaries; empty otherwise), each audited run's mean
    leave-one-out right guesses per scale, and the scale it kept."""

    runs: int
    scales: list[float]
    selection: list[list[float]]
    chosen_scale: list[float]

    def line(self) -> str:
        text = (
            f"calibration: {self.runs} reference run(s) per audited run (the same canaries, fresh coin "
            "flips and model seeds); each canary's score centred by its mean over them"
        )
        if self.scales:
            tried = "; ".join(
                ", ".join(f"×{a:g}: {s:.1f}" for a, s in zip(self.scales, row, strict=True))
                for row in self.selection
            )
            kept = ", ".join(f"×{a:g}" for a in self.chosen_scale)
            text += (
                f"; input scale chosen on {min(self.runs, SELECTION_RUNS)} reference runs each by the "
                f"mean right guesses, leave-one-out ({tried}): kept {kept}"
            )
        return text


def reference_trainings(runs: int, *, ood: bool) -> int:
    """Trainings that calibrating one audited run costs (the scale choice included)."""
    if not ood:
        return runs
    per_scale = min(runs, SELECTION_RUNS)
    return per_scale * len(OOD_SCALES) + runs - per_scale


def merged(calibrations: list[ReferenceCalibration]) -> ReferenceCalibration | None:
    """One record for all audited runs (each calibrated on its own reference runs)."""
    if not calibrations:
        return None
    first = calibrations[0]
    return ReferenceCalibration(
        runs=first.runs,
        scales=first.scales,
        selection=[row for c in calibrations for row in c.selection],
        chosen_scale=[a for c in calibrations for a in c.chosen_scale],
    )


def reference_seed(ss: np.random.SeedSequence) -> np.random.SeedSequence:
    """The reference runs' stream for the audited run seeded by ``ss``: a key no child of
    ``ss`` uses, so the audited run's canaries, coins and model are those of an uncalibrated
    audit with the same seed (a paired comparison) and the references never share its coins."""
    return np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, 2**31 - 1))


def scaled(plan: Any, scale: float) -> Any:
    """``plan`` with its canaries' inputs moved away from the held-out mean by ``scale``."""
    if scale == 1.0:
        return plan
    data = plan.data
    source = data.features[plan.held] if plan.held.size else data.features
    mean = source.mean(axis=0, dtype=np.float64)
    features = data.features.copy()
    moved = mean + scale * (features[plan.canaries].astype(np.float64) - mean)
    features[plan.canaries] = moved.astype(features.dtype)
    return dataclasses.replace(plan, data=dataclasses.replace(data, features=features))


def leave_one_out_right(
    scores: np.ndarray, included: np.ndarray, k_plus: int, k_minus: int
) -> float:
    """Mean right guesses (the one-run test's count) when each run plays the audited run,
    centred by the others' mean."""
    runs = scores.shape[0]
    total = scores.sum(axis=0)
    return float(
        np.mean(
            [
                one_run_guesses(
                    scores[j] - (total - scores[j]) / (runs - 1), included[j], k_plus, k_minus
                )[1]
                for j in range(runs)
            ]
        )
    )


class _References:
    """Reference runs of one audited run's canaries: fresh coins and model seeds per run."""

    def __init__(self, score: ScorePlan, ss: np.random.SeedSequence) -> None:
        self._score = score
        self._rng = np.random.default_rng(ss)

    def train(self, plan: Any, runs: int) -> tuple[np.ndarray, np.ndarray]:
        """(runs, canaries) scores and coin flips of ``runs`` reference runs of ``plan``."""
        scores, coins = [], []
        for _ in range(runs):
            included = self._rng.random(plan.canaries.size) < 0.5
            model_ss = np.random.SeedSequence(int(self._rng.integers(2**63)))
            scores.append(self._score(dataclasses.replace(plan, included=included), model_ss))
            coins.append(included)
        return np.asarray(scores, dtype=np.float64), np.asarray(coins)


def calibrate(
    plan: Any,
    *,
    runs: int,
    guesses: tuple[int, int],
    ood: bool,
    score: ScorePlan,
    ss: np.random.SeedSequence,
) -> tuple[Any, np.ndarray, ReferenceCalibration]:
    """(the plan to audit, each canary's centre, the record) from ``runs`` reference runs of
    ``plan``; for out-of-distribution canaries the input scale is chosen first (module docstring)."""
    refs = _References(score, ss)
    if not ood:
        scores, _ = refs.train(plan, runs)
        return (
            plan,
            scores.mean(axis=0),
            ReferenceCalibration(runs=runs, scales=[], selection=[], chosen_scale=[]),
        )
    per_scale = min(runs, SELECTION_RUNS)
    plans = {a: scaled(plan, a) for a in OOD_SCALES}
    tried = {a: refs.train(p, per_scale) for a, p in plans.items()}
    right = {a: leave_one_out_right(s, c, *guesses) for a, (s, c) in tried.items()}
    best = max(OOD_SCALES, key=lambda a: (right[a], -a))
    chosen = plans[best]
    scores = tried[best][0]
    if runs > per_scale:
        scores = np.concatenate([scores, refs.train(chosen, runs - per_scale)[0]])
    return (
        chosen,
        scores.mean(axis=0),
        ReferenceCalibration(
            runs=runs,
            scales=list(OOD_SCALES),
            selection=[[right[a] for a in OOD_SCALES]],
            chosen_scale=[best],
        ),
    )
