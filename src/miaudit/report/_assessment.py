"""The assessment section: what each framework asks, what this audit shows of it, what it
cannot show, and which controls address the rest.

The framework texts live in one versioned data file (``frameworks.toml``); the figures come
from the run. It gives evidence for an assessment and never states that a system meets a text.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

from miaudit.audit import AttackResult, AuditResult, SliceResult
from miaudit.report._controls import exposure_evidence, most_exposed_group
from miaudit.report._design import design_limits
from miaudit.report._format import _num, _pct, format_estimate
from miaudit.report._inputs import DpAuditSummary, TradeoffVariant

FRAMEWORKS_FILE = "frameworks.toml"

#: Control key → (side, what it is). The sides: a control on the model's training, or on how the
#: model is served (miaudit serve's keys, budgets, output policy and probing detection).
CONTROLS: dict[str, tuple[str, str]] = {
    "dp_sgd": (
        "training",
        "DP-SGD: a proven bound on every attack for every record (the claimed ε), at a cost in accuracy",
    ),
    "regularisation": (
        "training",
        "regularisation and early stopping: a smaller generalisation gap, measured but not bounded",
    ),
    "output_restriction": (
        "serving",
        "output restriction (miaudit serve's output policy: top-1 label, rounded confidences): removes the confidence signal, not the label-only one",
    ),
    "serve_keys_budgets": (
        "serving",
        "miaudit serve's API keys and per-key query budgets: bound how many records one client can test",
    ),
    "probing_detection": (
        "serving",
        "miaudit serve's probing detection: alerts when a client's queries look like membership probing",
    ),
}


@dataclass(frozen=True)
class Framework:
    key: str
    name: str
    edition: str
    reference: str
    checked: str
    scope: str
    asks: str
    evidence: tuple[str, ...]
    cannot: str
    controls: tuple[str, ...]


@dataclass(frozen=True)
class FrameworkSet:
    version: int
    reviewed: str
    frameworks: tuple[Framework, ...]


@dataclass(frozen=True)
class AssessmentRow:
    framework: Framework
    shows: tuple[str, ...]
    cannot: str
    controls: tuple[tuple[str, str], ...]  # (side, text)


@functools.cache
def load_frameworks() -> FrameworkSet:
    """The frameworks data file shipped with miaudit (versioned; see its header)."""
    text = (resources.files("miaudit.report") / FRAMEWORKS_FILE).read_text(encoding="utf-8")
    raw = tomllib.loads(text)
    items = []
    for f in raw["framework"]:
        unknown = set(f["controls"]) - set(CONTROLS)
        if unknown:
            raise ValueError(f"{FRAMEWORKS_FILE}: {f['key']}: unknown controls {sorted(unknown)}")
        items.append(
            Framework(
                **{k: f[k] for k in ("key", "name", "edition", "reference", "checked")},
                scope=f.get("scope", ""),
                asks=f["asks"],
                evidence=tuple(f["evidence"]),
                cannot=f["cannot"],
                controls=tuple(f["controls"]),
            )
        )
    return FrameworkSet(int(raw["version"]), str(raw["reviewed"]), tuple(items))


def _tpr(a: AttackResult, key: str = "tpr@1%fpr") -> str:
    return format_estimate(a.tpr_at_fpr.get(key), pct=True)


def _average(r: AuditResult) -> str:
    a = r.strongest()
    unit = "pairs" if r.reference is not None else "records"
    return (
        f"Averaged over all {r.input.n_records:,} {unit}: the strongest attack ({a.name}) reaches "
        f"AUC {format_estimate(a.auc)} and TPR at 1% FPR {_tpr(a)}."
    )


def _lowest_measured(r: AuditResult) -> tuple[str, AttackResult] | None:
    """(rate key, attack) of the lowest FPR any attack measures, the attack best at it."""
    keys = [lim.key for lim in reversed(design_limits(r).rates) if lim.measurable]
    for key in keys:
        measured = [
            a for a in r.attacks if (e := a.tpr_at_fpr.get(key)) is not None and e.point is not None
        ]
        if measured:
            return key, max(measured, key=lambda a: a.tpr_at_fpr[key].point or 0.0)
    return None


def _rate_of(key: str) -> float:
    """The FPR of a ``tpr@…%fpr`` key."""
    return float(key.removeprefix("tpr@").removesuffix("%fpr")) / 100


def _worst_case(r: AuditResult) -> str:
    lines = []
    lowest = _lowest_measured(r)
    if lowest is None:
        lines.append(
            f"The most exposed records cannot be quantified: no TPR is measurable with {r.input.n_nonmembers:,} non-members."
        )
    else:
        key, a = lowest
        rate = key.removeprefix("tpr@").removesuffix("fpr").replace("%", "% FPR")
        lines.append(
            f"Worst case, the members an attacker is surest of, at the lowest rate this design measures ({rate}): "
            f"{a.name} identifies {_tpr(a, key)} of members."
        )
        tie = a.top_tie
        if tie is not None and _rate_of(key) < tie.nonmembers:  # a 0 that measures the tie
            lines.append(
                f"But {_pct(tie.members)} of members and {_pct(tie.nonmembers)} of non-members share "
                f"{a.name}'s top score, which no threshold splits: below {_pct(tie.nonmembers)} FPR its "
                "TPR reads 0 whatever the attack knows, a limit of the score's resolution, not "
                "evidence that no one is identified."
            )
        lower = [m for m in design_limits(r).unmeasurable if m.fpr < _rate_of(key)]
        if lower:
            lines.append(
                f"Rarer false alarms need more non-members ({lower[0].needs_nonmembers:,} for {_pct(lower[0].fpr)} FPR): "
                "the most exposed records are not fully measured at this size."
            )
    exposure = exposure_evidence(r)
    if exposure is not None:
        lines.append(exposure[0])
    return " ".join(lines)


def _groups(r: AuditResult, classes: Sequence[SliceResult] = ()) -> str:
    """The most exposed group of the results' slices, else of the report's per-class rows (from
    the restricted scores: the report showed them while this said there were none)."""
    focus = r.exposure_attack or r.attacks[0].name
    group = most_exposed_group([*r.slices, *classes], focus, r.bootstrap.confidence)
    if group is None:
        return "No per-group figures in these results (miaudit attack --slices COLUMN adds them)."
    return group[0]


def _sample_size(r: AuditResult) -> str:
    d = design_limits(r)
    text = (
        f"With {d.nonmembers:,} non-member {d.unit} the smallest FPR measured reliably is "
        f"{_pct(d.smallest_reliable_fpr)} (1/n₀ = {_pct(d.smallest_observable_fpr)} is the least observable)."
    )
    missing = d.unmeasurable
    if missing:
        text += (
            " "
            + "; ".join(f"TPR at {_pct(m.fpr)} FPR needs {m.needs_nonmembers:,}" for m in missing)
            + "."
        )
    return text


def _dp(dp: DpAuditSummary | None, variants: Sequence[TradeoffVariant]) -> str:
    if dp is not None and not dp.of_baseline:
        return (
            f"DP audit of {f'variant {dp.variant}' if dp.variant else 'this recipe with other DP settings'} (not the baseline): "
            f"claimed ε = {_num(dp.claimed_epsilon)}, lower bound ε ≥ {_num(dp.empirical_epsilon_lower_bound)}: {dp.verdict}."
        )
    if dp is not None and (
        dp.max_certifiable_epsilon is not None and dp.claimed_epsilon > dp.max_certifiable_epsilon
    ):
        return (
            f"Claimed ε = {_num(dp.claimed_epsilon)} (δ = {_num(dp.delta)}, {dp.accountant}) is above the largest ε the "
            f"DP audit's design can test ({_num(dp.max_certifiable_epsilon)}): the claim is not tested by it."
        )
    if dp is not None:
        return (
            f"Claimed ε = {_num(dp.claimed_epsilon)} (δ = {_num(dp.delta)}, {dp.accountant}); the DP audit's "
            f"lower bound ε ≥ {_num(dp.empirical_epsilon_lower_bound)}: {dp.verdict} (no contradiction found is not proof)."
            if dp.verdict == "PASSED"
            else f"Claimed ε = {_num(dp.claimed_epsilon)}, but the DP audit measured ε ≥ {_num(dp.empirical_epsilon_lower_bound)}: the claim does not hold as implemented."
        )
    private = [v for v in variants if v.epsilon is not None]
    if private:
        return (
            "DP-trained variants measured: "
            + "; ".join(
                f"ε = {_num(v.epsilon)}{'' if v.delta is None else f' (δ = {_num(v.delta)})'}"
                f"{f' VOID (fault injection on: {v.fault_injection})' if v.fault_injection else ''}: AUC {format_estimate(v.auc)}, test accuracy {_pct(v.test_accuracy)}"
                for v in private
            )
            + "."
        )
    return "No differential-privacy guarantee in this run: every figure is measured against these attacks, not bounded for all attacks."


def _controls_measured(variants: Sequence[TradeoffVariant]) -> str:
    judged = [v for v in variants if not v.baseline]
    if not judged:
        return "No control was measured side by side in this run (miaudit tradeoff measures DP-SGD, regularisation and output policies on the same records)."
    return (
        "Controls measured on the same records: "
        + "; ".join(
            f"{v.name}: AUC {format_estimate(v.auc)}"
            + (f" ({v.recommendation})" if v.recommendation else "")
            for v in judged
        )
        + "."
    )


def _threat_model(r: AuditResult) -> str:
    if r.reference is not None:
        return (
            f"Simulated attacker: knows the training recipe, holds {r.reference.population_records:,} population records "
            "and queries the model once per record (black box)."
        )
    return (
        f"Simulated attacker: sees the model's {r.input.kind} and each record's label, one query per record; "
        "no reference models, so this is a lower bound on a stronger attacker."
    )


def _evidence(
    kind: str,
    r: AuditResult | None,
    dp: DpAuditSummary | None,
    variants: Sequence[TradeoffVariant],
    classes: Sequence[SliceResult] = (),
) -> str | None:
    if kind == "dp":
        return _dp(dp, variants)
    if kind == "controls_measured":
        return _controls_measured(variants)
    if r is None:
        return None  # a DP audit alone has no membership figures
    if kind == "groups":
        return _groups(r, classes)
    return {
        "average": _average,
        "worst_case": _worst_case,
        "sample_size": _sample_size,
        "threat_model": _threat_model,
    }[kind](r)


def assess_frameworks(
    result: AuditResult | None,
    *,
    dp: DpAuditSummary | None = None,
    tradeoff: Sequence[TradeoffVariant] = (),
    classes: Sequence[SliceResult] = (),
) -> list[AssessmentRow]:
    """One row per framework in ``frameworks.toml``, filled from this run's figures.

    ``result`` None: a DP audit alone, whose only figures are the ε claim and its bound.
    ``classes``: the report's per-class rows, where it has them.
    """
    rows = []
    for f in load_frameworks().frameworks:
        shows = [
            s
            for kind in f.evidence
            if (s := _evidence(kind, result, dp, tradeoff, classes)) is not None
        ]
        if result is None and "dp" not in f.evidence:
            shows.append(_dp(dp, tradeoff))
        if not shows:
            shows.append("No figure of this run bears on it.")
        rows.append(
            AssessmentRow(
                framework=f,
                shows=tuple(shows),
                cannot=f.cannot,
                controls=tuple(CONTROLS[c] for c in f.controls),
            )
        )
    return rows
