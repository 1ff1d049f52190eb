"""The attack registry: a toy attack registered through the public function reaches config
validation, both audit runners, the CLI, the report and the contract suite with no other edit."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest

import miaudit
from miaudit.attacks import (
    AttackScores,
    AttackSpec,
    Family,
    Need,
    OutputSignals,
    SignalKind,
    attack_spec,
    register_attack,
    registered_attacks,
    score_outputs,
    unregister_attack,
)
from miaudit.audit import attack_store, parse_audit_config
from miaudit.cli import main
from miaudit.data import SignalsStore
from miaudit.errors import InputError
from miaudit.report import attacker_profile, recommend, render_report
from miaudit.report._verdict import assess_risk
from miaudit.signals import confidence
from tests.attacks.test_contract import CONTRACT_CHECKS
from tests.conftest import simulated_outputs

TOY = "toy_squared_confidence"
TOY_REF = "toy_reference_offset"


def _squared_confidence(x: OutputSignals) -> AttackScores:
    return AttackScores(np.asarray(x.signals["confidence"], dtype=np.float64) ** 2)


@pytest.fixture
def toy() -> Iterator[AttackSpec]:
    """The toy, registered for one test and removed afterwards (other tests never see it)."""
    spec = register_attack(
        AttackSpec(
            name=TOY,
            family=Family.THRESHOLD,
            signal_kind=SignalKind.MODEL_OUTPUTS,
            run=_squared_confidence,
            description="squared confidence in the true class (a toy)",
            citation="the registry test",
            attacker_knows="what the toy attacker knows",
            signals=("confidence",),
        )
    )
    yield spec
    if TOY in {s.name for s in registered_attacks()}:
        unregister_attack(TOY)


@dataclass(frozen=True)
class _Offset:
    """A toy reference attack: the target's p_y minus the references' mean p_y."""

    needs_in: bool = False
    needs_out: bool = False

    def score_pairs(
        self, store: SignalsStore, target: int, references: np.ndarray, records: np.ndarray
    ) -> np.ndarray:
        lg = store.logits[:, :, 0, :] if store.logits.ndim == 4 else store.logits
        labels = np.broadcast_to(store.label[records], (store.n_models, records.size))
        p = confidence(lg[:, records], labels)
        return p[target] - p[references].mean(axis=0)


@pytest.fixture
def toy_ref() -> Iterator[AttackSpec]:
    spec = register_attack(
        AttackSpec(
            name=TOY_REF,
            family=Family.REFERENCE,
            signal_kind=SignalKind.REFERENCE_OUTPUTS,
            run=lambda settings: _Offset(),
            description="the target's p_y above the references' mean (a toy)",
            citation="the registry test",
            attacker_knows="what the toy reference attacker knows",
            needs=frozenset({Need.LABELS, Need.REFERENCES}),
        )
    )
    yield spec
    if TOY_REF in {s.name for s in registered_attacks()}:
        unregister_attack(TOY_REF)


def _config(attacks: list[str]) -> dict[str, object]:
    return {"data": {"dataset": "digits"}, "audit": {"attacks": attacks, "resamples": 10}}


def test_the_toy_is_unknown_until_registered_and_after_removal(toy):
    assert attack_spec(TOY) is toy
    unregister_attack(TOY)
    with pytest.raises(InputError, match="unknown attack"):
        attack_spec(TOY)
    with pytest.raises(InputError, match=TOY):
        parse_audit_config(_config([TOY]))
    register_attack(toy)  # for the fixture's teardown


def test_registering_a_name_twice_is_refused_unless_replacing(toy):
    with pytest.raises(InputError, match="already registered"):
        register_attack(toy)
    order = [s.name for s in registered_attacks()]
    assert register_attack(toy, replace=True) is toy
    assert [s.name for s in registered_attacks()] == order


def test_bad_specs_are_refused():
    good = attack_spec("loss")
    for field, value, named in (
        ("name", "Bad Name", "spec.name"),
        ("signals", ("no_such_signal",), "spec.signals"),
        ("signals", (), "spec.signals"),
        ("run", None, "spec.run"),
        ("fit", lambda x: x, "spec.fit"),  # a fit needs a population attack: loss is none
    ):
        bad = AttackSpec(**{**good.__dict__, "name": "fresh", field: value})
        with pytest.raises(InputError, match=named):
            register_attack(bad)
    qmia = attack_spec("qmia")
    for needs in (qmia.needs | {Need.KNOWN_MEMBERS}, qmia.needs - {Need.POPULATION}):
        with pytest.raises(InputError, match=r"spec\.fit"):
            register_attack(AttackSpec(**{**qmia.__dict__, "name": "fresh", "needs": needs}))
    with pytest.raises(InputError, match=r"spec\.fit"):
        register_attack(AttackSpec(**{**qmia.__dict__, "name": "fresh", "fit": "not callable"}))
    assert "fresh" not in {s.name for s in registered_attacks()}


def test_every_registered_attack_is_described_for_the_report():
    for spec in registered_attacks():
        profile = attacker_profile(spec.name)
        assert profile is not None and profile.knows == spec.attacker_knows
        assert spec.description and spec.citation
        assert profile.query_hungry == spec.query_cost.hungry
        assert profile.queries.endswith("(plus offline training)") == spec.trains_offline


def test_the_built_in_lists_are_read_from_the_registry():
    from miaudit.attacks import OUTPUT_ATTACKS
    from miaudit.audit import AUDIT_ATTACKS, DEFAULT_ATTACKS
    from miaudit.audit._config import audit_attacks

    outputs = registered_attacks(signal_kind=SignalKind.MODEL_OUTPUTS)
    # the defaults leave out attacks that need population records and features (QMIA)
    plain = [s for s in outputs if not s.needs & {Need.POPULATION, Need.FEATURES}]
    assert OUTPUT_ATTACKS == DEFAULT_ATTACKS == tuple(s.name for s in plain)
    assert "qmia" in {s.name for s in outputs} - set(OUTPUT_ATTACKS)
    assert audit_attacks() == AUDIT_ATTACKS
    assert {s.name for s in registered_attacks(signal_kind=SignalKind.REFERENCE_OUTPUTS)} <= set(
        AUDIT_ATTACKS
    )
    assert not any(name.endswith("_by_class") for name in AUDIT_ATTACKS)


def test_membership_reaches_only_attacks_that_calibrate_on_it(toy):
    seen = []

    def spy(x: OutputSignals) -> AttackScores:
        seen.append(x.member)
        return AttackScores(np.zeros(x.labels.shape[0]))

    register_attack(AttackSpec(**{**toy.__dict__, "run": spy}), replace=True)
    member = np.array([0, 1, 0, 1], dtype=np.int8)
    signals = {"confidence": np.full(4, 0.5)}
    score_outputs(TOY, OutputSignals(signals, np.zeros(4, dtype=int), member=member))
    assert seen == [None]


def test_the_toy_passes_config_validation(toy):
    cfg = parse_audit_config(_config(["loss", TOY]))
    assert cfg.audit.attacks == ["loss", TOY]


def test_the_toy_runs_on_saved_outputs_and_in_the_report(toy):
    o = simulated_outputs(n=600, shift=1.5, seed=2)
    result = miaudit.attack(o, attacks=["confidence", TOY], n_resamples=10, seed=1, quiet=True)
    toy_result, confidence = result.attack(TOY), result.attack("confidence")
    assert toy_result.description == toy.description and toy_result.paper == toy.citation
    # Squaring a probability keeps its order: the same AUC as the confidence attack.
    assert toy_result.auc.point == pytest.approx(confidence.auc.point, abs=1e-12)
    assert toy_result.auc.point > 0.6
    profile = attacker_profile(TOY)
    assert profile is not None and profile.knows == toy.attacker_knows
    assert profile.queries == "1" and not profile.query_hungry
    html = render_report(result)
    assert TOY in html and toy.attacker_knows in html
    access = {c.key: c for c in recommend(result, assess_risk(result))}["access"]
    assert TOY in access.because


def test_the_toy_runs_through_the_cli(toy, tmp_path, capsys):
    src = tmp_path / "outputs.parquet"
    simulated_outputs(n=400, seed=3).save(src)
    out = tmp_path / "attack"
    main(["attack", str(src), "--attacks", f"loss,{TOY}", "--resamples", "5", "--out", str(out)])
    assert TOY in (out / "results.json").read_text()


def _paired_store() -> SignalsStore:
    rng = np.random.default_rng(0)
    half = rng.random((2, 300)) < 0.5
    keep = np.stack([half[0], ~half[0], half[1], ~half[1]])
    pop = np.zeros(300, dtype=bool)
    pop[:60] = True
    keep[:, pop] = False
    y = rng.integers(0, 3, 300)
    logits = rng.normal(size=(4, 300, 3)) + 2.0 * keep[..., None] * np.eye(3)[y][None]
    return SignalsStore.from_arrays(
        logits=logits.astype(np.float32), label=y, keep=keep, population=pop
    )


def test_the_toy_runs_in_a_reference_audit(toy):
    store = _paired_store()
    cfg = parse_audit_config(
        {**_config([]), "audit": {"references": 1, "attacks": [TOY, "loss", "lira_offline"]}}
    )
    run = attack_store(store, cfg)
    toy_result = run.result.attack(TOY)
    assert toy_result.description == toy.description + " (the target's own output)"
    assert toy_result.auc.point == pytest.approx(run.result.attack("loss").auc.point, abs=0.05)
    assert run.scores[TOY].shape == run.member.shape


def test_a_toy_reference_attack_runs_in_a_reference_audit_and_the_report(toy_ref):
    cfg = parse_audit_config(
        {**_config([]), "audit": {"references": 1, "attacks": [TOY_REF, "loss", "lira_online"]}}
    )
    run = attack_store(_paired_store(), cfg)
    result = run.result.attack(TOY_REF)
    assert result.description == toy_ref.description  # not on the target's own output
    assert result.auc.point > 0.7  # members' p_y is planted 2 logits higher
    profile = attacker_profile(TOY_REF)
    assert profile is not None and profile.queries == "1 (plus offline training)"
    html = render_report(run.result)
    assert TOY_REF in html and toy_ref.attacker_knows in html


@pytest.mark.parametrize("check", CONTRACT_CHECKS, ids=lambda c: c.__name__)
def test_the_toy_keeps_the_attack_contract(toy, check):
    check(TOY)


@pytest.mark.parametrize("check", CONTRACT_CHECKS, ids=lambda c: c.__name__)
def test_the_toy_reference_attack_keeps_the_attack_contract(toy_ref, check):
    check(TOY_REF)


@pytest.mark.parametrize("name, budget", [("noise_robustness", 7), ("boundary_distance", 200)])
def test_a_query_budget_reaches_the_attack(name, budget):
    """QueryInputs.budget is what the trade-off uses to cap noise draws: it must be honoured."""
    from miaudit.attacks import LocalOracle, QueryInputs, score_queries
    from tests.attacks.test_contract import _linear, _queries

    x, y, _ = _queries(60)
    spent = score_queries(
        name, QueryInputs(LocalOracle(_linear, "label-only"), x, y, rng=0, budget=budget)
    ).queries
    assert spent.max() <= budget and spent.max() >= budget // 2
    default = score_queries(name, QueryInputs(LocalOracle(_linear, "label-only"), x, y, rng=0))
    assert default.queries.max() > budget  # the default is larger: the budget changed something
