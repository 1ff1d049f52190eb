"""Black-box canaries calibrated on reference runs (audit/_dp_reference.py; docs/dp.md)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from miaudit.audit._dp_reference import (
    OOD_SCALES,
    SELECTION_RUNS,
    calibrate,
    leave_one_out_right,
    reference_seed,
    reference_trainings,
    scaled,
)
from miaudit.metrics import one_run_guesses


def right_guesses(scores: np.ndarray, included: np.ndarray, k_plus: int, k_minus: int) -> int:
    """The calibration's count of right guesses: the one-run test's own."""
    return one_run_guesses(scores, included, k_plus, k_minus)[1]


def test_right_guesses_match_a_brute_force_count():
    rng = np.random.default_rng(0)
    for _ in range(50):
        m = int(rng.integers(5, 40))
        scores, included = rng.normal(size=m), rng.random(m) < 0.5
        kp, km = int(rng.integers(0, m // 2)), int(rng.integers(0, m // 2))
        ranked = sorted(range(m), key=lambda i: scores[i])
        expected = sum(included[i] for i in ranked[m - kp :]) if kp else 0
        expected += sum(not included[i] for i in ranked[:km])
        assert right_guesses(scores, included, kp, km) == expected


def test_leave_one_out_centres_each_run_by_the_others():
    rng = np.random.default_rng(1)
    scores, coins = rng.normal(size=(4, 30)), rng.random((4, 30)) < 0.5
    by_hand = [
        right_guesses(scores[j] - np.delete(scores, j, axis=0).mean(axis=0), coins[j], 5, 5)
        for j in range(4)
    ]
    assert leave_one_out_right(scores, coins, 5, 5) == pytest.approx(np.mean(by_hand))


def test_reference_trainings_count_the_scale_choice():
    assert reference_trainings(8, ood=False) == 8
    assert reference_trainings(8, ood=True) == SELECTION_RUNS * len(OOD_SCALES) + 8 - SELECTION_RUNS
    assert reference_trainings(2, ood=True) == 2 * len(OOD_SCALES)  # no top-up below 4


def test_each_audited_run_has_its_own_reference_stream():
    runs = np.random.SeedSequence(11).spawn(3)  # as dp_audit's _runs seeds its runs
    states = [reference_seed(ss).generate_state(4).tolist() for ss in runs]
    assert len({tuple(s) for s in states}) == 3


def test_reference_stream_is_none_of_the_audited_runs_streams():
    """The audited run draws its canaries, coins and model from ss's first two children: the
    references' stream must differ from both (and from ss), or they would share its coins."""
    ss = np.random.SeedSequence(7).spawn(3)[1]
    ref = reference_seed(ss).generate_state(4)
    others = [ss, *np.random.SeedSequence(ss.entropy, spawn_key=ss.spawn_key).spawn(2)]
    assert all(not np.array_equal(ref, o.generate_state(4)) for o in others)
    assert np.array_equal(ref, reference_seed(ss).generate_state(4))  # deterministic


@dataclasses.dataclass(frozen=True)
class _Data:
    features: np.ndarray


@dataclasses.dataclass(frozen=True)
class _Plan:
    canaries: np.ndarray
    held: np.ndarray
    included: np.ndarray
    data: _Data


def test_scaled_moves_only_the_canaries_away_from_the_held_out_mean():
    rng = np.random.default_rng(2)
    x = rng.random((60, 5)).astype(np.float32)
    plan = _Plan(np.arange(10), np.arange(40, 60), np.zeros(10, bool), _Data(x))
    out = scaled(plan, 4.0)
    mean = x[40:].mean(axis=0, dtype=np.float64)
    assert np.allclose(out.data.features[:10], mean + 4.0 * (x[:10] - mean), atol=1e-5)
    assert np.array_equal(out.data.features[10:], x[10:]) and out.data.features.dtype == x.dtype
    assert scaled(plan, 1.0) is plan and np.array_equal(plan.data.features, x)  # not mutated


def _fake_runs(effect: float, offsets: np.ndarray):
    """Scores as a black-box canary's: a fixed per-canary offset (how any model treats that
    input), run-to-run noise, and ``effect`` when the canary was included."""

    def score(plan, model_ss):
        noise = np.random.default_rng(model_ss).normal(size=offsets.size)
        return offsets + noise + effect * plan.included

    return score


def _audited(effect: float, seed: int, reference_runs: int) -> tuple[int, int]:
    """(right guesses raw, right guesses calibrated) of one audited run, 25 + 25 guesses."""
    rng = np.random.default_rng([seed, 5])
    m = 200
    offsets = 3.0 * rng.normal(size=m)
    plan = _Plan(np.arange(m), np.arange(0), rng.random(m) < 0.5, _Data(np.zeros((m, 1))))
    score = _fake_runs(effect, offsets)
    ss = np.random.SeedSequence(seed)
    _, centre, record = calibrate(
        plan, runs=reference_runs, guesses=(25, 25), ood=False, score=score, ss=reference_seed(ss)
    )
    s = score(plan, ss.spawn(2)[1])
    assert record.runs == reference_runs and record.scales == []
    return right_guesses(s, plan.included, 25, 25), right_guesses(s - centre, plan.included, 25, 25)


def test_calibration_keeps_a_null_design_at_chance_and_finds_a_real_effect():
    """Null (inclusion changes nothing): over 200 seeds the calibrated guesses are right half the
    time — 10,000 guesses, so a rate outside 0.5 ± 0.015 (3 standard errors) would mean the
    references saw the audited coins. With an effect hidden under per-canary offsets three times
    the noise, centring must beat the raw score on the same runs (paired, every seed)."""
    null = [_audited(0.0, seed, 4)[1] for seed in range(200)]
    assert abs(np.sum(null) / (200 * 50) - 0.5) < 0.015
    for seed in range(10):
        raw, centred = _audited(1.5, seed, 8)
        assert centred > raw, (seed, raw, centred)


def test_ood_scale_is_chosen_on_the_references_by_leave_one_out_right_guesses():
    """A fake recipe where larger inputs carry a larger effect (×8 best): the choice takes it,
    and the selection table holds each scale's leave-one-out mean."""
    rng = np.random.default_rng(3)
    m = 200
    x = rng.random((m + 50, 3))
    plan = _Plan(np.arange(m), np.arange(m, m + 50), rng.random(m) < 0.5, _Data(x))
    mean = x[m:].mean(axis=0)

    def score(p, model_ss):
        spread = float(
            np.abs(p.data.features[: m // 2] - mean).mean() / np.abs(x[:m] - mean).mean()
        )
        noise = np.random.default_rng(model_ss).normal(size=m)
        return noise + 0.3 * spread * p.included

    chosen, centre, record = calibrate(
        plan, runs=6, guesses=(25, 25), ood=True, score=score, ss=np.random.SeedSequence(4)
    )
    assert record.scales == list(OOD_SCALES) and record.chosen_scale == [8.0]
    assert len(record.selection[0]) == len(OOD_SCALES) and centre.shape == (m,)
    assert np.allclose(chosen.data.features[:m], mean + 8.0 * (x[:m] - mean))
    assert "kept ×8" in record.line()


def _tiny(seed: int):
    from miaudit.audit import parse_audit_config

    model = {"kind": "torch-mlp", "hidden": [32], "epochs": 1, "batch_size": 64, "lr": 0.003}
    model["dp"] = {"epsilon": 1.0, "ghost_clipping": True}
    return parse_audit_config(
        {
            "data": {
                "dataset": "purchase",
                "purchase": {"n_records": 400, "n_features": 20, "n_classes": 4},
            },
            "model": model,
            "seed": seed,
            "engine": {"threads": 1, "progress": False},
        }
    )


def test_dp_audit_records_the_calibration_in_schema_3(tmp_path):
    pytest.importorskip("opacus")
    from miaudit.audit import DpAuditDesign, DpAuditResult, dp_audit

    lines: list[str] = []
    design = DpAuditDesign(canaries=100, k_plus=10, k_minus=10, canary_kind="ood", reference_runs=2)
    r = dp_audit(_tiny(0), tmp_path / "cal", design=design, say=lines.append)
    assert "trains 8 reference run(s)" in lines[0] and "choose their input scale" in lines[0]
    assert r.calibration is not None and r.calibration.runs == 2
    assert r.calibration.chosen_scale[0] in OOD_SCALES and len(r.calibration.selection[0]) == 4
    assert "centred by the canary's mean over 2 reference runs" in r.score
    text = (tmp_path / "cal" / "dp_audit.json").read_text()
    data = json.loads(text)
    assert data["schema"] == "miaudit.dp_audit/3" and data["design"]["reference_runs"] == 2
    assert DpAuditResult.from_json(text).calibration == r.calibration
    assert any(line.startswith("calibration:") for line in r.summary().splitlines())
    from miaudit.report import dp_summary_from_audit

    summary = dp_summary_from_audit(r)
    assert summary is not None and any(n.startswith("calibration:") for n in summary.notes)
    plain = dp_audit(
        _tiny(0), design=DpAuditDesign(canaries=100, k_plus=10, k_minus=10, canary_kind="ood")
    )
    plain_json = json.loads(plain.to_json())  # uncalibrated: schema 2 exactly as before
    assert plain_json["schema"] == "miaudit.dp_audit/2" and "calibration" not in plain_json
    assert "reference_runs" not in plain_json["design"]


def test_calibration_leaves_the_audited_runs_as_the_uncalibrated_audit_trains_them():
    """Paired by construction: with input canaries (no factor to choose) the audited models of a
    calibrated audit are the uncalibrated audit's, run for run (same accuracy and privacy)."""
    pytest.importorskip("opacus")
    from miaudit.audit import DpAuditDesign, dp_audit

    common = {"canaries": 60, "k_plus": 10, "k_minus": 10, "canary_kind": "input", "runs": 2}
    plain = dp_audit(_tiny(1), design=DpAuditDesign(**common))
    calibrated = dp_audit(_tiny(1), design=DpAuditDesign(**common, reference_runs=2))
    assert calibrated.test_accuracy == plain.test_accuracy and len(plain.test_accuracy) == 2
    assert calibrated.privacy == plain.privacy
    assert calibrated.calibration is not None and calibrated.calibration.runs == 2


@pytest.mark.parametrize(
    ("design", "match"),
    [
        ({"reference_runs": 1, "canary_kind": "ood"}, "reference_runs.*at least 2"),
        ({"reference_runs": -2, "canary_kind": "ood"}, "reference_runs.*at least 2"),
        ({"reference_runs": 2, "canary_kind": "gradient"}, "reference_runs.*'gradient'"),
        ({"reference_runs": 2}, "reference_runs.*'gradient'"),  # auto picks gradient for DP
        ({"reference_runs": 2, "multi_run": True, "runs": 10}, "reference_runs.*multi-run"),
    ],
)
def test_bad_calibration_designs_are_refused_before_training(design, match):
    pytest.importorskip("opacus")
    from miaudit.audit import DpAuditDesign, dp_audit
    from miaudit.errors import InputError

    with pytest.raises(InputError, match=match):
        dp_audit(_tiny(0), design=DpAuditDesign(**design))


def test_cli_reference_runs_one_exits_2_with_one_line(monkeypatch, capsys, tmp_path):
    import sys

    from miaudit.cli import main

    cfg = tmp_path / "dp.toml"
    cfg.write_text(
        '[data]\ndataset = "purchase"\npurchase = { n_records = 300, n_features = 10 }\n'
        '[model]\nkind = "torch-mlp"\ndp = { epsilon = 1.0 }\n',
        encoding="utf-8",
    )
    out = tmp_path / "o"
    args = [
        "dp-audit",
        str(cfg),
        "--canary-kind",
        "ood",
        "--reference-runs",
        "1",
        "--out",
        str(out),
    ]
    monkeypatch.setattr(sys, "argv", ["miaudit", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "reference_runs" in err[0], err
    assert not out.exists()
