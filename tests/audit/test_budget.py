"""The reference-budget curve (docs/method.md §12): rescoring the audit's own references."""

from __future__ import annotations

import json

import numpy as np
import pytest

from miaudit.attacks import LiraAttack, RmiaAttack, leave_one_model_out, paired_reference_sets
from miaudit.audit import AuditResult, attack_store
from miaudit.data import SignalsStore
from miaudit.metrics import roc_auc_score
from miaudit.report import render_report
from miaudit.report._budget import budget_section
from tests.simulate import complementary_keep


@pytest.fixture(scope="module")
def store() -> SignalsStore:
    """8 models in 4 complementary pairs over 700 records (100 population), a planted leak."""
    rng = np.random.default_rng(0)
    n, k = 700, 8
    keep = complementary_keep(rng, k, n)
    pop = np.zeros(n, dtype=bool)
    pop[:100] = True
    keep[:, pop] = False
    y = rng.integers(0, 3, n)
    boost = 2.0 + rng.normal(0, 1, n) + 1.0 * keep
    logits = rng.normal(size=(k, n, 3))
    logits[np.arange(k)[:, None], np.arange(n)[None], y[None]] += boost
    return SignalsStore.from_arrays(
        logits=logits.astype(np.float32), label=y, keep=keep, population=pop
    )


@pytest.fixture(scope="module")
def run(store):
    return attack_store(store, references=3)


def test_every_k_up_to_the_audits_own_is_rescored(run):
    curve = run.result.budget_curve
    assert curve is not None
    assert [p.references for p in curve.points] == [0, 1, 2, 3]
    assert curve.points[0].attack in curve.candidates["k=0"]
    assert all(p.attack in curve.candidates["k≥1"] for p in curve.points[1:])
    assert curve.candidates["k=0"] == ["loss"]


def test_the_audits_own_k_is_its_attack_results(run):
    """At the audit's k the chosen attack scored the same pairs as the audit itself."""
    last = run.result.budget_curve.points[-1]
    assert last.auc.point == pytest.approx(run.result.attack(last.attack).auc.point, abs=1e-12)


def test_fewer_pairs_are_the_first_pairs_of_the_same_references(store, run):
    """k = 1 subsamples the trained references: each target's first following pair."""
    point = run.result.budget_curve.points[1]
    attack = {
        "lira_online": LiraAttack(mode="online"),
        "lira_offline": LiraAttack(mode="offline"),
        "rmia_online": RmiaAttack(mode="online"),
        "rmia_offline": RmiaAttack(mode="offline"),
    }[point.attack]
    paired = leave_one_model_out(
        store, attack, reference_sets=paired_reference_sets(store, 1)
    ).pooled()
    assert point.auc.point == pytest.approx(roc_auc_score(paired[1], paired[0]), abs=1e-12)


def test_results_round_trip_and_omit_an_absent_curve(run):
    text = run.result.model_dump_json()
    again = AuditResult.model_validate_json(text)
    assert again.budget_curve == run.result.budget_curve
    bare = run.result.model_copy(update={"budget_curve": None})
    assert "budget_curve" not in json.loads(bare.model_dump_json())


def test_no_curve_without_pairs(store):
    """References 'all' are not chosen as pairs: no curve."""
    assert attack_store(store, references="all").result.budget_curve is None


def test_the_report_shows_the_curve_only_when_present(run):
    html = render_report(run.result)
    assert 'id="budget"' in html and 'data-chart="budget"' in html
    assert budget_section(run.result.model_copy(update={"budget_curve": None})) is None


def test_the_audits_own_k_reuses_its_scores_not_a_rescoring(store, run, monkeypatch):
    """At the audit's own k the curve takes the audit's scores (no third scoring pass) and
    is the very curve a rescoring gives."""
    import miaudit.audit._budget as budget

    calls: list[int] = []
    real = budget.leave_one_model_out_each

    def counted(*args, **kwargs):
        calls.append(len(kwargs["reference_sets"][0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(budget, "leave_one_model_out_each", counted)
    again = attack_store(store, references=3).result.budget_curve
    assert calls == [2, 4]  # k = 1, 2 rescored; k = 3 (the audit's 6 references) reused
    assert again == run.result.budget_curve
    monkeypatch.setattr(budget, "_scores_at", _never_reusing(budget._scores_at))
    assert attack_store(store, references=3).result.budget_curve == run.result.budget_curve


def _never_reusing(scores_at):
    def rescored(store, made, targets, subset, own):
        return scores_at(store, made, targets, subset, None)

    return rescored
