"""``miaudit tradeoff``: one recipe, several controls, each measured by the same audit.

Training-time variants (DP-SGD at several ε, a weight-decay grid, early stopping) are audit
configs that differ only in ``[model]``; each is run by :func:`~miaudit.audit.audit` itself
(same plan seed, so the same (target, record) pairs in every variant: paired comparisons are
possible). Serving-time variants (output policies) reuse the baseline's trained models (the
cache verifies and reuses them) and attack each target through a
:class:`~miaudit.attacks.LocalOracle` under the policy: threshold attacks on what the policy
exposes, and under label-only the query attacks too (gap, noise robustness for tabular data,
augmentation robustness for images), docs/method.md §5.

Per variant: test accuracy, train–test gap, the strongest attack's AUC and TPR at 1 % FPR with
record-resampling intervals, and the ε the accountant recorded (the largest over the models).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from miaudit._io import cleans_output_dir, ensure_private_dir
from miaudit.audit._config import AuditConfig, load_audit_config
from miaudit.audit._dp_audit import DpAuditResult
from miaudit.audit._judgeable import why_not_judged
from miaudit.audit._results import AuditResult, PrivacySpent, Utility
from miaudit.audit._tradeoff_result import (
    TPR1,
    TRADEOFF_FILE,
    TRADEOFF_SCHEMA,
    AttackFigures,
    RobustnessComparison,
    TradeoffComparison,
    TradeoffResult,
    VariantComparison,
    VariantOutcome,
    fault_words,
)
from miaudit.data import SignalsStore
from miaudit.errors import InputError
from miaudit.metrics import Estimate, Evaluation, evaluate, grouped_mean

if TYPE_CHECKING:  # imported where a variant runs, not with this module
    from miaudit.attacks import LocalOracle, QueryAttackResult
    from miaudit.audit._reference_audit import AuditRun
    from miaudit.datasets import Dataset
    from miaudit.engine import TrainRun

__all__ = [
    "TRADEOFF_FILE",
    "TRADEOFF_SCHEMA",
    "AttackFigures",
    "RobustnessComparison",
    "TradeoffComparison",
    "TradeoffResult",
    "VariantComparison",
    "VariantOutcome",
    "VariantSpec",
    "default_variants",
    "dp_audit_variant",
    "model_predictor",
    "paired_accuracy_loss",
    "recommendation",
    "risk_detected",
    "signed_difference",
    "tradeoff",
    "with_recommendations",
]

DEFAULT_EPSILONS = (8.0, 4.0, 1.0)
DEFAULT_WEIGHT_DECAYS = (1e-3, 1e-2)
DEFAULT_POLICIES = ("top-1", "round:1", "label-only")
#: The baseline's description, for a recipe without DP (``_described`` says what a DP one runs).
BASELINE_DESCRIPTION = "the recipe as given (no DP: ε = ∞), full outputs"


@dataclass(frozen=True)
class VariantSpec:
    """One variant: a change of recipe (``model``: fields to override) or an output policy."""

    name: str
    description: str
    model: dict[str, Any] = field(default_factory=dict)
    policy: str | None = None


def _check_variant_options(
    epsilons: Sequence[float],
    weight_decays: Sequence[float],
    policies: Sequence[str],
    delta: float,
    accountant: str,
) -> None:
    """InputError naming the option, before any training."""
    from miaudit.defenses import parse_policy

    for e in epsilons:
        if not (math.isfinite(e) and e > 0):
            raise InputError("--epsilons", f"each ε must be a finite number > 0, got {e!r}")
    for w in weight_decays:
        if not (math.isfinite(w) and w >= 0):
            raise InputError(
                "--weight-decays", f"each weight decay must be a finite number ≥ 0, got {w!r}"
            )
    for p in policies:
        parse_policy(p, field="--policies")
    if not (math.isfinite(delta) and 0 < delta < 1):
        raise InputError("--delta", f"must lie in (0, 1), got {delta!r}")
    if accountant not in ("prv", "rdp"):
        raise InputError("--accountant", f"must be 'prv' or 'rdp', got {accountant!r}")


def default_variants(
    epsilons: Sequence[float] = DEFAULT_EPSILONS,
    weight_decays: Sequence[float] = DEFAULT_WEIGHT_DECAYS,
    early_stopping: bool = True,
    policies: Sequence[str] = DEFAULT_POLICIES,
    *,
    delta: float = 1e-5,
    accountant: str = "prv",
    ghost_clipping: bool = True,
) -> list[VariantSpec]:
    """Baseline (ε = ∞) first, then DP at each ε, weight decay, early stopping, each policy.

    Every value is checked here, before any training: InputError names the option.
    """
    _check_variant_options(epsilons, weight_decays, policies, delta, accountant)
    dp = {"delta": delta, "accountant": accountant, "ghost_clipping": ghost_clipping}
    out = [VariantSpec("baseline", BASELINE_DESCRIPTION)]
    out += [
        VariantSpec(
            f"dp-eps{e:g}",
            f"DP-SGD, target ε = {e:g}, δ = {delta:g} ({accountant})",
            {"dp": {"epsilon": float(e), **dp}},
        )
        for e in epsilons
    ]
    out += [
        VariantSpec(f"wd{w:g}", f"L2 weight decay {w:g}", {"weight_decay": float(w)})
        for w in weight_decays
    ]
    if early_stopping:
        out.append(
            VariantSpec(
                "early-stopping",
                "early stopping on 10 % of each model's own training half",
                {"early_stopping": {}},
            )
        )
    out += [
        VariantSpec(
            f"policy-{p.replace(':', '')}", f"output policy {p} on the baseline's models", policy=p
        )
        for p in policies
    ]
    return out


# --- the recommendation rule (docs/defenses.md) ----------------------------------------------------

#: Default largest accuracy loss (upper end of its interval) a recommended control may cost.
DEFAULT_ACCURACY_TOLERANCE = 0.01


def signed_difference(e: Estimate, unit: str = "") -> str:
    """A paired difference with its interval, to as many decimals (3 to 6) as it takes for each
    end to show on which side of 0 it lies (red team: "+0.001 [+0.000, +0.001]" for an
    interval [+0.0002, +0.0011] that excludes 0)."""
    d = max((_decimals(v) for v in (e.point, e.lower, e.upper) if v is not None), default=3)
    text = "n/m" if e.point is None else f"{e.point:+.{d}f}{unit}"
    if e.lower is not None and e.upper is not None:
        text += f" [{e.lower:+.{d}f}, {e.upper:+.{d}f}]"
    return text


# Long: one verdict per branch of the documented rule (docs/defenses.md), each with its reason.
def recommendation(
    v: VariantOutcome,
    *,
    tolerance: float = DEFAULT_ACCURACY_TOLERANCE,
    majority: float | None = None,
    baseline_detected: bool | None = None,
    baseline_unjudged: str | None = None,
) -> tuple[str, str]:
    """(verdict, reason) for one variant. A control is *recommended* when the baseline's audit
    detects a risk (``baseline_detected``; None: not known, not required) and can be judged at
    all (``baseline_unjudged``: why not, :func:`why_not_judged`), its paired risk
    reduction's lower bound holding together over the judged variants (``risk_reduction_lower``;
    the 95 % interval's lower end where absent) lies above 0, and its paired accuracy loss's
    interval ends within ``tolerance``; a model not shown more accurate than always answering the
    majority class on the same test records (``majority_margin``'s interval; files without it:
    its test accuracy's interval against the rate ``majority``) is *flagged* (it is not shown to
    predict anything, so its low attack success means nothing) and never recommended; a baseline
    that is says so."""
    predicts_nothing = _predicts_nothing(v, majority)
    if v.baseline:
        if predicts_nothing:
            return (
                "baseline",
                f"the recipe as given; its {predicts_nothing}, so every comparison with it says little",
            )
        return "baseline", "the recipe as given"
    if predicts_nothing:
        return "flagged", f"{predicts_nothing}, so its low attack success is no protection"
    r, a = v.risk_reduction, v.accuracy_loss
    if r is None or r.lower is None or r.point is None:
        return "not recommended", "no paired risk reduction could be measured"
    measured = f"risk reduction {signed_difference(r, ' AUC')}"
    if baseline_unjudged is not None:
        return (
            "not recommended",
            f"{measured}, but the baseline's audit cannot be judged ({baseline_unjudged}): "
            "there is no measured risk for a control to reduce",
        )
    if baseline_detected is False:
        return (
            "not recommended",
            f"{measured}, but the baseline's audit detects no membership risk (no attack's lower "
            "bound above chance): there is no detected risk for a control to reduce",
        )
    lower, together = r.lower, ""
    if v.risk_reduction_lower is not None and v.judged is not None and v.judged > 1:
        lower = v.risk_reduction_lower
        together = f"; lower bound {lower:+.{_decimals(lower)}f} holding together over the {v.judged} variants (Bonferroni)"
    if lower <= 0:
        return (
            "not recommended",
            f"{measured}{together}: it does not lie above 0",
        )
    if a is None or a.upper is None or a.point is None:
        return "not recommended", "no paired accuracy loss could be measured"
    if a.upper > tolerance:
        return (
            "not recommended",
            f"accuracy loss {a.point * 100:+.1f} points, up to {a.upper * 100:.1f} (interval end), beyond the tolerance of {tolerance * 100:g}",
        )
    if a.upper < 0:  # more accurate than the baseline beyond noise: say so, not "loss ≤ 0.0"
        accuracy = f"accuracy gain of at least {-a.upper * 100:.1f} points"
    else:
        accuracy = f"accuracy loss at most {a.upper * 100:.1f} points"
    return (
        "recommended",
        f"{measured}{together}; {accuracy} (tolerance {tolerance * 100:g})",
    )


def _predicts_nothing(v: VariantOutcome, majority: float | None) -> str:
    """Why ``v`` is not shown to predict better than always answering the majority class, or "".

    Decided on the paired margin where the variant has one (``majority_margin``: each test
    pair's correctness minus whether its label is the majority class, resampling records): the
    two rates move together over resamples, so comparing the accuracy's own interval with the
    rate as a constant flagged 41 % of models the paired interval shows better (red team). Files
    without it fall back to that comparison (its lower end at or below the rate; a point 0.2
    points under it on 2,400 pairs was flagged while the same models as the baseline were not)."""
    m = v.majority_margin
    if m is not None and m.point is not None and m.lower is not None and m.upper is not None:
        shown = (
            f"test accuracy {v.test_accuracy:.1%}, {signed_difference(m)} against always "
            "answering the majority class on the same test records (paired)"
        )
        sign = v.majority_sign_p
        if m.lower > 1e-12 and (sign is None or sign <= SIGN_LEVEL):
            return ""
        if m.lower > 1e-12:  # few records differ: the interval is not read, the exact test is
            return (
                f"{shown}, but on fewer than {SIGN_TEST_BELOW} records do the two answers differ, "
                f"too few for the interval; an exact sign test over them gives p = {sign:.3g}: "
                "not distinguishable from always answering the majority class"
            )
        if m.upper < -1e-12:
            return f"{shown}: worse than always answering the majority class"
        return f"{shown}: not distinguishable from always answering the majority class"
    if majority is None:
        return ""
    acc = v.test_accuracy_interval
    if acc is None or acc.lower is None or acc.upper is None:  # no interval: the point decides
        if v.test_accuracy > majority + 1e-12:
            return ""
        return f"test accuracy {v.test_accuracy:.1%} is at or below the majority-class rate {majority:.1%}: the model predicts nothing"
    if acc.lower > majority + 1e-12:
        return ""
    shown = f"test accuracy {v.test_accuracy:.1%} [{acc.lower:.1%}, {acc.upper:.1%}]"
    if acc.upper < majority - 1e-12:
        return f"{shown} lies below the majority-class rate {majority:.1%}: worse than always answering the majority class"
    return f"{shown} does not lie above the majority-class rate {majority:.1%}: not distinguishable from always answering the majority class"


def _decimals(v: float) -> int:
    """Decimals (3 to 6) that show on which side of 0 ``v`` lies."""
    d = 3
    while d < 6 and v != 0 and round(v, d) == 0:
        d += 1
    return d


def with_recommendations(
    variants: Sequence[VariantOutcome],
    *,
    tolerance: float,
    majority: float | None,
    baseline_detected: bool | None = None,
    baseline_unjudged: str | None = None,
) -> list[VariantOutcome]:
    """Every variant with its verdict; among the recommended, the largest risk reduction is
    "best" when its interval lies above every other recommended control's, else "best (not
    distinguishable from X)", X the one reaching highest: the point values of overlapping
    intervals do not rank controls."""
    judged = []
    for v in variants:
        verdict, reason = recommendation(
            v,
            tolerance=tolerance,
            majority=majority,
            baseline_detected=baseline_detected,
            baseline_unjudged=baseline_unjudged,
        )
        judged.append(v.model_copy(update={"recommendation": verdict, "reason": reason}))
    picked = sorted(
        (v for v in judged if v.recommendation == "recommended"),
        key=lambda v: v.risk_reduction.point or 0.0 if v.risk_reduction else 0.0,
        reverse=True,
    )
    if not picked:
        return judged
    best, label = picked[0], "best"
    if len(picked) > 1:
        # apart from every other recommended control, not only the runner-up by point: a wide
        # interval with a lower point can reach above the leader's (red team)
        def reach(v: VariantOutcome) -> float:
            r = v.risk_reduction
            return math.inf if r is None or r.upper is None else r.upper

        rival = max(picked[1:], key=reach)
        b = best.risk_reduction
        lo = b.lower if b is not None else None
        if lo is None or lo <= reach(rival):
            label = f"best (not distinguishable from {rival.name})"
    return [v.model_copy(update={"recommendation": label}) if v is best else v for v in judged]


def paired_accuracy_loss(
    c0: np.ndarray,
    c1: np.ndarray,
    groups: np.ndarray,
    *,
    n_resamples: int,
    confidence: float,
    rng: np.random.Generator,
) -> Estimate:
    """mean(c0) − mean(c1) over the same test pairs, with a percentile interval resampling
    records (all pairs of one record together), as every other interval here."""
    return grouped_mean(
        np.asarray(c0, dtype=np.float64) - np.asarray(c1, dtype=np.float64),
        groups,
        n_resamples=n_resamples,
        confidence=confidence,
        rng=rng,
    )


def risk_detected(result: AuditResult) -> bool:
    """Whether an audit detects membership risk as the report's verdict does (docs/method.md
    §7): some attack's AUC lower bound above 0.5 or TPR at 1 % FPR lower bound above 1 %, the
    bounds holding together over its attacks where results have them."""
    family = result.family
    for a in result.attacks:
        auc, tpr = a.verdict_lowers(family.lower.get(a.name, {}) if family is not None else None)
        if (auc is not None and auc > 0.5) or (tpr is not None and tpr > 0.01):
            return True
    return False


def _test_pairs(store: SignalsStore) -> TestPairs:
    """Whether each model labels each record right, and which (model, record) pairs are test
    pairs (pool records the model did not train on)."""
    logits = np.asarray(store.logits)
    if logits.ndim == 4:  # several queries per record: the un-augmented one
        logits = logits[:, :, 0]
    correct = logits.argmax(-1) == np.asarray(store.label)[None, :]
    test = (~np.asarray(store.keep, dtype=bool)) & (~np.asarray(store.population, dtype=bool))[
        None, :
    ]
    return TestPairs(correct, test, np.asarray(store.label).astype(np.int64))


def _majority(store: SignalsStore) -> tuple[int, float]:
    """The most frequent label among the pool's records, and its share of them."""
    label = np.asarray(store.label)[~np.asarray(store.population, dtype=bool)].astype(np.int64)
    counts = np.bincount(label) if label.size else np.zeros(1, dtype=np.int64)
    return int(counts.argmax()), float(counts.max() / max(label.size, 1))


#: Below this many records on which a model and the majority answer differ, the margin's
#: bootstrap interval is not read (4 such records, all won, put its lower end above 0 while an
#: exact test gives p = 1/16: red team); an exact sign test over them decides, one-sided at
#: :data:`SIGN_LEVEL`.
SIGN_TEST_BELOW = 30
SIGN_LEVEL = 0.025


def majority_sign_p(
    correct: np.ndarray, label: np.ndarray, groups: np.ndarray, majority_class: int
) -> float | None:
    """One-sided exact sign test that the model beats always answering ``majority_class``,
    over the records (``groups``) on which their answers' correctness differs (each record's
    pairs summed); None when there are :data:`SIGN_TEST_BELOW` such records or more, where
    the margin's interval is read instead."""
    from scipy.stats import binom

    d = np.asarray(correct, dtype=np.float64) - (np.asarray(label) == majority_class)
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    per_record = np.bincount(g, weights=d)
    wins, losses = int((per_record > 0).sum()), int((per_record < 0).sum())
    if wins + losses >= SIGN_TEST_BELOW:
        return None
    return float(binom.sf(wins - 1, wins + losses, 0.5)) if wins else 1.0


def majority_margin(
    correct: np.ndarray,
    label: np.ndarray,
    groups: np.ndarray,
    majority_class: int,
    *,
    n_resamples: int,
    confidence: float,
    rng: np.random.Generator,
) -> Estimate:
    """Test accuracy minus the accuracy of always answering ``majority_class``, on the same test
    pairs (``correct`` and ``label`` per pair), with a percentile interval resampling the
    records in ``groups``: paired, as the accuracy loss is."""
    return grouped_mean(
        np.asarray(correct, dtype=np.float64)
        - (np.asarray(label) == majority_class).astype(np.float64),
        groups,
        n_resamples=n_resamples,
        confidence=confidence,
        rng=rng,
    )


# --- running a trained model again (the policy variants' oracle) ----------------------------------


def model_predictor(
    run: TrainRun, model: int, data: Dataset | None = None
) -> Callable[[np.ndarray], np.ndarray]:
    """``predict_proba`` of model ``model`` of an engine run, on raw records (n, d).

    Torch units: the engine's own network code on the saved stacked weights (safetensors);
    scikit-learn units: the skops file. The model's preprocessing is applied first. ``data``:
    the run's dataset when already loaded (else it is loaded from the run's config).
    """
    from miaudit.models import (
        PythonRecipe,
        SklearnRecipe,
        TorchModuleRecipe,
        build_net,
        load_sklearn,
        load_torch_state,
        saved_module,
    )

    folder, pos = run.model_location(model)
    recipe = run.config.model
    if isinstance(recipe, PythonRecipe):
        raise InputError(
            "model.kind",
            "a 'python' recipe keeps its models' outputs, not the models: a policy that queries a model again needs another kind",
        )
    if isinstance(recipe, SklearnRecipe):
        pre = load_torch_state(folder / "preprocess.safetensors")
        scale, shift = pre["preprocess.scale"][pos].numpy(), pre["preprocess.shift"][pos].numpy()
        est = load_sklearn(folder / f"model_{model}.skops")
        return lambda x: np.asarray(
            est.predict_proba((np.asarray(x, dtype=np.float64) * scale + shift).astype(np.float32)),
            dtype=np.float64,
        )
    import torch

    from miaudit.datasets import load_dataset

    state = load_torch_state(folder / "weights.safetensors")
    data = data if data is not None else load_dataset(run.config.data)
    tscale = state["preprocess.scale"][pos].float()
    tshift = state["preprocess.shift"][pos].float()
    if isinstance(recipe, TorchModuleRecipe):
        module = saved_module(
            recipe, state, pos, data.n_features, data.n_classes, trust_code=run.config.trust_code
        )
        forward: Callable[[torch.Tensor], torch.Tensor] = module
    else:
        net = build_net(recipe, data, [torch.Generator().manual_seed(0)])
        net.load({n: state[n][pos : pos + 1] for n in net.names})

        def forward(xt: torch.Tensor) -> torch.Tensor:
            return net.forward(xt[None])[0]

    @torch.no_grad()
    def predict(x: np.ndarray) -> np.ndarray:
        xt = torch.as_tensor(np.asarray(x, dtype=np.float32)).reshape(len(x), -1) * tscale + tshift
        return np.asarray(torch.softmax(forward(xt), dim=-1).double().numpy())

    return predict


# --- what each variant's audit leaves for the comparisons -----------------------------------------


@dataclass(frozen=True)
class TestPairs:
    """(models × records): whether each model labels each record right; which pairs are test pairs."""

    correct: np.ndarray
    test: np.ndarray
    label: np.ndarray  # (records,)


@dataclass(frozen=True)
class StrongestPairs:
    """A training variant's strongest attack on its (target, record) pairs: scores, membership,
    and a key per pair (target · 2³² + record index) that orders the pairs alike in every variant."""

    scores: np.ndarray
    member: np.ndarray
    key: np.ndarray


@dataclass(frozen=True)
class PolicyScores:
    """Attacks through an oracle under one policy, pooled over the targets: pair scores per
    attack, membership, record of each pair, queries per attack, whether each answer's label is
    right."""

    pooled: dict[str, np.ndarray]
    member: np.ndarray
    groups: np.ndarray
    queries: dict[str, int]
    correct: np.ndarray


def _strongest_pairs(audit_run: AuditRun, strongest: str) -> StrongestPairs:
    """The pairs of ``strongest`` as the audit scored them (what scores.parquet holds)."""
    pairs = audit_run.pairs
    per_target = pairs.member.size // max(1, pairs.targets.size)
    target = np.repeat(pairs.targets, per_target).astype(np.int64)
    return StrongestPairs(
        np.asarray(pairs.scores[strongest]),
        np.asarray(pairs.member).astype(np.int8),
        target * (1 << 32) + _record_index(audit_run.train.signals, pairs.record_id),
    )


def _record_index(store: SignalsStore, record_id: np.ndarray) -> np.ndarray:
    index = {str(r): i for i, r in enumerate(store.record_id.tolist())}
    return np.asarray([index[str(r)] for r in np.asarray(record_id).tolist()], dtype=np.int64)


def _privacy(store: SignalsStore) -> list[PrivacySpent]:
    """What DP-SGD spent on each of the store's models (none when not DP-trained)."""
    return [PrivacySpent.model_validate(p) for p in store.info.privacy]


def _mechanism(privacy: Sequence[PrivacySpent]) -> dict[str, Any]:
    """σ, sampling rate and steps of the model that spent the most (what a DP audit of the
    recipe is compared with: its own runs train on another number of records)."""
    if not privacy:
        return {}
    top = max(privacy, key=lambda p: p.epsilon)
    return {
        "noise_multiplier": top.noise_multiplier,
        "sample_rate": top.sample_rate,
        "steps": top.steps,
    }


def _fault(privacy: Sequence[PrivacySpent]) -> str | None:
    """The DP fault injection the models trained with (None: none): their ε is then void, and
    every output that states it must say so (red team: a zero-noise recipe's "ε = 2.00" went
    unmarked into tradeoff.json, the table and the report)."""
    faults = sorted({p.fault_injection for p in privacy} - {"none"})
    return ", ".join(faults) or None


def _utility(result: AuditResult) -> Utility:
    if result.utility is None:  # a reference audit always measures it
        raise RuntimeError("the variant's audit measured no accuracy")
    return result.utility


def _figures(ev: Evaluation, name: str, queries: dict[str, int]) -> AttackFigures:
    return AttackFigures(
        auc=ev.estimate(name, "auc"),
        tpr_at_1pct_fpr=ev.estimate(name, TPR1),
        queries_per_record=queries.get(name),
    )


# --- the variants ----------------------------------------------------------------------------------


def _query_attack(
    oracle: LocalOracle,
    x: np.ndarray,
    y: np.ndarray,
    cfg: AuditConfig,
    data: Dataset,
    store: SignalsStore,
    *,
    noise_sigma: float,
    draws: int,
    rng: np.random.Generator,
) -> QueryAttackResult:
    """Label-only's robustness attack: augmentations for images, noise on numeric columns (in
    units of their spread over the population; one-hot columns stay fixed) for tabular data."""
    from miaudit.attacks import QueryInputs, recipe_augmentations, score_queries
    from miaudit.models import training_augmentations

    if data.image_shape is not None:
        names = training_augmentations(cfg.model)
        aug = recipe_augmentations(data.image_shape, names or ["shift"])
        return score_queries(
            "augmentation_robustness", QueryInputs(oracle, x, y, augmentations=aug)
        )
    scale = np.zeros(data.n_features)
    cols = np.setdiff1d(np.arange(data.n_features), data.onehot)
    scale[cols] = data.features[np.flatnonzero(store.population)][:, cols].std(axis=0)
    if not np.any(scale > 0):
        scale[:] = 1.0
    return score_queries(
        "noise_robustness",
        QueryInputs(oracle, x, y, rng=rng, scale=scale, sigma=noise_sigma, budget=draws),
    )


def _policy_scores(
    cfg: AuditConfig,
    run: TrainRun,
    policy: str,
    *,
    targets: int,
    noise_sigma: float,
    draws: int,
    seed: int,
) -> PolicyScores:
    """Attack ``targets`` models of ``run`` through a LocalOracle under ``policy``: threshold
    attacks on what it exposes, and under label-only the gap and a robustness attack."""
    from miaudit.attacks import LocalOracle, exposed_threshold_scores, gap_query_attack
    from miaudit.datasets import load_dataset
    from miaudit.defenses import parse_policy

    pol = parse_policy(policy, field="policies")
    data = load_dataset(cfg.data)
    store = run.signals
    records = np.flatnonzero(~store.population)
    x, y = data.features[records], np.asarray(data.label)[records].astype(np.int64)
    label_only = str(pol) == "label-only"
    per: dict[str, list[np.ndarray]] = {}
    queries: dict[str, int] = {}
    member, correct = [], []
    n = min(targets, store.n_models)
    for t, child in zip(range(n), np.random.SeedSequence([seed, 7]).spawn(n), strict=True):
        oracle = LocalOracle(model_predictor(run, t, data), pol, rng=np.random.default_rng(child))
        exposed = oracle.query(x)
        scores = exposed_threshold_scores(exposed, y)
        if label_only:
            scores["gap"], queries["gap"] = gap_query_attack(oracle, x, y).scores, 1
            r = _query_attack(
                oracle,
                x,
                y,
                cfg,
                data,
                store,
                noise_sigma=noise_sigma,
                draws=draws,
                rng=np.random.default_rng(child.spawn(1)[0]),
            )
            scores[r.attack], queries[r.attack] = r.scores, int(r.queries[0])
        for name, s in scores.items():
            per.setdefault(name, []).append(np.asarray(s, dtype=np.float64))
        member.append(store.keep[t, records])
        correct.append(exposed.labels == y)
    return PolicyScores(
        {k: np.concatenate(v) for k, v in per.items()},
        np.concatenate(member).astype(np.int8),
        np.tile(records, len(member)),
        queries,
        np.concatenate(correct),
    )


@dataclass(frozen=True)
class _Settings:
    """The options every variant is run with."""

    cfg: AuditConfig
    out: Path
    policy_targets: int
    noise_sigma: float
    noise_draws: int
    n_records: int


def _settings(
    cfg: AuditConfig,
    out: Path,
    accuracy_tolerance: float,
    policy_targets: int,
    noise_sigma: float,
    noise_draws: int,
) -> _Settings:
    """The options checked, the output folder made and every variant's shared model cache set
    (``<out>/models`` unless the config names one); a bad config is refused here, before the
    first variant trains."""
    from miaudit.engine import check_before_training

    out_dir = ensure_private_dir(out)
    cache = cfg.engine.cache or out_dir / "models"
    base_cfg = cfg.model_copy(update={"engine": cfg.engine.model_copy(update={"cache": cache})})
    if not 0 <= accuracy_tolerance < 1:
        raise InputError(
            "accuracy_tolerance", f"must be a fraction in [0, 1), got {accuracy_tolerance}"
        )
    data = check_before_training(base_cfg.train_config())
    return _Settings(base_cfg, out_dir, policy_targets, noise_sigma, noise_draws, data.n_records)


def _checked_specs(variants: Sequence[VariantSpec] | None) -> list[VariantSpec]:
    specs = list(variants) if variants is not None else default_variants()
    if not specs or specs[0].policy is not None or specs[0].model:
        raise InputError(
            "variants", "the first variant must be the baseline (no recipe change, no policy)"
        )
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise InputError("variants", "variant names must be unique")
    return specs


def _dp_words(dp: Any) -> str:
    """A recipe's DP-SGD setting in a few words (its target ε, or its σ)."""
    budget = (
        f"target ε = {dp.epsilon:g}" if dp.epsilon is not None else f"σ = {dp.noise_multiplier:g}"
    )
    fault = f", FAULT INJECTION {dp.fault}" if dp.fault != "none" else ""
    return f"DP-SGD, {budget}, δ = {dp.delta:g} ({dp.accountant}{fault})"


def _described(specs: list[VariantSpec], cfg: AuditConfig) -> list[VariantSpec]:
    """The variants described as what they train when the recipe is itself DP-SGD (red team: a
    DP baseline was described "no DP: ε = ∞" and its weight-decay rows hid that they keep it)."""
    dp = getattr(cfg.model, "dp", None)
    if dp is None:
        return specs
    own = _dp_words(dp)
    out = []
    for spec in specs:
        if spec is specs[0] and spec.description == BASELINE_DESCRIPTION:
            text = f"the recipe as given ({own}), full outputs"
        elif spec.policy is not None:
            text = f"{spec.description} (the recipe's {own}: the baseline's ε)"
        elif "dp" in spec.model:
            text = f"{spec.description}, replacing the recipe's {own}"
        elif spec is not specs[0]:
            text = f"{spec.description}, keeping the recipe's {own}"
        else:
            text = spec.description
        out.append(dataclasses.replace(spec, description=text))
    return out


def _resolved(recipe: Any) -> dict[str, Any]:
    """A recipe's fields, its preprocessing by what it is fitted on (a DP recipe's default)."""
    raw = dict(recipe.model_dump(mode="json"))
    if hasattr(recipe, "preprocessing_fit"):
        raw["preprocessing"] = recipe.preprocessing_fit
    return raw


def _without_dp(recipe: Any) -> dict[str, Any]:
    """A recipe's fields but DP-SGD and what it decides (DP fits preprocessing on the population)."""
    return {k: v for k, v in _resolved(recipe).items() if k not in ("dp", "preprocessing")}


def dp_audit_variant(
    cfg: AuditConfig, specs: Sequence[VariantSpec], audited: DpAuditResult
) -> str | None:
    """The training variant whose recipe ``audited`` (a dp_audit.json) is of: the same dataset
    and the same recipe, DP settings included (None: the same dataset and recipe but none of the
    variants' DP settings). InputError naming ``--dp-audit`` when its dataset or its recipe, DP
    aside, is not the trade-off's (red team: an audit of another recipe put "claimed ε = 2;
    audit PASSED" in a non-DP baseline's verdict)."""
    data = cfg.data.dataset or (cfg.data.path.name if cfg.data.path is not None else None)
    if audited.dataset != data:
        raise InputError(
            "--dp-audit",
            f"audits a recipe on dataset {audited.dataset!r}, not this trade-off's {data!r}",
        )
    if _without_dp(audited.recipe) != _without_dp(cfg.model):
        differ = sorted(
            k for k, v in _without_dp(audited.recipe).items() if _without_dp(cfg.model).get(k) != v
        )
        raise InputError(
            "--dp-audit",
            f"audits another recipe than this trade-off's (model fields {', '.join(differ) or 'kind'} differ, DP settings aside)",
        )
    for spec in specs:
        if spec.policy is None and _resolved(_variant_config(spec, cfg).model) == _resolved(
            audited.recipe
        ):
            return spec.name
    return None


def _variant_config(spec: VariantSpec, base_cfg: AuditConfig) -> AuditConfig:
    """The audit config of a training variant: the base recipe with ``spec.model``'s fields."""
    from miaudit.models import parse_recipe

    raw = {**base_cfg.model.model_dump(mode="json"), **spec.model}
    return base_cfg.model_copy(update={"model": parse_recipe(raw, field=f"variants.{spec.name}")})


#: The option that asks for each kind of training variant (the field it sets in the recipe).
_OPTION_OF = {
    "dp": "--epsilons",
    "weight_decay": "--weight-decays",
    "early_stopping": "--early-stopping",
}
_NONE_OF = {
    "dp": "--epsilons ''",
    "weight_decay": "--weight-decays ''",
    "early_stopping": "--no-early-stopping",
}


def _check_applicable(specs: Sequence[VariantSpec], cfg: AuditConfig) -> None:
    """Every training variant's change is one the recipe has, before anything trains; else an
    InputError naming the option that asked for it (red team: the default trade-off of a
    scikit-learn recipe said "variants.dp-eps8.dp: unknown field", a field nobody wrote)."""
    from miaudit.models import CNNRecipe, MLPRecipe

    for spec in specs:
        changed = [k for k in spec.model if k in _OPTION_OF]
        if spec.policy is not None or not changed:
            continue
        key = changed[0]
        dp_kinds = isinstance(cfg.model, (MLPRecipe, CNNRecipe))
        if key in type(cfg.model).model_fields and (key != "dp" or dp_kinds):
            continue  # a field the recipe trains with: its own errors stand
        try:
            _variant_config(spec, cfg)
        except InputError:
            what = "DP-SGD" if key == "dp" else key.replace("_", " ")
            needs = "a torch-mlp or torch-cnn recipe" if key == "dp" else "a recipe with that field"
            raise InputError(
                _OPTION_OF[key],
                f"{what} variants need {needs} (this one is {cfg.model.kind}); "
                f"pass {_NONE_OF[key]} to compare the other controls",
            ) from None


def _check_dp_variants(specs: Sequence[VariantSpec], s: _Settings) -> None:
    """Every DP training variant's claim checked against its plan before anything trains: δ
    below 1/n and σ found for its target ε (a bad --epsilons or --delta refused up front, not
    after the baseline has trained). A variant that sets ``dp`` is named by the options
    (``--epsilons``, ``--delta``); the config's own ``dp`` by its fields."""
    from miaudit.engine import check_dp_plan, make_plan

    for spec in specs:
        if spec.policy is not None:
            continue
        tcfg = _variant_config(spec, s.cfg).train_config()
        given = "dp" in spec.model
        try:
            check_dp_plan(
                tcfg,
                make_plan(tcfg, s.n_records),
                epsilon_field="--epsilons" if given else "model.dp.epsilon",
                delta_field="--delta" if given else "model.dp.delta",
            )
        except InputError as exc:
            raise InputError(exc.field, f"variant {spec.name}: {exc.problem}") from None


def _training_variant(
    spec: VariantSpec, base_cfg: AuditConfig, folder: Path, *, baseline: bool
) -> tuple[VariantOutcome, AuditRun]:
    """Audit the recipe changed as ``spec`` says (its models trained, or verified in the cache)."""
    from miaudit.audit._reference_audit import run_audit

    audit_run = run_audit(_variant_config(spec, base_cfg), folder, overwrite=True, quiet=True)
    res, privacy = audit_run.result, _privacy(audit_run.train.signals)
    strongest = max(res.attacks, key=lambda a: a.auc.point or 0.0)
    utility = _utility(res)
    outcome = VariantOutcome(
        name=spec.name,
        description=spec.description,
        test_accuracy=utility.test_accuracy,
        test_accuracy_interval=utility.test_accuracy_interval,
        train_accuracy=utility.train_accuracy,
        generalization_gap=utility.generalization_gap,
        strongest_attack=strongest.name,
        auc=strongest.auc,
        tpr_at_1pct_fpr=strongest.metric(TPR1),
        epsilon=max(p.epsilon for p in privacy) if privacy else None,
        delta=privacy[0].delta if privacy else None,
        accountant=privacy[0].accountant if privacy else None,
        policy=None,
        attacks={
            a.name: AttackFigures(auc=a.auc, tpr_at_1pct_fpr=a.metric(TPR1)) for a in res.attacks
        },
        folder=f"variants/{folder.name}",
        baseline=baseline,
        fault_injection=_fault(privacy),
        **_mechanism(privacy),
    )
    return outcome, audit_run


# Long: one record assembled field by field (20 fields, the baseline's privacy inherited).
def _policy_variant(
    spec: VariantSpec,
    baseline: AuditRun,
    s: _Settings,
    full: PolicyScores,
    rng: np.random.Generator,
    base: VariantOutcome,
    judged: int,
) -> tuple[VariantOutcome, list[RobustnessComparison]]:
    """The baseline's models attacked under ``spec.policy``, compared with the strongest of the
    same attacks on the same models' full outputs (``full``). The models are the baseline's, so
    is what DP-SGD spent on them (``base``: a DP baseline's policy rows said ε = ∞)."""
    assert spec.policy is not None
    cfg = s.cfg
    p = _policy_scores(
        cfg,
        baseline.train,
        spec.policy,
        targets=s.policy_targets,
        noise_sigma=s.noise_sigma,
        draws=s.noise_draws,
        seed=cfg.seed,
    )
    mem, groups = p.member, p.groups
    tr, te = float(p.correct[mem == 1].mean()), float(p.correct[mem == 0].mean())
    ev = evaluate(
        mem,
        p.pooled,
        fprs=cfg.audit.fprs,
        n_resamples=cfg.audit.resamples,
        groups=groups,
        rng=np.random.default_rng([cfg.seed, 11]),
    )
    best = max(ev.names, key=lambda n: ev.estimate(n, "auc").point or 0.0)
    comparator, reduction, lower = _risk_reduction(p, full, best, cfg, judged)
    targets = min(s.policy_targets, baseline.train.signals.n_models)
    test_answers = (  # the test pairs' correctness, labels and records, and the majority class
        p.correct[mem == 0],
        np.asarray(baseline.train.signals.label)[groups[mem == 0]],
        groups[mem == 0],
        _majority(baseline.train.signals)[0],
    )
    outcome = VariantOutcome(
        name=spec.name,
        description=spec.description,
        test_accuracy=te,
        test_accuracy_interval=grouped_mean(
            p.correct[mem == 0],
            groups[mem == 0],
            n_resamples=cfg.audit.resamples,
            confidence=ev.confidence,
            rng=np.random.default_rng([cfg.seed, 13]),  # its own stream: no other figure moved
        ),
        train_accuracy=tr,
        generalization_gap=tr - te,
        strongest_attack=best,
        auc=ev.estimate(best, "auc"),
        tpr_at_1pct_fpr=ev.estimate(best, TPR1),
        epsilon=base.epsilon,
        delta=base.delta,
        accountant=base.accountant,
        fault_injection=base.fault_injection,
        noise_multiplier=base.noise_multiplier,
        sample_rate=base.sample_rate,
        steps=base.steps,
        policy=spec.policy,
        attacks={n: _figures(ev, n, p.queries) for n in ev.names},
        folder=f"variants/{baseline.train.out.name}",
        risk_reduction=reduction,
        risk_reduction_lower=lower,
        judged=judged,
        accuracy_loss=paired_accuracy_loss(
            full.correct[mem == 0],
            p.correct[mem == 0],
            groups[mem == 0],
            n_resamples=cfg.audit.resamples,
            confidence=ev.confidence,
            rng=rng,
        ),
        compared_with=f"{comparator} on the same {targets} target models' full outputs (same access: no reference models)",
        majority_margin=majority_margin(
            *test_answers,
            n_resamples=cfg.audit.resamples,
            confidence=ev.confidence,
            rng=np.random.default_rng([cfg.seed, 19]),  # its own stream: no other figure moved
        ),
        majority_sign_p=majority_sign_p(*test_answers),
    )
    return outcome, _robustness_comparisons(spec.name, ev, mem, groups)


def _risk_reduction(
    p: PolicyScores, full: PolicyScores, best: str, cfg: AuditConfig, judged: int
) -> tuple[str, Estimate, float | None]:
    """(comparator, paired AUC(comparator on full outputs) − AUC(``best`` under the policy)).

    The comparator is the strongest of the same attacks on full outputs (label-only query
    attacks see the same labels either way), never the baseline's reference attacks, which are
    not run under a policy."""
    mem, groups = p.member, p.groups
    same = {**full.pooled, **{n: v for n, v in p.pooled.items() if n not in full.pooled}}
    ev_same = evaluate(mem, same, fprs=cfg.audit.fprs, n_resamples=0, groups=groups)
    comparator = max(ev_same.names, key=lambda n: ev_same.estimate(n, "auc").point or 0.0)
    ev_pair = evaluate(
        mem,
        {"full": same[comparator], "policy": p.pooled[best]},
        fprs=cfg.audit.fprs,
        n_resamples=cfg.audit.resamples,
        groups=groups,
        rng=np.random.default_rng([cfg.seed, 19]),
    )
    return comparator, ev_pair.difference("full", "policy", "auc"), _together(ev_pair, judged)


def _robustness_comparisons(
    variant: str, ev: Evaluation, mem: np.ndarray, groups: np.ndarray
) -> list[RobustnessComparison]:
    """Under label-only: each robustness attack against the gap attack, paired."""
    return [
        RobustnessComparison(
            variant=variant,
            a=robust,
            b="gap",
            difference=ev.difference(robust, "gap", "auc"),
            tpr_at_1pct_fpr=ev.estimate(robust, TPR1),
            pairs=int(mem.size),
            targets=int(mem.size // max(1, np.unique(groups).size)),
        )
        for robust in ("noise_robustness", "augmentation_robustness")
        if robust in ev.names and "gap" in ev.names
    ]


def _progress(v: VariantOutcome) -> str:
    eps = (
        f", ε = {v.epsilon:.2f}, δ = {v.delta:g} ({v.accountant})" if v.epsilon is not None else ""
    )
    if v.fault_injection:
        eps += f" VOID: {fault_words(v.fault_injection)}"
    return f"{v.name}: test accuracy {v.test_accuracy:.3f}, strongest {v.strongest_attack} AUC {_fmt(v.auc)}{eps}"


def _fault_notes(outcomes: Sequence[VariantOutcome]) -> list[str]:
    """Said first: variants whose ε is void because their DP-SGD ran with fault injection."""
    faulty = [v for v in outcomes if v.fault_injection]
    if not faulty:
        return []
    named = "; ".join(f"{v.name} ({v.fault_injection})" for v in faulty)
    return [
        f"WARNING: DP-SGD fault injection was on for {named}: their recorded ε is VOID (the "
        "training did not run the mechanism the accountant was told); a fault is for testing an "
        "auditor, never for a model anyone relies on."
    ]


def _notes(
    noise_sigma: float, noise_draws: int, tolerance: float, majority: float | None
) -> list[str]:
    return [
        "Training variants: the same audit (same plan seed: the same (target, record) pairs), each variant's own reference models trained with its recipe.",
        "Policy variants: the baseline's models behind a LocalOracle; reference attacks are not run under a policy (threshold and query attacks only).",
        "epsilon: the largest ε that Opacus's accountant recorded over the variant's models.",
        f"Noise robustness: σ = {noise_sigma:g} per-column standard deviations of the population records on non-one-hot columns, {noise_draws} queries per record.",
        f"Recommendation (docs/defenses.md): a control is recommended when the baseline's audit detects a risk, its paired risk reduction's lower bound, "
        "holding together over every variant judged (Bonferroni, normal approximation), lies above 0, and its paired accuracy loss's "
        f"interval ends within {tolerance * 100:g} points; the largest risk reduction is best, or 'best (not distinguishable from X)' when its 95 % "
        "interval does not lie above every other recommended control's; a model whose test accuracy is not shown above always answering the "
        f"majority class (its share {(majority or 0) * 100:.1f} % of the pool) on the same test records, by the paired difference's 95 % interval, is flagged and never recommended. Training variants are compared with the baseline's strongest attack; "
        "policies with the strongest of the same attacks on the same models' full outputs.",
    ]


# Long: the public entry point's docstring is its reference; the body is one loop over variants.
@cleans_output_dir  # bad input leaves no folder it made
def tradeoff(
    config: AuditConfig | str | Path,
    out: str | Path,
    *,
    variants: Sequence[VariantSpec] | None = None,
    policy_targets: int = 4,
    noise_sigma: float = 0.5,
    noise_draws: int = 50,
    accuracy_tolerance: float = DEFAULT_ACCURACY_TOLERANCE,
    say: Callable[[str], None] | None = None,
) -> TradeoffResult:
    """Run every variant through the same audit; write ``<out>/tradeoff.json``.

    Each training variant's audit lives in ``<out>/variants/<name>/`` (its own results.json,
    scores, signals); every variant shares the model cache ``<out>/models`` (or the config's
    ``engine.cache``). ``policy_targets``: how many of the baseline's models are attacked through
    the oracle per policy. Returns a :class:`TradeoffResult`; its comparisons are paired
    (same (target, record) pairs) record-resampling differences of AUC: the baseline's strongest
    attack minus each DP variant's, and under label-only each robustness attack minus the gap.
    Each variant gets a paired risk reduction and accuracy loss against the baseline and a
    verdict by :func:`recommendation` (``accuracy_tolerance``: the largest accuracy loss, as a
    fraction, that a recommended control may cost).
    """
    cfg = config if isinstance(config, AuditConfig) else load_audit_config(config)
    say = say or (lambda _s: None)
    specs = _described(_checked_specs(variants), cfg)
    _check_applicable(specs, cfg)
    s = _settings(cfg, Path(out), accuracy_tolerance, policy_targets, noise_sigma, noise_draws)
    _check_dp_variants(specs, s)
    outcomes: list[VariantOutcome] = []
    runs: dict[str, AuditRun] = {}
    robustness: list[RobustnessComparison] = []
    full: PolicyScores | None = None
    boot = np.random.default_rng([cfg.seed, 17])
    # 0700 as every folder of restricted files (each variant's signals and scores): made as a
    # parent of the first variant's, it took the umask's 0755
    ensure_private_dir(s.out / "variants")
    for spec in specs:
        if spec.policy is None:
            say(f"{spec.name}: training and auditing ({spec.description})")
            outcome, runs[spec.name] = _training_variant(
                spec, s.cfg, s.out / "variants" / spec.name, baseline=spec is specs[0]
            )
        else:
            say(
                f"{spec.name}: attacking the baseline's models through an oracle under {spec.policy}"
            )
            baseline = runs[specs[0].name]
            # The same targets and attacks on full outputs: every policy's comparator.
            full = full or _policy_scores(
                s.cfg,
                baseline.train,
                "full",
                targets=policy_targets,
                noise_sigma=noise_sigma,
                draws=noise_draws,
                seed=cfg.seed,
            )
            outcome, found = _policy_variant(
                spec, baseline, s, full, boot, outcomes[0], len(specs) - 1
            )
            robustness += found
        outcomes.append(outcome)
        say(_progress(outcome))
    return _finish(outcomes, runs, robustness, specs, s, boot, accuracy_tolerance)


def _finish(
    outcomes: list[VariantOutcome],
    runs: dict[str, AuditRun],
    robustness: list[RobustnessComparison],
    specs: Sequence[VariantSpec],
    s: _Settings,
    rng: np.random.Generator,
    tolerance: float,
) -> TradeoffResult:
    """Paired comparisons of the training variants, verdicts, and tradeoff.json written."""
    from miaudit._io import write_text_atomic

    cfg, base = s.cfg, specs[0].name
    strongest = {
        name: _strongest_pairs(r, max(r.result.attacks, key=lambda a: a.auc.point or 0.0).name)
        for name, r in runs.items()
    }
    comparisons: list[TradeoffComparison] = [*_dp_comparisons(specs, strongest, cfg), *robustness]
    test_pairs = {name: _test_pairs(r.train.signals) for name, r in runs.items()}
    majority_class, majority = _majority(runs[base].train.signals)
    outcomes = _with_training_pairs(
        outcomes, comparisons, test_pairs, base, cfg, rng, majority_class
    )
    result = TradeoffResult(
        dataset=str(cfg.data.dataset or cfg.data.path),
        seed=cfg.seed,
        variants=with_recommendations(
            outcomes,
            tolerance=tolerance,
            majority=majority,
            baseline_detected=risk_detected(runs[base].result),
            baseline_unjudged=why_not_judged(runs[base].result),
        ),
        comparisons=comparisons,
        notes=_fault_notes(outcomes) + _notes(s.noise_sigma, s.noise_draws, tolerance, majority),
    )
    write_text_atomic(s.out / TRADEOFF_FILE, result.to_json())
    return result


def _with_training_pairs(
    outcomes: list[VariantOutcome],
    comparisons: Sequence[TradeoffComparison],
    test_pairs: dict[str, TestPairs],
    base: str,
    cfg: AuditConfig,
    rng: np.random.Generator,
    majority_class: int,
) -> list[VariantOutcome]:
    """Training variants with their paired risk reduction (baseline's strongest − theirs, AUC)
    and accuracy loss (baseline − theirs, on the same test pairs), and every training variant
    with its margin over always answering ``majority_class`` on its own test pairs."""
    reduction = {c.variant: c for c in comparisons if isinstance(c, VariantComparison)}
    out = []
    for v in outcomes:
        if v.policy is None and v.name in test_pairs:
            p = test_pairs[v.name]
            rows, cols = np.nonzero(p.test)
            margin = majority_margin(
                p.correct[rows, cols],
                p.label[cols],
                cols,
                majority_class,
                n_resamples=cfg.audit.resamples,
                confidence=0.95,
                rng=np.random.default_rng([cfg.seed, 19]),  # its own stream: no other figure moved
            )
            sign = majority_sign_p(p.correct[rows, cols], p.label[cols], cols, majority_class)
            v = v.model_copy(update={"majority_margin": margin, "majority_sign_p": sign})
        if v.policy is None and not v.baseline and v.name in test_pairs and base in test_pairs:
            p0, p1 = test_pairs[base], test_pairs[v.name]
            loss = None
            if np.array_equal(p0.test, p1.test):
                t0 = p0.test
                groups = np.broadcast_to(np.arange(t0.shape[1]), t0.shape)[t0]
                loss = paired_accuracy_loss(
                    p0.correct[t0],
                    p1.correct[t0],
                    groups,
                    n_resamples=cfg.audit.resamples,
                    confidence=0.95,
                    rng=rng,
                )
            v = v.model_copy(
                update={
                    "risk_reduction": reduction[v.name].difference if v.name in reduction else None,
                    "risk_reduction_lower": reduction[v.name].simultaneous_lower
                    if v.name in reduction
                    else None,
                    "judged": len(outcomes) - 1,
                    "accuracy_loss": loss,
                    "compared_with": "the baseline's strongest attack (same audit, same (target, record) pairs)",
                }
            )
        out.append(v)
    return out


def _together(ev: Evaluation, judged: int, a: str = "full", b: str = "policy") -> float | None:
    """Lower end of the paired AUC(a) − AUC(b) at the one-sided level that holds together over
    ``judged`` variants (Bonferroni: the tail (1 − confidence) / 2 split ``judged`` ways), by
    the normal approximation with the replicates' SD (:meth:`Evaluation.difference_lower`):
    a percentile of 200 replicates cannot resolve a 0.28 % tail, and the interpolated one was
    looser than nominal (6.1 % family-wise for 2.5 %, red team)."""
    if ev.n_resamples == 0:
        return None
    return ev.difference_lower(a, b, "auc", (1 - ev.confidence) / 2 / max(1, judged))


def _dp_comparisons(
    specs: Sequence[VariantSpec], scores: dict[str, StrongestPairs], cfg: AuditConfig
) -> list[VariantComparison]:
    """Paired AUC(baseline's strongest) − AUC(variant's strongest) for every training variant."""
    base = specs[0].name
    if base not in scores:
        return []
    b = scores[base]
    order0 = np.argsort(b.key, kind="stable")
    out = []
    for spec in specs[1:]:
        if spec.name not in scores:
            continue
        v = scores[spec.name]
        order1 = np.argsort(v.key, kind="stable")
        if not np.array_equal(b.key[order0], v.key[order1]) or not np.array_equal(
            b.member[order0], v.member[order1]
        ):
            continue  # not the same pairs (cannot happen with one config seed)
        groups = (b.key[order0] % (1 << 32)).astype(np.int64)
        ev = evaluate(
            b.member[order0].astype(np.int8),
            {base: b.scores[order0], spec.name: v.scores[order1]},
            fprs=cfg.audit.fprs,
            n_resamples=cfg.audit.resamples,
            groups=groups,
            rng=np.random.default_rng([cfg.seed, 13]),
        )
        out.append(
            VariantComparison(
                variant=spec.name,
                a=base,
                b=spec.name,
                difference=ev.difference(base, spec.name, "auc"),
                pairs=int(b.member.size),
                simultaneous_lower=_together(ev, len(specs) - 1, base, spec.name),
            )
        )
    return out


def _fmt(e: Estimate) -> str:
    if e.point is None:
        return "n/m"
    return f"{e.point:.3f}" + (
        f" [{e.lower:.3f}, {e.upper:.3f}]" if e.lower is not None and e.upper is not None else ""
    )
