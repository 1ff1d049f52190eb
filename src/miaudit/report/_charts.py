"""Charts as inline SVG (matplotlib's SVG writer; no pyplot, no global state, no raster).

Text stays text (``svg.fonttype = none``), so charts are small and searchable; ids inside
each SVG get a per-chart prefix, so several charts can share one HTML document.
"""

from __future__ import annotations

import functools
import io
import math
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from markupsafe import Markup

from miaudit.audit import AttackResult, AuditResult
from miaudit.metrics import Estimate
from miaudit.report._inputs import DpAuditSummary, ScoreHistogram, TradeoffVariant

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

_RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "miaudit-report",
    "font.family": "sans-serif",
    "font.size": 9.0,
    "axes.titlesize": 9.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 8.0,
    "legend.frameon": False,
    "path.simplify": True,
}
MEMBER = "#c0392b"


def _text(name: str) -> str:
    """A name from an input file as matplotlib text: "$\\foo{$" would be parsed as math (a red
    team's attack name crashed the report)."""
    return name.replace("$", r"\$")


NONMEMBER = "#2c7fb8"
CHANCE = "#777777"
_PALETTE = (
    "#1b9e77",
    "#d95f02",
    "#7570b3",
    "#e7298a",
    "#66a61e",
    "#e6ab02",
    "#a6761d",
    "#1f78b4",
    "#b15928",
    "#6a3d9a",
    "#33a02c",
    "#fb9a99",
)


def _figure(width: float, height: float):  # type: ignore[no-untyped-def]
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _svg(fig: Figure, chart: str, title: str) -> Markup:
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context(_rc()):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    text = _shrink(text)
    text = re.sub(r'\sid="([^"]+)"', lambda m: f' id="{chart}-{m.group(1)}"', text)
    text = text.replace("url(#", f"url(#{chart}-").replace('href="#', f'href="#{chart}-')
    # Scale with the page: keep the viewBox, drop the fixed size.
    text = re.sub(r'<svg([^>]*?)\swidth="[^"]+"\sheight="[^"]+"', r"<svg\1", text, count=1)
    safe_title = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace(
        "<svg", f'<svg role="img" aria-label="{safe_title}" class="chart" data-chart="{chart}"', 1
    )
    return Markup(text)


_NUMBER = re.compile(r"(-?\d+\.\d\d)\d+")


def _round_attr(m: re.Match[str]) -> str:
    value = _NUMBER.sub(r"\1", " ".join(m.group(2).split()))
    return f' {m.group(1)}="{value}"'


def _shrink(text: str) -> str:
    """Round geometry to 0.01 pt, collapse path whitespace, drop ids nothing refers to."""
    text = re.sub(r'\s(d|transform|x|y|width|height)="([^"]*)"', _round_attr, text)
    used = set(re.findall(r'(?:url\(#|href="#)([^")]+)', text))
    text = re.sub(r'\sid="([^"]+)"', lambda m: m.group(0) if m.group(1) in used else "", text)
    return re.sub(r">\s+<", "><", text)


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _rc() -> Any:
    # matplotlib types rc_context's keys as a Literal of every rc name; ours are a plain dict.
    return cast(Any, _RC)


def _styled(build: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run a figure builder under the report's rc settings (they apply when artists are made)."""
    import matplotlib

    @functools.wraps(build)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with matplotlib.rc_context(_rc()):
            return build(*args, **kwargs)

    return run


def _colour(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]


def _roc_curve(ax: Any, a: AttackResult, n0: int, floor: float, colour: str, lw: float) -> None:
    """One attack's ROC steps, and its interval band where n0·FPR ≥ 10."""
    # Without resampling (resamples = 0) a curve has no bands: draw it without them.
    nan = [math.nan] * len(a.roc.fpr)
    lower, upper = a.roc.tpr_lower or nan, a.roc.tpr_upper or nan
    pts = [
        (f, t, lo, hi)
        for f, t, lo, hi in zip(a.roc.fpr, a.roc.tpr, lower, upper, strict=True)
        if f >= 1.0 / n0 and math.isfinite(t)
    ]
    if not pts:
        return
    f = [p[0] for p in pts]
    t = [max(p[1], floor) for p in pts]
    auc = f" (AUC {a.auc.point:.3f})" if a.auc.point is not None else ""
    ax.plot(f, t, color=colour, lw=lw, label=f"{_text(a.name)}{auc}", drawstyle="steps-post")
    band = [
        (p[0], max(p[2], floor), max(p[3], floor))
        for p in pts
        if n0 * p[0] >= 10 and math.isfinite(p[2]) and math.isfinite(p[3])
    ]
    if band:
        ax.fill_between(
            [b[0] for b in band],
            [b[1] for b in band],
            [b[2] for b in band],
            color=colour,
            alpha=0.12,
            lw=0,
            step="post",
        )


@_styled
def roc_chart(result: AuditResult) -> Markup:
    """Log–log ROC of every attack: TPR with its pointwise interval band, and the chance line.

    Points at FPR below 20/n0 are not in the results (:data:`ROC_MIN_NEGATIVES`); a band is drawn only where
    n0·FPR ≥ 10 (elsewhere the interval is not reliable). TPR 0 is drawn on the axis floor.
    """
    n0 = max(result.input.n_nonmembers, 1)
    floor = max(1.0 / n0, min((min(a.roc.fpr) for a in result.attacks if a.roc.fpr), default=1e-4))
    # the published ROC starts where 20 non-members lie above it: with fewer than 200 the axis
    # would start at 0.1 or later, with 20 or fewer at 1.0 (an empty axis)
    floor = min(floor, 0.1)
    rows = math.ceil((len(result.attacks) + 1) / 3) if len(result.attacks) > 4 else 0
    fig = _figure(7.2, 4.4 + 0.2 * rows)
    ax = fig.add_subplot()
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.plot([floor, 1.0], [floor, 1.0], ls=":", color=CHANCE, lw=1.2, label="chance (TPR = FPR)")
    ranked = sorted(result.attacks, key=lambda a: -(a.auc.point or 0.0))
    strongest = ranked[0].name if ranked else None
    for i, a in enumerate(ranked):
        _roc_curve(ax, a, n0, floor, _colour(i), 2.2 if a.name == strongest else 1.2)
    ax.set_xlim(floor, 1.0)
    ax.set_ylim(floor, 1.05)
    ax.minorticks_off()  # minor log ticks cost most of the drawing time and add little
    ax.set_xlabel("false positive rate (non-members flagged as members)")
    ax.set_ylabel("true positive rate (members found)")
    if len(ranked) > 4:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=3)
    else:
        ax.legend(loc="lower right")
    return _svg(
        fig, "roc", "ROC curves of every attack, log–log, with intervals and the chance line"
    )


def _interval(e: Estimate) -> tuple[float, float, float] | None:
    if e.point is None or e.status == "not_measurable" or not math.isfinite(e.point):
        return None
    lo = e.lower if e.lower is not None and math.isfinite(e.lower) else e.point
    hi = e.upper if e.upper is not None and math.isfinite(e.upper) else e.point
    # A percentile interval may, rarely, leave out its point: the bar then spans the interval
    # and reaches the point (matplotlib refuses negative error lengths).
    return e.point, max(0.0, e.point - lo), max(0.0, hi - e.point)


@_styled
def attack_summary_chart(attacks: Sequence[AttackResult]) -> Markup:
    """AUC and TPR at 1 % FPR of each attack with intervals; chance marked; statuses written out."""
    fig = _figure(7.2, 0.45 + 0.28 * max(len(attacks), 2))
    ax_auc, ax_tpr = fig.subplots(1, 2, sharey=True)
    names = [a.name for a in attacks]
    ys = list(range(len(attacks)))[::-1]
    for ax, metric, chance, label in (
        (ax_auc, "auc", 0.5, "AUC"),
        (ax_tpr, "tpr@1%fpr", 0.01, "TPR at 1% FPR"),
    ):
        ax.axvline(chance, color=CHANCE, ls=":", lw=1.2)
        for y, a in zip(ys, attacks, strict=True):
            e = (
                a.auc
                if metric == "auc"
                else a.tpr_at_fpr.get(metric, Estimate(point=None, status="not_measurable"))
            )
            iv = _interval(e)
            if iv is None:
                ax.text(chance, y, "  not measurable", va="center", fontsize=8, color=CHANCE)
                continue
            p, dl, du = iv
            if e.status == "interval_not_reliable":
                ax.plot([p], [y], "o", mfc="white", color=_PALETTE[2])
                ax.text(p, y + 0.3, "interval not reliable", fontsize=7, color=CHANCE, ha="center")
            else:
                ax.errorbar(
                    [p], [y], xerr=[[dl], [du]], fmt="o", color=_PALETTE[2], capsize=2.5, ms=4
                )
        ax.set_xlabel(label + ("" if metric == "auc" else " (chance: 1%)"))
        ax.grid(axis="y", visible=False)
    ax_tpr.xaxis.set_major_formatter(_percent())
    ax_auc.set_yticks(ys, [_text(n) for n in names])
    ax_auc.set_ylim(-0.7, len(attacks) - 0.3)
    return _svg(fig, "attacks", "AUC and TPR at 1% FPR of each attack with intervals")


def _percent() -> FuncFormatter:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: f"{v * 100:g}%")


@_styled
def histogram_chart(histograms: Sequence[ScoreHistogram]) -> Markup:
    """Small multiples: share of members and of non-members in each score bin, per attack."""
    from matplotlib.ticker import MaxNLocator

    n = len(histograms)
    cols = 3 if n > 4 else min(n, 2)
    rows = math.ceil(n / cols)
    fig = _figure(7.2, 0.3 + 1.75 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, h in zip(axes.flat, histograms, strict=False):
        tm, tn = max(sum(h.members), 1), max(sum(h.nonmembers), 1)
        # quantile bins are drawn at equal widths, labelled with the scores at their edges
        xs = h.edges if h.binning == "equal-width" else list(range(len(h.edges)))
        ax.stairs(
            [c / tn for c in h.nonmembers],
            xs,
            fill=True,
            color=NONMEMBER,
            alpha=0.35,
            label="non-members",
        )
        ax.stairs([c / tm for c in h.members], xs, color=MEMBER, lw=1.4, label="members")
        ax.set_title(
            _text(h.attack) + (" (quantile bins)" if h.binning == "quantile" else ""), loc="left"
        )
        if h.binning == "quantile":
            ticks = sorted({0, len(h.edges) // 2, len(h.edges) - 1})
            ax.set_xticks(ticks, [f"{h.edges[i]:.3g}" for i in ticks])
        else:
            ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.yaxis.set_major_locator(MaxNLocator(3))
        ax.yaxis.set_major_formatter(_percent())
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    axes.flat[0].legend(loc="upper left")
    fig.supxlabel("attack score (higher = more likely a member)", fontsize=8.5)
    fig.supylabel(f"share of {histograms[0].unit}", fontsize=8.5)
    return _svg(fig, "scores", "Member and non-member score distributions of each attack")


@_styled
def utility_chart(train: float, test: float) -> Markup:
    """Train and test accuracy as bars, the gap between them marked."""
    fig = _figure(7.2, 1.35)
    ax = fig.add_subplot()
    ax.barh([1, 0], [train, test], color=[MEMBER, NONMEMBER], height=0.6)
    ax.set_yticks([1, 0], ["train (members)", "test (non-members)"])
    for y, v in ((1, train), (0, test)):
        ax.text(v, y, f" {v * 100:.1f}%", va="center", fontsize=8.5)
    ax.set_xlim(0, 1.12)
    ax.xaxis.set_major_formatter(_percent())
    ax.set_xlabel(f"accuracy; generalisation gap {(train - test) * 100:.1f} points")
    ax.grid(axis="y", visible=False)
    return _svg(fig, "utility", "Train and test accuracy and the generalisation gap")


@_styled
def tradeoff_chart(variants: Sequence[TradeoffVariant]) -> Markup:
    """Test accuracy against the strongest attack's AUC and TPR at 1 % FPR, one point per variant."""
    fig = _figure(7.2, 3.0 + 0.22 * math.ceil(len(variants) / 3))
    ax_auc, ax_tpr = fig.subplots(1, 2, sharex=True)
    for ax, which, chance, label in (
        (ax_auc, "auc", 0.5, "strongest attack AUC"),
        (ax_tpr, "tpr", 0.01, "strongest attack TPR at 1% FPR"),
    ):
        ax.axhline(chance, color=CHANCE, ls=":", lw=1.2)
        for i, v in enumerate(variants):
            e = v.auc if which == "auc" else v.tpr_at_1pct_fpr
            iv = _interval(e)
            if iv is None:
                continue
            p, dl, du = iv
            ax.errorbar(
                [v.test_accuracy],
                [p],
                yerr=[[dl], [du]],
                fmt="s" if v.baseline else "o",
                color=_colour(i),
                capsize=2.5,
                ms=5,
                label=_text(v.name) if which == "auc" else None,
            )
        ax.margins(x=0.15, y=0.15)
        ax.set_ylabel(label)
        ax.set_xlabel("test accuracy")
        ax.xaxis.set_major_formatter(_percent())
    ax_tpr.yaxis.set_major_formatter(_percent())
    # Names in a legend below, not beside the points: variants of similar accuracy would
    # otherwise print their names over one another.
    fig.legend(loc="outside lower center", ncols=min(3, max(len(variants), 1)), fontsize=7.5)
    return _svg(
        fig,
        "tradeoff",
        "Privacy–utility trade-off: test accuracy against attack success per variant",
    )


@_styled
def dp_chart(dp: DpAuditSummary) -> Markup:
    """Claimed ε against the empirical lower bound (and the most the design could certify)."""
    fig = _figure(7.2, 1.5)
    ax = fig.add_subplot()
    bars = [
        ("claimed ε", dp.claimed_epsilon, NONMEMBER),
        (
            "measured lower bound",
            dp.empirical_epsilon_lower_bound,
            MEMBER if dp.verdict == "FAILED" else _PALETTE[0],
        ),
    ]
    ys = list(range(len(bars)))[::-1]
    for y, (_name, v, colour) in zip(ys, bars, strict=True):
        ax.barh(y, v, color=colour, height=0.6)
        ax.text(v, y, f" {v:.3g}", va="center", fontsize=8.5)
    top = max(v for _, v, _ in bars)
    if dp.max_certifiable_epsilon is not None:
        ax.axvline(dp.max_certifiable_epsilon, color=CHANCE, ls="--", lw=1.2)
        ax.text(
            dp.max_certifiable_epsilon,
            len(bars) - 0.45,
            " most this audit can certify",
            fontsize=7.5,
            color=CHANCE,
        )
        top = max(top, dp.max_certifiable_epsilon)
    ax.set_yticks(ys, [b[0] for b in bars])
    ax.set_xlim(0, top * 1.25 + 1e-9)
    ax.set_ylim(-0.6, len(bars) - 0.2)
    ax.set_xlabel("ε")
    ax.grid(axis="y", visible=False)
    return _svg(fig, "dp", "Claimed privacy budget against the empirical lower bound")
