"""miaudit's own attacks, registered in the order the runners, the report and the CLI list them."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from miaudit.attacks._class_dependent import class_dependent_scores
from miaudit.attacks._combined import CombinedAttack
from miaudit.attacks._label_only import (
    QueryAttackResult,
    augmentation_robustness_attack,
    boundary_distance_attack,
    noise_robustness_attack,
)
from miaudit.attacks._qmia import fit_qmia, qmia_scores
from miaudit.attacks._reference import LiraAttack, MlLeaksAttack, RmiaAttack, ShadowAttack
from miaudit.attacks._registry import (
    AttackScores,
    AttackSpec,
    DecisionRule,
    Family,
    Need,
    OutputSignals,
    QueryCost,
    QueryInputs,
    ReferenceSettings,
    SignalKind,
    register_attack,
)
from miaudit.attacks._text import (
    SequenceInputs,
    lira_scores,
    min_k_plus_scores,
    min_k_scores,
    reference_ratio_scores,
    rmia_scores,
    text_loss_scores,
    zlib_scores,
)
from miaudit.attacks._threshold import SPECS, THRESHOLD_ATTACKS, ThresholdAttack, threshold_score

_KNOWS_OUTPUTS = (
    "the model's output probabilities on the record and its true label; no training data"
)
_KNOWS_LABEL = "only whether the model labels the record correctly (works through label-only APIs)"
_KNOWS_PER_CLASS = "the model's outputs and true label, plus a per-class threshold fitted on records of known membership"
_KNOWS_RECIPE = "the training recipe and population data from the same distribution: "
_REFERENCE_NEEDS = frozenset({Need.LABELS, Need.REFERENCES})
_ORACLE_NEEDS = frozenset({Need.LABELS, Need.ORACLE})


def _threshold(name: ThresholdAttack) -> Callable[[OutputSignals], AttackScores]:
    def run(x: OutputSignals) -> AttackScores:
        return AttackScores(threshold_score(name, dict(x.signals)))

    return run


def _by_class(name: ThresholdAttack) -> Callable[[OutputSignals], AttackScores]:
    def run(x: OutputSignals) -> AttackScores:
        assert x.member is not None  # the runner checks Need.KNOWN_MEMBERS
        raw = threshold_score(name, dict(x.signals))
        cd = class_dependent_scores(raw, x.labels, x.member, rng=np.random.default_rng(x.seed))
        rule = f"Song–Mittal per-class thresholds ({cd.n_folds}-fold cross-fitted)"
        return AttackScores(cd.score, DecisionRule(rule, cd.operating_tpr, cd.operating_fpr))

    return run


def _register_thresholds() -> None:
    for name in THRESHOLD_ATTACKS:
        spec = SPECS[name]
        register_attack(
            AttackSpec(
                name=name,
                family=Family.THRESHOLD,
                signal_kind=SignalKind.MODEL_OUTPUTS,
                run=_threshold(name),
                description=spec.description,
                citation=spec.paper,
                attacker_knows=_KNOWS_LABEL if name == "gap" else _KNOWS_OUTPUTS,
                signals=(spec.signal,),
            )
        )
    for name in THRESHOLD_ATTACKS:
        spec = SPECS[name]
        register_attack(
            AttackSpec(
                name=f"{name}_by_class",
                family=Family.THRESHOLD,
                signal_kind=SignalKind.MODEL_OUTPUTS,
                run=_by_class(name),
                description=f"per-class p-value of: {spec.description} (cross-fitted)",
                citation=spec.paper,
                attacker_knows=_KNOWS_LABEL if name == "gap" else _KNOWS_PER_CLASS,
                needs=frozenset({Need.LABELS, Need.KNOWN_MEMBERS}),
                signals=(spec.signal,),
                order_invariant=False,  # folds are drawn by position
            )
        )


def _reference(
    name: str,
    family: Family,
    run: Callable[[ReferenceSettings], object],
    description: str,
    citation: str,
    knows: str,
    needs: frozenset[Need] = _REFERENCE_NEEDS,
    order_invariant: bool = True,
) -> None:
    register_attack(
        AttackSpec(
            name=name,
            family=family,
            signal_kind=SignalKind.REFERENCE_OUTPUTS,
            run=run,
            description=description,
            citation=citation,
            attacker_knows=knows,
            needs=needs,
            order_invariant=order_invariant,
        )
    )


def _register_reference_attacks() -> None:
    online = _KNOWS_RECIPE + "trains reference models with and without each record (2k models)"
    offline = _KNOWS_RECIPE + "trains k reference models without the record"
    shadow = "population data: trains shadow models and an attack classifier on their outputs"
    lira, rmia = "Carlini et al., S&P 2022", "Zarifzadeh, Liu, Shokri, ICML 2024"
    with_population = _REFERENCE_NEEDS | {Need.POPULATION}
    _reference(
        "lira_online",
        Family.REFERENCE,
        lambda s: LiraAttack(mode="online", variance=s.variance),
        "likelihood ratio of φ under IN and OUT Gaussians fitted on reference models",
        lira,
        online,
    )
    _reference(
        "lira_offline",
        Family.REFERENCE,
        lambda s: LiraAttack(mode="offline", variance=s.variance),
        "one-sided test of φ against OUT reference models (standardised score)",
        lira,
        offline,
    )
    _reference(
        "rmia_online",
        Family.REFERENCE,
        lambda s: RmiaAttack(mode="online", gamma=s.gamma, a=s.a),
        "fraction of population records z with Pr(x|θ)/Pr(x) ≥ γ·Pr(z|θ)/Pr(z), IN and OUT references",
        rmia,
        online,
        with_population,
    )
    _reference(
        "rmia_offline",
        Family.REFERENCE,
        lambda s: RmiaAttack(mode="offline", gamma=s.gamma, a=s.a),
        "RMIA with OUT references only, Pr(x) ≈ ½[(1+a)·Pr_OUT(x) + (1−a)]",
        rmia,
        offline,
        with_population,
    )
    _reference(
        "shadow",
        Family.SHADOW,
        lambda s: ShadowAttack(seed=s.seed),
        "per-class attack classifiers trained on reference (shadow) models' sorted outputs",
        "Shokri et al., S&P 2017",
        shadow,
    )
    _reference(
        "ml_leaks",
        Family.SHADOW,
        lambda s: MlLeaksAttack(seed=s.seed),
        "one shadow model, top-3 sorted probabilities",
        "Salem et al., NDSS 2019",
        shadow,
        order_invariant=False,  # cross-fitting folds are drawn by position
    )


def _register_shrunk_lira() -> None:
    """LiRA with empirical-Bayes shrinkage for few references (issue 18, docs/method.md §12)."""
    online = _KNOWS_RECIPE + "trains reference models with and without each record (2k models)"
    offline = _KNOWS_RECIPE + "trains k reference models without the record"
    lira = "Carlini et al., S&P 2022"
    _reference(
        "lira_shrunk_online",
        Family.REFERENCE,
        lambda s: LiraAttack(mode="online", shrink=True),
        "LiRA online with each record's IN/OUT variances shrunk toward level-wise priors (empirical Bayes), scored by Student-t predictives",
        lira + "; empirical-Bayes shrinkage as in Brännvall 2026 (BaVarIA)",
        online,
    )
    _reference(
        "lira_shrunk_offline",
        Family.REFERENCE,
        lambda s: LiraAttack(mode="offline", shrink=True),
        "LiRA offline with each record's OUT variance shrunk toward level-wise priors (empirical Bayes), scored by its Student-t predictive",
        lira + "; empirical-Bayes shrinkage as in Brännvall 2026 (BaVarIA)",
        offline,
    )


def _noise(x: QueryInputs) -> QueryAttackResult:
    draws = {"n_draws": b} if (b := x.budget) is not None else {}
    return noise_robustness_attack(
        x.oracle, x.records, x.labels, sigma=x.sigma, scale=x.scale, rng=x.rng, **draws
    )


def _augmentation(x: QueryInputs) -> QueryAttackResult:
    return augmentation_robustness_attack(x.oracle, x.records, x.labels, x.augmentations)


def _boundary(x: QueryInputs) -> QueryAttackResult:
    budget = {"max_queries": b} if (b := x.budget) is not None else {}
    return boundary_distance_attack(
        x.oracle, x.records, x.labels, scale=x.scale, rng=x.rng, **budget
    )


def _register_query_attacks() -> None:
    perturbed = "predicted labels of perturbed copies of the record"
    tens = QueryCost("tens (one per perturbed copy)", hungry=True)
    choquette = "Choquette-Choo et al., ICML 2021"
    for name, run, description, citation, knows, cost, invariant in (
        (
            "noise_robustness",
            _noise,
            "fraction of noisy copies of the record still classified correctly",
            choquette,
            perturbed,
            tens,
            False,  # noise is drawn by position
        ),
        (
            "augmentation_robustness",
            _augmentation,
            "fraction of the recipe's augmentations of the record still classified correctly",
            choquette,
            perturbed,
            tens,
            True,
        ),
        (
            "boundary_distance",
            _boundary,
            "estimated distance to the nearest label flip (HopSkipJump-style search)",
            f"{choquette}; Li & Zhang, CCS 2021",
            "predicted labels only, searching for the nearest label flip",
            QueryCost("about 1,000–10,000", hungry=True),
            False,  # random directions are drawn by position
        ),
    ):
        register_attack(
            AttackSpec(
                name=name,
                family=Family.LABEL_ONLY,
                signal_kind=SignalKind.ORACLE_QUERIES,
                run=run,
                description=description,
                citation=citation,
                attacker_knows=knows,
                needs=_ORACLE_NEEDS,
                query_cost=cost,
                order_invariant=invariant,
            )
        )


def _scores(
    score: Callable[[SequenceInputs], np.ndarray],
) -> Callable[[SequenceInputs], AttackScores]:
    def run(x: SequenceInputs) -> AttackScores:
        return AttackScores(np.asarray(score(x), dtype=np.float64))

    return run


_KNOWS_TOKENS = "the language model's probabilities of the text's tokens; no training data"
_TEXT_REFERENCES = (
    "the fine-tuning recipe and the base model, and texts from the same distribution: "
)


_NONE: frozenset[Need] = frozenset()
_REFS = frozenset({Need.REFERENCES})
#: (name, scorer, description, citation, attacker knows, needs) of each text attack.
_TEXT_ATTACKS: tuple[
    tuple[str, Callable[[SequenceInputs], np.ndarray], str, str, str, frozenset[Need]], ...
] = (
    (
        "text_loss",
        text_loss_scores,
        "high mean token log-probability (low perplexity) ⇒ member",
        "Yeom et al., CSF 2018; Carlini et al., USENIX Security 2021",
        _KNOWS_TOKENS,
        _NONE,
    ),
    (
        "zlib",
        zlib_scores,
        "low perplexity relative to the text's zlib-compressed length ⇒ member",
        "Carlini et al., USENIX Security 2021",
        _KNOWS_TOKENS + ", and the text",
        _NONE,
    ),
    (
        "min_k",
        min_k_scores,
        "high mean of the 20 % least likely tokens' log-probabilities ⇒ member",
        "Shi et al., ICLR 2024",
        _KNOWS_TOKENS,
        _NONE,
    ),
    (
        "min_k_plus",
        min_k_plus_scores,
        "min-k % on log-probabilities standardised by the next-token distribution ⇒ member",
        "Zhang et al., Min-K%++, 2024",
        "the language model's full next-token distributions on the text; no training data",
        _NONE,
    ),
    (
        "reference_ratio",
        reference_ratio_scores,
        "likelihood ratio of the fine-tuned model to its base model ⇒ member",
        "Carlini et al., USENIX Security 2021; Mireshghallah et al., EMNLP 2022",
        "the model's and its base model's token probabilities on the text",
        _NONE,
    ),
    (
        "text_lira_online",
        lira_scores(True),
        "LiRA (online) on the mean token log-probability, against reference fine-tunes with and without the text",
        "Carlini et al., IEEE S&P 2022",
        _TEXT_REFERENCES + "fine-tunes with and without each text",
        _REFS,
    ),
    (
        "text_lira_offline",
        lira_scores(False),
        "LiRA (offline) on the mean token log-probability, against reference fine-tunes without the text",
        "Carlini et al., IEEE S&P 2022",
        _TEXT_REFERENCES + "fine-tunes without each text",
        _REFS,
    ),
    (
        "text_rmia_online",
        rmia_scores(True),
        "RMIA (online) on the per-token geometric-mean likelihood, against reference fine-tunes and population texts",
        "Zarifzadeh et al., ICML 2024",
        _TEXT_REFERENCES + "fine-tunes and population texts",
        _REFS | {Need.POPULATION},
    ),
    (
        "text_rmia_offline",
        rmia_scores(False),
        "RMIA (offline) on the per-token geometric-mean likelihood, against reference fine-tunes without the text",
        "Zarifzadeh et al., ICML 2024",
        _TEXT_REFERENCES + "fine-tunes without each text and population texts",
        _REFS | {Need.POPULATION},
    ),
)


def _register_text_attacks() -> None:
    """Language models on texts (docs/method.md §13): one score per pool record."""
    for name, score, description, citation, knows, needs in _TEXT_ATTACKS:
        register_attack(
            AttackSpec(
                name=name,
                family=Family.REFERENCE if needs or name == "reference_ratio" else Family.THRESHOLD,
                signal_kind=SignalKind.SEQUENCE_SIGNALS,
                run=_scores(score),
                description=description,
                citation=citation,
                attacker_knows=knows,
                needs=needs,
            )
        )


def _qmia_fit(x: OutputSignals) -> Callable[[OutputSignals], AttackScores]:
    """QMIA fitted once on the population; its scorer reads any records (``qmia``'s ``fit``)."""
    pop = x.population
    assert pop is not None and pop.features is not None  # fit_outputs checked the needs
    model = fit_qmia(
        pop.signals["scaled_logit"],
        pop.features,
        pop.labels,
        seed=x.seed,
        image_shape=x.image_shape,
    )

    def score(y: OutputSignals) -> AttackScores:
        assert y.features is not None
        return AttackScores(model.score(y.signals["scaled_logit"], y.features, y.labels))

    return score


def _qmia(x: OutputSignals) -> AttackScores:
    assert x.population is not None and x.features is not None  # the runner checks the needs
    pop = x.population
    assert pop.features is not None
    return AttackScores(
        qmia_scores(
            x.signals["scaled_logit"],
            x.features,
            x.labels,
            pop.signals["scaled_logit"],
            pop.features,
            pop.labels,
            seed=x.seed,
            image_shape=x.image_shape,
        )
    )


def _register_population_attacks() -> None:
    register_attack(
        AttackSpec(
            name="qmia",
            family=Family.THRESHOLD,
            signal_kind=SignalKind.MODEL_OUTPUTS,
            run=_qmia,
            fit=_qmia_fit,
            description="φ standardised by its non-member mean and scale, predicted from the record's features and label by gradient boosting (a small CNN for images) fitted on population records",
            citation="Bertran et al., NeurIPS 2023",
            attacker_knows="the model's outputs and true label, the record's features, and the model's outputs on population records (known non-members); no reference model",
            needs=frozenset({Need.LABELS, Need.FEATURES, Need.POPULATION}),
            signals=("scaled_logit",),
        )
    )


def _register_combined() -> None:
    _reference(
        "combined",
        Family.REFERENCE,
        lambda s: CombinedAttack(variance=s.variance),
        "online and offline LiRA and offline RMIA combined by a logistic stacker fitted on the reference models' membership only (each reference playing the target in turn)",
        "stacking as in Wolpert, Neural Networks 1992; components Carlini et al., S&P 2022 and Zarifzadeh, Liu, Shokri, ICML 2024",
        _KNOWS_RECIPE + "trains reference models with and without each record (2k models)",
    )


def register_builtin_attacks() -> None:
    """Register miaudit's attacks (once, when :mod:`miaudit.attacks` is imported)."""
    _register_thresholds()
    _register_reference_attacks()
    _register_shrunk_lira()
    _register_query_attacks()
    _register_population_attacks()
    _register_combined()
    _register_text_attacks()
