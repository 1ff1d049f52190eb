"""The blind baseline (attacks/_text_blind.py, docs/method.md §13.3): on a random split of one
distribution its permutation interval excludes chance at about the nominal rate; on a deliberately shifted
split (members and non-members written from different template families) it excludes chance,
and the note says the split is shifted."""

from __future__ import annotations

import numpy as np
import pytest

from miaudit.attacks import (
    BLIND_MAX_CHARS,
    blind_baseline,
    blind_baseline_scores,
    blind_texts,
    shifted_split_note,
)
from miaudit.errors import InputError
from miaudit.metrics import evaluate

NAMES = ["Ana Ruiz", "Tom Berg", "Li Wei", "Sara Okafor", "Jon Hale", "Mia Costa", "Raj Patel"]
SYMPTOMS = ["chest pain", "a rash", "knee pain", "headaches", "a cough", "back pain", "fatigue"]
DRUGS = ["ibuprofen", "amoxicillin", "rest", "physiotherapy", "an inhaler", "a cream"]
#: Two template families: clinic notes and support tickets about the same people.
NOTES = [
    "Patient {name} seen on day {n} with {symptom}; prescribed {drug}.",
    "{name} reports {symptom} for {n} days. Plan: {drug} and review.",
    "Follow-up for {name}: {symptom} improving after {drug}, day {n}.",
]
TICKETS = [
    "Ticket {n}: customer {name} cannot log in after the update; reset link sent.",
    "Order {n} for {name} arrived damaged, refund requested by email.",
    "{name} asks to change the delivery address of order {n} before dispatch.",
]


def _texts(rng: np.random.Generator, templates: list[str], n: int) -> list[str]:
    return [
        rng.choice(templates).format(
            name=rng.choice(NAMES),
            symptom=rng.choice(SYMPTOMS),
            drug=rng.choice(DRUGS),
            n=rng.integers(1, 400),
        )
        for _ in range(n)
    ]


def test_a_random_split_is_flagged_at_the_nominal_rate() -> None:
    """40 random splits of one distribution (both families mixed): the permutation test's 95 %
    interval excludes 0.5 in at most 6 (binomial(40, 0.05) ≥ 7 has probability 0.004). The
    record bootstrap it replaced excluded it on about one fair split in five (bench_text_blind)."""
    flagged = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        texts = _texts(rng, NOTES + TICKETS, 80)
        member = (rng.permutation(80) < 40).astype(np.int8)
        blind = blind_baseline(texts, member, seed=seed, permutations=39)
        excluded = not blind.lower <= 0.5 <= blind.upper
        flagged += excluded
        # the note fires only above chance (a below-chance cross-fit is not a shift)
        assert (shifted_split_note(blind.lower, blind.upper, 0.95) is None) == (blind.lower <= 0.5)
        assert 1 / 40 <= blind.p_value <= 1
    assert flagged <= 6, flagged


def test_a_shifted_split_is_flagged() -> None:
    rng = np.random.default_rng(0)
    texts = _texts(rng, NOTES, 40) + _texts(rng, TICKETS, 40)  # members: notes; others: tickets
    member = np.repeat([1, 0], 40).astype(np.int8)
    blind = blind_baseline(texts, member, seed=0)
    # AUC 1 and the smallest p-value 199 permutations allow; at 80 texts the null spans ± 0.17
    assert blind.auc > 0.95 and blind.lower > 0.75 and blind.p_value == 1 / 200, blind
    note = shifted_split_note(blind.lower, blind.upper, 0.95)
    assert (
        note is not None
        and note.startswith("The split is shifted")
        and "not evidence of memorisation" in note
    )


def test_the_scores_are_the_tests_column_and_reproducible() -> None:
    rng = np.random.default_rng(3)
    texts = _texts(rng, NOTES + TICKETS, 60)
    member = (rng.permutation(60) < 30).astype(np.int8)
    a = blind_baseline(texts, member, seed=7, permutations=39)
    b = blind_baseline(texts, member, seed=7, permutations=39)
    assert np.array_equal(a.scores, b.scores) and a.p_value == b.p_value
    assert np.array_equal(a.scores, blind_baseline_scores(texts, member, seed=7))
    auc = evaluate(member, {"blind": a.scores}, n_resamples=10, rng=0).estimate("blind", "auc")
    assert auc.point == pytest.approx(a.auc)
    with pytest.raises(InputError, match="permutations"):
        blind_baseline(texts, member, permutations=10)


def test_the_baseline_needs_both_classes_in_every_fold() -> None:
    with pytest.raises(InputError, match="needs ≥ 5 members and non-members"):
        blind_baseline_scores(["a b"] * 8, np.array([1, 1, 1, 1, 0, 0, 0, 0]))
    with pytest.raises(InputError, match="member: must be 0/1"):
        blind_baseline_scores(["a"] * 3, np.array([1, 2, 0]))


@pytest.mark.parametrize("bad", [None, b"abc"])
def test_items_that_are_not_strings_are_refused_naming_the_item(bad) -> None:
    """Red team: None raised an AttributeError."""
    rng = np.random.default_rng(4)
    texts: list = _texts(rng, NOTES, 20)
    member = (np.arange(20) < 10).astype(np.int8)
    texts[7] = bad
    with pytest.raises(InputError, match=r"^texts: item 7 is not a string: the blind baseline"):
        blind_baseline_scores(texts, member)


def test_blank_texts_are_data_unless_every_text_is_blank() -> None:
    """Red team: all-empty texts raised sklearn's "empty vocabulary"; one blank text among
    others is honest data (second read: refusing it stopped a whole text audit)."""
    rng = np.random.default_rng(4)
    texts: list = _texts(rng, NOTES, 20)
    member = (np.arange(20) < 10).astype(np.int8)
    texts[7] = " \n"
    assert np.isfinite(blind_baseline_scores(texts, member)).all()
    with pytest.raises(InputError, match="every text is empty or only whitespace"):
        blind_baseline_scores([""] * 20, member)


def test_only_each_texts_first_characters_are_read() -> None:
    """Red team: 80 texts of 2 MB each did not finish in 300 s. The scores are those of the
    texts cut to BLIND_MAX_CHARS characters, and every text of the tests and benchmarks is
    shorter than that (their figures are unchanged)."""
    assert BLIND_MAX_CHARS >= 2_000
    rng = np.random.default_rng(5)
    short = _texts(rng, NOTES + TICKETS, 30)
    member = (rng.permutation(30) < 15).astype(np.int8)
    tails = [t + " " + "".join(rng.choice(list("xyz qk"), 3 * BLIND_MAX_CHARS)) for t in short]
    long = [t.ljust(BLIND_MAX_CHARS, "~") + tail for t, tail in zip(short, tails, strict=True)]
    cut = [t[:BLIND_MAX_CHARS] for t in long]
    np.testing.assert_array_equal(
        blind_baseline_scores(long, member, seed=1), blind_baseline_scores(cut, member, seed=1)
    )
    assert blind_texts(long) == cut and blind_texts(short) == short
