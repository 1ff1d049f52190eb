"""miaudit next to IBM ART 1.20.1: the same target models, the same evaluation records, the same metric code.

Run it with the peer venv's python (``benchmarks/peer/setup.sh`` makes it; ART is never
installed into miaudit's own environment)::

    bash benchmarks/peer/setup.sh
    /tmp/miaudit-peer-venv/bin/python benchmarks/peer/art_compare.py --size full [--json out.json]

For each dataset (digits; UCI Adult, 8,000 records; synthetic Purchase-like, 6,000 records):

1. **Targets.** ``miaudit.engine.train`` trains 2k + 2 overfit torch MLPs in complementary
   pairs on a pool of records (the plan ``miaudit audit`` uses), with the data, recipes and
   seed of the attack-power claims benchmark (``benchmarks/bench_attack_power.py``), whose
   first models they are. Model 0 is *the* target. Its
   weights and its preprocessing (per-column affine, fitted on its own training records) are
   read back from the engine's cache into a plain ``torch.nn.Sequential``, checked to reproduce
   the engine's logits on every record, and wrapped in ART's ``PyTorchClassifier``. Both tools
   therefore attack the very same function.
2. **Records.** The target's pool records (its members and its non-members) are split in two
   halves, stratified by membership: ART's attack-training half (known members and
   non-members, the standard black-box protocol) and the evaluation half. Every number in the
   table is measured on the evaluation half only. (Digits has ~360 non-members there: too few
   for an interval of TPR at 1 % FPR, which needs n0·α ≥ 10; the point is still shown.)
3. **ART.** ``MembershipInferenceBlackBox`` on the target's predictions (logits, what
   ``PyTorchClassifier.predict`` returns) with the attack models ``rf``, ``gb`` and ``nn``
   (ART's defaults for each: scikit-learn defaults; 100 epochs, batch 100, lr 1e-4 for nn), and
   on the loss (``input_type="loss"``, nn); each gets true labels (``y``). Scores: ART's
   membership probability (``infer(..., probabilities=True)``). ``MembershipInferenceBlackBoxRuleBased``
   (member iff the prediction is correct) scores by its 0/1 prediction (its probabilities are
   that prediction one-hot for more than two classes, and wrong for two: see the notes).
4. **miaudit.** The threshold attacks of ``miaudit.attack`` on the target's outputs for the
   evaluation records; LiRA and RMIA (online and offline), the shrunk LiRA (online and offline,
   docs/method.md §12) and the combined stacker from ``miaudit.audit.attack_store`` with k
   complementary pairs of reference models (the other models of the plan; the target's own
   partner never serves), target = model 0, scores restricted to the evaluation records; and
   QMIA (k = 0: no reference model), fitted in the same call on the target's outputs on the
   plan's population records (outside the pool, never an evaluation record) with their
   features.
5. **Metrics.** One call of ``miaudit.metrics.evaluate`` on all scores of both tools: AUC and
   TPR at 1 % FPR with 95 % percentile intervals from the same stratified record-resampling
   bootstrap replicates (so differences between any two rows are paired).

Privacy Meter is not in the table. Its v2 (the current upstream, which runs RMIA and LiRA from
YAML-configured scripts) has no release on PyPI, the only registry for Python packages here:
``privacy-meter`` on PyPI is 1.0.1 (July 2023), the v1 API. Version 1.0.1 declares no
dependencies yet imports TensorFlow, opacus and torch at module level (``privacy_meter.model``, reached
from ``privacy_meter.metric``): ``import privacy_meter.metric`` fails with
``ModuleNotFoundError: No module named 'tensorflow'`` in the peer venv. Its attacks are v1's
population, reference and shadow threshold metrics, not v2's RMIA, so installing TensorFlow for it
would still not measure the Privacy Meter the issue compares against (checked 2026-12-06).

Seeded throughout (numpy, torch, scikit-learn's global RNG that ART's default attack models
draw from); one thread per process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "src") not in sys.path:  # the checkout's miaudit, whatever the venv holds
    sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

torch.set_num_threads(1)

ART_VERSION = "1.20.1"
TARGET = 0
THRESHOLD_ATTACKS = ("loss", "confidence", "modified_entropy", "gap")
REFERENCE_ATTACKS = (
    "lira_online",
    "lira_offline",
    "rmia_online",
    "rmia_offline",
    # issue 18's attacks: the shrunk LiRA (docs/method.md §12) and the stacker over LiRA/RMIA
    "lira_shrunk_online",
    "lira_shrunk_offline",
    "combined",
)
PRIOR_REFERENCE_ATTACKS = REFERENCE_ATTACKS[:4]
NEW_ATTACKS = ("qmia", "combined", "lira_shrunk_online", "lira_shrunk_offline")
#: Attacks on the target's own outputs that fit a regressor on population records (no
#: reference model, k = 0): scored in the same attack_store call, reported as k = 0.
POPULATION_ATTACKS = ("qmia",)
# (row name, MembershipInferenceBlackBox keyword arguments)
ART_BLACK_BOX = (
    ("black-box rf (prediction)", {"input_type": "prediction", "attack_model_type": "rf"}),
    ("black-box gb (prediction)", {"input_type": "prediction", "attack_model_type": "gb"}),
    ("black-box nn (prediction)", {"input_type": "prediction", "attack_model_type": "nn"}),
    ("black-box nn (loss)", {"input_type": "loss", "attack_model_type": "nn"}),
)
ART_RULE = "rule-based"

# The targets of the attack-power claims benchmark (benchmarks/bench_attack_power.py): same data,
# recipe, seed, pool fraction and unit size. The complementary plan draws pair after pair and
# every model has its own seed stream, so model 0 of this plan (and its k reference pairs, the
# pairs that follow its own) are the very models that benchmark trains first.
DATASETS: dict[str, dict[str, Any]] = {
    "digits": {
        "data": {"dataset": "digits"},
        "model": {"kind": "torch-mlp", "hidden": [256], "epochs": 60, "batch_size": 32},
    },
    "adult": {
        "data": {"dataset": "adult", "max_records": 8000},
        "model": {"kind": "torch-mlp", "hidden": [256, 256], "epochs": 40, "batch_size": 64},
    },
    "purchase": {
        "data": {"dataset": "purchase", "purchase": {"n_records": 6000, "flip_rate": 0.15}},
        "model": {"kind": "torch-mlp", "hidden": [256], "epochs": 30, "batch_size": 64},
    },
}
PLAN_SEED = 20261128
POOL_FRACTION = 0.8
UNIT_SIZE = 8
SIZES: dict[str, dict[str, Any]] = {
    "full": {"references": 4, "resamples": 200, "epoch_divisor": 1},
    # a smoke run: the same data, a third of the epochs (at least 10), 2 reference pairs
    "small": {"references": 2, "resamples": 50, "epoch_divisor": 3},
}


def audit_config(spec: dict[str, Any], size: dict[str, Any]):  # type: ignore[no-untyped-def]
    from miaudit.audit import parse_audit_config

    model = {
        **spec["model"],
        "epochs": max(10, spec["model"]["epochs"] // size["epoch_divisor"])
        if size["epoch_divisor"] > 1
        else spec["model"]["epochs"],
    }
    return parse_audit_config(
        {
            "seed": PLAN_SEED,
            "data": spec["data"],
            "model": model,
            "plan": {"pool_fraction": POOL_FRACTION, "unit_size": UNIT_SIZE},
            "engine": {"workers": 0, "threads": 1, "progress": False},
            "audit": {
                "references": size["references"],
                "targets": 1,
                "resamples": size["resamples"],
                "attacks": [*REFERENCE_ATTACKS, *POPULATION_ATTACKS],
            },
        }
    )


class TargetNet(nn.Module):
    """The engine's model ``TARGET`` as a plain module: its affine preprocessing, then the MLP."""

    def __init__(self, state: dict[str, torch.Tensor], position: int, n_layers: int) -> None:
        super().__init__()
        self.register_buffer("scale", state["preprocess.scale"][position].clone().float())
        self.register_buffer("shift", state["preprocess.shift"][position].clone().float())
        layers: list[nn.Module] = []
        for i in range(n_layers):
            w = state[f"layer{i}.weight"][position]  # stored (in, out) for bmm
            b = state[f"layer{i}.bias"][position].reshape(-1)
            lin = nn.Linear(w.shape[0], w.shape[1])
            with torch.no_grad():
                lin.weight.copy_(w.t())
                lin.bias.copy_(b)
            layers.append(lin)
            if i < n_layers - 1:
                layers.append(nn.ReLU())
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x * self.scale + self.shift)


def load_target(run, n_hidden: int) -> TargetNet:  # type: ignore[no-untyped-def]
    from miaudit.models import load_torch_state

    folder, position = run.model_location(TARGET)
    net = TargetNet(load_torch_state(folder / "weights.safetensors"), position, n_hidden + 1)
    return net.eval()


def seed_all(seed: int) -> None:
    np.random.seed(  # noqa: NPY002 - ART and sklearn draw from the global state
        seed % 2**32
    )  # scikit-learn estimators built without random_state draw from here
    torch.manual_seed(seed)


def run_dataset(
    name: str, spec: dict[str, Any], size: dict[str, Any], seed: int, work: Path, log
) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from art.attacks.inference.membership_inference import (
        MembershipInferenceBlackBox,
        MembershipInferenceBlackBoxRuleBased,
    )
    from art.estimators.classification import PyTorchClassifier

    from miaudit.audit import attack_store, run_attacks
    from miaudit.data import ModelOutputs
    from miaudit.datasets import load_dataset
    from miaudit.engine import train

    timings: dict[str, float] = {}
    cfg = audit_config(spec, size)
    t0 = time.perf_counter()
    run = train(cfg.train_config(), work / name)
    timings["train_models"] = time.perf_counter() - t0
    store = run.signals
    data = load_dataset(cfg.data)
    assert np.array_equal(np.asarray(data.record_id), np.asarray(store.record_id))
    n, c = data.n_records, data.n_classes
    pool = np.flatnonzero(~store.population)
    member_all = store.keep[TARGET].astype(bool)
    logits_engine = np.asarray(store.logits[TARGET], dtype=np.float32)
    log(
        f"[{name}] {store.n_models} models on {n} records ({pool.size} in the pool) trained in {timings['train_models']:.1f} s"
    )

    # The same target for ART: the engine's model 0, rebuilt from its cached weights.
    net = load_target(run, len(spec["model"]["hidden"]))
    x = np.asarray(data.features, dtype=np.float32)
    with torch.no_grad():
        logits_net = net(torch.from_numpy(x)).numpy()
    max_diff = float(np.abs(logits_net - logits_engine).max())
    if max_diff > 1e-3:
        raise RuntimeError(
            f"[{name}] the rebuilt target does not reproduce the engine's logits (max |diff| {max_diff:.3g})"
        )
    clf = PyTorchClassifier(
        model=net,
        loss=nn.CrossEntropyLoss(),
        input_shape=(x.shape[1],),
        nb_classes=c,
        device_type="cpu",
    )
    y1h = np.eye(c, dtype=np.float32)[data.label]

    # Split the target's pool records: ART's attack training half / the evaluation half.
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    fit_idx, eval_idx = [], []
    for m in (True, False):
        rows = rng.permutation(pool[member_all[pool] == m])
        half = rows.size // 2
        fit_idx.append(np.sort(rows[:half]))
        eval_idx.append(rows[half:])
    fit_in, fit_out = fit_idx
    ev = np.sort(np.concatenate(eval_idx))
    y_ev = member_all[ev].astype(np.int8)
    pred_correct = logits_engine.argmax(1) == data.label
    train_acc, test_acc = (
        float(pred_correct[pool][member_all[pool]].mean()),
        float(pred_correct[pool][~member_all[pool]].mean()),
    )

    scores: dict[str, np.ndarray] = {}
    tool: dict[str, str] = {}
    notes: list[str] = []

    # ART black-box attacks.
    for i, (row, kwargs) in enumerate(ART_BLACK_BOX):
        seed_all(seed * 1000 + i)
        t0 = time.perf_counter()
        att = MembershipInferenceBlackBox(clf, **kwargs)
        att.fit(x[fit_in], y1h[fit_in], x[fit_out], y1h[fit_out])
        p = np.asarray(att.infer(x[ev], y1h[ev], probabilities=True), dtype=np.float64).reshape(-1)
        timings[f"art {row}"] = time.perf_counter() - t0
        key = f"ART {row}"
        scores[key], tool[key] = p, "ART 1.20.1"
        log(f"[{name}] ART {row}: {timings[f'art {row}']:.1f} s")

    # ART rule-based: member iff the target's prediction is correct.
    rb = MembershipInferenceBlackBoxRuleBased(clf)
    hard = np.asarray(rb.infer(x[ev], y1h[ev]), dtype=np.float64).reshape(-1)
    soft = np.asarray(rb.infer(x[ev], y1h[ev], probabilities=True), dtype=np.float64)
    key = f"ART {ART_RULE}"
    scores[key], tool[key] = hard, "ART 1.20.1"
    if c == 2 and soft.ndim == 2:
        spread = int(np.unique(np.round(soft[:, 1], 12)).size)
        notes.append(
            f"{name}: ART rule-based infer(probabilities=True) on a 2-class target returned {spread} distinct member-probability value(s) over "
            f"{ev.size} records (ART 1.20.1 assigns whole columns with prob[:, predicted_class] = ...); the 0/1 prediction is used as the score."
        )

    # miaudit: threshold attacks on the target's outputs for the evaluation records.
    t0 = time.perf_counter()
    outputs = ModelOutputs.from_arrays(
        logits=logits_engine[ev],
        label=data.label[ev],
        member=y_ev,
        record_id=np.asarray(data.record_id)[ev],
    )
    own = run_attacks(outputs, attacks=THRESHOLD_ATTACKS, n_resamples=0, seed=seed)
    for a in THRESHOLD_ATTACKS:
        key = f"miaudit {a}"
        scores[key], tool[key] = np.asarray(own.scores[a], dtype=np.float64), "miaudit"
    # miaudit: LiRA and RMIA with k reference pairs, target = model 0.
    ref = attack_store(store, cfg, features=np.asarray(data.features))
    assert np.array_equal(ref.targets, [TARGET])
    pos = {rid: j for j, rid in enumerate(np.asarray(ref.record_id).tolist())}
    rid_ev = np.asarray(store.record_id)[ev].tolist()
    take = np.array([pos[r] for r in rid_ev])
    assert np.array_equal(np.asarray(ref.member)[take].astype(bool), y_ev.astype(bool))
    for a in REFERENCE_ATTACKS:
        key = f"miaudit {a}"
        scores[key], tool[key] = (
            np.asarray(ref.scores[a], dtype=np.float64)[take],
            f"miaudit (k = {size['references']})",
        )
    for a in POPULATION_ATTACKS:
        key = f"miaudit {a}"
        scores[key], tool[key] = (
            np.asarray(ref.scores[a], dtype=np.float64)[take],
            "miaudit (k = 0)",
        )
    timings["miaudit_attacks"] = time.perf_counter() - t0

    from miaudit.metrics import evaluate

    evl = evaluate(
        y_ev,
        scores,
        fprs=(0.1, 0.01),
        n_resamples=size["resamples"],
        rng=np.random.default_rng(np.random.SeedSequence([seed, 2])),
    )
    rows = []
    for key in scores:
        auc, tpr = evl.estimate(key, "auc"), evl.estimate(key, "tpr@1%fpr")
        rows.append(
            {
                "tool": tool[key],
                "attack": key.split(" ", 1)[1],
                "auc": est(auc),
                "tpr@1%fpr": est(tpr),
                "nonmembers_tied_at_top": top_tie(scores[key], y_ev),
            }
        )
    art_keys = [k for k in scores if k.startswith("ART")]
    mia_keys = [k for k in scores if k.startswith("miaudit")]

    def best(keys: list[str]) -> str:
        return max(keys, key=lambda k: evl.estimate(k, "tpr@1%fpr").point or 0.0)

    ba, bm = best(art_keys), best(mia_keys)
    prior = [f"miaudit {a}" for a in PRIOR_REFERENCE_ATTACKS]
    bp = best(prior)
    comparison = {
        "best_art": ba,
        "best_miaudit": bm,
        "tpr@1%fpr_difference": est(evl.difference(bm, ba, "tpr@1%fpr")),
        "auc_difference": est(evl.difference(bm, ba, "auc")),
        "best_prior_reference": bp,
        # issue 18's attacks against the strongest ART row and the strongest LiRA/RMIA row
        "new_attacks": {
            a: {
                f"minus_{side}": {
                    "other": other,
                    "tpr@1%fpr": est(evl.difference(f"miaudit {a}", other, "tpr@1%fpr")),
                    "auc": est(evl.difference(f"miaudit {a}", other, "auc")),
                }
                for side, other in (("best_art", ba), ("best_prior_reference", bp))
            }
            for a in NEW_ATTACKS
        },
    }
    # Sanity: ART's rule and miaudit's gap attack are the same rule on the same model.
    rule, gap = scores[f"ART {ART_RULE}"], scores["miaudit gap"]
    same_rule = bool(
        np.array_equal(rule.astype(bool), pred_correct[ev])
        and np.array_equal(np.argsort(rule, kind="stable"), np.argsort(gap, kind="stable"))
    )
    return {
        "dataset": name,
        "data": cfg.data.model_dump(mode="json", exclude_defaults=True),
        "recipe": cfg.model.model_dump(mode="json"),
        "models": store.n_models,
        "references": size["references"],
        "records": n,
        "classes": c,
        "pool_records": int(pool.size),
        "target_train_accuracy": round(train_acc, 4),
        "target_test_accuracy": round(test_acc, 4),
        "art_fit_members": int(fit_in.size),
        "art_fit_nonmembers": int(fit_out.size),
        "eval_members": int(y_ev.sum()),
        "eval_nonmembers": int((y_ev == 0).sum()),
        "rebuilt_target_max_abs_logit_diff": max_diff,
        "art_rule_equals_miaudit_gap": same_rule,
        "rows": rows,
        "comparison": comparison,
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "notes": notes,
    }


def top_tie(score: np.ndarray, member: np.ndarray) -> float:
    """Fraction of non-members that share the highest non-member score.

    Above 1 %, no threshold has FPR ≤ 1 % except one above every member tied there too, so
    TPR at 1 % FPR counts only members scored strictly higher (ties share a threshold): coarse
    scores (a random forest's vote fractions, a 0/1 rule, probabilities or losses that round to
    exactly 1 or 0 in floating point) lose their low-FPR power this way.
    """
    s0 = score[member == 0]
    return round(float((s0 == s0.max()).mean()), 4)


def est(e) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return {"point": e.point, "lower": e.lower, "upper": e.upper, "status": e.status}


def fmt(e: dict[str, Any]) -> str:
    if e["point"] is None:
        return "not measurable"
    if e["lower"] is None:
        return f"{e['point']:.3f} (no interval: {e['status']})"
    return f"{e['point']:.3f} [{e['lower']:.3f}, {e['upper']:.3f}]"


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| dataset (target) | tool | attack | AUC [95 % CI] | TPR@1 %FPR [95 % CI] |",
        "|---|---|---|---|---|",
    ]
    tied = []
    for r in results:
        tied += [
            f"{r['dataset']} {row['tool'].split(' (')[0]} {row['attack']} {row['nonmembers_tied_at_top']:.0%}"
            for row in r["rows"]
            if row["nonmembers_tied_at_top"] > 0.01
        ]
    for r in results:
        label = f"{r['dataset']} (train/test acc {r['target_train_accuracy']:.2f}/{r['target_test_accuracy']:.2f}; eval {r['eval_members']}+{r['eval_nonmembers']})"
        for row in r["rows"]:
            lines.append(
                f"| {label} | {row['tool']} | {row['attack']} | {fmt(row['auc'])} | {fmt(row['tpr@1%fpr'])} |"
            )
    if tied:
        lines += [
            "",
            "Non-members tied at the top score (more than 1 %: TPR at 1 % FPR can count only members scored strictly higher): "
            + "; ".join(tied)
            + ".",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=tuple(SIZES), default="full")
    parser.add_argument(
        "--seed",
        type=int,
        default=1,
        help="seeds the record split, ART's attack models and the bootstrap (the targets use the plan seed)",
    )
    parser.add_argument(
        "--datasets", default="", help="comma-separated subset of: " + ", ".join(DATASETS)
    )
    parser.add_argument("--json", type=Path, default=None, help="write the measured rows here")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="engine output and model cache (default: a temporary folder)",
    )
    args = parser.parse_args(argv)

    import art
    import sklearn

    if art.__version__ != ART_VERSION:
        print(
            f"error: this comparison is pinned to ART {ART_VERSION}; found {art.__version__}",
            file=sys.stderr,
        )
        return 2
    size = SIZES[args.size]
    names = [d for d in args.datasets.split(",") if d] or list(DATASETS)
    unknown = [d for d in names if d not in DATASETS]
    if unknown:
        print(
            f"error: unknown dataset {unknown[0]!r}; known: {', '.join(DATASETS)}", file=sys.stderr
        )
        return 2

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="miaudit-peer-") as tmp:
        work = args.workdir or Path(tmp)
        results = [run_dataset(n, DATASETS[n], size, args.seed, work, log) for n in names]
    wall = time.perf_counter() - start
    out = {
        "size": args.size,
        "seed": args.seed,
        "resamples": size["resamples"],
        "wall_s": round(wall, 1),
        "versions": {
            "art": art.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "sklearn": sklearn.__version__,
            "python": sys.version.split()[0],
        },
        "datasets": results,
        "table": table(results),
    }
    if args.json:
        args.json.write_text(json.dumps(out, indent=2), encoding="utf-8")
    print(out["table"])
    for r in results:
        c = r["comparison"]
        print(
            f"\n{r['dataset']}: strongest by TPR@1%FPR — miaudit {c['best_miaudit']!r} minus ART {c['best_art']!r}: "
            f"ΔTPR@1%FPR {fmt(c['tpr@1%fpr_difference'])}, ΔAUC {fmt(c['auc_difference'])} (paired)"
        )
    print(f"\nwall time {wall:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
