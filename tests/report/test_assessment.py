"""The assessment section, sample-size guidance, honest headlines and rounding, over every kind
of report: an attack (saved outputs), a reference audit, a trade-off folder and a DP-audit folder."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from miaudit.audit import DpAuditResult
from miaudit.cli import app
from miaudit.metrics import Estimate
from miaudit.report import (
    assess_frameworks,
    design_limits,
    format_estimate,
    interval_decimals,
    load_frameworks,
    render_dp_markdown,
    render_dp_report,
    render_markdown,
    write_folder_report,
)
from tests.report.conftest import dp_summary, variants

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "expected"
#: No report may claim that a system meets a text: it gives evidence, never a verdict of law.
BANNED = (
    "compliant",
    "compliance",
    "anonymous",
    "anonymised",
    "anonymized",
    "gdpr-ready",
    "certified",
    "conforms",
    "meets the requirements",
    "satisfies the",
)
FRAMEWORK_KEYS = {"edpb", "aisvs", "nist", "ico", "ai_act", "dpia"}


def _text(html: str) -> str:
    """Visible text of a report: tags and the style sheet removed."""
    html = re.sub(r"<style>.*?</style>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _banned_in(text: str) -> list[str]:
    low = text.lower()
    return [b for b in BANNED if re.search(rf"\b{re.escape(b)}\b", low)]


@pytest.fixture(scope="module")
def tradeoff_folder(outputs_run, tmp_path_factory):
    """A trade-off folder as ``miaudit tradeoff`` leaves it: tradeoff.json (the golden one) and
    its baseline's results under variants/baseline."""
    folder, _ = outputs_run
    root = tmp_path_factory.mktemp("tradeoff_folder")
    shutil.copy(GOLDEN / "tradeoff.json", root / "tradeoff.json")
    shutil.copytree(folder, root / "variants" / "baseline")
    return root


@pytest.fixture(scope="module")
def dp_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("dp_folder")
    shutil.copy(GOLDEN / "dp_audit.json", root / "dp_audit.json")
    return root


@pytest.fixture(scope="module")
def written(tradeoff_folder, dp_folder):
    """(trade-off, DP audit) reports as ``write_folder_report`` writes them."""
    return write_folder_report(tradeoff_folder), write_folder_report(dp_folder)


@pytest.fixture(scope="module")
def every_report(outputs_report, full_report, outputs_run, reference_run, written):
    """name → rendered text of every kind of report, HTML and Markdown."""
    _, attack_result = outputs_run
    _, audit_result = reference_run
    trade, dp = written
    return {
        "attack.html": outputs_report[1],
        "audit.html": full_report[1],
        "attack.md": render_markdown(attack_result),
        "audit.md": render_markdown(audit_result, tradeoff=variants(), dp=dp_summary()),
        "tradeoff.html": trade.path.read_text(encoding="utf-8"),
        "tradeoff.md": trade.markdown,
        "dp.html": dp.path.read_text(encoding="utf-8"),
        "dp.md": dp.markdown,
    }


def test_frameworks_file_is_versioned_and_complete():
    fw = load_frameworks()
    assert fw.version >= 1 and re.fullmatch(r"\d{4}-\d{2}-\d{2}", fw.reviewed)
    assert {f.key for f in fw.frameworks} == FRAMEWORK_KEYS
    for f in fw.frameworks:
        assert f.asks.endswith(".") and f.cannot and f.controls and f.reference and f.checked
    ai_act = next(f for f in fw.frameworks if f.key == "ai_act")
    assert "high-risk" in ai_act.scope and "15(5)" in ai_act.name
    assert "E2025" in next(f for f in fw.frameworks if f.key == "nist").edition


def test_no_report_claims_compliance(every_report):
    for name, text in every_report.items():
        visible = _text(text) if name.endswith(".html") else text
        assert _banned_in(visible) == [], name


def test_banned_phrase_check_catches_a_claim():
    assert _banned_in("This model is GDPR-ready and anonymous.") == ["anonymous", "gdpr-ready"]


def test_assessment_appears_in_every_report(every_report):
    names = [f.name for f in load_frameworks().frameworks]
    for name, text in every_report.items():
        for fw in names:
            assert fw.replace("&", "&amp;") in text or fw in text, (name, fw)
        if name.endswith(".html"):
            assert 'id="assessment"' in text and text.count('class="frame"') == len(names)


def test_rows_are_filled_from_the_runs_own_figures(reference_run):
    _, r = reference_run
    rows = {
        row.framework.key: row for row in assess_frameworks(r, dp=dp_summary(), tradeoff=variants())
    }
    strongest = r.strongest()
    edpb = " ".join(rows["edpb"].shows)
    # "any data subject": the worst case (the lowest FPR measured, the most exposed record) first
    assert edpb.startswith("Worst case")
    assert "most exposed record is flagged by" in edpb
    assert format_estimate(strongest.auc) in " ".join(rows["aisvs"].shows)
    assert "Claimed ε = 4" in " ".join(rows["nist"].shows)
    assert "weight decay 5e-4" in " ".join(rows["aisvs"].shows)  # a control measured side by side
    sides = {side for row in rows.values() for side, _ in row.controls}
    assert sides == {"training", "serving"}


def test_dp_report_assesses_the_claim_alone(dp_folder):
    d = DpAuditResult.read(dp_folder / "dp_audit.json")
    html, md = render_dp_report(d), render_dp_markdown(d)
    assert d.verdict in html and d.verdict in md
    assert html.count('class="frame"') == 6
    assert "lower bound ε ≥" in _text(html)


def test_tradeoff_folder_report_has_the_variants(tradeoff_folder, written):
    trade, _ = written
    assert trade.kind == "tradeoff" and trade.path == tradeoff_folder / "report.html"
    html = trade.path.read_text(encoding="utf-8")
    assert 'id="tradeoff"' in html and "dp-eps2" in html
    assert "| dp-eps2 |" in trade.markdown


def test_cli_report_renders_a_dp_folder_and_refuses_an_empty_one(dp_folder, tmp_path):
    from typer.testing import CliRunner

    out = tmp_path / "dp.html"
    res = CliRunner().invoke(app, ["report", str(dp_folder), "--out", str(out), "--markdown"])
    assert res.exit_code == 0, res.output
    assert out.is_file() and "#### Assessment" in res.stdout
    (tmp_path / "empty").mkdir()
    code, err = run_main(["report", str(tmp_path / "empty")])
    assert code == 2 and "holds none of" in err and len(err.strip().splitlines()) == 1


def run_main(argv: list[str]) -> tuple[int, str]:
    """(exit status, stderr) of the ``miaudit`` command as a user runs it."""
    import contextlib
    import io

    from miaudit.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, err.getvalue()


def test_sample_size_guidance(outputs_run):
    _, r = outputs_run
    d = design_limits(r)
    n0 = r.input.n_nonmembers
    assert d.smallest_observable_fpr == pytest.approx(1 / n0)
    assert d.smallest_reliable_fpr == pytest.approx(10 / n0)
    by_key = {lim.key: lim for lim in d.rates}
    assert by_key["tpr@0.1%fpr"].needs_nonmembers == 10_000
    assert by_key["tpr@1%fpr"].needs_nonmembers == 1_000
    for lim in d.rates:  # the guidance agrees with the results' own statuses
        statuses = {a.tpr_at_fpr[lim.key].status for a in r.attacks}
        assert lim.measurable == (statuses != {"not_measurable"})


def test_report_says_what_the_design_cannot_measure(outputs_run, outputs_report):
    _, r = outputs_run
    text = _text(outputs_report[1])
    n0 = r.input.n_nonmembers
    assert n0 < 1000  # the fixture is small: TPR at 0.1 % FPR needs 10,000
    assert (
        f"TPR at 0.1% FPR cannot be measured with {n0:,} non-member records: 10,000 would be needed"
        in text
    )
    assert "What this design can measure" in text


def test_headline_never_rests_on_an_unreliable_rate(outputs_run):
    """The level set by AUC must not claim how many members are found at 1 % FPR when that
    rate has no reliable interval ("finds at least 3 times more members")."""
    from miaudit.report import assess_risk

    _, result = outputs_run
    a = result.attacks[0].model_copy(
        update={
            "auc": Estimate(point=0.7, lower=0.65, upper=0.75),
            "tpr_at_fpr": {
                "tpr@1%fpr": Estimate(point=None, status="not_measurable", needs_nonmembers=1000)
            },
        }
    )
    risk = assess_risk(result.model_copy(update={"attacks": [a]}))
    assert risk.level == "moderate" and risk.metric == "AUC"
    assert "times more members" not in risk.explanation
    assert "AUC at least 0.60" in risk.explanation


@pytest.mark.parametrize(
    ("e", "pct", "text"),
    [
        (Estimate(point=0.62345, lower=0.6161, upper=0.6312), False, "0.623 [0.616, 0.631]"),
        (Estimate(point=0.62345, lower=0.57, upper=0.67), False, "0.62 [0.57, 0.67]"),
        (Estimate(point=0.0799294, lower=0.065, upper=0.096), True, "8.0% [6.5%, 9.6%]"),
        (Estimate(point=0.30, lower=0.18, upper=0.43), True, "30% [18%, 43%]"),
        (Estimate(point=7.99294), False, "7.99"),
        (Estimate(point=0.0, lower=-0.0001, upper=0.02), False, "0.000 [0.000, 0.020]"),
    ],
)
def test_numbers_rounded_to_what_their_interval_justifies(e, pct, text):
    assert format_estimate(e, pct=pct) == text


def test_interval_decimals_rule():
    assert interval_decimals(0.616, 0.631) == 3
    assert interval_decimals(0.5, 0.9) == 2  # width 0.4: first digit at 1 decimal, one more
    assert interval_decimals(0.5, 0.50001) == 4  # capped


def test_no_unrounded_number_in_any_report(every_report):
    """Six significant digits (7.99294) never reach a reader; geometry inside SVGs is exempt."""
    for name, text in every_report.items():
        if name.endswith(".html"):
            text = _text(re.sub(r"<svg.*?</svg>", " ", text, flags=re.S))
            text = re.sub(r"SHA-256 \S+", " ", text)
        long = [n for n in re.findall(r"\d+\.\d+", text) if _significant(n) > 4]
        assert long == [], (name, long[:5])


def _significant(number: str) -> int:
    """Significant digits of a decimal as printed: 7.99294 → 6, 0.00023 → 2, 0.620 → 3."""
    return len(number.replace(".", "").lstrip("0"))


def test_results_without_bounds_worth_the_name_are_not_assessed():
    """Red teams: with resamples = 0 a model with AUC 0.62 was "not detected — no attack's
    interval lies above chance" (there were none); with 1 replicate 90 of 100 models that leak
    nothing were "low"; with 5 non-members a pure-noise model was "moderate" (AUC 0.734
    [0.712, 0.751]); members coded the other way (loss AUC 0.20) were "not detected"."""
    from dataclasses import replace

    import numpy as np

    import miaudit
    from miaudit.report import assess_risk
    from tests.conftest import simulated_outputs

    o = simulated_outputs(n=1200, shift=1.0, seed=3)
    leaks = assess_risk(miaudit.attack(o, attacks=["loss"], n_resamples=50, seed=1, quiet=True))
    assert leaks.level in ("low", "moderate", "high")
    for b in (0, 10):
        risk = assess_risk(miaudit.attack(o, attacks=["loss"], n_resamples=b, seed=1, quiet=True))
        assert risk.level == "not assessed" and "at least 39" in risk.explanation
    strong = simulated_outputs(n=1200, shift=3.0, seed=3)
    keep = np.r_[np.flatnonzero(strong.member == 1), np.flatnonzero(strong.member == 0)[:10]]
    few = replace(
        strong,
        values=strong.values[keep],
        label=strong.label[keep],
        member=strong.member[keep],
        record_id=strong.record_id[keep],
        columns={},
    )
    # one model's outputs carry a permutation test, which judges small classes alone: the
    # level is then not graded above low (29 memorised members were "not assessed": red team)
    few_run = miaudit.attack(few, attacks=["loss"], n_resamples=50, seed=1, quiet=True)
    risk = assess_risk(few_run)
    assert risk.level == "low" and "10 non-members" in risk.explanation
    assert "not graded above low" in risk.explanation
    # without the test (results written before it) such classes are not assessed
    bare = few_run.model_copy(
        update={"family": few_run.family.model_copy(update={"permutation_p": None})}
    )
    risk = assess_risk(bare)
    assert risk.level == "not assessed" and "10 non-members" in risk.explanation
    flipped = replace(o, member=1 - o.member)
    risk = assess_risk(miaudit.attack(flipped, n_resamples=50, seed=1, quiet=True))
    assert risk.level == "not assessed" and "non-members above members" in risk.explanation


def test_one_attack_below_chance_beyond_noise_is_enough_to_doubt_the_inputs(outputs_run):
    """Red team: loss AUC 0.188 beside label-only attacks at [0.498, 0.500] (every attack below
    0.5 was required): no warning, "not detected", the gate passed. One attack below chance by
    its bound holding together over the attacks (Bonferroni) is enough; one that merely touches
    below 0.5 with its own interval is not (it happens by chance)."""
    from miaudit.report import assess_risk

    _, result = outputs_run
    a = result.attacks[0]
    inverted = a.model_copy(
        update={"name": "loss", "auc": Estimate(point=0.19, lower=0.17, upper=0.21)}
    )
    blind = a.model_copy(
        update={"name": "gap", "auc": Estimate(point=0.499, lower=0.49, upper=0.508)}
    )
    risk = assess_risk(result.model_copy(update={"attacks": [inverted, blind], "family": None}))
    assert risk.level == "not assessed" and "loss's AUC lies below 0.5" in risk.explanation
    # an attack reading a leaking model backwards beside one that finds it is no data error (a
    # perfect leak, loss AUC 1.000, had a label-free entropy attack at 0.40: red team)
    found = a.model_copy(update={"name": "gap", "auc": Estimate(point=0.9, lower=0.88, upper=0.92)})
    risk = assess_risk(result.model_copy(update={"attacks": [inverted, found], "family": None}))
    assert risk.level != "not assessed"
    chance = a.model_copy(
        update={"name": "loss", "auc": Estimate(point=0.485, lower=0.47, upper=0.499)}
    )
    risk = assess_risk(result.model_copy(update={"attacks": [chance, blind], "family": None}))
    assert risk.level == "not detected"


def test_only_attacks_reading_the_label_decide_whether_the_inputs_are_inverted(outputs_run):
    """Red team: swapped class columns invert the attacks that read the label's column and
    leave the label-free ones above 0.5, and an entropy attack above chance beyond noise vetoed
    the check: a loss AUC of 0.19 was judged ("low risk" possible on a leaking model). Entropy
    counts neither way: beside an inverted loss attack the results are not judged, and a
    perfect leak's entropy at 0.40 beside loss at 1.000 is still judged."""
    from miaudit.audit import why_not_judged

    _, result = outputs_run
    a = result.attacks[0]

    def attack(name, point, half):
        auc = Estimate(point=point, lower=point - half, upper=point + half)
        return a.model_copy(update={"name": name, "auc": auc})

    def judged(*attacks):
        return why_not_judged(result.model_copy(update={"attacks": list(attacks), "family": None}))

    why = judged(attack("loss", 0.19, 0.02), attack("entropy", 0.9, 0.02))
    assert why is not None and "loss's AUC lies below 0.5" in why
    assert judged(attack("loss", 1.0, 0.0005), attack("entropy", 0.4, 0.02)) is None
    assert judged(attack("loss", 0.19, 0.02), attack("gap", 0.9, 0.02)) is None


def test_the_most_exposed_group_is_named_only_when_it_stands_out_corrected():
    """Red team: the highest of 40 groups, with its own 95 % interval, lay above chance for 24 of
    30 models that leak nothing and was quoted as "the most exposed group" and as a reason to
    minimise data. It is named as exposed only when its bound holding together over the groups
    compared (Bonferroni) lies above chance."""
    from dataclasses import replace

    import numpy as np

    import miaudit
    from miaudit.report import assess_risk
    from miaudit.report._assessment import _groups
    from miaudit.report._controls import recommend
    from tests.conftest import simulated_outputs

    o = simulated_outputs(n=2000, shift=0.0, seed=11)
    region = np.asarray([f"r{i % 20:02d}" for i in range(2000)])
    null = miaudit.attack(
        replace(o, columns={"region": region}),
        attacks=["loss"],
        slices=["region"],
        n_resamples=100,
        seed=2,
        quiet=True,
    )
    text = _groups(null)
    assert text.startswith(
        "No group's loss AUC lies above chance once bounded together over the 20"
    )
    controls = recommend(null, assess_risk(null))
    minimise = next(c for c in controls if c.key == "minimisation")
    assert "group" not in minimise.because
    # one region whose members the model fits far better: it stands out, corrected
    values = o.values.copy()
    hot = (region == "r07") & (o.member == 1)
    values[hot, o.label[hot]] += 6.0
    leaky = miaudit.attack(
        replace(o, values=values, columns={"region": region}),
        attacks=["loss"],
        slices=["region"],
        n_resamples=100,
        seed=2,
        quiet=True,
    )
    assert _groups(leaky).startswith("Most exposed group: region = r07 (100 records)")


def test_a_small_group_above_chance_by_its_bound_alone_is_not_named():
    """Red team: groups of 20-odd members and non-members, whose bootstrap bounds are too
    narrow, stood out on 18 of 400 null models (4.5 %, nominal 2.5 %). Where the audit tested a
    group by relabelling its records (adjusted over its column's groups), the test must agree."""
    from miaudit.audit import SliceAttack, SliceResult
    from miaudit.metrics import Estimate
    from miaudit.report._controls import most_exposed_group

    def group(value: str, p: float | None) -> SliceResult:
        auc = Estimate(point=0.80, lower=0.75, upper=0.85)
        attack = SliceAttack(
            attack="loss", auc=auc, tpr_at_1pct_fpr=Estimate(point=None), auc_permutation_p=p
        )
        return SliceResult(column="region", value=value, n_records=44, attacks=[attack])

    text, stands = most_exposed_group([group("a", 0.2), group("b", 0.3)], "loss", 0.95)
    assert not stands and "not the permutation test over the groups of region (p = 0.2)" in text
    text, stands = most_exposed_group([group("a", 0.2), group("b", 0.004)], "loss", 0.95)
    assert stands and text.startswith("Most exposed group: region = b")
    assert "the permutation test over the groups of region agrees, p = 0.004" in text
    # no test (a large group, or results written before it): the bound alone, as before
    text, stands = most_exposed_group([group("a", None)], "loss", 0.95)
    assert stands and text.startswith("Most exposed group: region = a")


def test_html_control_assessment_and_markdown_name_the_same_most_exposed_group(tmp_path):
    """New-user walkthrough: the report's "Minimise the data" control and the Markdown summary
    read the --slices groups alone, its assessment the per-class rows too, so one folder named
    "sex = Male" in two places and "class = 1" in a third."""
    import re
    from dataclasses import replace

    import miaudit
    from miaudit.report._folders import write_folder_report
    from tests.simulate import subgroup_outputs

    o = subgroup_outputs(n=3000, seed=5)
    hot = (o.label == 2) & (
        o.member == 1
    )  # class 2's members fitted far better: the class leaks most
    values = o.values.copy()
    values[hot, 2] += 4.0
    o = replace(o, values=values)
    out = tmp_path / "run"
    miaudit.attack(o, slices=["group"], n_resamples=100, seed=1, out=out, quiet=True)
    written = write_folder_report(out)
    html = written.path.read_text()
    named = set(re.findall(r"Most exposed group: ([^,(]+)", html))
    named_md = set(re.findall(r"Most exposed group: ([^,(]+)", written.markdown))
    assert len(named) == 1 and named == named_md, (named, named_md)


def test_the_worst_case_says_when_its_zero_is_a_tie_at_the_top():
    """New-user walkthrough: a random forest's saturated outputs (~30 % of members at p = 1)
    made every TPR 0 below the tie's share of non-members, and every framework paragraph read
    it as "identifies 0.0% of members"; the note on the tie was only at the end of the page."""
    import numpy as np

    import miaudit
    from miaudit.data import ModelOutputs
    from miaudit.report._assessment import _worst_case

    rng = np.random.default_rng(3)
    n = 4000
    member = (np.arange(n) % 2).astype(np.int8)
    label = np.zeros(n, dtype=np.int64)
    logits = rng.normal(size=(n, 2))
    saturated = ((member == 1) & (rng.random(n) < 0.3)) | ((member == 0) & (rng.random(n) < 0.05))
    logits[saturated] = [30.0, -30.0]  # p = 1 on the label: one top score for all of them
    o = ModelOutputs.from_arrays(logits=logits, label=label, member=member, record_id=np.arange(n))
    result = miaudit.attack(o, attacks=["loss"], n_resamples=50, seed=0)
    tie = result.attack("loss").top_tie
    assert tie is not None and tie.nonmembers > 0.01
    text = _worst_case(result)
    assert "identifies 0.0%" in text and "share loss's top score, which no threshold splits" in text
