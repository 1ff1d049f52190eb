"""``miaudit tradeoff``: one recipe, several controls, each measured by the same audit.

Training-time variants (DP-SGD at several ε, a weight-decay grid, early stopping) are audit
configs that differ only in ``[model]``; each is run by :func:`~miaudit.audit.audit` itself
(same plan seed, so the same (target, record) pairs in every variant: paired comparisons are
possible). Serving-time variants (output policies) reuse the baseline's trained models (the
cache verifies and reuses them) and attack each target through a
:class:`~miaudit.attacks.LocalOracle` under the policy: threshold attacks on what the policy
exposes, and under label-only the query attacks too (gap, noise robustness for tabular data,
augmentation robustness for images), ALGORITHMS.md §5.

Per variant: test accuracy, train–test gap, the strongest attack's AUC and TPR at 1 % FPR with
record-resampling intervals, and the ε the accountant recorded (the largest over the models).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from miaudit.audit._config import AuditConfig, load_audit_config
from miaudit.errors import InputError
from miaudit.metrics import Estimate, evaluate, tpr_key

TRADEOFF_SCHEMA = "miaudit.tradeoff/1"
TRADEOFF_FILE = "tradeoff.json"
DEFAULT_EPSILONS = (8.0, 4.0, 1.0)
DEFAULT_WEIGHT_DECAYS = (1e-3, 1e-2)
DEFAULT_POLICIES = ("top-1", "round:1", "label-only")
TPR1 = tpr_key(0.01)


@dataclass(frozen=True)
class VariantSpec:
    """One variant: a change of recipe (``model``: fields to override) or an output policy."""

    name: str
    description: str
    model: dict[str, Any] = field(default_factory=dict)
    policy: str | None = None


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
    out = [VariantSpec("baseline", "the recipe as given (no DP: ε = ∞), full outputs")]
    for e in epsilons:
        dp = {
            "epsilon": float(e),
            "delta": delta,
            "accountant": accountant,
            "ghost_clipping": ghost_clipping,
        }
        out.append(
            VariantSpec(
                f"dp-eps{e:g}",
                f"DP-SGD, target ε = {e:g}, δ = {delta:g} ({accountant})",
                {"dp": dp},
            )
        )
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


@dataclass(frozen=True)
class VariantOutcome:
    name: str
    description: str
    test_accuracy: float
    train_accuracy: float
    generalization_gap: float
    strongest_attack: str
    auc: Estimate
    tpr_at_1pct_fpr: Estimate
    epsilon: float | None  # the accountant's (largest over the models); None: not DP-trained
    delta: float | None
    accountant: str | None
    policy: str | None
    attacks: dict[
        str, dict[str, Any]
    ]  # name → {"auc": Estimate, "tpr@1%fpr": Estimate, "queries_per_record": ...}
    folder: str
    baseline: bool = False
    #: Paired AUC(comparator) − AUC(this variant's strongest), same (target, record) pairs.
    risk_reduction: Estimate | None = None
    #: Paired test accuracy(baseline) − test accuracy(this variant), same test pairs.
    accuracy_loss: Estimate | None = None
    #: "baseline", "best", "recommended", "not recommended" or "flagged" (see :func:`recommendation`).
    recommendation: str = ""
    reason: str = ""
    #: What the risk reduction is measured against (for policies: the same attacks on full outputs).
    compared_with: str = ""

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["auc"], d["tpr_at_1pct_fpr"] = self.auc.model_dump(), self.tpr_at_1pct_fpr.model_dump()
        for k in ("risk_reduction", "accuracy_loss"):
            est = getattr(self, k)
            d[k] = est.model_dump() if est is not None else None
        d["attacks"] = {
            a: {k: (v.model_dump() if isinstance(v, Estimate) else v) for k, v in m.items()}
            for a, m in self.attacks.items()
        }
        return d


@dataclass(frozen=True)
class TradeoffResult:
    variants: list[VariantOutcome]
    comparisons: list[dict[str, Any]]
    dataset: str
    seed: int
    notes: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": TRADEOFF_SCHEMA,
            "dataset": self.dataset,
            "seed": self.seed,
            "variants": [v.to_json() for v in self.variants],
            "comparisons": [
                {**c, "difference": c["difference"].model_dump()} for c in self.comparisons
            ],
            "notes": self.notes,
        }

    def variant(self, name: str) -> VariantOutcome:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)


# --- the recommendation rule (docs/defenses.md) ----------------------------------------------------

#: Default largest accuracy loss (upper end of its interval) a recommended control may cost.
DEFAULT_ACCURACY_TOLERANCE = 0.01


def recommendation(
    v: VariantOutcome,
    *,
    tolerance: float = DEFAULT_ACCURACY_TOLERANCE,
    majority: float | None = None,
) -> tuple[str, str]:
    """(verdict, reason) for one variant. A control is *recommended* when its paired risk
    reduction's interval lies above 0 and its paired accuracy loss's interval ends within
    ``tolerance``; a model at or below the majority-class accuracy is *flagged* (it has stopped
    predicting, so its low attack success means nothing) and never recommended."""
    if v.baseline:
        return "baseline", "the recipe as given"
    if majority is not None and v.test_accuracy <= majority + 1e-12:
        return (
            "flagged",
            f"test accuracy {v.test_accuracy:.1%} is at or below the majority-class rate {majority:.1%}: the model predicts nothing, so its low attack success is no protection",
        )
    r, a = v.risk_reduction, v.accuracy_loss
    if r is None or r.lower is None or r.point is None:
        return "not recommended", "no paired risk reduction could be measured"
    if r.lower <= 0:
        return (
            "not recommended",
            f"risk reduction {r.point:+.3f} AUC [{r.lower:+.3f}, {r.upper:+.3f}]: its interval does not lie above 0",
        )
    if a is None or a.upper is None or a.point is None:
        return "not recommended", "no paired accuracy loss could be measured"
    if a.upper > tolerance:
        return (
            "not recommended",
            f"accuracy loss {a.point * 100:+.1f} points, up to {a.upper * 100:.1f} (interval end), beyond the tolerance of {tolerance * 100:g}",
        )
    return (
        "recommended",
        f"risk reduction {r.point:+.3f} AUC [{r.lower:+.3f}, {r.upper:+.3f}]; accuracy loss at most {max(a.upper, 0) * 100:.1f} points (tolerance {tolerance * 100:g})",
    )


def with_recommendations(
    variants: Sequence[VariantOutcome], *, tolerance: float, majority: float | None
) -> list[VariantOutcome]:
    """Every variant with its verdict; among the recommended, the larger risk reduction is "best"."""
    from dataclasses import replace

    judged = [
        replace(
            v,
            recommendation=(verdict := recommendation(v, tolerance=tolerance, majority=majority))[
                0
            ],
            reason=verdict[1],
        )
        for v in variants
    ]
    picked = [v for v in judged if v.recommendation == "recommended"]
    if picked:
        best = max(picked, key=lambda v: v.risk_reduction.point or 0.0)  # type: ignore[union-attr]
        judged = [replace(v, recommendation="best") if v is best else v for v in judged]
    return judged


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
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    d = np.bincount(g, weights=np.asarray(c0, dtype=np.float64) - np.asarray(c1, dtype=np.float64))
    n = np.bincount(g).astype(np.float64)
    if n.sum() == 0:
        return Estimate(point=None, status="not_measurable")
    point = float(d.sum() / n.sum())
    if n_resamples == 0:
        return Estimate(point=point)
    reps = np.empty(n_resamples)
    for b in range(n_resamples):
        w = np.bincount(rng.integers(0, n.size, n.size), minlength=n.size)
        reps[b] = (w @ d) / max(w @ n, 1.0)
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(reps, [tail, 1 - tail])
    return Estimate(point=point, lower=float(lo), upper=float(hi))


def _test_pairs(run: Any) -> tuple[np.ndarray, np.ndarray]:
    """(correct, test): (models × records) whether each model labels each record right, and
    which (model, record) pairs are test pairs (pool records the model did not train on)."""
    store = run.signals
    logits = np.asarray(store.logits)
    if logits.ndim == 4:  # several queries per record: the un-augmented one
        logits = logits[:, :, 0]
    correct = logits.argmax(-1) == np.asarray(store.label)[None, :]
    test = (~np.asarray(store.keep, dtype=bool)) & (~np.asarray(store.population, dtype=bool))[
        None, :
    ]
    return correct, test


def _majority(run: Any) -> float:
    label = np.asarray(run.signals.label)[~np.asarray(run.signals.population, dtype=bool)]
    return float(np.bincount(label.astype(np.int64)).max() / max(label.size, 1))


# --- running a trained model again (the policy variants' oracle) ----------------------------------


def model_predictor(run: Any, model: int, data: Any = None) -> Callable[[np.ndarray], np.ndarray]:
    """``predict_proba`` of model ``model`` of an engine run, on raw records (n, d).

    Torch units: the engine's own network code on the saved stacked weights (safetensors);
    scikit-learn units: the skops file. The model's preprocessing is applied first. ``data``:
    the run's dataset when already loaded (else it is loaded from the run's config).
    """
    from miaudit.models import SklearnRecipe, load_sklearn, load_torch_state

    folder, pos = run.model_location(model)
    recipe = run.config.model
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
    from miaudit.models._torch_train import build_net

    state = load_torch_state(folder / "weights.safetensors")
    data = data if data is not None else load_dataset(run.config.data)
    net = build_net(recipe, data, [torch.Generator().manual_seed(0)])
    net.load({n: state[n][pos : pos + 1] for n in net.names})
    scale = state["preprocess.scale"][pos].float()
    shift = state["preprocess.shift"][pos].float()

    @torch.no_grad()
    def predict(x: np.ndarray) -> np.ndarray:
        xt = torch.as_tensor(np.asarray(x, dtype=np.float32)).reshape(len(x), -1) * scale + shift
        return torch.softmax(net.forward(xt[None])[0], dim=-1).double().numpy()

    return predict


# --- the variants ----------------------------------------------------------------------------------


def _estimates(ev: Any, name: str) -> dict[str, Estimate]:
    return {"auc": ev.estimate(name, "auc"), TPR1: ev.estimate(name, TPR1)}


def _privacy(run: Any) -> list[dict[str, Any]]:
    from miaudit.engine import _cache

    out: list[dict[str, Any]] = []
    for key in run.signals.info.get("units", []):
        manifest = json.loads(
            (_cache.unit_dir(run.cache, key) / _cache.MANIFEST).read_text(encoding="utf-8")
        )
        out += manifest.get("info", {}).get("privacy") or []
    return out


def _scores_table(folder: Path) -> dict[str, np.ndarray]:
    import pyarrow.parquet as pq

    t = pq.read_table(folder / "scores.parquet").to_pydict()
    return {k: np.asarray(v) for k, v in t.items()}


def _policy_variant(
    cfg: AuditConfig,
    run: Any,
    policy: str,
    *,
    targets: int,
    noise_sigma: float,
    draws: int,
    seed: int,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, dict[str, int], np.ndarray]:
    """Attack ``targets`` models through a LocalOracle under ``policy``: pooled pair scores,
    membership, record of each pair, queries per attack, whether each answer's label is right."""
    from miaudit.attacks import (
        LocalOracle,
        augmentation_robustness_attack,
        exposed_threshold_scores,
        gap_query_attack,
        noise_robustness_attack,
        recipe_augmentations,
    )
    from miaudit.datasets import load_dataset
    from miaudit.defenses import parse_policy
    from miaudit.models import CNNRecipe

    pol = parse_policy(policy, field="policies")
    data = load_dataset(cfg.data)
    store = run.signals
    records = np.flatnonzero(~store.population)
    x, y = data.features[records], np.asarray(data.label)[records].astype(np.int64)
    label_only = str(pol) == "label-only"
    per: dict[str, list[np.ndarray]] = {}
    queries: dict[str, int] = {}
    member, correct = [], []
    ss = np.random.SeedSequence([seed, 7])
    for t, child in zip(
        range(min(targets, store.n_models)), ss.spawn(min(targets, store.n_models)), strict=True
    ):
        oracle = LocalOracle(model_predictor(run, t, data), pol, rng=np.random.default_rng(child))
        exposed = oracle.query(x)
        scores = exposed_threshold_scores(exposed, y)
        if label_only:
            g = gap_query_attack(oracle, x, y)
            scores["gap"] = g.scores
            queries["gap"] = 1
            if data.image_shape is not None:
                aug = recipe_augmentations(
                    data.image_shape,
                    (
                        cfg.model.augment
                        if isinstance(cfg.model, CNNRecipe) and cfg.model.augment
                        else ["shift"]
                    ),
                )  # type: ignore[arg-type]
                r = augmentation_robustness_attack(oracle, x, y, aug)
            else:
                # Noise on numeric columns in units of their spread; one-hot columns stay fixed.
                scale = np.zeros(data.n_features)
                cols = np.setdiff1d(np.arange(data.n_features), data.onehot)
                scale[cols] = data.features[np.flatnonzero(store.population)][:, cols].std(axis=0)
                if not np.any(scale > 0):
                    scale[:] = 1.0
                r = noise_robustness_attack(
                    oracle,
                    x,
                    y,
                    sigma=noise_sigma,
                    n_draws=draws,
                    scale=scale,
                    rng=np.random.default_rng(child.spawn(1)[0]),
                )
            scores[r.attack] = r.scores
            queries[r.attack] = int(r.queries[0])
        for name, s in scores.items():
            per.setdefault(name, []).append(np.asarray(s, dtype=np.float64))
        member.append(store.keep[t, records])
        correct.append(exposed.labels == y)
    mem = np.concatenate(member)
    cor = np.concatenate(correct)
    pooled = {n: np.concatenate(v) for n, v in per.items()}
    groups = np.tile(records, len(member))
    return pooled, mem.astype(np.int8), groups, queries, cor


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
    from rich.console import Console

    from miaudit._io import ensure_writable_dir, write_text_atomic
    from miaudit.audit._reference_audit import audit
    from miaudit.engine import train
    from miaudit.engine._run import check_before_training

    quiet = Console(stderr=True, quiet=True)

    cfg = config if isinstance(config, AuditConfig) else load_audit_config(config)
    say = say or (lambda _s: None)
    out_dir = ensure_writable_dir(Path(out))
    specs = list(variants) if variants is not None else default_variants()
    if not specs or specs[0].policy is not None or specs[0].model:
        raise InputError(
            "variants", "the first variant must be the baseline (no recipe change, no policy)"
        )
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise InputError("variants", "variant names must be unique")
    cache = cfg.engine.cache or out_dir / "models"
    base_cfg = cfg.model_copy(update={"engine": cfg.engine.model_copy(update={"cache": cache})})
    if not 0 <= accuracy_tolerance < 1:
        raise InputError(
            "accuracy_tolerance", f"must be a fraction in [0, 1), got {accuracy_tolerance}"
        )
    check_before_training(
        base_cfg.train_config()
    )  # a bad config is refused before the first variant starts
    outcomes: list[VariantOutcome] = []
    strongest_scores: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    comparisons: list[dict[str, Any]] = []
    test_pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    full: (
        tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, dict[str, int], np.ndarray] | None
    ) = None
    majority: float | None = None
    boot = np.random.default_rng([cfg.seed, 17])
    for spec in specs:
        folder = out_dir / "variants" / spec.name
        if spec.policy is None:
            raw = {**base_cfg.model.model_dump(mode="json"), **spec.model}
            from miaudit.models import parse_recipe

            vcfg = base_cfg.model_copy(
                update={"model": parse_recipe(raw, field=f"variants.{spec.name}")}
            )
            say(f"{spec.name}: training and auditing ({spec.description})")
            res = audit(vcfg, folder, overwrite=True, quiet=True)
            run = train(
                vcfg.train_config(), folder, console=quiet
            )  # verified cache hits: the models just audited
            privacy = _privacy(run)
            test_pairs[spec.name] = _test_pairs(run)
            if majority is None:
                majority = _majority(run)
            strongest = max(res.attacks, key=lambda a: a.auc.point or 0.0)
            table = _scores_table(folder)
            strongest_scores[spec.name] = (
                table[f"score_{strongest.name}"],
                table["member"],
                np.asarray(table["target"]) * (1 << 32) + _record_index(run, table["record_id"]),
            )
            attacks = {a.name: {"auc": a.auc, TPR1: a.metric(TPR1)} for a in res.attacks}
            outcomes.append(
                VariantOutcome(
                    name=spec.name,
                    description=spec.description,
                    test_accuracy=res.utility.test_accuracy,
                    train_accuracy=res.utility.train_accuracy,
                    generalization_gap=res.utility.generalization_gap,
                    strongest_attack=strongest.name,
                    auc=strongest.auc,
                    tpr_at_1pct_fpr=strongest.metric(TPR1),
                    epsilon=max(p["epsilon"] for p in privacy) if privacy else None,
                    delta=privacy[0]["delta"] if privacy else None,
                    accountant=privacy[0]["accountant"] if privacy else None,
                    policy=None,
                    attacks=attacks,
                    folder=str(folder.relative_to(out_dir)),
                    baseline=spec is specs[0],
                )
            )
        else:
            say(
                f"{spec.name}: attacking the baseline's models through an oracle under {spec.policy}"
            )
            run = train(
                base_cfg.train_config(), out_dir / "variants" / specs[0].name, console=quiet
            )
            pooled, mem, groups, queries, cor = _policy_variant(
                base_cfg,
                run,
                spec.policy,
                targets=policy_targets,
                noise_sigma=noise_sigma,
                draws=noise_draws,
                seed=cfg.seed,
            )
            if (
                full is None
            ):  # the same targets and attacks on full outputs: the policy's comparator
                full = _policy_variant(
                    base_cfg,
                    run,
                    "full",
                    targets=policy_targets,
                    noise_sigma=noise_sigma,
                    draws=noise_draws,
                    seed=cfg.seed,
                )
            tr, te = float(cor[mem == 1].mean()), float(cor[mem == 0].mean())
            ev = evaluate(
                mem,
                pooled,
                fprs=cfg.audit.fprs,
                n_resamples=cfg.audit.resamples,
                groups=groups,
                rng=np.random.default_rng([cfg.seed, 11]),
            )
            best = max(ev.names, key=lambda n: ev.estimate(n, "auc").point or 0.0)
            attacks = {
                n: {
                    **_estimates(ev, n),
                    **({"queries_per_record": queries[n]} if n in queries else {}),
                }
                for n in ev.names
            }
            # Comparator: the strongest of the same attacks on full outputs (label-only query
            # attacks see the same labels either way), never the baseline's reference attacks,
            # which are not run under a policy.
            same = {**full[0], **{n: v for n, v in pooled.items() if n not in full[0]}}
            ev_same = evaluate(mem, same, fprs=cfg.audit.fprs, n_resamples=0, groups=groups)
            comparator = max(ev_same.names, key=lambda n: ev_same.estimate(n, "auc").point or 0.0)
            ev_pair = evaluate(
                mem,
                {"full": same[comparator], "policy": pooled[best]},
                fprs=cfg.audit.fprs,
                n_resamples=cfg.audit.resamples,
                groups=groups,
                rng=np.random.default_rng([cfg.seed, 19]),
            )
            outcomes.append(
                VariantOutcome(
                    name=spec.name,
                    description=spec.description,
                    test_accuracy=te,
                    train_accuracy=tr,
                    generalization_gap=tr - te,
                    strongest_attack=best,
                    auc=ev.estimate(best, "auc"),
                    tpr_at_1pct_fpr=ev.estimate(best, TPR1),
                    epsilon=None,
                    delta=None,
                    accountant=None,
                    policy=spec.policy,
                    attacks=attacks,
                    folder=str((out_dir / "variants" / specs[0].name).relative_to(out_dir)),
                    risk_reduction=ev_pair.difference("full", "policy", "auc"),
                    accuracy_loss=paired_accuracy_loss(
                        full[4][mem == 0],
                        cor[mem == 0],
                        groups[mem == 0],
                        n_resamples=cfg.audit.resamples,
                        confidence=ev.confidence,
                        rng=boot,
                    ),
                    compared_with=f"{comparator} on the same {min(policy_targets, run.signals.n_models)} target models' full outputs (same access: no reference models)",
                )
            )
            for robust in ("noise_robustness", "augmentation_robustness"):
                if robust in ev.names and "gap" in ev.names:
                    comparisons.append(
                        {
                            "kind": "robustness_vs_gap",
                            "variant": spec.name,
                            "a": robust,
                            "b": "gap",
                            "metric": "auc",
                            "difference": ev.difference(robust, "gap", "auc"),
                            "tpr_at_1pct_fpr": ev.estimate(robust, TPR1).model_dump(),
                            "pairs": int(mem.size),
                            "targets": int(mem.size // max(1, np.unique(groups).size)),
                        }
                    )
        say(
            f"{spec.name}: test accuracy {outcomes[-1].test_accuracy:.3f}, strongest {outcomes[-1].strongest_attack} AUC {_fmt(outcomes[-1].auc)}"
            + (
                f", ε = {outcomes[-1].epsilon:.2f} ({outcomes[-1].accountant})"
                if outcomes[-1].epsilon is not None
                else ""
            )
        )
    comparisons = _dp_comparisons(specs, strongest_scores, cfg) + comparisons
    outcomes = _with_training_pairs(outcomes, comparisons, test_pairs, specs[0].name, cfg, boot)
    outcomes = with_recommendations(outcomes, tolerance=accuracy_tolerance, majority=majority)
    result = TradeoffResult(
        outcomes,
        comparisons,
        dataset=str(cfg.data.dataset or cfg.data.path),
        seed=cfg.seed,
        notes=[
            "Training variants: the same audit (same plan seed: the same (target, record) pairs), each variant's own reference models trained with its recipe.",
            "Policy variants: the baseline's models behind a LocalOracle; reference attacks are not run under a policy (threshold and query attacks only).",
            "epsilon: the largest ε that Opacus's accountant recorded over the variant's models.",
            f"Noise robustness: σ = {noise_sigma:g} per-column standard deviations of the population records on non-one-hot columns, {noise_draws} queries per record.",
            f"Recommendation (docs/defenses.md): a control is recommended when its paired risk reduction's interval lies above 0 and its paired accuracy loss's "
            f"interval ends within {accuracy_tolerance * 100:g} points; the larger risk reduction is best; a model at or below the majority-class accuracy "
            f"({(majority or 0) * 100:.1f} %) is flagged and never recommended. Training variants are compared with the baseline's strongest attack; "
            "policies with the strongest of the same attacks on the same models' full outputs.",
        ],
    )
    write_text_atomic(
        out_dir / TRADEOFF_FILE,
        json.dumps(result.to_json(), indent=2, allow_nan=False, default=_json_default),
    )
    return result


def _with_training_pairs(
    outcomes: list[VariantOutcome],
    comparisons: list[dict[str, Any]],
    test_pairs: dict[str, tuple[np.ndarray, np.ndarray]],
    base: str,
    cfg: AuditConfig,
    rng: np.random.Generator,
) -> list[VariantOutcome]:
    """Training variants with their paired risk reduction (baseline's strongest − theirs, AUC)
    and accuracy loss (baseline − theirs, on the same test pairs)."""
    from dataclasses import replace

    reduction = {
        c["variant"]: c["difference"] for c in comparisons if c["kind"] == "baseline_vs_variant"
    }
    out = []
    for v in outcomes:
        if v.policy is None and not v.baseline and v.name in test_pairs and base in test_pairs:
            (c0, t0), (c1, t1) = test_pairs[base], test_pairs[v.name]
            loss = None
            if np.array_equal(t0, t1):
                groups = np.broadcast_to(np.arange(t0.shape[1]), t0.shape)[t0]
                loss = paired_accuracy_loss(
                    c0[t0],
                    c1[t0],
                    groups,
                    n_resamples=cfg.audit.resamples,
                    confidence=0.95,
                    rng=rng,
                )
            v = replace(
                v,
                risk_reduction=reduction.get(v.name),
                accuracy_loss=loss,
                compared_with="the baseline's strongest attack (same audit, same (target, record) pairs)",
            )
        out.append(v)
    return out


def _record_index(run: Any, record_id: np.ndarray) -> np.ndarray:
    index = {str(r): i for i, r in enumerate(run.signals.record_id.tolist())}
    return np.asarray([index[str(r)] for r in np.asarray(record_id).tolist()], dtype=np.int64)


def _dp_comparisons(
    specs: Sequence[VariantSpec],
    scores: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    cfg: AuditConfig,
) -> list[dict[str, Any]]:
    """Paired AUC(baseline's strongest) − AUC(variant's strongest) for every training variant."""
    base = specs[0].name
    if base not in scores:
        return []
    s0, y0, key0 = scores[base]
    order0 = np.argsort(key0, kind="stable")
    out = []
    for spec in specs[1:]:
        if spec.name not in scores:
            continue
        s1, y1, key1 = scores[spec.name]
        order1 = np.argsort(key1, kind="stable")
        if not np.array_equal(key0[order0], key1[order1]) or not np.array_equal(
            y0[order0], y1[order1]
        ):
            continue  # not the same pairs (cannot happen with one config seed)
        groups = (key0[order0] % (1 << 32)).astype(np.int64)
        ev = evaluate(
            y0[order0].astype(np.int8),
            {base: s0[order0], spec.name: s1[order1]},
            fprs=cfg.audit.fprs,
            n_resamples=cfg.audit.resamples,
            groups=groups,
            rng=np.random.default_rng([cfg.seed, 13]),
        )
        out.append(
            {
                "kind": "baseline_vs_variant",
                "variant": spec.name,
                "a": base,
                "b": spec.name,
                "metric": "auc",
                "difference": ev.difference(base, spec.name, "auc"),
                "pairs": int(y0.size),
            }
        )
    return out


def _fmt(e: Estimate) -> str:
    if e.point is None:
        return "n/m"
    return f"{e.point:.3f}" + (
        f" [{e.lower:.3f}, {e.upper:.3f}]" if e.lower is not None and e.upper is not None else ""
    )


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, float) and math.isinf(o):
        return None
    raise TypeError(type(o).__name__)
