"""A language model audited end to end from Hugging Face folders (docs/method.md §13): a tiny
GPT-2 fine-tuned from a base on half of the pool, two reference fine-tunes on complementary
halves, population texts; sequence signals computed from the folders, every applicable text
attack and the blind baseline evaluated, the results folder written (results.json and
report.html shareable and free of texts and ids, scores.parquet 0600), and check_record placing a
fine-tuning text in the model's training set."""

from __future__ import annotations

import json
import stat

import numpy as np
import pytest

pytest.importorskip("transformers")

from miaudit.audit import applicable_text_attacks, audit_text, check_record
from miaudit.models import load_hf_causal_lm
from miaudit.signals import sequence_signals
from tests.text_models import tiny_gpt2

NAMES = ["ana ruiz", "tom berg", "li wei", "sara okafor", "jon hale", "mia costa"]
SYMPTOMS = ["chest pain", "a rash", "knee pain", "headaches", "a cough", "back pain"]


def _texts(n: int) -> list[str]:
    rng = np.random.default_rng(0)
    return [
        f"patient {rng.choice(NAMES)} seen on day {i} with {rng.choice(SYMPTOMS)} and given rest"
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    texts = _texts(60)
    rng = np.random.default_rng(1)
    pop = np.zeros(60, dtype=bool)
    pop[rng.permutation(60)[:16]] = True
    pool = np.flatnonzero(~pop)
    half = rng.random(pool.size) < 0.5
    keep = np.zeros((4, 60), dtype=bool)  # target, base, reference A, reference B
    keep[0, pool[rng.permutation(pool.size)[: pool.size // 2]]] = True
    keep[2, pool[half]], keep[3, pool[~half]] = True, True
    folders = [
        tiny_gpt2(
            root / name,
            texts,
            train_on=[texts[i] for i in np.flatnonzero(row)],
            steps=40 if row.any() else 0,
        )
        for name, row in zip(["target", "base", "ref-a", "ref-b"], keep, strict=True)
    ]
    models = [load_hf_causal_lm(f) for f in folders]
    store = sequence_signals(
        models,
        ["target", "base", "reference", "reference"],
        texts,
        keep,
        record_id=[f"note-{i}" for i in range(60)],
        population=pop,
        batch_size=8,
    )
    out = root / "results"
    result = audit_text(store, texts=texts, out=out, quiet=True, n_resamples=50)
    return store, texts, result, out


def test_every_attack_runs_and_the_fine_tuned_model_leaks(audited) -> None:
    store, _, result, _ = audited
    names = [a.name for a in result.attacks]
    assert names == [*applicable_text_attacks(store), "blind_ngram"]
    assert set(names) >= {
        "text_loss",
        "zlib",
        "min_k",
        "min_k_plus",
        "reference_ratio",
        "text_lira_online",
        "text_rmia_online",
    }
    # 22 memorised notes (40 steps of Adam on them) against 22 unseen: the likelihood ratio to
    # the base model separates them.
    assert result.attack("reference_ratio").auc.lower > 0.7, result.attack("reference_ratio").auc
    assert result.comparisons and all(c.baseline == "text_loss" for c in result.comparisons)


def test_the_results_folder_is_an_audits(audited) -> None:
    _, texts, result, out = audited
    for name in ("results.json", "report.html", "scores.parquet"):
        assert (out / name).is_file(), name
    assert stat.S_IMODE((out / "scores.parquet").stat().st_mode) == 0o600
    shared = (out / "results.json").read_text() + (out / "report.html").read_text()
    assert json.loads((out / "results.json").read_text())["input"]["n_records"] == 44
    assert not any(t in shared for t in texts) and "note-" not in shared
    assert any("blind baseline" in n for n in result.notes)
    # the verdict's family holds the model attacks, not the blind baseline (it never looks at
    # the model: what it finds is a shifted split, not memorisation)
    assert result.family is not None and "blind_ngram" not in result.family.lower
    assert set(result.family.lower) == {a.name for a in result.attacks} - {"blind_ngram"}


def test_check_record_places_a_fine_tuning_text_in_the_training_set(audited) -> None:
    store, _, result, out = audited
    pool = ~store.population
    ids = store.record_id[pool]
    member = store.member[pool].astype(bool)
    answers = check_record(out, [str(ids[member][0]), str(ids[~member][0])])
    assert [a.member_in_plan for a in answers] == [True, False]
    assert all(0 < a.p_value <= 1 for a in answers)
    assert result.exposure_attack in {a.name for a in result.attacks} - {"blind_ngram"}


def test_a_text_that_is_empty_or_not_a_string_is_refused_by_its_record_index(tmp_path) -> None:
    """Red team: None texts raised an AttributeError, all-empty ones sklearn's "empty
    vocabulary". The item named is the record's index in the store (population included)."""
    from miaudit.errors import InputError
    from tests.simulate_text import sequence_store

    store = sequence_store()
    texts: list = [f"record {i} of the pool" for i in range(store.n_records)]
    last = int(np.flatnonzero(~store.population)[-1])
    texts[last] = None
    with pytest.raises(InputError, match=rf"^texts: item {last} is not a string"):
        audit_text(store, texts=texts, out=tmp_path / "out", quiet=True, n_resamples=20)
    assert not (tmp_path / "out").exists()
