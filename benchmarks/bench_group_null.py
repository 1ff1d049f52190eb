"""How often the report names a "most exposed group" on models that leak nothing.

Null data: one model's saved outputs whose logits do not depend on membership (3 classes,
normal logits, half the records members), with a column splitting the records into G equal
groups of a few dozen records each. Each dataset is audited as ``miaudit attack`` audits it
(loss, confidence and modified entropy; 200 bootstrap replicates; ``--slices`` on the column)
and read by the report's rule (``miaudit.report._controls.most_exposed_group``: the group's
AUC bound held together over the groups compared by Bonferroni lies above 0.5 and, where the
audit tested the group by relabelling its records, adjusted over the column's groups, the test
agrees). The same results are also read with the permutation p-values removed, which is the
rule before the test (the bound alone), so the two rates are paired on the same datasets.

A red team measured the bound alone at 11 / 200 (10 groups of about 25 + 25) and 7 / 200 (20
groups of about 22 + 22): 4.5 % pooled against a nominal one-sided 2.5 %. The claim, fixed
before the full run: with the test the rate is not above 2.5 % by a one-sided binomial test at
1 % (per setting).
"""

from __future__ import annotations

import math

import numpy as np

from benchmarks._schema import BenchResult

CLAIM = (
    "On null models the report names a most exposed group (bound and permutation test) for no "
    "more than the nominal 2.5 % (one-sided binomial test at 1 %, per setting); the bound "
    "alone, as before the test, reported beside on the same datasets"
)

#: (groups, records per group): the red team's two settings.
SETTINGS = ((10, 50), (20, 44))
SIZES = {"full": {"trials": 400}, "small": {"trials": 12}}
NOMINAL = 0.025
ATTACKS = ["loss", "confidence", "modified_entropy"]


def _null_outputs(rng: np.random.Generator, groups: int, per: int):
    from miaudit.data import ModelOutputs

    n = groups * per
    member = np.zeros(n, dtype=np.int8)
    member[rng.permutation(n)[: n // 2]] = 1
    return ModelOutputs.from_arrays(
        logits=rng.normal(size=(n, 3)).astype(np.float32),
        label=rng.integers(0, 3, n),
        member=member,
        record_id=np.arange(n),
        columns={"region": np.array([f"g{i % groups:02d}" for i in range(n)])},
    )


def _named(result, *, with_test: bool) -> bool:
    from miaudit.report._controls import most_exposed_group

    slices = result.slices
    if not with_test:
        slices = [
            s.model_copy(
                update={
                    "attacks": [a.model_copy(update={"auc_permutation_p": None}) for a in s.attacks]
                }
            )
            for s in slices
        ]
    found = most_exposed_group(slices, result.exposure_attack or "", result.bootstrap.confidence)
    return bool(found and found[1])


def _p_above(k: int, n: int, p: float) -> float:
    """P(X ≥ k) for X ~ Binomial(n, p): small when k is too many for the rate p."""
    from scipy.stats import binom

    return float(binom.sf(k - 1, n, p))


def run(size: str) -> BenchResult:
    import miaudit

    trials = int(SIZES[size]["trials"])
    rows, figures, passed = [], {}, True
    for groups, per in SETTINGS:
        rng = np.random.default_rng([20261207, groups, per])
        alone = tested = 0
        for t in range(trials):
            result = miaudit.attack(
                _null_outputs(rng, groups, per),
                attacks=ATTACKS,
                slices=["region"],
                n_resamples=200,
                seed=t,
                quiet=True,
            )
            alone += _named(result, with_test=False)
            tested += _named(result, with_test=True)
        p = _p_above(tested, trials, NOMINAL)
        passed &= p > 0.01
        figures[f"g{groups}x{per}"] = {"bound_alone": alone, "with_test": tested, "trials": trials}
        figures[f"g{groups}x{per}"]["p"] = p
        rows.append(
            f"| {groups} × {per} (about {per // 2} + {per // 2}) | {alone} / {trials} ({alone / trials:.1%}) "
            f"| {tested} / {trials} ({tested / trials:.1%}) | {p:.3f} |"
        )
    table = "\n".join(
        [
            "| groups × records | named, the bound alone (before) | named, bound and permutation test | p (≤ 2.5 %) |",
            "|---|---|---|---|",
            *rows,
        ]
    )
    se = math.sqrt(NOMINAL * (1 - NOMINAL) / trials)
    return BenchResult(
        name="group_null",
        claim=CLAIM,
        figures=figures,
        table=table,
        passed=passed,
        notes=[
            f"{trials} null datasets per setting; attacks {', '.join(ATTACKS)}; 200 bootstrap "
            f"replicates; one binomial SE at the nominal rate: {se:.1%}.",
            "The permutation test relabels records within each group (999 relabellings), "
            "adjusted over the column's groups by the max-T method (miaudit.metrics."
            "group_auc_permutation_p); the rule splits its one-sided 2.5 % over the columns tested.",
        ],
    )
