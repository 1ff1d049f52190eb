"""Exposure (Carlini et al. 2019) from log-likelihoods: exact rank against a sort, the
skew-normal estimate against the exact value, canaries, group privacy, the config."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from miaudit.audit import (
    CanarySection,
    exact_exposure,
    exact_rank,
    group_privacy,
    make_canaries,
    parse_exposure_config,
    skewnorm_exposure,
)
from miaudit.errors import InputError


def test_exact_rank_matches_a_sort() -> None:
    ll = np.random.default_rng(0).normal(size=1000)
    order = np.argsort(-ll)  # most likely first
    for secret in (int(order[0]), int(order[10]), int(order[-1])):
        assert exact_rank(ll, secret) == int(np.flatnonzero(order == secret)[0]) + 1


def test_ties_count_against_the_secret_and_exclusions_drop_out() -> None:
    ll = np.array([0.0, -1.0, -1.0, -3.0])
    assert exact_rank(ll, 2) == 3 and exact_rank(ll, 1) == 3  # as the paper counts: ≤ perplexity
    assert exact_rank(ll, 3) == 4
    assert exact_rank(ll, 3, exclude=np.array([0, 1])) == 2


def test_exposure_bounds() -> None:
    assert exact_exposure(1024, 1) == pytest.approx(10.0)
    assert exact_exposure(1024, 1024) == 0.0
    assert exact_exposure(1024, 32) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="rank"):
        exact_exposure(10, 11)


def test_skewnorm_estimate_agrees_with_the_exact_exposure() -> None:
    """Candidates whose log-perplexities are skew-normal: the fit from 4,000 draws gives the
    exposure the exact rank gives, within 0.3 bits (the draw's sampling error at these ranks)."""
    rng = np.random.default_rng(1)
    space = 200_000
    ll = -stats.skewnorm.rvs(4.0, loc=20.0, scale=3.0, size=space, random_state=rng)
    sample = ll[rng.integers(space, size=4000)]
    for quantile in (0.5, 0.01, 0.001):
        secret = int(np.argsort(-ll)[int(quantile * space)])
        exact = exact_exposure(space, exact_rank(ll, secret))
        assert skewnorm_exposure(sample, float(ll[secret]), space) == pytest.approx(exact, abs=0.3)


def test_skewnorm_estimate_is_capped_at_the_space() -> None:
    sample = np.random.default_rng(2).normal(-20, 1, size=500)
    assert skewnorm_exposure(sample, 0.0, 1000) == pytest.approx(math.log2(1000))


def test_canaries_per_level_distinct_and_reproducible() -> None:
    section = CanarySection(digits=4, per_level=10, never_inserted=10)
    canaries = make_canaries(section, seed=3)
    assert [sum(c.repetitions == r for c in canaries) for r in (0, 1, 4, 16)] == [10] * 4
    assert len({c.secret for c in canaries}) == 40 and all(len(c.secret) == 4 for c in canaries)
    assert len({c.prefix for c in canaries}) == 40
    assert canaries == make_canaries(section, seed=3) and canaries != make_canaries(section, seed=4)
    assert all(c.text.endswith(c.secret) and "{" not in c.text for c in canaries)


def test_group_privacy_is_n_epsilon() -> None:
    one = group_privacy(8.0, 1e-5, 1)
    assert one["epsilon"] == 8.0 and one["delta"] == pytest.approx(1e-5)
    sixteen = group_privacy(8.0, 1e-5, 16)
    assert sixteen["epsilon"] == 128.0 and sixteen["delta"] == 1.0  # δ blows up: no guarantee
    assert "16 records" in sixteen["statement"]
    assert one["statement"] == (
        "a canary inserted once is one record to the accountant: the guarantee for it is "
        "the recipe's (8, 1e-05)-DP"
    )


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"canaries": {"digits": 7, "method": "exact"}}, "canaries.method"),
        ({"canaries": {"prefix": "card 12 is "}}, "canaries.prefix"),
        ({"canaries": {"prefix": "{who} is "}}, "canaries.prefix"),
        ({"canaries": {"repetitions": [0]}}, "canaries.repetitions"),
        ({"model": {"kind": "mlp"}}, "model.kind"),
        ({"model": {"finetune": {"method": "full", "dp": {"epsilon": 8}}}}, "model.finetune"),
        ({"data": {"families": ["poems"]}}, "data.families"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_config_names_the_field(raw: dict[str, object], field: str) -> None:
    with pytest.raises(InputError, match=field.replace(".", r"\.")):
        parse_exposure_config(raw)


def test_defaults_are_exact_up_to_a_million() -> None:
    assert CanarySection(digits=6).exact() and not CanarySection(digits=7).exact()
    assert not CanarySection(digits=3, method="estimate").exact()


def test_text_demo_is_sized_as_promised() -> None:
    from miaudit.audit import text_demo_config

    cfg = text_demo_config()
    assert cfg.data.records // 2 <= 2000 and cfg.model.pretrain.max_tokens <= 1_000_000
    assert cfg.model.architecture.context == 64 and cfg.canaries.exact()
    assert cfg.canaries.repetitions == [1, 4, 16] and cfg.canaries.per_level >= 10


def test_dp_record_says_what_a_deduplicated_sets_guarantee_covers() -> None:
    """Red team: with [dedup] and DP fine-tuning the record claimed (ε, δ) per text, though
    deduplication ran before the accountant and is not accounted."""
    from miaudit.audit._exposure import DEDUP_SCOPE, dp_record

    info = {"epsilon": 2.0, "delta": 1e-5, "accountant": "rdp", "noise_multiplier": 1.1, "steps": 9}
    plain = dp_record(info, [1, 4], deduplicated=False)
    deduped = dp_record(info, [1, 4], deduplicated=True)
    assert plain is not None and "scope" not in plain
    assert deduped is not None and deduped["scope"] == DEDUP_SCOPE
    assert "not accounted" in DEDUP_SCOPE and "group privacy" in DEDUP_SCOPE
    assert [g["epsilon"] for g in deduped["group_privacy"]] == [2.0, 8.0]
    assert dp_record({"losses": [1.0]}, [1], deduplicated=True) is None
