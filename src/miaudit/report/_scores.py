"""Aggregates the report may take from the restricted per-record scores (scores.parquet).

Only counts and per-class metrics leave this module: the per-record rows (the training
roster) are read, reduced and dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from miaudit.audit import PERMUTATION_BELOW, AuditResult, SliceAttack, SliceResult, mark_group_tests
from miaudit.errors import InputError
from miaudit.metrics import evaluate, tpr_key
from miaudit.report._inputs import BinningKind, ScoreHistogram

#: A class needs this many members and non-members to get metrics (as slices do).
MIN_CLASS_RECORDS = 20
#: Classes beyond this many are not broken down (the table would not be read).
MAX_CLASSES = 50


#: Equal-width bins are kept unless one of them would hold more than this share of the scores
#: (a skewed score such as the loss, whose members pile up near 0): then the bins are quantiles.
MAX_BIN_SHARE = 0.5


def _edges(s: np.ndarray, lo: float, hi: float, bins: int) -> tuple[np.ndarray, BinningKind]:
    """Bin edges for the (clipped) scores ``s``: equal widths, or quantiles of the pooled scores
    when one equal-width bin would hold most of them (never a single visible bin)."""
    edges = np.linspace(lo, hi, bins + 1)
    counts = np.histogram(s, bins=edges)[0]
    if s.size == 0 or counts.max() <= MAX_BIN_SHARE * s.size:
        return edges, "equal-width"
    q = np.unique(np.quantile(s, np.linspace(0.0, 1.0, bins + 1)))
    if q.size < 3:  # (almost) one value: nothing to spread
        return edges, "equal-width"
    return q, "quantile"


def score_histograms(
    member: np.ndarray,
    scores: Mapping[str, np.ndarray],
    *,
    bins: int = 40,
    tail: float = 0.005,
    unit: str = "records",
) -> list[ScoreHistogram]:
    """Member and non-member counts of each attack's scores on shared bins.

    Args:
        member: (n,) 1 = member.
        scores: attack name → (n,) scores, higher = more likely a member.
        bins: number of bins between the ``tail`` and ``1 - tail`` quantiles of all finite
            scores; scores beyond them (infinities included) are counted in the end bins. Bins
            have equal widths unless one would hold over half the scores; then they are
            quantiles of the pooled scores (``binning="quantile"``, at most ``bins`` of them).
        unit: what one row is: ``records`` or ``pairs``.
    """
    if bins < 1:
        raise InputError("bins", f"must be ≥ 1, got {bins}")
    member = np.asarray(member).astype(bool)
    out = []
    for name, s in scores.items():
        s = np.asarray(s, dtype=np.float64)
        if s.shape != member.shape:
            raise InputError("scores", f"{name}: {s.shape[0]} scores for {member.shape[0]} records")
        keep = ~np.isnan(s)
        finite = s[np.isfinite(s)]
        if finite.size == 0:
            continue
        lo, hi = (float(q) for q in np.quantile(finite, [tail, 1.0 - tail]))
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        clipped_s = np.clip(s[keep], lo, hi)
        edges, binning = _edges(clipped_s, lo, hi, bins)
        clipped = bool(np.any((s[keep] < lo) | (s[keep] > hi)))
        m = member[keep]
        counts_m = np.histogram(clipped_s[m], bins=edges)[0]
        counts_n = np.histogram(clipped_s[~m], bins=edges)[0]
        out.append(
            ScoreHistogram(
                attack=name,
                edges=[float(e) for e in edges],
                members=counts_m.tolist(),
                nonmembers=counts_n.tolist(),
                clipped=clipped,
                unit="pairs" if unit == "pairs" else "records",
                binning=binning,
            )
        )
    return out


# Long: one loop over the classes, then the classes' permutation test in one call.
def class_breakdown(
    member: np.ndarray,
    label: np.ndarray,
    scores: Mapping[str, np.ndarray],
    *,
    attacks: Sequence[str],
    n_resamples: int = 100,
    groups: np.ndarray | None = None,
    seed: int = 0,
) -> list[SliceResult]:
    """Per-class AUC and TPR at 1 % FPR of ``attacks``, as slices of column ``class``.

    Each class gives its size, never its member/non-member split (:class:`SliceResult`); one
    with fewer than ``MIN_CLASS_RECORDS`` members or non-members, its size only.
    ``groups``: the record of each scored pair, so that the bootstrap resamples records.
    Without them (one model's records), the first attack's AUC in each class whose smaller
    class has at most :data:`~miaudit.audit.PERMUTATION_BELOW` records is also tested by
    relabelling, adjusted over the classes (``auc_permutation_p``), as ``--slices`` groups are:
    on its bootstrap bound alone a class of a null model was the report's "most exposed group"
    in 16 of 160 runs (red team). Pairs of several models are not relabelled (the design ties
    a record's memberships together), and their classes keep the bound alone.
    """
    member = np.asarray(member).astype(np.int8)
    label = np.asarray(label)
    classes = np.unique(label)
    if classes.size > MAX_CLASSES:
        return []
    rng = np.random.default_rng(seed)
    out = []
    tested: list[tuple[int, np.ndarray]] = []  # (row of out, the class's records)
    for c in classes:
        mask = label == c
        m = member[mask]
        n1, n0 = int(m.sum()), int((m == 0).sum())
        if n1 < MIN_CLASS_RECORDS or n0 < MIN_CLASS_RECORDS:
            out.append(SliceResult(column="class", value=str(c), n_records=n1 + n0, attacks=[]))
            continue
        if groups is None and min(n1, n0) <= PERMUTATION_BELOW:
            tested.append((len(out), np.flatnonzero(mask)))
        ev = evaluate(
            m,
            {a: np.asarray(scores[a])[mask] for a in attacks},
            fprs=(0.01,),
            n_resamples=n_resamples,
            groups=None if groups is None else groups[mask],
            rng=rng,
        )
        rows = [
            SliceAttack(
                attack=a, auc=ev.estimate(a, "auc"), tpr_at_1pct_fpr=ev.estimate(a, tpr_key(0.01))
            )
            for a in attacks
        ]
        out.append(SliceResult(column="class", value=str(c), n_records=n1 + n0, attacks=rows))
    if tested:  # one model's records: relabelled within each class, as --slices groups are
        mark_group_tests(out, tested, member, np.asarray(scores[attacks[0]]), attacks[0], rng)
    return out


def _numeric(arrays: Mapping[str, np.ndarray], columns: Sequence[str]) -> bool:
    """Whether every named column is one-dimensional and holds numbers (or booleans)."""
    return all(
        arrays[c].ndim == 1
        and (np.issubdtype(arrays[c].dtype, np.number) or arrays[c].dtype == np.bool_)
        for c in columns
    )


# Long: each way the file can fail to match gets its own note; the reading itself is short.
def aggregates_from_scores(
    path: Path, result: AuditResult, *, bins: int = 40
) -> tuple[list[ScoreHistogram], list[SliceResult], str | None]:
    """Histograms and per-class rows from a run's scores.parquet, or why there are none.

    Returns ``(histograms, classes, note)``; ``note`` explains a file that does not match the
    results (then both lists are empty). Never raises on a mismatched file: the report is
    still made from results.json alone.
    """
    from miaudit.data import read_table

    try:  # bounded as every input file is (a crafted file of 65 KB took 1 GB once read)
        arrays = read_table(path, "scores").arrays
    except InputError as exc:
        return (
            [],
            [],
            f"{path.name} could not be read ({exc.problem}); score distributions are not shown",
        )
    cols = set(arrays)
    names = [a.name for a in result.attacks if f"score_{a.name}" in cols]
    problem = _mismatch(arrays, names, result)
    if problem is not None:
        return [], [], f"{path.name} {problem}; score distributions are not shown"
    member = arrays["member"].astype(np.int8)
    scores = {a: arrays[f"score_{a}"] for a in names}
    pairs = "target" in cols
    try:  # a crafted file's values (labels, record ids) may still be refused downstream
        hist = score_histograms(member, scores, bins=bins, unit="pairs" if pairs else "records")
        classes: list[SliceResult] = []
        if "label" in cols:
            strongest = result.exposure_attack if result.exposure_attack in names else names[0]
            groups = arrays["record_id"] if pairs and "record_id" in cols else None
            classes = class_breakdown(
                member,
                arrays["label"],
                scores,
                attacks=[strongest],
                n_resamples=min(result.bootstrap.replicates, 100),
                groups=groups,
                seed=result.seed,
            )
    except (InputError, ValueError, TypeError, IndexError) as exc:
        why = exc.problem if isinstance(exc, InputError) else type(exc).__name__
        return (
            [],
            [],
            f"{path.name} could not be summarised ({why}); score distributions are not shown",
        )
    return hist, classes, None


def _mismatch(
    arrays: Mapping[str, np.ndarray], names: Sequence[str], result: AuditResult
) -> str | None:
    """Why a scores file does not fit ``result`` (the rest of a sentence naming it), or None."""
    if "member" not in arrays or not names:
        return "has no membership or attack score columns"
    if len({np.shape(a)[0] if np.ndim(a) else -1 for a in arrays.values()}) != 1:
        return "has columns of different lengths"
    n_rows = len(arrays["member"])
    if n_rows != result.input.n_records:
        return f"has {n_rows} rows but the results describe {result.input.n_records}; it belongs to another run"
    if not _numeric(arrays, ["member", *(f"score_{a}" for a in names)]):
        return "has membership or score columns that are not numbers"
    if not np.isin(arrays["member"], (0, 1)).all():  # NaN and 0.5 included
        return "has membership values other than 0 and 1"
    if any(np.ndim(arrays[c]) != 1 for c in ("label", "record_id", "target") if c in arrays):
        return "has a label, record or target column that is not one value per row"
    return None
