"""The reference-budget curve in the report: a small table and a chart (issue 18).

What each extra pair of reference models buys: the best attack's AUC and TPR at 1 % FPR with
k = 0, 1, 2, 4, … reference pairs, rescored from the audit's own references (results.json's
``budget_curve``, computed by :mod:`miaudit.audit`). Absent from results without it.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from miaudit.audit import AuditResult
from miaudit.report._charts import _colour, _figure, _interval, _percent, _styled, _svg

_TPR_KEYS = ("tpr@1%fpr", "tpr@0.1%fpr")


@_styled
def budget_chart(result: AuditResult) -> Markup:
    """AUC (left) and TPR at 1 % FPR (right) of the best attack against k, with intervals."""
    curve = result.budget_curve
    assert curve is not None
    fig = _figure(7.2, 2.4)
    ax_auc, ax_tpr = fig.subplots(1, 2)
    ks = [p.references for p in curve.points]
    xs = list(range(len(ks)))
    for ax, label in ((ax_auc, "AUC"), (ax_tpr, "TPR at 1% FPR")):
        for x, p in zip(xs, curve.points, strict=True):
            e = p.auc if label == "AUC" else p.tpr_at_fpr.get("tpr@1%fpr")
            iv = None if e is None else _interval(e)
            if iv is not None:
                ax.errorbar(
                    [x],
                    [iv[0]],
                    yerr=[[iv[1]], [iv[2]]],
                    fmt="o",
                    color=_colour(2),
                    capsize=2.5,
                    ms=4,
                )
        ax.set_xticks(xs, [str(k) for k in ks])
        ax.set_xlabel("reference pairs k")
        ax.set_ylabel(label)
    ax_tpr.yaxis.set_major_formatter(_percent())
    return _svg(
        fig,
        "budget",
        "AUC and TPR at 1% FPR of the best attack against the number of reference pairs",
    )


def budget_section(result: AuditResult) -> dict[str, Any] | None:
    """What the template's budget partial shows; None when results.json has no curve."""
    curve = result.budget_curve
    if curve is None or not curve.points:
        return None
    return {
        "points": curve.points,
        "tpr_keys": [k for k in _TPR_KEYS if any(k in p.tpr_at_fpr for p in curve.points)],
        "chart": budget_chart(result),
        "method": curve.method,
        "candidates": curve.candidates,
    }
