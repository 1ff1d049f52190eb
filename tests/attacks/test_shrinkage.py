"""Shrunk LiRA (docs/method.md §12): limits, the moment fit, small k, population, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import polygamma
from scipy.stats import norm
from scipy.stats import t as student_t
from sklearn.metrics import roc_auc_score

from miaudit.attacks import lira_offline, lira_online, lira_shrunk_offline, lira_shrunk_online
from miaudit.attacks._shrinkage import (
    INFINITE,
    MIN_PER_BIN,
    _variance_prior,
    level_bins,
    shrunk_gaussians,
    trigamma_inverse,
    variance_groups,
)
from miaudit.errors import InputError
from tests.simulate import complementary_keep


def hetero(n: int = 2000, k: int = 4, seed: int = 0, shift: float = 1.0, pop: int = 0):
    """φ = difficulty + shift·IN + noise whose scale grows with the difficulty (as φ does near a
    saturated softmax); two classes; ``pop`` population records (no model trained on them)."""
    rng = np.random.default_rng(seed)
    total = n + pop
    base = rng.normal(0.0, 2.0, total)
    scale = np.exp(0.4 * base)
    keep = np.zeros((k, total), dtype=bool)
    keep[:, :n] = complementary_keep(rng, k, n)
    ref = base + shift * keep + scale * rng.normal(size=(k, total))
    member = rng.random(n) < 0.5
    tgt = base[:n] + shift * member + scale[:n] * rng.normal(size=n)
    labels = (base > 0).astype(np.int64)
    return tgt, ref[:, :n], keep[:, :n], member, labels[:n], ref[:, n:], labels[n:]


def test_many_references_tend_to_each_records_own_estimates():
    """The prior's weight is ν₀/(ν₀ + n − 1): the gap to the record's own mean and σ shrinks
    like 1/n (the predictive's scale is σ̃·√(1 + 1/n), its location the record's mean)."""
    rng = np.random.default_rng(1)
    n = 300
    mu, sd = rng.normal(0, 3, n), rng.uniform(0.2, 3.0, n)
    gaps = []
    for k in (400, 4000):
        ref = mu + sd * rng.normal(size=(k, n))
        keep = np.zeros((k, n), dtype=bool)
        keep[: k // 2] = True
        out, inn, _ = shrunk_gaussians(np.zeros(n), ref, keep, online=True)
        assert inn is not None
        half = k // 2
        own_out = ref[half:].std(axis=0, ddof=1) * np.sqrt(1 + 1 / half)
        np.testing.assert_allclose(out.loc[:, 0], ref[half:].mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(
            inn.scale[:, 0], ref[:half].std(axis=0, ddof=1) * np.sqrt(1 + 1 / half), rtol=0.2
        )
        assert np.all(out.dof[:, 0] > half - 1)
        gaps.append(np.max(np.abs(out.scale[:, 0] / own_out - 1)))
    assert gaps[1] < 0.03
    assert gaps[1] < gaps[0] / 5


def test_one_reference_without_population_is_global_lira():
    """k = 1: nothing to separate σ₀² from the spread between records: plain global LiRA."""
    tgt, ref, keep, *_ = hetero(n=500, k=2)
    np.testing.assert_allclose(
        lira_shrunk_offline(tgt, ref, keep), lira_offline(tgt, ref, keep), rtol=1e-12
    )
    np.testing.assert_allclose(
        lira_shrunk_online(tgt, ref, keep), lira_online(tgt, ref, keep), rtol=1e-12, atol=1e-12
    )


def test_moment_fit_recovers_the_prior():
    """σᵢ² ~ scaled-inv-χ²(ν₀ = 10, σ₀² = 2), 4 values per record: Smyth's moments find both."""
    rng = np.random.default_rng(2)
    n, d, nu0, s0 = 40_000, 3, 10.0, 2.0
    sigma2 = nu0 * s0 / rng.chisquare(nu0, n)
    ss = sigma2 * rng.chisquare(d, n)
    zeros = np.zeros(n, dtype=np.int64)
    fitted = _variance_prior(ss, np.full(n, d + 1.0), zeros, zeros)
    assert fitted is not None
    s0_hat, nu_hat = fitted
    assert abs(s0_hat[0] / s0 - 1) < 0.05
    assert abs(nu_hat / nu0 - 1) < 0.3


def test_equal_spreads_give_an_infinite_prior_weight():
    """No spread of s² beyond chance: ν₀ = ∞ and every record's σ̃² is the prior's."""
    n, d = 1000, 2
    ss = np.full(n, 3.0 * d)
    zeros = np.zeros(n, dtype=np.int64)
    fitted = _variance_prior(ss, np.full(n, d + 1.0), zeros, zeros)
    assert fitted is not None and fitted[1] == INFINITE
    # e = log s² − ψ(1) + log 1: σ₀² = s² · exp(γ_Euler)
    np.testing.assert_allclose(fitted[0], 3.0 * np.exp(np.euler_gamma), rtol=1e-12)


def test_each_record_keeps_its_own_mean():
    """Flat prior on the mean: the location is the record's own mean, however far from its
    class's (only the variance is shrunk)."""
    rng = np.random.default_rng(3)
    n, k = 400, 6
    keep = np.zeros((k, n), dtype=bool)
    ref = rng.normal(0.0, 4.0, n) + rng.normal(size=(k, n))
    out, _, _ = shrunk_gaussians(np.zeros(n), ref, keep, online=False)
    np.testing.assert_allclose(out.loc[:, 0], ref.mean(axis=0), rtol=1e-12)


def test_scores_are_the_student_t_predictives():
    """k = 1 with a population: each side's predictive is t_ν₀(x, σ₀²(g)·2) (n = 1); the
    online score is the log ratio of the two densities, offline the CDF on the normal scale."""
    tgt, ref, keep, _, lab, pref, plab = hetero(n=800, k=2, pop=1500)
    kw = {"labels": lab, "population_phi": pref, "population_labels": plab}
    out, inn, _ = shrunk_gaussians(tgt, ref, keep, online=True, **kw)
    assert inn is not None and np.isfinite(out.dof).all() and (out.dof < INFINITE).all()
    np.testing.assert_allclose(out.loc[:, 0], (ref * ~keep).sum(axis=0), rtol=1e-12)
    t_out = student_t(df=out.dof[:, 0], loc=out.loc[:, 0], scale=out.scale[:, 0])
    t_in = student_t(df=inn.dof[:, 0], loc=inn.loc[:, 0], scale=inn.scale[:, 0])
    np.testing.assert_allclose(
        lira_shrunk_online(tgt, ref, keep, **kw),
        t_in.logpdf(tgt) - t_out.logpdf(tgt),
        rtol=1e-9,
        atol=1e-9,
    )
    np.testing.assert_allclose(
        lira_shrunk_offline(tgt, ref, keep, **kw), norm.isf(t_out.sf(tgt)), rtol=1e-9, atol=1e-9
    )


def test_classes_with_few_replicated_records_share_one_group():
    cls = np.repeat([0, 1, 2], [600, 600, 300])
    replicated = np.ones(cls.size, dtype=bool)
    replicated[:400] = False  # class 0: 200 replicated records, fewer than MIN_PER_BIN
    groups = variance_groups(cls, replicated)
    assert set(groups[:600]) == {-1} and set(groups[600:1200]) == {1}
    assert set(groups[1200:]) == {2}
    assert MIN_PER_BIN == 250


def test_trigamma_inverse_inverts():
    for y in (0.01, 0.7, 3.0, 50.0, 1e4):
        assert trigamma_inverse(float(polygamma(1, y))) == pytest.approx(y, rel=1e-6)


def test_level_bins_are_class_wise_quantiles():
    level = np.arange(2000.0)
    group = np.repeat([0, 1], 1000)
    bins = level_bins(level, group, np.ones(2000, dtype=bool))
    assert np.unique(bins[:1000]).size == 4 and np.unique(bins[1000:]).size == 4
    assert set(np.unique(bins[:1000])).isdisjoint(np.unique(bins[1000:]))


def test_population_gives_the_out_spread_at_one_reference():
    """With a population the prior no longer falls back, and it is fitted without the target:
    changing the target's φ on one record moves that record's score only."""
    tgt, ref, keep, _, lab, pref, plab = hetero(n=1000, k=2, pop=1000)
    kw = {"labels": lab, "population_phi": pref, "population_labels": plab}
    s = lira_shrunk_offline(tgt, ref, keep, **kw)
    assert not np.allclose(s, lira_offline(tgt, ref, keep))
    moved = tgt.copy()
    moved[7] += 3.0
    s2 = lira_shrunk_offline(moved, ref, keep, **kw)
    changed = np.flatnonzero(s2 != s)
    assert changed.tolist() == [7]


def test_shrinkage_beats_global_variance_on_heteroscedastic_records():
    tgt, ref, keep, member, lab, pref, plab = hetero(n=4000, k=4, pop=2000, shift=1.5)
    kw = {"labels": lab, "population_phi": pref, "population_labels": plab}
    shrunk = roc_auc_score(member, lira_shrunk_online(tgt, ref, keep, **kw))
    plain = roc_auc_score(member, lira_online(tgt, ref, keep))
    assert shrunk > plain + 0.02


def test_record_order_does_not_matter():
    tgt, ref, keep, _, lab, pref, plab = hetero(n=1200, k=4, pop=600)
    perm = np.random.default_rng(4).permutation(tgt.size)
    kw = {"population_phi": pref, "population_labels": plab}
    a = lira_shrunk_online(tgt, ref, keep, labels=lab, **kw)
    b = lira_shrunk_online(tgt[perm], ref[:, perm], keep[:, perm], labels=lab[perm], **kw)
    np.testing.assert_allclose(a[perm], b, rtol=1e-9)


@pytest.mark.parametrize("chunk", [7, 499])
def test_moments_by_chunks_equal_one_pass(monkeypatch: pytest.MonkeyPatch, chunk: int):
    """Chunking the per-record moments (to bound memory at a million records) changes no bit:
    chunks of 7 records (a remainder of 3) or of 499 (a lone last record, which joins the chunk
    before it: NumPy would sum its 16 values pairwise), against one chunk for all 500."""
    tgt, ref, keep, _, labels, pop, pop_labels = hetero(n=500, k=16, seed=9, pop=300)
    kw = {"labels": labels, "population_phi": pop, "population_labels": pop_labels}
    whole = [f(tgt, ref, keep, **kw) for f in (lira_shrunk_online, lira_shrunk_offline)]
    monkeypatch.setattr("miaudit.attacks._shrinkage.STATS_CHUNK", chunk)
    chunked = [f(tgt, ref, keep, **kw) for f in (lira_shrunk_online, lira_shrunk_offline)]
    for a, b in zip(whole, chunked, strict=True):
        np.testing.assert_array_equal(a, b)


def test_queries_score_each_query_and_average():
    tgt, ref, keep, *_ = hetero(n=600, k=4)
    both = lira_shrunk_offline(np.stack([tgt, tgt], 1), np.stack([ref, ref], 2), keep)
    np.testing.assert_allclose(both, lira_shrunk_offline(tgt, ref, keep), rtol=1e-12)


def test_bad_input_is_named():
    tgt, ref, keep, _, lab, pref, _ = hetero(n=300, k=4, pop=50)
    with pytest.raises(InputError, match="labels"):
        lira_shrunk_offline(tgt, ref, keep, labels=lab[:10])
    with pytest.raises(InputError, match="population_labels"):
        lira_shrunk_offline(tgt, ref, keep, labels=lab, population_phi=pref)
    with pytest.raises(InputError, match="population_phi"):
        lira_shrunk_offline(tgt, ref, keep, population_phi=pref[:2])
    no_in = keep.copy()
    no_in[:, 0] = False
    with pytest.raises(InputError, match="no IN reference"):
        lira_shrunk_online(tgt, ref, no_in)


def test_use_mask_equals_leaving_the_unused_values_out():
    """``use``: each record's fits see only its used values. One value dropped per record is the
    same as compacting each record's K − 1 used values into K − 1 reference rows (per-record
    moments do not depend on which row a value sits in) and scoring those without a mask."""
    rng = np.random.default_rng(12)
    n, k = 1500, 7
    keep = (rng.random((k + 1, n)).argsort(axis=0) < 4)[1:]  # 3 or 4 IN of the 7
    ref = rng.normal(size=(k, n)) + 0.8 * keep + rng.normal(0.0, 2.0, n)
    tgt = rng.normal(size=n)
    larger = np.where(keep.sum(axis=0) > k / 2, keep, ~keep)
    use = np.ones((k, n), dtype=bool)
    use[np.where(larger, rng.random((k, n)), -1.0).argmax(axis=0), np.arange(n)] = False
    order = np.argsort(~use, axis=0, kind="stable")[: k - 1]  # the used rows first, in order
    compact_ref = np.take_along_axis(ref, order, axis=0)
    compact_keep = np.take_along_axis(keep, order, axis=0)
    labels = rng.integers(0, 2, n)
    got = lira_shrunk_online(tgt, ref, keep, labels=labels, use=use)
    np.testing.assert_allclose(
        got, lira_shrunk_online(tgt, compact_ref, compact_keep, labels=labels), rtol=1e-9
    )
    assert not np.allclose(got, lira_shrunk_online(tgt, ref, keep, labels=labels))
    full = np.ones((k, n), dtype=bool)
    assert np.array_equal(
        lira_shrunk_online(tgt, ref, keep, labels=labels, use=full),
        lira_shrunk_online(tgt, ref, keep, labels=labels),
    )
