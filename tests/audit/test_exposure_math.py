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


@pytest.mark.parametrize(
    ("canaries", "message"),
    [
        # red team: the defaults' 40 canaries with one digit: make_canaries looped forever
        ({"digits": 1}, r"^canaries: 40 canaries need 40 distinct secrets; 10\^1 holds 10$"),
        (
            {"digits": 1, "repetitions": [1], "per_level": 11, "never_inserted": 0},
            "11 canaries need 11 distinct secrets",
        ),
        # red team: exactly 10 canaries in a space of 10: a canary ranked first scored 1 bit
        (
            {"digits": 1, "repetitions": [1, 4, 16], "per_level": 3, "never_inserted": 1},
            r"10 canaries in a space of 10\^1: .* at least 100 candidates per canary \(1,000;",
        ),
        ({"digits": 3}, r"40 canaries in a space of 10\^3"),
    ],
)
def test_a_space_too_small_for_the_canaries_is_refused(
    canaries: dict[str, object], message: str
) -> None:
    with pytest.raises(InputError, match=message) as info:
        parse_exposure_config({"canaries": canaries})
    assert "\n" not in str(info.value)


def test_a_space_of_a_hundred_candidates_per_canary_is_accepted() -> None:
    cfg = parse_exposure_config({"canaries": {"digits": 3, "per_level": 3, "never_inserted": 1}})
    assert cfg.canaries.count() == 10 and len(make_canaries(cfg.canaries, 0)) == 10


def test_max_possible_is_log2_of_the_space_each_level_is_ranked_in() -> None:
    """Red team: the header printed log2 10^digits while each exposure is read over the space
    less the other inserted secrets; a canary ranked first now reaches max_possible."""
    from miaudit.audit._exposure import _level_summary

    rows = [
        {"repetitions": r, "exposure": exact_exposure(1000 - others, 1), "extracted": False}
        for r, others in ((1, 2), (16, 2), (16, 2), (0, 3))
    ]
    levels = {lv["repetitions"]: lv for lv in _level_summary(rows, 1000)}
    assert levels[16]["max_possible"] == pytest.approx(math.log2(998))
    assert levels[0]["max_possible"] == pytest.approx(math.log2(997))
    for lv in levels.values():
        assert lv["max_exposure"] == pytest.approx(lv["max_possible"])
        assert "mean_exposure_lower95" not in lv  # exact ranks: no sampled bound


def test_the_sampled_bound_holds_with_its_confidence_whatever_the_distribution() -> None:
    """The Clopper–Pearson bound from uniform draws: at most the exact exposure in ≥ 95 % of
    draws, on a population no skew-normal describes (a bulk and a far tail of memorised
    candidates), and not far below it (or below what 4,000 draws can show, about 10.4 bits)."""
    from miaudit.audit._exposure_math import sampled_exposure_bound

    rng = np.random.default_rng(5)
    space = 100_000
    ll = np.concatenate([rng.normal(-20, 2, size=space - 300), rng.normal(-4, 1, size=300)])
    order = np.argsort(-ll)
    for rank in (20, 300, 5_000):
        secret = int(order[rank - 1])
        exact = exact_exposure(space, exact_rank(ll, secret))
        bounds = np.array(
            [
                sampled_exposure_bound(ll[rng.integers(space, size=4000)], ll[secret], space)[0]
                for _ in range(300)
            ]
        )
        assert np.mean(bounds <= exact + 1e-12) >= 0.93, (rank, np.mean(bounds <= exact))
        ceiling = -math.log2(1 - 0.05 ** (1 / 4000))  # k = 0: what 4,000 draws can show
        assert np.median(bounds) >= min(exact, ceiling) - 1.5, (rank, np.median(bounds), exact)


def test_the_sampled_bound_is_capped_by_the_sample_and_the_space() -> None:
    from miaudit.audit._exposure_math import sampled_exposure_bound

    sample = np.full(4000, -30.0)
    bits, k = sampled_exposure_bound(sample, -1.0, 10**9)
    assert k == 0 and bits == pytest.approx(-math.log2(1 - 0.05 ** (1 / 4000)))
    assert 10.3 < bits < 10.5  # about log2(4000 / 3)
    assert sampled_exposure_bound(sample, -1.0, 100)[0] == pytest.approx(math.log2(100))
    assert sampled_exposure_bound(sample, -40.0, 10**9) == (0.0, 4000)  # all as likely: 0 bits
    assert sampled_exposure_bound(np.array([]), -1.0, 100) == (0.0, 0)


def _no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    import miaudit.models

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("pre-training started")

    monkeypatch.setattr(miaudit.models, "pretrained_base", refuse)


def _small(context: int, prefix: str = "{name}'s account number is ") -> dict[str, object]:
    return {
        "data": {"records": 20},
        "model": {"architecture": {"context": context}, "pretrain": {"records": 60}},
        "canaries": {"prefix": prefix, "digits": 3, "per_level": 3, "never_inserted": 0},
    }


@pytest.mark.parametrize(
    ("context", "prefix", "need"),
    [
        # red team: refused after pre-training and fine-tuning; now counted with the base's
        # tokenizer (trained in seconds: the model is not)
        (16, "{name}'s account number is ", r"\d+"),
        (24, "{name}: " + "word " * 20 + "is ", r"at least \d+"),  # more pre-tokens than fit
        (24, "{name} " + "accountnumber" * 3 + " is ", r"\d+"),
    ],
)
def test_a_canary_longer_than_the_context_is_refused_before_any_training(
    tmp_path, monkeypatch: pytest.MonkeyPatch, context: int, prefix: str, need: str
) -> None:
    from miaudit.audit import run_exposure

    _no_training(monkeypatch)
    cfg = parse_exposure_config(_small(context, prefix))
    out = tmp_path / "out"
    with pytest.raises(
        InputError,
        match=rf"^model\.architecture\.context: a canary takes {need} tokens with its digits; the model's context is {context}$",
    ):
        run_exposure(cfg, out, overwrite=False)
    assert not out.exists()


def test_a_canary_that_fits_goes_on_to_pre_training(tmp_path, monkeypatch) -> None:
    from miaudit.audit import run_exposure

    _no_training(monkeypatch)
    for context in (64, 40):  # 64: within the byte bound; 40: counted with the tokenizer
        cfg = parse_exposure_config(_small(context))
        with pytest.raises(AssertionError, match="pre-training started"):
            run_exposure(cfg, tmp_path / f"out{context}", overwrite=False)


def test_dedup_that_removes_a_canary_entirely_is_refused_before_training():
    """Red team: a long prefix without {name} made 29 of 30 inserted canaries near-duplicates of
    one another; dedup left one, the others still read "inserted 16×", and the trade-off credited
    dedup with a reduction even at 1×. The default prefix (a name in it) loses none."""
    from miaudit.audit._exposure import _finetune_set, make_canaries
    from miaudit.errors import InputError

    prefix = (
        "Note for the billing team: the internal customer account number on file for this "
        "person is "
    )
    cfg = parse_exposure_config(
        {"canaries": {"prefix": prefix, "digits": 5}, "dedup": {"threshold": 0.8}}
    )
    with pytest.raises(
        InputError, match=r"dedup: removes \d+ of the 30 inserted canaries entirely"
    ):
        _finetune_set(cfg, [], make_canaries(cfg.canaries, 0))
    fine = parse_exposure_config({"canaries": {"digits": 5}, "dedup": {"threshold": 0.8}})
    canaries = make_canaries(fine.canaries, 0)
    texts, info = _finetune_set(fine, [], canaries)
    assert info is not None and all(k.text in texts for k in canaries if k.repetitions > 0)
