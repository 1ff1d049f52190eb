"""Issue 16's null suite: every attack through every path on targets with no membership signal.

Each seed builds synthetic outputs in which the audited model's outputs do not depend on its
membership: every model's logits are a per-record difficulty on the true class plus independent
noise; the reference models leak (their members' true-class logit is larger by ``LEAK``), as
trained models do, while the audited models' "members" are a coin flip or a keep row their
outputs ignore. Nothing about the target can be learned, so an honest interval for AUC contains
0.5 in ≥ 95 % of seeds and a per-record p-value is uniform.

Paths (each with every attack it runs):

- ``attack``: one model's saved outputs, every output attack (:func:`miaudit.audit._attack.run_attacks`);
- ``attack --policy P`` for P in top-1, round:2, label-only, noise:0.05 (what a guarded API exposes);
- ``audit`` (complementary plan, k = 2, and k = 1): leave-one-model-out, every audit attack
  (:func:`miaudit.audit._reference_audit.attack_store`);
- ``audit`` with an ``ExternalTarget`` (a model trained elsewhere, the references from the plan);
- the other plan kinds, ``independent`` halves and ``user`` (inclusion 0.3), every reference attack
  leave-one-model-out with the default references;
- ``tradeoff``'s policy rows: the attacks it runs through a :class:`~miaudit.attacks.LocalOracle`
  (exposed threshold scores, the gap query and noise robustness under label-only) on a fixed
  random classifier, pooled over targets as the trade-off pools them (its training-variant rows
  are ``audit`` runs);
- ``check-record``: per-record p-values of a target with no signal, records whose OUT variances
  differ several-fold (σ² inverse-gamma across records); and, on trained models (full size), the
  non-members of real MLPs trained on digits with k = 8 reference pairs — each record is checked
  against one model that did not train on it (chosen at random), so that no record counts twice.

Criterion. For each (path, attack): a one-sided binomial test of "coverage of AUC 0.5 by the 95 %
interval is ≥ 0.95" at 0.05 / (number of pairs) (Bonferroni); a failure is coverage significantly
*below* nominal; coverage significantly above is reported, not failed. For check-record: in each
decile of the records' sample OUT variance, a one-sided binomial test that the rate of p < α is
not above α (α = 0.05 and 0.01), at 0.05 / (20 · the number of settings).
"""

from __future__ import annotations

import multiprocessing as mp
import os
from dataclasses import dataclass

import numpy as np

from benchmarks._schema import BenchResult

CLAIM = (
    "null suite: on targets with no membership signal, every (path, attack)'s 95 % AUC interval covers 0.5 at no less than the nominal rate "
    "(one-sided binomial, Bonferroni over pairs), and check-record's p-values are uniform in every decile of the records' OUT variance"
)
POLICIES = ("top-1", "round:2", "label-only", "noise:0.05")


@dataclass(frozen=True)
class Size:
    seeds: int
    records: int
    population: int
    replicates: int
    check_records: int
    check_seeds: int
    #: Trained digits plans for the real-model check-record deciles (0: skipped).
    real_plans: int = 0


SIZES = {
    "test": Size(
        seeds=3, records=160, population=60, replicates=60, check_records=2000, check_seeds=1
    ),
    "small": Size(
        seeds=20, records=300, population=100, replicates=100, check_records=3000, check_seeds=1
    ),
    "full": Size(
        seeds=200,
        records=400,
        population=150,
        replicates=200,
        check_records=4000,
        check_seeds=10,
        real_plans=6,
    ),
}


def _logits(
    rng: np.random.Generator, models: int, n: int, classes: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """(models, n, classes) logits carrying no membership: difficulty on the true class + noise."""
    y = rng.integers(0, classes, n)
    difficulty = rng.normal(1.0, 1.5, n)
    lg = rng.normal(size=(models, n, classes))
    lg[:, np.arange(n), y] += difficulty
    return lg.astype(np.float32), y


def _store(rng: np.random.Generator, kind: str, k: int, n: int, n_pop: int):
    from miaudit.data import SignalsStore

    total = n + n_pop
    pop = np.zeros(total, dtype=bool)
    pop[rng.permutation(total)[:n_pop]] = True
    if kind == "complementary":
        half = rng.random((k + 1, total)) < 0.5
        keep = np.empty((2 * k + 2, total), dtype=bool)
        keep[0::2], keep[1::2] = half, ~half
    else:
        # Independent halves / a user matrix (inclusion 0.3) of 16 models, redrawn for the records
        # whose references would lack an IN or an OUT model (LiRA needs both).
        rate = 0.5 if kind == "independent" else 0.3
        keep = rng.random((16, total)) < rate
        while True:
            bad = (keep.sum(axis=0) < 2) | ((~keep).sum(axis=0) < 2)
            if not bad.any():
                break
            keep[:, bad] = rng.random((16, int(bad.sum()))) < rate
    keep[:, pop] = False
    lg, y = _logits(rng, keep.shape[0], total)
    # The references leak (their members get a larger true-class logit, as trained models do);
    # the audited models — the first TARGETS, a complementary pair in that plan — do not.
    lg[TARGETS:, np.arange(total), y] += LEAK * keep[TARGETS:]
    return SignalsStore.from_arrays(
        logits=lg, label=y, keep=keep, population=pop, record_id=np.arange(total)
    )


#: How much the reference models' members stand out (true-class logit); the targets: not at all.
LEAK = 1.0
#: Models that take a turn as the target in the leave-one-model-out paths (pooled, as an audit
#: pools them); two keep the suite's cost (the shadow attacks' classifiers) within budget.
TARGETS = 2


def _cfg(attacks: list[str], k: int, replicates: int, seed: int):
    from miaudit.audit import parse_audit_config

    return parse_audit_config(
        {
            "seed": seed,
            "data": {"dataset": "digits"},
            "audit": {
                "references": k,
                "attacks": attacks,
                "resamples": replicates,
                "targets": TARGETS,
            },
        }
    )


def _covers(result) -> dict[str, bool]:
    return {
        a.name: a.auc.lower is not None and a.auc.lower <= 0.5 <= a.auc.upper
        for a in result.attacks
    }


def _covers_ev(ev) -> dict[str, bool]:
    out = {}
    for name in ev.names:
        e = ev.estimate(name, "auc")
        out[name] = e.lower is not None and e.lower <= 0.5 <= e.upper
    return out


def _features(store, seed: int) -> np.ndarray:
    """Features of the store's records (ids 0…n−1), for QMIA: their own random stream."""
    rng = np.random.default_rng(np.random.SeedSequence([20261206, seed, 0xFEA7]))
    return rng.normal(size=(store.n_records, 3))


def _qmia_from_outputs(lg: np.ndarray, y: np.ndarray, member: np.ndarray, seed: int, size: Size):
    """QMIA from saved outputs (``miaudit attack --population``): the audited model's outputs on
    population records drawn like the audited ones, features with no bearing on membership."""
    from miaudit.audit._attack import run_attacks
    from miaudit.data import ModelOutputs, PopulationOutputs

    rng = np.random.default_rng(np.random.SeedSequence([20261206, seed, 0x9019]))
    pop_lg, pop_y = _logits(rng, 1, size.population)
    x, x_pop = rng.normal(size=(y.size, 3)), rng.normal(size=(size.population, 3))
    outputs = ModelOutputs.from_arrays(
        label=y, member=member, logits=lg.astype(np.float64), features=x
    )
    pop = PopulationOutputs(
        pop_lg[0].astype(np.float64), "logits", pop_y, np.arange(size.population), x_pop, False
    )
    return run_attacks(
        outputs, attacks=["qmia"], n_resamples=size.replicates, seed=seed, population=pop
    ).result


def one_seed(args: tuple[int, Size]) -> dict[str, dict[str, bool]]:
    """Does each (path, attack)'s 95 % AUC interval contain 0.5, for one seed."""
    seed, size = args
    from miaudit.attacks import (
        OUTPUT_ATTACKS,
        LiraAttack,
        LocalOracle,
        MlLeaksAttack,
        RmiaAttack,
        ShadowAttack,
        exposed_threshold_scores,
        gap_query_attack,
        leave_one_model_out_each,
        noise_robustness_attack,
    )
    from miaudit.audit import ExternalTarget
    from miaudit.audit._attack import run_attacks
    from miaudit.audit._config import AUDIT_ATTACKS
    from miaudit.audit._reference_audit import _with_external_target, attack_store
    from miaudit.data import ModelOutputs
    from miaudit.metrics import evaluate

    rng = np.random.default_rng(np.random.SeedSequence([20261206, seed]))
    n, reps = size.records, size.replicates
    out: dict[str, dict[str, bool]] = {}

    # attack: saved outputs of one model, random membership
    lg, y = _logits(rng, 1, n)
    outputs = ModelOutputs.from_arrays(
        label=y, member=(rng.random(n) < 0.5).astype(np.int8), logits=lg[0].astype(np.float64)
    )
    out["attack"] = _covers(
        run_attacks(outputs, attacks=OUTPUT_ATTACKS, n_resamples=reps, seed=seed).result
    )
    # attack --population: QMIA fitted on the same model's outputs on population records, with
    # features (drawn from their own stream, so that the other paths' draws are unchanged)
    out["attack --population"] = _covers(_qmia_from_outputs(lg[0], y, outputs.member, seed, size))
    for policy in POLICIES:
        from miaudit.attacks import threshold_attacks_under

        allowed = threshold_attacks_under(policy)
        names = [*allowed, *(f"{a}_by_class" for a in allowed)]
        out[f"attack --policy {policy}"] = _covers(
            run_attacks(outputs, attacks=names, n_resamples=reps, seed=seed, policy=policy).result
        )

    # audit: leave-one-model-out on a complementary plan, k = 2 and k = 1
    for k in (2, 1):
        store = _store(rng, "complementary", k, n, size.population)
        out[f"audit (k = {k})"] = _covers(
            attack_store(
                store, _cfg(list(AUDIT_ATTACKS), k, reps, seed), features=_features(store, seed)
            ).result
        )

    # audit with an external target: a model trained elsewhere, random members among the pool
    store = _store(rng, "complementary", 2, n, size.population)
    ext_lg = rng.normal(size=(store.n_records, 3))
    ext_lg[np.arange(store.n_records), store.label] += rng.normal(1.0, 1.5, store.n_records)
    members = store.record_id[(rng.random(store.n_records) < 0.5) & ~store.population]
    ext = _with_external_target(store, ExternalTarget(ext_lg, members))
    out["audit + ExternalTarget"] = _covers(
        attack_store(
            ext,
            _cfg(list(AUDIT_ATTACKS), 2, reps, seed),
            external_target=True,
            features=_features(store, seed)[ext.record_id],
        ).result
    )

    # the other plan kinds: every reference attack, default references, pooled over the targets
    attacks = {
        "lira_online": LiraAttack("online"),
        "lira_offline": LiraAttack("offline"),
        "rmia_online": RmiaAttack("online"),
        "rmia_offline": RmiaAttack("offline"),
        "shadow": ShadowAttack(seed=seed),
        "ml_leaks": MlLeaksAttack(seed=seed),
    }
    for kind in ("independent", "user"):
        store = _store(rng, kind, 0, n, size.population)
        paired = leave_one_model_out_each(store, attacks, targets=range(TARGETS))
        first = next(iter(paired.values()))
        groups = np.tile(first.records, TARGETS)
        ev = evaluate(
            first.member.reshape(-1).astype(np.int8),
            {a: p.scores.reshape(-1) for a, p in paired.items()},
            n_resamples=reps,
            groups=groups,
            rng=seed,
        )
        out[f"plan {kind}"] = _covers_ev(ev)

    # tradeoff's policy rows: a fixed random classifier behind an oracle, 4 targets pooled
    d = 6
    w = rng.normal(size=(d, 3))
    x = rng.normal(size=(n, d))
    yq = rng.integers(0, 3, n)

    def predict(v: np.ndarray) -> np.ndarray:
        z = v @ w
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    for policy in ("top-1", "label-only"):
        per: dict[str, list[np.ndarray]] = {}
        member = []
        for t in range(4):
            oracle = LocalOracle(predict, policy, rng=np.random.default_rng([seed, t]))
            scores = exposed_threshold_scores(oracle.query(x), yq)
            if policy == "label-only":
                scores["gap"] = gap_query_attack(oracle, x, yq).scores
                scores["noise_robustness"] = noise_robustness_attack(
                    oracle, x, yq, sigma=0.5, n_draws=20, rng=np.random.default_rng([seed, t, 1])
                ).scores
            for name, s in scores.items():
                per.setdefault(name, []).append(np.asarray(s, dtype=np.float64))
            member.append(rng.random(n) < 0.5)
        ev = evaluate(
            np.concatenate(member).astype(np.int8),
            {k2: np.concatenate(v) for k2, v in per.items()},
            n_resamples=reps,
            groups=np.tile(np.arange(n), 4),
            rng=seed,
        )
        out[f"tradeoff policy {policy}"] = _covers_ev(ev)
    return out


def check_record_null(size: Size, seed: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(hits of p < 0.05, records) and (hits of p < 0.01, records) per decile of the OUT variance."""
    from miaudit.audit._check_record import check_records
    from miaudit.data import SignalsStore

    rng = np.random.default_rng(np.random.SeedSequence([20261206, seed, 0xC4EC]))
    n, k = size.check_records, 4
    half = rng.random((k + 1, n)) < 0.5
    keep = np.empty((2 * k + 2, n), dtype=bool)
    keep[0::2], keep[1::2] = half, ~half
    sd = np.sqrt(1.0 / rng.gamma(3.0, 1.0 / 3.0, n))
    phi = rng.normal(0.0, 2.0, n) + sd * rng.normal(size=(2 * k + 2, n))
    store = SignalsStore.from_arrays(
        logits=np.stack([phi, np.zeros_like(phi)], axis=-1).astype(np.float32),
        label=np.zeros(n, dtype=np.int64),
        keep=keep,
        record_id=np.arange(n),
    )
    p = np.array([r.p_value for r in check_records(store, [str(i) for i in range(n)], target=0)])
    refs = np.arange(2, 2 * k + 2)
    out_mask = ~keep[refs]
    vals = store.logits[refs, :, 0].astype(np.float64)
    s2 = np.array([vals[out_mask[:, i], i].var(ddof=1) for i in range(n)])
    return decile_counts(p, s2)


def check_record_real(plan_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(p-values, sample OUT variances) of the non-members of MLPs trained on digits (k = 8): each
    pool record checked once, against a random one of the models that did not train on it."""
    import tempfile
    from pathlib import Path

    import torch

    from miaudit.attacks import complementary_pairs
    from miaudit.audit import parse_audit_config
    from miaudit.audit._check_record import _phi, check_records
    from miaudit.engine import train

    torch.set_num_threads(1)
    cfg = parse_audit_config(
        {
            "seed": 1000 + plan_seed,
            "data": {"dataset": "digits"},
            "model": {"kind": "torch-mlp", "hidden": [64], "epochs": 30, "batch_size": 32},
            "plan": {"pool_fraction": 0.8},
            "engine": {"workers": 0, "progress": False},
            "audit": {"references": 8},
        }
    )
    with tempfile.TemporaryDirectory(prefix="miaudit-null-cr-") as tmp:
        store = train(cfg.train_config(), Path(tmp)).signals
    rng = np.random.default_rng([plan_seed, 0xC4EC])
    pool = np.flatnonzero(~store.population)
    phi = _phi(store)
    ps, s2 = [], []
    # Each record: one of the models that left it out (complementary pairs: half of them).
    choice = np.array([rng.choice(np.flatnonzero(~store.keep[:, i])) for i in pool])
    partner = {a: b for pair in complementary_pairs(store) for a, b in (pair, pair[::-1])}
    for t in range(store.n_models):
        recs = pool[choice == t]
        if recs.size == 0:
            continue
        refs = [
            m for m in range(store.n_models) if m not in (t, partner.get(t))
        ]  # as check_records chooses them
        rows = check_records(store, [str(store.record_id[i]) for i in recs], target=t)
        out = ~store.keep[refs]
        ps += [r.p_value for r in rows]
        s2 += [float(phi[refs][out[:, i], i].var(ddof=1)) for i in recs]
    return np.array(ps), np.array(s2)


def decile_counts(
    p: np.ndarray, s2: np.ndarray
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    dec = np.digitize(s2, np.quantile(s2, np.linspace(0.1, 0.9, 9)))
    return (
        [(int((p[dec == j] < 0.05).sum()), int((dec == j).sum())) for j in range(10)],
        [(int((p[dec == j] < 0.01).sum()), int((dec == j).sum())) for j in range(10)],
    )


def coverage_tests(
    covered: dict[str, dict[str, int]], seeds: int, nominal: float = 0.95
) -> tuple[dict[str, dict], float]:
    """The criterion per (path, attack): one-sided binomial tests of the coverage against
    ``nominal`` at 0.05 / (number of pairs). ``fail``: significantly below; ``over``: above."""
    from scipy.stats import binomtest

    pairs = sum(len(v) for v in covered.values())
    level = 0.05 / pairs
    tests = {}
    for path, per in covered.items():
        for attack, c in per.items():
            below = binomtest(c, seeds, nominal, alternative="less").pvalue
            above = binomtest(c, seeds, nominal, alternative="greater").pvalue
            tests[f"{path} | {attack}"] = {
                "covered": c,
                "seeds": seeds,
                "p_below": below,
                "fail": bool(below < level),
                "over": bool(above < level),
            }
    return tests, level


def null_suite(size: Size, workers: int = 1) -> dict:
    """Run the suite; returns coverage counts, the tests and whether everything passed."""
    from scipy.stats import binomtest

    jobs = [(s, size) for s in range(size.seeds)]
    if workers > 1:
        with mp.get_context("spawn").Pool(workers) as pool:
            rows = pool.map(one_seed, jobs, chunksize=1)
    else:
        rows = [one_seed(j) for j in jobs]
    covered: dict[str, dict[str, int]] = {}
    for row in rows:
        for path, per in row.items():
            for attack, ok in per.items():
                covered.setdefault(path, {}).setdefault(attack, 0)
                covered[path][attack] += int(ok)
    tests, level = coverage_tests(covered, size.seeds)
    pairs = len(tests)
    deciles = [check_record_null(size, s) for s in range(size.check_seeds)]
    if size.real_plans:
        real = [check_record_real(s) for s in range(size.real_plans)]
        deciles.append(
            decile_counts(
                np.concatenate([r[0] for r in real]), np.concatenate([r[1] for r in real])
            )
        )
    d_level = 0.05 / (20 * len(deciles))
    d_fail = []
    for s, (r05, r01) in enumerate(deciles):
        for alpha, rates in ((0.05, r05), (0.01, r01)):
            for j, (hits, m) in enumerate(rates):
                if binomtest(hits, m, alpha, alternative="greater").pvalue < d_level:
                    d_fail.append((s, alpha, j, hits, m))
    return {
        "covered": covered,
        "tests": tests,
        "level": level,
        "pairs": pairs,
        "deciles": deciles,
        "decile_level": d_level,
        "decile_failures": d_fail,
        "passed": not any(t["fail"] for t in tests.values()) and not d_fail,
    }


def run(size: str) -> BenchResult:
    sz = SIZES[size]
    workers = max(1, min(os.cpu_count() or 1, 4))
    res = null_suite(sz, workers=workers)
    fails = [k for k, t in res["tests"].items() if t["fail"]]
    overs = [k for k, t in res["tests"].items() if t["over"]]
    lines = [
        "| path | attack | seeds whose 95 % interval contains 0.5 | coverage | one-sided p (below 0.95) |",
        "|---|---|---:|---:|---:|",
    ]
    for key, t in res["tests"].items():
        path, attack = key.split(" | ")
        flag = " **below**" if t["fail"] else (" (over)" if t["over"] else "")
        lines.append(
            f"| {path} | {attack} | {t['covered']} / {t['seeds']} | {t['covered'] / t['seeds']:.3f}{flag} | {t['p_below']:.3g} |"
        )
    synthetic = res["deciles"][: sz.check_seeds]
    groups = [(f"synthetic ({sz.check_seeds} × {sz.check_records} records)", synthetic)]
    if sz.real_plans:
        groups.append(
            (f"digits MLPs ({sz.real_plans} plans, k = 8)", res["deciles"][sz.check_seeds :])
        )
    rates: dict[str, dict[str, list[float]]] = {}
    lines += [
        "",
        "| check-record: rate of p < α per decile of the OUT variance | α | "
        + " | ".join(str(j + 1) for j in range(10))
        + " | records |",
        "|---|---:|" + "---:|" * 11,
    ]
    for label, ds in groups:
        m = np.array([[c for _, c in d[0]] for d in ds]).sum(axis=0)
        rates[label] = {}
        for alpha, idx in (("0.05", 0), ("0.01", 1)):
            hits = np.array([[h for h, _ in d[idx]] for d in ds]).sum(axis=0)
            rates[label][alpha] = (hits / m).round(4).tolist()
            lines.append(
                f"| {label} | {alpha} | "
                + " | ".join(f"{h / c:.3f}" for h, c in zip(hits, m, strict=True))
                + f" | {int(m.sum())} |"
            )
    return BenchResult(
        name="null_suite",
        claim=CLAIM,
        figures={
            "seeds": sz.seeds,
            "records": sz.records,
            "replicates": sz.replicates,
            "pairs": res["pairs"],
            "bonferroni_level": res["level"],
            "below_nominal": fails,
            "above_nominal": overs,
            "coverage": res["covered"],
            "check_record": {
                "records_per_seed": sz.check_records,
                "seeds": sz.check_seeds,
                "real_plans": sz.real_plans,
                "rates_by_decile": rates,
                "failures": res["decile_failures"],
                "level": res["decile_level"],
            },
        },
        table="\n".join(lines),
        passed=bool(res["passed"]),
        notes=[
            f"{sz.seeds} seeds × {len(res['covered'])} paths; {sz.records} evaluated records and {sz.population} population records per store; "
            f"{sz.replicates} bootstrap replicates per interval; {workers} worker processes. A (path, attack) fails when coverage is below 0.95 "
            f"at one-sided level 0.05 / {res['pairs']} = {res['level']:.2g}; coverage above 0.95 at that level is marked (over), not failed.",
            f"check-record: {sz.check_seeds} synthetic stores × {sz.check_records} records, k = 4 OUT references each, σ² inverse-gamma(3, 3) across records"
            + (
                f"; and {sz.real_plans} digits plans (MLP 64, 30 epochs, k = 8: 18 models), each pool record checked once against a random model that left it out, "
                "deciles over all of them"
                if sz.real_plans
                else ""
            )
            + f". Per decile of the sample OUT variance (and group), a one-sided binomial test that the rate of p < α is not above α, at 0.05 / (20 × groups) = {res['decile_level']:.2g}.",
            "Below nominal: "
            + (", ".join(fails) if fails else "none")
            + ". Over nominal: "
            + (", ".join(overs) if overs else "none")
            + ".",
        ],
    )
