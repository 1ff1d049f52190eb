"""Bootstrap intervals by record resampling: coverage, pairing, determinism, statuses."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from miaudit.errors import InputError
from miaudit.metrics import evaluate, paired_difference, roc_auc_score


def test_coverage_of_auc_and_tpr_intervals_on_binormal_scores():
    """95 % intervals cover the true AUC and TPR@10 % in about 95 % of simulated datasets.

    200 datasets → a binomial SD of 1.5 points around 95 %; the bound 0.90 is 3 SD below, so an
    honest implementation fails it with probability < 0.2 %, while intervals from resampling
    the wrong unit or a bug in the weights would cover far less (e.g. 68 %, docs/method.md §0).
    """
    d = 0.8
    true_auc = norm.cdf(d / np.sqrt(2))
    true_tpr = 1 - norm.cdf(norm.ppf(0.9) - d)
    hits_auc = hits_tpr = 0
    trials = 200
    for t in range(trials):
        rng = np.random.default_rng(t)
        y = np.repeat([0, 1], 100)
        s = rng.normal(size=200) + d * y
        ev = evaluate(y, {"a": s}, fprs=(0.1,), n_resamples=200, rng=t)
        auc, tpr = ev.estimate("a", "auc"), ev.estimate("a", "tpr@10%fpr")
        hits_auc += auc.lower <= true_auc <= auc.upper
        hits_tpr += tpr.lower <= true_tpr <= tpr.upper
    assert 0.90 <= hits_auc / trials <= 0.99
    assert 0.90 <= hits_tpr / trials <= 0.995


def _grouped(records: int, models: int, rng: np.random.Generator):
    u = 1.5 * rng.normal(size=records)  # a record's difficulty, shared by every model scoring it
    m = rng.integers(0, 2, (models, records))
    s = u[None, :] + 0.5 * m + 0.3 * rng.normal(size=(models, records))
    return m.ravel(), s.ravel(), np.broadcast_to(np.arange(records), (models, records)).ravel()


def test_grouped_resampling_keeps_a_records_pairs_together_and_covers():
    y, s, g = _grouped(20000, 8, np.random.default_rng(999))
    truth = roc_auc_score(y, s)  # 160,000 pairs: standard error ≈ 0.002
    trials, hits = 120, 0
    for t in range(trials):
        y, s, g = _grouped(300, 8, np.random.default_rng(t))
        est = evaluate(y, {"a": s}, n_resamples=200, groups=g, rng=t).estimate("a", "auc")
        hits += est.lower <= truth <= est.upper
    # 120 trials: SD 2 points at 95 %; 0.87 is 4 SD below.
    assert hits / trials >= 0.87


def test_same_seed_same_intervals_and_order_invariance():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 400)
    s = rng.normal(size=400) + y
    a = evaluate(y, {"s": s}, n_resamples=50, rng=7).estimate("s", "auc")
    b = evaluate(y, {"s": s}, n_resamples=50, rng=7).estimate("s", "auc")
    assert a == b
    perm = rng.permutation(400)
    c = evaluate(y[perm], {"s": s[perm]}, n_resamples=50, rng=7).estimate("s", "auc")
    assert c.point == a.point
    # the interval of permuted input is another bootstrap draw: close, not identical
    assert abs(c.lower - a.lower) < 0.03 and abs(c.upper - a.upper) < 0.03


def test_paired_difference_is_tighter_than_unpaired_and_zero_for_identical():
    rng = np.random.default_rng(2)
    y = np.repeat([0, 1], 500)
    base = rng.normal(size=1000) + 0.5 * y
    better = base + 0.3 * y + 0.05 * rng.normal(size=1000)
    same = paired_difference(y, base, base)
    assert same.point == 0.0 and same.lower == 0.0 and same.upper == 0.0
    diff = paired_difference(y, better, base, n_resamples=300)
    assert diff.lower > 0  # the improvement is detected by pairing
    ev = evaluate(y, {"b": better, "a": base}, n_resamples=300)
    wa = ev.estimate("a", "auc")
    assert (diff.upper - diff.lower) < (wa.upper - wa.lower)


def test_statuses_for_low_fpr():
    y = np.r_[np.zeros(500, int), np.ones(500, int)]
    s = np.random.default_rng(0).normal(size=1000) + y
    ev = evaluate(y, {"s": s}, n_resamples=20)
    assert ev.estimate("s", "tpr@10%fpr").status == "ok"  # 500 × 0.1 = 50 ≥ 10
    for metric, needs in (
        ("tpr@1%fpr", 1000),
        ("tpr@0.1%fpr", 10000),
        ("ppv@1%fpr", 1000),
    ):  # 500 × 0.01 = 5 < 10
        nm = ev.estimate("s", metric)
        assert (
            nm.status == "not_measurable"
            and nm.point is None
            and nm.lower is None
            and nm.needs_nonmembers == needs
        )
    # Exactly 10 non-members at the rate is measurable (1,000 × 1 %).
    y2 = np.r_[np.zeros(1000, int), np.ones(500, int)]
    ev2 = evaluate(y2, {"s": np.random.default_rng(1).normal(size=1500) + y2}, n_resamples=20)
    assert ev2.estimate("s", "tpr@1%fpr").status == "ok"


def test_bad_arguments():
    y = np.array([0, 1, 0, 1])
    s = np.array([0.1, 0.2, 0.3, 0.4])
    with pytest.raises(InputError, match="prior"):
        evaluate(y, {"s": s}, prior=1.0)
    with pytest.raises(InputError, match="no attack"):
        evaluate(y, {})
    with pytest.raises(InputError, match="metric"):
        evaluate(y, {"s": s}, n_resamples=2).estimate("s", "precision")


@pytest.mark.parametrize("seed", range(6))
def test_weighted_metrics_equal_brute_force_on_the_resampled_records(seed):
    """A replicate's weights must give exactly the metrics of the duplicated-records dataset."""
    from miaudit.metrics import membership_advantage, ppv_at_fpr, tpr_at_fpr
    from miaudit.metrics._sorted import SortedScores

    rng = np.random.default_rng(seed)
    n = 120
    y = rng.integers(0, 2, n)
    s = np.round(rng.normal(size=n) + y, 1)  # many ties
    w = rng.poisson(1.0, n).astype(float)  # zero weights included
    w[np.flatnonzero(y == 1)[0]] = w[np.flatnonzero(y == 0)[0]] = 1.0
    got = SortedScores(y, s).metrics(w[y == 1], w[y == 0], [0.05, 0.2], 0.3, 0.2)
    rep = np.repeat(np.arange(n), w.astype(int))
    yr, sr = y[rep], s[rep]
    assert got[0] == pytest.approx(roc_auc_score(yr, sr), abs=1e-12)
    assert got[1] == pytest.approx(membership_advantage(yr, sr), abs=1e-12)
    assert got[3] == pytest.approx(tpr_at_fpr(yr, sr, fpr=0.05), abs=1e-12)
    assert got[4] == pytest.approx(tpr_at_fpr(yr, sr, fpr=0.2), abs=1e-12)
    assert np.isnan(got[2]) == np.isnan(ppv_at_fpr(yr, sr, fpr=0.2, prior=0.3))
    if not np.isnan(got[2]):
        assert got[2] == pytest.approx(ppv_at_fpr(yr, sr, fpr=0.2, prior=0.3), abs=1e-12)


def test_intervals_on_pure_noise_exclude_chance_at_most_at_the_nominal_rate():
    """100 pure-noise datasets (400 records, random membership): every headline metric's 95 %
    interval excludes its chance value in at most 12 (the 0.999 quantile of Binomial(100, 0.05):
    a nominal 5 % rate fails this with probability 0.001). The percentile interval of the
    advantage, which the band replaced, fails it (it excluded chance in 78 of 100 before)."""
    from scipy.stats import binom

    rng = np.random.default_rng(0)
    limit = int(binom.ppf(0.999, 100, 0.05))
    chance = {"auc": 0.5, "advantage": 0.0, "balanced_accuracy": 0.5, "tpr@10%fpr": 0.1}
    excluded = dict.fromkeys(chance, 0)
    percentile_excluded = 0
    for r in range(100):
        y = rng.integers(0, 2, 400)
        ev = evaluate(y, {"a": rng.normal(size=400)}, fprs=(0.1,), n_resamples=200, rng=r)
        for metric, value in chance.items():
            e = ev.estimate("a", metric)
            excluded[metric] += not (e.lower <= value <= e.upper)
        reps = ev.replicates["a"][:, ev.columns.index("advantage")]
        percentile_excluded += np.quantile(reps, 0.025) > 0
    assert all(v <= limit for v in excluded.values()), excluded
    assert percentile_excluded > limit  # the test has the power to see the old interval's bias


def test_simultaneous_bounds_are_below_each_attacks_own() -> None:
    """Over several attacks the family's bound is lower than each one's 95 % bound (the price
    of asking whether any is above chance); without a bootstrap there is none."""
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(200), np.zeros(200)].astype(int)
    scores = {f"a{j}": rng.normal(size=400) + 0.3 * y for j in range(5)}
    ev = evaluate(y, scores, n_resamples=400, rng=1)
    together = ev.simultaneous_lower(["auc"])
    assert set(together) == set(scores)
    for name in scores:
        own = ev.estimate(name, "auc")
        assert own.lower is not None and together[name]["auc"] < own.lower
    assert evaluate(y, scores, n_resamples=0).simultaneous_lower(["auc"]) == {}


def test_difference_lower_is_the_normal_bound_a_percentile_cannot_resolve():
    """The trade-off's Bonferroni bound over k variants needs a one-sided tail of 0.025 / k: at
    k = 9 and 200 replicates a percentile interpolates between the two smallest replicates and
    was looser than nominal (6.1 % family-wise for 2.5 %, red team). The bound is point − z·SD
    of the replicates; on 5,000 null comparisons of 9 variants each (replicates drawn around
    each observed difference, as a bootstrap's are) it claims a reduction in at most the
    nominal 2.5 % of families (within 3 binomial SE), where the interpolated percentile exceeds it."""
    from scipy.stats import norm

    from miaudit.metrics import evaluate

    rng = np.random.default_rng(5)
    member = rng.integers(0, 2, 400).astype(np.int8)
    a, b = rng.normal(size=400), rng.normal(size=400)
    ev = evaluate(member, {"a": a, "b": b}, n_resamples=200, rng=np.random.default_rng(1))
    reps = ev.replicates["a"][:, ev._col("auc")] - ev.replicates["b"][:, ev._col("auc")]
    point = ev.points["a"][ev._col("auc")] - ev.points["b"][ev._col("auc")]
    tail = 0.025 / 9
    want = point - norm.ppf(1 - tail) * reps[np.isfinite(reps)].std(ddof=1)
    assert ev.difference_lower("a", "b", "auc", tail) == pytest.approx(want, rel=1e-12)
    # the rule's error rate, simulated: observed d ~ N(0, 1) per variant, replicates N(d, 1)
    d = rng.normal(size=(5000, 9))
    r = d[..., None] + rng.normal(size=(5000, 9, 200))
    normal = (d - norm.ppf(1 - tail) * r.std(axis=2, ddof=1) > 0).any(axis=1).mean()
    percentile = (np.quantile(r, tail, axis=2) > 0).any(axis=1).mean()
    assert normal <= 0.025 + 3 * np.sqrt(0.025 * 0.975 / 5000) < percentile  # 3 SE
    with pytest.raises(ValueError, match="maximum over thresholds"):
        ev.difference_lower("a", "b", "advantage", tail)


def test_the_published_roc_starts_where_twenty_non_members_lie_above_it():
    """Red team: 19 members tied at the top score, listed by pseudonym in most_exposed, and the
    ROC's first point (FPR 1/n0) read TPR 19/n1: every listed record a member. The ROC now
    starts at 20/n0, where a listed tie of at most 19 cannot be told apart from the non-members
    above the threshold."""
    from miaudit.metrics import evaluate
    from miaudit.metrics._bootstrap import ROC_MIN_NEGATIVES

    rng = np.random.default_rng(0)
    y = np.r_[np.ones(2000), np.zeros(2000)].astype(int)
    s = rng.normal(size=4000)
    s[:19] = 100.0  # 19 members tied at the top
    ev = evaluate(y, {"loss": s}, n_resamples=20, rng=1)
    fpr, tpr, lo, hi = ev.roc_grid("loss")
    assert fpr and min(fpr) * 2000 >= ROC_MIN_NEGATIVES * (1 - 1e-9)
    assert len(tpr) == len(fpr) == len(lo) == len(hi)
    # the headline TPRs still read every record
    assert ev.estimate("loss", "tpr@1%fpr").point is not None
