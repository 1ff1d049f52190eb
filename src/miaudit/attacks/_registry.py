"""One registry of attacks: what each needs, what it costs, how the report words it, and how to run it.

Every layer that knows attacks by name (config validation, the two audit runners, the report's
attacker profiles, the CLI's defaults, the contract tests) reads it from here, so a new attack is
one :func:`register_attack` call (CONTRIBUTING.md). An :class:`AttackSpec` *describes* an attack;
its ``run`` callable computes the scores, with one calling convention per :class:`SignalKind`:

- ``MODEL_OUTPUTS``: ``run(OutputSignals) -> AttackScores``; the runner computes the per-record
  signals named in ``spec.signals`` (:data:`miaudit.signals.SIGNALS`) from one model's outputs
  (or from what an output policy exposes) and hands them over as (n,) arrays.
- ``REFERENCE_OUTPUTS``: ``run(ReferenceSettings) -> ReferenceAttack`` (a built-in LiRA, RMIA or
  shadow attack, or any :class:`~miaudit.attacks.PairScorer`); the runner scores it with
  :func:`~miaudit.attacks.leave_one_model_out_each` on a signals store.
- ``ORACLE_QUERIES``: ``run(QueryInputs) -> QueryAttackResult``; the attack queries an
  :class:`~miaudit.attacks.Oracle` itself.
- ``SEQUENCE_SIGNALS``: ``run(SequenceInputs) -> AttackScores``, one score per pool record of a
  :class:`~miaudit.signals.SequenceStore` (language models on texts, docs/method.md §13).

:func:`score_outputs`, :func:`reference_attack` and :func:`score_queries` are those runners'
single entry points: they check the inputs (one-line :class:`~miaudit.errors.InputError` naming
the input) and the shape of what the attack returns.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

import numpy as np

from miaudit.attacks._label_only import QueryAttackResult
from miaudit.attacks._lira import Variance
from miaudit.attacks._oracle import Oracle
from miaudit.attacks._reference import ReferenceAttack, check_reference_attack
from miaudit.attacks._text import SequenceInputs
from miaudit.defenses import OutputPolicy, computable_signals
from miaudit.errors import InputError
from miaudit.signals import SIGNALS

#: The attack every other is compared with (paired differences) and the report's proxy of the
#: generalisation gap: the loss attack (Yeom et al., CSF 2018).
BASELINE_ATTACK = "loss"


class Family(StrEnum):
    """How an attack decides (the report and the docs group attacks by it)."""

    THRESHOLD = "threshold"  # one signal of the audited model's output, one threshold
    REFERENCE = "reference"  # the signal compared with reference models' (LiRA, RMIA)
    SHADOW = "shadow"  # a classifier trained on shadow models' outputs
    LABEL_ONLY = "label-only"  # predicted labels of many queries per record


class SignalKind(StrEnum):
    """What an attack consumes; fixes the calling convention of :attr:`AttackSpec.run`."""

    MODEL_OUTPUTS = "model outputs"  # one model's output vector per record
    REFERENCE_OUTPUTS = "reference-model outputs"  # the target's and reference models' outputs
    ORACLE_QUERIES = "oracle queries"  # many queries per record through an output policy
    SEQUENCE_SIGNALS = "sequence signals"  # language models' per-token statistics on texts


class Need(StrEnum):
    """Inputs beyond the audited model's outputs on the records."""

    LABELS = "labels"  # the records' true classes
    KNOWN_MEMBERS = "known members"  # records of known membership to calibrate on (cross-fitted)
    REFERENCES = "reference models"  # models trained offline with the target's recipe
    POPULATION = "population"  # records no model trained on
    FEATURES = "features"  # the records' features (e.g. a regressor over them: QMIA)
    ORACLE = "oracle"  # query access to the model


@dataclass(frozen=True)
class QueryCost:
    """Queries per record as the report prints them; ``hungry``: many per record (monitoring sees it)."""

    per_record: str = "1"
    hungry: bool = False


@dataclass(frozen=True)
class AttackSpec:
    """One attack: its description (for config validation, the runners and the report) and its callable.

    ``signals``: the per-record signals a ``MODEL_OUTPUTS`` attack reads (it is refused under an
    output policy that hides one of them). ``description`` and ``citation`` are the report's
    wording of the attack; ``attacker_knows`` what the simulated attacker must know.
    ``order_invariant``: permuting the records permutes the scores exactly; False for attacks
    whose randomness is drawn by record position (cross-fitting folds, noise draws), which are
    invariant only in distribution. ``fit``: for a ``MODEL_OUTPUTS`` attack that fits on the
    population (:attr:`Need.POPULATION`), ``run`` split in two: ``fit(inputs)`` reads only
    ``inputs.population``, ``seed`` and ``image_shape`` and returns a scorer of any records'
    :class:`OutputSignals` (given without population or members; their seed and image shape
    are the fit's), with ``run(x)`` equal to ``fit(x)(x)`` (:func:`fit_outputs`).
    """

    name: str
    family: Family
    signal_kind: SignalKind
    run: Callable[..., object]
    description: str
    citation: str
    attacker_knows: str
    needs: frozenset[Need] = frozenset({Need.LABELS})
    signals: tuple[str, ...] = ()
    query_cost: QueryCost = field(default_factory=QueryCost)
    order_invariant: bool = True
    fit: Callable[[OutputSignals], Callable[[OutputSignals], object]] | None = None

    @property
    def label_only(self) -> bool:
        """Whether the attack needs only predicted labels (so output restriction cannot stop it)."""
        if self.signal_kind is SignalKind.ORACLE_QUERIES:
            return True
        return bool(self.signals) and set(self.signals) <= set(computable_signals("label-only"))

    @property
    def trains_offline(self) -> bool:
        """Whether the attacker trains reference or shadow models before querying."""
        return Need.REFERENCES in self.needs


# --- calling conventions -------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class OutputSignals:
    """Input of a ``MODEL_OUTPUTS`` attack: per-record signals of one model's outputs.

    ``signals``: at least the spec's signals, each (n,) float64. ``member``: known membership
    (1 = member), given to attacks that need :attr:`Need.KNOWN_MEMBERS` (they must cross-fit:
    never score a record with a rule fitted on its own membership). ``seed``: the attack's
    randomness (e.g. fold assignment).
    """

    signals: Mapping[str, np.ndarray]
    labels: np.ndarray
    member: np.ndarray | None = None
    seed: np.random.SeedSequence | int = 0
    #: (n, d) features of the records, for attacks that need :attr:`Need.FEATURES`.
    features: np.ndarray | None = None
    #: The same model's signals on known non-members, for attacks that need
    #: :attr:`Need.POPULATION` (never records that are scored).
    population: PopulationSignals | None = None
    #: (channels, height, width) when the features are flat images (QMIA then regresses with a
    #: small CNN). With query views, a population attack takes signals (n, Q) and features
    #: (n, Q, d), here and in :attr:`population`.
    image_shape: tuple[int, int, int] | None = None


@dataclass(frozen=True, eq=False)
class PopulationSignals:
    """One model's per-record signals on population records (known non-members of the model):
    ``signals`` as in :class:`OutputSignals`, their ``labels`` and (for :attr:`Need.FEATURES`)
    their (n_pop, d) ``features``."""

    signals: Mapping[str, np.ndarray]
    labels: np.ndarray
    features: np.ndarray | None = None


@dataclass(frozen=True)
class DecisionRule:
    """One operating point an attack chose itself (e.g. Song–Mittal per-class thresholds)."""

    rule: str
    tpr: float
    fpr: float


@dataclass(frozen=True, eq=False)
class AttackScores:
    """Output of a ``MODEL_OUTPUTS`` attack: (n,) float64 scores, higher = member."""

    score: np.ndarray
    operating_point: DecisionRule | None = None


@dataclass(frozen=True)
class ReferenceSettings:
    """The audit config's settings of the reference attacks (``[audit]`` and ``seed``)."""

    variance: Variance = "global"
    gamma: float = 1.0
    a: float | None = None
    seed: int = 0


@dataclass(frozen=True, eq=False)
class QueryInputs:
    """Input of an ``ORACLE_QUERIES`` attack: the oracle, the records and their labels.

    ``scale``: per-feature scale of distances and noise (tabular); ``augmentations``: the
    recipe's query views (images); ``sigma``: noise in units of ``scale``; ``budget``: queries
    per record the attack may spend (noise draws, boundary-search queries), None for its default.
    """

    oracle: Oracle
    records: np.ndarray
    labels: np.ndarray
    rng: np.random.Generator | int = 0
    scale: np.ndarray | float | None = None
    augmentations: Sequence[Callable[[np.ndarray], np.ndarray]] = ()
    sigma: float = 0.5
    budget: int | None = None


# --- the registry --------------------------------------------------------------------------------

_REGISTRY: dict[str, AttackSpec] = {}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _check_spec(spec: AttackSpec) -> None:
    if not isinstance(spec, AttackSpec):
        raise InputError("spec", f"must be an AttackSpec, got {type(spec).__name__}")
    if not _NAME.match(spec.name):
        raise InputError("spec.name", f"must be lower_snake_case, got {spec.name!r}")
    if not callable(spec.run):
        raise InputError("spec.run", f"{spec.name}: must be callable")
    unknown = sorted(set(spec.signals) - set(SIGNALS))
    if unknown:
        raise InputError(
            "spec.signals", f"{spec.name}: unknown signals {unknown}; known: {SIGNALS}"
        )
    if spec.signal_kind is SignalKind.MODEL_OUTPUTS and not spec.signals:
        raise InputError("spec.signals", f"{spec.name}: a model-outputs attack names its signals")
    if spec.fit is not None and not (
        callable(spec.fit)
        and spec.signal_kind is SignalKind.MODEL_OUTPUTS
        and Need.POPULATION in spec.needs
        and Need.KNOWN_MEMBERS not in spec.needs
    ):
        raise InputError(
            "spec.fit",
            f"{spec.name}: only a callable, for a model-outputs attack that fits on the population without known members",
        )


def register_attack(spec: AttackSpec, *, replace: bool = False) -> AttackSpec:
    """Add ``spec`` to the registry (after the attacks already there); returns it.

    A name already registered is an :class:`~miaudit.errors.InputError` unless ``replace``
    (which keeps the attack's place in the order).
    """
    _check_spec(spec)
    if spec.name in _REGISTRY and not replace:
        raise InputError(
            "spec.name", f"attack {spec.name!r} is already registered; pass replace=True"
        )
    _REGISTRY[spec.name] = spec
    return spec


def unregister_attack(name: str) -> AttackSpec:
    """Remove a registered attack and return its spec (e.g. to undo a test's registration)."""
    return _REGISTRY.pop(attack_spec(name).name)


def attack_spec(name: str) -> AttackSpec:
    """The registered attack ``name``; an unknown name is an InputError listing the known ones."""
    spec = _REGISTRY.get(name)
    if spec is None:
        raise InputError("attack", f"unknown attack {name!r}; known: {', '.join(_REGISTRY)}")
    return spec


def registered_attacks(
    *, family: Family | None = None, signal_kind: SignalKind | None = None
) -> tuple[AttackSpec, ...]:
    """Every registered attack in registration order, optionally of one family or signal kind."""
    return tuple(
        s
        for s in _REGISTRY.values()
        if (family is None or s.family is family)
        and (signal_kind is None or s.signal_kind is signal_kind)
    )


def output_attacks_under(policy: OutputPolicy | str) -> tuple[str, ...]:
    """The ``MODEL_OUTPUTS`` attacks whose signals survive an output policy.

    Examples
    --------
    >>> output_attacks_under("label-only")
    ('gap', 'gap_by_class')
    """
    allowed = set(computable_signals(policy))
    return tuple(
        s.name
        for s in registered_attacks(signal_kind=SignalKind.MODEL_OUTPUTS)
        if set(s.signals) <= allowed
    )


# --- the runners' entry points --------------------------------------------------------------------


def _kind(spec: AttackSpec, kind: SignalKind) -> None:
    if spec.signal_kind is not kind:
        raise InputError("attack", f"{spec.name} consumes {spec.signal_kind}, not {kind}")


@dataclass(frozen=True)
class _PopulationShape:
    """What records scored against a checked population must match: its query views and, for
    attacks that read features, its features' width."""

    views: tuple[int, ...]
    width: int | None


def _checked_signals(
    spec: AttackSpec, inputs: OutputSignals, *, fitted: _PopulationShape | None = None
) -> int:
    """The number of records, after checking every input the attack reads: the population's
    too, unless ``fitted`` gives the shape of one already checked (:func:`fit_outputs`)."""
    labels = np.asarray(inputs.labels)
    if labels.ndim != 1:
        raise InputError("labels", f"must be (records,), got shape {labels.shape}")
    checked_image_shape(inputs.image_shape)
    n = int(labels.shape[0])
    views = _views(spec, inputs.signals) if fitted is None else fitted.views
    for name in spec.signals:
        if name not in inputs.signals:
            raise InputError("signals", f"{spec.name} needs the {name!r} signal")
        value = np.asarray(inputs.signals[name])
        if value.shape != (n, *views):
            want = ", ".join(str(v) for v in (n, *views))
            raise InputError(f"signals[{name!r}]", f"has shape {value.shape}, expected ({want},)")
        _numeric_without_nan(f"signals[{name!r}]", value)
    if Need.KNOWN_MEMBERS in spec.needs:
        member = inputs.member
        if member is None:
            raise InputError("member", f"{spec.name} calibrates on records of known membership")
        if np.shape(member) != (n,) or not np.isin(member, (0, 1)).all():
            raise InputError("member", f"must be ({n},) with values 0/1")
    width = None
    if Need.FEATURES in spec.needs:
        width = _checked_features(spec, "features", inputs.features, n, views)
    if Need.POPULATION in spec.needs:
        shape = fitted or _PopulationShape(
            views, _checked_population(spec, inputs.population, views)
        )
        if width is not None and shape.width is not None and width != shape.width:
            raise InputError(
                "population.features",
                f"has {shape.width} columns, the audited records' features {width}",
            )
    return n


def _numeric_without_nan(what: str, value: np.ndarray) -> None:
    if value.dtype.kind not in "biuf":
        raise InputError(what, f"must be numeric, got dtype {value.dtype}")
    if np.isnan(value).any():
        raise InputError(what, "contains NaN")


def checked_image_shape(shape: object) -> tuple[int, int, int] | None:
    """``shape`` as (C, H, W), three positive integers (a list or any integer type will do);
    None stays None."""
    if shape is None:
        return None
    dims = list(shape) if isinstance(shape, tuple | list | np.ndarray) else []
    ints = [int(d) for d in dims if isinstance(d, int | np.integer) and not isinstance(d, bool)]
    if len(dims) != 3 or len(ints) != 3 or min(ints) <= 0:
        raise InputError(
            "image_shape", f"must be (C, H, W): three positive integers, got {shape!r}"
        )
    return (ints[0], ints[1], ints[2])


def _views(spec: AttackSpec, signals: Mapping[str, np.ndarray]) -> tuple[int, ...]:
    """(Q,) when a population attack is given Q query views per record (signals (n, Q)), else ()."""
    if Need.POPULATION not in spec.needs or not spec.signals:
        return ()
    first = np.asarray(signals.get(spec.signals[0], np.zeros(0)))
    return tuple(first.shape[1:2]) if first.ndim == 2 else ()


def _checked_features(
    spec: AttackSpec, what: str, features: np.ndarray | None, n: int, views: tuple[int, ...] = ()
) -> int:
    """The features' width, after checking they are (n, d) — (n, Q, d) with Q views —
    numeric and finite."""
    if features is None:
        raise InputError(what, f"{spec.name} needs the records' features")
    f = np.asarray(features)
    if f.ndim != 2 + len(views) or f.shape[: 1 + len(views)] != (n, *views):
        want = ", ".join(str(v) for v in (n, *views, "d"))
        raise InputError(what, f"must be (records, features) = ({want}), got shape {f.shape}")
    if f.dtype.kind not in "biuf":
        raise InputError(what, f"must be numeric, got dtype {f.dtype}")
    if not np.isfinite(f).all():
        raise InputError(what, "contains NaN or inf")
    return int(f.shape[-1])


def _checked_population(
    spec: AttackSpec, pop: PopulationSignals | None, views: tuple[int, ...]
) -> int | None:
    """The population's features' width (None for an attack that reads no features), after
    checking its labels, signals (with ``views``) and features."""
    if pop is None:
        raise InputError("population", f"{spec.name} needs population records (known non-members)")
    labels = np.asarray(pop.labels)
    if labels.ndim != 1 or labels.size == 0:
        raise InputError(
            "population.labels", f"must be (records,) and non-empty, got {labels.shape}"
        )
    m = int(labels.shape[0])
    for name in spec.signals:
        value = np.asarray(pop.signals.get(name, np.zeros(0)))
        if value.shape != (m, *views):
            want = ", ".join(str(v) for v in (m, *views))
            raise InputError(
                f"population.signals[{name!r}]", f"has shape {value.shape}, expected ({want},)"
            )
        _numeric_without_nan(f"population.signals[{name!r}]", value)
    if Need.FEATURES not in spec.needs:
        return None
    return _checked_features(spec, "population.features", pop.features, m, views)


def score_outputs(name: str, inputs: OutputSignals) -> AttackScores:
    """Run the ``MODEL_OUTPUTS`` attack ``name`` on per-record signals; scores are (n,) float64.

    ``inputs.member`` reaches only attacks that declare :attr:`Need.KNOWN_MEMBERS`.
    """
    spec = attack_spec(name)
    _kind(spec, SignalKind.MODEL_OUTPUTS)
    n = _checked_signals(spec, inputs)
    if Need.KNOWN_MEMBERS not in spec.needs:  # membership is the answer: only calibrators see it
        inputs = replace(inputs, member=None)
    if Need.POPULATION not in spec.needs:
        inputs = replace(inputs, population=None)
    return _checked_scores(name, spec.run(inputs), n)


def _checked_scores(name: str, out: object, n: int) -> AttackScores:
    if not isinstance(out, AttackScores):
        raise TypeError(f"attack {name!r} returned {type(out).__name__}, not AttackScores")
    if np.shape(out.score) != (n,):
        raise ValueError(f"attack {name!r} returned shape {np.shape(out.score)} for {n} records")
    return out


def fit_outputs(
    name: str,
    population: PopulationSignals,
    *,
    seed: np.random.SeedSequence | int = 0,
    image_shape: tuple[int, int, int] | None = None,
) -> Callable[[OutputSignals], AttackScores]:
    """Fit the population attack ``name`` once on ``population`` and return a scorer of any
    records' :class:`OutputSignals`.

    Each record's score equals :func:`score_outputs`' on inputs holding it with this population,
    seed and image shape, so records can be scored a chunk at a time (an audit makes a chunk's
    augmented query views at a time instead of every record's at once). A chunk is checked as
    :func:`score_outputs` checks its records, with the population's views and feature width; it
    may carry no population but this very object, nor another image shape (the fit's are used,
    and its seed).
    """
    spec = attack_spec(name)
    _kind(spec, SignalKind.MODEL_OUTPUTS)
    if spec.fit is None:
        raise InputError("attacks", f"{name} does not fit on population records")
    image_shape = checked_image_shape(image_shape)
    views = _views(spec, population.signals)
    shape = _PopulationShape(views, _checked_population(spec, population, views))
    scorer = spec.fit(  # no records: the fit reads the population, the seed and image shape
        OutputSignals(
            {},
            np.zeros(0, dtype=np.int64),
            seed=seed,
            population=population,
            image_shape=image_shape,
        )
    )

    def score(inputs: OutputSignals) -> AttackScores:
        if inputs.population is not None and inputs.population is not population:
            raise InputError("population", f"{name} was fitted on another population")
        given = inputs.image_shape
        if given is not None and (image_shape is None or tuple(given) != tuple(image_shape)):
            raise InputError("image_shape", f"{given} differs from the fit's {image_shape}")
        chunk = replace(inputs, member=None, seed=seed, population=None, image_shape=image_shape)
        n = _checked_signals(spec, chunk, fitted=shape)
        return _checked_scores(name, scorer(chunk), n)

    return score


def reference_attack(name: str, settings: ReferenceSettings) -> ReferenceAttack:
    """The ``REFERENCE_OUTPUTS`` attack ``name`` as ``settings`` configure it.

    To score with :func:`~miaudit.attacks.leave_one_model_out_each` or
    :func:`~miaudit.attacks.score_target`.
    """
    spec = attack_spec(name)
    _kind(spec, SignalKind.REFERENCE_OUTPUTS)
    return check_reference_attack(spec.run(settings))


def score_queries(name: str, inputs: QueryInputs) -> QueryAttackResult:
    """Run the ``ORACLE_QUERIES`` attack ``name`` through ``inputs.oracle``."""
    spec = attack_spec(name)
    _kind(spec, SignalKind.ORACLE_QUERIES)
    records = np.asarray(inputs.records)
    if records.dtype.kind in "fc" and not np.isfinite(records).all():
        raise InputError("records", "must be finite")
    out = spec.run(inputs)
    if not isinstance(out, QueryAttackResult):
        raise TypeError(f"attack {name!r} returned {type(out).__name__}, not QueryAttackResult")
    return out


def score_sequences(name: str, inputs: SequenceInputs) -> AttackScores:
    """Run the ``SEQUENCE_SIGNALS`` attack ``name``: (pool records,) float64 scores."""
    spec = attack_spec(name)
    _kind(spec, SignalKind.SEQUENCE_SIGNALS)
    if not isinstance(inputs, SequenceInputs):
        raise InputError("inputs", f"must be SequenceInputs, got {type(inputs).__name__}")
    n = int((~inputs.store.population).sum())
    out = spec.run(inputs)
    if not isinstance(out, AttackScores):
        raise TypeError(f"attack {name!r} returned {type(out).__name__}, not AttackScores")
    if np.shape(out.score) != (n,):
        raise ValueError(f"attack {name!r} returned shape {np.shape(out.score)} for {n} records")
    return out
