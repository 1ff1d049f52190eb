"""``miaudit dp-audit``: a one-sided test of a training recipe's DP claim, with its power.

docs/dp.md and docs/method.md §6, §15; one training run (Steinke, Nasr & Jagielski, NeurIPS
2023), several runs pooled with fresh canaries per run:

1. Before training, per run: m canaries, each included by an independent fair coin flip — by
   default the strongest the recipe allows: white-box Dirac gradient canaries for a DP recipe,
   input canaries (records with a wrong label) otherwise; also rare-category and
   out-of-distribution input canaries. The guesses (IN for the k₊ highest scores, OUT for the k₋
   lowest) are fixed now — given, or by the guess rule from the claim alone
   (:mod:`miaudit.audit._dp_audit_power`) — and so is the largest ε the design can certify.
2. Train the recipe once per run on the base records plus the included canaries, exactly as the
   audited recipe trains (its preprocessing fitted where the recipe fits it: a DP recipe on the
   held-out records, which no run trains on; a recipe that fits on its training records sees
   the canaries there too, and the audit must then see the leak).
3. Score every canary: gradient canaries by the per-step likelihood ratio (the other records'
   clipped sum removed); input canaries black-box by minus the loss on their label;
   rare-category canaries by how much the outputs move without the category. Ties are broken by
   independent random draws.
4. Test the claim — the ε Opacus's accountant recorded (the largest over runs), at the recipe's
   δ — with the one-run p-value, at the stated significance; report the bound, the power
   (simulated ideal bound, smallest detectable ε) and a labelled μ-GDP estimate.

Verdict: "not testable by this design" when the claim is above the largest certifiable ε;
otherwise FAILED when the test rejects the claim (a bug in training, accounting or the audit),
else PASSED: no contradiction found (it proves nothing; the power line says how much it could
have found).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import ConfigDict, Field, field_validator, model_validator

from miaudit.audit._config import AuditConfig, load_audit_config
from miaudit.audit._dp_audit_power import (
    LOW_POWER_FACTOR,
    DpAuditPower,
    Mechanism,
    design_power,
    guess_rule,
    planned_mechanism,
    recorded_mechanism,
)
from miaudit.audit._dp_curve import CurveTest, curve_test
from miaudit.audit._dp_multirun import MultiRun, check_multi_run_recipe, multi_run_test
from miaudit.audit._dp_reference import (
    ReferenceCalibration,
    calibrate,
    merged,
    reference_seed,
    reference_trainings,
)
from miaudit.audit._results import PrivacySpent, _Record, dump_record, parse_record, record_text
from miaudit.datasets import Dataset
from miaudit.errors import InputError
from miaudit.metrics import (
    gaussian_dp_estimate,
    one_run_epsilon_lower_bound,
    one_run_max_certifiable_epsilon,
    one_run_p_value,
    pooled_one_run_audit,
)
from miaudit.models import (
    CNNRecipe,
    DPConfig,
    MLPRecipe,
    Recipe,
    spent_epsilon,
    torch_threads,
)

TorchRecipe = MLPRecipe | CNNRecipe

DP_AUDIT_SCHEMA: Literal["miaudit.dp_audit/2"] = "miaudit.dp_audit/2"
DP_AUDIT_SCHEMA_V1 = "miaudit.dp_audit/1"  # still read: the fields schema 2 added are None
#: Multi-run results: schema 2 plus ``multi_run`` (and ``design.multi_run``). One-run results
#: are still written as schema 2, byte for byte as before.
DP_AUDIT_SCHEMA_MULTI_RUN: Literal["miaudit.dp_audit/3"] = "miaudit.dp_audit/3"
DP_AUDIT_FILE = "dp_audit.json"
#: Largest significance the test runs at: above it, a FAILED rejects a correct recipe too often
#: to mean a bug (red team: 0.999 FAILED a correct ε = 2 recipe, exit 1).
MAX_SIGNIFICANCE = 0.2
Verdict = Literal["PASSED", "FAILED", "not testable by this design"]
CanaryKind = Literal["input", "gradient", "rare-category", "ood"]
CANARY_KINDS: tuple[CanaryKind, ...] = ("input", "rare-category", "gradient", "ood")


class DpAuditDesign(_Record):
    """What is fixed before training: canaries per run, guesses, runs, significance.

    ``None`` fields are resolved before training by :func:`resolve_design` (and written resolved
    into the result): ``canary_kind`` the strongest the recipe allows (gradient canaries for a DP
    recipe, input canaries otherwise), ``canaries`` 5,000 gradient canaries (at most the model's
    coordinates) or 1,000 input canaries, and (k₊, k₋) by the guess rule of
    :mod:`miaudit.audit._dp_audit_power` (a tenth of the canaries each without a DP claim).
    """

    canaries: int | None = None
    k_plus: int | None = None
    k_minus: int | None = None
    runs: int = 1
    significance: float = 0.05
    base_records: int | None = (
        None  # None: the non-canary records but a held-out test set (≤ 1000, ≤ 1/5)
    )
    #: "input": records with a wrong label, scored black-box by their loss; "gradient": Dirac
    #: gradient canaries inserted in the DP-SGD step, scored white-box (DP recipes only);
    #: "rare-category": records given a category no other record has (a new one-hot column
    #: each), scored black-box by how much the outputs change without it (tabular data).
    canary_kind: CanaryKind | None = None
    #: Multi-run mode: ``runs`` runs with one Dirac gradient canary each, Clopper–Pearson over
    #: runs (:mod:`miaudit.audit._dp_multirun`); canaries and guesses do not apply.
    multi_run: bool = False
    #: Test the accountant's whole ε(δ) curve (Bonferroni over a δ grid fixed in advance:
    #: :mod:`miaudit.audit._dp_curve`) instead of the claimed point alone; one-run mode only.
    curve: bool = False
    #: Black-box canaries ("input", "ood") calibrated on this many reference runs per audited
    #: run (the same canaries, fresh coins and model seeds): each score centred by the canary's
    #: reference mean; out-of-distribution canaries' input scale chosen on them too
    #: (:mod:`miaudit.audit._dp_reference`). 0: uncalibrated.
    reference_runs: int = 0

    @property
    def m(self) -> int:
        assert self.canaries is not None, "resolve_design first"
        return self.canaries

    @property
    def guesses(self) -> tuple[int, int]:
        assert self.k_plus is not None and self.k_minus is not None, "resolve_design first"
        return self.k_plus, self.k_minus

    def check(self, n_records: int) -> None:
        if self.canaries is not None and self.canaries < 2:
            raise InputError("canaries", f"must be at least 2, got {self.canaries}")
        if self.k_plus is not None and self.k_minus is not None:
            self._check_guesses()
        if self.runs < 1:
            raise InputError("runs", f"must be at least 1, got {self.runs}")
        if self.reference_runs < 0 or self.reference_runs == 1:
            raise InputError(
                "reference_runs",
                f"must be 0 (no calibration) or at least 2, got {self.reference_runs}",
            )
        if self.canary_kind is not None:
            self.check_calibrated_kind()
        if not 0 < self.significance <= MAX_SIGNIFICANCE:
            # A FAILED at significance 0.999 rejected a correct ε = 2 recipe and meant nothing.
            raise InputError(
                "--significance",
                f"must lie in (0, {MAX_SIGNIFICANCE:g}]: above it a FAILED is no evidence of a bug; got {self.significance}",
            )
        if self.canaries is None or self.canary_kind is None:
            return  # "auto" is resolved first (gradient canaries are not records), then checked
        base, used = self.base_count(n_records), self._records_used()
        if self.base_records is not None and (base < 1 or used + base > n_records):
            raise InputError(
                "canaries",
                f"{self.canaries} canaries + {base} base records exceed the dataset's {n_records} records",
            )
        if base < 1:  # the default base: the records the canaries leave, but a test set
            raise InputError(
                "canaries",
                f"{self.canaries} {self.canary_kind or 'input'} canaries are records of the dataset, "
                f"which has {n_records}: they leave no base records (at most {max(0, n_records - 1)} canaries)",
            )

    def check_calibrated_kind(self) -> None:
        """InputError when reference runs are asked for canaries they cannot calibrate."""
        if self.reference_runs and self.canary_kind not in ("input", "ood"):
            raise InputError(
                "reference_runs",
                f"calibrate black-box input canaries ('input' or 'ood'), not {self.canary_kind!r} canaries"
                " (auto picks gradient canaries for a DP recipe: give the canary kind input or ood)",
            )

    def _check_guesses(self) -> None:
        kp, km = self.guesses
        if kp < 0 or km < 0 or kp + km == 0 or (self.canaries and kp + km > self.canaries):
            most = (
                f"at most the {self.canaries} canaries per run"
                if self.canaries
                else "at most the canaries per run"
            )
            raise InputError(
                "guesses",
                f"k_plus and k_minus must be ≥ 0, their sum ≥ 1 and {most}; got {kp} + {km}",
            )

    def _records_used(self) -> int:
        return 0 if self.canary_kind == "gradient" else self.m  # gradient canaries are not records

    def base_count(self, n_records: int) -> int:
        rest = n_records - self._records_used()
        return rest - min(1000, rest // 5) if self.base_records is None else self.base_records

    def max_certifiable(self, delta: float) -> float:
        return one_run_max_certifiable_epsilon(
            self.runs * self.m,
            self.runs * sum(self.guesses),
            delta=delta,
            significance=self.significance,
        )


class GaussianDp(_Record):
    """The μ-GDP estimate beside the bound (metrics' ``gaussian_dp_estimate``): labelled with its
    family assumption, never the verdict. ``epsilon`` None: ∞ at the claimed δ."""

    mu: float
    epsilon: float | None
    label: str


class DpAuditResult(_Record):
    """An empirical ε lower bound against the accountant's claim (see the module docstring).

    ``claimed_epsilon`` is ∞ when the recipe is not DP-trained (written as null in JSON, which
    has no ∞; read back as ∞); a test accuracy that could not be measured is NaN (null).
    Schema 2 added the test's p-value, the power, the Gaussian-DP estimate, the guess rule and
    the score; a schema-1 file reads back with them None (or empty).
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, serialize_by_alias=True
    )

    schema_version: Literal["miaudit.dp_audit/1", "miaudit.dp_audit/2", "miaudit.dp_audit/3"] = (
        Field(DP_AUDIT_SCHEMA, alias="schema")
    )
    claimed_epsilon: float
    delta: float
    accountant: str
    method: str
    empirical_epsilon_lower_bound: float
    significance: float
    max_certifiable_epsilon: float
    verdict: Verdict
    design: DpAuditDesign
    m: int
    r: int
    v: int
    recipe: Recipe
    dataset: str
    seed: int
    test_accuracy: list[float]
    privacy: list[PrivacySpent] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    #: p-value of "the training is (claimed ε, δ)-DP" (one-sided; None without a finite claim).
    p_value: float | None = None
    power: DpAuditPower | None = None
    gaussian_dp: GaussianDp | None = None
    guess_rule: str = ""
    score: str = ""
    #: Multi-run mode's counts, threshold, ceiling and ideal bound (schema 3; None otherwise).
    multi_run: MultiRun | None = None
    #: The whole-curve test when the design asked for it (schema 3; None otherwise).
    curve: CurveTest | None = None
    #: The reference runs' calibration when the design asked for it (schema 3; None otherwise).
    calibration: ReferenceCalibration | None = None

    @field_validator("claimed_epsilon", mode="before")
    @classmethod
    def _null_is_infinite(cls, v: object) -> object:
        return math.inf if v is None else v

    @field_validator("test_accuracy", mode="before")
    @classmethod
    def _null_is_nan(cls, v: object) -> object:
        return [math.nan if a is None else a for a in v] if isinstance(v, list) else v

    @model_validator(mode="after")
    def _consistent(self) -> DpAuditResult:
        """What every audit writes, checked when a file is read: numbers in their ranges and a
        verdict that follows from them (red team: a crafted file's report said PASSED beside
        'the claim does not hold', or 'the bound exceeds the claim' under a bound of 0)."""
        problem = _dp_result_problem(self)
        if problem is not None:
            raise ValueError(problem)
        return self

    def __repr__(self) -> str:
        """A summary for a console or a notebook (``to_json`` has everything)."""
        return (
            f"DpAuditResult({self.verdict}: empirical ε ≥ {self.empirical_epsilon_lower_bound:.3g} "
            f"against the claimed ε = {self.claimed_epsilon:.3g} (δ = {self.delta:g}, {self.accountant}); "
            f"{self.m} canaries, {self.dataset}, seed {self.seed})"
        )

    __str__ = __repr__

    def to_json(self) -> str:
        data = json.loads(dump_record(self))
        if self.calibration is None:  # files without it read in releases before it
            del data["calibration"], data["design"]["reference_runs"]
        if self.multi_run is None and self.curve is None and self.calibration is None:
            for key in ("multi_run", "curve"):  # schema 2 exactly as it always was
                del data[key], data["design"][key]
        return json.dumps(data, indent=2, allow_nan=False)

    @classmethod
    def from_json(cls, text: str, source: str = DP_AUDIT_FILE) -> DpAuditResult:
        """InputError naming ``source`` unless ``text`` is a ``miaudit.dp_audit/2`` (or /3, /1) result."""
        return parse_record(cls, text, _schema_of(text), source=source)

    @classmethod
    def read(cls, path: str | Path, *, field: str | None = None) -> DpAuditResult:
        """A ``dp_audit.json``; InputError naming it (under ``field``) when it is not one."""
        text = record_text(Path(path), field)
        return parse_record(cls, text, _schema_of(text), source=str(path), field=field)

    def verdict_text(self) -> str:
        """The verdict in words: PASSED says what it does not prove, and when power is low."""
        if self.verdict == "FAILED" and self.curve is not None:
            return f"FAILED: the guesses reject the accountant's curve (Bonferroni p = {self.curve.adjusted_p_value:.2g} < {self.significance:g})"
        if self.verdict == "FAILED":
            return "FAILED: the guesses reject the claim" + (
                f" (p = {self.p_value:.2g} < {self.significance:g})"
                if self.p_value is not None
                else ""
            )
        if self.verdict == "not testable by this design":
            return "not testable by this design: the claim is above the largest ε it can certify"
        if self.no_power:
            return "PASSED: no contradiction found, but the design had NO POWER (every canary's score tied: the guesses were coin flips)"
        low = self.power is not None and self.power.low
        return "PASSED: no contradiction found" + (
            " (LOW POWER: only a large violation would have been caught)" if low else ""
        )

    @property
    def no_power(self) -> bool:
        """Every canary's score tied in every run (said in the notes): the guesses were coins."""
        return any(n.startswith(NO_POWER) for n in self.notes)

    def power_line(self) -> str | None:
        """The power line, with what its ideal attacker stands for under this kind of canary."""
        if self.power is None:
            return None
        if self.no_power:
            return "power: none (every canary's score tied; the ideal attacker's bounds do not apply to this design)"
        kind = self.design.canary_kind
        scope = _POWER_SCOPE.get(kind) if kind is not None and self.multi_run is None else None
        return self.power.line() + (f" ({scope})" if scope else "")

    def summary(self) -> str:
        claim = (
            "∞ (not DP-trained)"
            if math.isinf(self.claimed_epsilon)
            else f"{self.claimed_epsilon:.3f}"
        )
        lines = [
            f"claimed ε = {claim} (δ = {self.delta:g}, accountant {self.accountant}); empirical lower bound ε ≥ "
            f"{self.empirical_epsilon_lower_bound:.3f} at significance {self.significance:g} ({self.v} of {self.r} guesses right on "
            f"{self.m} canaries, {self.design.runs} run(s)); this design certifies at most ε = {self.max_certifiable_epsilon:.3f}: "
            + self.verdict_text()
        ]
        if self.multi_run is not None:
            lines.append(self.multi_run.line())
        if self.curve is not None:
            lines.append(self.curve.line())
        if self.calibration is not None:
            lines.append(self.calibration.line())
        power = self.power_line()
        if power is not None:
            lines.append(power)
        if self.gaussian_dp is not None:
            eps = "∞" if self.gaussian_dp.epsilon is None else f"{self.gaussian_dp.epsilon:.3f}"
            lines.append(f"{self.gaussian_dp.label}: μ ≥ {self.gaussian_dp.mu:.3f}, ε ≈ {eps}")
        return "\n".join(lines)


def _schema_of(text: str) -> str:
    """The schema this reader checks ``text`` against: the older one the file says, else /3."""
    try:
        found = json.loads(text).get("schema")
    except (ValueError, AttributeError, RecursionError):
        found = None
    return found if found in (DP_AUDIT_SCHEMA_V1, DP_AUDIT_SCHEMA_MULTI_RUN) else DP_AUDIT_SCHEMA


def _dp_result_problem(r: DpAuditResult) -> str | None:
    """Why ``r``'s numbers cannot come from an audit, or None."""
    if math.isnan(r.claimed_epsilon) or r.claimed_epsilon < 0:
        return "claimed_epsilon must be a number >= 0 (null: not DP-trained)"
    if not 0 <= r.delta < 1 or not 0 < r.significance < 1:
        return "delta must lie in [0, 1) and significance in (0, 1)"
    bound, ceiling = r.empirical_epsilon_lower_bound, r.max_certifiable_epsilon
    if not (math.isfinite(bound) and bound >= 0 and ceiling >= 0 and not math.isnan(ceiling)):
        return "the empirical bound must be finite and >= 0, the ceiling >= 0"
    if bound > ceiling * (1 + 1e-9) + 1e-12:
        return f"the empirical bound {bound:.4g} exceeds the design's ceiling {ceiling:.4g}"
    if not r.m >= 1 or not 0 <= r.v <= r.r <= r.m:
        return "the counts must satisfy 0 <= v <= r <= m and m >= 1"
    if r.p_value is not None and not 0 <= r.p_value <= 1:
        return "p_value must lie in [0, 1]"
    if any(not (math.isnan(a) or 0 <= a <= 1) for a in r.test_accuracy):
        return "test accuracies must lie in [0, 1]"
    recomputed = _recomputed_problem(r)
    if recomputed is not None:
        return recomputed
    if r.curve is not None and r.curve.rejected != (r.curve.adjusted_p_value < r.significance):
        return "curve.rejected does not follow from its adjusted p-value and the significance"
    expected = verdict(r.claimed_epsilon, r.p_value, r.significance, ceiling, r.curve)
    if r.schema_version == DP_AUDIT_SCHEMA_V1 and r.p_value is None and expected == "PASSED":
        # schema 1 had no p-value: it failed a claim its bound exceeded
        expected = "FAILED" if bound > r.claimed_epsilon else "PASSED"
    if r.verdict != expected:
        return f"verdict {r.verdict} does not follow from the file's numbers ({expected})"
    return None


def _recomputed_problem(r: DpAuditResult) -> str | None:
    """A one-run audit's p-value, bound and ceiling are functions of its counts, claim and
    design: recomputed, they must be the file's (red team: a bound of 1.8 over a claim of
    0.996, 20 of 20 guesses right, rendered PASSED beside p = 0.93). Multi-run files test over
    runs (their own counts); a schema-1 file has no p-value."""
    if r.multi_run is not None:
        return None
    if math.isfinite(r.claimed_epsilon) and r.p_value is None:
        if r.schema_version != DP_AUDIT_SCHEMA_V1:
            return "p_value must be given for a finite claim"
    elif r.p_value is not None:
        if not math.isfinite(r.claimed_epsilon):
            return "p_value must be null when nothing is claimed"
        if not _close(r.p_value, one_run_p_value(r.m, r.r, r.v, r.claimed_epsilon, delta=r.delta)):
            return "p_value does not follow from m, r, v and the claim"
    bound = one_run_epsilon_lower_bound(r.m, r.r, r.v, delta=r.delta, significance=r.significance)
    if not _close(r.empirical_epsilon_lower_bound, bound):
        return "the empirical bound does not follow from m, r and v"
    if not _close(r.max_certifiable_epsilon, r.design.max_certifiable(r.delta)):
        return "max_certifiable_epsilon does not follow from the design"
    return None


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def verdict(
    claimed: float,
    p_value: float | None,
    significance: float,
    ceiling: float,
    curve: CurveTest | None = None,
) -> Verdict:
    """'not testable by this design' above the ceiling; FAILED when the one-sided test of the
    claim rejects it (p < significance), or, when the design tests the accountant's whole
    curve, when that test alone rejects it; else PASSED. A single test: never the better of two."""
    if claimed > ceiling:
        return "not testable by this design"
    if curve is not None:
        return "FAILED" if curve.rejected else "PASSED"
    return "FAILED" if p_value is not None and p_value < significance else "PASSED"


@dataclasses.dataclass(frozen=True)
class CanaryRun:
    """One training run's canaries: scores, coin flips (included or not), what DP-SGD spent
    (None: not DP-trained) and the model's test accuracy (NaN without held-out records)."""

    scores: np.ndarray
    included: np.ndarray
    privacy: PrivacySpent | None
    accuracy: float
    calibration: ReferenceCalibration | None = None


def _gradient_canary_run(
    recipe: TorchRecipe,
    data: Dataset,
    design: DpAuditDesign,
    ss: np.random.SeedSequence,
    threads: int,
) -> CanaryRun:
    """One DP-SGD run on the base records with white-box gradient canaries."""
    import torch

    from miaudit.models import (
        GradientCanaries,
        ModelStreams,
        build_net,
        fit_preprocessing,
        single_model,
        train_one_dp,
    )

    plan_ss, model_ss = ss.spawn(2)
    rng = np.random.default_rng(plan_ss)
    n = data.n_records
    perm = rng.permutation(n)
    base_n = design.base_count(n)
    base, held = np.sort(perm[:base_n]), np.sort(perm[base_n:])
    stream = ModelStreams.of(int(model_ss.generate_state(1, np.uint32)[0]), 0)
    net = build_net(recipe, data, [torch.Generator().manual_seed(stream.torch_seed)])
    module = single_model(recipe, net, 0)
    n_params = sum(p.numel() for p in module.parameters())
    if design.m > n_params:
        raise InputError(
            "canaries",
            f"{design.canaries} gradient canaries need as many coordinates; the model has {n_params} parameters",
        )
    # Both made before training: each canary's coordinate and its coin flip.
    coords = np.sort(rng.choice(n_params, size=design.m, replace=False)).astype(np.int64)
    included = rng.random(design.m) < 0.5
    canaries = GradientCanaries(coords, included, int(rng.integers(2**62)))
    (affine,), _ = fit_preprocessing(recipe, data, [base], _mask(n, held))
    x = torch.from_numpy(affine.apply(data.features[base]))
    y = torch.from_numpy(np.asarray(data.label)[base].astype(np.int64))
    with torch_threads(threads):
        privacy = train_one_dp(recipe, module, x, y, stream, data.image_shape, canaries=canaries)
        with torch.no_grad():
            pred = (
                module(torch.from_numpy(affine.apply(data.features[held]))).argmax(-1).numpy()
                if held.size
                else np.zeros(0)
            )
    acc = float((pred == np.asarray(data.label)[held]).mean()) if held.size else float("nan")
    assert canaries.scores is not None
    return CanaryRun(canaries.scores, included, PrivacySpent.model_validate(privacy), acc)


@dataclasses.dataclass(frozen=True)
class _CanaryPlan:
    """What one run fixes before training: which records are canaries, base and held out, the
    canaries' labels (wrong ones for input canaries), their coin flips and the data trained on."""

    canaries: np.ndarray
    base: np.ndarray
    held: np.ndarray
    label: np.ndarray
    included: np.ndarray
    data: Dataset

    @property
    def train_set(self) -> np.ndarray:
        return np.sort(np.concatenate([self.base, self.canaries[self.included]]))


def _canary_plan(data: Dataset, design: DpAuditDesign, rng: np.random.Generator) -> _CanaryPlan:
    n, m = data.n_records, design.m
    perm = rng.permutation(n)
    canaries = np.sort(perm[:m])
    base_n = design.base_count(n)
    base = np.sort(perm[m : m + base_n])
    held = np.sort(perm[m + base_n :])
    rare = design.canary_kind == "rare-category"
    # Both made before training: the canaries' wrong labels (or unique categories) and their coin flips.
    label = np.asarray(data.label).astype(np.int64).copy()
    if not rare:
        label[canaries] = (
            label[canaries] + rng.integers(1, data.n_classes, size=m)
        ) % data.n_classes
    included = rng.random(m) < 0.5
    canary_data = (
        with_rare_categories(data, canaries) if rare else dataclasses.replace(data, label=label)
    )
    if design.canary_kind == "ood":  # drawn after the flips: the other kinds' streams unchanged
        canary_data = with_ood_inputs(canary_data, canaries, held, rng)
    return _CanaryPlan(canaries, base, held, label, included, canary_data)


def with_ood_inputs(
    data: Dataset, canaries: np.ndarray, held: np.ndarray, rng: np.random.Generator
) -> Dataset:
    """``data`` with each canary's input replaced by an out-of-distribution one: every column
    drawn independently from the held-out records' values (each column's marginal kept, the
    joint destroyed: an input unlike any record, which a model fits only by memorising it)."""
    source = data.features[held] if held.size else data.features
    features = data.features.copy()
    picks = rng.integers(0, source.shape[0], size=(canaries.size, source.shape[1]))
    features[canaries] = source[picks, np.arange(source.shape[1])]
    return dataclasses.replace(data, features=features)


def _train_once(
    recipe: TorchRecipe,
    plan: _CanaryPlan,
    model_ss: np.random.SeedSequence,
    threads: int,
) -> tuple[np.ndarray, PrivacySpent | None]:
    """Train the recipe once on the plan's training set, as the audited recipe trains (its
    preprocessing fitted on the held-out records, never a canary, or on the training set):
    (logits on every record of the plan's data, what DP-SGD spent)."""
    from miaudit.models import ModelStreams, fit_preprocessing, train_unit

    data, train_set = plan.data, plan.train_set
    (affine,), _ = fit_preprocessing(recipe, data, [train_set], _mask(data.n_records, plan.held))
    stream = ModelStreams.of(int(model_ss.generate_state(1, np.uint32)[0]), 0)
    res = train_unit(recipe, data, [train_set], [affine], [stream], threads=threads)
    privacy = PrivacySpent.model_validate(res.privacy[0]) if res.privacy else None
    return res.logits[0], privacy


def _canary_scores(logits: np.ndarray, plan: _CanaryPlan, n: int, rare: bool) -> np.ndarray:
    """Black-box scores: minus the loss on the canary's label, or for rare-category canaries
    the L1 change of the logits without the category (the twins follow the ``n`` records)."""
    m = plan.canaries.size
    lg = logits[plan.canaries].astype(np.float64)
    if rare:
        return np.asarray(np.abs(lg - logits[n : n + m].astype(np.float64)).sum(axis=1))
    lse = np.logaddexp.reduce(lg, axis=1)
    return np.asarray(lg[np.arange(m), plan.label[plan.canaries]] - lse)


def _canary_run(
    recipe: TorchRecipe,
    data: Dataset,
    design: DpAuditDesign,
    ss: np.random.SeedSequence,
    threads: int,
) -> CanaryRun:
    """One training run with fresh canaries, scored black-box."""
    if design.canary_kind == "gradient":
        return _gradient_canary_run(recipe, data, design, ss, threads)
    plan_ss, model_ss = ss.spawn(2)
    plan = _canary_plan(data, design, np.random.default_rng(plan_ss))
    rare = design.canary_kind == "rare-category"

    def trained(p: _CanaryPlan, mss: np.random.SeedSequence) -> tuple[np.ndarray, Any]:
        logits, privacy = _train_once(recipe, p, mss, threads)
        if logits.ndim == 3:  # augmentation queries: the un-augmented view
            logits = logits[:, 0, :]
        return _canary_scores(logits, p, data.n_records, rare), (logits, privacy)

    calibration = None
    if design.reference_runs:
        plan, centre, calibration = calibrate(
            plan,
            runs=design.reference_runs,
            guesses=design.guesses,
            ood=design.canary_kind == "ood",
            score=lambda p, mss: trained(p, mss)[0],
            ss=reference_seed(ss),
        )
    scores, (logits, privacy) = trained(plan, model_ss)
    if calibration is not None:
        scores = scores - centre
    test = plan.held if plan.held.size else plan.base[:0]
    acc = (
        float((logits[test].argmax(-1) == np.asarray(data.label)[test]).mean())
        if test.size
        else float("nan")
    )
    return CanaryRun(scores, plan.included, privacy, acc, calibration)


def _mask(n: int, rows: np.ndarray) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[rows] = True
    return out


def with_rare_categories(data: Dataset, canaries: np.ndarray) -> Dataset:
    """``data`` with one new one-hot column per canary, set for that canary alone (a category no
    other record has), followed by each canary's twin without it (never trained on: the second
    query). Twins are records ``n .. n + m − 1`` in canary order."""
    n, d, m = data.n_records, data.n_features, canaries.size
    features = np.zeros((n + m, d + m), dtype=np.float32)
    features[:n, :d] = data.features
    features[n:, :d] = data.features[canaries]
    features[canaries, d + np.arange(m)] = 1.0
    ids = np.asarray(data.record_id)
    twins = np.arange(m) + (int(ids.max()) + 1 if ids.dtype.kind in "iu" else 0)
    twin_ids = twins if ids.dtype.kind in "iu" else np.array([f"canary-twin-{i}" for i in range(m)])
    return dataclasses.replace(
        data,
        features=features,
        label=np.concatenate([data.label, data.label[canaries]]),
        record_id=np.concatenate([ids, twin_ids]),
        onehot=np.concatenate([data.onehot, d + np.arange(m)]),
        feature_names=(*data.feature_names, *(f"canary={i}" for i in range(m))),
    )


_CANARY_NOTES = {
    "ood": "Out-of-distribution input canaries: records whose every column is drawn independently from the held-out records' values, given a "
    "random wrong label, scored black-box by minus the loss on that label.",
    "input": "Input canaries: records given a random wrong label, scored black-box by minus the loss on that label.",
    "rare-category": "Rare-category canaries: records given a category no other record has (a one-hot column of its own), scored black-box by the "
    "L1 change of the logits when the category is taken away (two queries).",
    "gradient": "Gradient canaries (white-box): Dirac gradients of norm C on random parameter coordinates, Poisson-sampled into every DP-SGD step "
    "when included; scored by the per-step likelihood ratio of the released noisy gradient on their coordinate, the other records' clipped sum "
    "there removed (the audit observes it), under the σ and sampling rate the accountant is told.",
}
_CANARY_METHODS = {
    "ood": "out-of-distribution input canaries, black-box",
    "input": "input canaries, black-box",
    "rare-category": "rare-category canaries, black-box",
    "gradient": "gradient canaries, white-box",
}
_SCORES = {
    "ood": "minus the loss on the canary's random label",
    "input": "minus the loss on the canary's wrong label",
    "rare-category": "L1 change of the logits without the canary's category",
    "gradient": "per-step likelihood ratio, other records' clipped sum removed",
}
#: What each kind of canary can and cannot see (models/_dp.py ``_attach_canaries``: a gradient
#: canary's score is its own Poisson-sampled contribution plus the optimizer's noise, the other
#: records' clipped sum removed; it depends on neither the data, the clipping, the
#: preprocessing nor the records' loader). Red team: a training-preprocessing fault (true ε = ∞)
#: PASSED under gradient canaries with a power line that read as if it bounded every bug.
_CANARY_SIGHT = {
    "gradient": "Gradient canaries see the noise the optimizer adds and the number of noisy steps, against the σ, sampling rate and steps the "
    "accountant is told. They cannot see clipping (they are added already clipped), preprocessing (they are not records), or how the data "
    "loader samples the records (the audit Poisson-samples them itself at the accountant's rate): PASSED says nothing about those.",
    "input": "Input canaries are records: they go through everything the training does to records (preprocessing, the loader's sampling, "
    "clipping, noise, steps), seen black-box through the model's loss, so only violations far larger than the power line's (an ideal "
    "white-box attacker's) are caught.",
    "ood": "Out-of-distribution canaries are records: they go through everything the training does to records (preprocessing, the loader's "
    "sampling, clipping, noise, steps), seen black-box through the model's loss, so only violations far larger than the power line's "
    "(an ideal white-box attacker's) are caught.",
    "rare-category": "Rare-category canaries see preprocessing fitted on the training records (a category only the canary has). They cannot "
    "see noise, clipping, sampling or accounting bugs: with preprocessing fitted on records no run trains on, the category is invisible to "
    "the model, every score ties and the guesses are coin flips.",
}
#: The faults each kind can see (``model.dp.fault``): a PASSED with another fault says nothing.
_SEES_FAULT = {
    "gradient": {"zero_noise", "undercounted_steps"},
    "input": {"zero_noise", "no_clipping", "undercounted_steps", "training_preprocessing"},
    "ood": {"zero_noise", "no_clipping", "undercounted_steps", "training_preprocessing"},
    "rare-category": {"training_preprocessing"},
}
#: What the power line's ideal attacker stands for, per kind.
_POWER_SCOPE = {
    "gradient": "for the bugs gradient canaries see (noise scale and step count) only",
    "input": "an ideal white-box attacker's: these black-box canaries reach less",
    "ood": "an ideal white-box attacker's: these black-box canaries reach less",
    "rare-category": "an ideal white-box attacker's: rare-category canaries have none of it against noise, clipping or accounting bugs",
}
#: The note that says every canary's score tied (the verdict reads it: no power at all).
NO_POWER = "NO POWER: every canary's score was the same"
#: Default canaries per run: gradient canaries (at most the model's coordinates), input canaries.
DEFAULT_GRADIENT_CANARIES = 5000
DEFAULT_INPUT_CANARIES = 1000


def _n_params(recipe: TorchRecipe, data: Dataset) -> int:
    import torch

    from miaudit.models import build_net, single_model

    net = build_net(recipe, data, [torch.Generator().manual_seed(0)])
    return sum(p.numel() for p in single_model(recipe, net, 0).parameters())


def _checked_recipe(cfg: AuditConfig, design: DpAuditDesign, data: Dataset) -> TorchRecipe:
    """The config's recipe if this design can audit it on ``data``; else InputError."""
    from miaudit.engine import check_model_size

    recipe = cfg.model
    if not isinstance(recipe, (MLPRecipe, CNNRecipe)):
        raise InputError("model.kind", "dp-audit trains torch recipes ('torch-mlp' or 'torch-cnn')")
    design.check(data.n_records)
    # before any allocation
    check_model_size(recipe, data.n_features, data.n_classes, data.n_records)
    if design.canary_kind == "gradient" and recipe.dp is None:
        raise InputError(
            "canary_kind",
            "gradient canaries are inserted in the DP-SGD step: the recipe needs [model].dp",
        )
    design.check_calibrated_kind()  # the resolved kind ("auto" may have chosen gradient)
    if design.canary_kind == "rare-category" and (
        data.image_shape is not None or not isinstance(recipe, MLPRecipe)
    ):
        raise InputError(
            "canary_kind",
            "rare-category canaries are tabular records with a one-hot category: they need tabular data and a 'torch-mlp' recipe",
        )
    return recipe


def resolve_design(
    design: DpAuditDesign, recipe: TorchRecipe, data: Dataset, seed: int
) -> tuple[DpAuditDesign, str]:
    """``design`` with its None fields resolved before training (see :class:`DpAuditDesign`), and
    how the guesses were chosen. The guess rule sees the recipe's claim alone: never a score."""
    kind: CanaryKind = design.canary_kind or ("gradient" if recipe.dp is not None else "input")
    m = design.canaries
    if m is None:
        m = (
            min(DEFAULT_GRADIENT_CANARIES, _n_params(recipe, data))
            if kind == "gradient"
            else DEFAULT_INPUT_CANARIES
        )
    out = design.model_copy(update={"canary_kind": kind, "canaries": m})
    if design.k_plus is not None and design.k_minus is not None:
        return out, "given"
    out.check(data.n_records)
    dp = recipe.dp
    claim = dp.epsilon if dp is not None else None
    if dp is None or (claim is None and not dp.noise_multiplier):
        kp = km = max(1, m // 10)
        rule = "a tenth of the canaries each (no DP claim to plan for)"
    else:
        mech = planned_mechanism(
            dp, recipe.batch_size, recipe.epochs, out.base_count(data.n_records)
        )
        if claim is None:  # σ given: the claim is what the accountant will record
            claim = _planned_epsilon(dp, mech)
        kp, km = guess_rule(
            m * design.runs, mech, claim, dp.delta, design.significance, dp.accountant
        )
        kp, km = max(1, kp // design.runs), km // design.runs
        rule = (
            f"the grid design with the largest mean ideal bound under a violation of the claim by {LOW_POWER_FACTOR:g}× "
            f"(the planned q = {mech.sample_rate:.3g} and {mech.steps} steps, σ for ε = {LOW_POWER_FACTOR * claim:.3g}; "
            f"claimed σ = {mech.noise_multiplier:.3g}) among those able to certify the claim; seeded by the design, not the audit"
        )
    return out.model_copy(update={"k_plus": kp, "k_minus": km}), rule


def _planned_epsilon(dp: DPConfig, mech: Mechanism) -> float:
    return spent_epsilon(
        mech.noise_multiplier, mech.sample_rate, mech.steps, dp.delta, dp.accountant
    )


def _design_line(
    design: DpAuditDesign, recipe: TorchRecipe, delta: float, ceiling: float, rule: str
) -> str:
    """What the design can certify, said before anything is trained."""
    dp = recipe.dp
    claim = (
        f"; the target claim ε = {dp.epsilon:g} is {'within reach' if dp.epsilon <= ceiling else 'NOT testable by this design'}"
        if dp is not None and dp.epsilon is not None
        else ""
    )
    kp, km = design.guesses
    return (
        f"design: {design.runs} run(s) × {design.m} {design.canary_kind} canaries (each included with probability ½), "
        f"guesses k₊ = {kp}, k₋ = {km} fixed now ({rule}); at significance {design.significance:g} and δ = {delta:g} "
        f"this design can certify at most ε = {ceiling:.3f}" + claim + _calibration_plan(design)
    )


def _calibration_plan(design: DpAuditDesign) -> str:
    """What the reference runs will cost, said before they train."""
    if not design.reference_runs:
        return ""
    extra = reference_trainings(design.reference_runs, ood=design.canary_kind == "ood")
    return (
        f"; each audited run first trains {extra} reference run(s) on its canaries (fresh coins) "
        "to calibrate their scores"
        + (" and choose their input scale" if design.canary_kind == "ood" else "")
    )


def _notes(design: DpAuditDesign, recipe: TorchRecipe, privacy: list[PrivacySpent]) -> list[str]:
    from miaudit.models import preprocessing_fit

    assert design.canary_kind is not None
    kind = design.canary_kind
    fitted = (
        "the held-out records, which no run trains on"
        if preprocessing_fit(recipe) == "population"
        else "each run's training records"
    )
    notes = [
        _CANARY_NOTES[kind],
        f"Trained as the audited recipe trains: preprocessing fitted on {fitted}"
        + (
            " (gradient canaries are not records: preprocessing never sees them)."
            if kind == "gradient"
            else (", canaries included." if fitted.startswith("each") else ".")
        ),
        _CANARY_SIGHT[kind],
        "Claimed ε: the largest ε Opacus's accountant recorded over the runs.",
        'Verdict: one-sided test of "the training is (claimed ε, δ)-DP" (Steinke, Nasr & Jagielski) at the stated significance; '
        "PASSED means no contradiction found, never that the claim is true.",
    ]
    return notes + _fault_notes(kind, privacy)


def _fault_notes(kind: CanaryKind, privacy: list[PrivacySpent]) -> list[str]:
    """Fault injection said, and whether this kind of canary can see it at all."""
    faults = sorted({p.fault_injection for p in privacy} - {"none"})
    notes = []
    if faults:
        notes.append(
            f"FAULT INJECTION was on ({', '.join(faults)}): the recorded ε is not what the training did."
        )
    unseen = [f for f in faults if f not in _SEES_FAULT[kind]]
    if unseen:
        notes.append(
            f"The fault ({', '.join(unseen)}) is outside what {kind} canaries can see: a PASSED says nothing about it."
        )
    return notes


def _tied(scores: np.ndarray) -> bool:
    """Every score equal up to float rounding (a rare-category canary and its twin, the same
    input, differ by ≤ 7.5e-8 in the logits' L1)."""
    return bool(np.ptp(scores) <= 1e-6 * max(1.0, float(np.abs(scores).max())))


def _tie_notes(runs: list[CanaryRun]) -> list[str]:
    """A design with every canary's score the same had no power at all (red team: rare-category
    canaries of a population-preprocessed recipe all scored 0 and PASSED a zero-noise fault with
    a power line claiming bugs of ε ≥ 3.45 would be caught)."""
    if not all(r.scores.size and _tied(r.scores) for r in runs):
        return []
    return [
        f"{NO_POWER} in every run: the guesses were coin flips, and this design could not have caught any bug."
    ]


def _runs(
    recipe: TorchRecipe,
    data: Dataset,
    design: DpAuditDesign,
    seed: int,
    threads: int,
    say: Callable[[str], None],
) -> list[CanaryRun]:
    """The design's training runs, each with fresh canaries from its own seed."""
    runs = []
    for i, ss in enumerate(np.random.SeedSequence(seed).spawn(design.runs)):
        run = _canary_run(recipe, data, design, ss, threads)
        runs.append(run)
        say(
            f"run {i + 1}/{design.runs}: trained on {int(run.included.sum())} of {design.m} canaries"
            + (f"; accountant ε = {run.privacy.epsilon:.3f}" if run.privacy else "")
        )
    return runs


def _tie_broken(runs: list[CanaryRun], seed: int) -> list[CanaryRun]:
    """Each run's scores replaced by their ranks, ties broken by independent random draws.

    Tied scores are common (a zero-noise run's likelihood ratios take few values): the test
    abstains on ties across a cut, which can leave few guesses. Draws independent of the coin
    flips keep the guesses a function of the scores and fresh randomness, so the test stays
    valid; canary order never breaks a tie (it could leak the coin flips)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 29]))
    out = []
    for r in runs:
        order = np.lexsort((rng.random(r.scores.size), r.scores))
        ranks = np.empty(r.scores.size)
        ranks[order] = np.arange(r.scores.size, dtype=np.float64)
        out.append(dataclasses.replace(r, scores=ranks))
    return out


def _gaussian_dp(runs: list[CanaryRun], design: DpAuditDesign, delta: float) -> GaussianDp | None:
    """The μ-GDP estimate from the first run's canaries (ranks are not comparable across runs)."""
    if delta <= 0:
        return None
    kp, km = design.guesses
    est = gaussian_dp_estimate(
        runs[0].scores,
        runs[0].included,
        k_plus=kp,
        k_minus=km,
        delta=delta,
        significance=design.significance,
    )
    label = est.label if len(runs) == 1 else est.label + ", first run"
    return GaussianDp(
        mu=est.mu, epsilon=est.epsilon if math.isfinite(est.epsilon) else None, label=label
    )


# Long: one record assembled field by field (30 fields); each step is one call.
def _result(
    recipe: TorchRecipe,
    design: DpAuditDesign,
    dataset: str,
    runs: list[CanaryRun],
    delta: float,
    run_seed: int,
    rule: str,
) -> DpAuditResult:
    """The test of the claim from the runs' guesses, pooled, against the largest ε any run's
    accountant recorded (∞ when none was DP-trained), with the design's power beside it."""
    kp, km = design.guesses
    tied = _tie_notes(runs)  # on the scores, before ties are broken into ranks
    runs = _tie_broken(runs, run_seed)
    res = pooled_one_run_audit(
        [(r.scores, r.included) for r in runs],
        k_plus=kp,
        k_minus=km,
        delta=delta,
        significance=design.significance,
    )
    ceiling = design.max_certifiable(delta)
    privacy = [r.privacy for r in runs if r.privacy is not None]
    claimed = float(max((p.epsilon for p in privacy), default=math.inf))
    p_value = (
        one_run_p_value(res.m, res.r, res.v, claimed, delta=delta)
        if math.isfinite(claimed)
        else None
    )
    top = max(privacy, key=lambda p: p.epsilon) if privacy else None
    power = (
        design_power(
            res.m,
            kp * design.runs,
            km * design.runs,
            recorded_mechanism(top),
            claimed,
            delta=delta,
            significance=design.significance,
            seed=run_seed,
            bound=float(res.epsilon_lower_bound),
        )
        if top is not None
        else None
    )
    assert design.canary_kind is not None
    curve = (
        curve_test(res.m, res.r, res.v, privacy, design.significance)
        if design.curve and top is not None and math.isfinite(claimed)
        else None
    )
    calibration = merged([r.calibration for r in runs if r.calibration is not None])
    decided = verdict(claimed, p_value, design.significance, float(ceiling), curve)
    return DpAuditResult(
        schema_version=DP_AUDIT_SCHEMA_MULTI_RUN
        if curve is not None or calibration is not None
        else DP_AUDIT_SCHEMA,
        claimed_epsilon=claimed,
        delta=float(delta),
        accountant=privacy[0].accountant if privacy else "none (not DP-trained)",
        method=f"one run per model, pooled over {design.runs} run(s) (Steinke, Nasr & Jagielski, NeurIPS 2023); "
        + _CANARY_METHODS[design.canary_kind],
        empirical_epsilon_lower_bound=float(res.epsilon_lower_bound),
        significance=design.significance,
        max_certifiable_epsilon=float(ceiling),
        verdict=decided,
        design=design,
        m=res.m,
        r=res.r,
        v=res.v,
        recipe=recipe,
        dataset=dataset,
        seed=run_seed,
        test_accuracy=[r.accuracy for r in runs],
        privacy=privacy,
        notes=tied + _notes(design, recipe, privacy),
        p_value=p_value,
        power=power,
        gaussian_dp=_gaussian_dp(runs, design, delta) if privacy else None,
        guess_rule=rule,
        score=_SCORES[design.canary_kind]
        + (
            f", centred by the canary's mean over {design.reference_runs} reference runs"
            if calibration is not None
            else ""
        ),
        curve=curve,
        calibration=calibration,
    )


def dp_audit(
    config: AuditConfig | str | Path,
    out: str | Path | None = None,
    *,
    design: DpAuditDesign | None = None,
    seed: int | None = None,
    say: Callable[[str], None] | None = None,
) -> DpAuditResult:
    """Audit a recipe's DP claim with canaries (see the module docstring).

    ``config``: an audit config (its ``[data]`` and ``[model]``; ``model.dp`` makes the claim;
    without it the recipe claims nothing and the bound is reported as what an undefended recipe
    reaches). ``design``: None fields resolved before training (:func:`resolve_design`).
    ``out``: folder for ``dp_audit.json`` (shareable: aggregates only). ``say`` gets progress
    lines; the first states the design and the largest ε it can certify, the last the verdict
    and its power.
    """
    from miaudit.datasets import load_dataset

    cfg = config if isinstance(config, AuditConfig) else load_audit_config(config)
    if not isinstance(cfg.model, (MLPRecipe, CNNRecipe)):  # before the data is loaded
        raise InputError("model.kind", "dp-audit trains torch recipes ('torch-mlp' or 'torch-cnn')")
    if cfg.engine.device != "cpu":  # its canary runs train on the CPU: never silently
        raise InputError("engine.device", 'dp-audit trains on the CPU only; set "cpu" or remove it')
    design = design or DpAuditDesign()
    say = say or (lambda _s: None)
    if seed is not None and (isinstance(seed, bool) or seed < 0):
        raise InputError("--seed", f"must be ≥ 0, got {seed!r}")
    data = load_dataset(cfg.data)
    design.check(data.n_records)
    run_seed = cfg.seed if seed is None else seed
    if design.multi_run:
        result = _multi_run_audit(cfg, data, design, run_seed, say)
        _write(result, out)
        return result
    _check_claim(cfg.model, design, data.n_records)
    design, rule = resolve_design(design, cfg.model, data, run_seed)
    recipe = _checked_recipe(cfg, design, data)
    delta = recipe.dp.delta if recipe.dp is not None else 0.0
    say(_design_line(design, recipe, delta, design.max_certifiable(delta), rule))
    runs = _runs(recipe, data, design, run_seed, cfg.engine.threads, say)
    result = _result(recipe, design, data.name, runs, delta, run_seed, rule)
    say(result.summary())
    _write(result, out)
    return result


def _check_claim(recipe: Recipe, design: DpAuditDesign, n_records: int) -> None:
    """The recipe's DP claim checked before anything trains (models' ``check_dp_claim``): δ
    below 1/n for the largest training set a run can have (base records, and every input
    canary), σ found for the target ε at the smallest and the largest (a run's actual size, its
    included canaries, lies between and is searched when it trains: the same bounded search;
    in practice the ends are where a target turns unreachable, too small or too large)."""
    from miaudit.models import check_dp_claim

    if not isinstance(recipe, (MLPRecipe, CNNRecipe)) or recipe.dp is None:
        return
    kind: CanaryKind = design.canary_kind or "gradient"  # a DP recipe's default
    m = design.canaries
    if m is None:
        m = 0 if kind == "gradient" else DEFAULT_INPUT_CANARIES
    resolved = design.model_copy(update={"canary_kind": kind, "canaries": m})
    base = resolved.base_count(n_records)
    check_dp_claim(recipe, [base, base + resolved._records_used()])


def _write(result: DpAuditResult, out: str | Path | None) -> None:
    if out is not None:
        from miaudit._io import ensure_writable_dir, write_text_atomic

        folder = ensure_writable_dir(Path(out))
        write_text_atomic(folder / DP_AUDIT_FILE, result.to_json())


def _check_multi_run_design(design: DpAuditDesign) -> None:
    """InputError for what one-run designs have and multi-run mode does not."""
    if design.curve:
        raise InputError("--curve", "the whole-curve test is for one-run mode, not --multi-run")
    if design.canary_kind not in (None, "gradient") or design.canaries is not None:
        raise InputError("--multi-run", "multi-run mode plants one gradient canary per run")
    if design.reference_runs:
        raise InputError("reference_runs", "calibrates one-run black-box canaries, not --multi-run")


def _multi_run_audit(
    cfg: AuditConfig,
    data: Dataset,
    design: DpAuditDesign,
    seed: int,
    say: Callable[[str], None],
) -> DpAuditResult:
    """Multi-run mode (:mod:`miaudit.audit._dp_multirun`): R runs, one gradient canary each."""
    recipe = check_multi_run_recipe(cfg.model, design.runs)
    _check_multi_run_design(design)
    design = design.model_copy(update={"canary_kind": "gradient", "canaries": 1})
    perm = np.random.default_rng(np.random.SeedSequence([seed, 41])).permutation(data.n_records)
    base_n = design.base_count(data.n_records)
    _check_claim(recipe, design, data.n_records)
    split = (np.sort(perm[:base_n]), np.sort(perm[base_n:]))
    threads = cfg.engine.threads
    mr, bound, p, privacy, acc = multi_run_test(
        recipe, data, design.runs, design.significance, split, seed, threads, say
    )
    design = design.model_copy(update={"k_plus": 1, "k_minus": 0})
    claim = privacy.epsilon
    result = DpAuditResult(
        schema_version=DP_AUDIT_SCHEMA_MULTI_RUN,
        claimed_epsilon=claim,
        delta=privacy.delta,
        accountant=privacy.accountant,
        method="multi-run: one Dirac gradient canary per run, Clopper–Pearson over runs "
        "(Jagielski et al. 2020; Nasr et al. 2021), one direction fixed in advance",
        empirical_epsilon_lower_bound=bound,
        significance=design.significance,
        max_certifiable_epsilon=mr.ceiling,
        verdict=verdict(claim, p, design.significance, mr.ceiling),
        design=design,
        m=design.runs,
        r=design.runs,
        v=mr.true_positives + mr.runs_out - mr.false_positives,
        recipe=recipe,
        dataset=data.name,
        seed=seed,
        test_accuracy=[float(np.mean(acc))],
        privacy=[privacy],
        notes=[
            "Multi-run mode: each run trains the recipe with one Dirac gradient canary (included by its own coin), "
            "many runs at once (per-sample gradients by torch.func); σ found and ε recorded by Opacus's accountant.",
            "Test accuracy: the mean over the runs.",
            _CANARY_SIGHT["gradient"],
            *_fault_notes("gradient", [privacy]),
        ],
        p_value=p,
        guess_rule=mr.threshold_rule,
        score="per-step likelihood ratio of the canary's coordinate, the other records' clipped sum removed",
        multi_run=mr,
    )
    say(result.summary())
    return result
