"""The blind baseline (attacks/_text_blind.py, docs/method.md §13.3): on a random split of one
distribution its AUC interval covers chance at about the nominal rate; on a deliberately shifted
split (members and non-members written from different template families) it excludes chance,
and the note says the split is shifted."""

from __future__ import annotations

import numpy as np
import pytest

from miaudit.attacks import blind_baseline_scores, shifted_split_note
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


def _auc(texts: list[str], member: np.ndarray, seed: int):
    scores = blind_baseline_scores(texts, member, seed=seed)
    return evaluate(member, {"blind": scores}, n_resamples=100, rng=seed).estimate("blind", "auc")


def test_a_random_split_covers_chance() -> None:
    """12 random splits of one distribution (both families mixed): the 95 % interval covers 0.5
    in at least 9 (binomial(12, 0.95) gives ≤ 8 with probability 0.002)."""
    covered = 0
    for seed in range(12):
        rng = np.random.default_rng(seed)
        texts = _texts(rng, NOTES + TICKETS, 80)
        member = (rng.permutation(80) < 40).astype(np.int8)
        auc = _auc(texts, member, seed)
        covered += auc.lower <= 0.5 <= auc.upper
        assert (
            shifted_split_note(auc.lower, auc.upper, 0.95) is None
            or not auc.lower <= 0.5 <= auc.upper
        )
    assert covered >= 9, covered


def test_a_shifted_split_is_flagged() -> None:
    rng = np.random.default_rng(0)
    texts = _texts(rng, NOTES, 40) + _texts(rng, TICKETS, 40)  # members: notes; others: tickets
    member = np.repeat([1, 0], 40).astype(np.int8)
    auc = _auc(texts, member, 0)
    assert auc.lower > 0.9, auc
    note = shifted_split_note(auc.lower, auc.upper, 0.95)
    assert (
        note is not None
        and note.startswith("The split is shifted")
        and "not evidence of memorisation" in note
    )


def test_the_baseline_needs_both_classes_in_every_fold() -> None:
    with pytest.raises(InputError, match="needs ≥ 5 members and non-members"):
        blind_baseline_scores(["a b"] * 8, np.array([1, 1, 1, 1, 0, 0, 0, 0]))
    with pytest.raises(InputError, match="member: must be 0/1"):
        blind_baseline_scores(["a"] * 3, np.array([1, 2, 0]))
