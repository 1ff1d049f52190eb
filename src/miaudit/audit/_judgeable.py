"""Whether an audit's results can be judged at all: by the report's verdict and the CI gate.

Both read 95 % bounds. Some results have none worth the name, and judging them as if they had
printed "not detected" on a model whose loss AUC was 0.80 inverted, passed a CI gate on it, and
called models that leak nothing "low risk" 90 times in 100 (red team, with one replicate).
"""

from __future__ import annotations

from miaudit.audit._attack import reads_label
from miaudit.audit._results import AuditResult

#: Fewest bootstrap replicates whose ⌈(B + 1) · 0.975⌉-th largest maximum exists (B ≥ 39): the
#: verdict's simultaneous bound needs that order statistic; with fewer it is the largest of a
#: handful of draws (1 replicate: the "bound" is the point itself).
MIN_VERDICT_REPLICATES = 39
#: Fewest members and fewest non-members (records; pairs in a reference audit) whose bootstrap
#: bounds the verdict reads: a percentile bootstrap of 5 non-members draws from 5 values (the
#: family's bounds alone flagged 36.0 % of null models at 300 + 5, still 4.5 % at 30 + 30:
#: ``verdict_null``). Where the results hold a permutation test, it judges smaller classes.
MIN_VERDICT_CLASS = 30


def too_few_records(result: AuditResult) -> str | None:
    """Why ``result``'s classes are too small for its bootstrap bounds, or None."""
    n1, n0 = result.input.n_members, result.input.n_nonmembers
    if min(n1, n0) < MIN_VERDICT_CLASS:
        return (
            f"{n1:,} members and {n0:,} non-members: the intervals need at least "
            f"{MIN_VERDICT_CLASS} of each (with fewer they are too narrow: models that leak "
            "nothing were called at risk)"
        )
    pool = result.reference.pool_records if result.reference is not None else None
    if pool is not None and pool < 2 * MIN_VERDICT_CLASS:
        # the intervals resample records, not (model, record) pairs: 20 records audited by
        # many models are still 20 records (red team: "moderate" on a 20-record pool)
        return (
            f"a pool of {pool:,} records: the intervals resample records and need at least "
            f"{2 * MIN_VERDICT_CLASS}"
        )
    return None


def why_not_judged(result: AuditResult, *, small_classes: bool = True) -> str | None:
    """Why ``result`` cannot be judged against thresholds on its bounds, or None when it can.

    - fewer than :data:`MIN_VERDICT_REPLICATES` bootstrap replicates (0: no interval at all);
    - fewer than :data:`MIN_VERDICT_CLASS` members or non-members, or a pool of fewer than
      2 × :data:`MIN_VERDICT_CLASS` records (a reference audit): :func:`too_few_records`, left
      out with ``small_classes`` False (the verdict, where a permutation test decides alone);
    - an AUC of an attack reading the label's column below 0.5 beyond noise
      (:func:`below_chance`): the scores rank non-members above members, which
      training does not do — swapped rows, class columns or a member column coded the other
      way, and then every figure means nothing (a warning was printed, yet the verdict said
      "not detected" and the gate passed)."""
    b = result.bootstrap.replicates
    if b < MIN_VERDICT_REPLICATES:
        had = "no bootstrap (resamples = 0)" if b == 0 else f"only {b} bootstrap replicates"
        return (
            f"{had}: a 95 % bound holding together over the attacks needs at least "
            f"{MIN_VERDICT_REPLICATES} (resamples)"
        )
    small = too_few_records(result) if small_classes else None
    if small is not None:
        return small
    inverted = below_chance(result)
    if inverted is not None:
        name, upper = inverted
        return (
            f"{name}'s AUC lies below 0.5 beyond noise (at most {upper:.3f}, a bound holding "
            "together over the attacks): the scores rank non-members above members, which "
            "training does not do; check that the rows match the records, the class columns "
            "the labels and the member column its meaning (1 = member)"
        )
    return None


def below_chance(result: AuditResult) -> tuple[str, float] | None:
    """The attack reading the label's column whose AUC lies furthest below 0.5 beyond noise,
    with its upper bound, or None (also when such an attack lies above 0.5 beyond noise).

    Only attacks that read the label's column (:func:`~miaudit.audit._attack.reads_label`), for
    the inversion and for the veto alike: swapped class columns invert those and leave the
    label-free ones (entropy) above 0.5, so an entropy attack above chance vetoed the check and
    broken inputs were judged; and a perfectly leaking model, loss AUC 1.000, has its entropy
    attack at 0.40, which must not make it "not judged" (red team). Any one attack, not every
    one: an attack that sees only labels sits at 0.5 beside a loss attack at 0.19 (red team).
    Its bound holds together over the m label-reading attacks by Bonferroni, from the normal
    approximation of each attack's own interval (SD ≈ width / 3.92), so models that leak
    nothing trip it at most 2.5 % of the time, as the verdict's lower bounds. Results of
    label-free attacks alone are not checked: an honest leaking model can put them below 0.5."""
    ok = [
        a
        for a in result.attacks
        if a.auc.status == "ok" and a.auc.point is not None and reads_label(a.name)
    ]
    worst: tuple[str, float] | None = None
    for a in ok:
        point = a.auc.point
        half = a.auc.bonferroni_half_width(len(ok), result.bootstrap.confidence)
        if half is None or point is None:
            continue
        if point - half > 0.5:
            # another label-reading attack lies above chance beyond noise: the inputs are not
            # inverted, the one below reads the model backwards
            return None
        if point + half < 0.5 and (worst is None or point + half < worst[1]):
            worst = (a.name, point + half)
    return worst
