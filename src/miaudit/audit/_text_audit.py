"""Audit a language model on texts from its sequence signals: :func:`miaudit.audit.audit_text`.

The text attacks (``SignalKind.SEQUENCE_SIGNALS``) score the store's pool records; they are
evaluated like every other audit (the same metrics, record-resampling intervals, paired
comparisons with ``text_loss``, results files, report and ``check-record``). The blind baseline
(texts alone, never the model) is evaluated beside them whenever the texts are given; when its
interval excludes chance the results say the split is shifted (docs/method.md §13.3).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence

import numpy as np

from miaudit._version import __version__
from miaudit.attacks import (
    BLIND_CITATION,
    BLIND_DESCRIPTION,
    BLIND_NAME,
    AttackSpec,
    BlindBaseline,
    Need,
    SequenceInputs,
    SignalKind,
    attack_spec,
    blind_baseline,
    blind_texts,
    registered_attacks,
    score_sequences,
    shifted_split_note,
)
from miaudit.audit._attack import (
    AttackRun,
    attack_result,
    comparisons_with_loss,
    family_bounds,
    mean_rank,
    most_exposed,
    tie_notes,
    top_tie,
)
from miaudit.audit._pseudonyms import describe_key, key_or_fresh
from miaudit.audit._results import (
    AttackResult,
    AuditResult,
    BootstrapInfo,
    ImpliedEpsilonResult,
    InputDescription,
)
from miaudit.errors import InputError
from miaudit.metrics import DEFAULT_FPRS, evaluate, implied_epsilon
from miaudit.signals import SequenceStore

TEXT_BASELINE = "text_loss"


def applicable_text_attacks(store: SequenceStore) -> tuple[str, ...]:
    """The registered sequence attacks whose inputs the store has, in registry order."""
    refs = store.references
    pool = ~store.population
    both = bool(refs) and bool(
        (store.keep[refs][:, pool].any(0) & (~store.keep[refs][:, pool]).any(0)).all()
    )

    def fits(spec: AttackSpec) -> bool:
        if spec.name == "reference_ratio":
            return store.base is not None
        if Need.REFERENCES in spec.needs:
            if len(refs) < 2 or (Need.POPULATION in spec.needs and not store.population.any()):
                return False
            return both or not spec.name.endswith("_online")
        return True

    return tuple(
        s.name for s in registered_attacks(signal_kind=SignalKind.SEQUENCE_SIGNALS) if fits(s)
    )


def _check_text_attacks(attacks: Sequence[str]) -> tuple[AttackSpec, ...]:
    if not attacks:
        raise InputError("attacks", "no attack given")
    specs = []
    for name in dict.fromkeys(attacks):
        spec = attack_spec(name)
        if spec.signal_kind is not SignalKind.SEQUENCE_SIGNALS:
            known = ", ".join(
                s.name for s in registered_attacks(signal_kind=SignalKind.SEQUENCE_SIGNALS)
            )
            raise InputError("attacks", f"{name!r} is not a text attack; known: {known}")
        specs.append(spec)
    return tuple(specs)


def _extra(
    member: np.ndarray, score: np.ndarray, seed: np.random.SeedSequence
) -> dict[str, object]:
    ie = implied_epsilon(member, score, rng=np.random.default_rng(seed))
    return {
        "top_tie": top_tie(member, score),
        "implied_epsilon": ImpliedEpsilonResult(
            point=ie.point, lower_bound=ie.lower_bound, alpha=ie.alpha, note=ie.note
        ),
    }


# Long: one linear pass (score, evaluate, assemble the result) that mirrors run_attacks; its
# steps share a dozen locals and splitting them would only pass them around.
def run_text_attacks(
    store: SequenceStore,
    *,
    texts: Sequence[str] | None = None,
    attacks: Sequence[str] | None = None,
    n_resamples: int = 200,
    seed: int = 0,
    prior: float = 0.5,
    fprs: Sequence[float] = DEFAULT_FPRS,
    pseudonym_key: bytes | None = None,
    raw_ids: bool = False,
) -> AttackRun:
    """Score and evaluate the text attacks (and the blind baseline when ``texts`` are given, in
    the store's record order); see :func:`miaudit.audit.audit_text`."""
    specs = _check_text_attacks(applicable_text_attacks(store) if attacks is None else attacks)
    boot, fold, eps = np.random.SeedSequence(seed).spawn(3)
    pool = ~store.population
    member = store.member[pool]
    if member.min() == member.max():
        raise InputError("keep", "the audited model's pool needs both members and non-members")
    scores = {
        s.name: score_sequences(s.name, SequenceInputs(store, seed=fold)).score for s in specs
    }
    described = {s.name: (s.description, s.citation) for s in specs}
    if texts is not None:
        values = blind_texts(texts)  # every text, the population's too: items by record order
        if len(values) != store.n_records:
            raise InputError("texts", f"has {len(values)} texts for {store.n_records} records")
        pooled = [t for t, keep in zip(values, pool, strict=True) if keep]
        blind_test = blind_baseline(pooled, member, seed=fold)
        scores[BLIND_NAME] = blind_test.scores
        described[BLIND_NAME] = (BLIND_DESCRIPTION, BLIND_CITATION)
    ev = evaluate(
        member,
        scores,
        fprs=fprs,
        prior=prior,
        n_resamples=n_resamples,
        rng=np.random.default_rng(boot),
    )
    results = [
        attack_result(n, ev, described[n][0], described[n][1], **_extra(member, scores[n], eps))
        for n in scores
    ]
    if texts is not None:  # the blind AUC's interval is its permutation test's (§13.3)
        results = [
            _with_permutation_interval(r, blind_test) if r.name == BLIND_NAME else r
            for r in results
        ]
    key = key_or_fresh(pseudonym_key)
    model_attacks = [r for r in results if r.name != BLIND_NAME]
    strongest = max(model_attacks, key=lambda a: a.auc.point or 0.0).name
    record_id = store.record_id[pool]
    exposed = most_exposed(
        scores[strongest],
        record_id,
        key,
        evidence=mean_rank({n: scores[n] for n in scores if n != BLIND_NAME}),
        raw_ids=raw_ids,
    )
    notes = [
        "Texts are personal data: no text is stored or printed; records are keyed pseudonyms.",
        "Intervals: percentile bootstrap over records; TPR and PPV at FPR α are not measurable when n0·α < 10.",
        *tie_notes(results, ev.fprs),
    ]
    if BLIND_NAME in scores:
        shifted = shifted_split_note(blind_test.lower, blind_test.upper, 0.95)
        notes.append(
            (
                shifted
                or f"The blind baseline ({BLIND_NAME}, texts alone) is at chance: no sign that the split is shifted."
            )
            + f" Its interval and p-value come from a permutation test ({blind_test.permutations} within-fold permutations, "
            f"one-sided p = {blind_test.p_value:.3f}), not from the record bootstrap: a cross-fitted AUC varies more than resampling records shows."
        )
    else:
        notes.append(
            "No texts were given: the blind baseline did not run, so a shifted split cannot be ruled out."
        )
    result = AuditResult(
        tool_version=__version__,
        created_at=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        seed=seed,
        input=InputDescription(
            name="(in memory)",
            format="sequence-signals",
            sha256=None,
            kind="sequence-signals",
            n_records=int(pool.sum()),
            n_members=int(member.sum()),
            n_nonmembers=int((member == 0).sum()),
            n_classes=0,
        ),
        bootstrap=BootstrapInfo(
            replicates=n_resamples, confidence=ev.confidence, resampling=ev.resampling
        ),
        attacks=results,
        comparisons=comparisons_with_loss(ev, TEXT_BASELINE),
        exposure_attack=strongest,
        most_exposed=exposed,
        pseudonymisation=describe_key(key, raw_ids=raw_ids),
        notes=notes,
        # the model attacks only: the blind baseline never looks at the model (a shifted split,
        # not memorisation, is what it finds), so it does not set the verdict
        family=family_bounds(ev, [r.name for r in model_attacks]),
    )
    return AttackRun(result, record_id, member, np.zeros(member.size, dtype=np.int64), scores)


def _with_permutation_interval(result: AttackResult, blind: BlindBaseline) -> AttackResult:
    auc = result.auc.model_copy(update={"lower": blind.lower, "upper": blind.upper})
    return result.model_copy(update={"auc": auc})
