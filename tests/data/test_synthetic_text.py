"""The synthetic personal-record generator: reproducible, bounded, families kept apart."""

from __future__ import annotations

import pytest

pytest.importorskip("faker")

from miaudit.data import (
    FAMILIES,
    MAX_RECORD_CHARS,
    TEMPLATE_FAMILIES,
    fake_names,
    synthetic_records,
)
from miaudit.errors import InputError


def test_same_seed_same_texts_bit_for_bit() -> None:
    a = synthetic_records(200, seed=7)
    b = synthetic_records(200, seed=7)
    assert a.texts == b.texts and a.family == b.family


def test_different_seeds_different_people() -> None:
    a = set(synthetic_records(200, seed=1).texts)
    b = set(synthetic_records(200, seed=2).texts)
    assert not a & b


def test_every_family_appears_and_texts_are_bounded() -> None:
    recs = synthetic_records(400, seed=3)
    assert set(recs.family) == set(FAMILIES)
    assert max(len(t) for t in recs.texts) <= MAX_RECORD_CHARS
    assert len(set(recs.texts)) == len(recs)  # made-up people: no accidental duplicates


def test_families_are_restricted_on_request() -> None:
    recs = synthetic_records(50, seed=4, families=["support_ticket", "billing_ticket"])
    assert set(recs.family) <= {"support_ticket", "billing_ticket"}


def test_max_chars_cuts_at_a_word() -> None:
    full = synthetic_records(30, seed=5)
    short = synthetic_records(30, seed=5, max_chars=40)
    assert all(len(t) <= 40 for t in short.texts)
    assert all(f.startswith(s) for f, s in zip(full.texts, short.texts, strict=True))


def test_templates_fill_every_field() -> None:
    recs = synthetic_records(300, seed=6)
    assert not any("{" in t or "}" in t for t in recs.texts)
    assert len(TEMPLATE_FAMILIES) >= 4


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"n": -1, "seed": 0}, "n"),
        ({"n": 1, "seed": -1}, "seed"),
        ({"n": 1, "seed": 0, "families": ["poetry"]}, "families"),
        ({"n": 1, "seed": 0, "families": []}, "families"),
        ({"n": 1, "seed": 0, "max_chars": 5}, "max_chars"),
    ],
)
def test_bad_input_names_the_input(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InputError, match=field):
        synthetic_records(**kwargs)  # type: ignore[arg-type]


def test_fake_names_are_distinct_and_reproducible() -> None:
    names = fake_names(40, seed=9)
    assert len(set(names)) == 40 and names == fake_names(40, seed=9)
