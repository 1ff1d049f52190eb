"""miaudit.attack: shareable vs restricted outputs, pseudonyms, reproducibility."""

from __future__ import annotations

import json
import math
import os
import secrets
import stat

import numpy as np
import pandas as pd
import pydantic
import pytest

import miaudit
from miaudit.audit import AuditResult
from miaudit.errors import InputError
from tests.conftest import simulated_outputs


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    out = tmp_path_factory.mktemp("audit")
    o = simulated_outputs(n=3000, shift=1.5, seed=11)
    result = miaudit.attack(o, slices=["group"], n_resamples=100, seed=3, out=out, quiet=True)
    return o, out, result


def test_results_round_trip_and_schema(audited):
    _, out, result = audited
    text = (out / "results.json").read_text()
    back = AuditResult.from_json(text)
    assert back == result
    data = json.loads(text)
    assert data["schema_version"] == "miaudit.results/4"
    assert data["seed"] == 3 and data["bootstrap"]["replicates"] == 100
    assert {a["name"] for a in data["attacks"]} == set(miaudit.audit.DEFAULT_ATTACKS)
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        result.seed = 4  # frozen


def test_shareable_file_holds_no_membership_or_raw_ids(audited):
    o, out, _ = audited
    text = (out / "results.json").read_text()
    assert '"member"' not in text
    raw = {str(i) for i in o.record_id.tolist()}
    data = json.loads(text)
    shown = [r["pseudonym"] for r in data["most_exposed"]]
    assert len(shown) == 20 and all(p.startswith("p-") for p in shown)
    assert not raw & set(shown)
    assert stat.S_IMODE(os.stat(out / "results.json").st_mode) == 0o644


def test_restricted_files_are_0600_and_complete(audited):
    o, out, result = audited
    for name in ("scores.parquet", "pseudonym.key"):
        assert stat.S_IMODE(os.stat(out / name).st_mode) == 0o600
    scores = pd.read_parquet(out / "scores.parquet")
    assert len(scores) == o.n_records
    np.testing.assert_array_equal(scores["member"], o.member)
    # the key holder can link the top pseudonym back to its record
    from miaudit.audit._pseudonyms import pseudonymise

    key = (out / "pseudonym.key").read_bytes()
    top = scores.sort_values(f"score_{result.exposure_attack}", ascending=False, kind="stable")[
        "record_id"
    ].iloc[0]
    assert pseudonymise(np.array([top]), key)[0] == result.most_exposed[0].pseudonym


def test_same_seed_same_numbers_and_stable_pseudonyms(audited, tmp_path):
    o, out, result = audited
    again = miaudit.attack(
        o, slices=["group"], n_resamples=100, seed=3, out=out, overwrite=True, quiet=True
    )
    assert again.model_copy(update={"created_at": result.created_at}) == result


def test_existing_results_are_not_overwritten_silently(audited):
    o, out, _ = audited
    before = (out / "results.json").read_bytes()
    with pytest.raises(InputError, match="already exists"):
        miaudit.attack(o, out=out, n_resamples=0)
    assert (out / "results.json").read_bytes() == before


def test_raw_ids_only_when_asked(tmp_path):
    o = simulated_outputs(n=400)
    r = miaudit.attack(o, attacks=["loss"], n_resamples=0, raw_ids=True)
    assert r.pseudonymisation.raw_ids and r.most_exposed[0].pseudonym in {
        str(i) for i in o.record_id.tolist()
    }


def test_slices_and_comparisons(audited):
    _, _, result = audited
    values = {(s.column, s.value) for s in result.slices}
    assert values == {("group", "a"), ("group", "b")}
    comp = [c for c in result.comparisons if c.attack == "modified_entropy" and c.metric == "auc"]
    assert len(comp) == 1 and comp[0].baseline == "loss"
    # strongest attack's AUC is clearly above chance with shift 1.5
    assert result.strongest().auc.lower > 0.6
    # small groups: the exposure attack's AUC tested by relabelling, adjusted over the column
    for s in result.slices:
        for a in s.attacks:
            tested = a.attack == result.exposure_attack
            assert (a.auc_permutation_p is not None) == tested, (s.value, a.attack)
            if tested:  # a real leak in each group of ~1,000: the smallest p 999 relabellings give
                assert a.auc_permutation_p == pytest.approx(0.001)


def test_no_groups_split_is_published(tmp_path):
    """A red team read records' membership from groups' member counts: a one-record slice, then,
    with small groups hidden, two slice columns differing by one record, a slice against the
    class table, and a −0.0 value that fell in no group (the groups against the totals). Shared
    files give each group's size and, where it can be measured, its metrics; never its split."""
    from dataclasses import replace

    o = simulated_outputs(n=600, shift=1.5, seed=4)
    t = int(np.flatnonzero(o.member == 1)[0])
    x = np.where(np.arange(600) % 3 == 0, "a", "b").astype(object)
    y = x.copy()
    y[t] = "c" if x[t] == "b" else "b"  # the columns differ by record t alone
    z = np.where(np.arange(600) % 2 == 0, 0.0, 1.0)
    z[t] = -0.0
    o = replace(o, columns={**o.columns, "x": x.astype(str), "y": y.astype(str), "z": z})
    result = miaudit.attack(
        o, slices=["x", "y", "z"], n_resamples=20, out=tmp_path / "r", quiet=True
    )
    assert all(s.n_members is None and s.n_nonmembers is None for s in result.slices)
    sizes = {(s.column, s.value): s.size for s in result.slices}
    for column in ("x", "y", "z"):  # every record in exactly one group of each column
        assert sum(n for (c, _), n in sizes.items() if c == column) == 600
    assert sizes[("z", "0.0")] + sizes[("z", "1.0")] == 600
    small = [s for s in result.slices if s.size == 1]
    assert small and all(s.attacks == [] for s in small)  # too few to measure
    # ... and its value is not named (a rare quasi-identifier): counted as "other"
    rare = "(other: 1 value of fewer than 20 records each, not named)"
    assert ("y", "c") not in sizes and sizes[("y", rare)] == 1
    assert all(s.attacks for s in result.slices if s.size > 150)
    shared = (tmp_path / "r" / "results.json").read_text()
    assert '"n_members": null' in shared and '"n_members": 0' not in shared


def test_missing_slice_values_are_their_own_group():
    """Red team: a numeric column with 30 % NaN was cut at NaN quartiles into "age=≤nan" (the
    known values) and "age=>nan" (the missing ones)."""
    from dataclasses import replace

    o = simulated_outputs(n=600, shift=1.5, seed=4)
    rng = np.random.default_rng(0)
    age = rng.integers(18, 90, 600).astype(float)
    age[rng.random(600) < 0.3] = np.nan
    few = np.where(np.arange(600) % 2 == 0, 1.0, 2.0)
    few[:100] = np.nan
    o = replace(o, columns={**o.columns, "age": age, "few": few})
    result = miaudit.attack(o, slices=["age", "few"], n_resamples=0, quiet=True)
    sizes = {(s.column, s.value): s.size for s in result.slices}
    assert sizes[("age", "missing")] == int(np.isnan(age).sum())
    assert sum(n for (c, _), n in sizes.items() if c == "age") == 600
    assert not any("nan" in v for _, v in sizes)
    q1 = np.quantile(age[~np.isnan(age)], 0.25)
    assert sizes[("age", f"≤{q1:.4g}")] == int((age <= q1).sum())
    assert sizes == {**sizes, ("few", "1.0"): 250, ("few", "2.0"): 250, ("few", "missing"): 100}


def test_the_class_table_gives_sizes_and_measures_only_large_enough_groups():
    from miaudit.report._scores import class_breakdown

    label = np.repeat([0, 1, 2], [90, 49, 1])
    member = np.concatenate([np.arange(90) < 50, np.arange(49) < 19, [True]]).astype(np.int8)
    score = np.random.default_rng(0).normal(size=140)
    out = class_breakdown(member, label, {"loss": score}, attacks=["loss"], n_resamples=20)
    assert [g.size for g in out] == [90, 49, 1] and [g.n_records for g in out] == [90, 49, 1]
    assert all(g.n_members is None and g.n_nonmembers is None for g in out)
    assert [bool(g.attacks) for g in out] == [True, False, False]


def test_bad_attack_and_slice_names():
    o = simulated_outputs(n=100)
    with pytest.raises(InputError, match="unknown attack 'lira2'"):
        miaudit.attack(o, attacks=["lira2"])
    with pytest.raises(InputError, match="no column 'age'"):
        miaudit.attack(o, slices=["age"])


def test_most_exposed_ties_do_not_follow_row_order():
    """All records tied: the list (and percentiles) must not depend on how rows were written."""
    from miaudit.data import ModelOutputs

    n = 200
    member = np.r_[np.ones(n // 2, int), np.zeros(n // 2, int)]  # members written first
    probs = np.tile([1.0, 0.0], (n, 1))
    ids = np.arange(n)
    key = secrets.token_bytes(32)
    a = miaudit.attack(
        ModelOutputs.from_arrays(probs=probs, label=np.zeros(n, int), member=member, record_id=ids),
        attacks=["loss"],
        n_resamples=0,
    )
    perm = np.random.default_rng(0).permutation(n)
    from miaudit.audit._attack import run_attacks

    r1 = run_attacks(
        ModelOutputs.from_arrays(probs=probs, label=np.zeros(n, int), member=member, record_id=ids),
        attacks=["loss"],
        n_resamples=0,
        pseudonym_key=key,
    )
    r2 = run_attacks(
        ModelOutputs.from_arrays(
            probs=probs[perm], label=np.zeros(n, int), member=member[perm], record_id=ids[perm]
        ),
        attacks=["loss"],
        n_resamples=0,
        pseudonym_key=key,
    )
    assert (
        r1.result.most_exposed == r2.result.most_exposed == []
    )  # nobody stands out: naming some would be arbitrary
    assert any(n.startswith("most_exposed: none listed: 200 records") for n in r1.result.notes)
    assert a.attack("loss").ppv.point is None or np.isfinite(a.attack("loss").ppv.point)


def test_most_exposed_ranks_by_score_then_evidence_never_by_pseudonym():
    from miaudit.audit._attack import exposure_ranking, most_exposed

    score = np.array([5.0, 5.0, 5.0, 4.0, 3.0, 3.0, 1.0])
    evidence = np.array([0.2, 0.9, 0.2, 0.0, 0.5, 0.5, 1.0])
    assert exposure_ranking(score, evidence, 3) == [
        (1, 1),
        (0, 2),
        (2, 2),
    ]  # 0 and 2 tie in both: one rank
    assert [r for _, r in exposure_ranking(score, evidence, 6)] == [1, 2, 2, 4, 5, 5]
    # A tie straddling the cut is shown whole when the list stays within 2 × count, else left out.
    assert [i for i, _ in exposure_ranking(score, evidence, 5)] == [1, 0, 2, 3, 4, 5]
    assert exposure_ranking(np.ones(50), np.zeros(50), 20) == []
    # A tie of 20 or more is never listed, even where the list could hold it whole: results.json
    # gives a top tie that large its member/non-member split (top_tie)
    assert exposure_ranking(np.r_[np.ones(25), np.zeros(75)], np.zeros(100), 20) == []
    assert len(exposure_ranking(np.r_[np.ones(19), np.zeros(81)], np.zeros(100), 20)) == 19
    # Two keys give different pseudonyms but the same ranks for the same records.
    ids = np.arange(7)
    a = most_exposed(score, ids, secrets.token_bytes(32), evidence=evidence, count=3, raw_ids=True)
    b = most_exposed(score, ids, secrets.token_bytes(32), evidence=evidence, count=3, raw_ids=True)
    assert next((e.pseudonym, e.rank) for e in a) == ("1", 1) and {
        (e.pseudonym, e.rank) for e in a
    } == {(e.pseudonym, e.rank) for e in b}
    assert a[1].ties == 2


def test_no_record_listed_by_pseudonym_beside_a_split_that_tells_its_membership():
    """Red team: 25 members saturate (one-hot probabilities, as an overfit float32 model gives its
    training records), no non-member does. results.json listed all 25 at rank 1 and said, in
    top_tie, that 0 % of non-members share that score: every listed pseudonym a member."""
    from miaudit.data import ModelOutputs

    rng = np.random.default_rng(5)
    n = 2000
    label = rng.integers(0, 3, n)
    member = (np.arange(n) % 2 == 0).astype(int)
    probs = rng.dirichlet(np.ones(3), n) * 0.999 + 0.0003  # nothing reaches 1.0 ...
    members = np.flatnonzero(member == 1)[:25]
    probs[members] = np.eye(3)[label[members]]  # ... but 25 saturated members
    saturated = ModelOutputs.from_arrays(
        probs=probs, label=label, member=member, record_id=np.arange(n)
    )
    r = miaudit.attack(saturated, attacks=["loss"], n_resamples=20, seed=1)
    tie = r.attack("loss").top_tie
    assert tie is not None and tie.nonmembers == 0.0 and tie.members > 0
    assert r.most_exposed == []
    assert any("would tell their membership" in n for n in r.notes)


def test_attacks_see_only_what_the_policy_exposes():
    o = simulated_outputs(n=2000, shift=1.5, seed=21)
    full = miaudit.attack(o, attacks=["loss", "gap"], n_resamples=0)
    rounded = miaudit.attack(o, attacks=["loss", "gap"], n_resamples=0, policy="round:1")
    labels = miaudit.attack(o, attacks=["gap"], n_resamples=0, policy="label-only")
    # coarser outputs cannot help the loss attack; the gap attack needs only the label
    assert rounded.attack("loss").auc.point <= full.attack("loss").auc.point + 1e-12
    assert labels.attack("gap").auc == full.attack("gap").auc
    assert any("label-only" in n for n in labels.notes)
    with pytest.raises(InputError, match="cannot run under the label-only policy"):
        miaudit.attack(o, attacks=["loss"], policy="label-only")
    with pytest.raises(InputError, match="--policy"):
        miaudit.attack(o, attacks=["loss"], policy="top-zero")


@pytest.mark.parametrize("policy", ["top-1", "round:2"])
def test_probabilities_off_a_sum_of_1_are_read_normalised_under_a_policy(policy):
    """Rows summing to 1 within PROB_SUM_TOL are accepted, and the signals without a policy
    read them normalised, but the output policies read them as given: a row's confidence,
    entropy and rounding moved with its sum. Rows scaled by 1.04, or each by its own factor
    in [0.96, 1.04] (rounded outputs), give the normalised rows' signals and AUCs."""
    from miaudit.audit._attack import _check_attacks, _signals_under_policy
    from miaudit.data import ModelOutputs
    from miaudit.signals import softmax

    o = simulated_outputs(n=2000, shift=1.5, seed=21)
    p = softmax(o.values)
    factor = np.random.default_rng(0).uniform(0.96, 1.04, size=(len(p), 1))

    def outputs(probs):
        return ModelOutputs.from_arrays(probs=probs, label=o.label, member=o.member)

    attacks = ["loss", "confidence", "entropy", "modified_entropy"]
    specs = _check_attacks(attacks)
    needed = ("loss", "confidence", "entropy", "modified_entropy")
    honest = _signals_under_policy(outputs(p), policy, specs, needed, seed=1)
    scaled = _signals_under_policy(outputs(p * 1.04), policy, specs, needed, seed=1)
    for name in needed:
        np.testing.assert_allclose(scaled[name], honest[name], rtol=1e-12, atol=1e-12)
    auc = {
        a.name: a.auc.point
        for a in miaudit.attack(outputs(p), attacks=attacks, n_resamples=0, policy=policy).attacks
    }
    uneven = miaudit.attack(outputs(p * factor), attacks=attacks, n_resamples=0, policy=policy)
    assert {a.name: a.auc.point for a in uneven.attacks} == auc


def test_the_top_ties_split_is_given_only_for_a_tie_of_many():
    """A red team read the single top record's membership from results.json's top_tie; a tie
    of fewer than 20 records gets none, a larger one its shares (aggregates)."""
    from miaudit.audit._attack import top_tie

    member = np.array([1, 0] * 50)
    score = np.arange(100.0)
    assert top_tie(member, score) is None
    score[:30] = 1000.0  # 15 members and 15 non-members tie at the top
    tie = top_tie(member, score)
    assert tie is not None and (tie.records, tie.members, tie.nonmembers) == (0.3, 0.3, 0.3)


def test_the_console_marks_tprs_a_top_score_tie_hides_and_says_the_policy():
    """A new user's walk: under a coarse policy about 45 % of non-members tied at the top score
    and the terminal showed "0% [0, 0]" with no word on the tie or the policy."""
    from rich.console import Console

    from miaudit.cli._summary import print_summary

    o = simulated_outputs(n=2000, shift=1.5, seed=5)
    result = miaudit.attack(o, policy="label-only", attacks=["gap"], n_resamples=20, seed=1)
    console = Console(record=True, width=240)
    print_summary(result, console)
    said = console.export_text()
    assert "(tie)" in said and "note: ties:" in said
    assert "note: Attacks saw only what the label-only output policy exposes." in said
    plain = miaudit.attack(o, n_resamples=20, seed=1)
    console = Console(record=True, width=240)
    print_summary(plain, console)
    rows = {
        line.split("│")[1].strip(): line
        for line in console.export_text().splitlines()
        if line.count("│") > 3
    }
    for a in plain.attacks:  # marked exactly where a tie at the top hides a TPR
        assert ("(tie)" in rows[a.name]) == (a.top_tie is not None and a.top_tie.nonmembers > 0.001)


def test_every_attack_below_chance_is_a_warning_not_a_result() -> None:
    """A red team's flipped labels (or rows out of order, or declared members that are not the
    training rows) ranked non-members above members: loss AUC 0.438 [0.383, 0.484], no word.
    Every attack's interval below 0.5 now warns, naming what to check; one below does not."""
    from miaudit.audit import run_attacks
    from miaudit.data import ModelOutputs

    rng = np.random.default_rng(5)
    n = 600
    member = (np.arange(n) % 2).astype(np.int64)
    label = rng.integers(0, 2, n)
    true_logit = rng.normal(size=n) - 1.0 * member  # members fit worse: never from training
    logits = np.zeros((n, 2), dtype=np.float32)
    logits[np.arange(n), label] = true_logit
    outputs = ModelOutputs.from_arrays(label=label, member=member, logits=logits)
    run = run_attacks(outputs, attacks=["loss", "confidence"], n_resamples=50)
    assert all(a.auc.upper is not None and a.auc.upper < 0.5 for a in run.result.attacks)
    # (its argmax is wrong on 2 of 3 records, so the column-order check warns beside it)
    (warning,) = [n for n in run.result.notes if n.startswith("WARNING") and "below 0.5" in n]
    assert "below 0.5" in warning and "sorted order of the label values" in warning
    fair = ModelOutputs.from_arrays(label=label, member=member, logits=-logits)
    assert not [
        n
        for n in run_attacks(fair, attacks=["loss"], n_resamples=50).result.notes
        if n.startswith("WARNING")
    ]


def test_a_groups_published_figures_do_not_give_its_member_count():
    """Red team: results.json's full-precision slice AUC, U / (n1·n0), and TPR, k / n1, left one
    member count consistent with both, so two slice columns differing by record 0 alone gave
    its membership (4 of 4). Published to 3 decimals, many counts fit every figure."""
    from miaudit.data import ModelOutputs

    rng = np.random.default_rng(1)
    n = 8000
    member = (rng.random(n) < 0.5).astype(np.int8)
    y = rng.integers(0, 3, n)
    z = rng.normal(size=(n, 3))
    z[np.arange(n), y] += 1 + 0.5 * member
    home = np.where(rng.random(n) < 0.5, "north", "south")
    home[0] = "north"
    work = home.copy()
    work[0] = "south"  # record 0 lives north, works south
    o = ModelOutputs.from_arrays(
        logits=z.astype(np.float32),
        label=y,
        member=member,
        record_id=np.arange(n),
        columns={"home": home, "work": work},
    )
    result = miaudit.attack(o, attacks=["loss"], slices=["home", "work"], n_resamples=20)
    for s in result.slices:
        size = s.size
        candidates = set(range(20, size - 19))
        for a in s.attacks:
            for e in (a.auc, a.tpr_at_1pct_fpr):
                for v in (e.point, e.lower, e.upper):
                    assert v is None or v == round(v, 3)
            auc, tpr = a.auc.point, a.tpr_at_1pct_fpr.point
            # counts n1 for which some U and k round to the published figures
            candidates = {
                k
                for k in candidates
                if math.floor((auc + 5e-4) * k * (size - k))
                >= math.ceil((auc - 5e-4) * k * (size - k))
                and (tpr is None or math.floor((tpr + 5e-4) * k) >= math.ceil((tpr - 5e-4) * k))
            }
        assert len(candidates) > 20, (s.value, len(candidates))
