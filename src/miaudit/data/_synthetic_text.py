"""Synthetic personal records: clinical notes and support tickets filled by Faker.

Each record is one short text from a template family (``clinical_note``, ``discharge_summary``,
``support_ticket``, ``billing_ticket``), its fields filled by a Faker instance seeded from the
caller's seed, so that a seed gives the same records bit for bit (for one Faker version: the
version is part of what :func:`synthetic_records` records). Families exist so that a split can
be shifted on purpose (members from one family, non-members from another: the blind baseline
must flag it); a fair split draws members and non-members from the same mixture.

Texts are bounded to :data:`MAX_RECORD_CHARS` characters so that one record fits a context of
64 tokens of miaudit's small tokenizer. They are personal data in form (names, dates, phone
numbers), although every value is made up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from miaudit.errors import InputError

#: The longest record, in characters (≈ 45-60 tokens of a 1,024-token BPE vocabulary).
MAX_RECORD_CHARS = 200

_CONDITIONS = (
    "type 2 diabetes", "hypertension", "asthma", "migraine", "atrial fibrillation",
    "COPD", "hypothyroidism", "chronic back pain", "depression", "pneumonia",
    "anemia", "gout", "eczema", "kidney stones", "sleep apnea", "osteoarthritis",
)  # fmt: skip
_DRUGS = (
    "metformin", "lisinopril", "albuterol", "sumatriptan", "apixaban", "tiotropium",
    "levothyroxine", "ibuprofen", "sertraline", "amoxicillin", "ferrous sulfate",
    "allopurinol", "hydrocortisone", "tamsulosin", "atorvastatin", "omeprazole",
)  # fmt: skip
_PRODUCTS = (
    "router", "laptop", "smart watch", "printer", "phone plan", "tablet", "headset",
    "thermostat", "camera", "streaming box", "e-reader", "fitness band",
)  # fmt: skip
_ISSUES = (
    "will not turn on", "keeps disconnecting", "was charged twice", "arrived damaged",
    "shows an error", "stopped syncing", "is very slow", "lost all settings",
    "overheats", "cannot log in",
)  # fmt: skip

#: Template families: name → templates (``str.format`` fields filled by :func:`_fields`).
TEMPLATE_FAMILIES: dict[str, tuple[str, ...]] = {
    "clinical_note": (
        "Patient {name}, born {dob}, seen on {date} for {condition}. Started {drug} {dose} mg daily. Follow up in {weeks} weeks.",
        "{name} ({age} y) reports worsening {condition} since {date}. Plan: {drug} {dose} mg, labs, call {phone}.",
        "Visit {date}: {name}, MRN {mrn}, stable {condition}. Continue {drug} {dose} mg. Next visit in {weeks} weeks.",
    ),
    "discharge_summary": (
        "Discharge {date}: {name}, MRN {mrn}, admitted with {condition}. Discharged home on {drug} {dose} mg.",
        "{name}, age {age}, discharged {date} after treatment for {condition}. Contact: {phone}. Review with Dr {doctor}.",
    ),
    "support_ticket": (
        "Ticket {ticket}: {name} says the {product} {issue}. Email {email}, phone {phone}. Opened {date}.",
        "Hi, this is {name}. My {product} {issue} since {date}. Please call me at {phone}. Thanks.",
        "Customer {name} ({email}) reports the {product} {issue}. Order {order} placed {date}.",
    ),
    "billing_ticket": (
        "Billing {ticket}: {name} at {city} disputes a charge of ${amount} on {date}. Card ending {card}.",
        "Refund request from {name}, {email}: order {order} of ${amount} on {date}; the {product} {issue}.",
    ),
}

FAMILIES: tuple[str, ...] = tuple(TEMPLATE_FAMILIES)


@dataclass(frozen=True)
class SyntheticText:
    """Generated records: ``texts[i]`` from template family ``family[i]`` (all personal data)."""

    texts: tuple[str, ...]
    family: tuple[str, ...]
    seed: int
    faker_version: str

    def __len__(self) -> int:
        return len(self.texts)


def _faker(seed: int) -> Any:
    try:
        from faker import Faker
    except ImportError:
        raise InputError(
            "data", "synthetic text needs Faker: pip install 'miaudit[text]'"
        ) from None
    fake = Faker("en_US")
    fake.seed_instance(seed)
    return fake


def _fields(fake: Any, rng: np.random.Generator) -> dict[str, str]:
    """One record's made-up personal values (Faker for people, ``rng`` for the rest)."""

    def pick(items: Sequence[str]) -> str:
        return items[int(rng.integers(len(items)))]

    return {
        "name": fake.name(),
        "doctor": fake.last_name(),
        "dob": fake.date_of_birth(minimum_age=18, maximum_age=90).isoformat(),
        "date": fake.date_between(start_date="-3y", end_date="today").isoformat(),
        "age": str(int(rng.integers(18, 91))),
        "phone": fake.numerify("###-###-####"),
        "email": fake.free_email(),
        "city": fake.city(),
        "mrn": fake.numerify("MRN########")[3:],
        "ticket": fake.bothify("#?###??").upper(),
        "order": fake.numerify("#########"),
        "card": fake.numerify("####"),
        "amount": f"{int(rng.integers(5, 2000))}.{int(rng.integers(100)):02d}",
        "condition": pick(_CONDITIONS),
        "drug": pick(_DRUGS),
        "dose": str(int(rng.choice([5, 10, 20, 25, 40, 50, 100, 250, 500]))),
        "weeks": str(int(rng.integers(1, 13))),
        "product": pick(_PRODUCTS),
        "issue": pick(_ISSUES),
    }


def _check_families(families: Sequence[str] | None) -> tuple[str, ...]:
    chosen = FAMILIES if families is None else tuple(families)
    if not chosen:
        raise InputError("families", "at least one template family")
    for f in chosen:
        if f not in TEMPLATE_FAMILIES:
            raise InputError("families", f"unknown family {f!r}; known: {', '.join(FAMILIES)}")
    return chosen


def synthetic_records(
    n: int,
    *,
    seed: int,
    families: Sequence[str] | None = None,
    max_chars: int = MAX_RECORD_CHARS,
) -> SyntheticText:
    """``n`` made-up personal records from ``families`` (default all, drawn uniformly).

    The same ``seed`` (and Faker version) gives the same texts bit for bit; different seeds
    give independent people. A text longer than ``max_chars`` is cut at the last word that fits.

    >>> recs = synthetic_records(3, seed=1, families=["support_ticket"])
    >>> len(recs), set(recs.family)
    (3, {'support_ticket'})
    >>> recs.texts == synthetic_records(3, seed=1, families=["support_ticket"]).texts
    True
    """
    if n < 0:
        raise InputError("n", f"must be ≥ 0, got {n}")
    if seed < 0:
        raise InputError("seed", f"must be ≥ 0, got {seed}")
    if max_chars < 20:
        raise InputError("max_chars", f"must be ≥ 20, got {max_chars}")
    chosen = _check_families(families)
    fake = _faker(seed)
    rng = np.random.default_rng([seed, 21])
    texts, fams = [], []
    for _ in range(n):
        family = chosen[int(rng.integers(len(chosen)))]
        templates = TEMPLATE_FAMILIES[family]
        text = templates[int(rng.integers(len(templates)))].format(**_fields(fake, rng))
        texts.append(_bounded(text, max_chars))
        fams.append(family)
    from faker import VERSION

    return SyntheticText(tuple(texts), tuple(fams), seed, str(VERSION))


def _bounded(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars].rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:")


def fake_names(n: int, *, seed: int) -> tuple[str, ...]:
    """``n`` distinct made-up full names (for canary prefixes), reproducible for a seed."""
    fake = _faker(seed)
    names: list[str] = []
    seen: set[str] = set()
    make: Callable[[], str] = fake.name
    while len(names) < n:
        name = make()
        if name not in seen:
            seen.add(name)
            names.append(name)
    return tuple(names)
