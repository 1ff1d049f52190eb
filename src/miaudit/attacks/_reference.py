"""Run a reference-model attack on a multi-model signals store (docs/method.md §3, §4).

Two ways to score, both pure (a :class:`~miaudit.data.SignalsStore` in, a
:class:`PairedScores` out, no file I/O):

- :func:`score_target`: one audited model (``store.target`` or an explicit index) against the
  other models as references;
- :func:`leave_one_model_out`: every model takes a turn as the target and the others serve as
  references (the evaluation trick of the LiRA and RMIA reference code), giving K × n scored
  (model, record) pairs, enough to measure TPR at low FPR on small data.

**Default references.** By default a target's references are all other models *except its
complementary partner*: a model whose keep row is the exact negation of the target's on the
evaluated records (models 2j and 2j+1 of complementary pairs, docs/method.md §3). That model's
membership is a function of the target's, so keeping it leaks the label: every member of the
target has one more OUT reference and one fewer IN reference than every non-member. Measured
on simulated stores (8 models in 4 pairs, 1,500 records, 0.5 the truth): a target whose outputs
carry no trace of its training set got online RMIA AUC 0.545 with its partner among the
references and 0.506 without (means of 6 seeds); with no signal anywhere, pooled
leave-one-model-out online LiRA got AUC 0.463 with partners and 0.498 without. Pass explicit
references to choose otherwise. Without the partner every record has exactly K/2 − 1 IN and
K/2 − 1 OUT references when the store is made of complementary pairs.

Records in the store's population mask are RMIA's z records: they enter RMIA's comparison and
are excluded from the evaluated pairs of every attack. Signals come from the stored logits:
φ (scaled logit) for LiRA with every augmentation query; p_y at the attack's temperature for
RMIA on every query too (RMIA's scores averaged over queries); the logits for the shadow attacks
from the first (un-augmented) query.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from miaudit.attacks._lira import OfflineStatistic, Variance, _within, lira_offline, lira_online
from miaudit.attacks._partners import complementary_partners
from miaudit.attacks._rmia import (
    DEFAULT_A,
    calibrate_rmia_a,
    rmia_offline,
    rmia_online,
    rmia_probability,
)
from miaudit.attacks._shadow import ml_leaks, shadow_attack
from miaudit.attacks._shrinkage import lira_shrunk_offline, lira_shrunk_online
from miaudit.data import CHUNK_RECORDS, SignalsStore, is_mapped, release
from miaudit.errors import InputError
from miaudit.signals import compute_signals

Setting = Literal["online", "offline"]


@dataclass(frozen=True)
class LiraAttack:
    """LiRA (Carlini et al., S&P 2022); see :func:`lira_online` and :func:`lira_offline`.

    ``statistic`` applies to the offline setting only.
    """

    mode: Setting = "online"
    variance: Variance = "global"
    statistic: OfflineStatistic = "z"
    #: Empirical-Bayes shrinkage of each record's Gaussians (``variance`` and ``statistic`` then
    #: unused): :func:`~miaudit.attacks.lira_shrunk_online`, docs/method.md §12.
    shrink: bool = False


@dataclass(frozen=True)
class RmiaAttack:
    """RMIA (Zarifzadeh, Liu, Shokri, ICML 2024); see :func:`rmia_online`, :func:`rmia_offline`.

    Offline with ``a=None`` calibrates ``a`` for each target by cross-fitting
    (:func:`cross_fitted_rmia_a`): on the store's models outside the target's complementary
    pair, never on the target's own membership.
    With one reference pair (k = 1) nothing lies outside to calibrate on, and ``a`` is the
    stated default :data:`~miaudit.attacks._rmia.DEFAULT_A` (0.33).
    """

    mode: Setting = "offline"
    a: float | None = None
    gamma: float = 1.0
    trim: float = 0.0
    temperature: float = 1.0


@dataclass(frozen=True)
class ShadowAttack:
    """Shokri et al. (S&P 2017); the references are the shadow models. See :func:`shadow_attack`.

    Costs one set of per-class classifiers per target, fit on (references × records) rows.
    """

    seed: int = 0
    max_iter: int = 100


@dataclass(frozen=True)
class MlLeaksAttack:
    """ML-Leaks (Salem et al., NDSS 2019); the shadow is the reference that follows the target
    cyclically (never a model whose own shadow is the target, unless only one other pair exists)."""

    seed: int = 0
    max_iter: int = 100


@runtime_checkable
class PairScorer(Protocol):
    """A reference attack beyond the built-in four (e.g. one registered by a plugin).

    ``score_pairs`` scores ``records`` (store positions, never population records) against
    model ``target`` with ``references`` as reference models, higher = member; it must not read
    the target's keep row. ``needs_in`` / ``needs_out``: a record whose references include no
    IN (OUT) model is left undefined (NaN) instead of being scored.
    """

    needs_in: bool
    needs_out: bool

    def score_pairs(
        self, store: SignalsStore, target: int, references: np.ndarray, records: np.ndarray
    ) -> np.ndarray: ...


ReferenceAttack = LiraAttack | RmiaAttack | ShadowAttack | MlLeaksAttack | PairScorer


@dataclass(frozen=True, eq=False)
class PairedScores:
    """Scores of (target model, record) pairs, with their membership.

    Attributes
    ----------
    scores : ndarray of shape (T, m), float64
        ``scores[t, j]``: the attack's score of record ``records[j]`` against model
        ``targets[t]``; higher means more likely a member. NaN where the target's references
        lack what the attack needs for that record (an IN model for online LiRA, an OUT model
        for the offline attacks): never with complementary pairs.
    member : ndarray of shape (T, m), bool
        Whether model ``targets[t]`` trained on record ``records[j]`` (the store's keep).
    targets : ndarray of shape (T,), int64
        Model indices in the store.
    records : ndarray of shape (m,), int64
        Positions in the store of the evaluated records (the non-population records).
    """

    scores: np.ndarray
    member: np.ndarray
    targets: np.ndarray
    records: np.ndarray
    #: Offline RMIA with ``a=None``: the cross-fitted ``a`` used for each target (T,); else None.
    rmia_a: np.ndarray | None = None

    def pooled(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Flatten the defined pairs to ``(scores, member, record)`` for pooled evaluation (T·m
        of them when no score is NaN).

        ``record`` is the store position of each pair's record, so a bootstrap can resample
        records and keep all of a record's pairs together (docs/method.md §0).
        """
        t = self.scores.shape[0]
        scores, member, record = (
            self.scores.reshape(-1),
            self.member.reshape(-1),
            np.tile(self.records, t),
        )
        ok = ~np.isnan(scores)
        return (scores, member, record) if ok.all() else (scores[ok], member[ok], record[ok])


class _Signals:
    """Signals derived from the store once and shared by every target."""

    def __init__(self, store: SignalsStore) -> None:
        self.store = store
        self._phi: np.ndarray | None = None
        self._p: dict[tuple[float, int], np.ndarray] = {}
        self._a: dict[tuple[object, ...], float] = {}
        self._pair: dict[int, tuple[int, ...]] = {}

    def rmia_a(self, target: int, attack: RmiaAttack) -> float:
        """Offline RMIA's cross-fitted ``a`` for ``target`` (cached: a pair's two models share it)."""
        if target not in self._pair:
            self._pair[target] = tuple(_own_pair(self.store, target).tolist())
        excluded = self._pair[target]
        key = (excluded, attack.trim, attack.temperature)
        if key not in self._a:
            self._a[key] = _calibrate_outside(
                self.store, self.p(attack.temperature), np.asarray(excluded), attack.trim
            )
        return self._a[key]

    @property
    def n_queries(self) -> int:
        """Queries per record (augmented views; 1 for a store without a query axis)."""
        lg = self.store.logits
        return int(lg.shape[2]) if lg.ndim == 4 else 1

    def query_logits(self, query: int) -> np.ndarray:
        lg = self.store.logits
        return lg[:, :, query, :] if lg.ndim == 4 else lg

    def first_query_logits(self) -> np.ndarray:
        return self.query_logits(0)

    def phi(self) -> np.ndarray:
        """(K, n) or (K, n, A) scaled logits."""
        if self._phi is None:
            lg = self.store.logits
            y = np.broadcast_to(
                self.store.label[:, None] if lg.ndim == 4 else self.store.label, lg.shape[:-1]
            )
            if is_mapped(lg):  # a store larger than memory: chunks of records, pages released
                self._phi = np.empty(lg.shape[:-1], dtype=np.float64)
                for lo in range(0, lg.shape[1], CHUNK_RECORDS):
                    hi = lo + CHUNK_RECORDS
                    self._phi[:, lo:hi] = compute_signals(
                        lg[:, lo:hi], y[:, lo:hi], which=("scaled_logit",)
                    )["scaled_logit"]
                    release(lg)
            else:
                self._phi = compute_signals(lg, y, which=("scaled_logit",))["scaled_logit"]
        return self._phi

    def p(self, temperature: float, query: int = 0) -> np.ndarray:
        """(K, n) p_y of one query (the first: the un-augmented view) at a temperature."""
        key = (temperature, query)
        if key not in self._p:
            self._p[key] = rmia_probability(
                self.query_logits(query), self.store.label, temperature=temperature
            )
        return self._p[key]


def _needs(attack: ReferenceAttack) -> tuple[bool, bool]:
    """(needs an IN reference, needs an OUT reference) for every scored record."""
    if isinstance(attack, LiraAttack):
        return attack.mode == "online", True
    if isinstance(attack, RmiaAttack):
        return False, attack.mode == "offline"
    if isinstance(attack, PairScorer):
        return bool(attack.needs_in), bool(attack.needs_out)
    return False, False


def reads_balanced_references(attack: ReferenceAttack) -> bool:
    """Whether the attack fits on a ``use`` mask (:func:`leave_one_model_out_each`'s
    ``online_use``): online LiRA, plain or shrunk, whose score's null distribution depends on
    how many IN and OUT values a record has, and offline LiRA and RMIA, whose OUT estimate is
    noisier for the side with fewer OUT values (docs/method.md §3, "Balanced references": their
    TPR at 1 % FPR read 0.7 % on null data where the design ties the counts to membership).
    Shrunk offline LiRA borrows strength across records and was unaffected."""
    if isinstance(attack, LiraAttack):
        return attack.mode == "online" or not attack.shrink
    return isinstance(attack, RmiaAttack) and attack.mode == "offline"


def _score_one(
    sig: _Signals,
    attack: ReferenceAttack,
    target: int,
    refs: np.ndarray,
    pool: np.ndarray,
    use: np.ndarray | None = None,
) -> np.ndarray:
    """Scores of the pool records against model ``target`` with ``refs`` as references.

    A record whose references lack what the attack needs (an IN model for online LiRA, an OUT
    model for the offline attacks) gets NaN: undefined, left out of the evaluation. Which records
    those are depends on the references' membership only, never on the target's, so leaving them
    out cannot leak the target's membership. Complementary pairs never leave a record undefined.
    ``use`` (refs × pool, for :func:`reads_balanced_references` attacks): the reference values the fit may read.
    """
    need_in, need_out = _needs(attack)
    if need_in or need_out:
        r_keep = sig.store.keep[np.ix_(refs, pool)]
        ok = np.ones(pool.size, dtype=bool)
        if need_in:
            ok &= _within(r_keep, use).any(axis=0)
        if need_out:
            ok &= _within(~r_keep, use).any(axis=0)
        if not ok.all():
            out = np.full(pool.size, np.nan)
            if ok.any():
                part = None if use is None else use[:, ok]
                out[ok] = _score_defined(sig, attack, target, refs, pool[ok], part)
            return out
    return _score_defined(sig, attack, target, refs, pool, use)


def _score_defined(
    sig: _Signals,
    attack: ReferenceAttack,
    target: int,
    refs: np.ndarray,
    pool: np.ndarray,
    use: np.ndarray | None = None,
) -> np.ndarray:
    if isinstance(attack, PairScorer):
        out = np.asarray(attack.score_pairs(sig.store, target, refs, pool), dtype=np.float64)
        if out.shape != pool.shape:
            raise ValueError(f"{attack!r} returned shape {out.shape} for {pool.size} records")
        return out
    if isinstance(attack, LiraAttack):
        return _score_lira(sig, attack, target, refs, pool, use)
    if isinstance(attack, RmiaAttack):
        return _score_rmia(sig, attack, target, refs, pool, use)
    if isinstance(attack, ShadowAttack | MlLeaksAttack):
        return _score_shadow(sig, attack, target, refs, pool)
    raise InputError("attack", f"unknown reference attack {attack!r}")


def _score_lira(
    sig: _Signals,
    attack: LiraAttack,
    target: int,
    refs: np.ndarray,
    pool: np.ndarray,
    use: np.ndarray | None = None,
) -> np.ndarray:
    phi, keep = sig.phi(), sig.store.keep
    t_phi, r_phi, r_keep = phi[target][pool], phi[np.ix_(refs, pool)], keep[np.ix_(refs, pool)]
    if attack.shrink:
        return _score_shrunk(sig, attack, refs, pool, (t_phi, r_phi, r_keep), use)
    if attack.mode == "online":
        return lira_online(t_phi, r_phi, r_keep, variance=attack.variance, use=use)
    return lira_offline(
        t_phi, r_phi, r_keep, variance=attack.variance, statistic=attack.statistic, use=use
    )


def _score_shrunk(
    sig: _Signals,
    attack: LiraAttack,
    refs: np.ndarray,
    pool: np.ndarray,
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray],
    use: np.ndarray | None = None,
) -> np.ndarray:
    """Shrunk LiRA: the prior also sees the references on the population (all OUT there)."""
    store, (t_phi, r_phi, r_keep) = sig.store, arrays
    pop = np.flatnonzero(store.population)
    extra = (
        {"population_phi": sig.phi()[np.ix_(refs, pop)], "population_labels": store.label[pop]}
        if pop.size
        else {}
    )
    if attack.mode == "online":
        return lira_shrunk_online(t_phi, r_phi, r_keep, labels=store.label[pool], use=use, **extra)
    return lira_shrunk_offline(t_phi, r_phi, r_keep, labels=store.label[pool], **extra)


def _score_rmia(
    sig: _Signals,
    attack: RmiaAttack,
    target: int,
    refs: np.ndarray,
    pool: np.ndarray,
    use: np.ndarray | None = None,
) -> np.ndarray:
    """RMIA on each query (augmented view) of the store, the scores averaged over queries —
    score-level averaging, as offline LiRA averages its standardised scores (docs/method.md).
    Offline ``a`` is calibrated on the first query and used for every query."""
    store = sig.store
    cols: slice | np.ndarray = slice(None)
    if pool.size + int(store.population.sum()) < store.n_records:  # some pool records left out
        cols = np.sort(np.concatenate([pool, np.flatnonzero(store.population)]))
    r_keep, pop = store.keep[refs][:, cols], store.population[cols]
    a = None
    full_use = None
    if attack.mode == "offline":
        a = sig.rmia_a(target, attack) if attack.a is None else attack.a
        if use is not None:  # the population columns (all OUT) are always used
            full_use = np.ones(r_keep.shape, dtype=bool)
            full_use[:, ~pop] = use
    total = np.zeros(int((~pop).sum()))
    for query in range(sig.n_queries):
        p = sig.p(attack.temperature, query)
        t_p, r_p = p[target][cols], p[refs][:, cols]
        if a is None:
            full = rmia_online(t_p, r_p, pop, gamma=attack.gamma, trim=attack.trim)
        else:
            full = rmia_offline(
                t_p, r_p, r_keep, pop, a=a, gamma=attack.gamma, trim=attack.trim, use=full_use
            )
        total += full[~pop]
    scored: np.ndarray = total / sig.n_queries
    return scored


def _score_shadow(
    sig: _Signals,
    attack: ShadowAttack | MlLeaksAttack,
    target: int,
    refs: np.ndarray,
    pool: np.ndarray,
) -> np.ndarray:
    store, logits = sig.store, sig.first_query_logits()
    keep = store.keep
    if isinstance(attack, ShadowAttack):
        labels = store.label[pool]
        return shadow_attack(
            logits[target][pool],
            labels,
            logits[refs][:, pool],
            labels,
            keep[refs][:, pool],
            seed=attack.seed,
            max_iter=attack.max_iter,
        )
    shadow = _next_after(target, refs, store.n_models)
    # The shadow's records are the target's: cross-fitted (see ml_leaks).
    return ml_leaks(
        logits[target][pool],
        logits[shadow][pool],
        keep[shadow][pool],
        seed=attack.seed,
        max_iter=attack.max_iter,
        folds=2,
    )


#: Calibration of ``a`` looks at no more pool records than this (an evenly spaced subset): ``a``
#: is chosen on a grid of 11 values, which this many records rank as well as a million do.
CALIBRATION_RECORDS = 100_000


def _own_pair(store: SignalsStore, target: int) -> np.ndarray:
    """The target and every model whose keep row is its complement on the pool (its partner)."""
    partner = complementary_partners(store.keep[:, ~store.population], target)
    partner[target] = True
    return np.flatnonzero(partner)


def _calibrate_outside(
    store: SignalsStore, p: np.ndarray, excluded: np.ndarray, trim: float
) -> float:
    others = np.setdiff1d(np.arange(store.n_models), excluded)
    pool = np.flatnonzero(~store.population)
    if others.size < 2 or _own_pair(store, int(others[0])).size >= others.size:
        return DEFAULT_A  # one reference pair (k = 1): nothing outside the target's pair to calibrate on
    if pool.size > CALIBRATION_RECORDS:
        pool = pool[np.linspace(0, pool.size - 1, CALIBRATION_RECORDS).round().astype(np.int64)]
    # The first model outside the pair plays the target; calibrate_rmia_a leaves its own
    # partner out of the references.
    return calibrate_rmia_a(
        p[np.ix_(others, pool)], store.keep[np.ix_(others, pool)], model=0, trim=trim
    )


def cross_fitted_rmia_a(
    store: SignalsStore, target: int, *, trim: float = 0.0, temperature: float = 1.0
) -> float:
    """Offline RMIA's ``a`` for ``target``, calibrated without the target's membership.

    Cross-fitting: :func:`~miaudit.attacks.calibrate_rmia_a` on the store's models outside the
    target's complementary pair (the target and its partner, whose membership mirrors the
    target's); the first of them plays the calibration target, the others are its references.
    Calibrating on a model that is itself audited with that ``a`` fits the choice to the noise
    of its own membership: with no signal anywhere (6 models, 200 stores;
    tests/audit/test_threat_model.py) the old calibration target's mean AUC was 0.5084 ± 0.0014
    and its partner's 0.4937 ± 0.0015 instead of 0.5. At most :data:`CALIBRATION_RECORDS` pool records (evenly
    spaced) are used. Where fewer than two models lie outside the target's pair (complementary
    pairs: fewer than three pairs, i.e. k = 1), nothing can be calibrated without the target's
    membership and the stated default :data:`~miaudit.attacks._rmia.DEFAULT_A` is returned.

    Raises
    ------
    InputError
        On a bad target index, or as :func:`calibrate_rmia_a` raises.
    """
    k = store.n_models
    if not (0 <= target < k):
        raise InputError("target", f"model {target} is outside [0, {k})")
    return _Signals(store).rmia_a(
        int(target), RmiaAttack(mode="offline", trim=trim, temperature=temperature)
    )


def _next_after(target: int, refs: np.ndarray, n_models: int) -> int:
    """ML-Leaks' one shadow: the reference that follows the target cyclically.

    Not simply the first reference: with default references that made models 0 and 1 each
    other's shadow, and a classifier trained on one target's membership then scores the other,
    so the two targets' errors coincide and pooled intervals, which resample records but not
    classifiers, are too narrow (null suite: coverage of AUC 0.5 0.83 in 200 seeds). Following
    the target cyclically leaves no such pair unless only one other pair exists.
    """
    return int(min(refs.tolist(), key=lambda m: (m - target) % n_models))


def check_reference_attack(attack: object) -> ReferenceAttack:
    """``attack`` if it is one of the reference attacks this module scores, else an InputError."""
    if not isinstance(attack, (LiraAttack, RmiaAttack, ShadowAttack, MlLeaksAttack, PairScorer)):
        raise InputError(
            "attack",
            f"must be LiraAttack, RmiaAttack, ShadowAttack, MlLeaksAttack or a PairScorer, got {type(attack).__name__}",
        )
    mode = getattr(attack, "mode", "online")
    if mode not in ("online", "offline"):
        raise InputError("attack.mode", f"must be 'online' or 'offline', got {mode!r}")
    return attack


def _default_references(store: SignalsStore, target: int) -> np.ndarray:
    """Every other model except the target's complementary partner(s)."""
    partner = complementary_partners(store.keep[:, ~store.population], target)
    partner[target] = True
    return np.flatnonzero(~partner)


def _reference_set(
    store: SignalsStore, target: int, references: Sequence[int] | None
) -> np.ndarray:
    k = store.n_models
    if not (0 <= target < k):
        raise InputError("target", f"model {target} is outside [0, {k})")
    refs = (
        _default_references(store, target)
        if references is None
        else np.asarray(list(references), dtype=np.int64)
    )
    if refs.size == 0:
        hint = (
            " (its complementary partner is never a default reference)"
            if references is None
            else ""
        )
        raise InputError("references", f"target model {target} has no reference models{hint}")
    if refs.min() < 0 or refs.max() >= k:
        raise InputError("references", f"reference indices must lie in [0, {k})")
    if np.unique(refs).size != refs.size:
        raise InputError("references", "reference indices repeat")
    if (refs == target).any():
        raise InputError("references", f"target model {target} cannot be its own reference")
    return refs


def _pool(store: SignalsStore) -> np.ndarray:
    pool = np.flatnonzero(~store.population)
    if pool.size == 0:
        raise InputError("population", "every record is a population record; nothing to evaluate")
    return pool


def score_target(
    store: SignalsStore,
    attack: ReferenceAttack,
    *,
    target: int | None = None,
    references: Sequence[int] | None = None,
) -> PairedScores:
    """Score the non-population records against one audited model.

    Parameters
    ----------
    store : SignalsStore
        Every model's logits on the records, the keep matrix and the population mask.
    attack : LiraAttack, RmiaAttack, ShadowAttack or MlLeaksAttack
    target : int, optional
        The audited model; by default ``store.target``.
    references : sequence of int, optional
        Reference models; by default every other model except the target's complementary
        partner (module docstring).

    Returns
    -------
    PairedScores
        With T = 1.

    Raises
    ------
    InputError
        When no target is given or stored, on bad indices, or as the attack itself raises
        (e.g. a record without an OUT reference).
    """
    check_reference_attack(attack)
    if target is None:
        if store.target is None:
            raise InputError("target", "the store names no target model; pass target=")
        target = store.target
    return leave_one_model_out_each(
        store,
        {"attack": attack},
        targets=[int(target)],
        reference_sets=None if references is None else [references],
    )["attack"]


def leave_one_model_out(
    store: SignalsStore,
    attack: ReferenceAttack,
    *,
    targets: Sequence[int] | None = None,
    reference_sets: Sequence[Sequence[int]] | None = None,
) -> PairedScores:
    """Each model in turn is the target; the others (or a given set) are its references.

    The evaluation used by the LiRA (Carlini et al., S&P 2022) and RMIA (Zarifzadeh et al.,
    ICML 2024) reference code: K targets × n records scored pairs for pooled evaluation.
    Bootstrap intervals should resample records (:meth:`PairedScores.pooled`).

    Parameters
    ----------
    store : SignalsStore
    attack : LiraAttack, RmiaAttack, ShadowAttack or MlLeaksAttack
    targets : sequence of int, optional
        Models that take a turn; by default all of them.
    reference_sets : sequence of sequences of int, optional
        ``reference_sets[t]``: the references of ``targets[t]`` (e.g. k complementary pairs
        for "k references"); by default every model other than the target and its
        complementary partner (module docstring).

    Returns
    -------
    PairedScores
        With T = len(targets).

    Raises
    ------
    InputError
        On bad indices or lengths, or as the attack itself raises.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> half = rng.random((2, 40)) < 0.5
    >>> keep = np.stack([half[0], ~half[0], half[1], ~half[1]])  # two complementary pairs
    >>> logits = (
    ...     rng.normal(size=(4, 40, 3)).astype(np.float32)
    ...     + 2.0 * keep[..., None] * np.eye(3)[rng.integers(0, 3, 40)]
    ... )
    >>> store = SignalsStore.from_arrays(
    ...     logits=logits, label=np.argmax(logits[0], axis=1), keep=keep
    ... )
    >>> leave_one_model_out(store, LiraAttack(mode="offline")).scores.shape
    (4, 40)
    """
    return leave_one_model_out_each(
        store, {"attack": attack}, targets=targets, reference_sets=reference_sets
    )["attack"]


def leave_one_model_out_each(
    store: SignalsStore,
    attacks: Mapping[str, ReferenceAttack],
    *,
    targets: Sequence[int] | None = None,
    reference_sets: Sequence[Sequence[int]] | None = None,
    online_use: Callable[[int], np.ndarray | None] | None = None,
) -> dict[str, PairedScores]:
    """:func:`leave_one_model_out` for several attacks (name → attack) on the same targets and
    references: the signals they derive from the store (LiRA's scaled logits, RMIA's p_y) are
    computed once and shared, which is most of the work on a large store.

    ``online_use(t)``, when given: for ``targets[t]``, a (references, evaluated records) bool
    mask of the reference values the attacks of :func:`reads_balanced_references` fit on, or
    None for all of them; called once per target and such attack (so it must be deterministic),
    never stored for all targets at once. The reference audit balances references with it
    (docs/method.md §3). Other attacks read every reference."""
    for attack in attacks.values():
        check_reference_attack(attack)
    k = store.n_models
    tlist = list(range(k)) if targets is None else [int(t) for t in targets]
    if not tlist:
        raise InputError("targets", "no target models")
    if reference_sets is not None and len(reference_sets) != len(tlist):
        raise InputError(
            "reference_sets", f"has {len(reference_sets)} entries for {len(tlist)} targets"
        )
    pool = _pool(store)
    refs = [
        _reference_set(store, t, None if reference_sets is None else reference_sets[i])
        for i, t in enumerate(tlist)
    ]
    sig = _Signals(store)
    member = store.keep[np.asarray(tlist)][:, pool]
    out = {}
    for name, attack in attacks.items():
        scores = np.empty((len(tlist), pool.size), dtype=np.float64)
        for i, t in enumerate(tlist):
            use = (
                online_use(i)
                if online_use is not None and reads_balanced_references(attack)
                else None
            )
            scores[i] = _score_one(sig, attack, t, refs[i], pool, use)
        cross_fitted = (
            isinstance(attack, RmiaAttack) and attack.mode == "offline" and attack.a is None
        )
        a = np.array([sig.rmia_a(t, attack) for t in tlist]) if cross_fitted else None  # type: ignore[arg-type]
        out[name] = PairedScores(scores, member, np.asarray(tlist, dtype=np.int64), pool, a)
    return out


def complementary_pairs(store: SignalsStore) -> list[tuple[int, int]]:
    """The store's complementary pairs: models i < j whose keep rows are each other's negation.

    On the evaluated (non-population) records; each model is in at most one pair (the first
    match). docs/method.md §3: with pairs, any k of them give every record exactly k IN and k
    OUT models.

    Examples
    --------
    >>> keep = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=bool)
    >>> store = SignalsStore.from_arrays(
    ...     logits=np.zeros((4, 3, 2)), label=np.zeros(3, int), keep=keep
    ... )
    >>> complementary_pairs(store)
    [(0, 1), (2, 3)]
    """
    pool = _pool(store)
    keep = store.keep[:, pool]
    taken: set[int] = set()
    pairs: list[tuple[int, int]] = []
    for i in range(store.n_models):
        if i in taken:
            continue
        partners = complementary_partners(keep, i)
        for j in range(i + 1, store.n_models):
            if j not in taken and bool(partners[j]):
                pairs.append((i, j))
                taken.update((i, j))
                break
    return pairs


def paired_reference_sets(
    store: SignalsStore, k: int, *, targets: Sequence[int] | None = None
) -> list[list[int]]:
    """Reference sets of k complementary pairs per target, for "k references" (docs/method.md §3).

    Each target's references are the k pairs that follow its own pair, cyclically in the order
    of :func:`complementary_pairs` (deterministic; the target's own pair is never used). Every
    evaluated record then has exactly k OUT references (offline "k references") and k IN ones
    (online, 2k models). Pass the result as ``reference_sets`` to :func:`leave_one_model_out`.

    Parameters
    ----------
    store : SignalsStore
        Every model must belong to a complementary pair.
    k : int
        Pairs per target, 1 ≤ k ≤ (number of pairs − 1).
    targets : sequence of int, optional
        By default every model.

    Returns
    -------
    list of list of int
        ``result[t]``: the 2k reference models of ``targets[t]``.

    Raises
    ------
    InputError
        When a model has no complementary partner or k is out of range.
    """
    pairs = complementary_pairs(store)
    pair_of = {m: p for p, pair in enumerate(pairs) for m in pair}
    tlist = list(range(store.n_models)) if targets is None else [int(t) for t in targets]
    missing = [t for t in tlist if t not in pair_of]
    if missing:
        raise InputError(
            "keep",
            f"model {missing[0]} has no complementary partner; paired reference sets need complementary pairs",
        )
    if not (1 <= k <= len(pairs) - 1):
        raise InputError(
            "k", f"must be between 1 and {len(pairs) - 1} (pairs other than the target's), got {k}"
        )
    out = []
    for t in tlist:
        p = pair_of[t]
        chosen = [pairs[(p + step) % len(pairs)] for step in range(1, k + 1)]
        out.append([m for pair in chosen for m in pair])
    return out
