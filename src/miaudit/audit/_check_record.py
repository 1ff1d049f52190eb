""" "Was this record in the training data?" — calibrated evidence for one record and one model.

**After an audit with reference models** (``miaudit audit``): LiRA's offline test (Carlini et
al., S&P 2022) made a calibrated prediction test *for this record*. Under "the record was not in
the training data" the audited model's scaled logit φ is one more draw from the record's own
OUT distribution (the φ of reference models that did not train on it). A Gaussian with the
record's sample variance from a handful of references is not calibrated, and one variance pooled
over all records is calibrated only on average (records whose references vary more got
p < 0.05 in 11 % of null cases): the variance is therefore the record's own, shrunk toward the
pooled one by empirical Bayes (docs/method.md §11), and the null distribution is the Student-t
predictive that follows:

- prior: σ²ᵢ ~ scaled inverse χ²(ν₀, σ₀²) across records; given σ²ᵢ the record's n OUT values
  are normal. ν₀ and σ₀² are fitted by marginal likelihood: sᵢ²/σ₀² ~ F(nᵢ − 1, ν₀) (the
  "moderated variance" of Smyth, 2004);
- posterior variance σ̃ᵢ² = (ν₀σ₀² + (nᵢ − 1)sᵢ²) / (ν₀ + nᵢ − 1);
- predictive: (φ − x̄ᵢ) / (σ̃ᵢ·√(1 + 1/nᵢ)) ~ Student-t with ν₀ + nᵢ − 1 degrees of freedom;
  the one-sided p-value is its upper tail. Given the record's references the p-value is then
  uniform under the null whatever the record's variance (checked per variance decile by the null
  suite).

The minimum is :data:`MIN_OUT` = 2 OUT references for the records that fit the prior ([audit]
``references`` ≥ 2): with one, no record's variance can be measured. Where references that
trained on the record exist, LiRA's online likelihood ratio is given too.

**The audited model**: the store's target (a model trained elsewhere and audited with
:class:`~miaudit.audit.ExternalTarget`: its outputs and training set are kept, restricted, in
``signals/target.npz``), else model 0 of the leave-one-model-out audit.

**After an audit from saved outputs** (``miaudit attack``): no reference model exists, so the
answer is a rank test against the same model's known non-members: p = (1 + #{non-members
scoring at least as high}) / (1 + #non-members), the record itself left out. It is valid when the
record is exchangeable with those non-members (drawn from the same distribution), and it cannot
go below 1 / (1 + #non-members); it says how unusual the record's score is for a non-member of
this model, not how this record behaves in models that never saw it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import t as student_t

from miaudit.attacks import complementary_pairs, lira_online
from miaudit.audit._results import AuditResult, InputDescription, ReferenceSetup
from miaudit.data import SignalsStore, load_signals
from miaudit.errors import InputError
from miaudit.signals import compute_signals

SIGNALS_PATH = Path("signals") / "signals.npz"
#: The external target's outputs and training set (restricted): written by an audit with
#: :class:`~miaudit.audit.ExternalTarget`, read by :func:`check_record`.
TARGET_PATH = Path("signals") / "target.npz"
#: OUT references a record needs for its own variance to enter (records with fewer use the prior).
MIN_OUT = 2
#: The prior's degrees of freedom are fitted in [ν_min, ν_max]; ν_max is "one pooled variance".
_NU_BOUNDS = (0.5, 1e4)
#: The level of one record's test; checking m records divides it by m (Bonferroni).
ALPHA = 0.05
#: The prior is fitted on at most this many records (evenly spaced): two parameters.
_FIT_RECORDS = 100_000


@dataclass(frozen=True)
class VariancePrior:
    """Empirical-Bayes prior of the records' OUT variances: σ² ~ scaled-inv-χ²(``dof``, ``scale2``)."""

    dof: float
    scale2: float
    n_records: int

    def describe(self) -> str:
        pooled = (
            " (at its upper bound: effectively one pooled variance)"
            if self.dof >= _NU_BOUNDS[1] * 0.999
            else ""
        )
        return f"prior ν₀ = {self.dof:.3g}{pooled}, σ₀ = {np.sqrt(self.scale2):.3g}, fitted on {self.n_records} records"


@dataclass(frozen=True)
class RecordEvidence:
    record_id: str
    target: int | None
    phi: float | None
    z: float | None
    p_value: float
    log_likelihood_ratio: float | None
    n_out_references: int
    n_in_references: int
    member_in_plan: bool
    verdict: str
    #: Which model the answer is about, in words.
    model: str = ""
    #: How the p-value was computed (the null distribution and its minimum requirements).
    method: str = ""
    #: Saved-outputs answers: the attack whose score was ranked, its score, and the non-members
    #: (reference audits: the audited model's known non-members the p-value is ranked among).
    attack: str | None = None
    score: float | None = None
    n_nonmembers: int | None = None
    #: Reference audits: the p-value against the record's OUT references alone (Student-t), and
    #: the share of the audited model's known non-members it puts below 0.05 (0.05 expected when
    #: the references reproduce the model's training).
    p_references: float | None = None
    null_rate: float | None = None
    #: The level the verdict used (0.05 / records checked), the smallest p-value the test can
    #: give, and the share of the model's known members it finds at that level (its power).
    threshold: float = ALPHA
    p_floor: float | None = None
    power: float | None = None


@dataclass(frozen=True)
class Screen:
    """What every answer of one check shares: the level its verdicts use, the smallest p-value
    the test can give, and how often it finds the model's own known members at that level."""

    threshold: float
    floor: float
    power: float | None
    n_members: int


def verdict(p: float, test: Screen | None = None) -> str:
    """The verdict of one p-value at the test's level (``test``: one record, ALPHA).

    Levels scale with the threshold (0.05, 0.01, 0.001 for one record; divided by the number of
    records checked, Bonferroni: each row's verdict, not a footnote, is what a reader acts on,
    and 29 of 600 non-members were called "evidence" in a screen of 1,200 records). A test whose
    smallest p-value cannot go below the threshold is inconclusive, never "no evidence": a model
    whose outputs separate members perfectly got "no evidence … generalises well" from a rank
    among 5 non-members (red team)."""
    t = test or Screen(ALPHA, 0.0, None, 0)
    if t.floor >= t.threshold:
        return (
            f"inconclusive: this test cannot give a p-value below {t.floor:.3g} here, and {t.threshold:.3g} is needed"
            " (too few known non-members to rank the record among, for the records checked)"
        )
    if p < t.threshold / 50:
        return "strong evidence that this record was in the model's training data"
    if p < t.threshold / 5:
        return "evidence that this record was in the model's training data"
    if p < t.threshold:
        return "weak evidence that this record was in the model's training data"
    found = (
        ""
        if t.power is None
        else f": at this level the test finds {t.power:.0%} of the model's {t.n_members} known members, "
        f"against {t.threshold * 100:.2g}% of its non-members by design"  # both in %
    )
    return f"no evidence from this model's outputs that the record was in its training data (not proof that it was not{found})"


def _test(n_checked: int, n_nonmembers: int, member_p: np.ndarray) -> Screen:
    """The shared :class:`Screen` of ``n_checked`` records ranked among ``n_nonmembers`` and the
    p-values of the model's known members (its power). The floor is a member's smallest p,
    1 / (1 + n₀): a non-member, left out of the others, cannot go below 1 / n₀, so with the
    larger floor a member at p = 1/21 was called "inconclusive: cannot give a p-value below
    0.05" beside a power of 100 % (red team)."""
    threshold = ALPHA / max(1, n_checked)
    floor = 1 / (1 + max(0, n_nonmembers))
    power = float((member_p < threshold).mean()) if member_p.size else None
    return Screen(threshold, floor, power, int(member_p.size))


def _phi(store: SignalsStore) -> np.ndarray:
    """φ of every model on every record, (K, n); augmentation queries averaged."""
    lg = store.logits
    labels = np.broadcast_to(store.label[:, None] if lg.ndim == 4 else store.label, lg.shape[1:-1])
    phi = compute_signals(lg, np.broadcast_to(labels, lg.shape[:-1]), which=("scaled_logit",))[
        "scaled_logit"
    ]
    return phi.mean(axis=2) if lg.ndim == 4 else phi


def fit_variance_prior(s2: np.ndarray, dof: np.ndarray) -> VariancePrior:
    """Marginal-likelihood fit of (ν₀, σ₀²) to sample variances ``s2`` with ``dof`` = n − 1 each.

    sᵢ²/σ₀² ~ F(dofᵢ, ν₀) when σᵢ² ~ scaled-inv-χ²(ν₀, σ₀²) (Smyth, 2004). Records with no
    degrees of freedom or a zero variance carry no information about the prior and are skipped.
    """
    from scipy.optimize import minimize
    from scipy.stats import f as f_dist

    ok = (dof > 0) & (s2 > 0) & np.isfinite(s2)
    if int(ok.sum()) < 2:
        raise InputError(
            "results",
            f"too few reference models to estimate how OUT models vary: a per-record p-value needs records with {MIN_OUT} or more OUT references ([audit].references ≥ {MIN_OUT})",
        )
    x, d = s2[ok], dof[ok].astype(np.float64)
    if x.size > _FIT_RECORDS:
        pick = np.linspace(0, x.size - 1, _FIT_RECORDS).round().astype(np.int64)
        x, d = x[pick], d[pick]
    pooled = float((x * d).sum() / d.sum())
    lo, hi = np.log(_NU_BOUNDS[0]), np.log(_NU_BOUNDS[1])

    def nll(theta: np.ndarray) -> float:
        log_s0, log_nu = float(theta[0]), float(np.clip(theta[1], lo, hi))
        return float(-(f_dist.logpdf(x / np.exp(log_s0), d, np.exp(log_nu)) - log_s0).sum())

    best = min(
        (
            minimize(
                nll,
                np.array([np.log(pooled), start]),
                method="L-BFGS-B",
                bounds=[(np.log(pooled) - 5, np.log(pooled) + 5), (lo, hi)],
            )
            for start in (np.log(4.0), np.log(100.0))
        ),
        key=lambda r: r.fun,
    )
    return VariancePrior(
        dof=float(np.exp(best.x[1])), scale2=float(np.exp(best.x[0])), n_records=int(x.size)
    )


def _audited(store: SignalsStore, target: int | None) -> tuple[int, str]:
    t = target if target is not None else (store.target if store.target is not None else 0)
    if not 0 <= t < store.n_models:
        raise InputError("--target", f"model {t} is outside [0, {store.n_models})")
    if store.info.external_target and t == store.target:
        return t, "your model (the external target, audited without retraining)"
    return (
        t,
        f"model {t} of the {store.n_models} that the audit trained with the recipe, each on a random half of the pool "
        "(not a model you deployed: audit that one as an ExternalTarget to ask about it)",
    )


def _pool_rows(store: SignalsStore, ids: Sequence[str]) -> list[int]:
    """The store's row of each id; InputError for an id not audited or outside the pool."""
    index = {str(r): i for i, r in enumerate(store.record_id.tolist())}
    rows = []
    for rid in ids:
        if str(rid) not in index:
            raise InputError("--id", f"record {rid!r} is not among the audited records")
        i = index[str(rid)]
        if store.population[i]:
            raise InputError(
                "--id",
                f"record {rid!r} is a population record: no model trained on it, so the audit has no IN/OUT references for it",
            )
        rows.append(i)
    return rows


def _out_moments(
    ref_phi: np.ndarray, keep: np.ndarray, population: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per record, over its OUT references: (count, mean φ, degrees of freedom, sample variance)."""
    out_mask = ~keep & ~population
    n_out = out_mask.sum(axis=0)
    mean = np.where(n_out > 0, (ref_phi * out_mask).sum(axis=0) / np.maximum(n_out, 1), 0.0)
    dev2 = ((ref_phi - mean) ** 2 * out_mask).sum(axis=0)
    dof = np.maximum(n_out - 1, 0)
    s2 = np.divide(dev2, dof, out=np.zeros_like(dev2), where=dof > 0)
    return n_out, mean, dof, s2


def _online_llrs(
    phi_t: np.ndarray, ref_phi: np.ndarray, keep: np.ndarray, population: np.ndarray
) -> np.ndarray:
    """LiRA's online log-likelihood ratio of every pool record with an IN and an OUT reference
    (NaN elsewhere), one σ per side pooled over those records (the paper's fixed variance, the
    audit's default). Each record's own σ from the 2-4 references of a small audit made the
    ratio a coin toss with absurd sizes: a non-member at log LR 36 (LR 6·10¹⁵), 24 % of
    non-members above ln 100, one at 1.1·10⁶ (red team, k = 2)."""
    inside = keep & ~population
    outside = ~keep & ~population
    both = inside.any(axis=0) & outside.any(axis=0)
    llr = np.full(phi_t.shape, np.nan)
    if both.any():
        llr[both] = lira_online(phi_t[both], ref_phi[:, both], keep[:, both], variance="global")
    return llr


def _reference_models(store: SignalsStore, t: int, given: Sequence[int] | None) -> list[int]:
    """The audited model's references: the ones the audit was given, else every model except
    the target and its complementary partner."""
    if given is None:
        partner = {a: b for p in complementary_pairs(store) for a, b in (p, p[::-1])}.get(t)
        refs = [m for m in range(store.n_models) if m not in (t, partner)]
        if len(refs) < 2:
            raise InputError(
                "signals", "fewer than 2 reference models besides the target and its partner"
            )
        return refs
    refs = [int(m) for m in given]
    bad = [m for m in refs if not 0 <= m < store.n_models or m == t]
    if bad or len(set(refs)) != len(refs):
        raise InputError(
            "results",
            f"the audit's reference set {refs} does not fit its signals ({store.n_models} models, target {t}): the folder mixes two runs",
        )
    if len(refs) < 2:
        raise InputError(
            "results",
            f"the audit was given {len(refs)} reference model: a per-record test needs at least 2",
        )
    return refs


def check_records(
    store: SignalsStore,
    ids: Sequence[str],
    *,
    target: int | None = None,
    references: Sequence[int] | None = None,
) -> list[RecordEvidence]:
    """Evidence for each id against the audited model (``target``, default the store's or 0).

    References: ``references`` when given, else every model but the target and its partner.
    The p-value ranks the record's reference test (module docstring) among the model's known
    non-members: valid for this model even when the references do not reproduce it."""
    _refuse_bare_string(ids)
    t, model = _audited(store, target)
    refs = _reference_models(store, t, references)
    rows = _pool_rows(store, ids)
    phi = _phi(store)
    ref_phi, keep = phi[refs], store.keep[refs]
    n_out_all, mean_out, dof_own, s2 = _out_moments(ref_phi, keep, store.population)
    prior = fit_variance_prior(s2[~store.population], dof_own[~store.population])
    in_mask = keep & ~store.population
    has_out = (n_out_all >= 1) & ~store.population
    z_all, p_ref = _reference_tests(phi[t], has_out, n_out_all, mean_out, dof_own, s2, prior)
    null = _known_nonmembers(p_ref, has_out & ~store.keep[t], t)
    null_rate = float((null < ALPHA).mean())
    members = has_out & store.keep[t]
    test = _test(len(set(map(str, ids))), int(null.size), _ranks(null, p_ref[members]))
    method = _method(prior, refs, given=references is not None, null=null.size, rate=null_rate)
    llr = _online_llrs(phi[t], ref_phi, keep, store.population)
    out = []
    for rid, i in zip(ids, rows, strict=True):
        n_out, n_in = int(n_out_all[i]), int(in_mask[:, i].sum())
        if n_out < 1:
            raise InputError(
                "--id", f"record {rid!r} has no OUT reference: no model left out of training on it"
            )
        p, n0 = _rank_among(null, float(p_ref[i]), leave_out=not store.keep[t, i])
        out.append(
            RecordEvidence(
                str(rid),
                t,
                float(phi[t, i]),
                float(z_all[i]),
                p,
                None if np.isnan(llr[i]) else float(llr[i]),
                n_out,
                n_in,
                bool(store.keep[t, i]),
                verdict(p, test),
                model=model,
                method=method,
                n_nonmembers=n0,
                p_references=float(p_ref[i]),
                null_rate=null_rate,
                threshold=test.threshold,
                p_floor=test.floor,
                power=test.power,
            )
        )
    return out


def _known_nonmembers(p_ref: np.ndarray, nonmember: np.ndarray, t: int) -> np.ndarray:
    """The reference p-values of model ``t``'s known non-members, sorted: what its per-record
    p-values are ranked among."""
    null = np.sort(p_ref[nonmember])
    if null.size == 0:
        raise InputError(
            "results",
            f"model {t} has no known non-member with an OUT reference to calibrate its p-values on",
        )
    return null


def _ranks(null: np.ndarray, values: np.ndarray) -> np.ndarray:
    """:func:`_rank_among` of each of ``values`` (records outside ``null``, sorted ascending)."""
    return (1 + np.searchsorted(null, values, side="right")) / (1 + null.size)


def _method(prior: VariancePrior, refs: list[int], *, given: bool, null: int, rate: float) -> str:
    """How a reference audit's per-record p-value was computed, in words."""
    chosen = (
        f"the audit's given models {', '.join(map(str, refs))}"
        if given
        else "every model except the target and its complementary partner"
    )
    return (
        f"one-sided test against this record's OUT references (models that did not train on it): Student-t predictive, "
        f"their mean, variance shrunk toward the pooled one by empirical Bayes ({prior.describe()}); minimum {MIN_OUT} OUT references; "
        f"references: {chosen}; p-value: the rank of that test's p-value among the {null} known non-members of this model "
        "(the record left out), valid for this model whether or not the references reproduce its training "
        f"(against the references alone, {rate:.1%} of its non-members would get p < 0.05)"
    )


def _reference_tests(
    phi_t: np.ndarray,
    has_out: np.ndarray,
    n_out: np.ndarray,
    mean_out: np.ndarray,
    dof: np.ndarray,
    s2: np.ndarray,
    prior: VariancePrior,
) -> tuple[np.ndarray, np.ndarray]:
    """(z, p) of every record with an OUT reference (NaN elsewhere): the audited model's φ
    against the record's Student-t predictive OUT distribution, its variance shrunk toward the
    prior's."""
    var = (prior.dof * prior.scale2 + dof * s2) / (prior.dof + dof)
    z = np.full(phi_t.shape, np.nan)
    z[has_out] = (phi_t[has_out] - mean_out[has_out]) / np.sqrt(
        var[has_out] * (1 + 1 / n_out[has_out])
    )
    p = np.full(phi_t.shape, np.nan)
    p[has_out] = student_t.sf(z[has_out], prior.dof + dof[has_out])
    return z, p


def _rank_among(null: np.ndarray, value: float, *, leave_out: bool) -> tuple[float, int]:
    """(p, non-members ranked among): p = (1 + #{null ≤ value}) / (1 + #null), ``null`` sorted
    ascending (smaller is more member-like), the record itself left out when it is one of them.
    Exact under the null when the record is exchangeable with the non-members."""
    at_most = int(np.searchsorted(null, value, side="right"))
    n0 = int(null.size)
    if leave_out:
        at_most -= 1
        n0 -= 1
    return (1 + at_most) / (1 + n0), n0


def check_saved_outputs(
    record_id: np.ndarray,
    member: np.ndarray,
    scores: np.ndarray,
    ids: Sequence[str],
    *,
    attack: str,
) -> list[RecordEvidence]:
    """Per-record answers from one model's saved outputs: the rank of each record's ``attack``
    score among the model's known non-members, the record itself left out (module docstring)."""
    _refuse_bare_string(ids)
    index = {str(r): i for i, r in enumerate(np.asarray(record_id).tolist())}
    s = np.asarray(scores, dtype=np.float64)
    m = np.asarray(member).astype(bool)
    non = np.sort(-s[~m])
    test = _test(len(set(map(str, ids))), int(non.size), _ranks(non, -s[m]))
    method = (
        f"rank of the record's {attack} score among the model's known non-members (no reference models in an audit from saved outputs): "
        "p = (1 + non-members scoring at least as high) / (1 + non-members), the record left out; valid when the record is "
        "exchangeable with those non-members, and never below 1 / (1 + non-members)"
    )
    out = []
    for rid in ids:
        if str(rid) not in index:
            raise InputError("--id", f"record {rid!r} is not among the audited records")
        i = index[str(rid)]
        # higher scores are more member-like: ranked negated, as the reference p-values are
        p, n0 = _rank_among(non, -float(s[i]), leave_out=not m[i])
        out.append(
            RecordEvidence(
                str(rid),
                None,
                None,
                None,
                p,
                None,
                0,
                0,
                bool(m[i]),
                verdict(p, test),
                model="the model whose outputs were audited",
                method=method,
                attack=attack,
                score=float(s[i]),
                n_nonmembers=n0,
                threshold=test.threshold,
                p_floor=test.floor,
                power=test.power,
            )
        )
    return out


def save_external_target(out_dir: Path, store: SignalsStore) -> None:
    """Keep the external target's outputs and training set (its row of ``store``) for
    check-record, restricted like every signals file."""
    t = store.target
    assert t is not None
    row = SignalsStore.from_arrays(
        logits=store.logits[t : t + 1],
        label=store.label,
        keep=store.keep[t : t + 1],
        population=store.population,
        record_id=store.record_id,
        target=0,
        info={"external_target": True},
    )
    (out_dir / TARGET_PATH).parent.mkdir(parents=True, exist_ok=True)
    row.save(out_dir / TARGET_PATH)


def _with_saved_target(engine: SignalsStore, row: SignalsStore) -> SignalsStore:
    index = {str(r): i for i, r in enumerate(engine.record_id.tolist())}
    missing = [r for r in row.record_id.tolist() if str(r) not in index]
    if missing:
        raise InputError(
            "results",
            f"{TARGET_PATH} names record {missing[0]!r}, which is not in the audit's signals: the folder mixes two runs",
        )
    cols = np.array([index[str(r)] for r in row.record_id.tolist()], dtype=np.int64)
    lg = engine.logits[:, cols]
    return SignalsStore.from_arrays(
        logits=np.concatenate([lg, row.logits.astype(lg.dtype)]),
        label=engine.label[cols],
        keep=np.concatenate([engine.keep[:, cols], row.keep]),
        population=engine.population[cols],
        record_id=engine.record_id[cols],
        target=engine.n_models,
        info=engine.info.model_copy(update={"external_target": True}),
    )


def read_scores_file(path: Path, columns: list[str] | None = None) -> dict[str, np.ndarray]:
    """A run's restricted ``scores.parquet`` as one array per column (``columns`` only, when
    given), read as every input file is, bounded before anything is expanded (pandas read a
    crafted file of a few KB whole: 1 GB); a file that is not one, or lacks ``columns``, is one
    InputError line."""
    from miaudit.data import read_table

    if path.suffix.lower() != ".parquet":
        raise InputError("results", f"{str(path)!r} is not the run's scores (a .parquet file)")
    try:
        arrays = read_table(path, "results").arrays
    except InputError as exc:  # said as the run's scores, not as any table
        reason = exc.problem.split(" as parquet: ", 1)[-1]
        raise InputError(
            "results", f"cannot read {str(path)!r} as the run's scores: {reason}"
        ) from None
    missing = [c for c in columns or () if c not in arrays]
    if missing:
        raise InputError(
            "results", f"cannot read {str(path)!r} as the run's scores: no {missing[0]!r} column"
        )
    return {c: arrays[c] for c in columns} if columns else arrays


def load_run_results(results_dir: Path) -> AuditResult:
    """The run's ``results.json``, checked against the results schema as the report reads it
    (every problem one InputError line): check-record answers only from results that are whole."""
    path = results_dir / "results.json"
    if not path.is_file():
        raise InputError(
            "results",
            f"{str(path)!r} not found: check-record needs the folder of a `miaudit audit` or `miaudit attack` run",
        )
    return AuditResult.read(path)


def check_record(
    results_dir: str | Path,
    ids: Sequence[str],
    *,
    target: int | None = None,
    attack: str | None = None,
) -> list[RecordEvidence]:
    """Per-record evidence from a results folder.

    An audit with reference models (``signals/signals.npz``): :func:`check_records` against the
    audited model — the external target when the audit had one (``signals/target.npz``).
    An audit from saved outputs (``scores.parquet`` only): :func:`check_saved_outputs` with
    ``attack`` (default: the results' strongest attack).
    """
    _refuse_bare_string(ids)
    d = Path(results_dir)
    results = load_run_results(d)
    reference = results.reference
    if reference is not None:  # an audit with reference models
        if attack is not None:
            raise InputError(
                "--attack",
                "applies to audits from saved outputs; an audit with reference models answers with LiRA's per-record test",
            )
        store = _audited_store(d, external=reference.external_target)
        _check_store_fits(store, reference)
        if reference.external_target and target is not None and target != store.target:
            raise InputError(
                "--target",
                f"this audit's audited model is the external target (model {store.target}); the engine's models were its references",
            )
        given = reference.reference_set
        if given is not None and target is not None and target != store.target:
            raise InputError(
                "--target",
                f"this audit was given references for model {store.target} only; check-record answers for that model",
            )
        return check_records(store, ids, target=target, references=given)
    if target is not None:
        raise InputError(
            "--target",
            "an audit from saved outputs has one model; --target applies to audits with reference models",
        )
    return _check_saved_folder(d, ids, attack or results.exposure_attack or "", results)


def _check_store_fits(store: SignalsStore, reference: ReferenceSetup) -> None:
    """InputError unless the signals hold the models and population results.json describes:
    signals of another run (another k, another data size) answered as this run's, exit 0
    (red team: 10 models' signals beside results of 6)."""
    got = (store.n_models, int(store.population.sum()))
    want = (reference.models, reference.population_records)
    if got != want:
        raise InputError(
            "results",
            f"the signals hold {got[0]} models and {got[1]} population records but results.json describes "
            f"{want[0]} and {want[1]}: the folder mixes two runs",
        )


def _refuse_bare_string(ids: Sequence[str]) -> None:
    """A str is a Sequence[str] of its characters: ``check_record(run, "133")`` answered about
    records 1, 3 and 3 (red team)."""
    if isinstance(ids, str | bytes):
        raise InputError("ids", f"must be a list of record ids, got the string {ids!r}")


def _audited_store(d: Path, *, external: bool) -> SignalsStore:
    """A reference audit's signals, with its external target's row when it had one."""
    path = d / SIGNALS_PATH
    if not path.is_file():
        raise InputError(
            "results",
            f"{str(path)!r} not found (restricted signals): check-record needs the audit's signals/ folder",
        )
    store = load_signals(path)
    if not external:
        return store
    if not (d / TARGET_PATH).is_file():
        raise InputError(
            "results",
            f"the audit had an external target but {str(d / TARGET_PATH)!r} is missing",
        )
    return _with_saved_target(store, load_signals(d / TARGET_PATH))


def _check_saved_folder(
    d: Path, ids: Sequence[str], name: str, results: AuditResult
) -> list[RecordEvidence]:
    """:func:`check_saved_outputs` on the folder's restricted scores of attack ``name``."""
    scores_path = d / "scores.parquet"
    if not scores_path.is_file():
        raise InputError(
            "results",
            f"{str(scores_path)!r} not found (restricted per-record scores): check-record needs the folder of a `miaudit audit` or `miaudit attack` run",
        )
    table = read_scores_file(scores_path)
    col = f"score_{name}"
    if col not in table:
        have = ", ".join(c.removeprefix("score_") for c in table if c.startswith("score_"))
        raise InputError(
            "--attack", f"no scores of attack {name!r} in this folder (it has: {have})"
        )
    missing = [c for c in ("record_id", "member") if c not in table]
    if missing:
        raise InputError("results", f"{str(scores_path)!r} has no {missing[0]!r} column")
    member, score, record_id = table["member"], table[col], table["record_id"]
    _check_scores_table(scores_path, record_id, member, score, col, results.input)
    return check_saved_outputs(record_id, member, score, ids, attack=name)


def _check_scores_table(
    path: Path,
    record_id: np.ndarray,
    member: np.ndarray,
    score: np.ndarray,
    col: str,
    described: InputDescription,
) -> None:
    """InputError unless the restricted scores are what their run's results describe: numbers,
    finite scores, memberships 0 or 1, members and non-members both, one row per id, and as
    many records and members as results.json says. A tampered file gave fabricated answers
    with exit 0 (red team: NaN non-member scores gave every record p = 0.005, "evidence";
    memberships 0.25/0.75 made everyone a member ranked among 0 non-members; a scores file of
    another run answered as this one's). Only sizes are compared: another run's file of the
    same sizes (a retrained model on the same records) is not recognised."""
    where = repr(str(path))
    if any(np.ndim(a) != 1 for a in (record_id, member, score)):
        raise InputError("results", f"{where} holds a column that is not one value per row")
    if member.dtype.kind not in "biuf" or score.dtype.kind not in "biuf":
        raise InputError("results", f"{where} holds memberships or scores that are not numbers")
    if not np.isfinite(score.astype(np.float64)).all():
        raise InputError("results", f"{where} holds non-finite {col} values")
    if not np.isin(member, (0, 1)).all():
        raise InputError("results", f"{where} holds memberships other than 0 and 1")
    ids = [str(r) for r in record_id.tolist()]
    if len(set(ids)) != len(ids):
        raise InputError("results", f"{where} holds a record id more than once")
    n_members = int(np.count_nonzero(member))
    if (len(ids), n_members) != (described.n_records, described.n_members):
        raise InputError(
            "results",
            f"{where} holds {len(ids)} records ({n_members} members) but results.json describes "
            f"{described.n_records} ({described.n_members} members): the folder mixes two runs",
        )
    if n_members in (0, len(ids)):
        raise InputError("results", f"{where} needs members and non-members both")
