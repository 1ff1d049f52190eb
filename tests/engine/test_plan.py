"""Membership plans: balance, complementary pairs, population, fixed units, user plans."""

from __future__ import annotations

import numpy as np
import pytest

from miaudit.engine import complementary_plan, independent_plan, user_plan
from miaudit.errors import InputError


@pytest.mark.parametrize("n", [101, 1000])
def test_complementary_pairs_balance_every_pool_record(n: int) -> None:
    plan = complementary_plan(n, 8, seed=1, pool_fraction=0.5, unit_size=3)
    pool = ~plan.population
    assert pool.sum() == round(0.5 * n)
    for j in range(0, 8, 2):
        pair = plan.keep[j : j + 2]
        # Complementary halves: every pool record in exactly one model of the pair.
        np.testing.assert_array_equal(pair.sum(axis=0), pool.astype(int))
    for k in range(1, 5):  # any 2k models of whole pairs: exactly k IN and k OUT
        np.testing.assert_array_equal(plan.keep[: 2 * k, pool].sum(axis=0), k)
    assert not plan.keep[:, plan.population].any()


def test_plan_depends_on_the_seed_only() -> None:
    a = complementary_plan(500, 4, seed=3)
    b = complementary_plan(500, 4, seed=3, unit_size=1)
    c = complementary_plan(500, 4, seed=4)
    np.testing.assert_array_equal(a.keep, b.keep)
    assert not np.array_equal(a.keep, c.keep)
    # More models extend the plan: the first models keep their halves.
    np.testing.assert_array_equal(complementary_plan(500, 6, seed=3).keep[:4], a.keep)


def test_units_are_fixed_by_the_plan() -> None:
    plan = complementary_plan(100, 10, seed=0, unit_size=4)
    assert plan.n_units == 3
    assert [list(plan.unit_models(c)) for c in range(3)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_independent_halves() -> None:
    plan = independent_plan(400, 6, seed=0, pool_fraction=1.0)
    np.testing.assert_array_equal(plan.keep.sum(axis=1), 200)


def test_the_pool_is_drawn_before_membership_not_read_off_the_keep_matrix() -> None:
    # 3 models on random halves of a 200-record pool: about 1/8 of the pool is drawn by none.
    plan = independent_plan(400, 3, seed=2, pool_fraction=0.5)
    assert plan.pool.sum() == 200 and not plan.keep[:, plan.population].any()
    unused = plan.pool & ~plan.keep.any(axis=0)
    assert unused.sum() > 10  # still pool (evaluated), not population
    np.testing.assert_array_equal(plan.population, ~plan.pool)


def test_user_plan_is_validated() -> None:
    keep = np.zeros((2, 5), dtype=int)
    keep[0, :2] = 1
    keep[1, 2:4] = 1
    # By default every record is in the pool: record 4, drawn by no model, is still evaluated.
    assert not user_plan(keep, 5).population.any()
    plan = user_plan(keep, 5, pool=np.array([1, 1, 1, 1, 0]))
    np.testing.assert_array_equal(plan.population, [False, False, False, False, True])
    for bad, problem in [
        (keep[:, :4], "shape"),
        (keep * 2, "0 or 1"),
        (np.zeros((2, 5)), "no record"),
    ]:
        with pytest.raises(InputError, match=problem) as info:
            user_plan(bad, 5)
        assert info.value.field == "plan.keep"
    for pool, problem, field in [
        ([1, 1, 1, 0, 0], "record 3 is outside the pool", "plan.keep"),
        ([1, 1], "shape", "plan.pool"),
        ([2, 1, 1, 1, 1], "0 or 1", "plan.pool"),
    ]:
        with pytest.raises(InputError, match=problem) as info:
            user_plan(keep, 5, pool=np.array(pool))
        assert info.value.field == field


def test_pool_too_small() -> None:
    with pytest.raises(InputError) as info:
        complementary_plan(3, 2, seed=0, pool_fraction=0.2)
    assert info.value.field == "plan.pool_fraction"


def test_config_pool_belongs_to_a_user_keep_matrix(tmp_path) -> None:
    from miaudit.engine import make_plan, parse_config

    with pytest.raises(InputError) as info:
        parse_config({"data": {"dataset": "digits"}, "plan": {"pool": "pool.npy"}})
    assert info.value.field == "plan.pool"
    keep = np.zeros((2, 6), dtype=bool)
    keep[0, :2] = keep[1, 2:4] = True
    np.save(tmp_path / "keep.npy", keep)
    np.save(tmp_path / "pool.npy", np.array([1, 1, 1, 1, 1, 0]))
    cfg = parse_config(
        {
            "data": {"dataset": "digits"},
            "plan": {
                "models": 2,
                "kind": "user",
                "keep": str(tmp_path / "keep.npy"),
                "pool": str(tmp_path / "pool.npy"),
            },
        }
    )
    plan = make_plan(cfg, 6)
    np.testing.assert_array_equal(
        plan.population, [False] * 5 + [True]
    )  # record 4: in the pool, drawn by no model
    (tmp_path / "bad.npy").write_text("not numpy")
    with pytest.raises(InputError) as info:
        make_plan(
            cfg.model_copy(
                update={"plan": cfg.plan.model_copy(update={"pool": tmp_path / "bad.npy"})}
            ),
            6,
        )
    assert info.value.field == "plan.pool"


@pytest.mark.parametrize(
    ("models", "sizes"),
    [
        (18, [9, 9]),  # a fixed 16 gave 16 + 2: one worker did eight ninths of the work
        (40, [10, 10, 10, 10]),
        (6, [3, 3]),
        (5, [3, 2]),
        (1, [1]),
        (64, [16, 16, 16, 16]),
    ],
)
def test_default_units_depend_on_the_models_only(models, sizes, monkeypatch) -> None:
    """The layout is in every unit's key and can change the bits: the same config must give the
    same units on any core count, any ``engine.workers`` and on Ray (they followed the workers:
    6 models were 3 + 3 on 2 cores and one unit of 6 on 1 core or Ray, red team)."""
    from miaudit.engine import make_plan, parse_config

    layouts = set()
    for cores in (1, 2, 8, 64):
        monkeypatch.setattr("os.cpu_count", lambda cores=cores: cores)
        for engine in (
            {},
            {"workers": 0},
            {"workers": 1},
            {"workers": 3},
            {"threads": 2},
            {"executor": "ray"},
        ):
            cfg = parse_config(
                {"data": {"dataset": "digits"}, "plan": {"models": models}, "engine": engine}
            )
            plan = make_plan(cfg, 200)
            layouts.add(tuple(len(plan.unit_models(u)) for u in range(plan.n_units)))
    assert layouts == {tuple(sizes)}


def test_an_explicit_unit_size_is_kept() -> None:
    from miaudit.engine import make_plan, parse_config

    cfg = parse_config(
        {
            "data": {"dataset": "digits"},
            "plan": {"models": 18, "unit_size": 16},
            "engine": {"workers": 2},
        }
    )
    assert make_plan(cfg, 200).unit_size == 16


def test_the_unit_size_is_in_the_cache_key(tmp_path) -> None:
    from miaudit.datasets import load_dataset
    from miaudit.engine import make_plan, parse_config
    from miaudit.engine._run import unit_jobs

    keys = []
    for size in (2, 4):
        cfg = parse_config(
            {"data": {"dataset": "breast-cancer"}, "plan": {"models": 4, "unit_size": size}}
        )
        data = load_dataset(cfg.data)
        jobs = unit_jobs(cfg, data, make_plan(cfg, data.n_records), tmp_path)
        keys.append({j.key for j in jobs})
    assert keys[0].isdisjoint(keys[1])
