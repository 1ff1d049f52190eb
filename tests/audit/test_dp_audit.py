"""dp-audit: planted DP bugs are caught, correct DP-SGD passes (docs/method.md §6)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("opacus")

from miaudit.audit import parse_audit_config
from miaudit.audit._dp_audit import DpAuditDesign, dp_audit, verdict
from miaudit.errors import InputError
from miaudit.metrics import one_run_max_certifiable_epsilon

CLAIM = (
    1.0  # the claimed ε of every DP recipe below (a target budget: the accountant records ≈ 0.99)
)


def _cfg(dp: dict | None, seed: int, *, n: int = 700, epochs: int = 30, **extra: object) -> object:
    model = {"kind": "torch-mlp", "hidden": [128], "epochs": epochs, "batch_size": 64, "lr": 0.003}
    model.update(extra)
    if dp is not None:
        model["dp"] = {"epsilon": CLAIM, "ghost_clipping": True, **dp}
    return parse_audit_config(
        {
            "data": {
                "dataset": "purchase",
                "purchase": {"n_records": n, "n_features": 100, "n_classes": 10, "flip_rate": 0.1},
            },
            "model": model,
            "seed": seed,
            "engine": {"threads": 1, "progress": False},
        }
    )


SMALL = DpAuditDesign(canaries=200, k_plus=25, k_minus=25, canary_kind="input")


def test_verdict_rules():
    """One one-sided test of the claim: FAILED exactly when its p-value is below the significance."""
    assert verdict(1.0, 0.01, 0.05, 3.0) == "FAILED"
    assert verdict(1.0, 0.05, 0.05, 3.0) == "PASSED"  # p = significance rejects nothing
    assert verdict(1.0, 0.9, 0.05, 3.0) == "PASSED"
    assert verdict(1.0, None, 0.05, 3.0) == "PASSED"
    assert verdict(4.0, 0.001, 0.05, 3.0) == "not testable by this design"
    assert verdict(math.inf, None, 0.05, 3.0) == "not testable by this design"


def test_design_is_checked_and_its_ceiling_stated_before_training(tmp_path):
    with pytest.raises(InputError, match=r"guesses"):
        dp_audit(_cfg(None, 0), design=DpAuditDesign(canaries=10, k_plus=6, k_minus=6))
    with pytest.raises(InputError, match=r"canaries"):
        dp_audit(_cfg(None, 0, n=100), design=DpAuditDesign(canaries=200, k_plus=1, k_minus=1))
    lines: list[str] = []
    res = dp_audit(_cfg(None, 0, epochs=2), tmp_path, design=SMALL, say=lines.append)
    ceiling = one_run_max_certifiable_epsilon(200, 50)
    assert f"certify at most ε = {ceiling:.3f}" in lines[0] and "run 1/1" in lines[1]
    assert res.max_certifiable_epsilon == pytest.approx(ceiling, abs=1e-12)
    data = json.loads((tmp_path / "dp_audit.json").read_text())
    assert data["schema"] == "miaudit.dp_audit/2" and data["claimed_epsilon"] is None
    assert data["verdict"] == "not testable by this design" and data["m"] == 200 and data["r"] <= 50
    # dp_audit.json reads back as the very result: the claim of a recipe without DP is ∞ in
    # memory, null on disk; another schema is refused with an InputError naming the file.
    from miaudit.audit import DpAuditResult

    back = DpAuditResult.read(tmp_path / "dp_audit.json")
    assert back == res and math.isinf(back.claimed_epsilon)
    (tmp_path / "other.json").write_text(json.dumps({**data, "schema": "miaudit.dp_audit/9"}))
    with pytest.raises(InputError, match=r"other\.json.*dp_audit/9"):
        DpAuditResult.read(tmp_path / "other.json")


@pytest.mark.parametrize("seed", [1, 2])
def test_zero_noise_is_caught_and_correct_dp_sgd_passes(seed):
    undefended = dp_audit(_cfg(None, seed), design=SMALL)
    correct = dp_audit(_cfg({}, seed), design=SMALL)
    planted = dp_audit(_cfg({"fault": "zero_noise"}, seed), design=SMALL)
    # The claim under audit is below what the undefended recipe reaches, so a bug is visible.
    assert correct.claimed_epsilon <= CLAIM < undefended.empirical_epsilon_lower_bound
    assert planted.claimed_epsilon == pytest.approx(
        correct.claimed_epsilon, rel=1e-12
    )  # the accountant was lied to
    assert planted.verdict == "FAILED", planted.summary()
    assert correct.verdict == "PASSED", correct.summary()
    assert planted.privacy[0].fault_injection == "zero_noise" and any(
        "FAULT INJECTION" in n for n in planted.notes
    )


def test_gradient_canaries_say_what_they_cannot_see():
    """Red team: gradient canaries PASSED a training-preprocessing fault (true ε = ∞) with the
    notes "preprocessing fitted on each run's training records, canaries included" (they are
    not records) and a power line read as bounding every bug."""
    design = DpAuditDesign(canaries=200, k_plus=25, k_minus=25, canary_kind="gradient")
    res = dp_audit(_cfg({"fault": "training_preprocessing"}, 3, epochs=2), design=design)
    notes = "\n".join(res.notes)
    assert (
        "canaries included" not in notes and "not records: preprocessing never sees them" in notes
    )
    assert "cannot see clipping" in notes and "preprocessing" in notes.split("cannot see")[1]
    assert "outside what gradient canaries can see" in notes
    assert "(for the bugs gradient canaries see (noise scale and step count) only)" in res.summary()


def test_defaults_are_gradient_canaries_with_power_printed():
    """Issue 19: a DP recipe is audited by default with gradient canaries (as many as the design
    allows, at most the model's coordinates), guesses from the rule, and every verdict printed
    with its power: the simulated ideal bound and the smallest detectable ε."""
    lines: list[str] = []
    res = dp_audit(_cfg({"fault": "zero_noise"}, 0, epochs=3), say=lines.append)
    assert res.design.canary_kind == "gradient" and res.design.canaries == 5000
    assert (
        "guess rule" not in res.guess_rule
        and "largest mean ideal bound under a violation" in res.guess_rule
    )
    assert res.verdict == "FAILED" and res.p_value is not None and res.p_value < 0.05
    assert res.power is not None and res.power.ideal_bound < res.empirical_epsilon_lower_bound
    assert res.power.min_detectable_epsilon is not None and res.power.simulations == 9
    assert "power: an ideal attacker" in lines[-1] and "Gaussian-DP estimate" in lines[-1]
    assert res.score.startswith("per-step likelihood ratio")
    # a correct recipe on the same seed: PASSED, in words that say what it does not prove
    ok = dp_audit(_cfg({}, 0, epochs=3))
    assert ok.verdict == "PASSED" and ok.verdict_text().startswith("PASSED: no contradiction found")


def test_schema_1_files_still_read(tmp_path):
    """dp_audit.json written before issue 19 (schema 1) reads back, its new fields None."""
    from miaudit.audit import DpAuditResult

    old = json.loads(
        (Path(__file__).parents[1] / "dp" / "data" / "dp_audit_schema1.json").read_text()
    )
    (tmp_path / "dp_audit.json").write_text(json.dumps(old))
    back = DpAuditResult.read(tmp_path / "dp_audit.json")
    assert (
        back.schema_version == "miaudit.dp_audit/1" and back.power is None and back.p_value is None
    )
    assert back.verdict == "PASSED" and back.design.canary_kind == "input"


def test_gradient_canaries_white_box():
    design = DpAuditDesign(canaries=1000, k_plus=100, k_minus=100, canary_kind="gradient")
    with pytest.raises(InputError, match=r"canary_kind"):
        dp_audit(_cfg(None, 0), design=design)
    planted = dp_audit(_cfg({"fault": "zero_noise"}, 1), design=design)
    correct = dp_audit(_cfg({}, 1), design=design)
    assert (
        planted.verdict == "FAILED" and planted.v == planted.r == 200
    )  # every guess right: the noise is gone
    assert correct.verdict == "PASSED" and correct.empirical_epsilon_lower_bound <= CLAIM
    assert "white-box" in correct.method and correct.max_certifiable_epsilon == pytest.approx(
        one_run_max_certifiable_epsilon(1000, 200, delta=1e-5)
    )


def test_rare_category_canaries_fail_a_recipe_whose_preprocessing_sees_its_training_records():
    """Issue 15: each canary gets a category no other record has; scored by how much the logits
    move when it is taken away. Fitted on the training records (fault injection: no DP recipe
    accepts it otherwise), the category is a live column exactly when the canary was included:
    every guess is right (the excluded canaries' scores are exactly 0, a tie now broken by
    independent random draws, so the OUT guesses are made too) and the claim ε ≈ 1 FAILS,
    whatever the noise (measured: 50 of 50 right, bound 2.779 = the ceiling, against
    ε = 0.996; before ties were broken: 25 of 25, bound 2.055). Fitted where a DP recipe
    fits it (the held-out records), the column is zero in every run: a canary and its twin are the
    same input, their logits differ by float rounding at most (measured ≤ 7.5e-8, as often for included
    canaries as for excluded ones), and the
    audit PASSES (ties now broken at random: the guesses are coin flips, the bound near 0)."""
    design = DpAuditDesign(canaries=200, k_plus=25, k_minus=25, canary_kind="rare-category")
    leaky = dp_audit(_cfg({"fault": "training_preprocessing"}, 3, epochs=2), design=design)
    assert leaky.verdict == "FAILED" and leaky.v == leaky.r == 50, leaky.summary()
    assert (
        leaky.empirical_epsilon_lower_bound > 2 * leaky.claimed_epsilon
        and leaky.claimed_epsilon <= CLAIM
    )
    assert any("each run's training records" in n for n in leaky.notes)
    correct = dp_audit(_cfg({}, 3, epochs=2), design=design)
    assert correct.verdict == "PASSED" and correct.empirical_epsilon_lower_bound < 0.5, (
        correct.summary()
    )
    assert "rare-category" in correct.method and any("held-out records" in n for n in correct.notes)
    # Red team: that PASSED came with a power line as if bugs of ε ≥ 3.45 would be caught.
    assert correct.no_power and "NO POWER" in correct.verdict_text() and not leaky.no_power
    assert "power: none" in correct.summary() and "power: an ideal" in leaky.summary()
    with pytest.raises(InputError, match=r"canary_kind.*tabular"):
        dp_audit(
            parse_audit_config({"data": {"dataset": "digits"}, "model": {"kind": "torch-cnn"}}),
            design=design,
        )


@pytest.mark.claims
@pytest.mark.parametrize("fault", ["zero_noise", "no_clipping"])
def test_claims_planted_bugs_fail_on_every_seed_correct_recipe_passes(fault):
    """Full size: 1000 canaries, k₊ = k₋ = 100, five seeds, each fault; the correct recipe passes.

    Measured 2026-11-28 (seeds 0–4; claim = the accountant's ε ≈ 0.995–0.999; ceiling 4.17):
    undefended recipe bound 3.22–4.19; correct 0.00–0.20 (PASSED); zero_noise 2.32–3.04 (FAILED);
    no_clipping 1.00–1.27 (FAILED, but by 0.002 on seed 2: a thin margin).
    """
    design = DpAuditDesign(canaries=1000, k_plus=100, k_minus=100, canary_kind="input")
    for seed in range(5):
        dp = (
            {"fault": fault} if fault == "zero_noise" else {"fault": fault, "ghost_clipping": False}
        )
        planted = dp_audit(_cfg(dp, seed, n=3000, epochs=30), design=design)
        assert planted.verdict == "FAILED", planted.summary()
        correct = dp_audit(_cfg({}, seed, n=3000, epochs=30), design=design)
        assert correct.verdict == "PASSED", correct.summary()


def test_cli_exits_1_on_failed(tmp_path):
    import typer
    from typer.testing import CliRunner

    from miaudit.cli._tradeoff import dp_audit as dp_audit_cmd

    app = typer.Typer()
    app.command("dp-audit")(dp_audit_cmd)
    app.command("unused")(lambda: None)  # two commands: the name is part of the command line
    cfg = tmp_path / "dp.toml"
    cfg.write_text(
        'seed = 1\n[data]\ndataset = "purchase"\npurchase = { n_records = 700, n_features = 100, n_classes = 10 }\n'
        '[model]\nkind = "torch-mlp"\nhidden = [128]\nepochs = 30\nbatch_size = 64\nlr = 0.003\n'
        'dp = { epsilon = 1.0, ghost_clipping = true, fault = "zero_noise" }\n',
        encoding="utf-8",
    )
    r = CliRunner().invoke(
        app,
        [
            "dp-audit",
            str(cfg),
            "--canaries",
            "1000",
            "--canary-kind",
            "gradient",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert r.exit_code == 1, r.output
    assert "FAILED" in r.output and "certify at most" in r.output.splitlines()[0]
    assert json.loads((tmp_path / "o" / "dp_audit.json").read_text())["verdict"] == "FAILED"


def test_ood_canaries_replace_only_the_canaries_inputs_from_held_out_marginals():
    import numpy as np

    from miaudit.audit._dp_audit import with_ood_inputs
    from miaudit.datasets import load_dataset

    data = load_dataset(
        parse_audit_config(
            {"data": {"dataset": "purchase", "purchase": {"n_records": 300, "n_features": 20}}}
        ).data
    )
    canaries, held = np.arange(0, 50), np.arange(200, 300)
    out = with_ood_inputs(data, canaries, held, np.random.default_rng(0))
    assert np.array_equal(out.features[50:], data.features[50:])  # other records untouched
    for j in range(data.n_features):  # every value comes from that column's held-out values
        assert set(out.features[canaries, j]) <= set(data.features[held, j])
    # an input unlike any record: no canary equals its original record
    assert not np.any(np.all(out.features[canaries] == data.features[canaries], axis=1))


def test_ood_canaries_catch_zero_noise():
    design = DpAuditDesign(canaries=200, canary_kind="ood")
    planted = dp_audit(_cfg({"fault": "zero_noise"}, 1), design=design)
    assert planted.verdict == "FAILED" and "out-of-distribution" in planted.method, (
        planted.summary()
    )


def test_report_dp_section_gets_claim_bounds_ceiling_and_power():
    """The report's DP section (miaudit tradeoff --dp-audit) shows the claim, the bound and the
    ceiling as fields and, in its notes, the verdict in words, the power line and the labelled
    μ-GDP estimate (the golden schema-2 file, read back)."""
    from miaudit.audit import DpAuditResult
    from miaudit.cli._tradeoff import dp_summary_for_report

    res = DpAuditResult.read(Path(__file__).parents[1] / "golden" / "expected" / "dp_audit.json")
    summary = dp_summary_for_report(res)
    assert summary is not None and summary.max_certifiable_epsilon == res.max_certifiable_epsilon
    assert summary.empirical_epsilon_lower_bound == res.empirical_epsilon_lower_bound
    notes = "\n".join(summary.notes)
    assert "PASSED: no contradiction found (LOW POWER" in notes
    assert "power: an ideal attacker under the claimed mechanism" in notes
    assert "Gaussian-DP estimate (assumes a Gaussian trade-off curve" in notes


def test_multi_run_mode_writes_schema_3_with_counts_ceiling_and_ideal(tmp_path):
    """Issue 19: --multi-run trains R runs with one gradient canary each and tests the claim by
    Clopper–Pearson over runs; its file (schema 3) reads back, and the CLI exposes it."""
    import typer
    from typer.testing import CliRunner

    from miaudit.audit import DpAuditResult
    from miaudit.cli._tradeoff import dp_audit as dp_audit_cmd

    cfg = tmp_path / "dp.toml"
    cfg.write_text(
        'seed = 3\n[data]\ndataset = "purchase"\npurchase = { n_records = 300, n_features = 8, n_classes = 3 }\n'
        '[model]\nkind = "torch-mlp"\nhidden = [4]\nepochs = 1\nbatch_size = 60\nlr = 0.003\n'
        "dp = { epsilon = 2.0 }\n",
        encoding="utf-8",
    )
    app = typer.Typer()
    app.command("dp-audit")(dp_audit_cmd)
    app.command("unused")(lambda: None)
    r = CliRunner().invoke(
        app, ["dp-audit", str(cfg), "--multi-run", "--runs", "24", "--out", str(tmp_path / "o")]
    )
    assert r.exit_code == 0, r.output
    assert "multi-run:" in r.output and "Clopper–Pearson ceiling" in r.output
    res = DpAuditResult.read(tmp_path / "o" / "dp_audit.json")
    written = json.loads((tmp_path / "o" / "dp_audit.json").read_text(encoding="utf-8"))
    # no calibration: its keys are left out, so releases before it read the file
    assert "calibration" not in written and "reference_runs" not in written["design"]
    mr = res.multi_run
    assert res.schema_version == "miaudit.dp_audit/3" and mr is not None
    assert mr.runs == 24 and mr.runs_in + mr.runs_out == 24
    assert (
        res.max_certifiable_epsilon == mr.ceiling and res.verdict == "not testable by this design"
    )
    assert res.p_value is not None and 0 <= res.p_value <= 1
    from miaudit.report import render_dp_report

    html = render_dp_report(res)
    assert "24 training runs, one gradient canary each" in html and "multi-run: " in html
    with pytest.raises(InputError, match=r"model\.dp\.fault"):
        dp_audit(
            _cfg({"fault": "no_clipping", "ghost_clipping": False}, 0, epochs=1),
            design=DpAuditDesign(runs=4, multi_run=True),
        )
    # Red team: dropout was an internal error (vmap refuses random masks), exit 1.
    dropped = _cfg({"ghost_clipping": False}, 0, epochs=1, dropout=0.3)
    with pytest.raises(InputError, match=r"model\.dropout.*without dropout"):
        dp_audit(dropped, design=DpAuditDesign(runs=4, multi_run=True))


def test_design_errors_print_the_counts_they_mean():
    """A6: the messages said "-79999520 base records" and "canaries = None"."""
    # "auto" is checked once resolved (resolve_design): gradient canaries are not records
    DpAuditDesign(canaries=100_000_000).check(600)
    with pytest.raises(InputError) as err:
        DpAuditDesign(canaries=100_000_000, canary_kind="input").check(600)
    msg = str(err.value)
    assert "100000000 input canaries are records of the dataset, which has 600" in msg
    assert "at most 599 canaries" in msg and "-" not in msg.split("canaries:", 1)[1]
    with pytest.raises(InputError) as err:
        DpAuditDesign(canaries=5000, canary_kind="rare-category").check(600)
    assert "5000 rare-category canaries" in str(err.value) and "-3520" not in str(err.value)
    with pytest.raises(InputError) as err:
        DpAuditDesign(k_plus=-1, k_minus=0).check(600)
    assert "None" not in str(err.value) and "got -1 + 0" in str(err.value)
    with pytest.raises(InputError, match=r"at most the 10 canaries per run; got 8 \+ 8"):
        DpAuditDesign(canaries=10, k_plus=8, k_minus=8).check(600)


def test_a_bad_claim_is_refused_before_any_run_trains():
    said: list[str] = []
    with pytest.raises(InputError, match=r"model\.dp\.delta: δ = 0.5 is not below 1/n"):
        dp_audit(_cfg({"epsilon": 1.0, "delta": 0.5}, 0, n=300), say=said.append)
    with pytest.raises(InputError, match=r"model\.dp\.epsilon: ε = 1e-06 is too small"):
        dp_audit(
            _cfg({"epsilon": 1e-6}, 0, n=300),
            design=DpAuditDesign(canaries=20, k_plus=2, k_minus=2),
            say=said.append,
        )
    assert said == []  # not even the design line: nothing was planned or trained


def test_the_claim_is_checked_at_both_ends_of_a_runs_training_size(monkeypatch):
    """Input canaries join by coin flip: a run trains on base .. base + m records, so σ is
    searched for both ends before anything trains (δ against the largest)."""
    import miaudit.models

    seen: list[list[int]] = []

    def record(_recipe, sizes):
        seen.append(sizes)
        raise InputError("model.dp.epsilon", "stop before training")

    monkeypatch.setattr(miaudit.models, "check_dp_claim", record)
    with pytest.raises(InputError, match="stop before training"):
        dp_audit(
            _cfg({"epsilon": 1.0}, 0, n=300),
            design=DpAuditDesign(canary_kind="input", canaries=40, k_plus=4, k_minus=4),
        )
    ((small, large),) = seen
    assert large - small == 40 and small > 0


def test_auto_canaries_are_resolved_before_the_records_check():
    """Red team: `dp-audit --canaries 2000` (auto: gradient canaries for a DP recipe) on 1,500
    records was refused as "2000 input canaries are records of the dataset"."""
    DpAuditDesign(canaries=2000).check(1500)  # auto: checked once resolved
    DpAuditDesign(canaries=2000, canary_kind="gradient").check(1500)
    with pytest.raises(InputError, match="2000 input canaries are records"):
        DpAuditDesign(canaries=2000, canary_kind="input").check(1500)
