"""miaudit tradeoff: every variant through the same audit; policies through an oracle."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("opacus")

from miaudit.attacks import threshold_attacks_under
from miaudit.audit import parse_audit_config
from miaudit.audit._tradeoff import (
    VariantSpec,
    default_variants,
    model_predictor,
    tradeoff,
)
from miaudit.errors import InputError

RAW = {
    "data": {"dataset": "adult", "max_records": 600},
    "model": {"kind": "torch-mlp", "hidden": [32], "epochs": 4, "batch_size": 64},
    "plan": {"pool_fraction": 0.8},
    "engine": {"workers": 0, "threads": 1, "progress": False},
    "audit": {"references": 1, "attacks": ["loss", "lira_online"], "resamples": 40},
    "seed": 5,
}
DRAWS = 8


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tradeoff")
    variants = default_variants(
        epsilons=[2.0],
        weight_decays=[],
        early_stopping=False,
        policies=["top-1", "label-only"],
        accountant="rdp",
    )
    res = tradeoff(
        parse_audit_config(RAW), out, variants=variants, policy_targets=2, noise_draws=DRAWS
    )
    return res, out


def _small_tradeoff(cfg, out, policy: str) -> list[str]:
    """``miaudit tradeoff`` with one weight decay and one output policy on one target."""
    return [
        "tradeoff", str(cfg), "--out", str(out), "--epsilons", "", "--weight-decays", "0.01",
        "--no-early-stopping", "--policies", policy, "--policy-targets", "1",
    ]  # fmt: skip


def test_variants_and_json(run):
    res, out = run
    data = json.loads((out / "tradeoff.json").read_text())
    assert data["schema"] == "miaudit.tradeoff/1"
    assert [v["name"] for v in data["variants"]] == [
        "baseline",
        "dp-eps2",
        "policy-top-1",
        "policy-label-only",
    ]
    base, dp = res.variant("baseline"), res.variant("dp-eps2")
    assert base.baseline and base.epsilon is None and base.policy is None
    # The accountant's ε (largest over the 4 models), just under the target.
    assert dp.accountant == "rdp" and dp.delta == 1e-5 and 1.8 <= dp.epsilon <= 2.0
    for v in res.variants:
        assert 0 <= v.test_accuracy <= 1 and v.generalization_gap == pytest.approx(
            v.train_accuracy - v.test_accuracy
        )
        assert v.auc.lower is not None and v.auc.lower <= v.auc.point <= v.auc.upper
        assert v.strongest_attack == max(v.attacks, key=lambda a: v.attacks[a].auc.point)


def test_result_round_trips_through_its_json(run, tmp_path):
    """tradeoff.json reads back as the very result; another schema or a bad field is refused
    with an InputError naming the file."""
    from miaudit.audit import TradeoffResult

    res, out = run
    assert TradeoffResult.read(out / "tradeoff.json") == res
    assert TradeoffResult.from_json(res.to_json()) == res
    data = json.loads(res.to_json())
    # the layout of /1: TPR under "tpr@1%fpr", queries only for query attacks
    base = data["variants"][0]["attacks"]["loss"]
    assert set(base) == {"auc", "tpr@1%fpr"}
    assert data["variants"][3]["attacks"]["gap"]["queries_per_record"] == 1
    bad = tmp_path / "other.json"
    for broken in (
        {**data, "schema": "miaudit.tradeoff/2"},
        {k: v for k, v in data.items() if k != "schema"},
        {**data, "variants": [{**data["variants"][0], "auc": "high"}]},
    ):
        bad.write_text(json.dumps(broken))
        with pytest.raises(InputError, match=r"other\.json"):
            TradeoffResult.read(bad)
    bad.write_text("{oops")
    with pytest.raises(InputError, match=r"other\.json.*not JSON"):
        TradeoffResult.read(bad)


def test_policies_only_see_what_they_expose(run):
    res, _ = run
    top1 = res.variant("policy-top-1")
    assert set(top1.attacks) == set(threshold_attacks_under("top-1"))
    lo = res.variant("policy-label-only")
    assert set(lo.attacks) == {"gap", "noise_robustness"}
    assert (
        lo.attacks["noise_robustness"].queries_per_record == DRAWS
        and lo.attacks["gap"].queries_per_record == 1
    )
    # The same models as the baseline: a label is what the full output's argmax says.
    base = res.variant("baseline")
    assert lo.test_accuracy == pytest.approx(top1.test_accuracy)
    assert abs(lo.test_accuracy - base.test_accuracy) < 0.05  # 2 of 4 targets vs all 4


def test_paired_comparisons(run):
    res, _ = run
    kinds = {(c.kind, c.variant) for c in res.comparisons}
    assert kinds == {("baseline_vs_variant", "dp-eps2"), ("robustness_vs_gap", "policy-label-only")}
    for c in res.comparisons:
        d = c.difference
        assert d.lower <= d.point <= d.upper
    dp = next(c for c in res.comparisons if c.variant == "dp-eps2")
    assert dp.difference.point == pytest.approx(
        res.variant("baseline").auc.point - res.variant("dp-eps2").auc.point, abs=1e-12
    )


def test_model_predictor_reproduces_the_engine_outputs(run):
    from miaudit.engine import train

    _, out = run
    cfg = parse_audit_config(RAW)
    cfg = cfg.model_copy(update={"engine": cfg.engine.model_copy(update={"cache": out / "models"})})
    tr = train(cfg.train_config(), out / "variants" / "baseline")
    assert tr.trained == ()  # verified cache hits
    from miaudit.datasets import load_dataset

    x = load_dataset(cfg.data).features
    for m in (0, 3):
        got = model_predictor(tr, m)(x)
        lg = tr.signals.logits[m].astype(np.float64)
        want = np.exp(lg - lg.max(1, keepdims=True))
        want /= want.sum(1, keepdims=True)
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_bad_variants_are_refused(tmp_path):
    with pytest.raises(InputError, match="baseline"):
        tradeoff(
            parse_audit_config(RAW), tmp_path, variants=[VariantSpec("x", "", policy="label-only")]
        )
    with pytest.raises(InputError, match="unique"):
        tradeoff(
            parse_audit_config(RAW), tmp_path, variants=[VariantSpec("a", ""), VariantSpec("a", "")]
        )
    with pytest.raises(InputError, match=r"variants\.bad"):
        tradeoff(
            parse_audit_config(RAW),
            tmp_path,
            variants=[VariantSpec("b", ""), VariantSpec("bad", "", {"dp": {}})],
        )


def test_cli_commands_in_process(tmp_path):
    import typer
    from typer.testing import CliRunner

    from miaudit.cli._tradeoff import dp_audit
    from miaudit.cli._tradeoff import tradeoff as tradeoff_cmd

    app = typer.Typer()
    app.command("tradeoff")(tradeoff_cmd)
    app.command("dp-audit")(dp_audit)
    cfg = tmp_path / "audit.toml"
    cfg.write_text(
        '[data]\ndataset = "adult"\nmax_records = 400\n[model]\nkind = "torch-mlp"\nhidden = [16]\nepochs = 2\n'
        '[engine]\nworkers = 0\nthreads = 1\nprogress = false\n[audit]\nreferences = 1\nattacks = ["loss"]\nresamples = 40\n',
        encoding="utf-8",
    )
    r = CliRunner().invoke(
        app,
        [
            "dp-audit",
            str(cfg),
            "--out",
            str(tmp_path / "dpa"),
            "--canaries",
            "100",
            "--k-plus",
            "10",
            "--k-minus",
            "10",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "certify at most" in r.output and "not testable by this design" in r.output
    r = CliRunner().invoke(
        app,
        [
            *_small_tradeoff(cfg, tmp_path / "t", "label-only"),
            "--dp-audit",
            str(tmp_path / "dpa" / "dp_audit.json"),
        ],
    )
    assert r.exit_code == 0, r.output
    html = (tmp_path / "t" / "report.html").read_text(encoding="utf-8")
    assert "wd0.01" in html and "policy-label-only" in html
    # the headline verdict is the baseline's, and says so (a learner read it as the controls')
    assert "Risk of membership inference for the baseline (the recipe as given" in html
    # Each verdict line names what its risk reduction is measured against, as the report does:
    # a policy against the same attacks on full outputs, a training control against the baseline.
    said = " ".join(r.output.split())
    assert "policy-label-only: " in said and "; against " in said and "full outputs" in said
    assert "against the baseline's strongest attack" in said


def test_images_use_augmentation_robustness_and_the_cnn_loader(tmp_path):
    from miaudit.engine import train

    raw = {
        **RAW,
        "data": {"dataset": "digits", "max_records": 300},
        "model": {
            "kind": "torch-cnn",
            "channels": [4],
            "hidden": 16,
            "epochs": 2,
            "augment": ["shift"],
        },
    }
    cfg = parse_audit_config(raw)
    res = tradeoff(
        cfg,
        tmp_path,
        variants=default_variants(
            epsilons=[], weight_decays=[], early_stopping=False, policies=["label-only"]
        ),
        policy_targets=1,
    )
    lo = res.variant("policy-label-only")
    assert set(lo.attacks) == {"gap", "augmentation_robustness"}
    assert (
        lo.attacks["augmentation_robustness"].queries_per_record == 5
    )  # the image and its four one-pixel shifts
    assert [c.a for c in res.comparisons] == ["augmentation_robustness"]
    cfg = cfg.model_copy(
        update={"engine": cfg.engine.model_copy(update={"cache": tmp_path / "models"})}
    )
    tr = train(cfg.train_config(), tmp_path / "variants" / "baseline")
    from miaudit.datasets import load_dataset

    got = model_predictor(tr, 1)(load_dataset(cfg.data).features)
    lg = tr.signals.logits[1][:, 0, :].astype(np.float64)  # the un-augmented query
    want = np.exp(lg - lg.max(1, keepdims=True))
    np.testing.assert_allclose(got, want / want.sum(1, keepdims=True), atol=1e-5)


def test_every_variant_has_paired_figures_and_a_verdict(run):
    res, out = run
    data = {v["name"]: v for v in json.loads((out / "tradeoff.json").read_text())["variants"]}
    assert res.variant("baseline").recommendation == "baseline"
    for v in res.variants[1:]:
        assert (
            v.recommendation in ("best", "recommended", "not recommended", "flagged") and v.reason
        )
        assert v.risk_reduction is not None and v.risk_reduction.lower is not None
        assert (
            v.accuracy_loss is not None
            and v.accuracy_loss.lower <= v.accuracy_loss.point <= v.accuracy_loss.upper
        )
        assert data[v.name]["risk_reduction"]["point"] == pytest.approx(v.risk_reduction.point)
    # Policies that keep the top label cost no accuracy, exactly; they are compared with the same
    # attacks on the same models' full outputs, not with the baseline's reference attacks.
    for name in ("policy-top-1", "policy-label-only"):
        v = res.variant(name)
        assert v.accuracy_loss.point == v.accuracy_loss.lower == v.accuracy_loss.upper == 0.0
        assert "full outputs" in v.compared_with and "lira" not in v.compared_with
    assert "baseline's strongest" in res.variant("dp-eps2").compared_with


def _variant(
    name, *, reduction, loss, acc=0.8, baseline=False, lower=None, judged=None, acc_ci=None
):
    from miaudit.audit._tradeoff import VariantOutcome
    from miaudit.metrics import Estimate

    est = lambda t: None if t is None else Estimate(point=t[0], lower=t[1], upper=t[2])  # noqa: E731
    return VariantOutcome(
        name=name,
        description="",
        test_accuracy=acc,
        test_accuracy_interval=est(acc_ci),
        train_accuracy=acc,
        generalization_gap=0.0,
        strongest_attack="rmia_online",
        auc=Estimate(point=0.6),
        tpr_at_1pct_fpr=Estimate(point=0.01),
        epsilon=None,
        delta=None,
        accountant=None,
        policy=None,
        attacks={},
        folder=f"variants/{name}",
        baseline=baseline,
        risk_reduction=est(reduction),
        risk_reduction_lower=lower,
        judged=judged,
        accuracy_loss=est(loss),
    )


def test_best_is_apart_from_every_recommended_control_not_only_the_runner_up():
    """A wide interval with a lower point (a policy variant audited on fewer models) reaching
    above the leader's: the leader was called "best" after a look at the runner-up alone."""
    from miaudit.audit._tradeoff import with_recommendations

    variants = [
        _variant("baseline", reduction=None, loss=None, baseline=True),
        _variant("wd", reduction=(0.20, 0.15, 0.25), loss=(0.0, -0.003, 0.004)),
        _variant("es", reduction=(0.12, 0.11, 0.13), loss=(0.0, -0.003, 0.004)),
        _variant("label-only", reduction=(0.10, 0.02, 0.30), loss=(0.0, -0.003, 0.004)),
    ]
    verdicts = {
        v.name: v.recommendation
        for v in with_recommendations(variants, tolerance=0.01, majority=0.5)
    }
    assert verdicts["wd"] == "best (not distinguishable from label-only)"
    assert verdicts["es"] == verdicts["label-only"] == "recommended"


def test_recommendation_rule_follows_the_intervals():
    """The case the old rule got wrong: DP at ε = 8 raised accuracy and cut AUC 0.68 → 0.54, yet
    regularisation was "recommended" and DP "consider"."""
    from miaudit.audit._tradeoff import with_recommendations

    variants = [
        _variant("baseline", reduction=None, loss=None, baseline=True),
        _variant("dp-eps8", reduction=(0.14, 0.12, 0.16), loss=(-0.004, -0.01, 0.002)),
        _variant("wd0.01", reduction=(0.03, 0.01, 0.05), loss=(0.0, -0.003, 0.004)),
        _variant(
            "early-stopping", reduction=(0.02, -0.01, 0.05), loss=(0.0, -0.002, 0.002)
        ),  # interval includes 0
        _variant(
            "dp-eps4", reduction=(0.16, 0.14, 0.18), loss=(0.012, 0.008, 0.016)
        ),  # costs more than 1 point
        _variant(
            "dp-eps1", reduction=(0.2, 0.18, 0.22), loss=(0.05, 0.04, 0.06), acc=0.76
        ),  # majority-class accuracy
    ]
    verdicts = {
        v.name: v.recommendation
        for v in with_recommendations(variants, tolerance=0.01, majority=0.76)
    }
    assert verdicts == {
        "baseline": "baseline",
        "dp-eps8": "best",
        "wd0.01": "recommended",
        "early-stopping": "not recommended",
        "dp-eps4": "not recommended",
        "dp-eps1": "flagged",
    }
    # A looser tolerance admits ε = 4, whose larger reduction then wins.
    verdicts = {
        v.name: v.recommendation
        for v in with_recommendations(variants, tolerance=0.02, majority=0.76)
    }
    # ... but its interval [0.14, 0.18] overlaps ε = 8's [0.12, 0.16]: not ranked above it.
    assert verdicts["dp-eps4"] == "best (not distinguishable from dp-eps8)"
    assert verdicts["dp-eps8"] == "recommended"
    # A control more accurate than the baseline beyond noise says so (a learner read "accuracy
    # loss at most 0.0 points" for a gain of 2.9-4.3 points at ε = 8).
    gain = _variant("dp-eps8", reduction=(0.14, 0.12, 0.16), loss=(-0.036, -0.043, -0.029))
    (_, judged) = with_recommendations([variants[0], gain], tolerance=0.01, majority=0.76)
    assert "accuracy gain of at least 2.9 points" in judged.reason
    (_, wd) = with_recommendations([variants[0], variants[2]], tolerance=0.01, majority=0.76)
    assert "accuracy loss at most 0.4 points" in wd.reason


def test_flagged_is_decided_on_the_test_accuracys_interval_for_the_baseline_too():
    """Red team: a variant 0.2 points under the majority rate (76.0 % vs 76.2 %, 2,400 test
    pairs) was "flagged: predicts nothing" on the point alone, one 0.3 points above it was not,
    and a baseline of the same models never was."""
    from miaudit.audit._tradeoff import with_recommendations

    cut, gain = (0.1, 0.08, 0.12), (0.0, -0.003, 0.004)
    variants = [
        _variant(
            "baseline",
            reduction=None,
            loss=None,
            acc=0.763,
            acc_ci=(0.763, 0.745, 0.781),
            baseline=True,
        ),
        _variant("above", reduction=cut, loss=gain, acc=0.765, acc_ci=(0.765, 0.747, 0.783)),
        _variant("below", reduction=cut, loss=gain, acc=0.70, acc_ci=(0.70, 0.68, 0.72)),
        _variant("clear", reduction=cut, loss=gain, acc=0.85, acc_ci=(0.85, 0.83, 0.87)),
        _variant("point-only", reduction=cut, loss=gain, acc=0.765),
    ]
    judged = {v.name: v for v in with_recommendations(variants, tolerance=0.01, majority=0.762)}
    assert judged["above"].recommendation == "flagged"
    assert "not distinguishable from always answering the majority class" in judged["above"].reason
    assert "[74.7%, 78.3%]" in judged["above"].reason
    assert judged["below"].recommendation == "flagged"
    assert "worse than always answering" in judged["below"].reason
    assert judged["clear"].recommendation.startswith("best")
    assert judged["point-only"].recommendation.startswith("recommended")  # no interval: the point
    base = judged["baseline"]
    assert base.recommendation == "baseline" and "not distinguishable" in base.reason
    clear_base = _variant(
        "baseline", reduction=None, loss=None, acc=0.85, acc_ci=(0.85, 0.83, 0.87), baseline=True
    )
    (b, _) = with_recommendations([clear_base, variants[3]], tolerance=0.01, majority=0.762)
    assert b.reason == "the recipe as given"


def test_a_dp_baseline_with_fault_injection_is_described_and_marked_void(tmp_path):
    """Red team: a zero-noise recipe's "ε = 2.00" went unmarked into tradeoff.json (no trace of
    the fault), the table and the report; its policy row said ε = ∞ and its weight-decay row
    hid that it keeps DP; the baseline was described "no DP: ε = ∞"."""
    import typer
    from typer.testing import CliRunner

    from miaudit.cli._tradeoff import tradeoff as tradeoff_cmd

    app = typer.Typer()
    app.command("tradeoff")(tradeoff_cmd)
    app.command("unused")(lambda: None)
    cfg = tmp_path / "fault.toml"
    cfg.write_text(
        '[data]\ndataset = "adult"\nmax_records = 400\n[model]\nkind = "torch-mlp"\nhidden = [8]\nepochs = 1\n'
        'batch_size = 64\ndp = { epsilon = 2.0, fault = "zero_noise" }\n'
        '[engine]\nworkers = 0\nthreads = 1\nprogress = false\n[audit]\nreferences = 1\nattacks = ["loss"]\nresamples = 40\n',
        encoding="utf-8",
    )
    out = tmp_path / "t"
    r = CliRunner().invoke(app, _small_tradeoff(cfg, out, "top-1"))
    assert r.exit_code == 0, r.output
    data = json.loads((out / "tradeoff.json").read_text())
    base, wd, pol = data["variants"]
    assert all(v["fault_injection"] == "zero_noise" for v in data["variants"])
    assert (
        data["notes"][0].startswith("WARNING: DP-SGD fault injection")
        and "VOID" in data["notes"][0]
    )
    assert "no DP" not in base["description"] and "DP-SGD, target ε = 2" in base["description"]
    assert "keeping the recipe's DP-SGD" in wd["description"]
    assert pol["epsilon"] == base["epsilon"] is not None  # the baseline's models, its ε
    said = " ".join(r.output.split())
    assert said.count("VOID") >= 3 and "∞" not in said.split("policy-top-1")[1].split("\n")[0]
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "VOID: fault injection on (zero_noise)" in html
    notes = json.loads((out / "variants" / "baseline" / "results.json").read_text())["notes"]
    assert notes[0].startswith("WARNING: DP-SGD fault injection was on (zero_noise)")


def test_a_dp_audit_of_another_recipe_is_refused_and_a_variants_is_not_the_baselines(tmp_path):
    """Red team: `tradeoff tiny.toml --dp-audit` of another recipe's dp_audit.json put "claimed
    ε = 2; audit PASSED" in the non-DP baseline's verdict, and its σ/q/steps (those of
    dp-audit's own 1,200 training records) stood beside models that trained on 600."""
    import typer
    from typer.testing import CliRunner

    from miaudit.audit import DpAuditDesign, dp_audit
    from miaudit.cli._tradeoff import tradeoff as tradeoff_cmd

    app = typer.Typer()
    app.command("tradeoff")(tradeoff_cmd)
    app.command("unused")(lambda: None)
    body = '[data]\ndataset = "adult"\nmax_records = 400\n[model]\nkind = "torch-mlp"\nhidden = [{h}]\nepochs = 1\nbatch_size = 64\n{dp}'
    rest = '[engine]\nworkers = 0\nthreads = 1\nprogress = false\n[audit]\nreferences = 1\nattacks = ["loss"]\nresamples = 40\n'
    for name, h, dp in (("dp", 8, "dp = { epsilon = 2.0 }\n"), ("plain", 8, ""), ("wide", 12, "")):
        (tmp_path / f"{name}.toml").write_text(body.format(h=h, dp=dp) + rest, encoding="utf-8")
    dp_audit(tmp_path / "dp.toml", tmp_path / "da", design=DpAuditDesign(canaries=100))
    audit_file = str(tmp_path / "da" / "dp_audit.json")
    args = ["--epsilons", "2", "--no-ghost-clipping", "--weight-decays", "", "--no-early-stopping"]
    args += ["--policies", "", "--dp-audit", audit_file]
    r = CliRunner().invoke(
        app, ["tradeoff", str(tmp_path / "wide.toml"), "--out", str(tmp_path / "w"), *args]
    )
    assert isinstance(r.exception, InputError), r.output  # exit 2 in main
    assert r.exception.field == "--dp-audit" and "hidden" in str(r.exception)
    assert not (tmp_path / "w").exists()
    r = CliRunner().invoke(
        app, ["tradeoff", str(tmp_path / "plain.toml"), "--out", str(tmp_path / "p"), *args]
    )
    assert r.exit_code == 0, r.output
    html = (tmp_path / "p" / "report.html").read_text(encoding="utf-8")
    assert "Differential privacy: claimed ε" not in html  # not in the baseline's verdict
    assert "This DP audit is of variant dp-eps2" in html and "not of the baseline" in html
    assert "dp-audit trains on its own split of the records" in html


def test_no_control_is_recommended_against_an_undetected_risk_or_by_one_of_many_intervals():
    """Red team: tiny.toml's wd0.01 was "best" and "recommended" for a risk reduction of
    +0.0006 AUC [+0.0002, +0.0011] (printed "[+0.000, +0.001]") on a baseline whose risk the
    report called "not detected", its 95 % interval one of 8 with no correction."""
    from miaudit.audit._tradeoff import signed_difference, with_recommendations
    from miaudit.metrics import Estimate

    base = _variant("baseline", reduction=None, loss=None, baseline=True)
    tiny = _variant("wd0.01", reduction=(0.0006, 0.0002, 0.0011), loss=(0.0, -0.002, 0.002))
    judged = with_recommendations(
        [base, tiny], tolerance=0.01, majority=0.5, baseline_detected=False
    )
    assert judged[1].recommendation == "not recommended"
    assert "detects no membership risk" in judged[1].reason
    assert "+0.0006 AUC [+0.0002, +0.0011]" in judged[1].reason
    # Above 0 on its own 95 % interval, not once it holds together over the 8 variants.
    alone = _variant(
        "wd0.01",
        reduction=(0.0006, 0.0002, 0.0011),
        loss=(0.0, -0.002, 0.002),
        lower=-0.0001,
        judged=8,
    )
    (_, v) = with_recommendations(
        [base, alone], tolerance=0.01, majority=0.5, baseline_detected=True
    )
    assert v.recommendation == "not recommended" and "over the 8 variants (Bonferroni)" in v.reason
    assert (
        signed_difference(Estimate(point=0.0006, lower=0.0002, upper=0.0011))
        == "+0.0006 [+0.0002, +0.0011]"
    )
    assert (
        signed_difference(Estimate(point=0.14, lower=0.12, upper=0.16)) == "+0.140 [+0.120, +0.160]"
    )


def test_the_decision_holds_together_over_the_variants(run):
    res, _ = run
    for v in res.variants[1:]:
        r = v.risk_reduction
        assert v.judged == 3 and r is not None and r.lower is not None
        assert v.risk_reduction_lower is not None and v.risk_reduction_lower <= r.lower + 1e-12


def test_nothing_is_recommended_against_a_baseline_that_cannot_be_judged():
    """The verdict's "not assessed" (too few replicates or records, inputs ranking non-members
    above members) holds for the trade-off's baseline too: no risk is measured to reduce."""
    from miaudit.audit._tradeoff import with_recommendations

    variants = [
        _variant("baseline", reduction=None, loss=None, baseline=True),
        _variant("wd", reduction=(0.20, 0.15, 0.25), loss=(0.0, -0.003, 0.004)),
    ]
    (_, wd) = with_recommendations(
        variants, tolerance=0.01, majority=0.5, baseline_unjudged="only 20 bootstrap replicates"
    )
    assert wd.recommendation == "not recommended"
    assert "cannot be judged (only 20 bootstrap replicates)" in wd.reason


def _mostly_majority(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """600 test records, ~78 % of them the majority class 0; the model answers 0 except on 40
    records, 30 of which it gets right (a true gain of +1.7 points over always answering 0)."""
    rng = np.random.default_rng(seed)
    label = (rng.random(600) >= 0.78).astype(np.int64)
    predict = np.zeros(600, dtype=np.int64)
    minority = np.flatnonzero(label == 1)
    right = rng.choice(minority, 30, replace=False)
    predict[right] = 1
    wrong = rng.choice(np.flatnonzero(label == 0), 10, replace=False)
    predict[wrong] = 1
    return predict == label, label


def _margin(correct: np.ndarray, label: np.ndarray, groups: np.ndarray, seed: int):
    """majority_margin against class 0, 200 replicates at 95 %, seeded by ``seed``."""
    from miaudit.audit._tradeoff import majority_margin

    return majority_margin(
        correct, label, groups, 0, n_resamples=200, confidence=0.95, rng=np.random.default_rng(seed)
    )


def test_majority_margin_is_the_paired_difference_on_the_same_records():

    correct, label = _mostly_majority(0)
    groups = np.arange(600)
    m = _margin(correct, label, groups, 1)
    # brute force: accuracy minus the share of label 0, the same 600 records
    assert m.point == pytest.approx(correct.mean() - (label == 0).mean(), abs=1e-12)
    assert m.point == pytest.approx((30 - 10) / 600, abs=1e-12)
    # records resampled together: its replicates are the differences, not two separate draws
    assert m.lower is not None and m.upper is not None and m.lower < m.point < m.upper


def test_flagged_is_decided_on_the_paired_margin_not_the_rate_as_a_constant():
    """Red team: the accuracy's own interval against the majority rate as a constant flagged
    82 of 200 such models (41 %) "not distinguishable from always answering the majority
    class", though the two rates move together and the paired interval lay above 0 in 200 of
    200. Here over 40 test sets: the old rule (no margin: the fall-back) must flag at least one
    (it flags 14 of the 40) and the paired rule none; a model that only answers the majority
    class is still flagged."""
    from miaudit.audit._tradeoff import with_recommendations
    from miaudit.metrics import Estimate, grouped_mean

    old = new = 0
    for seed in range(40):
        correct, label = _mostly_majority(seed)
        groups = np.arange(600)
        acc = grouped_mean(
            correct, groups, n_resamples=200, confidence=0.95, rng=np.random.default_rng(seed)
        )
        margin = _margin(correct, label, groups, seed)
        rate = float((label == 0).mean())
        v = _variant(
            "v",
            reduction=(0.1, 0.08, 0.12),
            loss=(0.0, -0.003, 0.004),
            acc=acc.point,
            acc_ci=(acc.point, acc.lower, acc.upper),
        )
        base = _variant("baseline", reduction=None, loss=None, baseline=True, acc=0.9)
        (_, unpaired) = with_recommendations([base, v], tolerance=0.01, majority=rate)
        (_, paired) = with_recommendations(
            [base, v.model_copy(update={"majority_margin": margin})], tolerance=0.01, majority=rate
        )
        old += unpaired.recommendation == "flagged"
        new += paired.recommendation == "flagged"
    assert old >= 1 and new == 0, (old, new)
    only = _variant("only", reduction=(0.1, 0.08, 0.12), loss=(0.0, -0.003, 0.004), acc=470 / 600)
    zero = Estimate(point=0.0, lower=0.0, upper=0.0)
    (_, flagged) = with_recommendations(
        [base, only.model_copy(update={"majority_margin": zero})], tolerance=0.01, majority=0.78
    )
    assert flagged.recommendation == "flagged"
    assert "+0.000 [+0.000, +0.000] against always answering the majority class" in flagged.reason


def test_a_model_differing_from_the_majority_on_a_handful_of_records_is_flagged():
    """Red team: a model answering the majority class on all but 4 of 2,400 test records (all
    4 right) had margin +0.0017 [+0.0004, +0.0033] and was not flagged on 20 of 20 seeds,
    though an exact test over those 4 gives p = 1/16. Below 30 such records the exact sign
    test decides."""
    from miaudit.audit._tradeoff import majority_sign_p, with_recommendations

    label = np.zeros(2400, dtype=np.int64)
    label[:600] = 1  # majority class 0: 75 %
    base = _variant("baseline", reduction=None, loss=None, baseline=True, acc=0.9)

    def judged(wins: int) -> object:
        correct = label == 0
        correct[:wins] = True  # right on `wins` minority records, the majority answer elsewhere
        groups = np.arange(2400)
        margin = _margin(correct, label, groups, 0)
        v = _variant("v", reduction=(0.1, 0.08, 0.12), loss=(0.0, -0.003, 0.004), acc=0.75)
        v = v.model_copy(
            update={
                "majority_margin": margin,
                "majority_sign_p": majority_sign_p(correct, label, groups, 0),
            }
        )
        return with_recommendations([base, v], tolerance=0.01, majority=0.75)[1]

    few = judged(4)
    assert few.majority_margin.lower > 0  # the interval alone would pass it
    assert few.majority_sign_p == pytest.approx(1 / 16)
    assert (
        few.recommendation == "flagged"
        and "exact sign test over them gives p = 0.0625" in few.reason
    )
    many = judged(40)  # 40 records, all won: the interval is read, and lies above 0
    assert many.majority_sign_p is None and many.recommendation.startswith("best")
