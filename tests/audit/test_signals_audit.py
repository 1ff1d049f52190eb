"""Audits of signals trained elsewhere (issue 17, "your signals"): any keep matrix, the
references and the pool stated as they were, explicit reference sets, the settings' sources."""

from __future__ import annotations

import json

import numpy as np
import pytest

from miaudit.audit import (
    SignalsAuditConfig,
    attack_store,
    audit_signals,
    check_record,
    parse_audit_config,
    parse_references,
    signals_audit_config,
)
from miaudit.audit._check_record import check_records
from miaudit.data import SignalsStore
from miaudit.errors import InputError

FAST = {"attacks": ["loss", "lira_online", "lira_offline", "rmia_offline"], "resamples": 20}


def _store(keep: np.ndarray, *, seed: int = 0, n_pop: int = 60, target: int | None = None):
    """Simulated models whose logit on the true class is 2 higher on their members."""
    rng = np.random.default_rng(seed)
    k, n = keep.shape
    pop = np.zeros(n, dtype=bool)
    pop[:n_pop] = True
    keep = keep & ~pop
    y = rng.integers(0, 3, n)
    logits = rng.normal(size=(k, n, 3)) + 2.0 * keep[..., None] * np.eye(3)[y][None]
    return SignalsStore.from_arrays(
        logits=logits.astype(np.float32), label=y, keep=keep, population=pop, target=target
    )


def _with_logits(store: SignalsStore, logits: np.ndarray) -> SignalsStore:
    """``store`` with other logits (the same plan, records and target)."""
    return SignalsStore.from_arrays(
        logits=logits,
        label=store.label,
        keep=store.keep,
        population=store.population,
        record_id=store.record_id,
        target=store.target,
    )


def _four_of_eight(n: int = 400, seed: int = 1) -> np.ndarray:
    """Each record in 4 of 8 models, chosen per record: no model has a complementary partner."""
    return np.random.default_rng(seed).random((8, n)).argsort(axis=0) < 4


def _halves(n: int = 400, models: int = 6, seed: int = 2) -> np.ndarray:
    """Independent random halves; a record that fell into every model is taken out of model 0
    (a record with no OUT model at all is refused)."""
    keep = np.random.default_rng(seed).random((models, n)) < 0.5
    keep[0, keep.all(axis=0)] = False
    return keep


def _paired(n: int = 400, pairs: int = 4, seed: int = 3) -> np.ndarray:
    half = np.random.default_rng(seed).random((pairs, n)) < 0.5
    return np.stack([row for h in half for row in (h, ~h)])


CFG = SignalsAuditConfig.model_validate({"audit": FAST})


def test_leave_one_model_out_works_without_complementary_partners() -> None:
    run = attack_store(_store(_four_of_eight()), CFG)
    ref = run.result.reference
    assert ref.targets == 8 and ref.references is None
    assert ref.reference_models == [7] * 8
    assert ref.reference_choice.startswith("every other model")
    assert ref.undefined_pairs == 0 and ref.pairs == 8 * 340
    assert run.result.attack("lira_offline").auc.lower > 0.7


def test_undefined_pairs_are_left_out_and_counted() -> None:
    """Independent halves: some records have no OUT (or no IN) reference for some target."""
    store = _store(_halves())
    run = attack_store(store, CFG)
    ref = run.result.reference
    refs_keep = [store.keep[[m for m in range(6) if m != t]][:, store.pool] for t in range(6)]
    expected = sum(int((r.all(axis=0) | ~r.any(axis=0)).sum()) for r in refs_keep)
    assert expected > 0 and ref.undefined_pairs == expected
    assert ref.pairs == 6 * 340 - expected == run.member.size == run.pair_target.size
    assert any(
        n.startswith(f"{expected:,} (model, record) pairs were left out") for n in run.result.notes
    )
    assert all(np.isfinite(s).all() for s in run.scores.values())


def test_k_pairs_and_all_agree_on_a_complementary_store() -> None:
    store = _store(_paired())
    by_k = attack_store(store, CFG, references=3)
    by_all = attack_store(store, CFG)
    assert by_k.result.reference.references == 3
    assert by_all.result.reference.reference_models == [6] * 8  # the partner left out
    assert by_k.member.tolist() == by_all.member.tolist()


def test_config_k_is_used_only_when_the_config_sets_it() -> None:
    store = _store(_paired())
    set_k = SignalsAuditConfig.model_validate({"audit": {**FAST, "references": 1}})
    assert attack_store(store, set_k).result.reference.reference_models == [2] * 8
    with pytest.raises(InputError, match=r"references: 1 complementary pairs per target: .*'all'"):
        attack_store(_store(_four_of_eight()), set_k)


def test_one_target_with_a_given_reference_set() -> None:
    store = _store(_four_of_eight(), target=2)
    run = attack_store(store, CFG, references=[0, 1, 4, 5])
    ref = run.result.reference
    assert run.targets.tolist() == [2] and ref.reference_models == [4]
    assert ref.reference_choice == "given: models 0, 1, 4, 5"
    assert set(run.pair_target.tolist()) == {2}


def test_the_external_target_states_the_references_it_used() -> None:
    """Issue 17: it recorded the config's k (8) while using every other model."""
    store = _store(_paired(pairs=3), target=None)
    ext = SignalsStore.from_arrays(
        logits=store.logits,
        label=store.label,
        keep=store.keep,
        population=store.population,
        record_id=store.record_id,
        target=5,
    )
    cfg = parse_audit_config({"data": {"dataset": "digits"}, "audit": {**FAST, "references": 2}})
    ref = attack_store(ext, cfg, external_target=True).result.reference
    assert ref.external_target and ref.references is None
    assert ref.reference_models == [4]  # 6 models less the target and its partner


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"references": [0, 1]}, "references"),  # a list needs one target
        ({"target": 0, "references": [0, 1]}, "references"),  # the target itself
        ({"target": 0, "references": [1]}, "references"),  # its complementary partner
        ({"target": 0, "references": [1, 99]}, "references"),
        ({"target": 9}, "target"),
        ({"references": 0}, "references"),
        ({"references": "some"}, "references"),
        ({"pool": [123456]}, "pool"),
    ],
)
def test_bad_choices_are_refused_naming_the_input(kwargs, field) -> None:
    with pytest.raises(InputError) as exc:
        attack_store(_store(_paired()), CFG, **kwargs)
    assert exc.value.field == field


def test_a_record_in_every_models_training_set_is_refused() -> None:
    keep = _four_of_eight()
    keep[:, 100] = True
    with pytest.raises(
        InputError,
        match=r"keep: the record in row 100 of the store is in every model's training set",
    ):
        attack_store(_store(keep), CFG)


def test_an_explicit_pool_is_evaluated_and_stated() -> None:
    store = _store(_four_of_eight())
    chosen = store.record_id[store.pool][:200]
    run = attack_store(store, CFG, pool=chosen)
    ref = run.result.reference
    assert ref.pool_records == 200 and ref.population_records == 60
    assert ref.pool.startswith("given: 200 records")
    assert set(np.asarray(run.record_id).tolist()) == set(chosen.tolist())


def test_audit_signals_writes_what_check_record_reads(tmp_path) -> None:
    store = _store(_four_of_eight(), target=3)
    path = tmp_path / "signals.npz"
    store.save(path)
    run = audit_signals(path, tmp_path / "out", config=CFG)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["reference"]["targets"] == 1 and run.targets.tolist() == [3]
    member = store.record_id[store.keep[3]][0]
    (row,) = check_record(tmp_path / "out", [str(member)])
    assert row.target == 3 and row.member_in_plan and row.model.startswith("your model")
    # audit.json states the settings as run: references unset in the config are not written
    # as the field's default of 4 pairs (the references were every other model).
    as_run = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert "references" not in as_run["config"]["audit"]
    assert as_run["references"].startswith("every other model")


def test_settings_come_from_the_config_then_the_options(tmp_path) -> None:
    path = tmp_path / "s.toml"
    path.write_text("seed = 4\n[audit]\nresamples = 7\nreferences = 2\n")
    cfg = signals_audit_config(path, attacks=["loss"], seed=9)
    assert (cfg.seed, cfg.audit.resamples, cfg.audit.attacks) == (9, 7, ["loss"])
    assert "references" in cfg.audit.model_fields_set
    assert "references" not in signals_audit_config(None, resamples=3).audit.model_fields_set
    path.write_text('[data]\ndataset = "digits"\n')
    with pytest.raises(InputError, match=r"^data: an audit of signals"):
        signals_audit_config(path)


@pytest.mark.parametrize(
    ("text", "value"), [("all", "all"), ("4", 4), ("1,2,5", [1, 2, 5]), ("5,", [5])]
)
def test_references_parse(text, value) -> None:
    assert parse_references(text) == value


def test_references_refuse_words() -> None:
    with pytest.raises(InputError, match=r"^--references: "):
        parse_references("two")


def test_check_record_uses_the_reference_set_the_audit_was_given(tmp_path) -> None:
    """Models 6 and 7 come from another recipe (their logits shifted by +3 everywhere): the user
    leaves them out, so check-record must leave them out too."""
    store = _store(_four_of_eight(), target=2)
    shifted = store.logits.copy()
    shifted[6:] += 3.0 * np.eye(3)[store.label][None]
    store = _with_logits(store, shifted)
    audit_signals(store, tmp_path / "out", config=CFG, references=[0, 1, 4, 5], report=False)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["reference"]["reference_set"] == [0, 1, 4, 5]
    given_out = (~store.keep[[0, 1, 4, 5]]).sum(axis=0)
    ids = [str(r) for r in store.record_id[store.pool & (given_out >= 2)]]
    rows = check_record(tmp_path / "out", ids)
    assert all(r.n_out_references + r.n_in_references == 4 for r in rows)
    assert "given models 0, 1, 4, 5" in rows[0].method
    member = np.array([r.member_in_plan for r in rows])
    p_given = np.array([r.p_references for r in rows])
    p_all = np.array([r.p_references for r in check_records(store, ids, target=2)])
    # the shifted models raise the OUT mean, so the reference test using them would hide members
    # (the p-value itself, ranked among the target's non-members, is calibrated either way)
    assert np.median(p_given[member]) < 0.5 * np.median(p_all[member])
    assert np.median(p_given[~member]) > 0.3
    with pytest.raises(InputError) as exc:
        check_record(tmp_path / "out", ids[:1], target=3)
    assert exc.value.field == "--target"


def test_results_without_a_given_set_say_nothing_of_it(tmp_path) -> None:
    store = _store(_four_of_eight(), target=3)
    audit_signals(store, tmp_path / "out", config=CFG, report=False)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert "reference_set" not in results["reference"]


def test_check_record_warns_when_the_references_do_not_reproduce_the_model(
    tmp_path, monkeypatch, capsys
) -> None:
    """A new user's walk: an ONNX model audited against references of another recipe, more
    confident overall, got p ≈ 1e-9 for non-members. Here the target (model 2) is 2.5 logits
    more confident on every record: the command line ranks p-values among its known
    non-members and says why; the references' own p is shown beside them."""
    import sys

    from miaudit.cli import main

    store = _store(_four_of_eight(n=1200), target=2)
    shifted = store.logits.copy()
    shifted[2] += 2.5 * np.eye(3)[store.label]
    store = _with_logits(store, shifted)
    audit_signals(store, tmp_path / "out", config=CFG, report=False)
    non = [str(r) for r in store.record_id[store.pool & ~store.keep[2]]]
    rows = check_record(tmp_path / "out", non)
    p = np.array([r.p_value for r in rows])
    p_refs = np.array([r.p_references for r in rows])
    assert (p_refs < 0.05).mean() > 0.5  # the references alone accuse most non-members
    assert (p < 0.05).mean() <= 0.05  # ranked among them: calibrated
    monkeypatch.setattr(
        sys, "argv", ["miaudit", "check-record", str(tmp_path / "out"), "--id", non[0]]
    )
    code = 0
    try:
        main()
    except SystemExit as done:
        code = done.code or 0
    assert code == 0
    cap = capsys.readouterr()
    said = " ".join((cap.out + cap.err).split())
    assert "warning: the references do not reproduce this model's training" in said
    assert "p, references alone" in said and "ranked among those non-members" in said
    assert "'log LR': LiRA's online log-likelihood ratio" in said  # a new user asked what it was


def test_a_tiny_pool_writes_results_that_read_back(tmp_path) -> None:
    """Red team: 10 pool records (resampled by record: a few of 200 draws hold no member or no
    non-member) wrote NaN ROC bands into results.json, then failed reading its own file back,
    "results.json is not miaudit results", exit 2, its files left behind."""
    from miaudit.audit import AuditResult

    n = 70
    store = _store(_four_of_eight(n), n_pop=60, target=0)  # 10 records in the pool
    audit_signals(store, tmp_path / "out", config=CFG)
    back = AuditResult.read(tmp_path / "out" / "results.json")
    for attack in back.attacks:
        band = attack.roc.tpr_lower
        assert not band or len(band) == len(attack.roc.fpr)
        assert all(np.isfinite(band))


def test_copies_of_the_target_and_models_alike_are_warned_of() -> None:
    """Red team: the target written twice (a reference bit-identical to it) raised LiRA's AUC
    0.843 → 0.893 without a word; a train function ignoring its records gave every model the
    same outputs and every AUC 0.500, without a word either."""
    store = _store(_four_of_eight(), target=0)
    assert not [n for n in attack_store(store, CFG).result.notes if n.startswith("WARNING")]
    twin = np.array(store.logits)
    twin[1] = twin[0]
    notes = attack_store(_with_logits(store, twin), CFG).result.notes
    assert any(n.startswith("WARNING: reference models with outputs bit-identical") for n in notes)
    alike = np.repeat(np.array(store.logits)[:1], store.n_models, axis=0)
    notes = attack_store(_with_logits(store, alike), CFG).result.notes
    assert any(n.startswith("WARNING: every model gave bit-identical outputs") for n in notes)


def test_a_target_whose_class_columns_are_out_of_order_is_warned_of() -> None:
    """Red team (own model): an ONNX target fitted with two classes swapped moved RMIA's AUC
    0.566 → 0.543 with no word; `miaudit attack` warned, reference audits did not."""
    store = _store(_four_of_eight(), target=0)
    assert not [n for n in attack_store(store, CFG).result.notes if "look swapped" in n]
    swapped = np.array(store.logits)
    swapped[0] = swapped[0][:, [1, 0, 2]]
    notes = attack_store(_with_logits(store, swapped), CFG).result.notes
    assert any(
        n.startswith("WARNING: model 0's outputs: columns 0 and 1 look swapped") for n in notes
    ), notes
