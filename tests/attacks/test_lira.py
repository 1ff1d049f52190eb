"""LiRA (Carlini et al., S&P 2022): closed forms, brute force, regimes, simulation, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from miaudit.attacks._lira import lira_offline, lira_online
from miaudit.errors import InputError
from tests.simulate import complementary_keep

RTOL = 1e-10  # float64 arithmetic on both sides; only summation order differs


def simulate(
    n: int = 3000, k: int = 16, shift: float = 1.5, queries: int | None = None, seed: int = 0
):
    """φ = record difficulty + shift·IN + noise, for references and the target."""
    rng = np.random.default_rng(seed)
    keep = complementary_keep(rng, k, n)  # every record has k/2 IN, k/2 OUT
    member = rng.random(n) < 0.5
    extra = () if queries is None else (queries,)
    base = rng.normal(0.0, 2.0, size=(n, *extra))
    noise_scale = rng.uniform(0.5, 1.5, size=(n, *extra))
    ref = (
        base
        + shift * keep.reshape(k, n, *(1,) * len(extra))
        + noise_scale * rng.normal(size=(k, n, *extra))
    )
    tgt = (
        base
        + shift * member.reshape(n, *(1,) * len(extra))
        + noise_scale * rng.normal(size=(n, *extra))
    )
    return tgt, ref, keep, member


def brute_online(tgt, ref, keep, variance, use=None):
    """One record at a time, with scipy's normal density, as the public code does; with
    ``use``, each side holds only the used values."""
    n = tgt.shape[0]
    used = np.ones(keep.shape, dtype=bool) if use is None else use
    stats = {}
    for side, sel in (("in", keep & used), ("out", ~keep & used)):
        mu = np.array([np.median(ref[sel[:, i], i]) for i in range(n)])
        sd = np.array([np.std(ref[sel[:, i], i]) for i in range(n)])
        ss = np.array(
            [((ref[sel[:, i], i] - ref[sel[:, i], i].mean()) ** 2).sum() for i in range(n)]
        )
        pooled = np.sqrt(ss.sum() / sel.sum())
        stats[side] = (mu, np.full(n, pooled) if variance == "global" else sd)
    (mi, si), (mo, so) = stats["in"], stats["out"]
    return norm.logpdf(tgt, mi, si) - norm.logpdf(tgt, mo, so)


@pytest.mark.parametrize("variance", ["per_record", "global"])
def test_online_matches_brute_force(variance):
    tgt, ref, keep, _ = simulate(n=200, k=8)
    got = lira_online(tgt, ref, keep, variance=variance)
    np.testing.assert_allclose(got, brute_online(tgt, ref, keep, variance), rtol=RTOL, atol=1e-9)


@pytest.mark.parametrize("variance", ["per_record", "global"])
def test_online_use_mask_matches_brute_force_on_the_used_values(variance):
    """``use``: each side is fitted on its used values only (μ, per-record σ and the pooled σ),
    against the record-by-record brute force that never sees the unused ones. The mask drops
    one random reference on each record's larger side (how the reference audit balances,
    docs/method.md §3), leaving 3 IN and 3 OUT of 7 references."""
    rng = np.random.default_rng(7)
    n, k = 300, 7
    keep = rng.random((k + 1, n)).argsort(axis=0) < 4  # each record in exactly 4 of 8 models
    keep = keep[1:]  # model 0 plays the target: 3 or 4 IN among the 7 references
    tgt, ref = rng.normal(size=n), rng.normal(size=(k, n)) + 0.7 * keep
    larger = np.where(keep.sum(axis=0) > k / 2, keep, ~keep)
    drop = np.zeros((k, n), dtype=bool)
    drop[np.where(larger, rng.random((k, n)), -1.0).argmax(axis=0), np.arange(n)] = True
    use = ~drop
    assert ((keep & use).sum(axis=0) == 3).all() and ((~keep & use).sum(axis=0) == 3).all()
    got = lira_online(tgt, ref, keep, variance=variance, use=use)
    want = brute_online(tgt, ref, keep, variance, use=use)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-9)
    assert not np.allclose(got, lira_online(tgt, ref, keep, variance=variance))  # the mask matters
    # all used is no mask at all, bit for bit
    full = np.ones((k, n), dtype=bool)
    assert np.array_equal(
        lira_online(tgt, ref, keep, variance=variance, use=full),
        lira_online(tgt, ref, keep, variance=variance),
    )


def test_online_use_mask_is_checked_and_an_unused_side_is_an_error():
    tgt, ref, keep, _ = simulate(n=10, k=4)
    with pytest.raises(InputError) as err:
        lira_online(tgt, ref, keep, use=np.ones((4, 9), dtype=bool))
    assert err.value.field == "use"
    use = np.ones((4, 10), dtype=bool)
    use[:, 3] = ~keep[:, 3]  # record 3 keeps only its OUT references
    with pytest.raises(InputError, match=r"1 record\(s\) have no IN reference.*position 3"):
        lira_online(tgt, ref, keep, use=use)


@pytest.mark.parametrize("variance", ["per_record", "global"])
def test_offline_matches_closed_form(variance):
    tgt, ref, keep, _ = simulate(n=200, k=8)
    out = ~keep
    mu = np.array([np.median(ref[out[:, i], i]) for i in range(200)])
    if variance == "per_record":
        sd = np.array([np.std(ref[out[:, i], i]) for i in range(200)])
    else:
        ss = sum(((ref[out[:, i], i] - ref[out[:, i], i].mean()) ** 2).sum() for i in range(200))
        sd = np.sqrt(ss / out.sum())
    z = (tgt - mu) / sd
    np.testing.assert_allclose(
        lira_offline(tgt, ref, keep, variance=variance), z, rtol=RTOL, atol=1e-12
    )
    np.testing.assert_allclose(
        lira_offline(tgt, ref, keep, variance=variance, statistic="logcdf"),
        norm.logcdf(z),
        rtol=1e-9,
        atol=1e-12,
    )


def test_median_not_mean_for_mu():
    # One wild OUT reference moves the mean but not the median.
    ref = np.array([[0.0], [1.0], [2.0], [1000.0], [1.5]])
    keep = np.zeros((5, 1), dtype=bool)
    z = lira_offline(np.array([1.5]), ref, keep)
    assert z[0] == pytest.approx(0.0)


def test_offline_stays_informative_where_phi_saturates():
    # z = 9, 12, 20, 30: Φ(z) rounds to exactly 1.0 for all (they would tie); the scores do not.
    ref = np.array([[-1.0, -1.0, -1.0, -1.0], [1.0, 1.0, 1.0, 1.0]])
    keep = np.zeros((2, 4), dtype=bool)
    zs = np.array([9.0, 12.0, 20.0, 30.0])
    assert (norm.cdf(zs) == 1.0).all()
    for statistic in ("z", "logcdf"):
        s = lira_offline(zs, ref, keep, variance="global", statistic=statistic)
        assert (np.diff(s) > 0).all(), statistic
    np.testing.assert_allclose(lira_offline(zs, ref, keep, variance="global"), zs)
    # far beyond any float's CDF resolution the standardised score still ranks
    s = lira_offline(np.array([100.0, 200.0, 400.0]), ref[:, :3], keep[:, :3], variance="global")
    assert (np.diff(s) > 0).all()


def test_augmentation_queries_average_per_query_scores():
    tgt, ref, keep, _ = simulate(n=150, k=8, queries=3)
    for variance in ("per_record", "global"):
        per_query = [
            lira_online(tgt[:, q], ref[:, :, q], keep, variance=variance) for q in range(3)
        ]
        np.testing.assert_allclose(
            lira_online(tgt, ref, keep, variance=variance), np.mean(per_query, axis=0), rtol=1e-12
        )
        per_query = [
            lira_offline(tgt[:, q], ref[:, :, q], keep, variance=variance, statistic="logcdf")
            for q in range(3)
        ]
        np.testing.assert_allclose(
            lira_offline(tgt, ref, keep, variance=variance, statistic="logcdf"),
            np.mean(per_query, axis=0),
            rtol=1e-12,
        )


def test_one_query_axis_equals_no_query_axis():
    tgt, ref, keep, _ = simulate(n=100, k=6)
    np.testing.assert_array_equal(
        lira_online(tgt, ref, keep), lira_online(tgt[:, None], ref[..., None], keep)
    )


def test_float32_references_accepted():
    tgt, ref, keep, _ = simulate(n=100, k=6)
    r32 = ref.astype(np.float32)
    np.testing.assert_allclose(
        lira_online(tgt, r32, keep), lira_online(tgt, r32.astype(np.float64), keep), rtol=1e-12
    )


def test_row_order_invariance():
    tgt, ref, keep, _ = simulate(n=300, k=8)
    perm = np.random.default_rng(5).permutation(300)
    for fn in (lira_online, lira_offline):
        for variance in ("per_record", "global"):
            base = fn(tgt, ref, keep, variance=variance)
            np.testing.assert_allclose(
                fn(tgt[perm], ref[:, perm], keep[:, perm], variance=variance),
                base[perm],
                rtol=1e-12,
                atol=1e-12,
            )
    kperm = np.random.default_rng(6).permutation(8)
    np.testing.assert_allclose(
        lira_online(tgt, ref[kperm], keep[kperm]),
        lira_online(tgt, ref, keep),
        rtol=1e-12,
        atol=1e-12,
    )


def test_monotone_in_target_phi_and_shift_scale_invariant():
    tgt, ref, keep, _ = simulate(n=100, k=8)
    lo = lira_offline(tgt, ref, keep)
    assert (lira_offline(tgt + 0.5, ref, keep) > lo).all()
    # an increasing affine map of every φ (target and references) leaves z and log σ_out/σ_in,
    # hence both scores, unchanged
    np.testing.assert_allclose(
        lira_offline(3 * tgt + 7, 3 * ref + 7, keep), lo, rtol=1e-9, atol=1e-9
    )
    np.testing.assert_allclose(
        lira_online(3 * tgt + 7, 3 * ref + 7, keep),
        lira_online(tgt, ref, keep),
        rtol=1e-9,
        atol=1e-9,
    )


def test_zero_spread_falls_back_to_global_variance():
    # record 1's and 2's references agree exactly (σ = 0): per-record σ falls back to the pooled σ,
    # so scores stay finite and equal the global-variance scores for those records.
    ref = np.array([[1.2, 1.0, 1.0], [0.8, 1.0, 1.0], [0.2, 0.0, 0.0], [-0.2, 0.0, 0.0]])
    keep = np.array([[1, 1, 1], [1, 1, 1], [0, 0, 0], [0, 0, 0]], dtype=bool)
    tgt = np.array([1.0, 0.5, 0.0])
    for fn in (lira_online, lira_offline):
        own, glob = fn(tgt, ref, keep, variance="per_record"), fn(tgt, ref, keep, variance="global")
        assert np.isfinite(own).all()
        np.testing.assert_allclose(own[1:], glob[1:], rtol=1e-12)


def test_fallback_equals_global_sigma_for_that_record():
    # record 0: one IN reference, so its σ_in is the pooled σ_in; σ_out is its own.
    ref = np.array([[1.0, 1.0], [0.0, 1.4], [0.5, 0.0], [-0.5, 0.4]])
    keep = np.array([[1, 1], [0, 1], [0, 0], [0, 0]], dtype=bool)
    tgt = np.array([0.7, 0.9])
    pooled_in = np.sqrt(
        ((1.0 - 1.2) ** 2 + (1.4 - 1.2) ** 2) / 3
    )  # record 0 adds 0 around its own mean
    mu_out0 = np.median([0.0, 0.5, -0.5])
    sd_out0 = np.std([0.0, 0.5, -0.5])
    want0 = norm.logpdf(0.7, 1.0, pooled_in) - norm.logpdf(0.7, mu_out0, sd_out0)
    assert lira_online(tgt, ref, keep, variance="per_record")[0] == pytest.approx(want0, rel=1e-12)


@pytest.mark.parametrize("fn", [lira_online, lira_offline])
def test_record_without_out_reference_is_an_error(fn):
    ref = np.zeros((3, 4))
    keep = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 1]], dtype=bool)  # record 0: IN for all
    with pytest.raises(InputError, match=r"no OUT reference.*position 0"):
        fn(np.zeros(4), ref, keep)


def test_online_record_without_in_reference_is_an_error():
    with pytest.raises(InputError, match=r"no IN reference"):
        lira_online(np.zeros(2), np.zeros((2, 2)), np.array([[1, 0], [0, 0]], dtype=bool))


@pytest.mark.parametrize(
    ("tgt", "ref", "keep", "field"),
    [
        (np.zeros(5), np.zeros((3, 4)), np.zeros((3, 4), bool), "ref_phi"),
        (np.zeros(4), np.zeros((3, 4)), np.zeros((3, 5), bool), "keep"),
        (np.zeros((4, 2)), np.zeros((3, 4)), np.zeros((3, 4), bool), "ref_phi"),
        (np.zeros((4, 2)), np.zeros((3, 4, 3)), np.zeros((3, 4), bool), "ref_phi"),
        (np.zeros((4, 2, 2)), np.zeros((3, 4, 2, 2)), np.zeros((3, 4), bool), "target_phi"),
        (np.array([0.0, np.nan]), np.zeros((3, 2)), np.zeros((3, 2), bool), "target_phi"),
        (np.zeros(2), np.full((3, 2), np.inf), np.zeros((3, 2), bool), "ref_phi"),
        (np.zeros(2), np.zeros((3, 2)), np.full((3, 2), 2), "keep"),
        (np.zeros(2), np.zeros((0, 2)), np.zeros((0, 2), bool), "ref_phi"),
    ],
)
def test_bad_input(tgt, ref, keep, field):
    for fn in (lira_online, lira_offline):
        with pytest.raises(InputError) as err:
            fn(tgt, ref, keep)
        assert err.value.field == field


def test_bad_modes():
    tgt, ref, keep, _ = simulate(n=10, k=4)
    with pytest.raises(InputError, match=r"variance"):
        lira_online(tgt, ref, keep, variance="fixed")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"statistic"):
        lira_offline(tgt, ref, keep, statistic="cdf")  # type: ignore[arg-type]


def test_simulation_detects_members_and_null_does_not():
    tgt, ref, keep, member = simulate(n=4000, k=16, shift=1.5, seed=1)
    for variance in ("per_record", "global"):
        assert roc_auc_score(member, lira_online(tgt, ref, keep, variance=variance)) > 0.7
        assert roc_auc_score(member, lira_offline(tgt, ref, keep, variance=variance)) > 0.65
    # null: the target's "members" carry no shift
    tgt0, ref0, keep0, member0 = simulate(n=4000, k=16, shift=1.5, seed=2)
    tgt0 = tgt0 - 1.5 * member0  # remove the target's member shift; references keep theirs
    for variance in ("per_record", "global"):
        assert (
            abs(roc_auc_score(member0, lira_online(tgt0, ref0, keep0, variance=variance)) - 0.5)
            < 0.03
        )
        assert (
            abs(roc_auc_score(member0, lira_offline(tgt0, ref0, keep0, variance=variance)) - 0.5)
            < 0.03
        )


# --------------------------------------------------------------------------- small k (issue 16, item 6)


@pytest.mark.parametrize("variance", ["global", "per_record"])
def test_one_reference_pair_uses_the_spread_across_records_not_a_floor(variance):
    """k = 1: one IN and one OUT value per record, so no within-record spread exists. σ is then
    the spread of that side's φ across records (closed form below), not 1e-30: scores stay on
    the scale of φ (the old floor gave |z| ≈ 1e30 and online scores ≈ 1e61)."""
    tgt, ref, keep, _ = simulate(n=500, k=2, seed=3)
    z = lira_offline(tgt, ref, keep, variance=variance)
    mu_in, mu_out = (
        np.where(keep[0], ref[0], ref[1]),
        np.where(keep[0], ref[1], ref[0]),
    )  # the single value per side
    sd_out = np.sqrt(((mu_out - mu_out.mean()) ** 2).mean())
    np.testing.assert_allclose(z, (tgt - mu_out) / sd_out, rtol=RTOL)
    llr = lira_online(tgt, ref, keep, variance=variance)
    common = np.sqrt(
        (((mu_in - mu_in.mean()) ** 2).sum() + ((mu_out - mu_out.mean()) ** 2).sum()) / 1000
    )
    np.testing.assert_allclose(
        llr, 0.5 * ((tgt - mu_out) ** 2 - (tgt - mu_in) ** 2) / common**2, rtol=1e-9
    )
    assert np.abs(z).max() < 20 and np.abs(llr).max() < 100  # |φ| ≲ 10 here: scores of that order


def test_identical_references_give_unit_sigma_not_a_floor():
    keep = np.array([[True, False], [False, True], [True, False], [False, True]])
    ref = np.full((4, 2), 2.0)
    np.testing.assert_allclose(lira_offline(np.array([3.0, 1.0]), ref, keep), [1.0, -1.0])
    np.testing.assert_allclose(lira_online(np.array([3.0, 1.0]), ref, keep), [0.0, 0.0])
